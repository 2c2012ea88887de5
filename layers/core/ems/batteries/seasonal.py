"""The seasonal-naive forecast the forecasting domain serves, read here until it lands: the load and
PV of each 15-minute slot are those of the same slot a week earlier, from the telemetry rollups.

# MERGE: replace with ems.forecast's store (the forecasting domain's Forecasts), wired in
# functions/optimizer/app.py; this module then goes.

Flows by sensor type as the overview defines them (ems.overview.service, FLOW_OF_SENSOR_TYPE): the
meter's power_w is the grid (> 0 import), the PV inverter's generation, the battery inverter's the
battery (> 0 charging); load = grid + generation - battery, so it is the site without its batteries.
A slot without readings a week ago counts as 0 kW.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial

from ems.batteries.ports import Rollups, SiteDirectory
from ems.core.pagination import MAX_LIMIT, every

WEEK = timedelta(days=7)
QUARTER_MS = 15 * 60_000
FLOW_OF_SENSOR_TYPE = {
    "meter": "grid", "main_meter": "grid", "pv_inverter": "generation", "pv": "generation",
    "battery_inverter": "battery", "battery": "battery",
}  # fmt: skip


class SeasonalNaiveForecasts:
    """Forecasts of ems.batteries.ports: the same slot last week."""

    def __init__(self, sites: SiteDirectory, rollups: Rollups) -> None:
        self._sites, self._rollups = sites, rollups

    def _flows(self, site: str, start: datetime, slots: int) -> dict[str, list[float]]:
        by_flow: dict[str, list[str]] = {}
        for sensor in every(partial(self._sites.list_sensors, site, None, None, MAX_LIMIT)):
            flow = FLOW_OF_SENSOR_TYPE.get(sensor.sensor_type)
            if flow is not None:
                by_flow.setdefault(flow, []).append(sensor.sensor_id)
        first = int((start - WEEK).timestamp() * 1000)
        first -= first % QUARTER_MS
        out = {flow: [0.0] * slots for flow in ("grid", "generation", "battery")}
        for flow, sensor_ids in by_flow.items():
            series = self._rollups.read_rollups(
                site, sensor_ids, "power_w", "15m", first, first + slots * QUARTER_MS
            )
            for buckets in series.values():
                for bucket_start, b in buckets.items():
                    if b.count:
                        out[flow][(bucket_start - first) // QUARTER_MS] += b.sum / b.count / 1000
        return out

    def consumption_kw(self, site: str, start: datetime, slots: int) -> list[float]:
        f = self._flows(site, start, slots)
        return [
            max(0.0, g + max(pv, 0.0) - b)
            for g, pv, b in zip(f["grid"], f["generation"], f["battery"], strict=True)
        ]

    def generation_kw(self, site: str, start: datetime, slots: int) -> list[float]:
        return [max(0.0, pv) for pv in self._flows(site, start, slots)["generation"]]
