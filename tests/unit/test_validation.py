"""Every reason `parse_reading` refuses a reading for, word for word, and what it accepts (no AWS).

The window is fixed by hand: now is 2024-05-01T12:00:00Z (epoch seconds 1714564800), a reading may
be up to 5 minutes ahead of it and at most 30 days behind it, as ingest sets it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from ems.core.errors import PayloadTooLarge
from ems.registry.models import Sensor
from ems.telemetry.models import MAX_READINGS_PER_BATCH, Reading, Rejection
from ems.telemetry.ports import SensorDirectory, TelemetryStore
from ems.telemetry.service import Stores, ingest_readings
from ems.telemetry.validation import Rejected, parse_reading

SITE = "hq"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NOW_S = 1_714_564_800
NOW_MS = NOW_S * 1000
EARLIEST = NOW - timedelta(days=30)
LATEST = NOW + timedelta(minutes=5)


def sensor(sensor_id: str, unit: str | None = None, device_id: str | None = None) -> Sensor:
    return Sensor(
        site_id=SITE, sensor_id=sensor_id, name=sensor_id, sensor_type="meter", unit=unit, device_id=device_id,
        created_at=NOW, updated_at=NOW,
    )  # fmt: skip


SENSORS = {"METER": sensor("METER", unit="W"), "PLUG": sensor("PLUG", device_id="dev1")}


def parse(raw: Any, device_id: str | None = None) -> list[Reading]:
    return parse_reading(raw, SITE, SENSORS, EARLIEST, LATEST, device_id=device_id)


def reason(raw: Any, device_id: str | None = None) -> str:
    with pytest.raises(Rejected) as refused:
        parse(raw, device_id)
    return str(refused.value)


def reading(**fields: Any) -> dict[str, Any]:
    """A good reading of METER at now, with `fields` changed (None removes a field)."""
    raw: dict[str, Any] = {"sensor_id": "METER", "ts": NOW_S, "value": 100.0}
    raw.update(fields)
    return {k: v for k, v in raw.items() if v is not None}


# ---------------------------------------------------------------- shape and sensor


@pytest.mark.parametrize("raw", [[1, 2], "METER", 42, None])
def test_a_reading_that_is_not_an_object(raw: Any) -> None:
    assert reason(raw) == "a reading must be an object"


def test_an_unknown_field_is_named() -> None:
    assert reason(reading(colour="red", at="x")) == "unknown field 'at'"  # the first by name


@pytest.mark.parametrize("sensor_id", [None, "", "has space", 7, "-starts-with-dash"])
def test_a_missing_or_malformed_sensor_id(sensor_id: Any) -> None:
    raw = reading() | {"sensor_id": sensor_id}
    assert reason(raw) == "sensor_id is missing or not a sensor id"


def test_an_unknown_sensor_names_the_sensor_and_the_site() -> None:
    assert reason(reading(sensor_id="NOPE")) == "unknown sensor 'NOPE' in site 'hq'"


def test_a_sensor_of_another_device_is_refused_to_a_device() -> None:
    assert (
        reason(reading(sensor_id="PLUG"), device_id="dev2")
        == "sensor 'PLUG' belongs to device 'dev1', not 'dev2'"
    )
    assert [r.sensor_id for r in parse(reading(sensor_id="PLUG"), device_id="dev1")] == ["PLUG"]
    assert [r.sensor_id for r in parse(reading(sensor_id="PLUG"))] == ["PLUG"]  # HTTP names no device


def test_a_reading_over_4096_bytes() -> None:
    assert reason(reading(unit="W" * 4096)) == "a reading must be at most 4096 bytes"


def test_a_unit_other_than_the_sensors() -> None:
    assert reason(reading(unit="kW")) == "unit 'kW' is not the sensor's unit 'W'"
    assert parse(reading(unit="W"))[0].value == 100.0


# ---------------------------------------------------------------- timestamps


def test_a_missing_ts() -> None:
    assert reason(reading(ts=None)) == "ts is missing"


@pytest.mark.parametrize("ts", [True, False, [NOW_S], {"s": NOW_S}])
def test_a_ts_of_the_wrong_type(ts: Any) -> None:
    assert reason(reading(ts=ts)) == "ts must be an ISO 8601 time, epoch seconds or epoch milliseconds"


@pytest.mark.parametrize("ts", [math.inf, -math.inf, math.nan])
def test_a_non_finite_ts(ts: float) -> None:
    assert reason(reading(ts=ts)) == "ts must be finite"


def test_epoch_milliseconds_are_told_from_seconds_by_magnitude_over_http_and_from_devices() -> None:
    assert parse(reading(ts=NOW_MS + 7))[0].ts_ms == NOW_MS + 7  # exact, to the ms
    assert parse(reading(ts=str(NOW_MS + 7)))[0].ts_ms == NOW_MS + 7
    assert parse(reading(ts=float(NOW_MS) + 7.9))[0].ts_ms == NOW_MS + 7
    assert parse(reading(ts=NOW_MS), device_id="dev-1")[0].ts_ms == NOW_MS


def test_a_ts_that_is_no_time() -> None:
    assert reason(reading(ts="yesterday")) == "ts: not an ISO 8601 time: 'yesterday'"


@pytest.mark.parametrize(
    "ts",
    [
        NOW_S,
        float(NOW_S),
        str(NOW_S),
        "2024-05-01T12:00:00Z",
        "2024-05-01T12:00:00",
        "2024-05-01T14:00:00+02:00",
    ],
)
def test_iso_and_epoch_seconds_name_the_same_instant(ts: Any) -> None:
    # Naive ISO is UTC; an offset is converted; a numeric string is epoch seconds.
    assert parse(reading(ts=ts))[0].ts_ms == NOW_MS


def test_fractions_of_a_millisecond_are_dropped() -> None:
    assert parse(reading(ts="2024-05-01T11:59:59.999900Z"))[0].ts_ms == NOW_MS - 1
    assert parse(reading(ts=NOW_S + 0.25))[0].ts_ms == NOW_MS + 250


def test_the_future_bound_is_five_minutes() -> None:
    assert parse(reading(ts=NOW_S + 300))[0].ts_ms == NOW_MS + 300_000
    assert reason(reading(ts=NOW_S + 301)) == "ts is more than 5 minutes in the future"


def test_the_past_bound_is_the_raw_retention() -> None:
    thirty_days_s = 30 * 86_400
    assert parse(reading(ts=NOW_S - thirty_days_s))[0].ts_ms == NOW_MS - thirty_days_s * 1000
    assert reason(reading(ts=NOW_S - thirty_days_s - 1)) == "ts is older than the raw retention"


# ---------------------------------------------------------------- metrics and values


def test_value_and_metrics_are_one_or_the_other() -> None:
    assert reason(reading(metrics={"power_w": 1})) == "give either value or metrics"
    assert reason(reading(value=None)) == "give either value or metrics"


@pytest.mark.parametrize("metrics", [{}, [1], "power_w", 5])
def test_metrics_must_be_a_non_empty_object(metrics: Any) -> None:
    assert (
        reason(reading(value=None, metrics=metrics)) == "metrics must be an object of metric names to numbers"
    )


def test_at_most_32_metrics() -> None:
    thirty_two = {f"m{i:02d}": i for i in range(32)}
    assert len(parse(reading(value=None, metrics=thirty_two))) == 32
    assert reason(reading(value=None, metrics=thirty_two | {"m32": 32})) == "at most 32 metrics per reading"


@pytest.mark.parametrize("name", ["Power", "1st", "power-w", "_w", "p" * 65])
def test_a_bad_metric_name(name: str) -> None:
    assert reason(reading(value=None, metrics={name: 1})) == (
        f"{name!r} is not a metric name (lower case, digits, _; like power_w)"
    )


@pytest.mark.parametrize("value", [True, False, "1", None, [1]])
def test_a_value_that_is_not_a_number(value: Any) -> None:
    # A bool is an int to Python, not a number to us.
    assert reason(reading(value=None, metrics={"power_w": value})) == "power_w must be a number"


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_a_non_finite_value(value: float) -> None:
    assert reason(reading(value=value)) == "value must be a finite number"


def test_a_value_beyond_the_bound() -> None:
    assert parse(reading(value=-1e12))[0].value == -1e12
    assert reason(reading(value=1.5e12)) == "value is beyond ±1e+12"


@pytest.mark.parametrize(
    ("metric", "value", "why"),
    [
        ("humidity_pct", 100.5, "humidity_pct must be within 0..100"),
        ("soc_pct", -1, "soc_pct must be within 0..100"),
        ("co2_ppm", -0.1, "co2_ppm must be within 0..1e+06"),
        ("temperature_c", -300, "temperature_c must be within -273.15..10000"),
    ],
)
def test_a_value_outside_its_metrics_range(metric: str, value: float, why: str) -> None:
    assert reason(reading(value=None, metrics={metric: value})) == why


def test_what_is_stored_of_a_good_reading() -> None:
    readings = parse(
        reading(value=None, metrics={"power_w": 1.23456789, "energy_wh": -0.0, "humidity_pct": 100})
    )
    # With the sensor's room (none) and type, where it counts in the site's and rooms' rollups.
    assert readings == [
        Reading(SITE, "METER", "power_w", NOW_MS, 1.234568, None, "meter"),  # to the micro-unit
        Reading(SITE, "METER", "energy_wh", NOW_MS, 0.0, None, "meter"),
        Reading(SITE, "METER", "humidity_pct", NOW_MS, 100.0, None, "meter"),
    ]
    assert math.copysign(1, readings[1].value) == 1  # -0.0 is stored as 0.0


# ---------------------------------------------------------------- reasons with their index


def no_stores() -> Stores:
    """Stores that fail if touched: a batch whose readings all fail before naming a well-formed
    sensor id is answered without reading the registry or writing anything."""
    return Stores(registry=cast(SensorDirectory, None), telemetry=cast(TelemetryStore, None))


def test_each_rejection_carries_its_index_in_the_batch() -> None:
    batch = ["not an object", {"sensor_id": "has space", "ts": NOW_S, "value": 1}, {"ts": NOW_S}, 5]
    result = ingest_readings(SITE, batch, no_stores(), now=lambda: NOW)
    assert (result.accepted, result.duplicates) == (0, 0)
    assert result.rejected == [
        Rejection(index=0, reason="a reading must be an object"),
        Rejection(index=1, reason="sensor_id is missing or not a sensor id"),
        Rejection(index=2, reason="sensor_id is missing or not a sensor id"),
        Rejection(index=3, reason="a reading must be an object"),
    ]


def test_a_batch_over_the_limit_is_refused_whole() -> None:
    with pytest.raises(PayloadTooLarge) as refused:
        ingest_readings(SITE, [{}] * (MAX_READINGS_PER_BATCH + 1), no_stores(), now=lambda: NOW)
    assert refused.value.field == "readings"
    assert str(MAX_READINGS_PER_BATCH + 1) in refused.value.message
