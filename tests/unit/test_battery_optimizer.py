"""The battery optimiser against optima worked out by hand (each case's arithmetic is in its docstring),
its rejections, and hypothesis invariants over random prices, loads and PV."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ems.batteries.optimizer import optimize
from ems.batteries.schedule import Battery, DeferrableLoad, Problem, Schedule
from ems.core.errors import Invalid

settings.register_profile("battery_optimizer", deadline=None, max_examples=40)
SOLVER_PROFILE = settings.get_profile("battery_optimizer")
TOL = 1e-6


def battery(**overrides: object) -> Battery:
    """10 kWh, 5 kW each way, lossless, no wear, empty."""
    fields: dict[str, object] = dict(
        battery_id="b1", capacity_kwh=10.0, max_charge_kw=5.0, max_discharge_kw=5.0, start_soc_pct=0.0
    )
    fields.update(overrides)
    return Battery(**fields)  # type: ignore[arg-type]


def hourly(
    import_price: list[float],
    export_price: list[float] | None = None,
    load_kw: list[float] | None = None,
    pv_kw: list[float] | None = None,
    **overrides: object,
) -> Problem:
    n = len(import_price)
    fields: dict[str, object] = dict(
        slot_minutes=60,
        import_price_per_kwh=import_price,
        export_price_per_kwh=import_price if export_price is None else export_price,
        load_kw=[0.0] * n if load_kw is None else load_kw,
        pv_kw=[0.0] * n if pv_kw is None else pv_kw,
        batteries=(battery(),),
    )
    fields.update(overrides)
    return Problem(**fields)  # type: ignore[arg-type]


def assert_one_direction(s: Schedule) -> None:
    for b in s.batteries:
        for t, (c, d) in enumerate(zip(b.charge_kw, b.discharge_kw, strict=True)):
            assert min(c, d) <= TOL, f"{b.battery_id} charges {c} and discharges {d} kW in slot {t}"
    for t, (i, e) in enumerate(zip(s.import_kw, s.export_kw, strict=True)):
        assert min(i, e) <= TOL, f"slot {t} imports {i} and exports {e} kW"


# --- optima worked out by hand -----------------------------------------------------------------------------


def test_arbitrage_with_perfect_efficiency() -> None:
    """Buy 5 kWh at 0.10, sell them at 0.30: cost 0.50 - 1.50 = -1.00; without the battery nothing happens."""
    s = optimize(hourly([0.10, 0.30]))
    assert s.cost == pytest.approx(-1.0)
    assert s.cost_without_battery == pytest.approx(0.0)
    assert s.saving == pytest.approx(1.0)
    assert s.batteries[0].battery_kw == pytest.approx((5.0, -5.0))
    assert s.batteries[0].soc_pct == pytest.approx((50.0, 0.0))
    assert s.import_kw == pytest.approx((5.0, 0.0))
    assert s.export_kw == pytest.approx((0.0, 5.0))
    assert s.status == "optimal"
    assert_one_direction(s)


def test_two_batteries_in_one_solve() -> None:
    """Each of two 5 kW batteries makes the same 5 x 0.20 = 1.00: cost -2.00."""
    s = optimize(hourly([0.10, 0.30], batteries=(battery(), battery(battery_id="b2"))))
    assert s.cost == pytest.approx(-2.0)
    assert [b.battery_id for b in s.batteries] == ["b1", "b2"]
    assert [b.battery_kw for b in s.batteries] == [pytest.approx((5.0, -5.0))] * 2


def full_battery_selling_over(prices: list[float], efficiency: float) -> Schedule:
    """10 kWh stored, 10 kW each way, may end empty; prices equal for import and export."""
    b = battery(
        max_charge_kw=10.0,
        max_discharge_kw=10.0,
        start_soc_pct=100.0,
        end_soc_pct=0.0,
        charge_efficiency=efficiency,
        discharge_efficiency=efficiency,
    )
    return optimize(hourly(prices, batteries=(b,)))


def test_with_90_percent_each_way_keeping_the_energy_for_the_later_price_beats_emptying_early() -> None:
    """Prices 0.36, 0.30, 0.40. Sell s kWh (stored) early, buy back c kWh (AC, <= s / 0.9 for room),
    sell the rest at 0.40: profit = 0.36*0.9*s - 0.30*c + 0.40*0.9*(10 - s + 0.9*c)
    = 3.60 - 0.036 s + 0.024 c <= 3.60 - (0.036 - 0.024/0.9) s, so s = 0: keep all 10 kWh, sell 9 kWh AC
    at 0.40 = 3.60."""
    s = full_battery_selling_over([0.36, 0.30, 0.40], efficiency=0.9)
    assert s.cost == pytest.approx(-3.60)
    assert s.batteries[0].discharge_kw == pytest.approx((0.0, 0.0, 9.0))
    assert s.batteries[0].charge_kw == pytest.approx((0.0, 0.0, 0.0))


def test_lossless_the_same_prices_pay_for_emptying_early_and_refilling() -> None:
    """The same prices lossless: 4 - 0.04 s + 0.10 c with c <= s, so s = c = 10: 3.6 - 3.0 + 4.0 = 4.60."""
    s = full_battery_selling_over([0.36, 0.30, 0.40], efficiency=1.0)
    assert s.cost == pytest.approx(-4.60)
    assert s.batteries[0].battery_kw == pytest.approx((-10.0, 10.0, -10.0))


def test_a_wear_cost_makes_a_small_spread_not_worth_it() -> None:
    """Spread 0.20 -> 0.25, wear 0.03 a kWh each way: 0.25 - 0.03 = 0.22 < 0.20 + 0.03 = 0.23: idle."""
    s = optimize(hourly([0.20, 0.25], batteries=(battery(wear_cost_per_kwh=0.03),)))
    assert s.cost == pytest.approx(0.0)
    assert s.batteries[0].battery_kw == pytest.approx((0.0, 0.0))
    assert s.saving == pytest.approx(0.0)


def test_a_smaller_wear_cost_leaves_the_spread_worth_it() -> None:
    """Wear 0.02: 0.23 > 0.22; 5 kWh x (0.25 - 0.20 - 2 x 0.02) = 0.05 of profit, 0.20 of it wear."""
    s = optimize(hourly([0.20, 0.25], batteries=(battery(wear_cost_per_kwh=0.02),)))
    assert s.cost == pytest.approx(-0.05)
    assert s.wear_cost == pytest.approx(0.20)
    assert s.batteries[0].battery_kw == pytest.approx((5.0, -5.0))


@pytest.mark.parametrize(
    ("efficiency", "wear", "p_lo"),
    [(0.9, 0.01, 0.10), (0.95, 0.0, 0.20), (0.8, 0.03, 0.05), (1.0, 0.02, 0.12)],
)
@pytest.mark.parametrize("side", [-1, 1])
def test_the_closed_form_rule_at_both_sides_of_its_threshold(
    efficiency: float, wear: float, p_lo: float, side: int
) -> None:
    """A kWh charged at p_lo and discharged at p_hi pays iff eta_c * eta_d * (p_hi - w) > p_lo + w, w per kWh
    charged and per kWh discharged on the grid side: p_hi* = (p_lo + w) / eta^2 + w. Just above it the
    battery charges 5 kW AC (5 eta stored) and returns 5 eta^2 kW: cost 5 (p_lo + w) - 5 eta^2 (p_hi - w)."""
    p_hi = (p_lo + wear) / efficiency**2 + wear + side * 1e-3
    b = battery(charge_efficiency=efficiency, discharge_efficiency=efficiency, wear_cost_per_kwh=wear)
    s = optimize(hourly([p_lo, p_hi], batteries=(b,)))
    if side > 0:
        assert s.batteries[0].charge_kw == pytest.approx((5.0, 0.0))
        assert s.batteries[0].discharge_kw == pytest.approx((0.0, 5.0 * efficiency**2))
        assert s.cost == pytest.approx(5 * (p_lo + wear) - 5 * efficiency**2 * (p_hi - wear))
        assert s.cost < 0
    else:
        assert s.batteries[0].battery_kw == pytest.approx((0.0, 0.0))
        assert s.cost == pytest.approx(0.0)


def test_an_end_soc_requirement() -> None:
    """20 % -> at least 80 % of 10 kWh: 6 kWh to buy at 0.30, 0.10, 0.20 (no export value): 5 at 0.10 and
    1 at 0.20 = 0.70, which is what the battery costs here (saving -0.70)."""
    b = battery(start_soc_pct=20.0, end_soc_pct=80.0)
    s = optimize(hourly([0.30, 0.10, 0.20], export_price=[0.0] * 3, batteries=(b,)))
    assert s.cost == pytest.approx(0.70)
    assert s.batteries[0].charge_kw == pytest.approx((0.0, 5.0, 1.0))
    assert s.batteries[0].soc_pct[-1] == pytest.approx(80.0)
    assert s.saving == pytest.approx(-0.70)


def test_by_default_the_plan_does_not_sell_the_contents_at_the_horizons_edge() -> None:
    """50 % at the start, one dear hour and nothing cheaper after it: no end SoC given, so none is sold."""
    s = optimize(hourly([0.50], batteries=(battery(start_soc_pct=50.0),)))
    assert s.batteries[0].soc_pct == pytest.approx((50.0,))
    assert s.cost == pytest.approx(0.0)


def test_a_negative_import_price_with_a_full_battery_imports_only_the_load() -> None:
    """Paid 0.10 a kWh to import 1 kW of load with the battery full (and to stay full). The LP alone
    would charge 5 kW while discharging 4.05 (90 % each way: 4.5 kWh in, 4.5 out) to burn 0.95 kW more,
    and import 6 kW while exporting at 0: the binaries forbid both, so the answer is -0.10."""
    b = battery(start_soc_pct=100.0, charge_efficiency=0.9, discharge_efficiency=0.9)
    s = optimize(hourly([-0.10], export_price=[0.0], load_kw=[1.0], batteries=(b,)))
    assert s.cost == pytest.approx(-0.10)
    assert s.import_kw == pytest.approx((1.0,))
    assert s.export_kw == pytest.approx((0.0,))
    assert s.batteries[0].battery_kw == pytest.approx((0.0,))
    assert s.binary_battery_slots == (("b1", 0),)
    assert s.binary_grid_slots == (0,)
    assert_one_direction(s)


def test_a_negative_import_price_after_a_dear_hour_empties_the_full_battery_first() -> None:
    """Full (10 kWh, 90 % each way), load 1 kW; hour 0 at 0.20 (export 0.05), hour 1 paid 0.10 to import.
    Refilling 5 kW AC (4.5 kWh) to end full allows discharging 4.05 kW AC in hour 0: 1 to the load (no
    import), 3.05 exported at 0.05; hour 1 imports 6 kW at -0.10. Cost -0.1525 - 0.60 = -0.7525; without
    the battery 0.20 - 0.10 = 0.10."""
    b = battery(start_soc_pct=100.0, charge_efficiency=0.9, discharge_efficiency=0.9)
    s = optimize(hourly([0.20, -0.10], export_price=[0.05, 0.05], load_kw=[1.0, 1.0], batteries=(b,)))
    assert s.cost == pytest.approx(-0.7525)
    assert s.cost_without_battery == pytest.approx(0.10)
    assert s.batteries[0].battery_kw == pytest.approx((-4.05, 5.0))
    assert s.import_kw == pytest.approx((0.0, 6.0))
    assert_one_direction(s)


def test_a_negative_export_price_with_pv_curtails_instead_of_exporting() -> None:
    """PV 5 kW, load 1 kW, export costs 0.05 a kWh: charge 2 kW (the battery's limit), curtail the other
    2, export nothing; the next hour's 2 kW load comes from the battery instead of 0.40 of import."""
    b = battery(max_charge_kw=2.0, max_discharge_kw=2.0)
    s = optimize(
        hourly([0.20, 0.20], export_price=[-0.05, 0.05], load_kw=[1.0, 2.0], pv_kw=[5.0, 0.0], batteries=(b,))
    )
    assert s.export_kw == pytest.approx((0.0, 0.0))
    assert s.curtailment_kw == pytest.approx((2.0, 0.0))
    assert s.batteries[0].battery_kw == pytest.approx((2.0, -2.0))
    assert s.cost == pytest.approx(0.0)
    assert s.cost_without_battery == pytest.approx(0.40)


def test_without_a_battery_a_negative_export_price_curtails_all_the_surplus() -> None:
    s = optimize(hourly([0.20], export_price=[-0.05], load_kw=[1.0], pv_kw=[5.0], batteries=()))
    assert s.curtailment_kw == pytest.approx((4.0,))
    assert s.export_kw == pytest.approx((0.0,))
    assert s.cost == pytest.approx(0.0)


def test_a_demand_charge_makes_the_plan_flatten_the_peak() -> None:
    """Load 6 then 2 kW at 0.10 a kWh, 1.00 per kW of peak, 5 kWh stored that must stay: 8 kWh over two
    hours is 4 kW flat (discharge 2, then charge 2): 0.80 + 4.00 = 4.80; without the battery 0.80 + 6.00."""
    s = optimize(
        hourly(
            [0.10, 0.10],
            export_price=[0.0, 0.0],
            load_kw=[6.0, 2.0],
            batteries=(battery(start_soc_pct=50.0),),
            demand_charge_per_kw=1.0,
        )
    )
    assert s.import_kw == pytest.approx((4.0, 4.0))
    assert s.peak_import_kw == pytest.approx(4.0)
    assert s.demand_charge_cost == pytest.approx(4.0)
    assert s.cost == pytest.approx(4.80)
    assert s.cost_without_battery == pytest.approx(6.80)
    assert s.saving == pytest.approx(2.0)


def test_a_peak_already_set_this_billing_period_is_not_paid_twice_and_not_shaved_below() -> None:
    """The period's peak is 5 kW already: the plan pays 5.00 for it and need not go under it: 0.80 + 5.00."""
    s = optimize(
        hourly(
            [0.10, 0.10],
            export_price=[0.0, 0.0],
            load_kw=[6.0, 2.0],
            batteries=(battery(start_soc_pct=50.0),),
            demand_charge_per_kw=1.0,
            peak_so_far_kw=5.0,
        )
    )
    assert s.peak_import_kw == pytest.approx(5.0)
    assert max(s.import_kw) <= 5.0 + TOL
    assert s.cost == pytest.approx(5.80)
    assert s.cost_without_battery == pytest.approx(6.80)


def ev_night(energy_kwh: float, max_kw: float) -> Problem:
    """00:00 to 08:00 in 15-minute slots; import 0.10 from 02:00 to 04:00 (slots 8-15), else 0.30; the EV
    leaves at 07:00 (slot 28)."""
    prices = [0.10 if 8 <= t < 16 else 0.30 for t in range(32)]
    ev = DeferrableLoad(load_id="ev", energy_kwh=energy_kwh, start_slot=0, end_slot=28, max_kw=max_kw)
    return Problem(
        slot_minutes=15,
        import_price_per_kwh=prices,
        export_price_per_kwh=[0.0] * 32,
        load_kw=[0.0] * 32,
        pv_kw=[0.0] * 32,
        deferrable_loads=(ev,),
    )


def test_an_ev_that_must_take_10_kwh_by_0700() -> None:
    """3.7 kW for the 2 cheap hours is 7.4 kWh at 0.10; the other 2.6 kWh at 0.30: 0.74 + 0.78 = 1.52."""
    s = optimize(ev_night(10.0, 3.7))
    ev_kw = s.deferrable_kw["ev"]
    assert sum(ev_kw) * 0.25 == pytest.approx(10.0)
    assert ev_kw[8:16] == pytest.approx((3.7,) * 8)
    assert ev_kw[28:] == pytest.approx((0.0,) * 4)
    assert s.cost == pytest.approx(1.52)


def test_a_charge_taper_limits_charging_above_its_soc() -> None:
    """Limit 5 kW up to 80 %, falling to 0 at 100 % (2.5 kW per kWh above 8 kWh), held at the slot's end
    SoC: hour 0 charges 5 (to 5 kWh); hour 1 c + 2.5 (5 + c) <= 5 + 2.5 x 8 gives c = 12.5 / 3.5; the
    8.5714 kWh sell at 1.00 in hour 2 after costing 0.10: cost -0.9 x 60 / 7."""
    b = battery(max_discharge_kw=10.0, taper_start_soc_pct=80.0)
    s = optimize(hourly([0.10, 0.10, 0.10], export_price=[0.0, 0.0, 1.0], batteries=(b,)))
    assert s.batteries[0].charge_kw == pytest.approx((5.0, 12.5 / 3.5, 0.0))
    assert s.batteries[0].soc_kwh[1] == pytest.approx(60 / 7)
    assert s.cost == pytest.approx(-0.9 * 60 / 7)


def test_equal_import_and_export_prices_give_no_simultaneous_flows() -> None:
    """Every plan costs the same here (lossless, no wear, equal prices): 0.10 x (2 - 3) = -0.10."""
    s = optimize(
        hourly([0.10, 0.10], load_kw=[2.0, 0.0], pv_kw=[0.0, 3.0], batteries=(battery(start_soc_pct=50.0),))
    )
    assert s.cost == pytest.approx(-0.10)
    assert_one_direction(s)


# --- infeasible and malformed inputs ---------------------------------------------------------------------


def test_an_unreachable_end_soc_is_invalid_naming_it() -> None:
    """Empty, 5 kW for one hour: 50 % at most, 100 % asked."""
    with pytest.raises(Invalid) as caught:
        optimize(hourly([0.10], batteries=(battery(end_soc_pct=100.0),)))
    assert caught.value.field == "batteries[0].end_soc_pct"
    assert "end SoC unreachable" in caught.value.message
    assert "50.00 %" in caught.value.message


def test_the_taper_counts_in_the_end_socs_reach() -> None:
    """The taper case's two hours reach 60 / 7 kWh = 85.71 %: 85 % passes, 86 % does not."""
    b = battery(taper_start_soc_pct=80.0, end_soc_pct=85.0)
    assert optimize(hourly([0.10, 0.10], batteries=(b,))).batteries[0].soc_pct[-1] >= 85.0 - TOL
    with pytest.raises(Invalid) as caught:
        optimize(hourly([0.10, 0.10], batteries=(battery(taper_start_soc_pct=80.0, end_soc_pct=86.0),)))
    assert caught.value.field == "batteries[0].end_soc_pct"
    assert "85.71 %" in caught.value.message


def test_a_deferrable_load_that_cannot_fit_is_invalid_naming_it() -> None:
    """10 kWh at 1 kW in a 7 h window: 7 kWh at most."""
    with pytest.raises(Invalid) as caught:
        optimize(ev_night(10.0, 1.0))
    assert caught.value.field == "deferrable_loads[0].energy_kwh"
    assert "cannot fit" in caught.value.message
    assert "7 kWh" in caught.value.message


def test_an_import_limit_the_load_cannot_meet_is_invalid_naming_it() -> None:
    """5 kW of load, 2 kW from the grid, an empty battery that must not end lower: no schedule."""
    with pytest.raises(Invalid) as caught:
        optimize(hourly([0.10], load_kw=[5.0], import_limit_kw=2.0))
    assert caught.value.field == "import_limit_kw"


def test_a_battery_covers_what_the_import_limit_cannot() -> None:
    """The same hour with 5 kWh stored that may be used: 3 kW from the battery, 2 from the grid at 0.10."""
    b = battery(start_soc_pct=50.0, end_soc_pct=20.0)
    s = optimize(hourly([0.10], export_price=[0.0], load_kw=[5.0], import_limit_kw=2.0, batteries=(b,)))
    assert s.import_kw == pytest.approx((2.0,))
    assert s.cost == pytest.approx(0.20)
    assert s.cost_without_battery is None
    assert s.saving is None


@pytest.mark.parametrize(
    ("problem", "field"),
    [
        (hourly([0.1, 0.2], export_price=[0.1]), "export_price_per_kwh"),
        (hourly([0.1], load_kw=[-1.0]), "load_kw"),
        (hourly([0.1], pv_kw=[float("nan")]), "pv_kw"),
        (hourly([0.1], batteries=(battery(start_soc_pct=120.0),)), "batteries[0].start_soc_pct"),
        (hourly([0.1], batteries=(battery(charge_efficiency=0.0),)), "batteries[0].charge_efficiency"),
        (hourly([0.1], batteries=(battery(capacity_kwh=0.0),)), "batteries[0].capacity_kwh"),
        (hourly([0.1], batteries=(battery(), battery())), "batteries"),
        (hourly([0.1], import_limit_kw=-1.0), "import_limit_kw"),
        (hourly([], load_kw=[]), "load_kw"),
    ],
)
def test_malformed_input_is_invalid_naming_the_field(problem: Problem, field: str) -> None:
    with pytest.raises(Invalid) as caught:
        optimize(problem)
    assert caught.value.field == field


def imported_after(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_problem_and_schedule_models_import_no_numerical_library() -> None:
    """Any function may build a Problem or read a Schedule; the science layer stays the optimiser's."""
    assert not {"numpy", "highspy"} & imported_after("ems.batteries.schedule")


def test_importing_the_optimizer_does_not_load_highspy() -> None:
    assert "highspy" not in imported_after("ems.batteries.optimizer")


# --- invariants over random inputs -----------------------------------------------------------------------

prices = st.floats(min_value=-0.2, max_value=0.6, allow_nan=False).map(lambda v: round(v, 3))
powers = st.floats(min_value=0.0, max_value=6.0, allow_nan=False).map(lambda v: round(v, 2))


@st.composite
def random_batteries(draw: st.DrawFn, index: int) -> Battery:
    soc_min = draw(st.sampled_from([0.0, 10.0, 20.0]))
    soc_max = draw(st.sampled_from([80.0, 90.0, 100.0]))
    return Battery(
        battery_id=f"b{index}",
        capacity_kwh=draw(st.sampled_from([5.0, 10.0, 13.5])),
        max_charge_kw=draw(st.sampled_from([2.0, 5.0])),
        max_discharge_kw=draw(st.sampled_from([2.0, 5.0])),
        start_soc_pct=draw(st.floats(min_value=soc_min, max_value=soc_max).map(lambda v: round(v, 1))),
        charge_efficiency=draw(st.sampled_from([1.0, 0.95, 0.9])),
        discharge_efficiency=draw(st.sampled_from([1.0, 0.95, 0.9])),
        soc_min_pct=soc_min,
        soc_max_pct=soc_max,
        wear_cost_per_kwh=draw(st.sampled_from([0.0, 0.01, 0.05])),
        taper_start_soc_pct=draw(st.sampled_from([None, soc_min + 0.5 * (soc_max - soc_min)])),
    )


@st.composite
def problems(draw: st.DrawFn) -> Problem:
    n = draw(st.integers(min_value=1, max_value=12))
    count = draw(st.integers(min_value=0, max_value=2))
    slot_minutes = draw(st.sampled_from([15, 60]))
    import_price = draw(st.lists(prices, min_size=n, max_size=n))
    deferrable: tuple[DeferrableLoad, ...] = ()
    if draw(st.booleans()):
        start = draw(st.integers(min_value=0, max_value=n - 1))
        end = draw(st.integers(min_value=start + 1, max_value=n))
        most_kwh = 3.0 * (end - start) * slot_minutes / 60
        deferrable = (
            DeferrableLoad("ev", round(draw(st.floats(0.0, 1.0)) * most_kwh, 3), start, end, max_kw=3.0),
        )
    return Problem(
        slot_minutes=slot_minutes,
        deferrable_loads=deferrable,
        import_price_per_kwh=import_price,
        # Equal prices half the time: every split of a slot's flow costs the same there.
        export_price_per_kwh=import_price
        if draw(st.booleans())
        else draw(st.lists(prices, min_size=n, max_size=n)),
        load_kw=draw(st.lists(powers, min_size=n, max_size=n)),
        pv_kw=draw(st.lists(powers, min_size=n, max_size=n)),
        batteries=tuple(draw(random_batteries(i)) for i in range(count)),
        export_limit_kw=draw(st.sampled_from([None, 3.0])),
        demand_charge_per_kw=draw(st.sampled_from([0.0, 0.5])),
        peak_so_far_kw=draw(st.sampled_from([0.0, 2.0])),
    )


@given(problems())
@settings(SOLVER_PROFILE, suppress_health_check=[HealthCheck.too_slow])
def test_random_schedules_keep_every_invariant(p: Problem) -> None:
    s = optimize(p)
    dt = p.slot_hours
    assert_one_direction(s)
    for b, plan in zip(p.batteries, s.batteries, strict=True):
        soc = b.kwh(b.start_soc_pct)
        for t in range(p.slots):
            soc += dt * (
                b.charge_efficiency * plan.charge_kw[t] - plan.discharge_kw[t] / b.discharge_efficiency
            )
            assert plan.soc_kwh[t] == pytest.approx(soc, abs=TOL)
            assert b.kwh(b.soc_min_pct) - TOL <= plan.soc_kwh[t] <= b.kwh(b.soc_max_pct) + TOL
        assert plan.soc_kwh[-1] >= b.kwh(b.start_soc_pct) - TOL
    for t in range(p.slots):
        supplied = (
            s.import_kw[t] + p.pv_kw[t] - s.curtailment_kw[t] + sum(b.discharge_kw[t] for b in s.batteries)
        )
        used = p.load_kw[t] + s.export_kw[t] + sum(b.charge_kw[t] for b in s.batteries)
        used += sum(kw[t] for kw in s.deferrable_kw.values())
        assert supplied == pytest.approx(used, abs=TOL)
        assert 0 <= s.curtailment_kw[t] <= p.pv_kw[t] + TOL
        assert p.export_limit_kw is None or s.export_kw[t] <= p.export_limit_kw + TOL
    for d in p.deferrable_loads:
        ev_kw = s.deferrable_kw[d.load_id]
        assert sum(ev_kw) * dt == pytest.approx(d.energy_kwh, abs=TOL)
        assert all(kw == 0 for t, kw in enumerate(ev_kw) if not d.start_slot <= t < d.end_slot)
        assert all(-TOL <= kw <= d.max_kw + TOL for kw in ev_kw)
    recomputed = dt * sum(
        p.import_price_per_kwh[t] * s.import_kw[t] - p.export_price_per_kwh[t] * s.export_kw[t]
        + sum(b.wear_cost_per_kwh * (plan.charge_kw[t] + plan.discharge_kw[t]) for b, plan in zip(p.batteries, s.batteries, strict=True))
        for t in range(p.slots)
    ) + p.demand_charge_per_kw * max(p.peak_so_far_kw, *s.import_kw)  # fmt: skip
    assert s.cost == pytest.approx(recomputed, abs=TOL)
    # Idling is always feasible (the end SoC defaults to the start), so the battery never costs money.
    assert s.cost_without_battery is not None and s.saving is not None
    assert s.saving >= -TOL
