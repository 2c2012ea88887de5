"""Battery plans: the optimiser's Problem built from the battery records, the site's tariff, the
forecasts and the SoC measured now (or the caller's what-if series and start SoC), solved, and, with
`apply`, kept as model-predictive control: the first slot's setpoint goes to the inverter, a
15-minute Scheduler schedule re-plans from the SoC measured then, and DELETE stops it.

This module solves with the optimiser (numpy, highspy: the science layer): only the optimiser's
function (functions/optimizer/app.py) imports it, and the optimiser loads on the first solve, so
that function's other routes (GET plan, DELETE plan) start without numpy.

Prices per slot: the caller's `import_price`/`export_price` series, else the tariff's price at each
slot's start (a flat price, a time-of-use table in the site's time zone, or a series of prices from
given instants: day-ahead prices are PUT /tariffs as `[{"start": ISO, "price": p}, ...]`, each price
holding until the next start). objective `self_consumption` prices every import at 1 and every
export at 0 (least energy bought). The demand charge is the tariff's, floored by the peak import of
the billing period (the site's calendar month) so far, from the grid meters' 15-minute rollups.
"""

from __future__ import annotations

import json
import math
from contextlib import suppress
from datetime import datetime, timedelta
from functools import partial
from zoneinfo import ZoneInfo

from ems.auth.models import Claims
from ems.batteries import service
from ems.batteries.models import (
    BATTERIES_SOURCE,
    PLAN_CHANGED,
    AppliedPlan,
    Battery,
    BatterySlot,
    OptimizeRequest,
    PlanResult,
    PlanRun,
    SlotPlan,
)
from ems.batteries.ports import Stores
from ems.batteries.schedule import Battery as PlannedBattery
from ems.batteries.schedule import DeferrableLoad, Problem, Schedule
from ems.core.clock import Clock, to_iso, utc_now
from ems.core.errors import Conflict, Forbidden, Invalid, NotFound
from ems.core.events import DomainEvent
from ems.core.pagination import MAX_LIMIT, every
from ems.devices.commands import Source
from ems.tariffs.models import TariffIn, default_tariff, price_at

FORECAST_SLOT_MINUTES = 15
REPLAN_EXPRESSION = "rate(15 minutes)"
PLAN_SOURCE: Source = "battery"  # the devices domain's control source for battery plans (below manual and dr)
WEEK = timedelta(days=7)
GRID_SENSOR_TYPES = ("meter", "main_meter")


def schedule_name(site: str, battery_id: str) -> str:
    """The re-plan schedule's name: Scheduler names are [0-9a-zA-Z-_.]{1,64}."""
    raw = f"ems-battery-plan-{site}-{battery_id}".replace(":", "_")
    return raw[:64]


def replan_payload(site: str, battery_id: str) -> dict[str, dict[str, str]]:
    return {"replan": {"site": site, "battery_id": battery_id}}


# ---------------------------------------------------------------- inputs


def _series(req: OptimizeRequest, name: str) -> list[float] | None:
    values: list[float] | None = getattr(req, name)
    if values is not None and len(values) != req.slots:
        raise Invalid(
            f"has {len(values)} values; {req.horizon_hours} h in {req.slot_minutes}-minute slots is {req.slots}",
            name,
        )
    return values


def _grouped(quarters: list[float], slot_minutes: int) -> list[float]:
    """15-minute values as the mean of each slot's quarters. A quarter the forecasts do not know (NaN:
    nothing stored and no history for the seasonal-naive rule, as on a new site) counts as 0 kW, so a
    new site still gets a plan driven by its prices; callers who know better pass load_kw and pv_kw."""
    known = [0.0 if math.isnan(q) else q for q in quarters]
    n = slot_minutes // FORECAST_SLOT_MINUTES
    return [sum(known[i : i + n]) / n for i in range(0, len(known), n)]


def _check_forecast_limits(
    caller: Claims | None, start: datetime, req: OptimizeRequest, moment: datetime
) -> None:
    """The forecasts are the site's 15-minute totals of a week ago: the token must see those."""
    if caller is None:
        return
    newest_ms = int((start - WEEK + timedelta(hours=req.horizon_hours)).timestamp() * 1000)
    cutoff = caller.embargo_cutoff_ms(moment)
    if caller.time_aggregation not in ("raw", "15m") or (cutoff is not None and newest_ms > cutoff):
        raise Forbidden(
            "the forecasts read the site's 15-minute history of a week ago, beyond this token's data-sharing "
            "limits: pass load_kw and pv_kw",
            "load_kw",
        )


def _forecasts(site: str, start: datetime, req: OptimizeRequest, caller: Claims | None, s: Stores, moment: datetime) -> tuple[list[float], list[float], dict[str, str]]:  # fmt: skip
    load, pv = _series(req, "load_kw"), _series(req, "pv_kw")
    sources = {"load_kw": "request" if load is not None else "forecast",
               "pv_kw": "request" if pv is not None else "forecast"}  # fmt: skip
    if load is None or pv is None:
        if s.forecasts is None:
            raise RuntimeError("the optimiser's stores were wired without forecasts")
        _check_forecast_limits(caller, start, req, moment)
        quarters = req.horizon_hours * 60 // FORECAST_SLOT_MINUTES
        if load is None:
            load = _grouped(s.forecasts.consumption_kw(site, start, quarters), req.slot_minutes)
        if pv is None:
            pv = _grouped(s.forecasts.generation_kw(site, start, quarters), req.slot_minutes)
    return load, pv, sources


def _tariff(site: str, s: Stores) -> TariffIn:
    tariff = s.tariffs.get_tariff(site) if s.tariffs is not None else None
    return tariff if tariff is not None else default_tariff()


def _prices(site: str, start: datetime, req: OptimizeRequest, tariff: TariffIn, timezone: str) -> tuple[list[float], list[float], dict[str, str]]:  # fmt: skip
    if req.objective == "self_consumption":
        return [1.0] * req.slots, [0.0] * req.slots, {"prices": "self_consumption"}
    starts = [start + timedelta(minutes=req.slot_minutes * i) for i in range(req.slots)]
    given_import, given_export = _series(req, "import_price"), _series(req, "export_price")
    import_price = given_import or [price_at(tariff.import_price, t, timezone) for t in starts]
    export_price = given_export or [price_at(tariff.export_price, t, timezone) for t in starts]
    return (
        import_price,
        export_price,
        {
            "import_price": "request" if given_import else "tariff",
            "export_price": "request" if given_export else "tariff",
        },
    )


def _peak_so_far_kw(site: str, timezone: str, caller: Claims | None, s: Stores, moment: datetime) -> float:
    """The highest quarter-hour grid import of the billing period (the site's calendar month) so far."""
    local = moment.astimezone(ZoneInfo(timezone))
    month_start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end_ms = int(moment.timestamp() * 1000)
    cutoff = caller.embargo_cutoff_ms(moment) if caller is not None else None
    if cutoff is not None:
        end_ms = min(end_ms, cutoff)
    meters = [
        m.sensor_id
        for m in every(partial(s.sites.list_sensors, site, None, None, MAX_LIMIT))
        if m.sensor_type in GRID_SENSOR_TYPES
    ]
    if not meters:
        return 0.0
    by_quarter: dict[int, float] = {}
    rollups = s.rollups.read_rollups(
        site, meters, "power_w", "15m", int(month_start.timestamp() * 1000), end_ms
    )
    for buckets in rollups.values():
        for start, b in buckets.items():
            if b.count:
                by_quarter[start] = by_quarter.get(start, 0.0) + b.sum / b.count / 1000
    return max([0.0, *by_quarter.values()])


def _start_soc(site: str, battery: Battery, req: OptimizeRequest, caller: Claims | None, s: Stores, moment: datetime) -> float:  # fmt: skip
    if req.start_soc_pct is not None:
        return req.start_soc_pct
    if caller is not None and not (caller.data_aggregation == "raw" and caller.sees_live()):
        raise Forbidden(
            "the SoC measured now is one device's live reading, beyond this token's data-sharing limits: "
            "pass start_soc_pct",
            "start_soc_pct",
        )
    heard = service.latest_soc(site, battery, s)
    if heard is None:
        raise Conflict(
            f"battery {battery.battery_id!r} has no state-of-charge reading: pass start_soc_pct",
            "start_soc_pct",
        )
    # A measured SoC a hair outside the bounds (a reading's rounding) starts at the bound.
    return min(battery.soc_max_pct, max(battery.soc_min_pct, heard))


def _planned(b: Battery, start_soc_pct: float, req: OptimizeRequest) -> PlannedBattery:
    return PlannedBattery(
        battery_id=b.battery_id, capacity_kwh=b.capacity_kwh, max_charge_kw=b.max_charge_kw,
        max_discharge_kw=b.max_discharge_kw, start_soc_pct=start_soc_pct, charge_efficiency=b.charge_efficiency,
        discharge_efficiency=b.discharge_efficiency, soc_min_pct=b.soc_min_pct, soc_max_pct=b.soc_max_pct,
        wear_cost_per_kwh=b.wear_cost_per_kwh, taper_start_soc_pct=b.taper_start_soc_pct,
        taper_end_kw=b.taper_end_kw if b.taper_start_soc_pct is not None else 0.0, end_soc_pct=req.end_soc_pct,
    )  # fmt: skip


# ---------------------------------------------------------------- solving


def _result(site: str, batteries: list[Battery], start: datetime, req: OptimizeRequest, problem: Problem,
            schedule: Schedule, start_soc: dict[str, float], sources: dict[str, str]) -> PlanResult:  # fmt: skip
    slots = []
    for t in range(problem.slots):
        slots.append(
            SlotPlan(
                start=to_iso(start + timedelta(minutes=req.slot_minutes * t)),
                load_kw=problem.load_kw[t], pv_kw=problem.pv_kw[t],
                import_price=problem.import_price_per_kwh[t], export_price=problem.export_price_per_kwh[t],
                import_kw=schedule.import_kw[t], export_kw=schedule.export_kw[t],
                curtailment_kw=schedule.curtailment_kw[t],
                batteries={b.battery_id: BatterySlot(battery_kw=b.battery_kw[t], soc_pct=b.soc_pct[t])
                           for b in schedule.batteries},
                deferrable_kw={k: v[t] for k, v in schedule.deferrable_kw.items()},
            )
        )  # fmt: skip
    return PlanResult(
        site_id=site, battery_ids=[b.battery_id for b in batteries], start=to_iso(start),
        slot_minutes=req.slot_minutes, slots=req.slots, objective=req.objective, start_soc_pct=start_soc,
        sources=sources, status=schedule.status, solve_ms=schedule.solve_ms, cost=schedule.cost,
        cost_without_battery=schedule.cost_without_battery, saving=schedule.saving,
        import_cost=schedule.import_cost, export_revenue=schedule.export_revenue, wear_cost=schedule.wear_cost,
        demand_charge_cost=schedule.demand_charge_cost, peak_import_kw=schedule.peak_import_kw, schedule=slots,
        binary_slots=len(schedule.binary_battery_slots) + len(schedule.binary_grid_slots),
    )  # fmt: skip


def solve(site: str, batteries: list[Battery], req: OptimizeRequest, caller: Claims | None, s: Stores,
          moment: datetime) -> PlanResult:  # fmt: skip
    """Build the Problem for `batteries` over the horizon starting at `moment` (to the minute) and solve
    it; Invalid (422) naming the input or the constraint that cannot be met."""
    if not batteries:
        raise Conflict("the site has no batteries to optimise", "battery_id")
    start = moment.replace(second=0, microsecond=0)
    timezone = s.sites.get_site(site).timezone
    tariff = _tariff(site, s)
    load, pv, sources = _forecasts(site, start, req, caller, s, moment)
    import_price, export_price, price_sources = _prices(site, start, req, tariff, timezone)
    start_soc = {b.battery_id: _start_soc(site, b, req, caller, s, moment) for b in batteries}
    demand_charge = (tariff.demand_charge_per_kw or 0.0) if req.objective == "cost" else 0.0
    problem = Problem(
        slot_minutes=req.slot_minutes, import_price_per_kwh=import_price, export_price_per_kwh=export_price,
        load_kw=load, pv_kw=pv, batteries=[_planned(b, start_soc[b.battery_id], req) for b in batteries],
        deferrable_loads=[DeferrableLoad(**d.model_dump()) for d in req.deferrable_loads],
        import_limit_kw=tariff.grid_import_limit_kw, export_limit_kw=tariff.grid_export_limit_kw,
        demand_charge_per_kw=demand_charge,
        peak_so_far_kw=_peak_so_far_kw(site, timezone, caller, s, moment) if demand_charge else 0.0,
    )  # fmt: skip
    from ems.batteries import optimizer  # numpy and highspy: loaded on the first solve, not at init

    schedule = optimizer.optimize(problem)
    return _result(site, batteries, start, req, problem, schedule, start_soc, {**sources, **price_sources})


def optimize_battery(site: str, battery_id: str, req: OptimizeRequest, caller: Claims, s: Stores,
                     now: Clock = utc_now) -> PlanResult:  # fmt: skip
    """POST /batteries/{id}/optimize: one battery's plan; with `apply`, model-predictive control."""
    battery = s.batteries.get(site, battery_id)
    moment = now()
    result = solve(site, [battery], req, caller, s, moment)
    if req.apply:
        return _apply(site, battery, req, result, s, moment)
    return result


def optimize_site(
    site: str, req: OptimizeRequest, caller: Claims, s: Stores, now: Clock = utc_now
) -> PlanResult:
    """POST /batteries/optimize: every battery of the site in one solve (a plan to read, not to apply)."""
    if req.apply:
        raise Invalid("a site's joint plan is not applied: apply one battery's plan (POST /batteries/{id}/optimize)",
                      "apply")  # fmt: skip
    batteries = list(every(partial(s.batteries.page, site, MAX_LIMIT)))
    return solve(site, batteries, req, caller, s, now())


# ---------------------------------------------------------------- model-predictive control


def _setpoint(
    site: str, battery: Battery, result: PlanResult, s: Stores
) -> tuple[float, str | None, str | None]:
    """Send the first slot's power to the inverter for one slot (source "battery"); the command's id and
    state. Without a device nothing is sent."""
    kw = round(result.schedule[0].batteries[battery.battery_id].battery_kw, 3)
    if battery.device_id is None or s.devices is None:
        return kw, None, None
    sent = s.devices.send(
        site, battery.device_id, "set_power", {"kw": kw, "duration_minutes": result.slot_minutes}, PLAN_SOURCE
    )
    return kw, sent.command_id, sent.status


def _run(result: PlanResult, battery_id: str, kw: float, command_id: str | None, status: str | None,
         moment: datetime) -> PlanRun:  # fmt: skip
    first = result.schedule[0]
    return PlanRun(
        at=to_iso(moment), slot_start=first.start, import_price=first.import_price, export_price=first.export_price,
        start_soc_pct=result.start_soc_pct[battery_id], setpoint_kw=kw, command_id=command_id,
        command_status=status, cost=result.cost, cost_without_battery=result.cost_without_battery,
        saving=result.saving,
    )  # fmt: skip


def _changed(plan: AppliedPlan, what: str) -> DomainEvent:
    detail = {"site": plan.site_id, "battery_id": plan.battery_id, "change": what,
              "plan": plan.model_dump(mode="json", exclude={"request"})}  # fmt: skip
    return DomainEvent(BATTERIES_SOURCE, PLAN_CHANGED, detail)


def _apply(site: str, battery: Battery, req: OptimizeRequest, result: PlanResult, s: Stores,
           moment: datetime) -> PlanResult:  # fmt: skip
    if battery.device_id is None:
        raise Invalid(
            f"battery {battery.battery_id!r} has no inverter device to apply a plan to", "device_id"
        )
    if s.plans is None or s.scheduler is None:
        raise RuntimeError("the optimiser's stores were wired without plans or the Scheduler")
    kw, command_id, status = _setpoint(site, battery, result, s)
    applied = result.model_copy(update={"applied": True})
    plan = AppliedPlan(
        site_id=site, battery_id=battery.battery_id, device_id=battery.device_id, started_at=to_iso(moment),
        schedule_name=schedule_name(site, battery.battery_id), request=req, latest=applied,
        runs=[_run(applied, battery.battery_id, kw, command_id, status, moment)],
    )  # fmt: skip
    s.plans.put_plan(plan)
    s.scheduler.put(
        plan.schedule_name, REPLAN_EXPRESSION, json.dumps(replan_payload(site, battery.battery_id))
    )
    if s.events is not None:
        s.events.publish([_changed(plan, "applied")])
    return applied


def replan(site: str, battery_id: str, s: Stores, now: Clock = utc_now) -> PlanRun | None:
    """The Scheduler's tick: plan again from the SoC measured now with the latest forecasts and prices
    (the applied request's settings; its what-if series and deferrable loads belonged to the first
    horizon and are not reused), send the first slot's setpoint, record the run. None when the plan
    was stopped (its schedule is deleted then)."""
    if s.plans is None or s.scheduler is None:
        raise RuntimeError("the optimiser's stores were wired without plans or the Scheduler")
    try:
        plan = s.plans.get_plan(site, battery_id)
    except NotFound:  # stopped: a tick that raced the DELETE
        s.scheduler.delete(schedule_name(site, battery_id))
        return None
    battery = s.batteries.get(site, battery_id)
    moment = now()
    req = plan.request.model_copy(
        update={"start_soc_pct": None, "load_kw": None, "pv_kw": None, "import_price": None, "export_price": None,
                "deferrable_loads": [], "apply": True}
    )  # fmt: skip
    result = solve(site, [battery], req, None, s, moment).model_copy(update={"applied": True})
    kw, command_id, status = _setpoint(site, battery, result, s)
    run = _run(result, battery_id, kw, command_id, status, moment)
    if not s.plans.add_run(site, battery_id, run, result):
        return None
    if s.events is not None:
        s.events.publish([_changed(s.plans.get_plan(site, battery_id), "replanned")])
    return run


def get_plan(site: str, battery_id: str, caller: Claims, s: Stores) -> AppliedPlan:
    """GET /batteries/{id}/plan. The plan holds SoC measured from one device's readings: only a token
    that sees those live gets it."""
    if s.plans is None:
        raise RuntimeError("the stores were wired without plans")
    if not (caller.data_aggregation == "raw" and caller.sees_live()):
        raise Forbidden("a battery's plan holds its measured state of charge, beyond this token's data-sharing "
                        "limits", "token")  # fmt: skip
    s.batteries.get(site, battery_id)
    return s.plans.get_plan(site, battery_id)


def stop_plan(site: str, battery_id: str, s: Stores) -> dict[str, bool]:
    """DELETE /batteries/{id}/plan: no more re-plans, the plan's hold on the inverter released and the
    battery idle (a zero setpoint, unless a higher controller holds it: then it is left to that one)."""
    if s.plans is None or s.scheduler is None:
        raise RuntimeError("the optimiser's stores were wired without plans or the Scheduler")
    s.batteries.get(site, battery_id)
    plan = s.plans.get_plan(site, battery_id)
    s.scheduler.delete(plan.schedule_name)
    s.plans.delete_plan(site, battery_id)
    idle = False
    if s.devices is not None:
        try:
            s.devices.send(site, plan.device_id, "set_power", {"kw": 0.0}, PLAN_SOURCE)
            idle = True
        except Conflict:  # a higher controller (manual, dr) holds the inverter: it is left to that one
            pass
        with suppress(NotFound):  # the plan no longer held it
            s.devices.release(site, plan.device_id, PLAN_SOURCE)
    if s.events is not None:
        s.events.publish([_changed(plan, "stopped")])
    return {"stopped": True, "idle": idle}
