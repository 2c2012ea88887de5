"""The demo building: rooms that differ (size, windows and where they face, how many people), their
sensors, a main meter, PV, a battery, HVAC, a water heater, a heat pump, lighting, a plug and an EV
charger; what each device reports, how it answers commands (ems_sim.devices, ems_sim.commands) and
how the building's physics follows. No I/O, no wall clock: `step(now)` advances it, a seed makes it
repeat itself exactly.

The devices' ids: `DEVICE_001` (the Office's HVAC), `DEVICE_002` (the water heater) and `BATT001`
(the battery inverter) are the ids of the seed's examples; the others are named after the site.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ems_sim import physics
from ems_sim.commands import Seen, commands_from_delta
from ems_sim.devices import (
    BatteryInverter,
    CommandRefused,
    Device,
    Environment,
    EvCharger,
    HeatPump,
    Hvac,
    Lighting,
    Meter,
    PvInverter,
    Switch,
    WaterHeater,
)

__all__ = ["Balance", "Building", "CommandRefused", "RoomSpec", "SensorSpec"]

HVAC_ID, WATER_HEATER_ID, BATTERY_ID = "DEVICE_001", "DEVICE_002", "BATT001"
RADIATOR_KW_PER_K_M3 = 0.0008  # a room's radiators: 2 kW at 25 K above a 100 m3 room


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


@dataclass(frozen=True)
class RoomSpec:
    name: str
    volume_m3: float
    facing: str  # north, east, south, west: where its windows look
    window_m2: float
    max_occupancy: int


ROOM_SPECS = (
    RoomSpec("Office", 180.0, "south", 12.0, 10),
    RoomSpec("Meeting Room", 90.0, "east", 6.0, 12),
    RoomSpec("Kitchen", 60.0, "north", 3.0, 6),
    RoomSpec("Lobby", 250.0, "west", 15.0, 4),
)
ROOMS = tuple(spec.name for spec in ROOM_SPECS)


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
    room_specs: tuple[RoomSpec, ...] = ROOM_SPECS
    pv_peak_kw: float = 12.0
    devices: dict[str, Device] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.now = self.start
        self.clouds = physics.Clouds()
        self.rooms = tuple(spec.name for spec in self.room_specs)
        self.room_state = {
            s.name: physics.Room(s.name, s.volume_m3, s.facing, s.window_m2, s.max_occupancy)
            for s in self.room_specs
        }
        self.outdoor_c = physics.outdoor_c(self.start)
        self.solar_kw = dict.fromkeys(self.rooms, 0.0)
        site, main_room, last_room = self.site_id, self.rooms[0], self.rooms[-1]
        for device in (
            Meter(f"{site}-meter", "meter", "Main meter"),
            PvInverter(f"{site}-pv", "pv_inverter", "PV inverter", rated_power_kw=self.pv_peak_kw,
                       dr_eligible=True, comfort_priority=8),
            BatteryInverter(BATTERY_ID, "battery_inverter", "Battery inverter", rated_power_kw=5.0,
                            dr_eligible=True, comfort_priority=9),
            Hvac(HVAC_ID, "hvac", f"{main_room} HVAC", main_room, rated_power_kw=6.0, dr_eligible=True,
                 comfort_priority=6),
            WaterHeater(WATER_HEATER_ID, "water_heater", "Water heater", last_room, rated_power_kw=3.0,
                        dr_eligible=True, comfort_priority=3),
            HeatPump(f"{site}-heat-pump", "heat_pump", "Heat pump", last_room, rated_power_kw=4.0,
                     dr_eligible=True, comfort_priority=5),
            Lighting(f"{site}-lighting", "lighting", "Lighting", rated_power_kw=1.5, level=0.6,
                     dr_eligible=True, comfort_priority=4),
            Switch(f"{site}-plug", "plug", "Kitchen plug", "Kitchen", rated_power_kw=2.0, level=0.4,
                   comfort_priority=2),
            EvCharger(f"{site}-ev-charger", "ev_charger", "EV charger", rated_power_kw=11.0, dr_eligible=True,
                      comfort_priority=1),
            *(Environment(self.env_device(room), "environment", f"{room} sensors", room) for room in self.rooms),
        ):  # fmt: skip
            self.devices[device.device_id] = device
        self.seen = {device_id: Seen() for device_id in self.devices}

    def env_device(self, room: str) -> str:
        return f"{self.site_id}-{room.lower().replace(' ', '-')}-env"

    def of_type(self, device_type: str) -> list[Device]:
        return [d for d in self.devices.values() if d.device_type == device_type]

    @property
    def battery(self) -> BatteryInverter:
        battery = self.devices[BATTERY_ID]
        assert isinstance(battery, BatteryInverter)
        return battery

    @property
    def pv(self) -> PvInverter:
        pv = self.devices[f"{self.site_id}-pv"]
        assert isinstance(pv, PvInverter)
        return pv

    @property
    def meter(self) -> Meter:
        meter = self.devices[f"{self.site_id}-meter"]
        assert isinstance(meter, Meter)
        return meter

    # --- what is registered ---------------------------------------------------------------------

    def registrations(self) -> list[dict[str, Any]]:
        """POST /api/v1/iot/devices bodies: every device but the rooms' sensor boxes."""
        return [d.registration() for d in self.devices.values() if not isinstance(d, Environment)]

    def battery_registrations(self) -> list[dict[str, Any]]:
        """POST /api/v1/batteries bodies: the battery behind each battery inverter."""
        return [d.battery_registration() for d in self.devices.values() if isinstance(d, BatteryInverter)]

    def sensors(self) -> list[SensorSpec]:
        specs = []
        for device in self.devices.values():
            if isinstance(device, Environment):
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
                specs.append(
                    SensorSpec(device.device_id, device.name, device.device_type, "W", device.device_id,
                               device.room)
                )  # fmt: skip
        return specs

    # --- physics ---------------------------------------------------------------------------------

    def balance(self) -> Balance:
        loads = {
            d.device_id: d.draw_kw
            for d in self.devices.values()
            if not isinstance(d, Meter | PvInverter | BatteryInverter | Environment)
        }
        return Balance(loads, self.pv.output_kw, self.battery.draw_kw)

    def step(self, now: datetime) -> None:
        """Advance to `now`: clouds, sun, outdoor air, occupancy, rooms and their HVAC, every device's
        own physics, then the meter (the sum) and its energy counter."""
        dt_s = max(0.0, (now - self.now).total_seconds())
        self.now = now
        if dt_s == 0:
            return
        clear_pct = self.clouds.step(self.rng, dt_s)
        ghi = physics.clear_sky_ghi_w_m2(physics.solar_elevation_deg(now, self.latitude, self.longitude))
        azimuth = physics.solar_azimuth_deg(now, self.longitude)
        self.pv.available_kw = physics.pv_kw(ghi, clear_pct, self.pv_peak_kw)
        self.outdoor_c = physics.outdoor_c(now)
        working_hours = 7 <= now.hour < 19 and now.weekday() < 5
        pump = self.devices[f"{self.site_id}-heat-pump"]
        assert isinstance(pump, HeatPump)
        pump.radiators_kw = 0.0
        for name, room in self.room_state.items():
            wanted = self.rng.randint(0, room.max_occupancy) if working_hours else 0
            room.occupancy = max(0, round(room.occupancy + (wanted - room.occupancy) * 0.3))
            solar_kw = self.solar_kw[name] = physics.solar_gain_kw(room.window_m2, ghi, clear_pct, room.facing,
                                                                   azimuth)  # fmt: skip
            heat_kw, hvac_room = 0.0, False
            for hvac in self.of_type("hvac"):
                if isinstance(hvac, Hvac) and hvac.room == name:
                    hvac.electric_kw, heat_kw = physics.hvac_heat_kw(
                        room,
                        self.outdoor_c,
                        solar_kw,
                        hvac.setpoint_c,
                        hvac.mode,
                        float(hvac.rated_power_kw or 0),
                    )
                    heat_kw, hvac_room = (heat_kw if hvac.on else 0.0), True
            if not hvac_room:  # the heat pump's radiators heat the others
                heat_kw = physics.radiator_kw(
                    pump.tank.temperature_c, room.temperature_c, RADIATOR_KW_PER_K_M3 * room.volume_m3
                )
                pump.radiators_kw += heat_kw
            room.step(dt_s, self.outdoor_c, heat_kw, solar_kw)
        for device in self.devices.values():
            device.step(dt_s, now)
        meter = self.meter
        meter.power_kw = self.balance().meter_kw
        meter.import_wh += max(meter.power_kw, 0.0) * dt_s / 3.6

    # --- telemetry and commands -------------------------------------------------------------------

    def telemetry(self, device_id: str, ts_ms: int) -> dict[str, Any]:
        """The device's message on ems/{site}/devices/{device_id}/telemetry (API.md's batch form)."""
        device = self.devices[device_id]
        if isinstance(device, Meter):
            device.power_kw = self.balance().meter_kw  # the sum now, commands since the tick included
        readings: list[dict[str, Any]]
        if isinstance(device, Environment):
            room = self.room_state[str(device.room)]
            base = device_id[:-4]
            readings = [
                {"sensor_id": f"{base}-temperature", "metrics": {"temperature_c": round(room.temperature_c, 2)}},
                {"sensor_id": f"{base}-humidity", "metrics": {"humidity_pct": round(room.humidity_pct, 1)}},
                {"sensor_id": f"{base}-co2", "metrics": {"co2_ppm": round(room.co2_ppm, 0)}},
                {"sensor_id": f"{base}-occupancy", "metrics": {"occupancy": room.occupancy}},
            ]  # fmt: skip
        else:
            readings = [{"sensor_id": device_id, "metrics": device.metrics()}]
        return {"ts": ts_ms, "readings": readings}

    def reported(self, device_id: str) -> dict[str, Any]:
        return self.devices[device_id].reported()

    def command(self, device_id: str, command: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Obey one command (ems.devices.things' table, the params as validated there); the new reported
        state. Raises CommandRefused, the device unchanged, for what it cannot do."""
        return self._apply(device_id, [(command, params or {})])

    def apply_delta(self, device_id: str, delta: dict[str, Any]) -> dict[str, Any]:
        """Bring the device to a shadow delta's desired state, all of it or none (CommandRefused); the
        new reported state. Keys it does not know are left alone (they stay in the delta)."""
        device = self.devices.get(device_id)
        charge_now = device.charge if isinstance(device, EvCharger) else None
        power_kw_now = device.reported().get("power_kw") if device is not None else None
        return self._apply(device_id, commands_from_delta(delta, charge_now, power_kw_now))

    def _apply(self, device_id: str, commands: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        device = self.devices.get(device_id)
        if device is None:
            raise CommandRefused(f"no device {device_id}")
        before = copy.deepcopy(vars(device))
        try:
            for command, params in commands:
                device.apply(command, dict(params), self.now)
        except CommandRefused:
            vars(device).update(before)
            raise
        return device.reported()

    def receive(self, device_id: str, message: dict[str, Any], delta: bool = False) -> dict[str, Any] | None:
        """A command from its topic (`delta` False) or the shadow's delta (True): the report to send to
        the shadow, with `command_id` and `last_command` (applied, or rejected with the reason). None:
        nothing to report, for a command_id already answered (the other copy came first) or a refused
        command without a command_id (no last_command can name it)."""
        state = dict(message)
        command_id = state.pop("command_id", None)
        command_id = str(command_id) if command_id is not None else None
        if command_id is not None and command_id in self.seen[device_id]:
            return None
        try:
            if delta:
                reported = self.apply_delta(device_id, state)
            else:
                params = state.get("params")
                reported = self.command(
                    device_id, str(state.get("command")), params if isinstance(params, dict) else {}
                )
            answer: dict[str, Any] = {"command_id": command_id, "status": "applied"}
        except CommandRefused as refused:
            reported = self.reported(device_id)
            answer = {"command_id": command_id, "status": "rejected", "reason": str(refused)}
        if command_id is None:
            return reported if answer["status"] == "applied" else None
        self.seen[device_id].add(command_id, answer)
        return reported | {"command_id": command_id, "last_command": answer}
