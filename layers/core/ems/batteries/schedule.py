"""The battery optimiser's problem and schedule: plain dataclasses, no I/O and no numerical library, so any
function may build or read them (the solver is ems.batteries.optimizer).

Units: powers in kW on the grid (AC) side of each battery, charge_kw and discharge_kw both >= 0 (battery_kw
= charge - discharge); energies in kWh; SoC in % of capacity, at the end of each slot; prices per kWh.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


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
    # so a re-plan does not pay again for it (importing up to it costs no more). demand_charge_cost counts
    # the whole peak, the part already set included, with and without the battery alike.
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
