"""The demo building's devices, one class a type: what each takes (the command table of
ems.devices.things), what it refuses and why, what it reports to its shadow and in its telemetry,
and its own physics between ticks. No I/O, no clock: the building passes `now` and `dt_s`.

A device refuses (CommandRefused, its message the reason reported in `last_command`) a command its
type does not take, a parameter out of its own range, and what its state forbids (a full car, a full
battery told to charge, an inverter that is off). Its reported keys are the shadow's desired keys of
the commands it took (`power`, `power_kw`, `setpoint_c`, `mode`, `curtail_kw`, `curtail_pct`,
`sg_ready`, `charge`), so an obeyed command leaves no delta; what it measures is reported beside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from ems_sim import physics


class CommandRefused(ValueError):
    """A command the device does not take (its reason is the message)."""


def number(params: dict[str, Any], name: str) -> float:
    value = params.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CommandRefused(f"params.{name} must be a number, not {value!r}")
    return float(value)


def within(value: float, low: float, high: float, what: str) -> float:
    if not low <= value <= high:
        raise CommandRefused(f"{what} {value:g} is outside this device's range {low:g} to {high:g}")
    return value


@dataclass
class Device:
    device_id: str
    device_type: str
    name: str
    room: str | None = None
    rated_power_kw: float | None = None
    dr_eligible: bool = False
    comfort_priority: int = 5  # 1 is shed first, 10 last
    on: bool = True

    COMMANDS: ClassVar[tuple[str, ...]] = ("on", "off")

    def registration(self) -> dict[str, Any]:
        """The body of POST /api/v1/iot/devices (API.md)."""
        body: dict[str, Any] = {
            "device_id": self.device_id, "name": self.name, "device_type": self.device_type,
            "room": self.room, "rated_power_kw": self.rated_power_kw, "dr_eligible": self.dr_eligible,
            "comfort_priority": self.comfort_priority,
        }  # fmt: skip
        return {k: v for k, v in body.items() if v is not None}

    @property
    def draw_kw(self) -> float:
        """What it takes from the building's supply now (a load's share of the meter)."""
        return 0.0

    def apply(self, command: str, params: dict[str, Any], now: datetime) -> None:
        if command not in self.COMMANDS:
            takes = ", ".join(self.COMMANDS) if self.COMMANDS else "no commands"
            raise CommandRefused(f"a {self.device_type} takes {takes}, not {command!r}")
        getattr(self, f"_{command}")(params, now)

    def _on(self, params: dict[str, Any], now: datetime) -> None:
        self.on = True

    def _off(self, params: dict[str, Any], now: datetime) -> None:
        self.on = False

    def step(self, dt_s: float, now: datetime) -> None:
        """Its own physics over dt_s (the building moves rooms, sun and meter)."""

    def reported(self) -> dict[str, Any]:
        return {"device_type": self.device_type, "power": "on" if self.on else "off"}

    def metrics(self) -> dict[str, float]:
        return {"power_w": round(self.draw_kw * 1000, 1)}


@dataclass
class Hvac(Device):
    """Heats or cools its room towards its setpoint (physics.hvac_heat_kw); the building runs it."""

    setpoint_c: float = 21.0
    mode: str = "auto"
    electric_kw: float = 0.0  # set by the building's step
    COMMANDS: ClassVar[tuple[str, ...]] = ("on", "off", "set_setpoint", "set_mode")
    SETPOINT_C: ClassVar[tuple[float, float]] = (16.0, 30.0)
    MODES: ClassVar[tuple[str, ...]] = ("cool", "heat", "fan", "auto", "dry")

    @property
    def draw_kw(self) -> float:
        return self.electric_kw if self.on else 0.0

    def _set_setpoint(self, params: dict[str, Any], now: datetime) -> None:
        self.setpoint_c = within(number(params, "celsius"), *self.SETPOINT_C, "setpoint °C")

    def _set_mode(self, params: dict[str, Any], now: datetime) -> None:
        mode = params.get("mode")
        if mode not in self.MODES:
            raise CommandRefused(f"mode {mode!r} is not one of {', '.join(self.MODES)}")
        self.mode = str(mode)

    def reported(self) -> dict[str, Any]:
        return super().reported() | {"setpoint_c": self.setpoint_c, "mode": self.mode}


@dataclass
class WaterHeater(Device):
    """An electric element in a tank, on a thermostat with a 2 K band; the tank cools by standby loss."""

    setpoint_c: float = 55.0
    element_kw: float = 3.0
    tank: physics.Tank = field(default_factory=physics.Tank)
    heating: bool = False
    COMMANDS: ClassVar[tuple[str, ...]] = ("on", "off", "set_setpoint", "set_power")
    SETPOINT_C: ClassVar[tuple[float, float]] = (35.0, 75.0)
    BAND_K: ClassVar[float] = 2.0

    @property
    def draw_kw(self) -> float:
        return self.element_kw if self.on and self.heating else 0.0

    def _set_setpoint(self, params: dict[str, Any], now: datetime) -> None:
        self.setpoint_c = within(number(params, "celsius"), *self.SETPOINT_C, "setpoint °C")

    def _set_power(self, params: dict[str, Any], now: datetime) -> None:
        self.element_kw = within(number(params, "kw"), 0.0, float(self.rated_power_kw or 0), "kW")

    def thermostat(self) -> None:
        if self.tank.temperature_c < self.setpoint_c - self.BAND_K:
            self.heating = True
        elif self.tank.temperature_c >= self.setpoint_c:
            self.heating = False

    def step(self, dt_s: float, now: datetime) -> None:
        self.thermostat()
        self.tank.step(dt_s, self.draw_kw)

    def reported(self) -> dict[str, Any]:
        return super().reported() | {
            "setpoint_c": self.setpoint_c, "power_kw": self.element_kw,
            "temperature_c": round(self.tank.temperature_c, 2),
        }  # fmt: skip

    def metrics(self) -> dict[str, float]:
        return super().metrics() | {"temperature_c": round(self.tank.temperature_c, 2)}


# SG Ready (the German heat pump label): 1 blocked, 2 normal, 3 recommended on (store heat: the
# setpoint 5 K higher), 4 forced on (full power, up to the tank's limit).
SG_READY_BOOST_K = 5.0


@dataclass
class HeatPump(WaterHeater):
    """Heats a buffer tank at a COP (its setpoint is the flow temperature); the tank feeds the radiators
    of the rooms without HVAC (the building takes their heat out of it: `radiators_kw`)."""

    setpoint_c: float = 45.0
    element_kw: float = 4.0  # electric
    cop: float = 3.0
    mode: str = "heat"
    sg_ready: int = 2
    radiators_kw: float = 0.0  # heat the rooms took from the tank over the last step
    tank: physics.Tank = field(
        default_factory=lambda: physics.Tank(litres=300.0, loss_kw_per_k=0.01, temperature_c=42.0)
    )
    COMMANDS: ClassVar[tuple[str, ...]] = ("on", "off", "set_setpoint", "set_mode", "sg_ready")
    SETPOINT_C: ClassVar[tuple[float, float]] = (20.0, 65.0)
    MODES: ClassVar[tuple[str, ...]] = ("heat", "cool", "auto", "dhw")

    def _set_mode(self, params: dict[str, Any], now: datetime) -> None:
        mode = params.get("mode")
        if mode not in self.MODES:
            raise CommandRefused(f"mode {mode!r} is not one of {', '.join(self.MODES)}")
        self.mode = str(mode)

    def _sg_ready(self, params: dict[str, Any], now: datetime) -> None:
        state = params.get("state")
        if isinstance(state, bool) or state not in (1, 2, 3, 4):
            raise CommandRefused(f"sg_ready state {state!r} is not 1, 2, 3 or 4")
        self.sg_ready = int(state)

    @property
    def draw_kw(self) -> float:
        return self.element_kw if self.on and self.heating and self.sg_ready != 1 else 0.0

    def thermostat(self) -> None:
        top_c = self.SETPOINT_C[1]
        target_c = {3: min(top_c, self.setpoint_c + SG_READY_BOOST_K), 4: top_c}.get(
            self.sg_ready, self.setpoint_c
        )
        if self.tank.temperature_c < target_c - self.BAND_K or (
            self.sg_ready == 4 and self.tank.temperature_c < target_c
        ):
            self.heating = True
        elif self.tank.temperature_c >= target_c:
            self.heating = False

    def step(self, dt_s: float, now: datetime) -> None:
        self.thermostat()
        self.tank.step(dt_s, self.draw_kw * self.cop - self.radiators_kw)

    def reported(self) -> dict[str, Any]:
        state = super().reported() | {"mode": self.mode, "sg_ready": self.sg_ready}
        del state["power_kw"]  # it takes no set_power
        return state


@dataclass
class Switch(Device):
    """A plug: on or off, drawing a level of its rated power."""

    level: float = 1.0

    @property
    def setting_kw(self) -> float:
        return float(self.rated_power_kw or 0) * self.level

    @property
    def draw_kw(self) -> float:
        return self.setting_kw if self.on else 0.0

    def _set_power(self, params: dict[str, Any], now: datetime) -> None:
        rated = float(self.rated_power_kw or 0)
        self.level = within(number(params, "kw"), 0.0, rated, "kW") / rated if rated else 0.0

    def reported(self) -> dict[str, Any]:
        return super().reported() | {"power_kw": round(self.setting_kw, 3)}


@dataclass
class Lighting(Switch):
    """Lighting: a switch that also dims (set_power)."""

    COMMANDS: ClassVar[tuple[str, ...]] = ("on", "off", "set_power")


@dataclass
class PvInverter(Device):
    """Delivers what the sun gives (the building sets `available_kw`) up to its curtailment cap."""

    available_kw: float = 0.0
    curtail_kw: float | None = None
    curtail_pct: float | None = None
    energy_wh: float = 0.0
    COMMANDS: ClassVar[tuple[str, ...]] = ("on", "off", "curtail")

    @property
    def cap_kw(self) -> float:
        peak = float(self.rated_power_kw or 0)
        if self.curtail_kw is not None:
            return min(peak, self.curtail_kw)
        if self.curtail_pct is not None:
            return peak * self.curtail_pct / 100
        return peak

    @property
    def output_kw(self) -> float:
        return max(0.0, min(self.available_kw, self.cap_kw)) if self.on else 0.0

    def _curtail(self, params: dict[str, Any], now: datetime) -> None:
        if params.get("kw") is not None:
            peak = float(self.rated_power_kw or 0)
            self.curtail_kw, self.curtail_pct = within(number(params, "kw"), 0.0, peak, "curtail kW"), None
        else:
            self.curtail_pct, self.curtail_kw = within(number(params, "percent"), 0, 100, "curtail %"), None

    def step(self, dt_s: float, now: datetime) -> None:
        self.energy_wh += self.output_kw * dt_s / 3.6

    def reported(self) -> dict[str, Any]:
        # None deletes a key from the shadow: only the cap in force is shown.
        return super().reported() | {
            "curtail_kw": self.curtail_kw, "curtail_pct": self.curtail_pct, "output_kw": round(self.output_kw, 3)
        }  # fmt: skip

    def metrics(self) -> dict[str, float]:
        return {"power_w": round(self.output_kw * 1000, 1), "energy_wh": round(self.energy_wh, 1)}


# A three-phase charger at 230 V: 0.69 kW an ampere (IEC 61851: 6 A is the lowest it may signal).
EV_KW_PER_A = 3 * 230 / 1000
EV_CURRENT_A = (6.0, 16.0)


@dataclass
class EvCharger(Device):
    """Charges the car plugged in at its setpoint until the car is full, the session's target is met or
    the car leaves (its departure); a car comes every morning."""

    setpoint_kw: float = 7.4
    plugged_in: bool = True
    departure: datetime | None = None
    car_capacity_kwh: float = 60.0
    car_kwh: float = 30.0
    session_kwh: float = 0.0
    target_kwh: float | None = None  # energy to deliver in this session
    charge: dict[str, Any] | None = None  # the last charge command's params, as desired shows them
    arrival_kwh: float = 24.0  # every day at ARRIVAL_HOUR_UTC a car comes in with this much
    COMMANDS: ClassVar[tuple[str, ...]] = ("on", "off", "set_power", "charge")
    ARRIVAL_HOUR_UTC: ClassVar[int] = 7

    @property
    def done(self) -> bool:
        full = self.car_kwh >= self.car_capacity_kwh - 1e-9
        met = self.target_kwh is not None and self.session_kwh >= self.target_kwh - 1e-9
        return full or met or not self.plugged_in

    @property
    def draw_kw(self) -> float:
        return self.setpoint_kw if self.on and not self.done else 0.0

    def _power(self, kw: float) -> float:
        return within(kw, 0.0, float(self.rated_power_kw or 0), "kW")

    def _set_power(self, params: dict[str, Any], now: datetime) -> None:
        self.setpoint_kw = self._power(number(params, "kw"))

    def _charge(self, params: dict[str, Any], now: datetime) -> None:
        if not self.on:
            raise CommandRefused("the charger is off: turn it on first")
        if not self.plugged_in:
            raise CommandRefused("no car is plugged in")
        if self.car_kwh >= self.car_capacity_kwh - 1e-9:
            raise CommandRefused(f"the car is already full ({self.car_capacity_kwh:g} kWh)")
        if params.get("power_kw") is not None:
            kw = self._power(number(params, "power_kw"))
        else:
            amps = within(number(params, "current_a"), *EV_CURRENT_A, "current A")
            kw = min(float(self.rated_power_kw or 0), amps * EV_KW_PER_A)
        target = params.get("target_kwh")
        target_kwh = None if target is None else within(number(params, "target_kwh"), 0, 1e6, "target kWh")
        departure = None if params.get("departure") is None else _departure(params["departure"], now)
        self.setpoint_kw, self.target_kwh, self.session_kwh, self.charge = kw, target_kwh, 0.0, dict(params)
        self.departure = departure

    def step(self, dt_s: float, now: datetime) -> None:
        hours = dt_s / 3600
        arrival = now.replace(hour=self.ARRIVAL_HOUR_UTC, minute=0, second=0, microsecond=0)
        if now - timedelta(seconds=dt_s) < arrival <= now:  # the next car, a new session
            self.car_kwh, self.session_kwh, self.target_kwh = self.arrival_kwh, 0.0, None
            self.plugged_in, self.departure = True, None
            hours = (now - arrival).total_seconds() / 3600  # it charges from its arrival on
        leaves = self.departure is not None and self.departure <= now
        if leaves:  # it charges until it leaves
            assert self.departure is not None
            hours = max(0.0, dt_s - (now - self.departure).total_seconds()) / 3600
        if hours > 0 and self.draw_kw > 0:
            room_kwh = self.car_capacity_kwh - self.car_kwh
            if self.target_kwh is not None:
                room_kwh = min(room_kwh, self.target_kwh - self.session_kwh)
            delivered_kwh = min(self.draw_kw * hours, max(room_kwh, 0.0))
            self.car_kwh += delivered_kwh
            self.session_kwh += delivered_kwh
        if leaves:
            self.plugged_in, self.departure = False, None

    def reported(self) -> dict[str, Any]:
        return super().reported() | {
            "power_kw": self.setpoint_kw, "charge": self.charge, "car_kwh": round(self.car_kwh, 3),
            "plugged_in": self.plugged_in, "charging": self.draw_kw > 0,
        }  # fmt: skip

    def metrics(self) -> dict[str, float]:
        return super().metrics() | {"car_kwh": round(self.car_kwh, 3)}


def _departure(value: Any, now: datetime) -> datetime:
    try:
        departure = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise CommandRefused(f"departure {value!r} is not an ISO 8601 time") from None
    if departure.tzinfo is None:
        raise CommandRefused(f"departure {value!r} has no UTC offset")
    if departure <= now:
        raise CommandRefused(f"departure {value} is not after now ({now.isoformat()})")
    return departure


@dataclass
class BatteryInverter(Device):
    """Charges (+) or discharges (-) its battery at a signed setpoint, for a while if told how long,
    within its power and state-of-charge limits (physics.Battery)."""

    battery: physics.Battery = field(default_factory=physics.Battery)
    mode: str = "auto"
    duration_minutes: int | None = None
    until: datetime | None = None  # when a timed setpoint ends
    running_kw: float = 0.0  # what it ran at over the last step
    COMMANDS: ClassVar[tuple[str, ...]] = ("on", "off", "set_power", "set_mode")
    MODES: ClassVar[tuple[str, ...]] = ("auto", "manual", "idle")

    @property
    def draw_kw(self) -> float:
        return self.running_kw

    def _off(self, params: dict[str, Any], now: datetime) -> None:
        self.on, self.battery.setpoint_kw, self.running_kw = False, 0.0, 0.0

    def _set_power(self, params: dict[str, Any], now: datetime) -> None:
        if not self.on:
            raise CommandRefused("the inverter is off: turn it on first")
        kw = number(params, "kw")
        limit = self.battery.max_power_kw
        within(kw, -limit, limit, "kW (+ charge, - discharge)")
        if kw > 0 and self.battery.soc_pct >= self.battery.max_soc_pct - 1e-9:
            raise CommandRefused(f"the battery is full ({self.battery.soc_pct:.1f} % state of charge)")
        if kw < 0 and self.battery.soc_pct <= self.battery.min_soc_pct + 1e-9:
            raise CommandRefused(
                f"the battery is at its minimum ({self.battery.min_soc_pct:g} % state of charge)"
            )
        minutes = params.get("duration_minutes")
        if minutes is not None:
            minutes = int(within(number(params, "duration_minutes"), 1, 1440, "duration_minutes"))
        self.battery.setpoint_kw, self.duration_minutes = kw, minutes
        self.until = now + timedelta(minutes=minutes) if minutes is not None else None

    def _set_mode(self, params: dict[str, Any], now: datetime) -> None:
        mode = params.get("mode")
        if mode not in self.MODES:
            raise CommandRefused(f"mode {mode!r} is not one of {', '.join(self.MODES)}")
        self.mode = str(mode)
        if mode == "idle":
            self.battery.setpoint_kw, self.until, self.duration_minutes = 0.0, None, None

    def step(self, dt_s: float, now: datetime) -> None:
        if self.until is not None and now >= self.until:
            # The timed part of the step runs at the setpoint, the rest idle.
            timed_s = max(0.0, dt_s - (now - self.until).total_seconds())
            energy_kwh = self.battery.step(timed_s) * timed_s / 3600
            self.battery.setpoint_kw, self.until, self.duration_minutes = 0.0, None, None
            self.running_kw = energy_kwh / (dt_s / 3600) if dt_s else 0.0
            return
        self.running_kw = self.battery.step(dt_s) if self.on else 0.0

    def reported(self) -> dict[str, Any]:
        return super().reported() | {
            "power_kw": self.battery.setpoint_kw, "duration_minutes": self.duration_minutes, "mode": self.mode,
            "soc_pct": round(self.battery.soc_pct, 2),
        }  # fmt: skip

    def metrics(self) -> dict[str, float]:
        return {"power_w": round(self.running_kw * 1000, 1), "soc_pct": round(self.battery.soc_pct, 2)}


@dataclass
class Meter(Device):
    """The main meter: it only measures (the building gives it the balance)."""

    power_kw: float = 0.0
    import_wh: float = 0.0
    COMMANDS: ClassVar[tuple[str, ...]] = ()

    def reported(self) -> dict[str, Any]:
        return {"device_type": self.device_type}

    def metrics(self) -> dict[str, float]:
        return {"power_w": round(self.power_kw * 1000, 1), "energy_wh": round(self.import_wh, 1)}


@dataclass
class Environment(Device):
    """A room's sensors (temperature, humidity, CO2, occupancy): not a controllable device."""

    COMMANDS: ClassVar[tuple[str, ...]] = ()

    def reported(self) -> dict[str, Any]:
        return {"device_type": self.device_type}
