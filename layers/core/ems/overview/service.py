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
from datetime import UTC, datetime
from functools import partial
from zoneinfo import ZoneInfo

from ems.auth.models import Claims
from ems.core.clock import Clock, iso_ms, parse_time, to_iso, utc_now
from ems.core.errors import BadRequest, Invalid
from ems.core.pagination import MAX_LIMIT, every
from ems.overview.flows import FLOW_OF_SENSOR_TYPE, POWER_METRIC, Flow
from ems.overview.models import (
    EnergyQuery,
    EnergyReport,
    EnergyToday,
    LatestOfType,
    Overview,
    PowerNow,
    RoomDetail,
    RoomNow,
    SensorCounts,
    Summary,
)
from ems.overview.ports import OpenAlerts, Rollups, SiteDirectory, TariffSource
from ems.registry.models import Room, Sensor, Site
from ems.registry.status import Heard, LatestReadings, Status, status_of
from ems.tariffs.models import default_tariff, price_at
from ems.telemetry import sharing
from ems.telemetry.models import ROOM_METRIC_OF_SENSOR_TYPE
from ems.telemetry.rollup import WIDTH_MS, Bucket

# Which sensors measure which flow: ems.overview.flows (the mapping and the energy balance, once).
SOC_METRIC = "soc_pct"
# Energy comes from 15-minute rollups of power: every time zone's midnight falls on a quarter hour,
# so the site's local day is whole buckets (1 d rollups are UTC days), and netting each quarter hour
# splits import from export and charge from discharge (a day's mean of net power could not).
ENERGY_RESOLUTION = "15m"
BUCKET_MS = WIDTH_MS[ENERGY_RESOLUTION]
MS_PER_HOUR = 3_600_000
DIGITS = 3


@dataclass(frozen=True)
class Stores:
    registry: SiteDirectory
    telemetry: Rollups
    latest: LatestReadings
    tariffs: TariffSource | None = None  # None: the default tariff (ems.tariffs.models.default_tariff)
    alerts: OpenAlerts | None = None  # None: alerts are not counted


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


def kwh(kw_by_bucket: dict[int, float], start_ms: int, end_ms: int, part: Callable[[float], float]) -> float:
    """kWh in [start_ms, end_ms) of a power series in 15-minute buckets (kW, the bucket's mean): each
    bucket's `part` of its mean (e.g. only import) holds for the part of the bucket inside the window."""

    def hours(start: int) -> float:
        return max(0, min(start + BUCKET_MS, end_ms) - max(start, start_ms)) / MS_PER_HOUR

    return sum(part(v) * hours(b) for b, v in kw_by_bucket.items())


def energy_today(
    flows: dict[Flow, list[str]], rollups: dict[str, dict[int, Bucket]], start_ms: int, end_ms: int
) -> EnergyToday:
    """kWh of each flow in [start_ms, end_ms) from 15-minute buckets of power (`kwh`; the current
    quarter hour counts up to `end_ms`). Each quarter hour is netted first, then split by sign
    (import or export, charge or discharge). A rollup does not keep its first reading's time, so a
    sensor that starts reporting within a quarter hour is counted from that quarter hour's start: at
    most 15 minutes of its power too much, once."""
    kw = {flow: flow_kw_by_bucket(ids, rollups) for flow, ids in flows.items()}

    def total(flow: Flow, part: Callable[[float], float]) -> float | None:
        if flow not in kw or not kw[flow]:
            return None
        return kwh(kw[flow], start_ms, end_ms, part)

    consumption = None
    if kw.get("grid"):
        generation, battery = kw.get("generation", {}), kw.get("battery", {})
        net = {b: v + _positive(generation.get(b, 0.0)) - battery.get(b, 0.0) for b, v in kw["grid"].items()}
        consumption = kwh(net, start_ms, end_ms, lambda v: v)
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


@dataclass(frozen=True)
class _Snapshot:
    """What every read of this module starts from: the site, its rooms and sensors, their newest
    readings and statuses, and what the caller may see of them live."""

    site: Site
    rooms: list[Room]
    sensors: list[Sensor]
    newest: dict[str, Heard]
    statuses: dict[str, Status]
    moment: datetime
    # Live values (newest readings) need a token that may read raw readings with no embargo.
    live: bool

    @property
    def online(self) -> dict[str, Heard]:
        return {i: h for i, h in self.newest.items() if self.statuses.get(i) == "online"}

    def sensor_counts(self) -> SensorCounts:
        counts = SensorCounts(total=len(self.sensors))
        for status in self.statuses.values():
            setattr(counts, status, getattr(counts, status) + 1)
        return counts

    def by_room(self) -> dict[str, list[Sensor]]:
        found: dict[str, list[Sensor]] = defaultdict(list)
        for sensor in self.sensors:
            if sensor.room is not None:
                found[sensor.room].append(sensor)
        return found


def _snapshot(site_id: str, caller: Claims, s: Stores, moment: datetime) -> _Snapshot:
    site = s.registry.get_site(site_id)
    rooms = list(every(partial(s.registry.list_rooms, site_id, MAX_LIMIT)))
    sensors = list(every(partial(s.registry.list_sensors, site_id, None, None, MAX_LIMIT)))
    newest = s.latest.get(site_id, [x.sensor_id for x in sensors]) if sensors else {}
    statuses = {x.sensor_id: status_of(newest.get(x.sensor_id), x.expected_interval_seconds, moment) for x in sensors}  # fmt: skip
    live = caller.sees_live()
    return _Snapshot(site, rooms, sensors, newest, statuses, moment, live)


def _today(site: Site, caller: Claims, moment: datetime) -> tuple[int, int]:
    """[local midnight, now) in epoch ms; under an embargo it ends at the last whole quarter hour
    before the cut, so no bucket carries an embargoed reading."""
    start_ms = int(local_midnight(moment, site.timezone).timestamp() * 1000)
    end_ms = int(moment.timestamp() * 1000)
    cutoff = sharing.cutoff_ms(caller, moment)
    if cutoff is not None:
        end_ms = min(end_ms, cutoff - cutoff % BUCKET_MS)
    return start_ms, max(start_ms, end_ms)


def _power_rollups(
    site_id: str, sensor_ids: list[str], start_ms: int, end_ms: int, s: Stores
) -> dict[str, dict[int, Bucket]]:
    if not sensor_ids or end_ms <= start_ms:
        return {}
    return s.telemetry.read_rollups(site_id, sensor_ids, POWER_METRIC, ENERGY_RESOLUTION, start_ms, end_ms)


def site_overview(site_id: str, caller: Claims, s: Stores, now: Clock = utc_now) -> Overview:
    """The snapshot of API.md's GET /api/v1/overview, within the caller's data-sharing limits: live
    values (power now, rooms' newest readings) need a token that may read raw readings with no
    embargo, rooms' values one that may see rooms; energy today counts only quarter hours that end
    before an embargo's cut."""
    snap = _snapshot(site_id, caller, s, now())
    flows = flows_of(snap.sensors)
    start_ms, end_ms = _today(snap.site, caller, snap.moment)
    rollups = _power_rollups(site_id, [i for ids in flows.values() for i in ids], start_ms, end_ms, s)
    by_room = snap.by_room()
    room_values = snap.online if snap.live and caller.data_aggregation != "site" else None
    return Overview(
        site_id=snap.site.site_id, name=snap.site.name, timezone=snap.site.timezone,
        generated_at=to_iso(snap.moment),
        power=power_now(flows, snap.online) if snap.live else PowerNow(sensors={f: list(i) for f, i in flows.items()}),
        energy_today=energy_today(flows, rollups, start_ms, end_ms),
        rooms=[room_now(room, by_room.get(room.name, []), room_values) for room in snap.rooms],
        sensors=snap.sensor_counts(),
    )  # fmt: skip


def room_detail(site_id: str, name: str, caller: Claims, s: Stores, now: Clock = utc_now) -> RoomDetail:
    """API.md's GET /api/v1/rooms/{name}: the room with its live metrics. Live values follow the
    overview's rules; a token that sees only the whole site gets the room without numbers."""
    moment = now()
    room = s.registry.get_room(site_id, name)
    site = s.registry.get_site(site_id)
    sensors = list(every(partial(s.registry.list_sensors, site_id, name, None, MAX_LIMIT)))
    ids = [x.sensor_id for x in sensors]
    newest = s.latest.get(site_id, ids) if ids else {}
    online = {
        x.sensor_id: newest[x.sensor_id] for x in sensors
        if status_of(newest.get(x.sensor_id), x.expected_interval_seconds, moment) == "online"
    }  # fmt: skip
    sees_rooms = caller.data_aggregation != "site"
    live = sees_rooms and caller.sees_live()
    now_values = room_now(room, sensors, online if live else None)
    powers = [h.metrics[POWER_METRIC] / 1000 for h in online.values() if POWER_METRIC in h.metrics]
    energy = None
    if sees_rooms:
        start_ms, end_ms = _today(site, caller, moment)
        rollups = _power_rollups(site_id, ids, start_ms, end_ms, s)
        by_bucket = flow_kw_by_bucket(ids, rollups)
        energy = kwh(by_bucket, start_ms, end_ms, lambda v: v) if by_bucket else None
    return RoomDetail(
        site_id=site_id, name=room.name, floor=room.floor, capacity=room.capacity, area_m2=room.area_m2,
        description=room.description, created_at=to_iso(room.created_at), updated_at=to_iso(room.updated_at),
        temperature_c=now_values.temperature_c, humidity_pct=now_values.humidity_pct,
        co2_ppm=now_values.co2_ppm, occupancy=now_values.occupancy,
        power_kw=_round(sum(powers)) if live and powers else None,
        energy_today_kwh=_round(energy), sensor_count=len(sensors),
        device_count=len({x.device_id for x in sensors if x.device_id}),
        live_at=now_values.updated_at,
    )  # fmt: skip


def summary(site_id: str, caller: Claims, s: Stores, now: Clock = utc_now) -> Summary:
    """API.md's GET /api/v1/analytics/summary. The newest reading of each sensor type is one sensor's
    reading, so it needs a token that sees per-sensor data live."""
    snap = _snapshot(site_id, caller, s, now())
    by_type: dict[str, int] = defaultdict(int)
    latest: dict[str, tuple[str, Heard]] = {}
    for sensor in snap.sensors:
        by_type[sensor.sensor_type] += 1
        heard = snap.newest.get(sensor.sensor_id)
        held = latest.get(sensor.sensor_type)
        if heard is not None and (held is None or heard.ts_ms > held[1].ts_ms):
            latest[sensor.sensor_type] = (sensor.sensor_id, heard)
    per_sensor = snap.live and caller.data_aggregation == "raw"
    by_room = snap.by_room()
    room_values = snap.online if snap.live and caller.data_aggregation != "site" else None
    return Summary(
        site_id=site_id, generated_at=to_iso(snap.moment), room_count=len(snap.rooms),
        sensors=snap.sensor_counts(), sensors_by_type=dict(sorted(by_type.items())),
        latest_by_type={
            kind: LatestOfType(sensor_id=sensor_id, ts=iso_ms(heard.ts_ms), metrics=dict(heard.metrics))
            for kind, (sensor_id, heard) in sorted(latest.items())
        } if per_sensor else None,
        rooms=[room_now(room, by_room.get(room.name, []), room_values) for room in snap.rooms],
        open_alerts=s.alerts.count_open(site_id) if s.alerts is not None else None,
    )  # fmt: skip


# A year of quarter hours per power sensor is at most 35,136 rollup items: the longest period asked.
MAX_ENERGY_DAYS = 366


def energy_report(
    site_id: str, q: EnergyQuery, caller: Claims, s: Stores, now: Clock = utc_now
) -> EnergyReport:
    """API.md's GET /api/v1/analytics/energy (formulas on EnergyReport). Whole-site figures, so any
    data aggregation may read them; an embargo ends the period at the last whole quarter hour before
    its cut."""
    moment = now()
    site = s.registry.get_site(site_id)
    start_ms, end_ms = _today(site, caller, moment)
    if q.start_time is not None:
        start_ms = int(parse_time(q.start_time, "start_time").timestamp() * 1000)
    if q.end_time is not None:
        end_ms = int(parse_time(q.end_time, "end_time").timestamp() * 1000)
    if end_ms <= start_ms:
        raise Invalid("must be after start_time", "end_time")
    if end_ms - start_ms > MAX_ENERGY_DAYS * 86_400_000:
        raise BadRequest(f"at most {MAX_ENERGY_DAYS} days at a time", "end_time")
    cutoff = sharing.cutoff_ms(caller, moment)
    if cutoff is not None:
        end_ms = max(start_ms, min(end_ms, cutoff - cutoff % BUCKET_MS))

    sensors = list(every(partial(s.registry.list_sensors, site_id, None, None, MAX_LIMIT)))
    flows = flows_of(sensors)
    first_bucket = start_ms - start_ms % BUCKET_MS
    rollups = _power_rollups(site_id, [i for ids in flows.values() for i in ids], first_bucket, end_ms, s)
    totals = energy_today(flows, rollups, start_ms, end_ms)
    stored = s.tariffs.get_tariff(site_id) if s.tariffs is not None else None
    tariff = stored or default_tariff()
    report = EnergyReport(
        **totals.model_dump(), currency=tariff.currency or site.currency, tariff_is_default=stored is None
    )
    grid = flow_kw_by_bucket(flows.get("grid", []), rollups)
    if not grid:
        return report

    def hours(start: int) -> float:
        return max(0, min(start + BUCKET_MS, end_ms) - max(start, start_ms)) / MS_PER_HOUR

    energy_cost, peak_kw, peak_at = 0.0, 0.0, None
    for bucket, kw in sorted(grid.items()):
        at = datetime.fromtimestamp(bucket / 1000, UTC)
        energy_cost += _positive(kw) * hours(bucket) * price_at(tariff.import_price, at, site.timezone)
        energy_cost -= _positive(-kw) * hours(bucket) * price_at(tariff.export_price, at, site.timezone)
        if kw > peak_kw:
            peak_kw, peak_at = kw, bucket
    demand_cost = peak_kw * (tariff.demand_charge_per_kw or 0.0)
    imported, exported = totals.grid_import_kwh or 0.0, totals.grid_export_kwh or 0.0
    generation, consumption = totals.generation_kwh, totals.consumption_kwh
    return report.model_copy(
        update={
            "self_consumption_pct": _round(100 * _positive(generation - exported) / generation) if generation else None,
            "self_sufficiency_pct": _round(100 * _positive(consumption - imported) / consumption) if consumption else None,
            "co2_kg": _round(imported * tariff.co2_kg_per_kwh) if tariff.co2_kg_per_kwh is not None else None,
            "energy_cost": _round(energy_cost), "demand_cost": _round(demand_cost),
            "cost": _round(energy_cost + demand_cost), "peak_demand_kw": _round(peak_kw),
            "peak_demand_at": iso_ms(peak_at) if peak_at is not None else None,
        }
    )  # fmt: skip
