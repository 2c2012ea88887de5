"""ems.devices.commands: each device type's command validation (every refusal names the parameter
and its limit), the command life cycle, and the control priority."""

from __future__ import annotations

from typing import Any

import pytest

from ems.core.errors import Invalid
from ems.devices import commands
from ems.devices.commands import (
    COMMAND_SETS,
    DEVICE_TYPES,
    IllegalTransition,
    check_transition,
    holder_of,
    outranks,
    validate,
)
from ems.devices.things import desired_state

ALL_COMMANDS = ("on", "off", "set_power", "set_setpoint", "set_mode", "curtail", "sg_ready", "charge")

# (device type, rated kW, command, params, the field named, words the message must hold)
REFUSALS: list[tuple[str, float | None, str, dict[str, Any], str, str]] = [
    ("hvac", 3.0, "set_setpoint", {"celsius": 31}, "params.celsius", "16 to 30"),
    ("hvac", 3.0, "set_setpoint", {"celsius": 15.5}, "params.celsius", "16 to 30"),
    ("hvac", 3.0, "set_setpoint", {}, "params.celsius", "16 to 30"),
    ("hvac", 3.0, "set_setpoint", {"celsius": "22"}, "params.celsius", "a number"),
    ("hvac", 3.0, "set_mode", {"mode": "turbo"}, "params.mode", "cool, heat, fan, auto, dry"),
    ("hvac", 3.0, "on", {"celsius": 20}, "params.celsius", "no parameters"),
    ("hvac", 3.0, "curtail", {"kw": 1}, "command", "on, off, set_setpoint, set_mode"),
    ("heat_pump", 5.0, "sg_ready", {"state": 5}, "params.state", "1 to 4"),
    ("heat_pump", 5.0, "sg_ready", {"state": 0}, "params.state", "1 to 4"),
    ("heat_pump", 5.0, "sg_ready", {"state": True}, "params.state", "1 to 4"),
    ("heat_pump", 5.0, "set_setpoint", {"celsius": 70}, "params.celsius", "20 to 65"),
    ("heat_pump", 5.0, "set_mode", {"mode": "dry"}, "params.mode", "heat, cool, auto, dhw"),
    ("water_heater", 2.0, "set_setpoint", {"celsius": 80}, "params.celsius", "35 to 75"),
    ("water_heater", 2.0, "set_power", {"kw": 2.5}, "params.kw", "0 to 2"),
    ("water_heater", None, "set_power", {"kw": 1}, "params", "rated_power_kw"),
    ("lighting", 0.5, "set_power", {"kw": -0.1}, "params.kw", "0 to 0.5"),
    ("plug", 2.0, "set_power", {"kw": 1}, "command", "on, off"),
    ("ev_charger", 11.0, "charge", {"power_kw": 12}, "params.power_kw", "0 to 11"),
    ("ev_charger", 11.0, "charge", {"current_a": 5}, "params.current_a", "6 to 32"),
    ("ev_charger", 11.0, "charge", {"current_a": 33}, "params.current_a", "6 to 32"),
    ("ev_charger", 11.0, "charge", {"power_kw": 7, "current_a": 16}, "params", "exactly one of power_kw or current_a"),
    ("ev_charger", 11.0, "charge", {"power_kw": 7, "target_kwh": 250}, "params.target_kwh", "0 to 200"),
    ("ev_charger", 11.0, "charge", {"power_kw": 7, "departure": "tomorrow"}, "params.departure", "ISO 8601"),
    ("ev_charger", 11.0, "charge", {"power_kw": 7, "departure": "2030-01-01T07:00:00"}, "params.departure", "offset"),
    ("ev_charger", 11.0, "set_power", {"kw": 11.5}, "params.kw", "0 to 11"),
    ("pv_inverter", 10.0, "curtail", {"kw": 10.5}, "params.kw", "0 to 10"),
    ("pv_inverter", 10.0, "curtail", {"percent": 101}, "params.percent", "0 to 100"),
    ("pv_inverter", 10.0, "curtail", {}, "params", "exactly one of kw or percent"),
    ("pv_inverter", 10.0, "set_power", {"kw": 5}, "command", "on, off, curtail"),
    ("battery_inverter", 5.0, "set_power", {"kw": 5.5}, "params.kw", "-5 to 5"),
    ("battery_inverter", 5.0, "set_power", {"kw": -6}, "params.kw", "-5 to 5"),
    ("battery_inverter", 5.0, "set_power", {"kw": 2, "duration_minutes": 0}, "params.duration_minutes", "1 to 1440"),
    ("battery_inverter", 5.0, "set_power", {"kw": 2, "minutes": 10}, "params.minutes", "kw, duration_minutes"),
    ("battery_inverter", 5.0, "set_mode", {"mode": "eco"}, "params.mode", "auto, manual, idle"),
    ("meter", None, "on", {}, "command", "no commands"),
]  # fmt: skip


@pytest.mark.parametrize(("device_type", "rated", "command", "params", "field", "words"), REFUSALS)
def test_a_refusal_names_the_parameter_and_its_limit(
    device_type: str, rated: float | None, command: str, params: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(Invalid) as refused:
        validate(device_type, rated, command, params)
    assert (refused.value.status, refused.value.field) == (422, field)
    assert words in refused.value.message


def test_every_device_type_has_a_refusal_above() -> None:
    assert {case[0] for case in REFUSALS} == set(DEVICE_TYPES)


ACCEPTED: list[tuple[str, float | None, str, dict[str, Any], dict[str, Any]]] = [
    ("hvac", 3.0, "set_setpoint", {"celsius": 30}, {"setpoint_c": 30.0}),
    ("hvac", 3.0, "set_mode", {"mode": "cool"}, {"mode": "cool"}),
    ("heat_pump", 5.0, "sg_ready", {"state": 4}, {"sg_ready": 4}),
    ("water_heater", 2.0, "set_power", {"kw": 2}, {"power_kw": 2.0}),
    ("lighting", 0.5, "off", {}, {"power": "off"}),
    ("plug", None, "on", {}, {"power": "on"}),
    ("ev_charger", 11.0, "charge", {"current_a": 16, "target_kwh": 30, "departure": "2030-01-01T07:00:00Z"},
     {"charge": {"current_a": 16.0, "target_kwh": 30.0, "departure": "2030-01-01T07:00:00Z"}}),
    ("pv_inverter", 10.0, "curtail", {"percent": 40}, {"curtail_pct": 40.0}),
    ("pv_inverter", 10.0, "curtail", {"kw": 0}, {"curtail_kw": 0.0}),
    ("battery_inverter", 5.0, "set_power", {"kw": -5, "duration_minutes": 30}, {"power_kw": -5.0, "duration_minutes": 30}),
]  # fmt: skip


@pytest.mark.parametrize(("device_type", "rated", "command", "params", "desired"), ACCEPTED)
def test_a_valid_command_becomes_its_desired_state(
    device_type: str, rated: float | None, command: str, params: dict[str, Any], desired: dict[str, Any]
) -> None:
    assert desired_state(command, validate(device_type, rated, command, params)) == desired


@pytest.mark.parametrize("device_type", DEVICE_TYPES)
def test_commands_outside_a_types_set_are_refused(device_type: str) -> None:
    for command in ALL_COMMANDS:
        if command in COMMAND_SETS[device_type]:
            continue
        with pytest.raises(Invalid) as refused:
            validate(device_type, 5.0, command, {})
        assert refused.value.field == "command"


# ---------------------------------------------------------------- the life cycle

STATUSES = ("pending", "applied", "rejected", "timed_out")
LEGAL = {("pending", "applied"), ("pending", "rejected"), ("pending", "timed_out")}


@pytest.mark.parametrize("current", STATUSES)
@pytest.mark.parametrize("new", STATUSES)
def test_only_pending_moves_and_only_to_an_end(current: str, new: str) -> None:
    if (current, new) in LEGAL:
        check_transition(current, new)
        return
    with pytest.raises(IllegalTransition) as refused:
        check_transition(current, new)
    assert refused.value.status == 409
    assert refused.value.message == f"a command that is {current} cannot become {new}"


def test_the_legal_transitions_are_exactly_three() -> None:
    legal = {(a, b) for a, ends in commands.TRANSITIONS.items() for b in ends}
    assert legal == LEGAL


# ---------------------------------------------------------------- control priority


def test_priority_dr_then_manual_then_battery_then_schedule_and_rule() -> None:
    assert holder_of(["rule", "battery", "dr", "manual"]) == "dr"
    assert holder_of(["rule", "battery", "manual"]) == "manual"
    assert holder_of(["schedule", "battery"]) == "battery"
    assert holder_of([]) is None
    assert not outranks("rule", "dr") and not outranks("manual", "dr") and not outranks("battery", "manual")
    assert outranks("dr", "manual") and outranks("schedule", "rule") and outranks("rule", "schedule")
