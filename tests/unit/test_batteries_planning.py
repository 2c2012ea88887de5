"""ems.batteries.planning on fakes: the Problem built from the battery, the tariff, the seasonal-naive
forecasts and the SoC measured now (or the caller's what-if series), solved on HiGHS; 422s naming the
input or constraint; the token's data-sharing limits; model-predictive control (apply, re-plan from
the measured SoC, stop) and the savings it made from metered data. Figures worked out by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ems.batteries import planning
from ems.batteries import service as batteries
from ems.batteries.models import BatteryIn, OptimizeRequest
from ems.core.errors import Conflict, Forbidden, Invalid, NotFound
from ems.devices import service as devices
from ems.devices.models import DeviceIn
from ems.registry.status import Heard
from ems.tariffs.models import Tariff
from ems.telemetry.models import Reading
from tests.support.fakes import caller
from tests.support.fakes_batteries import World, memory_world
from tests.support.fakes_devices import MemoryIot

T0 = datetime(2030, 6, 3, 0, 0, tzinfo=UTC)  # a Monday; Europe/Berlin is UTC+2
T0_MS = int(T0.timestamp() * 1000)
SITE = "hq"
QUARTER_MS = 15 * 60_000


def at(minutes: float = 0) -> Any:
    return lambda: T0 + timedelta(minutes=minutes)


@pytest.fixture
def w() -> World:
    world = memory_world()
    devices.register(SITE, DeviceIn(device_id="BATT001", name="Inverter", device_type="battery_inverter",
                                    rated_power_kw=10.0), world.devices, at())  # fmt: skip
    world.registry.add_sensor(SITE, "BATT001", "battery_inverter", device_id="BATT001")
    world.registry.add_sensor(SITE, "M", "meter")
    world.registry.add_sensor(SITE, "PV", "pv_inverter")
    batteries.create_battery(SITE, battery(), world.stores, at())
    return world


def battery(**fields: Any) -> BatteryIn:
    """10 kWh, 5 kW each way, lossless, 0-100 %, no wear."""
    base: dict[str, Any] = {
        "battery_id": "B1", "name": "Battery", "capacity_kwh": 10, "max_charge_kw": 5, "max_discharge_kw": 5,
        "charge_efficiency": 1.0, "discharge_efficiency": 1.0, "device_id": "BATT001",
    }  # fmt: skip
    return BatteryIn.model_validate({**base, **fields})


def soc(w: World, pct: float, minutes: float = -1) -> None:
    w.status.record(SITE, [Heard("BATT001", T0_MS + int(minutes * 60_000), {"soc_pct": pct, "power_w": 0.0})])


def what_if(**fields: Any) -> OptimizeRequest:
    """24 h in hours: 0.1 for 12 hours then 0.3, nothing for exports, 2 kW of load, no PV, from empty."""
    base: dict[str, Any] = {
        "slot_minutes": 60, "import_price": [0.1] * 12 + [0.3] * 12, "export_price": [0.0] * 24,
        "load_kw": [2.0] * 24, "pv_kw": [0.0] * 24, "start_soc_pct": 0,
    }  # fmt: skip
    return OptimizeRequest.model_validate({**base, **fields})


def iot(w: World) -> MemoryIot:
    assert isinstance(w.devices.iot, MemoryIot)
    return w.devices.iot


def test_a_what_if_plan_buys_cheap_and_replaces_dear_imports(w: World) -> None:
    # Without the battery: 12 h x 2 kW x 0.1 + 12 h x 2 kW x 0.3 = 2.4 + 7.2 = 9.6. The battery fills
    # 10 kWh at 0.1 (1.0) and covers 10 kWh of the dear load (saves 3.0): 9.6 - 3.0 + 1.0 = 7.6.
    plan = planning.optimize_battery(SITE, "B1", what_if(), caller(), w.stores, at())
    assert (plan.cost_without_battery, plan.cost, plan.saving) == (
        pytest.approx(9.6), pytest.approx(7.6), pytest.approx(2.0),
    )  # fmt: skip
    assert (plan.slots, plan.status, plan.start, plan.applied) == (
        24,
        "optimal",
        "2030-06-03T00:00:00.000Z",
        False,
    )
    charged = sum(max(s.batteries["B1"].battery_kw, 0) for s in plan.schedule[:12])
    discharged = -sum(min(s.batteries["B1"].battery_kw, 0) for s in plan.schedule[12:])
    assert (charged, discharged) == (pytest.approx(10.0), pytest.approx(10.0))
    assert plan.sources == {"load_kw": "request", "pv_kw": "request", "import_price": "request",
                            "export_price": "request"}  # fmt: skip


@pytest.mark.parametrize("name", ["load_kw", "pv_kw", "import_price", "export_price"])
def test_a_series_of_the_wrong_length_is_a_422_naming_it(w: World, name: str) -> None:
    with pytest.raises(Invalid) as exc:
        planning.optimize_battery(SITE, "B1", what_if(**{name: [1.0] * 23}), caller(), w.stores, at())
    assert exc.value.field == name
    assert "is 24" in str(exc.value)


def test_an_end_soc_that_cannot_be_reached_is_a_422_naming_the_constraint(w: World) -> None:
    batteries.update_battery(SITE, "B1", batteries.BatteryUpdate(max_charge_kw=0.1), w.stores, at())
    # 0.1 kW for 24 h is 2.4 kWh: from empty, 100 % of 10 kWh is out of reach.
    with pytest.raises(Invalid) as exc:
        planning.optimize_battery(SITE, "B1", what_if(end_soc_pct=100), caller(), w.stores, at())
    assert exc.value.field is not None and exc.value.field.endswith("end_soc_pct")


def test_prices_come_from_the_tariff_s_time_of_use_table_in_the_site_s_zone(w: World) -> None:
    tariff = Tariff.model_validate({
        "site_id": SITE, "export_price": 0.05,
        "import_price": [{"hour_from": 0, "hour_to": 7, "price": 0.1}, {"hour_from": 7, "hour_to": 24, "price": 0.3}],
    })  # fmt: skip
    w.registry.put_tariff(tariff, T0)
    w.registry.sites[SITE] = w.registry.sites[SITE].model_copy(update={"timezone": "Europe/Berlin"})
    plan = planning.optimize_battery(
        SITE, "B1", what_if(import_price=None, export_price=None), caller(), w.stores, at()
    )
    # 00:00 UTC is 02:00 in Berlin (0.1); 05:00 UTC is 07:00 there (0.3).
    assert [s.import_price for s in plan.schedule[4:6]] == [0.1, 0.3]
    assert {s.export_price for s in plan.schedule} == {0.05}
    assert (plan.sources["import_price"], plan.sources["export_price"]) == ("tariff", "tariff")


def test_self_consumption_prices_imports_at_one_and_exports_at_nothing(w: World) -> None:
    plan = planning.optimize_battery(SITE, "B1", what_if(objective="self_consumption", import_price=None,
                                                         export_price=None, pv_kw=[3.0] * 12 + [0.0] * 12),
                                     caller(), w.stores, at())  # fmt: skip
    # 1 kW of PV surplus for 12 h fills 10 kWh, which covers 10 of the 24 kWh of night load: 14 bought.
    assert plan.cost == pytest.approx(14.0)
    assert plan.cost_without_battery == pytest.approx(24.0)


def test_forecasts_are_the_same_slot_last_week(w: World) -> None:
    week_ago = T0_MS - 7 * 24 * 3_600_000
    w.telemetry.write([
        Reading(SITE, "M", "power_w", week_ago + 60_000, 3000.0),
        Reading(SITE, "PV", "power_w", week_ago + 60_000, 1000.0),
        Reading(SITE, "BATT001", "power_w", week_ago + 60_000, 500.0),
    ])  # fmt: skip
    req = what_if(slot_minutes=15, load_kw=None, pv_kw=None, import_price=[0.1] * 96, export_price=[0.0] * 96)
    plan = planning.optimize_battery(SITE, "B1", req, caller(), w.stores, at())
    # load = grid + PV - battery = 3 + 1 - 0.5 = 3.5 kW a week ago in that quarter; nothing after it.
    assert (plan.schedule[0].load_kw, plan.schedule[0].pv_kw) == (3.5, 1.0)
    assert {s.load_kw for s in plan.schedule[1:]} == {0.0}
    assert (plan.sources["load_kw"], plan.sources["pv_kw"]) == ("forecast", "forecast")


def test_the_start_soc_is_measured_when_not_given(w: World) -> None:
    soc(w, 50.0)
    plan = planning.optimize_battery(SITE, "B1", what_if(start_soc_pct=None), caller(), w.stores, at())
    assert plan.start_soc_pct == {"B1": 50.0}


@pytest.mark.parametrize(
    ("limits", "request_fields", "field"),
    [
        ({"embargo_minutes": 5}, {"start_soc_pct": None}, "start_soc_pct"),
        ({"data_aggregation": "site"}, {"start_soc_pct": None}, "start_soc_pct"),
        ({"embargo_minutes": 7 * 24 * 60}, {"load_kw": None}, "load_kw"),
        ({"time_aggregation": "1h"}, {"pv_kw": None}, "load_kw"),
    ],
)
def test_a_limited_token_must_bring_what_its_limits_hide(
    w: World, limits: dict[str, Any], request_fields: dict[str, Any], field: str
) -> None:
    soc(w, 50.0)
    with pytest.raises(Forbidden) as exc:
        planning.optimize_battery(SITE, "B1", what_if(**request_fields), caller(**limits), w.stores, at())
    assert exc.value.field == field
    planning.optimize_battery(
        SITE, "B1", what_if(), caller(**limits), w.stores, at()
    )  # with everything given


def test_the_site_s_batteries_are_planned_in_one_solve(w: World) -> None:
    batteries.create_battery(SITE, battery(battery_id="B2", device_id=None), w.stores, at())
    plan = planning.optimize_site(SITE, what_if(), caller(), w.stores, at())
    # Two 10 kWh batteries: 20 kWh at 0.1 cover 20 of the 24 dear kWh: 9.6 - 6.0 + 2.0 = 5.6.
    assert (sorted(plan.battery_ids), plan.cost) == (["B1", "B2"], pytest.approx(5.6))
    with pytest.raises(Invalid) as exc:
        planning.optimize_site(SITE, what_if(apply=True), caller(), w.stores, at())
    assert exc.value.field == "apply"


# ---------------------------------------------------------------- model-predictive control

# The first hour is the cheapest (0.05): the plan charges flat out there, 5 kW.
FIRST_CHEAPEST = [0.05] + [0.1] * 11 + [0.3] * 12


def test_apply_sends_the_first_setpoint_and_schedules_re_plans(w: World) -> None:
    plan = planning.optimize_battery(SITE, "B1", what_if(import_price=FIRST_CHEAPEST, apply=True), caller(),
                                     w.stores, at())  # fmt: skip
    assert plan.applied and plan.schedule[0].batteries["B1"].battery_kw == pytest.approx(5.0)
    desired = iot(w).shadow("hq:BATT001").desired
    assert (desired["power_kw"], desired["duration_minutes"]) == (5.0, 60)
    command = w.devices.commands.get(SITE, "BATT001", desired["command_id"])
    assert command is not None and command.source == "battery"
    name = planning.schedule_name(SITE, "B1")
    assert w.scheduler.schedules[name]["expression"] == "rate(15 minutes)"
    assert json.loads(w.scheduler.schedules[name]["input"]) == {"replan": {"site": SITE, "battery_id": "B1"}}
    stored = planning.get_plan(SITE, "B1", caller(), w.stores)
    assert [(r.setpoint_kw, r.start_soc_pct, r.import_price) for r in stored.runs] == [(5.0, 0.0, 0.05)]
    assert w.events.kinds() == ["BatteryPlanChanged"]
    assert w.events.events[0].detail["change"] == "applied"


def test_a_re_plan_starts_from_the_soc_measured_then(w: World) -> None:
    planning.optimize_battery(
        SITE, "B1", what_if(import_price=FIRST_CHEAPEST, apply=True), caller(), w.stores, at()
    )
    soc(w, 20.0, minutes=14)
    run = planning.replan(SITE, "B1", w.stores, at(15))
    assert run is not None and run.start_soc_pct == 20.0 and run.command_id is not None
    stored = planning.get_plan(SITE, "B1", caller(), w.stores)
    assert [r.start_soc_pct for r in stored.runs] == [0.0, 20.0]
    assert stored.latest.start_soc_pct == {"B1": 20.0}
    assert stored.latest.start == "2030-06-03T00:15:00.000Z"
    with pytest.raises(Forbidden):
        planning.get_plan(SITE, "B1", caller(embargo_minutes=15), w.stores)


def test_delete_stops_the_re_plans_and_leaves_the_battery_idle(w: World) -> None:
    planning.optimize_battery(
        SITE, "B1", what_if(import_price=FIRST_CHEAPEST, apply=True), caller(), w.stores, at()
    )
    assert planning.stop_plan(SITE, "B1", w.stores) == {"stopped": True, "idle": True}
    assert w.scheduler.schedules == {}
    assert iot(w).shadow("hq:BATT001").desired["power_kw"] == 0.0
    assert w.devices.devices.controls(SITE, "BATT001") == {}
    with pytest.raises(NotFound):
        planning.get_plan(SITE, "B1", caller(), w.stores)
    # A tick that was already under way finds no plan, and removes its schedule again.
    soc(w, 20.0, minutes=14)
    assert planning.replan(SITE, "B1", w.stores, at(15)) is None


def test_a_manual_command_outranks_the_plan(w: World) -> None:
    soc(w, 50.0)
    batteries.command(SITE, "B1", "charge", batteries.PowerCommand(power_kw=2, duration_minutes=60), w.stores)
    with pytest.raises(Conflict) as exc:
        planning.optimize_battery(SITE, "B1", what_if(apply=True), caller(), w.stores, at())
    assert exc.value.field == "source"
    assert (w.plans.plans(SITE), w.scheduler.schedules) == ([], {})


def test_savings_to_date_come_from_metered_data(w: World) -> None:
    req = what_if(import_price=[0.3] * 24, apply=True)
    planning.optimize_battery(SITE, "B1", req, caller(), w.stores, at())
    # In the first quarter the meter read 1 kW of import while the battery gave 2 kW: without it the
    # grid would have carried 3 kW. At 0.3 for 0.25 h: 0.225 - 0.075 = 0.15 saved.
    w.telemetry.write([Reading(SITE, "M", "power_w", T0_MS + 60_000, 1000.0),
                       Reading(SITE, "BATT001", "power_w", T0_MS + 60_000, -2000.0)])  # fmt: skip
    summary = batteries.summary(SITE, 30, caller(), w.stores, at(30))
    assert (summary.savings_to_date, summary.plans_counted) == (pytest.approx(0.15), 1)
    # With a 20-minute embargo at T0 + 30 min the quarter [T0, T0 + 15) is still hidden.
    assert batteries.summary(SITE, 30, caller(embargo_minutes=20), w.stores, at(30)).savings_to_date == 0.0
