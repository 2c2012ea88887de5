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

from pydantic import BaseModel, ConfigDict, Field

from ems.core.ids import USER_ID_PATTERN

# The battery inverter's telemetry (ems_sim's BatteryInverter, and the overview's convention):
# `power_w` > 0 while charging, `soc_pct` the state of charge.
POWER_METRIC = "power_w"
SOC_METRIC = "soc_pct"
BATTERY_DURATION_MINUTES = (1, 1440)  # what a battery inverter's set_power takes (ems.devices.commands)

Direction = Literal["charge", "discharge"]


class BatteryFields(BaseModel):
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


class BatteryUpdate(BaseModel):
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


class BatteryState(BaseModel):
    """What the battery's inverter said last: SoC and power (kW, charging positive) and when."""

    soc_pct: float | None = None
    power_kw: float | None = None
    stored_kwh: float | None = None
    reading_at: str | None = None
    # Why the state is left out for this token, when it is.
    withheld: str | None = None


class BatteryHealth(BaseModel):
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


class HealthQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: int = Field(default=30, ge=1, le=366)


class PowerCommand(BaseModel):
    """POST /batteries/{id}/charge and /discharge: the power (kW, grid side, positive) for a while."""

    model_config = ConfigDict(extra="forbid")

    power_kw: float = Field(gt=0, le=100_000)
    duration_minutes: int = Field(ge=BATTERY_DURATION_MINUTES[0], le=BATTERY_DURATION_MINUTES[1])
    command_id: str | None = Field(default=None, pattern=USER_ID_PATTERN)


class CommandAccepted(BaseModel):
    battery_id: str
    device_id: str
    direction: Direction
    power_kw: float  # signed as the inverter takes it: + charge, - discharge
    duration_minutes: int
    energy_kwh: float  # grid side, power x duration
    command_id: str
    status: str
    command: dict[str, Any]  # the device command as the devices domain recorded it


class SummaryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: int = Field(default=30, ge=1, le=366)


class BatteriesSummary(BaseModel):
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
