"""In-memory fakes of ems.devices.ports (DeviceRecords, Commands, IotCloud), for the unit tier.

They keep the contracts of ems.devices.store: NotFound and Conflict with the same fields, a create
of a known command_id returns the first, a transition only from the expected status, presence only
forward in time, lists a page at a time with an opaque next_token. The IoT fake keeps each thing's
shadow (desired merged as IoT Core merges it: a None removes a key) and every message published.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ems.core.errors import Conflict, NotFound
from ems.core.pagination import Page
from ems.devices import service as devices
from ems.devices.automation import EdgeState
from ems.devices.models import Command, Control, Device, Firing, Rule, Schedule, Shadow
from tests.support.fakes import ListPublisher, MemoryRegistry, MemoryStatus, _after, _page


class MemoryDevices:
    def __init__(self) -> None:
        self.devices: dict[tuple[str, str], Device] = {}
        self.things: dict[str, tuple[str, str]] = {}
        self.presence_ms: dict[tuple[str, str], int] = {}
        self.control: dict[tuple[str, str], dict[str, Control]] = {}
        self.plans: dict[str, dict[str, dict[str, str]]] = {}

    def create(self, device: Device) -> Device:
        key = (device.site_id, device.device_id)
        if key in self.devices:
            raise Conflict(f"device {device.device_id!r} exists in this site", "device_id")
        self.devices[key] = device.model_copy(deep=True)
        self.things[device.thing_name] = key
        return device

    def get(self, site_id: str, device_id: str) -> Device:
        found = self.devices.get((site_id, device_id))
        if found is None:
            raise NotFound(f"no device {device_id!r} in this site", "device_id")
        return found.model_copy(deep=True)

    def replace(self, device: Device) -> Device:
        held = self.get(device.site_id, device.device_id)
        kept = {"connected": held.connected, "connectivity_at": held.connectivity_at}
        if device.last_command_id is None:
            kept["last_command_id"] = held.last_command_id
        self.devices[(device.site_id, device.device_id)] = device.model_copy(update=kept, deep=True)
        return self.get(device.site_id, device.device_id)

    def page(self, site_id: str, limit: int, next_token: str | None) -> Page[Device]:
        keyed = [(f"DEVICE#{d}", dev.model_copy()) for (s, d), dev in self.devices.items() if s == site_id]
        return _page(
            keyed, limit, _after(next_token, ("pk", "sk"), "sk"), lambda sk: {"pk": site_id, "sk": sk}
        )

    def delete(self, site_id: str, device_id: str) -> None:
        device = self.get(site_id, device_id)
        del self.devices[(site_id, device_id)]
        self.things.pop(device.thing_name, None)
        self.control.pop((site_id, device_id), None)

    def by_thing(self, thing: str) -> tuple[str, str] | None:
        return self.things.get(thing)

    def set_presence(self, site_id: str, device_id: str, connected: bool, at_ms: int) -> bool:
        key = (site_id, device_id)
        if key not in self.devices or self.presence_ms.get(key, -1) >= at_ms:
            return False
        from ems.core.clock import iso_ms

        self.presence_ms[key] = at_ms
        self.devices[key] = self.devices[key].model_copy(
            update={"connected": connected, "connectivity_at": iso_ms(at_ms)}
        )
        return True

    def set_last_command(self, site_id: str, device_id: str, command_id: str) -> None:
        key = (site_id, device_id)
        self.devices[key] = self.get(site_id, device_id).model_copy(update={"last_command_id": command_id})

    def controls(self, site_id: str, device_id: str) -> dict[str, Control]:
        return {k: v.model_copy() for k, v in self.control.get((site_id, device_id), {}).items()}

    def put_control(self, site_id: str, device_id: str, control: Control) -> None:
        self.control.setdefault((site_id, device_id), {})[control.source] = control.model_copy()

    def remove_control(self, site_id: str, device_id: str, source: str) -> bool:
        return self.control.get((site_id, device_id), {}).pop(source, None) is not None

    def get_plan(self, site_id: str) -> dict[str, dict[str, str]]:
        return {k: dict(v) for k, v in self.plans.get(site_id, {}).items()}

    def put_plan(self, site_id: str, plan: dict[str, dict[str, str]]) -> None:
        self.plans[site_id] = {k: dict(v) for k, v in plan.items()}


def _ms(iso: str) -> int:
    from ems.core.clock import parse_time

    return int(parse_time(iso, "t").timestamp() * 1000)


class MemoryCommands:
    def __init__(self) -> None:
        self.commands: dict[tuple[str, str, str], Command] = {}

    def create(self, command: Command) -> tuple[Command, bool]:
        key = (command.site_id, command.device_id, command.command_id)
        if key in self.commands:
            return self.commands[key].model_copy(deep=True), False
        self.commands[key] = command.model_copy(deep=True)
        return command, True

    def get(self, site_id: str, device_id: str, command_id: str) -> Command | None:
        found = self.commands.get((site_id, device_id, command_id))
        return None if found is None else found.model_copy(deep=True)

    def transition(self, command: Command, expected: str, status: str, at: str, reason: str | None) -> bool:
        key = (command.site_id, command.device_id, command.command_id)
        held = self.commands.get(key)
        if held is None or held.status != expected:
            return False
        update: dict[str, Any] = {"status": status, "closed_at": at}
        if reason is not None:
            update["reason"] = reason
        self.commands[key] = held.model_copy(update=update)
        return True

    def page(self, site_id: str, device_id: str, limit: int, next_token: str | None) -> Page[Command]:
        keyed = [
            (f"{_ms(c.issued_at):013d}#{c.command_id}", c.model_copy())
            for (s, d, _), c in self.commands.items()
            if (s, d) == (site_id, device_id)
        ]
        keys = ("pk", "sk", "gsi1pk", "gsi1sk")
        return _page(
            keyed, limit, _after(next_token, keys, "gsi1sk"),
            lambda k: {"pk": site_id, "sk": "x", "gsi1pk": f"{site_id}#{device_id}", "gsi1sk": k},
            newest_first=True,
        )  # fmt: skip

    def open_for(self, site_id: str, device_id: str) -> list[Command]:
        return [
            c.model_copy()
            for (s, d, _), c in self.commands.items()
            if (s, d) == (site_id, device_id) and c.status == "pending"
        ]

    def commanded(self, site_id: str) -> set[str]:
        return {d for (s, d, _), c in self.commands.items() if s == site_id and c.status == "pending"}

    def stale(self, before_ms: int, limit: int) -> list[Command]:
        pending = [
            c for c in self.commands.values() if c.status == "pending" and _ms(c.expires_at) < before_ms
        ]
        return [c.model_copy() for c in sorted(pending, key=lambda c: c.expires_at)[:limit]]

    def delete_all(self, site_id: str, device_id: str) -> int:
        keys = [k for k in self.commands if k[:2] == (site_id, device_id)]
        for key in keys:
            del self.commands[key]
        return len(keys)


class MemoryRules:
    """RuleRecords in memory. `lose_next_writes` makes that many save_state calls lose their condition
    after another writer's state is put in (what a concurrent evaluation does)."""

    def __init__(self) -> None:
        self.rules: dict[tuple[str, str], Rule] = {}
        self.fired: dict[tuple[str, str, str], Firing] = {}
        self.lose_next_writes: list[EdgeState] = []

    def create(self, rule: Rule) -> Rule:
        self.rules[(rule.site_id, rule.rule_id)] = rule.model_copy(deep=True)
        return rule

    def get(self, site_id: str, rule_id: str) -> Rule:
        found = self.rules.get((site_id, rule_id))
        if found is None:
            raise NotFound(f"no rule {rule_id!r} in this site", "rule_id")
        return found.model_copy(deep=True)

    def replace(self, rule: Rule) -> Rule:
        held = self.get(rule.site_id, rule.rule_id)
        self.rules[(rule.site_id, rule.rule_id)] = rule.model_copy(
            update={"version": held.version + 1}, deep=True
        )
        return self.get(rule.site_id, rule.rule_id)

    def delete(self, site_id: str, rule_id: str) -> None:
        self.get(site_id, rule_id)
        del self.rules[(site_id, rule_id)]

    def page(self, site_id: str, limit: int, next_token: str | None) -> Page[Rule]:
        keyed = [(f"RULE#{r}", rule.model_copy()) for (s, r), rule in self.rules.items() if s == site_id]
        return _page(
            keyed, limit, _after(next_token, ("pk", "sk"), "sk"), lambda sk: {"pk": site_id, "sk": sk}
        )

    def save_state(self, site_id: str, rule_id: str, version: int, state: EdgeState) -> bool:
        held = self.get(site_id, rule_id)
        if self.lose_next_writes:  # another evaluation writes first
            other = self.lose_next_writes.pop(0)
            self.rules[(site_id, rule_id)] = held.model_copy(
                update={"since_ms": other.since_ms, "fired": other.fired, "last_ms": other.last_ms,
                        "version": held.version + 1}
            )  # fmt: skip
            return False
        if held.version != version:
            return False
        self.rules[(site_id, rule_id)] = held.model_copy(
            update={
                "since_ms": state.since_ms,
                "fired": state.fired,
                "last_ms": state.last_ms,
                "version": version + 1,
            }
        )
        return True

    def add_firing(self, site_id: str, firing: Firing) -> None:
        self.fired[(site_id, firing.rule_id, firing.at)] = firing.model_copy()

    def firings(self, site_id: str, rule_id: str, limit: int) -> list[Firing]:
        mine = [f for (s, r, _), f in self.fired.items() if (s, r) == (site_id, rule_id)]
        return sorted(mine, key=lambda f: f.at, reverse=True)[:limit]


class MemorySchedules:
    def __init__(self) -> None:
        self.schedules: dict[tuple[str, str], Schedule] = {}

    def put(self, schedule: Schedule) -> Schedule:
        self.schedules[(schedule.site_id, schedule.schedule_id)] = schedule.model_copy(deep=True)
        return schedule

    def get(self, site_id: str, schedule_id: str) -> Schedule:
        found = self.schedules.get((site_id, schedule_id))
        if found is None:
            raise NotFound(f"no schedule {schedule_id!r} in this site", "schedule_id")
        return found.model_copy(deep=True)

    def delete(self, site_id: str, schedule_id: str) -> None:
        self.schedules.pop((site_id, schedule_id), None)

    def page(self, site_id: str, limit: int, next_token: str | None) -> Page[Schedule]:
        keyed = [(f"SCHED#{i}", x.model_copy()) for (s, i), x in self.schedules.items() if s == site_id]
        return _page(
            keyed, limit, _after(next_token, ("pk", "sk"), "sk"), lambda sk: {"pk": site_id, "sk": sk}
        )


@dataclass
class MemoryScheduler:
    """The Scheduler: each schedule's expression, time zone, state and input, by name."""

    schedules: dict[str, dict[str, Any]] = field(default_factory=dict)

    def put(self, name: str, expression: str, timezone: str, enabled: bool, payload: str) -> None:
        self.schedules[name] = {
            "expression": expression,
            "timezone": timezone,
            "enabled": enabled,
            "input": payload,
        }

    def delete(self, name: str) -> None:
        self.schedules.pop(name, None)


@dataclass
class MemoryIot:
    things: dict[str, dict[str, Any]] = field(default_factory=dict)
    shadows: dict[str, Shadow] = field(default_factory=dict)
    published: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def create_thing(self, thing: str, thing_type: str, attributes: dict[str, str]) -> None:
        held = self.things.get(thing)
        if held is not None and held != {"type": thing_type, "attributes": attributes}:
            raise Conflict(f"thing {thing} exists with other attributes")
        self.things[thing] = {"type": thing_type, "attributes": dict(attributes)}

    def delete_thing(self, thing: str) -> None:
        self.things.pop(thing, None)
        self.shadows.pop(thing, None)

    def shadow(self, thing: str) -> Shadow:
        shadow = self.shadows.get(thing, Shadow())
        delta = {k: v for k, v in shadow.desired.items() if shadow.reported.get(k) != v}
        return shadow.model_copy(update={"delta": delta}, deep=True)

    def _merge(self, thing: str, part: str, values: dict[str, Any]) -> None:
        shadow = self.shadows.setdefault(thing, Shadow(version=0))
        state = dict(getattr(shadow, part))
        for key, value in values.items():
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
        self.shadows[thing] = shadow.model_copy(update={part: state, "version": (shadow.version or 0) + 1})

    def update_desired(self, thing: str, desired: dict[str, Any]) -> None:
        self._merge(thing, "desired", desired)

    def report(self, thing: str, reported: dict[str, Any]) -> dict[str, Any]:
        """What the device does: its reported state; returns the update/accepted document."""
        self._merge(thing, "reported", reported)
        return {"state": {"reported": reported}, "version": self.shadows[thing].version}

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        self.published.append((topic, dict(payload)))


def memory_stores() -> devices.Stores:
    """The devices service on fakes: a site "hq" (Europe/Berlin) in the registry fake."""
    registry = MemoryRegistry()
    registry.add_site("hq", timezone="Europe/Berlin")
    return devices.Stores(
        devices=MemoryDevices(), commands=MemoryCommands(), iot=MemoryIot(), events=ListPublisher(),
        sites=registry, latest=MemoryStatus(), rules=MemoryRules(), schedules=MemorySchedules(),
        scheduler=MemoryScheduler(),
    )  # fmt: skip
