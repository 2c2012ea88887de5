"""A site's series to forecast, from the telemetry rollups: consumption (grid + generation -
battery, by ems.overview.flows), PV generation, or one sensor's power, in kW a 15-minute bucket.
Pure Python (the stored-forecast reads use it for the naive fallback without numpy)."""

from __future__ import annotations

import math
from functools import partial

from ems.core.errors import NotFound
from ems.core.pagination import MAX_LIMIT, every
from ems.forecast.models import SLOT_MINUTES, Target
from ems.forecast.ports import Rollups, SiteDirectory
from ems.overview.flows import FLOW_OF_SENSOR_TYPE, POWER_METRIC

SLOT_MS = SLOT_MINUTES * 60_000
ROLLUP_RESOLUTION = "15m"


def sensors_of(sites: SiteDirectory, site_id: str, target: Target, sensor_id: str | None) -> dict[str, str]:
    """The sensors the series is made of, each with its flow ("grid", "generation", "battery", or
    "sensor" for one sensor's own series). Empty: the site has none."""
    sensors = list(every(partial(sites.list_sensors, site_id, None, None, MAX_LIMIT)))
    if sensor_id is not None:
        if not any(s.sensor_id == sensor_id for s in sensors):
            raise NotFound(f"no sensor {sensor_id!r} at site {site_id!r}", "sensor_id")
        return {sensor_id: "sensor"}
    flows: dict[str, str] = {
        s.sensor_id: FLOW_OF_SENSOR_TYPE[s.sensor_type]
        for s in sensors
        if s.sensor_type in FLOW_OF_SENSOR_TYPE
    }
    if target == "generation":
        return {i: f for i, f in flows.items() if f == "generation"}
    return flows if "grid" in flows.values() else {}


def series_kw(
    sites: SiteDirectory,
    rollups: Rollups,
    site_id: str,
    target: Target,
    sensor_id: str | None,
    start_ms: int,
    end_ms: int,
) -> list[float]:
    """kW in each 15-minute slot of [start_ms, end_ms) (start_ms on a slot), NaN where a sensor of
    the series has no bucket (consumption needs every one of its sensors, as the overview's does)."""
    members = sensors_of(sites, site_id, target, sensor_id)
    slots = (end_ms - start_ms) // SLOT_MS
    if not members:
        return [math.nan] * slots
    buckets = rollups.read_rollups(
        site_id, sorted(members), POWER_METRIC, ROLLUP_RESOLUTION, start_ms, end_ms
    )
    out: list[float] = []
    for k in range(slots):
        at = start_ms + k * SLOT_MS
        total = 0.0
        for sid, flow in members.items():
            bucket = buckets.get(sid, {}).get(at)
            if bucket is None or bucket.count == 0:
                total = math.nan
                break
            kw = bucket.sum / bucket.count / 1000
            if flow == "generation":
                kw = max(kw, 0.0)  # a standby draw is no generation
            total += -kw if flow == "battery" else kw
        out.append(total)
    return out
