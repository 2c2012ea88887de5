"""The battery schedule as a linear program on HiGHS (highspy's matrix API): ems.batteries.schedule's
dataclasses in and out, no I/O.

Minimise, over the horizon's slots (length `slot_minutes`, dt = slot_minutes / 60 h):

    sum_t dt * (import_price[t] * import_kw[t] - export_price[t] * export_kw[t]
                + sum_b wear_b * (charge_kw[b, t] + discharge_kw[b, t]))
    + demand_charge_per_kw * peak_import_kw

Wear convention: `wear_cost_per_kwh` is paid once per kWh charged and once per kWh discharged, both
counted on the grid (AC) side of the battery, where its powers are. Hence a kWh bought at p_lo, kept
and sold at p_hi pays iff eta_c * eta_d * (p_hi - w) > p_lo + w.

numpy and highspy are the science layer's: only the optimiser's function imports this module (on
its first solve), and highspy loads when a model is first solved.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from ems.batteries.schedule import Battery, BatterySchedule, DeferrableLoad, Problem, Schedule
from ems.core.errors import Invalid

__all__ = ["Battery", "BatterySchedule", "DeferrableLoad", "Problem", "Schedule", "optimize"]

# Flows smaller than this (kW) count as zero when looking for a slot that charges and discharges at
# once, or imports and exports at once.
SIMULTANEOUS_FLOW_TOLERANCE_KW = 1e-6
_CLEAN_KW = 1e-9

Floats = NDArray[np.float64]
Columns = NDArray[np.int64]


def optimize(problem: Problem) -> Schedule:
    """The least-cost schedule of `problem`'s batteries; Invalid (naming the input) when there is none."""
    _check(problem)
    started = time.perf_counter()
    plan = _solve(problem, problem.batteries)
    solve_ms = (time.perf_counter() - started) * 1000.0
    if plan is None:
        raise _infeasible(problem)
    without = _solve(problem, ()) if problem.batteries else plan
    cost_without = None if without is None else without.cost
    return Schedule(
        slot_minutes=problem.slot_minutes,
        batteries=plan.batteries,
        import_kw=plan.import_kw,
        export_kw=plan.export_kw,
        curtailment_kw=plan.curtailment_kw,
        deferrable_kw=plan.deferrable_kw,
        peak_import_kw=plan.peak_import_kw,
        import_cost=plan.import_cost,
        export_revenue=plan.export_revenue,
        wear_cost=plan.wear_cost,
        demand_charge_cost=plan.demand_charge_cost,
        cost=plan.cost,
        cost_without_battery=cost_without,
        saving=None if cost_without is None else cost_without - plan.cost,
        status="optimal",
        solve_ms=solve_ms,
        binary_battery_slots=plan.binary_battery_slots,
        binary_grid_slots=plan.binary_grid_slots,
    )


# --- checks: every rejection names its field and the reason -------------------------------------------


def _check(p: Problem) -> None:
    n = p.slots
    if n < 1:
        raise Invalid("load_kw must hold at least one slot", field="load_kw")
    if not p.slot_minutes > 0:
        raise Invalid("slot_minutes must be positive", field="slot_minutes")
    for name in ("import_price_per_kwh", "export_price_per_kwh", "pv_kw"):
        if len(getattr(p, name)) != n:
            raise Invalid(f"{name} has {len(getattr(p, name))} slots, load_kw has {n}", field=name)
    for name in ("import_price_per_kwh", "export_price_per_kwh", "load_kw", "pv_kw"):
        values = getattr(p, name)
        if not all(math.isfinite(v) for v in values):
            raise Invalid(f"{name} must be finite numbers", field=name)
        if name.endswith("_kw") and min(values) < 0:
            raise Invalid(f"{name} cannot be negative", field=name)
    for name in ("import_limit_kw", "export_limit_kw"):
        limit = getattr(p, name)
        if limit is not None and not limit >= 0:
            raise Invalid(f"{name} cannot be negative", field=name)
    if not p.demand_charge_per_kw >= 0:
        raise Invalid("demand_charge_per_kw cannot be negative", field="demand_charge_per_kw")
    if not p.peak_so_far_kw >= 0:
        raise Invalid("peak_so_far_kw cannot be negative", field="peak_so_far_kw")
    ids = [b.battery_id for b in p.batteries]
    if len(set(ids)) != len(ids):
        raise Invalid("battery ids must be unique", field="batteries")
    for i, battery in enumerate(p.batteries):
        _check_battery(battery, f"batteries[{i}]", p)
    load_ids = [d.load_id for d in p.deferrable_loads]
    if len(set(load_ids)) != len(load_ids):
        raise Invalid("deferrable load ids must be unique", field="deferrable_loads")
    for i, load in enumerate(p.deferrable_loads):
        _check_deferrable_load(load, f"deferrable_loads[{i}]", p)


def _check_battery(b: Battery, at: str, p: Problem) -> None:
    if not b.capacity_kwh > 0:
        raise Invalid("capacity_kwh must be positive", field=f"{at}.capacity_kwh")
    for name in ("max_charge_kw", "max_discharge_kw", "wear_cost_per_kwh"):
        if not getattr(b, name) >= 0:
            raise Invalid(f"{name} cannot be negative", field=f"{at}.{name}")
    for name in ("charge_efficiency", "discharge_efficiency"):
        if not 0 < getattr(b, name) <= 1:
            raise Invalid(f"{name} must be in (0, 1]", field=f"{at}.{name}")
    if not 0 <= b.soc_min_pct <= b.soc_max_pct <= 100:
        raise Invalid(
            "SoC bounds must satisfy 0 <= soc_min_pct <= soc_max_pct <= 100", field=f"{at}.soc_min_pct"
        )
    if not b.soc_min_pct <= b.start_soc_pct <= b.soc_max_pct:
        raise Invalid(
            f"start_soc_pct {b.start_soc_pct} is outside [{b.soc_min_pct}, {b.soc_max_pct}]",
            field=f"{at}.start_soc_pct",
        )
    if b.taper_start_soc_pct is not None:
        if not b.soc_min_pct <= b.taper_start_soc_pct < b.soc_max_pct:
            raise Invalid(
                "taper_start_soc_pct must be in [soc_min_pct, soc_max_pct)", field=f"{at}.taper_start_soc_pct"
            )
        if not 0 <= b.taper_end_kw <= b.max_charge_kw:
            raise Invalid("taper_end_kw must be in [0, max_charge_kw]", field=f"{at}.taper_end_kw")
    if b.end_soc_pct is not None:
        if not b.soc_min_pct <= b.end_soc_pct <= b.soc_max_pct:
            raise Invalid(
                f"end_soc_pct {b.end_soc_pct} is outside [{b.soc_min_pct}, {b.soc_max_pct}]",
                field=f"{at}.end_soc_pct",
            )
        reachable_kwh = _most_stored_kwh(b, p.slots, p.slot_hours)
        if b.kwh(b.end_soc_pct) > reachable_kwh + 1e-9:
            raise Invalid(
                f"end SoC unreachable: battery {b.battery_id!r} can reach at most "
                f"{100 * reachable_kwh / b.capacity_kwh:.2f} % by the horizon's end from {b.start_soc_pct} % "
                f"(charge limit {b.max_charge_kw} kW, efficiency {b.charge_efficiency}, taper), "
                f"not {b.end_soc_pct} %",
                field=f"{at}.end_soc_pct",
            )


def _most_stored_kwh(b: Battery, slots: int, slot_hours: float) -> float:
    """The SoC charging flat out from the start reaches by the last slot (the taper's row, solved for
    the charge power: c + slope * (s + dt * eta_c * c) <= P + slope * s0)."""
    soc_kwh, soc_max_kwh = b.kwh(b.start_soc_pct), b.kwh(b.soc_max_pct)
    slope, taper_start_kwh = _taper(b)
    for _ in range(slots):
        charge_kw = b.max_charge_kw
        if slope > 0:
            limit = (b.max_charge_kw + slope * (taper_start_kwh - soc_kwh)) / (
                1 + slope * slot_hours * b.charge_efficiency
            )
            charge_kw = min(charge_kw, max(limit, 0.0))
        soc_kwh = min(soc_max_kwh, soc_kwh + slot_hours * b.charge_efficiency * charge_kw)
    return soc_kwh


def _check_deferrable_load(d: DeferrableLoad, at: str, p: Problem) -> None:
    if not 0 <= d.start_slot < d.end_slot <= p.slots:
        raise Invalid(
            f"the window [start_slot, end_slot) must lie within the horizon's {p.slots} slots",
            field=f"{at}.end_slot",
        )
    if not 0 <= d.min_kw <= d.max_kw:
        raise Invalid("power bounds must satisfy 0 <= min_kw <= max_kw", field=f"{at}.max_kw")
    if not d.energy_kwh >= 0:
        raise Invalid("energy_kwh cannot be negative", field=f"{at}.energy_kwh")
    window_hours = (d.end_slot - d.start_slot) * p.slot_hours
    if d.energy_kwh > d.max_kw * window_hours + 1e-9:
        raise Invalid(
            f"deferrable load {d.load_id!r} cannot fit: it needs {d.energy_kwh} kWh but at most "
            f"{d.max_kw * window_hours:g} kWh can be delivered at {d.max_kw} kW in its {window_hours:g} h window",
            field=f"{at}.energy_kwh",
        )
    if d.energy_kwh < d.min_kw * window_hours - 1e-9:
        raise Invalid(
            f"deferrable load {d.load_id!r} cannot fit: at its min_kw of {d.min_kw} kW it takes at least "
            f"{d.min_kw * window_hours:g} kWh in its {window_hours:g} h window, more than its {d.energy_kwh} kWh",
            field=f"{at}.energy_kwh",
        )


def _infeasible(p: Problem) -> Invalid:
    """What the pre-checks cannot see: the grid import limit, with everything that must be supplied."""
    if p.import_limit_kw is not None:
        return Invalid(
            f"no schedule keeps grid import within import_limit_kw={p.import_limit_kw} while meeting the load, "
            "the deferrable loads and the batteries' end SoC",
            field="import_limit_kw",
        )
    return Invalid("no schedule meets every constraint", field=None)  # not reached: every family is checked


# --- the model: columns and rows, one function per constraint family ------------------------------------


class _Model:
    """Columns (bounds, cost) and blocks of constraint rows, each block a matrix of column indices and one of
    coefficients (a row per line), gathered into the row-wise arrays HiGHS's matrix API takes."""

    def __init__(self) -> None:
        self.lower: list[Floats] = []
        self.upper: list[Floats] = []
        self.cost: list[Floats] = []
        self.count = 0
        self.integer: list[Columns] = []
        self.blocks: list[tuple[Columns, Floats, Floats, Floats]] = []

    def columns(self, lower: object, upper: object, cost: object, shape: tuple[int, ...]) -> Columns:
        size = math.prod(shape)
        index = np.arange(self.count, self.count + size, dtype=np.int64).reshape(shape)
        for into, values in ((self.lower, lower), (self.upper, upper), (self.cost, cost)):
            into.append(np.broadcast_to(np.asarray(values, dtype=np.float64), shape).ravel())
        self.count += size
        return index

    def binaries(self, count: int) -> Columns:
        index = self.columns(0.0, 1.0, 0.0, (count,))
        self.integer.append(index)
        return index

    def rows(self, index: Columns, value: object, lower: object, upper: object) -> None:
        """One row per line of `index` (rows x nonzeros); `value`, `lower`, `upper` broadcast to it."""
        count = index.shape[0]
        self.blocks.append(
            (
                index,
                np.broadcast_to(np.asarray(value, dtype=np.float64), index.shape),
                np.broadcast_to(np.asarray(lower, dtype=np.float64), (count,)),
                np.broadcast_to(np.asarray(upper, dtype=np.float64), (count,)),
            )
        )

    def column_upper(self) -> Floats:
        return np.concatenate(self.upper)


@dataclass
class _Columns:
    import_kw: Columns  # (slots,)
    export_kw: Columns
    curtailment_kw: Columns
    import_most_kw: Floats  # the import and export columns' upper bounds, the binaries' big-M
    export_most_kw: Floats
    peak_import_kw: int | None
    charge_kw: Columns = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))  # (batteries, slots)
    discharge_kw: Columns = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    soc_kwh: Columns = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    deferrable_kw: Columns = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))  # (loads, slots)


def _taper(b: Battery) -> tuple[float, float]:
    """(slope in kW of charge limit lost per kWh stored above the taper's start, that start in kWh)."""
    if b.taper_start_soc_pct is None:
        return 0.0, 0.0
    start_kwh = b.kwh(b.taper_start_soc_pct)
    return (b.max_charge_kw - b.taper_end_kw) / (b.kwh(b.soc_max_pct) - start_kwh), start_kwh


def _window_mask(p: Problem) -> NDArray[np.bool_]:
    """(loads, slots): True where a deferrable load may run."""
    slot = np.arange(p.slots)
    return np.array(
        [(d.start_slot <= slot) & (slot < d.end_slot) for d in p.deferrable_loads], dtype=bool
    ).reshape(len(p.deferrable_loads), p.slots)


def _grid_columns(m: _Model, p: Problem, batteries: Sequence[Battery]) -> _Columns:
    """Grid import and export, PV curtailment and the peak. A slot never needs to import more than it can
    use (load, deferrable loads, charging) nor export more than it can make (PV, discharging): those
    bounds are implied by "never import and export in one slot" and keep every LP bounded (a negative
    import price with an export price above it would otherwise pay without limit)."""
    n, dt = p.slots, p.slot_hours
    load_kw, pv_kw = np.asarray(p.load_kw, dtype=np.float64), np.asarray(p.pv_kw, dtype=np.float64)
    deferrable_most_kw = (
        np.array([d.max_kw for d in p.deferrable_loads]) @ _window_mask(p) if p.deferrable_loads else 0.0
    )
    most_used_kw = load_kw + deferrable_most_kw + sum(b.max_charge_kw for b in batteries)
    most_made_kw = pv_kw + sum(b.max_discharge_kw for b in batteries)
    import_most_kw = np.minimum(math.inf if p.import_limit_kw is None else p.import_limit_kw, most_used_kw)
    export_most_kw = np.minimum(math.inf if p.export_limit_kw is None else p.export_limit_kw, most_made_kw)
    import_kw = m.columns(0.0, import_most_kw, dt * np.asarray(p.import_price_per_kwh), (n,))
    export_kw = m.columns(0.0, export_most_kw, -dt * np.asarray(p.export_price_per_kwh), (n,))
    curtailment_kw = m.columns(0.0, pv_kw, 0.0, (n,))
    peak = None
    if p.demand_charge_per_kw > 0:
        peak = int(m.columns(p.peak_so_far_kw, math.inf, p.demand_charge_per_kw, (1,))[0])
    return _Columns(import_kw, export_kw, curtailment_kw, import_most_kw, export_most_kw, peak)


def _battery_columns(m: _Model, p: Problem, batteries: Sequence[Battery], cols: _Columns) -> None:
    """Charge and discharge power (with the wear cost) and the SoC within its bounds; the last slot's SoC no
    lower than the end SoC (the start's, by default)."""
    n, count, dt = p.slots, len(batteries), p.slot_hours
    by_battery = (count, 1)

    def each(values: list[float]) -> Floats:
        return np.array(values, dtype=np.float64).reshape(by_battery)

    wear = dt * each([b.wear_cost_per_kwh for b in batteries])
    cols.charge_kw = m.columns(0.0, each([b.max_charge_kw for b in batteries]), wear, (count, n))
    cols.discharge_kw = m.columns(0.0, each([b.max_discharge_kw for b in batteries]), wear, (count, n))
    soc_lower_kwh = np.repeat(each([b.kwh(b.soc_min_pct) for b in batteries]), n, axis=1)
    end_kwh = [b.kwh(b.start_soc_pct if b.end_soc_pct is None else b.end_soc_pct) for b in batteries]
    soc_lower_kwh[:, -1] = np.maximum(soc_lower_kwh[:, -1], end_kwh)
    cols.soc_kwh = m.columns(soc_lower_kwh, each([b.kwh(b.soc_max_pct) for b in batteries]), 0.0, (count, n))


def _deferrable_columns(m: _Model, p: Problem, cols: _Columns) -> None:
    """Power between min_kw and max_kw inside each load's window, none outside it."""
    inside = _window_mask(p)
    count = len(p.deferrable_loads)
    min_kw = np.array([d.min_kw for d in p.deferrable_loads], dtype=np.float64).reshape(count, 1)
    max_kw = np.array([d.max_kw for d in p.deferrable_loads], dtype=np.float64).reshape(count, 1)
    cols.deferrable_kw = m.columns(min_kw * inside, max_kw * inside, 0.0, (count, p.slots))


def _power_balance_rows(m: _Model, p: Problem, cols: _Columns) -> None:
    """Per slot, kW: import - export - curtailment + discharge - charge - deferrable = load - pv."""
    index = np.column_stack(
        [
            cols.import_kw,
            cols.export_kw,
            cols.curtailment_kw,
            cols.discharge_kw.T,
            cols.charge_kw.T,
            cols.deferrable_kw.T,
        ]
    )
    batteries, loads = cols.charge_kw.shape[0], cols.deferrable_kw.shape[0]
    value = [1.0, -1.0, -1.0] + [1.0] * batteries + [-1.0] * batteries + [-1.0] * loads
    net_kw = np.asarray(p.load_kw, dtype=np.float64) - np.asarray(p.pv_kw, dtype=np.float64)
    m.rows(index, value, net_kw, net_kw)


def _soc_dynamics_rows(m: _Model, p: Problem, batteries: Sequence[Battery], cols: _Columns) -> None:
    """Per battery and slot, kWh: soc[t] - soc[t-1] - dt * eta_c * charge[t] + dt / eta_d * discharge[t] = 0,
    soc[-1] being the start SoC."""
    dt = p.slot_hours
    for k, b in enumerate(batteries):
        charge, discharge, soc = cols.charge_kw[k], cols.discharge_kw[k], cols.soc_kwh[k]
        stored_per_kw, drawn_per_kw = dt * b.charge_efficiency, dt / b.discharge_efficiency
        start_kwh = b.kwh(b.start_soc_pct)
        m.rows(
            np.array([[soc[0], charge[0], discharge[0]]]),
            [1.0, -stored_per_kw, drawn_per_kw],
            start_kwh,
            start_kwh,
        )
        if p.slots > 1:
            index = np.column_stack([soc[1:], soc[:-1], charge[1:], discharge[1:]])
            m.rows(index, [1.0, -1.0, -stored_per_kw, drawn_per_kw], 0.0, 0.0)


def _charge_taper_rows(m: _Model, batteries: Sequence[Battery], cols: _Columns) -> None:
    """Per tapered battery and slot, kW: charge[t] + slope * soc[t] <= max_charge_kw + slope * taper_start_kwh
    (slope in kW per kWh): the limit is max_charge_kw at the taper's start and taper_end_kw at soc_max."""
    for k, b in enumerate(batteries):
        slope, start_kwh = _taper(b)
        if slope > 0:
            index = np.column_stack([cols.charge_kw[k], cols.soc_kwh[k]])
            m.rows(index, [1.0, slope], -math.inf, b.max_charge_kw + slope * start_kwh)


def _deferrable_energy_rows(m: _Model, p: Problem, cols: _Columns) -> None:
    """Per deferrable load, kWh: sum over its window of dt * power = energy_kwh."""
    for k, d in enumerate(p.deferrable_loads):
        window = cols.deferrable_kw[k, d.start_slot : d.end_slot]
        m.rows(window.reshape(1, -1), p.slot_hours, d.energy_kwh, d.energy_kwh)


def _peak_import_rows(m: _Model, cols: _Columns) -> None:
    """Per slot, kW: import[t] - peak_import <= 0 (the peak's own lower bound is the period's peak so far)."""
    if cols.peak_import_kw is not None:
        index = np.column_stack([cols.import_kw, np.full_like(cols.import_kw, cols.peak_import_kw)])
        m.rows(index, [1.0, -1.0], -math.inf, 0.0)


def _one_direction_rows(
    m: _Model,
    batteries: Sequence[Battery],
    cols: _Columns,
    battery_slots: set[tuple[int, int]],
    grid_slots: set[int],
) -> None:
    """Binaries (MILP) only where the LP alone chose simultaneous flows. With u in {0, 1}, kW:
    charge <= max_charge_kw * u, discharge <= max_discharge_kw * (1 - u); the same for import and export with
    their column bounds as big-M.

    Where the LP does it: charging and discharging at once burns (1 - eta_c * eta_d) of the energy and
    pays wear twice, which pays (or ties) only when a slot's energy is worth nothing or less (a negative
    import price, a full battery and nowhere else to put the energy) or when a lossless, wear-free battery
    makes it a tie. Importing and exporting at once pays (or ties) only where export_price >= import_price.
    The relaxation with fewer binaries is solved first; an optimum of it that has no simultaneous flow
    anywhere is feasible for the fully constrained MILP, hence optimal for it, so binaries are added only
    for the (battery, slot) pairs and slots that showed such flows, and the model solved again, until none do.
    """
    if battery_slots:
        k, t = np.array(sorted(battery_slots), dtype=np.int64).T
        u = m.binaries(len(k))
        max_charge_kw = np.array([batteries[i].max_charge_kw for i in k])
        max_discharge_kw = np.array([batteries[i].max_discharge_kw for i in k])
        m.rows(
            np.column_stack([cols.charge_kw[k, t], u]),
            np.column_stack([np.ones(len(k)), -max_charge_kw]),
            -math.inf,
            0.0,
        )
        m.rows(
            np.column_stack([cols.discharge_kw[k, t], u]),
            np.column_stack([np.ones(len(k)), max_discharge_kw]),
            -math.inf,
            max_discharge_kw,
        )
    if grid_slots:
        t = np.array(sorted(grid_slots), dtype=np.int64)
        g = m.binaries(len(t))
        import_m, export_m = cols.import_most_kw[t], cols.export_most_kw[t]
        m.rows(
            np.column_stack([cols.import_kw[t], g]),
            np.column_stack([np.ones(len(t)), -import_m]),
            -math.inf,
            0.0,
        )
        m.rows(
            np.column_stack([cols.export_kw[t], g]),
            np.column_stack([np.ones(len(t)), export_m]),
            -math.inf,
            export_m,
        )


# --- solving ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    batteries: tuple[BatterySchedule, ...]
    import_kw: tuple[float, ...]
    export_kw: tuple[float, ...]
    curtailment_kw: tuple[float, ...]
    deferrable_kw: dict[str, tuple[float, ...]]
    peak_import_kw: float
    import_cost: float
    export_revenue: float
    wear_cost: float
    demand_charge_cost: float
    cost: float
    binary_battery_slots: tuple[tuple[str, int], ...]
    binary_grid_slots: tuple[int, ...]


def _build(
    p: Problem, batteries: Sequence[Battery], battery_slots: set[tuple[int, int]], grid_slots: set[int]
) -> tuple[_Model, _Columns]:
    m = _Model()
    cols = _grid_columns(m, p, batteries)
    _battery_columns(m, p, batteries, cols)
    _deferrable_columns(m, p, cols)
    _power_balance_rows(m, p, cols)
    _soc_dynamics_rows(m, p, batteries, cols)
    _charge_taper_rows(m, batteries, cols)
    _deferrable_energy_rows(m, p, cols)
    _peak_import_rows(m, cols)
    _one_direction_rows(m, batteries, cols, battery_slots, grid_slots)
    return m, cols


def _solve(p: Problem, batteries: Sequence[Battery]) -> _Plan | None:
    """The optimum, adding binaries where the LP's optimum has simultaneous flows; None if infeasible."""
    battery_slots: set[tuple[int, int]] = set()
    grid_slots: set[int] = set()
    while True:
        m, cols = _build(p, batteries, battery_slots, grid_slots)
        solved = _run_highs(m)
        if solved is None:
            return None
        v, objective = solved
        tol = SIMULTANEOUS_FLOW_TOLERANCE_KW
        both_ways = {
            (int(k), int(t))
            for k, t in np.argwhere(np.minimum(v[cols.charge_kw], v[cols.discharge_kw]) > tol)
        } - battery_slots
        import_and_export = {
            int(t) for t in np.flatnonzero(np.minimum(v[cols.import_kw], v[cols.export_kw]) > tol)
        } - grid_slots
        if not both_ways and not import_and_export:
            return _plan(p, batteries, cols, v, objective, battery_slots, grid_slots)
        battery_slots |= both_ways
        grid_slots |= import_and_export


def _run_highs(m: _Model) -> tuple[Floats, float] | None:
    """(column values, objective) of the optimum; None if HiGHS proves the model infeasible."""
    import highspy  # the science layer's; kept off every other function's import path

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", 0.0)
    # One thread: these models are small, and HiGHS's thread pool costs more than it saves (bench/battery.py:
    # 96 slots x 1 battery took about 3x as long with the default pool on 2 cores). Presolve only for the MILP
    # passes: on the LP it costs more than it removes.
    h.setOptionValue("threads", 1)
    if not m.integer:
        h.setOptionValue("presolve", "off")
    lower, upper, cost = np.concatenate(m.lower), np.concatenate(m.upper), np.concatenate(m.cost)
    h.addVars(m.count, lower, upper)
    h.changeColsCost(m.count, np.arange(m.count, dtype=np.int32), cost)
    if m.integer:
        integer = np.concatenate(m.integer).astype(np.int32)
        h.changeColsIntegrality(len(integer), integer, np.full(len(integer), highspy.HighsVarType.kInteger))
    index = np.concatenate([block[0].ravel() for block in m.blocks]).astype(np.int32)
    value = np.concatenate([block[1].ravel() for block in m.blocks])
    row_lower = np.concatenate([block[2] for block in m.blocks])
    row_upper = np.concatenate([block[3] for block in m.blocks])
    widths = np.concatenate([np.full(block[0].shape[0], block[0].shape[1]) for block in m.blocks])
    starts = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int32)
    h.addRows(len(row_lower), row_lower, row_upper, len(index), starts, index, value)
    if h.run() == highspy.HighsStatus.kError:
        # HiGHS's scheduler is global: one started with other threads settings refuses this run until reset.
        highspy.Highs.resetGlobalScheduler(True)
        h.run()
    status = h.getModelStatus()
    if status == highspy.HighsModelStatus.kInfeasible:
        return None
    if status != highspy.HighsModelStatus.kOptimal:
        raise RuntimeError(f"HiGHS stopped with {h.modelStatusToString(status)}")
    v = np.asarray(h.getSolution().col_value, dtype=np.float64)
    v[np.abs(v) < _CLEAN_KW] = 0.0
    return v, float(h.getInfo().objective_function_value)


def _plan(
    p: Problem,
    batteries: Sequence[Battery],
    cols: _Columns,
    v: Floats,
    objective: float,
    battery_slots: set[tuple[int, int]],
    grid_slots: set[int],
) -> _Plan:
    dt = p.slot_hours
    charge_kw, discharge_kw, soc_kwh = v[cols.charge_kw], v[cols.discharge_kw], v[cols.soc_kwh]
    schedules = tuple(
        BatterySchedule(
            battery_id=b.battery_id,
            charge_kw=tuple(charge_kw[k].tolist()),
            discharge_kw=tuple(discharge_kw[k].tolist()),
            soc_kwh=tuple(soc_kwh[k].tolist()),
            soc_pct=tuple((100.0 * soc_kwh[k] / b.capacity_kwh).tolist()),
        )
        for k, b in enumerate(batteries)
    )
    import_kw, export_kw = v[cols.import_kw], v[cols.export_kw]
    peak_kw = max(p.peak_so_far_kw, float(import_kw.max()))
    wear = np.array([b.wear_cost_per_kwh for b in batteries], dtype=np.float64)
    wear_cost = dt * float(wear @ (charge_kw.sum(axis=1) + discharge_kw.sum(axis=1))) if batteries else 0.0
    return _Plan(
        batteries=schedules,
        import_kw=tuple(import_kw.tolist()),
        export_kw=tuple(export_kw.tolist()),
        curtailment_kw=tuple(v[cols.curtailment_kw].tolist()),
        deferrable_kw={
            d.load_id: tuple(v[cols.deferrable_kw[k]].tolist()) for k, d in enumerate(p.deferrable_loads)
        },
        peak_import_kw=peak_kw,
        import_cost=dt * float(np.dot(p.import_price_per_kwh, import_kw)),
        export_revenue=dt * float(np.dot(p.export_price_per_kwh, export_kw)),
        wear_cost=wear_cost,
        demand_charge_cost=p.demand_charge_per_kw * peak_kw,
        cost=objective,
        binary_battery_slots=tuple((batteries[k].battery_id, t) for k, t in sorted(battery_slots)),
        binary_grid_slots=tuple(sorted(grid_slots)),
    )
