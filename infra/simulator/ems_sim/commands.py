"""How a simulated device reads a command from either copy the wire contract sends it in
(ems.devices.things): the command topic's `{"command_id", "command", "params"}`, or the shadow's
delta (desired keys plus `command_id`), and applies each command_id once, whichever copy comes first.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

Command = tuple[str, dict[str, Any]]  # (command, params)
REMEMBERED = 200  # command ids a device remembers, the newest


def commands_from_delta(
    delta: dict[str, Any], charge_now: dict[str, Any] | None = None, power_kw_now: float | None = None
) -> list[Command]:
    """The commands whose desired keys (ems.devices.things.desired_state) a delta holds, in the
    table's order. A delta shows only what differs, down into `charge`: its other params are the
    charge in force (`charge_now`), and a set_power whose kW the device already has (only its
    duration differs) keeps the setpoint in force (`power_kw_now`)."""
    found: list[Command] = []
    if delta.get("power") in ("on", "off"):
        found.append((str(delta["power"]), {}))
    if "power_kw" in delta or "duration_minutes" in delta:
        params = {"kw": delta.get("power_kw", power_kw_now)}
        if delta.get("duration_minutes") is not None:
            params["duration_minutes"] = delta["duration_minutes"]
        found.append(("set_power", params))
    if "setpoint_c" in delta:
        found.append(("set_setpoint", {"celsius": delta["setpoint_c"]}))
    if "mode" in delta:
        found.append(("set_mode", {"mode": delta["mode"]}))
    if "curtail_kw" in delta:
        found.append(("curtail", {"kw": delta["curtail_kw"]}))
    elif "curtail_pct" in delta:
        found.append(("curtail", {"percent": delta["curtail_pct"]}))
    if "sg_ready" in delta:
        found.append(("sg_ready", {"state": delta["sg_ready"]}))
    if isinstance(delta.get("charge"), dict):
        changed = dict(delta["charge"])
        rate_changed = bool({"power_kw", "current_a"} & changed.keys())
        base = {
            k: v
            for k, v in (charge_now or {}).items()
            if not (rate_changed and k in ("power_kw", "current_a"))
        }
        found.append(("charge", base | changed))
    return found


class Seen:
    """The command ids a device has answered, with their `last_command`, the newest REMEMBERED."""

    def __init__(self) -> None:
        self._answers: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def __contains__(self, command_id: object) -> bool:
        return command_id in self._answers

    def add(self, command_id: str, answer: dict[str, Any]) -> None:
        self._answers[command_id] = answer
        while len(self._answers) > REMEMBERED:
            self._answers.popitem(last=False)
