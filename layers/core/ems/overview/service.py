"""The site snapshot of GET /api/v1/overview: power now, energy today, rooms, sensor counts.

It has no store of its own: it reads the registry (the site, its rooms and sensors), each sensor's
newest reading (ems.telemetry's sensor status) and the 15-minute rollups of the power sensors.

Alerts, demand response, market and forecast are left out of the answer, not filled with made-up
numbers: their issues add them here when those domains exist.

DynamoDB calls per request, whatever the time of day: one GetItem (the site), one Query per 200
rooms and per 200 sensors, one BatchGetItem per 100 sensors (newest readings) and one Query per
power sensor (at most 96 rollup items each, run in parallel). No scan, no raw readings.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, TypeVar
from zoneinfo import ZoneInfo

from ems.auth.models import Claims
from ems.core.clock import Clock, to_iso, utc_now
from ems.core.pagination import MAX_LIMIT, Page
from ems.overview.models import EnergyToday, Overview, PowerNow, RoomNow, SensorCounts
from ems.registry.models import Room, Sensor
from ems.registry.store import RegistryStore
from ems.telemetry import sharing
from ems.telemetry.rollup import WIDTH_MS, Bucket
from ems.telemetry.status import Heard, iso_ms, status_of
from ems.telemetry.store import TelemetryStore

Flow = Literal["grid", "generation", "battery"]
FLOWS: tuple[Flow, ...] = ("grid", "generation", "battery")

# ---------------------------------------------------------------- the mapping, defined once
#
# Which sensors measure which power flow, by sensor_type, and the sign of their `power_w`:
#   meter, main_meter             -> grid: net power at the grid connection, > 0 import, < 0 export
#   pv_inverter, pv               -> generation: > 0 generated (a negative standby draw counts as 0)
#   battery_inverter, battery     -> battery: > 0 charging, < 0 discharging; `soc_pct` its charge
# Several sensors of one flow add up (a site with two grid connections, two PV strings). A submeter
# or a load (hvac, ev_charger, ...) is none of these: its power is already inside the meter's.
# The energy balance that ties them together, at every instant and for every interval:
#   consumption = grid + generation - battery  (= import - export + generation - charge + discharge)
FLOW_OF_SENSOR_TYPE: dict[str, Flow] = {
    "meter": "grid",
    "main_meter": "grid",
    "pv_inverter": "generation",
    "pv": "generation",
    "battery_inverter": "battery",
    "battery": "battery",
}
POWER_METRIC = "power_w"
SOC_METRIC = "soc_pct"
# A room's climate and occupancy by sensor_type, and the metric each gives. A sensor of the type
# that reports one `value` (the original dashboard's sensors) counts too. Several sensors of one
# type in a room are averaged. By type, not metric: a water heater in the lobby has a
# temperature_c too, and it is not the lobby's.
ROOM_METRIC_OF_SENSOR_TYPE: dict[str, str] = {
    "temperature": "temperature_c",
    "humidity": "humidity_pct",
    "co2": "co2_ppm",
    "occupancy": "occupancy",
}
# Energy comes from 15-minute rollups of power: every time zone's midnight falls on a quarter hour,
# so the site's local day is whole buckets (1 d rollups are UTC days), and netting each quarter hour
# splits import from export and charge from discharge (a day's mean of net power could not).
ENERGY_RESOLUTION = "15m"
BUCKET_MS = WIDTH_MS[ENERGY_RESOLUTION]
MS_PER_HOUR = 3_600_000
DIGITS = 3


class LatestReadings(Protocol):
    """Each sensor's newest reading (ems.telemetry.store.SensorStatusStore)."""

    def get(self, site_id: str, sensor_ids: Iterable[str]) -> dict[str, Heard]: ...


@dataclass(frozen=True)
class Stores:
    registry: RegistryStore
    telemetry: TelemetryStore
    latest: LatestReadings


# ---------------------------------------------------------------- pure parts


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, DIGITS) + 0.0  # + 0.0: no -0.0


def _positive(value: float) -> float:
    return max(value, 0.0)


def flows_of(sensors: Iterable[Sensor]) -> dict[Flow, list[str]]:
    """The sensor ids of each flow (FLOW_OF_SENSOR_TYPE), sorted; flows without sensors absent."""
    found: dict[Flow, list[str]] = defaultdict(list)
    for sensor in sensors:
        flow = FLOW_OF_SENSOR_TYPE.get(sensor.sensor_type)
        if flow is not None:
            found[flow].append(sensor.sensor_id)
    return {flow: sorted(ids) for flow, ids in found.items()}


def power_now(flows: dict[Flow, list[str]], newest: dict[str, Heard]) -> PowerNow:
    """Power flows from `newest` (the readings of online sensors only). A flow is known when every
    one of its sensors gave `power_w`; consumption when the grid is and no other flow is unknown."""
    kw: dict[Flow, float | None] = {}
    used: list[Heard] = []
    for flow, ids in flows.items():
        heard = [newest.get(i) for i in ids]
        if any(h is None or POWER_METRIC not in h.metrics for h in heard):
            kw[flow] = None
            continue
        values = [h.metrics[POWER_METRIC] / 1000 for h in heard if h is not None]
        kw[flow] = sum(_positive(v) for v in values) if flow == "generation" else sum(values)
        used.extend(h for h in heard if h is not None)
    grid, generation, battery = kw.get("grid"), kw.get("generation"), kw.get("battery")
    consumption = None
    if grid is not None and all(kw[f] is not None for f in kw):
        consumption = grid + (generation or 0.0) - (battery or 0.0)
    socs = [h.metrics[SOC_METRIC] for i in flows.get("battery", []) if (h := newest.get(i)) and SOC_METRIC in h.metrics]  # fmt: skip
    return PowerNow(
        consumption_kw=_round(consumption), generation_kw=_round(generation), grid_kw=_round(grid),
        grid_import_kw=_round(None if grid is None else _positive(grid)),
        grid_export_kw=_round(None if grid is None else _positive(-grid)),
        battery_kw=_round(battery),
        battery_charge_kw=_round(None if battery is None else _positive(battery)),
        battery_discharge_kw=_round(None if battery is None else _positive(-battery)),
        battery_soc_pct=_round(sum(socs) / len(socs)) if socs else None,
        as_of=iso_ms(min(h.ts_ms for h in used)) if used else None,
        sensors={flow: list(ids) for flow, ids in flows.items()},
    )  # fmt: skip


def flow_kw_by_bucket(sensor_ids: list[str], rollups: dict[str, dict[int, Bucket]]) -> dict[int, float]:
    """A flow's mean power (kW) in each bucket: the sum over its sensors of each one's mean."""
    out: dict[int, float] = defaultdict(float)
    for sensor_id in sensor_ids:
        for start, bucket in rollups.get(sensor_id, {}).items():
            out[start] += bucket.sum / bucket.count / 1000
    return dict(out)


def energy_today(
    flows: dict[Flow, list[str]], rollups: dict[str, dict[int, Bucket]], start_ms: int, end_ms: int
) -> EnergyToday:
    """kWh of each flow in [start_ms, end_ms) from 15-minute buckets of power: a bucket's mean power
    holds for the part of it inside the window (the current quarter hour counts up to `end_ms`).
    Each quarter hour is netted first, then split by sign (import or export, charge or discharge).
    A rollup does not keep its first reading's time, so a sensor that starts reporting within a quarter
    hour is counted from that quarter hour's start: at most 15 minutes of its power too much, once."""
    kw = {flow: flow_kw_by_bucket(ids, rollups) for flow, ids in flows.items()}

    def hours(start: int) -> float:
        return max(0, min(start + BUCKET_MS, end_ms) - max(start, start_ms)) / MS_PER_HOUR

    def total(flow: Flow, part: Callable[[float], float]) -> float | None:
        if flow not in kw or not kw[flow]:
            return None
        return sum(part(v) * hours(b) for b, v in kw[flow].items())

    consumption = None
    if kw.get("grid"):
        generation, battery = kw.get("generation", {}), kw.get("battery", {})
        consumption = sum(
            (v + _positive(generation.get(b, 0.0)) - battery.get(b, 0.0)) * hours(b) for b, v in kw["grid"].items()
        )  # fmt: skip
    return EnergyToday(
        start=iso_ms(start_ms), end=iso_ms(end_ms), consumption_kwh=_round(consumption),
        generation_kwh=_round(total("generation", _positive)),
        grid_import_kwh=_round(total("grid", _positive)),
        grid_export_kwh=_round(total("grid", lambda v: _positive(-v))),
        battery_charge_kwh=_round(total("battery", _positive)),
        battery_discharge_kwh=_round(total("battery", lambda v: _positive(-v))),
    )  # fmt: skip


def room_now(room: Room, sensors: list[Sensor], newest: dict[str, Heard] | None) -> RoomNow:
    """A room's climate and occupancy from its sensors' newest readings (None: the caller may not see
    them); `sensor_count` counts every sensor of the room, reporting or not."""
    values: dict[str, list[float]] = defaultdict(list)
    updated: list[int] = []
    for sensor in sensors if newest is not None else []:
        metric = ROOM_METRIC_OF_SENSOR_TYPE.get(sensor.sensor_type)
        heard = newest.get(sensor.sensor_id) if metric and newest is not None else None
        if metric is None or heard is None:
            continue
        value = heard.metrics.get(metric, heard.metrics.get("value"))
        if value is not None:
            values[metric].append(value)
            updated.append(heard.ts_ms)
    mean = {metric: sum(v) / len(v) for metric, v in values.items()}
    return RoomNow(
        name=room.name, floor=room.floor, sensor_count=len(sensors),
        temperature_c=_round(mean.get("temperature_c")), humidity_pct=_round(mean.get("humidity_pct")),
        co2_ppm=_round(mean.get("co2_ppm")), occupancy=_round(mean.get("occupancy")),
        updated_at=iso_ms(max(updated)) if updated else None,
    )  # fmt: skip


def local_midnight(now: datetime, timezone: str) -> datetime:
    """The start of `now`'s day in the site's time zone."""
    local = now.astimezone(ZoneInfo(timezone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


# ---------------------------------------------------------------- the snapshot

T = TypeVar("T")


def _every(read: Callable[[str | None], Page[T]]) -> list[T]:
    items: list[T] = []
    token: str | None = None
    while True:
        page = read(token)
        items.extend(page.items)
        token = page.next_token
        if not token:
            return items


def site_overview(site_id: str, caller: Claims, s: Stores, now: Clock = utc_now) -> Overview:
    """The snapshot of API.md's GET /api/v1/overview, within the caller's data-sharing limits: live
    values (power now, rooms' newest readings) need a token that may read raw readings with no
    embargo, rooms' values one that may see rooms; energy today counts only quarter hours that end
    before an embargo's cut."""
    moment = now()
    site = s.registry.get_site(site_id)
    rooms = _every(lambda token: s.registry.list_rooms(site_id, MAX_LIMIT, token))
    sensors = _every(lambda token: s.registry.list_sensors(site_id, None, None, MAX_LIMIT, token))
    newest = s.latest.get(site_id, [x.sensor_id for x in sensors]) if sensors else {}

    statuses = {x.sensor_id: status_of(newest.get(x.sensor_id), x.expected_interval_seconds, moment) for x in sensors}  # fmt: skip
    online = {i: h for i, h in newest.items() if statuses.get(i) == "online"}
    live = caller.time_aggregation == "raw" and caller.embargo_minutes == 0
    flows = flows_of(sensors)

    start_ms = int(local_midnight(moment, site.timezone).timestamp() * 1000)
    end_ms = int(moment.timestamp() * 1000)
    cutoff = sharing.cutoff_ms(caller, moment)
    if cutoff is not None:  # whole quarter hours only, so no bucket carries an embargoed reading
        end_ms = min(end_ms, cutoff - cutoff % BUCKET_MS)
    power_ids = [i for ids in flows.values() for i in ids]
    rollups = (
        s.telemetry.read_rollups(site_id, power_ids, POWER_METRIC, ENERGY_RESOLUTION, start_ms, end_ms)
        if power_ids and end_ms > start_ms
        else {}
    )

    by_room: dict[str, list[Sensor]] = defaultdict(list)
    for sensor in sensors:
        if sensor.room is not None:
            by_room[sensor.room].append(sensor)
    room_values = online if live and caller.data_aggregation != "site" else None
    counts = SensorCounts(total=len(sensors))
    for status in statuses.values():
        setattr(counts, status, getattr(counts, status) + 1)
    return Overview(
        site_id=site.site_id, name=site.name, timezone=site.timezone, generated_at=to_iso(moment),
        power=power_now(flows, online) if live else PowerNow(sensors={f: list(i) for f, i in flows.items()}),
        energy_today=energy_today(flows, rollups, start_ms, max(start_ms, end_ms)),
        rooms=[room_now(room, by_room.get(room.name, []), room_values) for room in rooms],
        sensors=counts,
    )  # fmt: skip
