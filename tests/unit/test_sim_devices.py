"""The demo building's devices answer commands as the wire contract says (ems.devices.things): each
command_id once, from the command topic or the shadow's delta, whichever comes first; a report with
`command_id` and `last_command` (applied, or rejected with the reason); every command of the table the
device type takes, and what it refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ems.devices.things import desired_state
from ems_sim.building import BATTERY_ID, HVAC_ID, WATER_HEATER_ID, Building
from ems_sim.commands import commands_from_delta
from ems_sim.devices import HeatPump

NOON = datetime(2026, 6, 21, 11, 0, tzinfo=UTC)


def topic_message(command_id: str, command: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "command_id": command_id,
        "command": command,
        "params": params or {},
        "issued_at": "2026-06-21T11:00:00Z",
    }


def delta_of(command_id: str, command: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The delta the shadow shows for a command (its desired keys plus command_id)."""
    return desired_state(command, params or {}) | {"command_id": command_id}


def test_the_demo_building_has_the_seeds_device_ids() -> None:
    building = Building("demo", NOON)
    kinds = {d.device_id: d.device_type for d in building.devices.values()}
    assert (kinds[HVAC_ID], kinds[WATER_HEATER_ID], kinds[BATTERY_ID]) == (
        "hvac",
        "water_heater",
        "battery_inverter",
    )
    assert (HVAC_ID, WATER_HEATER_ID, BATTERY_ID) == ("DEVICE_001", "DEVICE_002", "BATT001")
    assert building.devices[HVAC_ID].room == "Office"
    registered = {body["device_id"]: body for body in building.registrations()}
    # Every device type of API.md once, the rooms' sensor boxes not among them.
    assert sorted(b["device_type"] for b in registered.values()) == sorted(
        ["meter", "pv_inverter", "battery_inverter", "hvac", "water_heater", "heat_pump", "lighting", "plug",
         "ev_charger"]
    )  # fmt: skip
    assert registered[HVAC_ID] == {
        "device_id": "DEVICE_001", "name": "Office HVAC", "device_type": "hvac", "room": "Office",
        "rated_power_kw": 6.0, "dr_eligible": True, "comfort_priority": 6,
    }  # fmt: skip
    assert set(registered["demo-meter"]) == {
        "device_id",
        "name",
        "device_type",
        "dr_eligible",
        "comfort_priority",
    }


def test_an_applied_command_reports_its_state_command_id_and_last_command() -> None:
    building = Building("demo", NOON)
    report = building.receive(HVAC_ID, topic_message("c-1", "set_setpoint", {"celsius": 23.5}))
    assert report is not None
    assert report["setpoint_c"] == 23.5 and report["command_id"] == "c-1"
    assert report["last_command"] == {"command_id": "c-1", "status": "applied"}
    # The report holds every desired key of the command with the same value: no delta is left.
    assert desired_state("set_setpoint", {"celsius": 23.5}).items() <= report.items()


def test_a_command_id_is_applied_once_whichever_copy_comes_first() -> None:
    building = Building("demo", NOON)
    assert building.receive("demo-lighting", topic_message("c-2", "off")) is not None
    assert building.receive("demo-lighting", delta_of("c-2", "off"), delta=True) is None
    building.command("demo-lighting", "on")  # someone else turned it back on meanwhile
    assert building.receive("demo-lighting", topic_message("c-2", "off")) is None  # the retry
    assert building.devices["demo-lighting"].on is True
    # The delta first (the device was away when the topic copy went out): the topic copy is then a no-op.
    report = building.receive(WATER_HEATER_ID, delta_of("c-3", "set_power", {"kw": 2.0}), delta=True)
    assert report is not None and report["power_kw"] == 2.0 and report["last_command"]["status"] == "applied"
    assert building.receive(WATER_HEATER_ID, topic_message("c-3", "set_power", {"kw": 2.0})) is None


def test_a_refused_command_is_reported_rejected_with_its_reason_and_changes_nothing() -> None:
    building = Building("demo", NOON)
    report = building.receive(HVAC_ID, topic_message("c-4", "set_setpoint", {"celsius": 35}))
    assert report is not None and report["setpoint_c"] == 21.0 and report["command_id"] == "c-4"
    assert report["last_command"] == {
        "command_id": "c-4", "status": "rejected",
        "reason": "setpoint °C 35 is outside this device's range 16 to 30",
    }  # fmt: skip
    # A delta of two commands where the second is refused: neither applies.
    delta = {"power": "off", "setpoint_c": 99, "command_id": "c-5"}
    report = building.receive(HVAC_ID, delta, delta=True)
    assert report is not None and report["last_command"]["status"] == "rejected"
    assert building.devices[HVAC_ID].on is True
    assert building.receive(HVAC_ID, topic_message("c-4", "set_setpoint", {"celsius": 35})) is None


REFUSALS = [
    ("demo-meter", "off", {}, "a meter takes no commands, not 'off'"),
    (HVAC_ID, "curtail", {"kw": 1}, "a hvac takes on, off, set_setpoint, set_mode, not 'curtail'"),
    (HVAC_ID, "set_mode", {"mode": "turbo"}, "mode 'turbo' is not one of cool, heat, fan, auto, dry"),
    (HVAC_ID, "set_setpoint", {"celsius": "warm"}, "params.celsius must be a number, not 'warm'"),
    (WATER_HEATER_ID, "set_setpoint", {"celsius": 80}, "setpoint °C 80 is outside this device's range 35 to 75"),
    (WATER_HEATER_ID, "set_power", {"kw": 4}, "kW 4 is outside this device's range 0 to 3"),
    ("demo-heat-pump", "sg_ready", {"state": 5}, "sg_ready state 5 is not 1, 2, 3 or 4"),
    ("demo-lighting", "set_power", {"kw": 2}, "kW 2 is outside this device's range 0 to 1.5"),
    ("demo-plug", "set_power", {"kw": 1}, "a plug takes on, off, not 'set_power'"),
    ("demo-pv", "curtail", {"kw": 13}, "curtail kW 13 is outside this device's range 0 to 12"),
    ("demo-pv", "curtail", {"percent": 120}, "curtail % 120 is outside this device's range 0 to 100"),
    ("demo-ev-charger", "charge", {"current_a": 20}, "current A 20 is outside this device's range 6 to 16"),
    ("demo-ev-charger", "charge", {"power_kw": 12}, "kW 12 is outside this device's range 0 to 11"),
    ("demo-ev-charger", "charge", {"power_kw": 7, "departure": "2026-06-21T10:00:00Z"},
     "departure 2026-06-21T10:00:00Z is not after now (2026-06-21T11:00:00+00:00)"),
    (BATTERY_ID, "set_power", {"kw": 6}, "kW (+ charge, - discharge) 6 is outside this device's range -5 to 5"),
    (BATTERY_ID, "set_power", {"kw": 1, "duration_minutes": 0}, "duration_minutes 0 is outside this device's range 1 to 1440"),
]  # fmt: skip


@pytest.mark.parametrize(("device_id", "command", "params", "reason"), REFUSALS)
def test_each_refusal_names_its_reason(
    device_id: str, command: str, params: dict[str, Any], reason: str
) -> None:
    building = Building("demo", NOON)
    before = building.reported(device_id)
    report = building.receive(device_id, topic_message("r", command, params))
    assert report is not None and report["last_command"] == {
        "command_id": "r",
        "status": "rejected",
        "reason": reason,
    }
    assert building.reported(device_id) == before


def test_state_refusals_a_full_car_a_full_battery_an_inverter_that_is_off() -> None:
    building = Building("demo", NOON)
    ev = building.devices["demo-ev-charger"]
    ev.car_kwh = ev.car_capacity_kwh  # type: ignore[attr-defined]
    report = building.receive("demo-ev-charger", topic_message("e", "charge", {"power_kw": 7}))
    assert report is not None and report["last_command"]["reason"] == "the car is already full (60 kWh)"
    building.battery.battery.soc_pct = 100.0
    report = building.receive(BATTERY_ID, topic_message("b1", "set_power", {"kw": 2}))
    assert (
        report is not None
        and report["last_command"]["reason"] == "the battery is full (100.0 % state of charge)"
    )
    assert (
        building.receive(BATTERY_ID, topic_message("b2", "set_power", {"kw": -2}))["last_command"]["status"]
        == "applied"
    )  # type: ignore[index]
    building.receive(BATTERY_ID, topic_message("b3", "off"))
    report = building.receive(BATTERY_ID, topic_message("b4", "set_power", {"kw": -2}))
    assert report is not None and report["last_command"]["reason"] == "the inverter is off: turn it on first"


# Every command of the contract's table each type takes, through the delta (desired keys) and obeyed.
OBEYED = [
    (HVAC_ID, "off", {}, {"power": "off"}),
    (HVAC_ID, "set_mode", {"mode": "cool"}, {"mode": "cool"}),
    (HVAC_ID, "set_setpoint", {"celsius": 24.0}, {"setpoint_c": 24.0}),
    (WATER_HEATER_ID, "set_setpoint", {"celsius": 60.0}, {"setpoint_c": 60.0}),
    (WATER_HEATER_ID, "set_power", {"kw": 1.5}, {"power_kw": 1.5}),
    ("demo-heat-pump", "sg_ready", {"state": 4}, {"sg_ready": 4}),
    ("demo-heat-pump", "set_mode", {"mode": "dhw"}, {"mode": "dhw"}),
    ("demo-lighting", "set_power", {"kw": 0.75}, {"power_kw": 0.75}),
    ("demo-plug", "off", {}, {"power": "off"}),
    ("demo-pv", "curtail", {"kw": 4.0}, {"curtail_kw": 4.0}),
    ("demo-pv", "curtail", {"percent": 50.0}, {"curtail_pct": 50.0}),
    ("demo-ev-charger", "charge", {"power_kw": 3.7, "target_kwh": 10.0, "departure": "2026-06-21T17:00:00Z"},
     {"charge": {"power_kw": 3.7, "target_kwh": 10.0, "departure": "2026-06-21T17:00:00Z"}}),
    ("demo-ev-charger", "set_power", {"kw": 5.0}, {"power_kw": 5.0}),
    (BATTERY_ID, "set_power", {"kw": -3.0, "duration_minutes": 60}, {"power_kw": -3.0, "duration_minutes": 60}),
]  # fmt: skip


@pytest.mark.parametrize(("device_id", "command", "params", "reported"), OBEYED)
@pytest.mark.parametrize("via_delta", [False, True])
def test_every_command_of_the_table_is_obeyed_and_leaves_no_delta(
    device_id: str, command: str, params: dict[str, Any], reported: dict[str, Any], via_delta: bool
) -> None:
    building = Building("demo", NOON)
    message = delta_of("ok", command, params) if via_delta else topic_message("ok", command, params)
    report = building.receive(device_id, message, delta=via_delta)
    assert report is not None and report["last_command"] == {"command_id": "ok", "status": "applied"}
    assert reported.items() <= report.items()
    assert desired_state(command, params).items() <= report.items()


def test_the_heat_pump_follows_sg_ready() -> None:
    pump = HeatPump("hp", "heat_pump", "HP", rated_power_kw=4.0)
    pump.tank.temperature_c = 44.0  # within 2 K of its 45 °C setpoint: normal operation waits
    pump.step(60, NOON)
    assert pump.draw_kw == 0
    pump.apply("sg_ready", {"state": 3}, NOON)  # recommended on: 5 K higher, so it heats
    pump.step(60, NOON)
    assert pump.draw_kw == 4.0
    pump.apply("sg_ready", {"state": 1}, NOON)  # blocked
    assert pump.draw_kw == 0


def test_a_delta_reads_back_into_the_commands_of_the_table() -> None:
    assert commands_from_delta({"power": "off", "setpoint_c": 20, "command_id": "x"}) == [
        ("off", {}), ("set_setpoint", {"celsius": 20}),
    ]  # fmt: skip
    assert commands_from_delta({"power_kw": -2, "duration_minutes": 15}) == [
        ("set_power", {"kw": -2, "duration_minutes": 15})
    ]
    # A delta shows only what differs inside `charge`: the rest is the charge in force.
    now = {"power_kw": 7.0, "target_kwh": 20}
    assert commands_from_delta({"charge": {"target_kwh": 30}}, now) == [
        ("charge", {"power_kw": 7.0, "target_kwh": 30})
    ]
    assert commands_from_delta({"charge": {"current_a": 10}}, now) == [
        ("charge", {"target_kwh": 20, "current_a": 10})
    ]
    assert commands_from_delta({"firmware": "2.0"}) == []
    # Only the duration differs (the setpoint is already the desired one): the setpoint in force.
    assert commands_from_delta({"duration_minutes": 15, "command_id": "y"}, None, 0.0) == [
        ("set_power", {"kw": 0.0, "duration_minutes": 15})
    ]


def test_a_command_without_an_id_is_obeyed_and_reported_without_last_command() -> None:
    building = Building("demo", NOON)
    report = building.receive("demo-ev-charger", {"power": "off"}, delta=True)
    assert report is not None and report["power"] == "off" and "last_command" not in report
    building.step(NOON + timedelta(minutes=1))
    assert building.balance().loads_kw["demo-ev-charger"] == 0
