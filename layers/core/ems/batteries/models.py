"""Batteries (API.md "Batteries"): the battery record, what telemetry says of it (SoC, power, health),
manual charge and discharge commands, the fleet summary, and what one battery can give demand
response now (no I/O).

Powers are on the grid (AC) side, as the optimiser's (ems.batteries.schedule): a charge of p kW for
h hours stores p * h * charge_efficiency kWh; a discharge of p kW for h hours takes p * h /
discharge_efficiency kWh out of the battery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ConfigDict, Field

from ems.core.ids import USER_ID_PATTERN
from ems.core.models import Model

# The battery inverter's telemetry (ems_sim's BatteryInverter, and the overview's convention):
# `power_w` > 0 while charging, `soc_pct` the state of charge.
POWER_METRIC = "power_w"
SOC_METRIC = "soc_pct"
BATTERY_DURATION_MINUTES = (1, 1440)  # what a battery inverter's set_power takes (ems.devices.commands)

Direction = Literal["charge", "discharge"]


class BatteryFields(Model):
    """What a battery is; every field but the id and name may change (PUT)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    capacity_kwh: float = Field(gt=0, le=1_000_000)
    max_charge_kw: float = Field(gt=0, le=100_000)
    max_discharge_kw: float = Field(gt=0, le=100_000)
    charge_efficiency: float = Field(default=0.95, gt=0, le=1)
    discharge_efficiency: float = Field(default=0.95, gt=0, le=1)
    soc_min_pct: float = Field(default=0.0, ge=0, le=100)
    soc_max_pct: float = Field(default=100.0, ge=0, le=100)
    # Paid once per kWh charged and once per kWh discharged, grid side (ems.batteries.optimizer).
    wear_cost_per_kwh: float = Field(default=0.0, ge=0, le=100)
    # Charge taper: above taper_start_soc_pct the charge power limit falls linearly from max_charge_kw
    # to taper_end_kw at soc_max_pct.
    taper_start_soc_pct: float | None = Field(default=None, ge=0, le=100)
    taper_end_kw: float = Field(default=0.0, ge=0)
    device_id: str | None = Field(default=None, pattern=USER_ID_PATTERN)  # its battery_inverter

    def kwh(self, pct: float) -> float:
        return self.capacity_kwh * pct / 100.0

    def charge_limit_kw(self, soc_pct: float) -> float:
        """The charge power limit at `soc_pct`: max_charge_kw, falling linearly above the taper's start."""
        start = self.taper_start_soc_pct
        if start is None or soc_pct <= start:
            return self.max_charge_kw
        share = min(1.0, (soc_pct - start) / (self.soc_max_pct - start))
        return self.max_charge_kw - (self.max_charge_kw - self.taper_end_kw) * share


class BatteryIn(BatteryFields):
    battery_id: str = Field(pattern=USER_ID_PATTERN)


class BatteryUpdate(Model):
    """PUT /batteries/{id}: the fields given replace the stored ones (the whole is checked again)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    capacity_kwh: float | None = None
    max_charge_kw: float | None = None
    max_discharge_kw: float | None = None
    charge_efficiency: float | None = None
    discharge_efficiency: float | None = None
    soc_min_pct: float | None = None
    soc_max_pct: float | None = None
    wear_cost_per_kwh: float | None = None
    taper_start_soc_pct: float | None = None
    taper_end_kw: float | None = None
    device_id: str | None = None


class Battery(BatteryIn):
    site_id: str
    created_at: str
    updated_at: str


class BatteryState(Model):
    """What the battery's inverter said last: SoC and power (kW, charging positive) and when."""

    soc_pct: float | None = None
    power_kw: float | None = None
    stored_kwh: float | None = None
    reading_at: str | None = None
    # Why the state is left out for this token, when it is.
    withheld: str | None = None


class BatteryHealth(Model):
    """From the battery's 15-minute history over `days`.

    Throughput is the energy through the inverter (grid side), charge plus discharge; equivalent full
    cycles = throughput / (2 x capacity). The capacity is measured over the SoC swings of the window:
    each run of consecutive quarters that charge while the SoC rises stores charge kWh x
    charge_efficiency for its SoC rise, and measured capacity = stored kWh / rise x 100 over the runs
    that rise at least MIN_SWING_PCT; state of health = measured / rated capacity x 100."""

    battery_id: str
    days: int
    throughput_kwh: float
    charged_kwh: float
    discharged_kwh: float
    equivalent_full_cycles: float
    measured_capacity_kwh: float | None = None
    state_of_health_pct: float | None = None
    swing_pct: float = 0.0  # the SoC rise the measurement counted
    withheld: str | None = None


class BatteryView(Battery):
    """GET /batteries/{id} and the list: the battery with its state and health."""

    state: BatteryState
    health: BatteryHealth | None = None


class HealthQuery(Model):
    model_config = ConfigDict(extra="forbid")

    days: int = Field(default=30, ge=1, le=366)


class PowerCommand(Model):
    """POST /batteries/{id}/charge and /discharge: the power (kW, grid side, positive) for a while."""

    model_config = ConfigDict(extra="forbid")

    power_kw: float = Field(gt=0, le=100_000)
    duration_minutes: int = Field(ge=BATTERY_DURATION_MINUTES[0], le=BATTERY_DURATION_MINUTES[1])
    command_id: str | None = Field(default=None, pattern=USER_ID_PATTERN)


class CommandAccepted(Model):
    battery_id: str
    device_id: str
    direction: Direction
    power_kw: float  # signed as the inverter takes it: + charge, - discharge
    duration_minutes: int
    energy_kwh: float  # grid side, power x duration
    command_id: str
    status: str
    command: dict[str, Any]  # the device command as the devices domain recorded it


class SummaryQuery(Model):
    model_config = ConfigDict(extra="forbid")

    days: int = Field(default=30, ge=1, le=366)


class BatteriesSummary(Model):
    """The site's fleet. Stored energy and power now are live figures (a token that does not see live
    readings gets None and the reason); throughput covers the last `days` up to the token's embargo."""

    count: int
    capacity_kwh: float
    max_charge_kw: float
    max_discharge_kw: float
    stored_kwh: float | None = None
    power_kw: float | None = None
    batteries_reporting: int = 0
    days: int
    throughput_kwh: float
    savings_to_date: float = 0.0
    plans_counted: int = 0
    withheld: str | None = None


@dataclass(frozen=True)
class DischargeableBattery:
    """What one battery can give now (the contract with demand response): available_kw is the most it
    can discharge (grid side) held over the window, limited by max_discharge_kw and by the energy above
    soc_min_pct; 0 without a device or a SoC reading."""

    battery_id: str
    device_id: str | None
    soc_pct: float | None
    available_kw: float
    available_kwh: float


# ---------------------------------------------------------------- optimisation (the optimiser's function)

HORIZON_HOURS = (24, 48)
SLOT_MINUTES = (15, 30, 60)  # the forecasts' 15-minute slots, or whole groups of them
Objective = Literal["cost", "self_consumption"]
PLAN_CHANGED = "BatteryPlanChanged"  # pushed on batteries/<id> by the realtime function
BATTERIES_SOURCE = "ems.batteries"


class DeferrableLoadIn(Model):
    """A load that needs energy_kwh between slots start_slot and end_slot (exclusive) of the horizon,
    at a continuous power in [min_kw, max_kw] there (an EV: kWh by departure)."""

    model_config = ConfigDict(extra="forbid")

    load_id: str = Field(pattern=USER_ID_PATTERN)
    energy_kwh: float = Field(ge=0, le=10_000)
    start_slot: int = Field(ge=0)
    end_slot: int = Field(ge=1)
    max_kw: float = Field(gt=0, le=10_000)
    min_kw: float = Field(default=0.0, ge=0)


class OptimizeRequest(Model):
    """POST /batteries/{id}/optimize and /batteries/optimize. The series, when given, replace the
    forecasts (load_kw, pv_kw) and the tariff (import_price, export_price) slot by slot: one value a slot."""

    model_config = ConfigDict(extra="forbid")

    horizon_hours: int = Field(default=24, ge=HORIZON_HOURS[0], le=HORIZON_HOURS[1])
    slot_minutes: Literal[15, 30, 60] = 15
    objective: Objective = "cost"
    start_soc_pct: float | None = Field(default=None, ge=0, le=100)
    end_soc_pct: float | None = Field(default=None, ge=0, le=100)
    load_kw: list[float] | None = None
    pv_kw: list[float] | None = None
    import_price: list[float] | None = None
    export_price: list[float] | None = None
    deferrable_loads: list[DeferrableLoadIn] = Field(default_factory=list, max_length=20)
    apply: bool = False

    @property
    def slots(self) -> int:
        return self.horizon_hours * 60 // self.slot_minutes


class BatterySlot(Model):
    battery_kw: float  # grid side, charging positive
    soc_pct: float  # at the slot's end


class SlotPlan(Model):
    start: str
    load_kw: float
    pv_kw: float
    import_price: float
    export_price: float
    import_kw: float
    export_kw: float
    curtailment_kw: float
    batteries: dict[str, BatterySlot]
    deferrable_kw: dict[str, float] = Field(default_factory=dict)


class PlanResult(Model):
    """The optimiser's answer: the schedule per slot, cost with and without the batteries, the saving."""

    site_id: str
    battery_ids: list[str]
    start: str
    slot_minutes: int
    slots: int
    objective: Objective
    start_soc_pct: dict[str, float]
    sources: dict[str, str]  # where load, pv and prices came from: forecast | tariff | request
    status: str
    solve_ms: float
    cost: float
    cost_without_battery: float | None
    saving: float | None
    import_cost: float
    export_revenue: float
    wear_cost: float
    demand_charge_cost: float
    peak_import_kw: float
    schedule: list[SlotPlan]
    binary_slots: int = 0  # slots where the LP alone chose simultaneous flows and a binary was added
    applied: bool = False


class PlanRun(Model):
    """One solve of an applied plan (the first, or a re-plan) and the setpoint it sent for its first
    slot (`slot_start`, at those prices)."""

    at: str
    slot_start: str
    import_price: float
    export_price: float
    start_soc_pct: float
    setpoint_kw: float
    command_id: str | None = None
    command_status: str | None = None
    cost: float
    cost_without_battery: float | None
    saving: float | None  # over the whole horizon of that run


class AppliedPlan(Model):
    """GET /batteries/{id}/plan: the request it re-plans with, the latest plan and each run."""

    site_id: str
    battery_id: str
    device_id: str
    started_at: str
    schedule_name: str
    request: OptimizeRequest
    latest: PlanResult
    runs: list[PlanRun]
    stopped_at: str | None = None
