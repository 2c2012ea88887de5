"""The site snapshot that GET /api/v1/overview answers (no I/O).

A number is null when no sensor of its kind has given it (or the token may not see it), never 0:
a dashboard must be able to tell "nothing measured" from "nothing flowing".
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from ems.core.models import Model


class PowerNow(Model):
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


class EnergyToday(Model):
    """Energy since the site's local midnight (kWh), from 15-minute rollups of power."""

    start: str
    end: str
    consumption_kwh: float | None = None
    generation_kwh: float | None = None
    grid_import_kwh: float | None = None
    grid_export_kwh: float | None = None
    battery_charge_kwh: float | None = None
    battery_discharge_kwh: float | None = None


class RoomNow(Model):
    name: str
    floor: str | None = None
    temperature_c: float | None = None
    humidity_pct: float | None = None
    co2_ppm: float | None = None
    occupancy: float | None = None
    sensor_count: int = 0
    updated_at: str | None = None  # the newest reading among the values shown


class SensorCounts(Model):
    total: int = 0
    online: int = 0
    offline: int = 0
    unknown: int = 0


class Overview(Model):
    site_id: str
    name: str
    timezone: str
    generated_at: str
    power: PowerNow
    energy_today: EnergyToday
    rooms: list[RoomNow]
    sensors: SensorCounts


class RoomDetail(Model):
    """GET /api/v1/rooms/{name}: the room, and its live metrics. `power_kw` adds the newest `power_w`
    of the room's online sensors, `energy_today_kwh` their 15-minute rollups since the site's local
    midnight. `device_count` counts the distinct devices of the room's sensors (the devices domain
    will count its own); `flexibility_kw` stays null until that domain says what may be shed."""

    site_id: str
    name: str
    floor: str | None = None
    capacity: int | None = None
    area_m2: float | None = None
    description: str | None = None
    created_at: str
    updated_at: str
    temperature_c: float | None = None
    humidity_pct: float | None = None
    co2_ppm: float | None = None
    occupancy: float | None = None
    power_kw: float | None = None
    energy_today_kwh: float | None = None
    sensor_count: int = 0
    device_count: int = 0
    flexibility_kw: float | None = None
    live_at: str | None = None  # the newest reading among the live values shown


class LatestOfType(Model):
    """The newest reading among the sensors of one type."""

    sensor_id: str
    ts: str
    metrics: dict[str, float]


class Summary(Model):
    """GET /api/v1/analytics/summary. Live parts (latest per type, rooms' values) follow the same
    data-sharing rules as the overview; counts are always shown, open alerts included."""

    site_id: str
    generated_at: str
    room_count: int
    sensors: SensorCounts
    sensors_by_type: dict[str, int]
    latest_by_type: dict[str, LatestOfType] | None
    rooms: list[RoomNow]
    open_alerts: int | None = None


class EnergyQuery(Model):
    """GET /api/v1/analytics/energy: a period, by default today in the site's time zone."""

    model_config = ConfigDict(extra="forbid")

    start_time: str | int | float | None = None
    end_time: str | int | float | None = None


class EnergyReport(Model):
    """Energy of a period from 15-minute rollups of power (kWh), and what it cost.

    Per quarter hour: import = max(grid, 0), export = max(-grid, 0) and
    consumption = grid + generation - battery (battery > 0 charging). Over the period:
      self_consumption_pct = (generation - export) / generation: the share of generation used on
        site (charging the battery from it counts as used);
      self_sufficiency_pct = (consumption - import) / consumption: the share of consumption not
        bought from the grid;
      co2_kg = import x the tariff's co2_kg_per_kwh (null without a factor);
      energy_cost = sum of import x import price - export x export price, each at its quarter hour;
      demand_cost = peak_demand_kw x demand_charge_per_kw; cost = energy_cost + demand_cost;
      peak_demand_kw = the highest quarter-hour mean of import.
    """

    start: str
    end: str
    consumption_kwh: float | None = None
    generation_kwh: float | None = None
    grid_import_kwh: float | None = None
    grid_export_kwh: float | None = None
    battery_charge_kwh: float | None = None
    battery_discharge_kwh: float | None = None
    self_consumption_pct: float | None = None
    self_sufficiency_pct: float | None = None
    co2_kg: float | None = None
    energy_cost: float | None = None
    demand_cost: float | None = None
    cost: float | None = None
    currency: str | None = None
    peak_demand_kw: float | None = None
    peak_demand_at: str | None = None
    tariff_is_default: bool = False
