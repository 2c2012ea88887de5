"""The site snapshot that GET /api/v1/overview answers (no I/O).

A number is null when no sensor of its kind has given it (or the token may not see it), never 0:
a dashboard must be able to tell "nothing measured" from "nothing flowing".
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class PowerNow(BaseModel):
    """Power flows from each sensor's newest reading (kW). Signs: grid > 0 imports, battery > 0
    charges; the split fields are never negative. consumption = grid + generation - battery."""

    consumption_kw: float | None = None
    generation_kw: float | None = None
    grid_kw: float | None = None
    grid_import_kw: float | None = None
    grid_export_kw: float | None = None
    battery_kw: float | None = None
    battery_charge_kw: float | None = None
    battery_discharge_kw: float | None = None
    battery_soc_pct: float | None = None
    as_of: str | None = None  # the oldest of the readings used
    # Which sensors each flow (grid, generation, battery) is measured by, so a live client can
    # apply their pushed readings to the same sums.
    sensors: dict[str, list[str]] = Field(default_factory=dict)


class EnergyToday(BaseModel):
    """Energy since the site's local midnight (kWh), from 15-minute rollups of power."""

    start: str
    end: str
    consumption_kwh: float | None = None
    generation_kwh: float | None = None
    grid_import_kwh: float | None = None
    grid_export_kwh: float | None = None
    battery_charge_kwh: float | None = None
    battery_discharge_kwh: float | None = None


class RoomNow(BaseModel):
    name: str
    floor: str | None = None
    temperature_c: float | None = None
    humidity_pct: float | None = None
    co2_ppm: float | None = None
    occupancy: float | None = None
    sensor_count: int = 0
    updated_at: str | None = None  # the newest reading among the values shown


class SensorCounts(BaseModel):
    total: int = 0
    online: int = 0
    offline: int = 0
    unknown: int = 0


class Overview(BaseModel):
    site_id: str
    name: str
    timezone: str
    generated_at: str
    power: PowerNow
    energy_today: EnergyToday
    rooms: list[RoomNow]
    sensors: SensorCounts
