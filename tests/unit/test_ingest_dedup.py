"""De-duplication of ingest, the part that is pure: the key a reading is stored under.

`ingest_readings` (ems.telemetry.service) writes one reading per (sensor, metric, ts in ms): the
first of two equal keys in a batch wins and the store's conditional put refuses a key stored
before. Whether two posted readings are "the same sensor and timestamp" is therefore decided by
`parse_reading`, which these tests check: however a device or client writes the instant, one instant
is one key. (The batch-level counting needs the registry's and the telemetry store's fakes; it is
covered against moto in tests/integration/test_telemetry.py.)
"""

from __future__ import annotations

from typing import Any

import pytest

from ems.telemetry.models import Reading
from tests.unit.test_validation import NOW_MS, NOW_S, parse


def key(reading: Reading) -> tuple[str, str, int]:
    return (reading.sensor_id, reading.metric, reading.ts_ms)


def keys(raw: dict[str, Any]) -> list[tuple[str, str, int]]:
    return [key(r) for r in parse(raw)]


@pytest.mark.parametrize(
    "ts",
    [
        NOW_S,
        str(NOW_S),
        NOW_MS,
        str(NOW_MS),
        float(NOW_MS),
        "2024-05-01T12:00:00Z",
        "2024-05-01T12:00:00.000400Z",
        "2024-05-01T13:00:00+01:00",
    ],
)
def test_one_instant_written_any_way_is_one_key(ts: Any) -> None:
    assert keys({"sensor_id": "METER", "ts": ts, "value": 1.0}) == [("METER", "value", NOW_MS)]


def test_epoch_milliseconds_and_epoch_seconds_are_one_key() -> None:
    by_ms = keys({"sensor_id": "METER", "ts": NOW_MS, "value": 1.0})
    by_s = keys({"sensor_id": "METER", "ts": NOW_S, "value": 2.0})
    assert by_ms == by_s == [("METER", "value", NOW_MS)]


def test_the_value_is_not_part_of_the_key() -> None:
    # A second reading of the same sensor and time with another value is the same reading.
    first = keys({"sensor_id": "METER", "ts": NOW_S, "metrics": {"power_w": 1.0}})
    second = keys({"sensor_id": "METER", "ts": NOW_S, "metrics": {"power_w": 2.0}})
    assert first == second == [("METER", "power_w", NOW_MS)]


def test_metrics_of_one_reading_and_one_millisecond_apart_are_different_keys() -> None:
    both = keys({"sensor_id": "METER", "ts": NOW_S, "metrics": {"power_w": 1.0, "energy_wh": 5.0}})
    assert both == [("METER", "power_w", NOW_MS), ("METER", "energy_wh", NOW_MS)]
    later = keys({"sensor_id": "METER", "ts": "2024-05-01T12:00:00.001Z", "metrics": {"power_w": 1.0}})
    assert later == [("METER", "power_w", NOW_MS + 1)]
