"""The demo building: rooms with their sensors, a main meter, PV, a battery, HVAC, a water heater,
lighting and an EV charger; what each device reports and how it obeys commands. No I/O, no wall
clock: `step(now)` advances it, a seed makes it repeat itself exactly."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ems_sim import physics


@dataclass(frozen=True)
class SensorSpec:
    """A sensor as the registry's POST /sensors takes it."""

    sensor_id: str
    name: str
    sensor_type: str
    unit: str
    device_id: str
    room: str | None = None

    def body(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass
class Device:
    device_id: str
    device_type: str  # DESIGN.md's device types: hvac, water_heater, lighting, ev_charger, ...
    room: str | None = None
    load: physics.Load | None = None  # what it draws, for the loads among them
    setpoint_c: float | None = None
    mode: str | None = None

    def reported(self) -> dict[str, Any]:
        """Its state as its shadow's `reported` shows it."""
        state: dict[str, Any] = {"device_type": self.device_type}
        if self.load is not None:
            state |= {"power": "on" if self.load.on else "off", "power_kw": round(self.load.power_kw, 3)}
        if self.setpoint_c is not None:
            state["setpoint_c"] = self.setpoint_c
        if self.mode is not None:
            state["mode"] = self.mode
        return state


class CommandRefused(ValueError):
    """A command the device does not take (its reason is the message)."""


ROOMS = ("Office", "Meeting Room", "Kitchen", "Lobby")
# Delta keys of a shadow and the command that brings the device there.
_DELTA_COMMANDS = {
    "power": "power",
    "power_kw": "set_power",
    "setpoint_c": "set_setpoint",
    "mode": "set_mode",
}


@dataclass
class Balance:
    loads_kw: dict[str, float]
    pv_kw: float
    battery_kw: float

    @property
    def meter_kw(self) -> float:
        return physics.meter_kw(self.loads_kw.values(), self.pv_kw, self.battery_kw)


@dataclass
class Building:
    site_id: str
    start: datetime
    seed: int = 0
    latitude: float = 52.52
    longitude: float = 13.40
    rooms: tuple[str, ...] = ROOMS
    pv_peak_kw: float = 12.0
    devices: dict[str, Device] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.now = self.start
        self.clouds = physics.Clouds()
        self.battery = physics.Battery()
        self.battery_kw = 0.0
        self.pv_now_kw = 0.0
        self.meter_import_wh = 0.0
        self.pv_wh = 0.0
        self.room_state = {name: physics.Room(name) for name in self.rooms}
        prefix = self.site_id
        main_room = self.rooms[0]
        for device in (
            Device(f"{prefix}-meter", "meter"),
            Device(f"{prefix}-pv", "pv_inverter"),
            Device(f"{prefix}-battery", "battery_inverter"),
            Device(f"{prefix}-hvac", "hvac", main_room, physics.Load(6.0), setpoint_c=21.0, mode="comfort"),
            Device(
                f"{prefix}-water-heater", "water_heater", self.rooms[-1], physics.Load(3.0), setpoint_c=55.0
            ),
            Device(f"{prefix}-lighting", "lighting", None, physics.Load(1.5, level=0.6)),
            Device(f"{prefix}-ev-charger", "ev_charger", None, physics.Load(11.0, level=7.4 / 11.0)),
            *(Device(self.env_device(room), "environment", room) for room in self.rooms),
        ):
            self.devices[device.device_id] = device
        self.water_c = 50.0

    def env_device(self, room: str) -> str:
        return f"{self.site_id}-{room.lower().replace(' ', '-')}-env"

    # --- what is registered ---------------------------------------------------------------------

    def sensors(self) -> list[SensorSpec]:
        specs = []
        for device in self.devices.values():
            if device.device_type == "environment":
                assert device.room is not None
                for kind, unit in (
                    ("temperature", "C"),
                    ("humidity", "%"),
                    ("co2", "ppm"),
                    ("occupancy", "people"),
                ):
                    specs.append(
                        SensorSpec(f"{device.device_id[:-4]}-{kind}", f"{device.room} {kind}", kind, unit,
                                   device.device_id, device.room)
                    )  # fmt: skip
            else:
                name = device.device_type.replace("_", " ")
                specs.append(
                    SensorSpec(device.device_id, name, device.device_type, "W", device.device_id, device.room)
                )
        return specs

    # --- physics ---------------------------------------------------------------------------------

    def balance(self) -> Balance:
        loads = {d.device_id: d.load.power_kw for d in self.devices.values() if d.load is not None}
        return Balance(loads, self.pv_now_kw, self.battery_kw)

    def step(self, now: datetime) -> None:
        """Advance to `now`: clouds, PV, battery, rooms, thermostats, occupancy, energy counters."""
        dt_s = max(0.0, (now - self.now).total_seconds())
        self.now = now
        if dt_s == 0:
            return
        clear_pct = self.clouds.step(self.rng, dt_s)
        ghi = physics.clear_sky_ghi_w_m2(physics.solar_elevation_deg(now, self.latitude, self.longitude))
        self.pv_now_kw = physics.pv_kw(ghi, clear_pct, self.pv_peak_kw)
        self.battery_kw = self.battery.step(dt_s)
        outside = physics.outdoor_c(now)
        working_hours = 7 <= now.hour < 19 and now.weekday() < 5
        hvac = self.devices[f"{self.site_id}-hvac"]
        for name, room in self.room_state.items():
            wanted = self.rng.randint(0, 8) if working_hours else 0
            room.occupancy = max(0, min(20, round(room.occupancy + (wanted - room.occupancy) * 0.3)))
            heat_kw = 0.0
            if hvac.room == name and hvac.load is not None and hvac.setpoint_c is not None:
                electric_kw, heat_kw = physics.hvac_heat_kw(
                    room.temperature_c, hvac.setpoint_c, hvac.load.rated_kw
                )
                hvac.load.level = electric_kw / hvac.load.rated_kw
                heat_kw = heat_kw if hvac.load.on else 0.0
            room.step(dt_s, outside, heat_kw)
        heater = self.devices[f"{self.site_id}-water-heater"]
        if heater.load is not None and heater.setpoint_c is not None:
            heater.load.level = (
                1.0 if self.water_c < heater.setpoint_c - 2 else 0.0
            )  # a thermostat with 2 K band
            self.water_c += dt_s / 3600 * (heater.load.power_kw * 8.0 - (self.water_c - 20.0) * 0.05)
        meter = self.balance().meter_kw
        self.meter_import_wh += max(meter, 0.0) * dt_s / 3.6
        self.pv_wh += self.pv_now_kw * dt_s / 3.6

    # --- telemetry and commands -------------------------------------------------------------------

    def telemetry(self, device_id: str, ts_ms: int) -> dict[str, Any]:
        """The device's message on ems/{site}/devices/{device_id}/telemetry (API.md's batch form)."""
        device = self.devices[device_id]
        balance = self.balance()
        readings: list[dict[str, Any]]
        if device.device_type == "environment":
            room = self.room_state[str(device.room)]
            base = device_id[:-4]
            readings = [
                {
                    "sensor_id": f"{base}-temperature",
                    "metrics": {"temperature_c": round(room.temperature_c, 2)},
                },
                {"sensor_id": f"{base}-humidity", "metrics": {"humidity_pct": round(room.humidity_pct, 1)}},
                {"sensor_id": f"{base}-co2", "metrics": {"co2_ppm": round(room.co2_ppm, 0)}},
                {"sensor_id": f"{base}-occupancy", "metrics": {"occupancy": room.occupancy}},
            ]
        elif device.device_type == "meter":
            metrics = {
                "power_w": round(balance.meter_kw * 1000, 1),
                "energy_wh": round(self.meter_import_wh, 1),
            }
            readings = [{"sensor_id": device_id, "metrics": metrics}]
        elif device.device_type == "pv_inverter":
            metrics = {"power_w": round(self.pv_now_kw * 1000, 1), "energy_wh": round(self.pv_wh, 1)}
            readings = [{"sensor_id": device_id, "metrics": metrics}]
        elif device.device_type == "battery_inverter":
            metrics = {"power_w": round(self.battery_kw * 1000, 1), "soc_pct": round(self.battery.soc_pct, 2)}
            readings = [{"sensor_id": device_id, "metrics": metrics}]
        else:
            metrics = {"power_w": round(balance.loads_kw.get(device_id, 0.0) * 1000, 1)}
            if device.device_type == "water_heater":
                metrics["temperature_c"] = round(self.water_c, 2)
            readings = [{"sensor_id": device_id, "metrics": metrics}]
        return {"ts": ts_ms, "readings": readings}

    def reported(self, device_id: str) -> dict[str, Any]:
        device = self.devices[device_id]
        if device.device_type == "battery_inverter":
            return {"device_type": device.device_type, "power_kw": self.battery.setpoint_kw}
        return device.reported()

    def command(self, device_id: str, command: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Obey a command (API.md: on, off, set_power, set_setpoint, set_mode); the new reported state.
        Raises CommandRefused for what the device cannot do."""
        device = self.devices.get(device_id)
        if device is None:
            raise CommandRefused(f"no device {device_id}")
        params = params or {}
        if device.device_type == "battery_inverter" and command == "set_power":
            self.battery.setpoint_kw = _number(params, "power_kw", "kw")
        elif command in ("on", "off") and device.load is not None:
            device.load.on = command == "on"
        elif command == "set_power" and device.load is not None:
            power_kw = _number(params, "power_kw", "kw")
            if not 0 <= power_kw <= device.load.rated_kw:
                raise CommandRefused(f"{device_id}: power_kw must be within 0..{device.load.rated_kw}")
            device.load.level = power_kw / device.load.rated_kw
            device.load.on = power_kw > 0
        elif command == "set_setpoint" and device.setpoint_c is not None:
            device.setpoint_c = _number(params, "setpoint_c", "value")
        elif command == "set_mode" and device.mode is not None:
            device.mode = str(params.get("mode", ""))
        else:
            raise CommandRefused(f"{device_id} ({device.device_type}) does not take {command!r}")
        return self.reported(device_id)

    def apply_delta(self, device_id: str, delta: dict[str, Any]) -> dict[str, Any]:
        """Bring the device to a shadow delta's desired state; the new reported state. Keys it does not
        know are left alone (they stay in the delta, as with a real device)."""
        for key, value in delta.items():
            command = _DELTA_COMMANDS.get(key)
            if command == "power":
                self.command(device_id, "on" if value in ("on", True) else "off")
            elif command is not None:
                self.command(device_id, command, {key: value})
        return self.reported(device_id)


def _number(params: dict[str, Any], *names: str) -> float:
    for name in names:
        value = params.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    raise CommandRefused(f"params need a number: {' or '.join(names)}")
