"""The wire contract between EMS and a device: its IoT thing name, its topics, and how a command
travels (pure rules, no I/O; the simulator and the CLI use them too).

Thing names are account-wide and `[A-Za-z0-9:_-]{1,128}`; device ids are per site and may hold `.`
and `:`. So a device's thing name is `{site}:{device_id}` when that is unambiguous (neither id holds
`:` or `.`, and it fits in 128 characters), and otherwise a readable prefix plus a hash of both ids.
The device's MQTT client id is its thing name (IoT Core's convention, and what presence events name).

A command (`POST /iot/devices/{id}/instructions`) reaches the device twice, and the device applies a
`command_id` once, whichever copy arrives first:
- on `ems/{site}/devices/{device_id}/commands`: `{"command_id", "command", "params", "issued_at"}`;
- in the classic shadow's `desired`: the state the command asks for (`desired_state` below) plus
  `"command_id": "<id>"`, so the device also gets it from `update/delta` after a reconnect.
The device answers by reporting its new state plus `"command_id": "<id>"` and
`"last_command": {"command_id", "status": "applied" | "rejected", "reason"?}`; that report closes
the command. A rejected command leaves its keys in the delta until EMS clears them from `desired`.

Commands and their params (validated by the devices domain against the device type):
| command      | params                                                        | desired keys        |
|--------------|---------------------------------------------------------------|---------------------|
| on, off      | none                                                          | power: "on"/"off"   |
| set_power    | kw (signed for battery_inverter: + charge, - discharge), duration_minutes? | power_kw, duration_minutes? |
| set_setpoint | celsius                                                       | setpoint_c          |
| set_mode     | mode                                                          | mode                |
| curtail      | kw or percent (pv_inverter)                                   | curtail_kw / curtail_pct |
| sg_ready     | state 1-4 (heat_pump)                                         | sg_ready            |
| charge       | power_kw or current_a, target_kwh?, departure? (ev_charger)  | charge: {...params} |
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

_THING_CHARS = re.compile(r"[^A-Za-z0-9:_-]")
THING_NAME_MAX = 128


def thing_name(site: str, device_id: str) -> str:
    """The device's IoT thing name (and MQTT client id), unique across sites."""
    plain = f"{site}:{device_id}"
    if ":" not in site and ":" not in device_id and "." not in plain and len(plain) <= THING_NAME_MAX:
        return plain
    digest = hashlib.sha256(f"{site}\x00{device_id}".encode()).hexdigest()[:16]
    prefix = _THING_CHARS.sub("_", f"{site}_{device_id}")[: THING_NAME_MAX - len(digest) - 1]
    return f"{prefix}-{digest}"


def telemetry_topic(site: str, device_id: str) -> str:
    return f"ems/{site}/devices/{device_id}/telemetry"


def commands_topic(site: str, device_id: str) -> str:
    return f"ems/{site}/devices/{device_id}/commands"


def shadow_topic(thing: str, operation: str) -> str:
    """A classic shadow topic: `operation` is `update`, `update/delta`, `get`, `update/accepted`, ..."""
    return f"$aws/things/{thing}/shadow/{operation}"


def desired_state(command: str, params: dict[str, Any]) -> dict[str, Any]:
    """The shadow `desired` keys a (validated) command asks for, without its `command_id`."""
    if command in ("on", "off"):
        return {"power": command}
    if command == "set_power":
        return {
            "power_kw": params["kw"],
            **(
                {"duration_minutes": params["duration_minutes"]}
                if params.get("duration_minutes") is not None
                else {}
            ),
        }
    if command == "set_setpoint":
        return {"setpoint_c": params["celsius"]}
    if command == "set_mode":
        return {"mode": params["mode"]}
    if command == "curtail":
        return (
            {"curtail_kw": params["kw"]}
            if params.get("kw") is not None
            else {"curtail_pct": params["percent"]}
        )
    if command == "sg_ready":
        return {"sg_ready": params["state"]}
    if command == "charge":
        return {"charge": dict(params)}
    raise ValueError(f"unknown command {command!r}")
