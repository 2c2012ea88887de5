"""What each device type may be told, a command's life cycle, and who controls a device (pure rules).

Validation refuses a command with `Invalid` naming the parameter (`params.kw`) and the allowed range,
so a caller can correct it. The table of commands and their desired keys is the wire contract in
ems.devices.things; the ranges below are ours.

Life cycle: `pending -> applied | rejected | timed_out`; the three ends are final, so every other
transition is refused (`IllegalTransition`): a late report never reopens a command that timed out.

Control: each device has one controller at a time, by priority (a DR event > a manual command > a
battery plan > a schedule or rule). A source whose priority is below the holder's is refused; equal
or higher takes over. Schedules and rules share the lowest level (the latest wins).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from ems.core.errors import Conflict, Invalid

DeviceType = Literal[
    "hvac", "heat_pump", "water_heater", "lighting", "plug", "ev_charger", "pv_inverter",
    "battery_inverter", "meter",
]  # fmt: skip
DEVICE_TYPES: tuple[DeviceType, ...] = (
    "hvac", "heat_pump", "water_heater", "lighting", "plug", "ev_charger", "pv_inverter",
    "battery_inverter", "meter",
)  # fmt: skip
CommandName = Literal["on", "off", "set_power", "set_setpoint", "set_mode", "curtail", "sg_ready", "charge"]
CommandStatus = Literal["pending", "applied", "rejected", "timed_out"]
Source = Literal["dr", "manual", "battery", "schedule", "rule"]
SOURCES: tuple[Source, ...] = ("dr", "manual", "battery", "schedule", "rule")

# Which commands each type takes (a meter only measures).
COMMAND_SETS: dict[str, tuple[str, ...]] = {
    "hvac": ("on", "off", "set_setpoint", "set_mode"),
    "heat_pump": ("on", "off", "set_setpoint", "set_mode", "sg_ready"),
    "water_heater": ("on", "off", "set_setpoint", "set_power"),
    "lighting": ("on", "off", "set_power"),
    "plug": ("on", "off"),
    "ev_charger": ("on", "off", "set_power", "charge"),
    "pv_inverter": ("on", "off", "curtail"),
    "battery_inverter": ("on", "off", "set_power", "set_mode"),
    "meter": (),
}
# Setpoint ranges in °C: room air for HVAC, flow temperature for heat pumps, tank for water heaters.
SETPOINT_RANGES_C: dict[str, tuple[float, float]] = {
    "hvac": (16.0, 30.0),
    "heat_pump": (20.0, 65.0),
    "water_heater": (35.0, 75.0),
}
MODES: dict[str, tuple[str, ...]] = {
    "hvac": ("cool", "heat", "fan", "auto", "dry"),
    "heat_pump": ("heat", "cool", "auto", "dhw"),
    "battery_inverter": ("auto", "manual", "idle"),
}
SG_READY_STATES = (1, 2, 3, 4)  # 1 blocked, 2 normal, 3 recommended on, 4 forced on (SG Ready label)
EV_CURRENT_A = (6.0, 32.0)  # IEC 61851: 6 A is the lowest current a charger may signal
EV_TARGET_KWH_MAX = 200.0
BATTERY_DURATION_MINUTES = (1, 1440)
# How long a device has to answer before the stale-command check says timed_out.
COMMAND_TIMEOUT_SECONDS: dict[str, int] = {
    "hvac": 120, "heat_pump": 300, "water_heater": 120, "lighting": 60, "plug": 60,
    "ev_charger": 300, "pv_inverter": 120, "battery_inverter": 60, "meter": 60,
}  # fmt: skip

TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"applied", "rejected", "timed_out"}),
    "applied": frozenset(),
    "rejected": frozenset(),
    "timed_out": frozenset(),
}
OPEN_STATUS: CommandStatus = "pending"

PRIORITY: dict[str, int] = {"dr": 4, "manual": 3, "battery": 2, "schedule": 1, "rule": 1}


class IllegalTransition(Conflict):
    def __init__(self, current: str, new: str) -> None:
        super().__init__(f"a command that is {current} cannot become {new}", "status")
        self.current, self.new = current, new


def check_transition(current: str, new: str) -> None:
    """Raise IllegalTransition unless a command may go from `current` to `new`."""
    if new not in TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(current, new)


def outranks(source: str, holder: str) -> bool:
    """Whether `source` may take a device from `holder` (equal priority takes over)."""
    return PRIORITY[source] >= PRIORITY[holder]


def holder_of(sources: list[str]) -> str | None:
    """The controller among the sources that hold a wish for the device: the highest priority."""
    return max(sources, key=lambda s: PRIORITY[s], default=None)


# ---------------------------------------------------------------- validation


def _number(params: dict[str, Any], name: str, low: float, high: float, what: str) -> float:
    value = params.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(f"is required: a number from {low:g} to {high:g} {what}", f"params.{name}")
    if not low <= value <= high:
        raise Invalid(f"{value:g} is outside the allowed range {low:g} to {high:g} {what}", f"params.{name}")
    return float(value)


def _only(params: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for name in params:
        if name not in allowed:
            takes = ", ".join(allowed) if allowed else "no parameters"
            raise Invalid(f"is not a parameter of this command (it takes {takes})", f"params.{name}")


def _rated(rated_power_kw: float | None, command: str) -> float:
    if rated_power_kw is None:
        raise Invalid(f"{command} needs the device's rated_power_kw, which is not set", "params")
    return rated_power_kw


def validate(
    device_type: str, rated_power_kw: float | None, command: str, params: dict[str, Any]
) -> dict[str, Any]:
    """The command's params as the device gets them; Invalid naming the parameter and its range."""
    allowed = COMMAND_SETS.get(device_type, ())
    if command not in allowed:
        takes = ", ".join(allowed) if allowed else "no commands"
        raise Invalid(f"a {device_type} takes {takes}, not {command!r}", "command")
    if command in ("on", "off"):
        _only(params, ())
        return {}
    if command == "set_setpoint":
        _only(params, ("celsius",))
        low, high = SETPOINT_RANGES_C[device_type]
        return {"celsius": _number(params, "celsius", low, high, f"°C for a {device_type}")}
    if command == "set_mode":
        _only(params, ("mode",))
        modes = MODES[device_type]
        if params.get("mode") not in modes:
            raise Invalid(f"must be one of {', '.join(modes)} for a {device_type}", "params.mode")
        return {"mode": params["mode"]}
    if command == "sg_ready":
        _only(params, ("state",))
        state = params.get("state")
        if isinstance(state, bool) or state not in SG_READY_STATES:
            raise Invalid("must be an SG Ready state from 1 to 4", "params.state")
        return {"state": int(state)}
    if command == "curtail":
        return _curtail(rated_power_kw, params)
    if command == "set_power":
        return _set_power(device_type, rated_power_kw, params)
    if command == "charge":
        return _charge(rated_power_kw, params)
    raise Invalid(f"unknown command {command!r}", "command")


def _curtail(rated_power_kw: float | None, params: dict[str, Any]) -> dict[str, Any]:
    _only(params, ("kw", "percent"))
    if ("kw" in params) == ("percent" in params):
        raise Invalid("give exactly one of kw or percent", "params")
    if "percent" in params:
        return {"percent": _number(params, "percent", 0, 100, "%")}
    rated = _rated(rated_power_kw, "curtail by kw")
    return {"kw": _number(params, "kw", 0, rated, "kW (0 to the rated power)")}


def _set_power(device_type: str, rated_power_kw: float | None, params: dict[str, Any]) -> dict[str, Any]:
    rated = _rated(rated_power_kw, "set_power")
    if device_type == "battery_inverter":
        _only(params, ("kw", "duration_minutes"))
        kw = _number(params, "kw", -rated, rated, "kW (+ charge, - discharge, within the rated power)")
        out: dict[str, Any] = {"kw": kw}
        if params.get("duration_minutes") is not None:
            low, high = BATTERY_DURATION_MINUTES
            out["duration_minutes"] = int(_number(params, "duration_minutes", low, high, "minutes"))
        return out
    _only(params, ("kw",))
    return {"kw": _number(params, "kw", 0, rated, "kW (0 to the rated power)")}


def _charge(rated_power_kw: float | None, params: dict[str, Any]) -> dict[str, Any]:
    _only(params, ("power_kw", "current_a", "target_kwh", "departure"))
    if ("power_kw" in params) == ("current_a" in params):
        raise Invalid("give exactly one of power_kw or current_a", "params")
    out: dict[str, Any] = {}
    if "power_kw" in params:
        rated = _rated(rated_power_kw, "charge by power_kw")
        out["power_kw"] = _number(params, "power_kw", 0, rated, "kW (0 to the rated power)")
    else:
        out["current_a"] = _number(params, "current_a", *EV_CURRENT_A, "A")
    if params.get("target_kwh") is not None:
        out["target_kwh"] = _number(params, "target_kwh", 0, EV_TARGET_KWH_MAX, "kWh")
    if params.get("departure") is not None:
        departure = params["departure"]
        try:
            parsed = datetime.fromisoformat(str(departure).replace("Z", "+00:00"))
        except ValueError as exc:
            raise Invalid("must be an ISO 8601 time with its offset", "params.departure") from exc
        if parsed.tzinfo is None:
            raise Invalid("must be an ISO 8601 time with its offset", "params.departure")
        out["departure"] = str(departure)
    return out
