"""Batteries: the records, their state and health from telemetry (within the token's data-sharing
limits), manual charge and discharge checked against the battery's limits and sent to its inverter
device, the fleet summary, and what each battery can give demand response (`dischargeable`).

A battery's readings are those of the site's sensors that report for its inverter device (a sensor
names its device_id): `soc_pct` and `power_w` (> 0 charging).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import partial
from itertools import pairwise
from typing import Any

from pydantic import ValidationError

from ems.auth.models import Claims
from ems.batteries.models import (
    POWER_METRIC,
    SOC_METRIC,
    BatteriesSummary,
    Battery,
    BatteryFields,
    BatteryHealth,
    BatteryIn,
    BatteryState,
    BatteryUpdate,
    BatteryView,
    CommandAccepted,
    Direction,
    DischargeableBattery,
    PlanRun,
    PowerCommand,
)
from ems.batteries.ports import Stores
from ems.core.clock import Clock, iso_ms, parse_time, to_iso, utc_now
from ems.core.errors import Conflict, Invalid
from ems.core.http import invalid_from
from ems.core.pagination import MAX_LIMIT, Page, every
from ems.registry.status import Heard

QUARTER_MS = 15 * 60_000
QUARTER_HOURS = 0.25
# A SoC rise smaller than this says too little of the capacity to count (a 1 % reading step would be
# a 5 % error on a 20 % swing).
MIN_SWING_PCT = 20.0
GRID_SENSOR_TYPES = ("meter", "main_meter")  # the grid connection (the overview's mapping)
# Float slack when checking a command against a limit it was computed from.
LIMIT_SLACK = 1e-9
ONE_DEVICE_LIVE = "this token does not see one device's live readings"
SOC_WITHHELD = "this token does not see the battery's live readings, so the largest power is not shown"


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# ---------------------------------------------------------------- records


def check_fields(b: BatteryFields) -> None:
    """The rules between fields; Invalid naming the field."""
    if b.soc_min_pct >= b.soc_max_pct:
        raise Invalid("must be below soc_max_pct", "soc_min_pct")
    if b.taper_start_soc_pct is not None and not b.soc_min_pct <= b.taper_start_soc_pct < b.soc_max_pct:
        raise Invalid("must be in [soc_min_pct, soc_max_pct)", "taper_start_soc_pct")
    if b.taper_end_kw > b.max_charge_kw:
        raise Invalid("must not exceed max_charge_kw", "taper_end_kw")


def create_battery(site: str, new: BatteryIn, s: Stores, now: Clock = utc_now) -> Battery:
    check_fields(new)
    s.sites.get_site(site)  # 404 for an unknown site
    at = to_iso(now())
    return s.batteries.create(Battery(**new.model_dump(), site_id=site, created_at=at, updated_at=at))


def update_battery(
    site: str, battery_id: str, change: BatteryUpdate, s: Stores, now: Clock = utc_now
) -> Battery:
    """The fields given replace the stored ones; the whole battery is checked again (422 naming it)."""
    stored = s.batteries.get(site, battery_id)
    merged = {**stored.model_dump(), **change.model_dump(include=change.model_fields_set)}
    try:
        fields = BatteryFields.model_validate({k: merged[k] for k in BatteryFields.model_fields})
    except ValidationError as exc:
        raise invalid_from(exc) from exc
    check_fields(fields)
    return s.batteries.replace(stored.model_copy(update={**fields.model_dump(), "updated_at": to_iso(now())}))


def delete_battery(site: str, battery_id: str, s: Stores) -> dict[str, bool]:
    s.batteries.delete(site, battery_id)
    return {"deleted": True}


def list_batteries(
    site: str, limit: int, next_token: str | None, caller: Claims, s: Stores, now: Clock = utc_now
) -> Page[BatteryView]:
    """A page of batteries, each with its state (health is GET /batteries/{id}'s)."""
    page = s.batteries.page(site, limit, next_token)
    moment = now()
    readings = _readings(site, page.items, s)
    items = [
        BatteryView(**b.model_dump(), state=_state(b, readings.get(b.battery_id), caller, moment))
        for b in page.items
    ]
    return Page[BatteryView](items=items, count=len(items), next_token=page.next_token)


def get_battery(site: str, battery_id: str, caller: Claims, s: Stores, now: Clock = utc_now) -> BatteryView:
    battery = s.batteries.get(site, battery_id)
    moment = now()
    heard = _readings(site, [battery], s).get(battery_id)
    return BatteryView(
        **battery.model_dump(),
        state=_state(battery, heard, caller, moment),
        health=_health(site, battery, 30, caller, s, moment),
    )


def battery_health(
    site: str, battery_id: str, days: int, caller: Claims, s: Stores, now: Clock = utc_now
) -> BatteryHealth:
    return _health(site, s.batteries.get(site, battery_id), days, caller, s, now())


# ---------------------------------------------------------------- readings


def _sensors_by_device(site: str, s: Stores) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for sensor in every(partial(s.sites.list_sensors, site, None, None, MAX_LIMIT)):
        if sensor.device_id is not None:
            out.setdefault(sensor.device_id, []).append(sensor.sensor_id)
    return out


def _sensor_ids(site: str, batteries: Iterable[Battery], s: Stores) -> dict[str, list[str]]:
    """Each battery's sensors (those reporting for its inverter device)."""
    by_device = _sensors_by_device(site, s)
    return {b.battery_id: by_device.get(b.device_id, []) if b.device_id else [] for b in batteries}


def _newest(heard: Iterable[Heard]) -> Heard | None:
    """The newest reading that holds a SoC, with power from the same reading where it has one."""
    with_soc = [h for h in heard if SOC_METRIC in h.metrics]
    return max(with_soc, key=lambda h: h.ts_ms, default=None)


def _readings(site: str, batteries: list[Battery], s: Stores) -> dict[str, Heard]:
    sensors = _sensor_ids(site, batteries, s)
    wanted = sorted({i for ids in sensors.values() for i in ids})
    latest = s.latest.get(site, wanted) if wanted else {}
    out: dict[str, Heard] = {}
    for battery_id, ids in sensors.items():
        newest = _newest(latest[i] for i in ids if i in latest)
        if newest is not None:
            out[battery_id] = newest
    return out


def _state(battery: Battery, heard: Heard | None, caller: Claims | None, moment: datetime) -> BatteryState:
    if heard is None:
        return BatteryState()
    if caller is not None and not (
        caller.data_aggregation == "raw"
        and caller.may_see_reading(heard.ts_ms, moment)
        and caller.sees_live()
    ):
        return BatteryState(withheld=ONE_DEVICE_LIVE)
    soc = heard.metrics[SOC_METRIC]
    power_w = heard.metrics.get(POWER_METRIC)
    return BatteryState(
        soc_pct=soc,
        power_kw=None if power_w is None else power_w / 1000,
        stored_kwh=battery.kwh(soc),
        reading_at=iso_ms(heard.ts_ms),
    )


# ---------------------------------------------------------------- health


def _window(days: int, caller: Claims, moment: datetime) -> tuple[int, int]:
    end_ms = _ms(moment)
    cutoff = caller.embargo_cutoff_ms(moment)
    if cutoff is not None:
        end_ms = min(end_ms, cutoff)
    return _ms(moment - timedelta(days=days)), end_ms


def _quarters(
    site: str, sensor_ids: list[str], start_ms: int, end_ms: int, s: Stores
) -> tuple[dict[int, float], dict[int, float]]:
    """Per whole quarter before end_ms: mean power (kW, summed over the sensors) and the last SoC."""
    end_ms -= end_ms % QUARTER_MS  # only quarters the token may see whole
    power_kw: dict[int, float] = {}
    soc_pct: dict[int, float] = {}
    if not sensor_ids or end_ms <= start_ms:
        return power_kw, soc_pct
    for buckets in s.rollups.read_rollups(site, sensor_ids, POWER_METRIC, "15m", start_ms, end_ms).values():
        for start, b in buckets.items():
            if b.count:
                power_kw[start] = power_kw.get(start, 0.0) + b.sum / b.count / 1000
    for buckets in s.rollups.read_rollups(site, sensor_ids, SOC_METRIC, "15m", start_ms, end_ms).values():
        for start, b in buckets.items():
            if b.count and start not in soc_pct:
                soc_pct[start] = b.last
    return power_kw, soc_pct


def measured_capacity_kwh(
    power_kw: dict[int, float], soc_pct: dict[int, float], charge_efficiency: float
) -> tuple[float | None, float]:
    """The capacity the SoC swings show (BatteryHealth's definition) and the SoC rise it counted."""
    stored_kwh = rise_pct = 0.0
    run_kwh = run_rise = 0.0
    starts = sorted(soc_pct)
    for before, start in pairwise(starts):
        charging = (
            start - before == QUARTER_MS and power_kw.get(start, 0.0) > 0 and soc_pct[start] > soc_pct[before]
        )
        if charging:
            run_kwh += power_kw[start] * QUARTER_HOURS * charge_efficiency
            run_rise += soc_pct[start] - soc_pct[before]
            continue
        if run_rise >= MIN_SWING_PCT:
            stored_kwh, rise_pct = stored_kwh + run_kwh, rise_pct + run_rise
        run_kwh = run_rise = 0.0
    if run_rise >= MIN_SWING_PCT:
        stored_kwh, rise_pct = stored_kwh + run_kwh, rise_pct + run_rise
    if rise_pct <= 0:
        return None, 0.0
    return stored_kwh / rise_pct * 100.0, rise_pct


def _health(
    site: str, battery: Battery, days: int, caller: Claims, s: Stores, moment: datetime
) -> BatteryHealth:
    empty = BatteryHealth(battery_id=battery.battery_id, days=days, throughput_kwh=0.0, charged_kwh=0.0,
                          discharged_kwh=0.0, equivalent_full_cycles=0.0)  # fmt: skip
    if caller.data_aggregation != "raw":
        return empty.model_copy(update={"withheld": "this token sees no single device's readings"})
    start_ms, end_ms = _window(days, caller, moment)
    sensor_ids = _sensor_ids(site, [battery], s)[battery.battery_id]
    power_kw, soc_pct = _quarters(site, sensor_ids, start_ms, end_ms, s)
    charged = sum(p for p in power_kw.values() if p > 0) * QUARTER_HOURS
    discharged = -sum(p for p in power_kw.values() if p < 0) * QUARTER_HOURS
    capacity, swing = measured_capacity_kwh(power_kw, soc_pct, battery.charge_efficiency)
    return empty.model_copy(
        update={
            "throughput_kwh": charged + discharged,
            "charged_kwh": charged,
            "discharged_kwh": discharged,
            "equivalent_full_cycles": (charged + discharged) / (2 * battery.capacity_kwh),
            "measured_capacity_kwh": capacity,
            "state_of_health_pct": None if capacity is None else capacity / battery.capacity_kwh * 100.0,
            "swing_pct": swing,
        }
    )


# ---------------------------------------------------------------- commands


def largest_kw(
    battery: BatteryFields, direction: Direction, soc_pct: float, duration_minutes: int
) -> tuple[float, str]:
    """The largest power (kW, grid side) a command of `duration_minutes` may ask for at `soc_pct`,
    and the limit that sets it: the power limit, the taper (at the SoC the charge ends at, the highest
    it passes) or the energy between the SoC now and its bound."""
    hours = duration_minutes / 60
    if direction == "discharge":
        room_kwh = max(0.0, battery.kwh(soc_pct - battery.soc_min_pct))
        by_energy = room_kwh * battery.discharge_efficiency / hours
        if battery.max_discharge_kw <= by_energy:
            return battery.max_discharge_kw, "max_discharge_kw"
        return by_energy, "soc_min_pct"
    room_kwh = max(0.0, battery.kwh(battery.soc_max_pct - soc_pct))
    by_energy = room_kwh / battery.charge_efficiency / hours
    best, limit = (battery.max_charge_kw, "max_charge_kw")
    if by_energy < best:
        best, limit = by_energy, "soc_max_pct"

    def end_soc(kw: float) -> float:
        return soc_pct + kw * hours * battery.charge_efficiency / battery.capacity_kwh * 100.0

    if battery.charge_limit_kw(end_soc(best)) < best - LIMIT_SLACK:
        # The taper's limit falls as the end SoC rises with the power: bisect for the largest power
        # that stays within it (the predicate is monotone: more power, a higher end SoC, a lower limit).
        low, high = 0.0, best
        for _ in range(60):
            mid = (low + high) / 2
            low, high = (mid, high) if mid <= battery.charge_limit_kw(end_soc(mid)) else (low, mid)
        best, limit = low, "taper_start_soc_pct"
    return best, limit


def latest_soc(site: str, battery: Battery, s: Stores) -> float | None:
    """The battery's newest SoC reading (no token's limits: for commands and plans, not for display)."""
    heard = _readings(site, [battery], s).get(battery.battery_id)
    return None if heard is None else heard.metrics[SOC_METRIC]


def _soc_now(site: str, battery: Battery, s: Stores) -> float:
    soc = latest_soc(site, battery, s)
    if soc is None:
        raise Conflict(
            f"battery {battery.battery_id!r} has no state-of-charge reading from its device "
            f"{battery.device_id!r}, so the command cannot be checked against its SoC bounds",
            "soc_pct",
        )
    return soc


def command(
    site: str,
    battery_id: str,
    direction: Direction,
    cmd: PowerCommand,
    s: Stores,
    caller: Claims | None = None,
) -> CommandAccepted:
    """Check the command against the battery's limits (422 naming the limit and the largest power that
    would pass), then send it to the inverter as a signed `set_power` (source "manual").

    The largest power under a SoC bound or the taper is derived from the SoC, a reading: a `caller`
    that does not see live readings gets the limit's name without that number."""
    battery = s.batteries.get(site, battery_id)
    if battery.device_id is None:
        raise Invalid(f"battery {battery_id!r} has no inverter device to command", "device_id")
    if s.devices is None:
        raise RuntimeError("the batteries' stores were wired without device commands")
    soc = _soc_now(site, battery, s)
    most, limit = largest_kw(battery, direction, soc, cmd.duration_minutes)
    if cmd.power_kw > most + LIMIT_SLACK:
        beyond = f"{direction} of {cmd.power_kw:g} kW for {cmd.duration_minutes} minutes is beyond the battery's {limit}"
        if limit in ("max_charge_kw", "max_discharge_kw") or caller is None or caller.sees_live():
            raise Invalid(f"{beyond}; the largest {direction} power that would pass for that duration is {most:.3f} kW",
                          limit)  # fmt: skip
        raise Invalid(f"{beyond}: power_kw exceeds what the battery's state of charge allows "
                      f"({SOC_WITHHELD})", limit)  # fmt: skip
    kw = cmd.power_kw if direction == "charge" else -cmd.power_kw
    sent = s.devices.send(
        site, battery.device_id, "set_power", {"kw": kw, "duration_minutes": cmd.duration_minutes}, "manual",
        cmd.command_id,
    )  # fmt: skip
    return CommandAccepted(
        battery_id=battery_id, device_id=battery.device_id, direction=direction, power_kw=kw,
        duration_minutes=cmd.duration_minutes, energy_kwh=cmd.power_kw * cmd.duration_minutes / 60,
        command_id=sent.command_id, status=sent.status, command=sent.model_dump(mode="json"),
    )  # fmt: skip


# ---------------------------------------------------------------- the fleet


def summary(site: str, days: int, caller: Claims, s: Stores, now: Clock = utc_now) -> BatteriesSummary:
    """Site totals: any data_aggregation may see them; stored energy and power now only for a token
    that sees live readings; throughput over the last `days` up to the token's embargo."""
    moment = now()
    batteries = list(every(partial(s.batteries.page, site, MAX_LIMIT)))
    sensors = _sensor_ids(site, batteries, s)
    readings = _readings(site, batteries, s)
    start_ms, end_ms = _window(days, caller, moment)
    throughput = 0.0
    for battery in batteries:
        power_kw, _ = _quarters(site, sensors[battery.battery_id], start_ms, end_ms, s)
        throughput += sum(abs(p) for p in power_kw.values()) * QUARTER_HOURS
    live = caller.sees_live()
    stored = sum(
        b.kwh(readings[b.battery_id].metrics[SOC_METRIC]) for b in batteries if b.battery_id in readings
    )
    power = sum(readings[b].metrics.get(POWER_METRIC, 0.0) / 1000 for b in readings)
    return BatteriesSummary(
        count=len(batteries),
        capacity_kwh=sum(b.capacity_kwh for b in batteries),
        max_charge_kw=sum(b.max_charge_kw for b in batteries),
        max_discharge_kw=sum(b.max_discharge_kw for b in batteries),
        stored_kwh=stored if live else None,
        power_kw=power if live else None,
        batteries_reporting=len(readings),
        days=days,
        throughput_kwh=throughput,
        **_savings(site, batteries, sensors, end_ms, s),
        withheld=None
        if live
        else "this token does not see live readings: stored energy and power now are left out",
    )


def _savings(
    site: str, batteries: list[Battery], sensors: dict[str, list[str]], end_ms: int, s: Stores
) -> dict[str, Any]:
    """Savings to date of the applied plans, from metered data: each plan run's prices held from its
    time to the next run's (or for one slot); for every whole metered quarter in that span, cost with
    the battery = dt x (import_price x import - export_price x export) of the grid meters' net power g,
    and without = the same of g - battery power b (what the grid would have seen had the battery
    been idle). saving = without - with. Quarters after end_ms (now, or the token's embargo) wait."""
    if s.plans is None:
        return {}
    known = {b.battery_id for b in batteries}
    meters = [
        m.sensor_id
        for m in every(partial(s.sites.list_sensors, site, None, None, MAX_LIMIT))
        if m.sensor_type in GRID_SENSOR_TYPES
    ]
    saving, counted = 0.0, 0
    for plan in s.plans.plans(site):
        if plan.battery_id not in known or not plan.runs:
            continue
        runs = sorted(plan.runs, key=lambda r: r.at)
        starts = [_ms(parse_time(r.at, "at")) for r in runs]
        ends = [*starts[1:], starts[-1] + plan.latest.slot_minutes * 60_000]
        spans = list(zip(starts, ends, runs, strict=True))
        first, last = spans[0][0], min(spans[-1][1], end_ms)
        first += -first % QUARTER_MS
        grid_kw, _ = _quarters(site, meters, first, last, s)
        battery_kw, _ = _quarters(site, sensors[plan.battery_id], first, last, s)
        for quarter, g in grid_kw.items():
            run = next((r for start, end, r in spans if start <= quarter < end), None)
            if run is None:
                continue
            b = battery_kw.get(quarter, 0.0)
            saving += _quarter_cost(g - b, run) - _quarter_cost(g, run)
        counted += 1
    return {"savings_to_date": saving, "plans_counted": counted}


def _quarter_cost(grid_kw: float, run: PlanRun) -> float:
    return QUARTER_HOURS * (run.import_price * max(grid_kw, 0.0) - run.export_price * max(-grid_kw, 0.0))


# ---------------------------------------------------------------- for demand response


def dischargeable(
    site: str, s: Stores, window_minutes: int = 60, claims: Claims | None = None
) -> list[DischargeableBattery]:
    """What each of the site's batteries can give now over `window_minutes` (DischargeableBattery).
    available_kwh is all the energy above soc_min_pct, grid side. With `claims` that do not see live
    readings, no SoC is shown and nothing counts as available."""
    batteries = list(every(partial(s.batteries.page, site, MAX_LIMIT)))
    readings = _readings(site, batteries, s)
    live = claims is None or claims.sees_live()
    out = []
    for battery in batteries:
        heard = readings.get(battery.battery_id)
        if battery.device_id is None or heard is None or not live:
            out.append(DischargeableBattery(battery.battery_id, battery.device_id, None, 0.0, 0.0))
            continue
        soc = heard.metrics[SOC_METRIC]
        kw, _ = largest_kw(battery, "discharge", soc, window_minutes)
        kwh = max(0.0, battery.kwh(soc - battery.soc_min_pct)) * battery.discharge_efficiency
        out.append(DischargeableBattery(battery.battery_id, battery.device_id, soc, kw, kwh))
    return out
