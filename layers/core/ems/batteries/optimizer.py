"""The battery schedule as a linear program on HiGHS: plain dataclasses in, plain dataclasses out, no I/O.

Minimise, over the horizon's slots (length `slot_minutes`, dt = slot_minutes / 60 h):

    sum_t dt * (import_price[t] * import_kw[t] - export_price[t] * export_kw[t]
                + sum_b wear_b * (charge_kw[b, t] + discharge_kw[b, t]))
    + demand_charge_per_kw * peak_import_kw

Wear convention: `wear_cost_per_kwh` is paid once per kWh charged and once per kWh discharged, both
counted on the grid (AC) side of the battery, where its powers are. Hence a kWh bought at p_lo, kept
and sold at p_hi pays iff eta_c * eta_d * (p_hi - w) > p_lo + w.

Powers are grid-side kW; `charge_kw` and `discharge_kw` are both >= 0 (battery_kw = charge - discharge).
SoC is the energy stored at the end of each slot. highspy is imported where the model is solved, so
importing this module costs nothing (the API functions never load it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ems.core.errors import Invalid

# Flows smaller than this (kW) count as zero when looking for a slot that charges and discharges at
# once, or imports and exports at once.
SIMULTANEOUS_FLOW_TOLERANCE_KW = 1e-6
_CLEAN_KW = 1e-9


@dataclass(frozen=True)
class Battery:
    battery_id: str
    capacity_kwh: float
    max_charge_kw: float
    max_discharge_kw: float
    start_soc_pct: float
    charge_efficiency: float = 1.0
    discharge_efficiency: float = 1.0
    soc_min_pct: float = 0.0
    soc_max_pct: float = 100.0
    wear_cost_per_kwh: float = 0.0
    # Charge taper: above taper_start_soc_pct the charge power limit falls linearly from max_charge_kw to
    # taper_end_kw at soc_max_pct. Applied at the slot's end SoC, the highest of the slot, so the power
    # held through the slot never exceeds the limit at any SoC it passes.
    taper_start_soc_pct: float | None = None
    taper_end_kw: float = 0.0
    # The least SoC at the horizon's end; None: the start SoC (the plan does not sell the contents).
    end_soc_pct: float | None = None

    def kwh(self, pct: float) -> float:
        return self.capacity_kwh * pct / 100.0


@dataclass(frozen=True)
class DeferrableLoad:
    """A load that needs `energy_kwh` in slots [start_slot, end_slot) (an EV: kWh by departure), at a
    continuous power between min_kw and max_kw inside the window and none outside it."""

    load_id: str
    energy_kwh: float
    start_slot: int
    end_slot: int
    max_kw: float
    min_kw: float = 0.0


@dataclass(frozen=True)
class Problem:
    slot_minutes: int
    import_price_per_kwh: Sequence[float]
    export_price_per_kwh: Sequence[float]
    load_kw: Sequence[float]
    pv_kw: Sequence[float]
    batteries: Sequence[Battery] = ()
    deferrable_loads: Sequence[DeferrableLoad] = ()
    import_limit_kw: float | None = None
    export_limit_kw: float | None = None
    # Demand charge on the billing period's peak import; the peak already set this period is a floor,
    # so a re-plan does not pay again for it.
    demand_charge_per_kw: float = 0.0
    peak_so_far_kw: float = 0.0

    @property
    def slots(self) -> int:
        return len(self.load_kw)

    @property
    def slot_hours(self) -> float:
        return self.slot_minutes / 60.0


@dataclass(frozen=True)
class BatterySchedule:
    battery_id: str
    charge_kw: tuple[float, ...]
    discharge_kw: tuple[float, ...]
    soc_kwh: tuple[float, ...]  # at the end of each slot
    soc_pct: tuple[float, ...]

    @property
    def battery_kw(self) -> tuple[float, ...]:
        """Grid-side power per slot, charging positive."""
        return tuple(c - d for c, d in zip(self.charge_kw, self.discharge_kw, strict=True))


@dataclass(frozen=True)
class Schedule:
    slot_minutes: int
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
    cost: float  # HiGHS's objective: import_cost - export_revenue + wear_cost + demand_charge_cost
    # The same slots, loads, PV and deferrable loads with no battery, solved the same way; None when no
    # schedule without the battery meets the grid limits.
    cost_without_battery: float | None
    saving: float | None
    status: str
    solve_ms: float  # building and solving the battery plan (not the no-battery one)
    # (battery id, slot) pairs and slots where the LP alone chose simultaneous flows, so a binary was added.
    binary_battery_slots: tuple[tuple[str, int], ...] = ()
    binary_grid_slots: tuple[int, ...] = ()


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
    """Columns and row-wise constraint rows as flat lists, the shape HiGHS's matrix API takes."""

    def __init__(self) -> None:
        self.col_cost: list[float] = []
        self.col_lower: list[float] = []
        self.col_upper: list[float] = []
        self.integer: list[int] = []
        self.row_lower: list[float] = []
        self.row_upper: list[float] = []
        self.row_start: list[int] = []
        self.row_index: list[int] = []
        self.row_value: list[float] = []

    def columns(self, lower: Sequence[float], upper: Sequence[float], cost: Sequence[float]) -> range:
        first = len(self.col_cost)
        self.col_lower += lower
        self.col_upper += upper
        self.col_cost += cost
        return range(first, len(self.col_cost))

    def binary(self) -> int:
        (column,) = self.columns([0.0], [1.0], [0.0])
        self.integer.append(column)
        return column

    def row(self, index: Sequence[int], value: Sequence[float], lower: float, upper: float) -> None:
        self.row_start.append(len(self.row_index))
        self.row_index += index
        self.row_value += value
        self.row_lower.append(lower)
        self.row_upper.append(upper)


@dataclass
class _Columns:
    import_kw: range
    export_kw: range
    curtailment_kw: range
    peak_import_kw: int | None
    charge_kw: list[range] = field(default_factory=list)
    discharge_kw: list[range] = field(default_factory=list)
    soc_kwh: list[range] = field(default_factory=list)
    deferrable_kw: list[range] = field(default_factory=list)


def _taper(b: Battery) -> tuple[float, float]:
    """(slope in kW of charge limit lost per kWh stored above the taper's start, that start in kWh)."""
    if b.taper_start_soc_pct is None:
        return 0.0, 0.0
    start_kwh = b.kwh(b.taper_start_soc_pct)
    return (b.max_charge_kw - b.taper_end_kw) / (b.kwh(b.soc_max_pct) - start_kwh), start_kwh


def _grid_columns(m: _Model, p: Problem, batteries: Sequence[Battery]) -> _Columns:
    """Grid import and export, PV curtailment and the peak. A slot never needs to import more than it can
    use (load, deferrable loads, charging) nor export more than it can make (PV, discharging): those
    bounds are implied by "never import and export in one slot" and keep every LP bounded (a negative
    import price with an export price above it would otherwise pay without limit)."""
    n, dt = p.slots, p.slot_hours
    inf = math.inf
    most_used_kw = [
        p.load_kw[t]
        + sum(d.max_kw for d in p.deferrable_loads if d.start_slot <= t < d.end_slot)
        + sum(b.max_charge_kw for b in batteries)
        for t in range(n)
    ]
    most_made_kw = [p.pv_kw[t] + sum(b.max_discharge_kw for b in batteries) for t in range(n)]
    import_limit = inf if p.import_limit_kw is None else p.import_limit_kw
    export_limit = inf if p.export_limit_kw is None else p.export_limit_kw
    import_kw = m.columns(
        [0.0] * n,
        [min(import_limit, u) for u in most_used_kw],
        [dt * price for price in p.import_price_per_kwh],
    )
    export_kw = m.columns(
        [0.0] * n,
        [min(export_limit, u) for u in most_made_kw],
        [-dt * price for price in p.export_price_per_kwh],
    )
    curtailment_kw = m.columns([0.0] * n, list(p.pv_kw), [0.0] * n)
    peak = None
    if p.demand_charge_per_kw > 0:
        (peak,) = m.columns([p.peak_so_far_kw], [inf], [p.demand_charge_per_kw])
    return _Columns(import_kw, export_kw, curtailment_kw, peak)


def _battery_columns(m: _Model, p: Problem, batteries: Sequence[Battery], cols: _Columns) -> None:
    """Charge and discharge power (with the wear cost) and the SoC, within its bounds; the last slot's
    SoC no lower than the end SoC (the start's, by default)."""
    n, dt = p.slots, p.slot_hours
    for b in batteries:
        wear = [dt * b.wear_cost_per_kwh] * n
        cols.charge_kw.append(m.columns([0.0] * n, [b.max_charge_kw] * n, wear))
        cols.discharge_kw.append(m.columns([0.0] * n, [b.max_discharge_kw] * n, wear))
        end_kwh = b.kwh(b.start_soc_pct if b.end_soc_pct is None else b.end_soc_pct)
        lower = [b.kwh(b.soc_min_pct)] * n
        lower[-1] = max(lower[-1], end_kwh)
        cols.soc_kwh.append(m.columns(lower, [b.kwh(b.soc_max_pct)] * n, [0.0] * n))


def _deferrable_columns(m: _Model, p: Problem, cols: _Columns) -> None:
    for d in p.deferrable_loads:
        inside = [d.start_slot <= t < d.end_slot for t in range(p.slots)]
        cols.deferrable_kw.append(
            m.columns(
                [d.min_kw if i else 0.0 for i in inside],
                [d.max_kw if i else 0.0 for i in inside],
                [0.0] * p.slots,
            )
        )


def _power_balance_rows(m: _Model, p: Problem, cols: _Columns) -> None:
    """Per slot, kW: import - export - curtailment + discharge - charge - deferrable = load - pv."""
    for t in range(p.slots):
        index = [cols.import_kw[t], cols.export_kw[t], cols.curtailment_kw[t]]
        value = [1.0, -1.0, -1.0]
        for charge, discharge in zip(cols.charge_kw, cols.discharge_kw, strict=True):
            index += [discharge[t], charge[t]]
            value += [1.0, -1.0]
        for deferrable in cols.deferrable_kw:
            index.append(deferrable[t])
            value.append(-1.0)
        net_kw = p.load_kw[t] - p.pv_kw[t]
        m.row(index, value, net_kw, net_kw)


def _soc_dynamics_rows(m: _Model, p: Problem, batteries: Sequence[Battery], cols: _Columns) -> None:
    """Per battery and slot, kWh: soc[t] - soc[t-1] - dt * eta_c * charge[t] + dt / eta_d * discharge[t] = 0,
    soc[-1] being the start SoC."""
    dt = p.slot_hours
    for b, charge, discharge, soc in zip(
        batteries, cols.charge_kw, cols.discharge_kw, cols.soc_kwh, strict=True
    ):
        stored_per_kw = dt * b.charge_efficiency
        drawn_per_kw = dt / b.discharge_efficiency
        start_kwh = b.kwh(b.start_soc_pct)
        m.row([soc[0], charge[0], discharge[0]], [1.0, -stored_per_kw, drawn_per_kw], start_kwh, start_kwh)
        for t in range(1, p.slots):
            m.row(
                [soc[t], soc[t - 1], charge[t], discharge[t]],
                [1.0, -1.0, -stored_per_kw, drawn_per_kw],
                0.0,
                0.0,
            )


def _charge_taper_rows(m: _Model, p: Problem, batteries: Sequence[Battery], cols: _Columns) -> None:
    """Per tapered battery and slot, kW: charge[t] + slope * soc[t] <= max_charge_kw + slope * taper_start_kwh
    (slope in kW per kWh): the limit is max_charge_kw at the taper's start and taper_end_kw at soc_max."""
    for b, charge, soc in zip(batteries, cols.charge_kw, cols.soc_kwh, strict=True):
        slope, start_kwh = _taper(b)
        if slope <= 0:
            continue
        for t in range(p.slots):
            m.row([charge[t], soc[t]], [1.0, slope], -math.inf, b.max_charge_kw + slope * start_kwh)


def _deferrable_energy_rows(m: _Model, p: Problem, cols: _Columns) -> None:
    """Per deferrable load, kWh: sum over its window of dt * power = energy_kwh."""
    for d, power in zip(p.deferrable_loads, cols.deferrable_kw, strict=True):
        window = list(range(d.start_slot, d.end_slot))
        m.row([power[t] for t in window], [p.slot_hours] * len(window), d.energy_kwh, d.energy_kwh)


def _peak_import_rows(m: _Model, p: Problem, cols: _Columns) -> None:
    """Per slot, kW: import[t] - peak_import <= 0 (the peak's own lower bound is the period's peak so far)."""
    if cols.peak_import_kw is None:
        return
    for t in range(p.slots):
        m.row([cols.import_kw[t], cols.peak_import_kw], [1.0, -1.0], -math.inf, 0.0)


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
    for b_index, t in sorted(battery_slots):
        b = batteries[b_index]
        u = m.binary()
        m.row([cols.charge_kw[b_index][t], u], [1.0, -b.max_charge_kw], -math.inf, 0.0)
        m.row([cols.discharge_kw[b_index][t], u], [1.0, b.max_discharge_kw], -math.inf, b.max_discharge_kw)
    for t in sorted(grid_slots):
        g = m.binary()
        import_m, export_m = m.col_upper[cols.import_kw[t]], m.col_upper[cols.export_kw[t]]
        m.row([cols.import_kw[t], g], [1.0, -import_m], -math.inf, 0.0)
        m.row([cols.export_kw[t], g], [1.0, export_m], -math.inf, export_m)


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
    _charge_taper_rows(m, p, batteries, cols)
    _deferrable_energy_rows(m, p, cols)
    _peak_import_rows(m, p, cols)
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
        values, objective = solved
        both_ways = {
            (b, t)
            for b in range(len(batteries))
            for t in range(p.slots)
            if min(values[cols.charge_kw[b][t]], values[cols.discharge_kw[b][t]])
            > SIMULTANEOUS_FLOW_TOLERANCE_KW
        } - battery_slots
        import_and_export = {
            t
            for t in range(p.slots)
            if min(values[cols.import_kw[t]], values[cols.export_kw[t]]) > SIMULTANEOUS_FLOW_TOLERANCE_KW
        } - grid_slots
        if not both_ways and not import_and_export:
            return _plan(p, batteries, cols, values, objective, battery_slots, grid_slots)
        battery_slots |= both_ways
        grid_slots |= import_and_export


def _run_highs(m: _Model) -> tuple[list[float], float] | None:
    """(column values, objective) of the optimum; None if HiGHS proves the model infeasible."""
    import highspy  # the science layer's; kept off every other function's import path

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", 0.0)
    n = len(m.col_cost)
    h.addVars(n, _array(m.col_lower), _array(m.col_upper))
    h.changeColsCost(n, _array(range(n), int), _array(m.col_cost))
    if m.integer:
        h.changeColsIntegrality(
            len(m.integer),
            _array(m.integer, int),
            _array([highspy.HighsVarType.kInteger] * len(m.integer), None),
        )
    h.addRows(
        len(m.row_lower),
        _array(m.row_lower),
        _array(m.row_upper),
        len(m.row_index),
        _array(m.row_start, int),
        _array(m.row_index, int),
        _array(m.row_value),
    )
    h.run()
    status = h.getModelStatus()
    if status == highspy.HighsModelStatus.kInfeasible:
        return None
    if status != highspy.HighsModelStatus.kOptimal:
        raise RuntimeError(f"HiGHS stopped with {h.modelStatusToString(status)}")
    return [_clean(v) for v in h.getSolution().col_value], h.getInfo().objective_function_value


def _array(values: Any, kind: Any = float) -> Any:
    import numpy

    return numpy.asarray(list(values), dtype=kind)


def _clean(kw: float) -> float:
    return 0.0 if abs(kw) < _CLEAN_KW else kw


def _plan(
    p: Problem,
    batteries: Sequence[Battery],
    cols: _Columns,
    v: list[float],
    objective: float,
    battery_slots: set[tuple[int, int]],
    grid_slots: set[int],
) -> _Plan:
    dt = p.slot_hours

    def series(columns: range) -> tuple[float, ...]:
        return tuple(v[c] for c in columns)

    schedules = tuple(
        BatterySchedule(
            battery_id=b.battery_id,
            charge_kw=series(charge),
            discharge_kw=series(discharge),
            soc_kwh=series(soc),
            soc_pct=tuple(100.0 * v[c] / b.capacity_kwh for c in soc),
        )
        for b, charge, discharge, soc in zip(
            batteries, cols.charge_kw, cols.discharge_kw, cols.soc_kwh, strict=True
        )
    )
    import_kw, export_kw = series(cols.import_kw), series(cols.export_kw)
    peak_kw = max(p.peak_so_far_kw, *import_kw)
    import_cost = dt * sum(price * kw for price, kw in zip(p.import_price_per_kwh, import_kw, strict=True))
    export_revenue = dt * sum(price * kw for price, kw in zip(p.export_price_per_kwh, export_kw, strict=True))
    wear_cost = dt * sum(
        b.wear_cost_per_kwh * (sum(s.charge_kw) + sum(s.discharge_kw))
        for b, s in zip(batteries, schedules, strict=True)
    )
    demand_charge_cost = p.demand_charge_per_kw * peak_kw
    return _Plan(
        batteries=schedules,
        import_kw=import_kw,
        export_kw=export_kw,
        curtailment_kw=series(cols.curtailment_kw),
        deferrable_kw={
            d.load_id: series(c) for d, c in zip(p.deferrable_loads, cols.deferrable_kw, strict=True)
        },
        peak_import_kw=peak_kw,
        import_cost=import_cost,
        export_revenue=export_revenue,
        wear_cost=wear_cost,
        demand_charge_cost=demand_charge_cost,
        cost=objective,
        binary_battery_slots=tuple((batteries[b].battery_id, t) for b, t in sorted(battery_slots)),
        binary_grid_slots=tuple(sorted(grid_slots)),
    )
