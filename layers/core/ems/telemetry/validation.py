"""The checks one reading passes before it is stored; each failure is a reason, never an exception.

Pure: the caller passes the sensors it knows and the time window it accepts.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ems.core.clock import TIME_FORMS, epoch_ms_of, parse_time
from ems.core.errors import Invalid
from ems.core.ids import USER_ID
from ems.registry.models import METRIC_PATTERN, Sensor
from ems.telemetry.models import Reading
from ems.telemetry.rollup import bucket_start

METRIC = re.compile(METRIC_PATTERN)
FIELDS = frozenset({"sensor_id", "ts", "value", "metrics", "unit"})
MAX_METRICS_PER_READING = 32
MAX_READING_BYTES = 4096
# Values are stored to the micro-unit and bounded, so a DynamoDB number (38 digits) holds the sum of
# a rollup exactly: 12 digits before the point, 6 after, leaves 20 digits of headroom for the count.
MAX_ABS_VALUE = 1e12
VALUE_DECIMALS = 6
# Ranges that hold by definition; other metrics are any finite number within MAX_ABS_VALUE.
RANGES: dict[str, tuple[float, float]] = {
    "humidity_pct": (0, 100),
    "soc_pct": (0, 100),
    "soh_pct": (0, 100),
    "co2_ppm": (0, 1_000_000),
    "occupancy": (0, 1_000_000),
    "temperature_c": (-273.15, 10_000),
}


class Rejected(Exception):
    """Why one reading is refused; caught per reading by the service."""


def _ts_ms(raw: Any) -> int:
    if raw is None:
        raise Rejected("ts is missing")
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise Rejected(f"ts must be {TIME_FORMS}")
    if isinstance(raw, int | float) and not math.isfinite(raw):
        raise Rejected("ts must be finite")
    if isinstance(raw, int | float):
        return epoch_ms_of(raw)  # exact for whole milliseconds: no round trip through float seconds
    try:
        moment = parse_time(raw, "ts")
    except Invalid as exc:
        raise Rejected(f"ts: {exc.message}") from exc
    return math.floor(moment.timestamp() * 1000)


def _value(metric: str, raw: Any) -> float:
    if not METRIC.match(metric):
        raise Rejected(f"{metric!r} is not a metric name (lower case, digits, _; like power_w)")
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise Rejected(f"{metric} must be a number")
    value = float(raw)
    if not math.isfinite(value):
        raise Rejected(f"{metric} must be a finite number")
    if abs(value) > MAX_ABS_VALUE:
        raise Rejected(f"{metric} is beyond ±{MAX_ABS_VALUE:g}")
    low, high = RANGES.get(metric, (-MAX_ABS_VALUE, MAX_ABS_VALUE))
    if not low <= value <= high:
        raise Rejected(f"{metric} must be within {low:g}..{high:g}")
    return round(value, VALUE_DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0


def parse_reading(
    raw: Any,
    site_id: str,
    sensors: Mapping[str, Sensor],
    earliest: datetime,
    latest: datetime,
    device_id: str | None = None,
) -> list[Reading]:
    """The stored readings (one per metric) of one posted reading, or Rejected with the reason.

    `sensors` are the site's sensors named in the batch; `earliest` and `latest` bound `ts`.
    `device_id`: the device that sent it (MQTT); a sensor bound to another device is refused.
    """
    if not isinstance(raw, dict):
        raise Rejected("a reading must be an object")
    unknown = sorted(set(raw) - FIELDS)
    if unknown:
        raise Rejected(f"unknown field {unknown[0]!r}")
    sensor_id = raw.get("sensor_id")
    if not isinstance(sensor_id, str) or not USER_ID.match(sensor_id):
        raise Rejected("sensor_id is missing or not a sensor id")
    sensor = sensors.get(sensor_id)
    if sensor is None:
        raise Rejected(f"unknown sensor {sensor_id!r} in site {site_id!r}")
    if device_id is not None and sensor.device_id is not None and sensor.device_id != device_id:
        raise Rejected(f"sensor {sensor_id!r} belongs to device {sensor.device_id!r}, not {device_id!r}")
    if len(json.dumps(raw, default=str)) > MAX_READING_BYTES:
        raise Rejected(f"a reading must be at most {MAX_READING_BYTES} bytes")
    unit = raw.get("unit")
    if unit is not None and sensor.unit is not None and unit != sensor.unit:
        raise Rejected(f"unit {unit!r} is not the sensor's unit {sensor.unit!r}")
    ts_ms = _ts_ms(raw.get("ts"))
    if ts_ms > latest.timestamp() * 1000:
        raise Rejected("ts is more than 5 minutes in the future")
    if bucket_start(ts_ms, "1h") < earliest.timestamp() * 1000:  # its hour must be whole in raw (sealing)
        raise Rejected("ts is older than the raw retention")
    has_value, has_metrics = "value" in raw, "metrics" in raw
    if has_value == has_metrics:
        raise Rejected("give either value or metrics")
    if has_value:
        metrics = {"value": raw["value"]}
    else:
        metrics = raw["metrics"]
        if not isinstance(metrics, dict) or not metrics:
            raise Rejected("metrics must be an object of metric names to numbers")
        if len(metrics) > MAX_METRICS_PER_READING:
            raise Rejected(f"at most {MAX_METRICS_PER_READING} metrics per reading")
    return [
        Reading(
            site_id,
            sensor_id,
            str(metric),
            ts_ms,
            _value(str(metric), value),
            sensor.room,
            sensor.sensor_type,
        )
        for metric, value in metrics.items()
    ]
