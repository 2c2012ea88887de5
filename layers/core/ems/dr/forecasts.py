"""# MERGE: replace with ems.forecast's store (the forecasting domain's Forecasts).

Until it lands, the seasonal-naive rule: each 15-minute slot's forecast is the same slot a week
earlier, from the 15-minute rollups of the site's meters' power (grid meters for consumption, PV
inverters for generation; consumption = grid + generation, as ems.overview balances it when the
site has no battery). A slot without readings is None."""

from __future__ import annotations

from datetime import datetime, timedelta

from ems.core.pagination import MAX_LIMIT, every
from ems.dr.ports import Rollups, SiteDirectory

SLOT_MS = 900_000
WEEK = timedelta(days=7)
GRID_TYPES = ("meter", "main_meter")
PV_TYPES = ("pv_inverter", "pv")


class SeasonalNaiveForecasts:
    def __init__(self, sites: SiteDirectory, rollups: Rollups) -> None:
        self._sites, self._rollups = sites, rollups

    def _mean_kw(self, site: str, types: tuple[str, ...], start: datetime, slots: int) -> list[float | None]:
        sensors = [
            x.sensor_id
            for x in every(lambda t: self._sites.list_sensors(site, None, None, MAX_LIMIT, t))
            if x.sensor_type in types
        ]
        first = int((start - WEEK).timestamp() * 1000) // SLOT_MS * SLOT_MS
        read = (
            self._rollups.read_rollups(site, sensors, "power_w", "15m", first, first + slots * SLOT_MS)
            if sensors
            else {}
        )
        out: list[float | None] = []
        for i in range(slots):
            slot = first + i * SLOT_MS
            buckets = [read.get(x, {}).get(slot) for x in sensors]
            if not sensors or any(b is None or b.count == 0 for b in buckets):
                out.append(None)
                continue
            out.append(sum(b.sum / b.count for b in buckets if b is not None) / 1000)
        return out

    def consumption_kw(self, site: str, start: datetime, slots: int) -> list[float | None]:
        grid = self._mean_kw(site, GRID_TYPES, start, slots)
        pv = self._mean_kw(site, PV_TYPES, start, slots)
        return [None if g is None else g + (p or 0.0) for g, p in zip(grid, pv, strict=True)]

    def generation_kw(self, site: str, start: datetime, slots: int) -> list[float | None]:
        return self._mean_kw(site, PV_TYPES, start, slots)
