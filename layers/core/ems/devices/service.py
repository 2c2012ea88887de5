"""Devices and their commands: registering (with the IoT thing), reading with the shadow, commanding
under the control priority, closing commands from the device's reports, the stale-command check, the
hourly plan and the summary.

A command travels as ems.devices.things says: a record (pending) first, then the shadow's desired
state and the command topic. A retry with the same `command_id` finds the record and sends it again
while it is pending (the device applies a command_id once), so a failure of IoT Core between the
record and the send heals with the caller's retry. Every command created or closed is a
`DeviceCommandChanged` event (pushed on `devices/<id>`); one that times out also raises an alert
(a `SystemEvent` the alerts function consumes).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from ems.auth.models import Claims
from ems.core.clock import Clock, iso_ms, to_iso, utc_now
from ems.core.errors import Conflict, DomainError, Invalid, NotFound
from ems.core.events import DomainEvent, EventPublisher
from ems.core.observability import logger
from ems.core.pagination import MAX_LIMIT, Page, every
from ems.devices import commands as rules
from ems.devices.automation import EdgeState, step
from ems.devices.commands import COMMAND_TIMEOUT_SECONDS, Source
from ems.devices.models import (
    DEVICE_COMMAND_CHANGED,
    DEVICES_SOURCE,
    INSTRUCTIONS,
    SYSTEM_EVENT,
    Command,
    CommandRequest,
    Control,
    Deleted,
    Device,
    DeviceIn,
    DevicesSummary,
    DeviceUpdate,
    DeviceView,
    Firing,
    LastCommand,
    ListQuery,
    Released,
    Rule,
    RuleIn,
    RuleUpdate,
    RuleView,
    Schedule,
    ScheduleIn,
    ScheduleRun,
    Shadow,
)
from ems.devices.ports import (
    Commands,
    DeviceRecords,
    IotCloud,
    LatestReadings,
    RuleRecords,
    Scheduler,
    ScheduleRecords,
    SiteDirectory,
)
from ems.devices.schedules import check_timezone, expression
from ems.devices.things import commands_topic, desired_state, thing_name
from ems.telemetry.models import TelemetryReceived

STALE_BATCH = 100
POWER_METRIC = "power_w"


@dataclass(frozen=True)
class Stores:
    devices: DeviceRecords
    commands: Commands
    iot: IotCloud
    events: EventPublisher
    sites: SiteDirectory | None = None
    latest: LatestReadings | None = None
    rules: RuleRecords | None = None
    schedules: ScheduleRecords | None = None
    scheduler: Scheduler | None = None


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _changed(command: Command) -> DomainEvent:
    detail = {
        "site": command.site_id,
        "device_id": command.device_id,
        "command": command.model_dump(mode="json"),
    }
    return DomainEvent(DEVICES_SOURCE, DEVICE_COMMAND_CHANGED, detail)


# ---------------------------------------------------------------- devices


def register(site: str, new: DeviceIn, s: Stores, now: Clock = utc_now) -> Device:
    """The device and its IoT thing (type and attributes); 409 when the site has the device already."""
    if s.sites is not None:
        s.sites.get_site(site)  # 404 for an unknown site
    moment = to_iso(now())
    device = Device(
        **new.model_dump(), site_id=site, thing_name=thing_name(site, new.device_id),
        created_at=moment, updated_at=moment,
    )  # fmt: skip
    try:
        s.devices.get(site, new.device_id)
        raise Conflict(f"device {new.device_id!r} exists in this site", "device_id")
    except NotFound:
        pass
    # The thing first: creating it again with the same attributes is no error, so a retry heals.
    s.iot.create_thing(
        device.thing_name, device.device_type,
        {"site": site, "device_id": new.device_id, "device_type": device.device_type},
    )  # fmt: skip
    return s.devices.create(device)


def list_devices(site: str, q: ListQuery, s: Stores) -> Page[Device]:
    return s.devices.page(site, q.limit, q.next_token)


def connectivity(device: Device) -> str:
    return "unknown" if device.connected is None else ("online" if device.connected else "offline")


def visible_shadow(shadow: Shadow, caller: Claims) -> Shadow:
    """The shadow as `caller` may see it. Its reported state is the device's live state, one
    device's raw values of now: only a token that sees single readings live gets it (and the delta,
    which is the difference from it); desired is what EMS asked for, no reading."""
    if caller.data_aggregation == "raw" and caller.sees_live():
        return shadow
    return shadow.model_copy(
        update={"reported": {}, "delta": {}, "withheld": "this token does not see one device's live readings"}
    )


def get_device(site: str, device_id: str, caller: Claims, s: Stores) -> DeviceView:
    device = s.devices.get(site, device_id)
    last = s.commands.get(site, device_id, device.last_command_id) if device.last_command_id else None
    holder = rules.holder_of(list(s.devices.controls(site, device_id)))
    return DeviceView(
        **device.model_dump(), shadow=visible_shadow(s.iot.shadow(device.thing_name), caller),
        connectivity=connectivity(device), last_command=last, controller=holder,
    )  # fmt: skip


def update_device(site: str, device_id: str, change: DeviceUpdate, s: Stores, now: Clock = utc_now) -> Device:
    device = s.devices.get(site, device_id)
    fields = change.model_dump(exclude_unset=True, exclude_none=True)
    return s.devices.replace(
        Device.model_validate({**device.model_dump(), **fields, "updated_at": to_iso(now())})
    )


def delete_device(site: str, device_id: str, force: bool, s: Stores) -> Deleted:
    """409 while commands are open, unless `force`; then the device, its records and its thing go."""
    device = s.devices.get(site, device_id)
    open_commands = s.commands.open_for(site, device_id)
    if open_commands and not force:
        ids = ", ".join(c.command_id for c in open_commands[:5])
        raise Conflict(
            f"device {device_id!r} has {len(open_commands)} open command(s) ({ids}); wait for them or "
            "delete with ?force=true",
            "device_id",
        )
    # The thing first: a retry after any failure finds the device still there and goes on.
    s.iot.delete_thing(device.thing_name)
    s.commands.delete_all(site, device_id)
    s.devices.delete(site, device_id)
    return Deleted(commands_closed=len(open_commands))


# ---------------------------------------------------------------- commands


def send(
    site: str,
    device_id: str,
    request: CommandRequest,
    source: Source,
    s: Stores,
    sent_by: str = "system",
    now: Clock = utc_now,
) -> Command:
    """Validate `request` for the device, check who controls it, record it and send it.

    A source below the device's controller is refused (409 naming the holder); the same
    `command_id` twice returns the first command (sent again while pending), and is a 409 when the
    second asks for something else."""
    device = s.devices.get(site, device_id)
    params = rules.validate(device.device_type, device.rated_power_kw, request.command, request.params)
    if request.command_id is not None:
        known = s.commands.get(site, device_id, request.command_id)
        if known is not None:
            return _again(known, request.command, params, device, s)
    controls = s.devices.controls(site, device_id)
    holder = rules.holder_of([c for c in controls if c != source])
    if holder is not None and not rules.outranks(source, holder):
        raise Conflict(
            f"device {device_id!r} is controlled by {holder} (priority above {source}); "
            f"{source} may command it once {holder} releases it",
            "source",
        )
    moment = now()
    command = Command(
        command_id=request.command_id or f"cmd_{_ms(moment):013d}_{uuid.uuid4().hex[:8]}",
        site_id=site, device_id=device_id, command=request.command, params=params, source=source,
        sent_by=sent_by, issued_at=to_iso(moment),
        expires_at=to_iso(moment + timedelta(seconds=COMMAND_TIMEOUT_SECONDS[device.device_type])),
    )  # fmt: skip
    stored, created = s.commands.create(command)
    if not created:  # a concurrent request with the same id won
        return _again(stored, request.command, params, device, s)
    s.devices.put_control(
        site, device_id,
        Control(source=source, command=command.command, params=params, command_id=command.command_id, at=command.issued_at),
    )  # fmt: skip
    s.devices.set_last_command(site, device_id, command.command_id)
    _deliver(command, device, s)
    s.events.publish([_changed(command)])
    logger.info(
        "command sent",
        extra={"site": site, "device_id": device_id, "command": command.command, "source": source,
               "command_id": command.command_id},
    )  # fmt: skip
    return command


def _again(known: Command, command: str, params: dict[str, Any], device: Device, s: Stores) -> Command:
    if known.command != command or known.params != params:
        raise Conflict(
            f"command_id {known.command_id!r} was used for {known.command} {known.params}", "command_id"
        )
    if known.status == rules.OPEN_STATUS:
        _deliver(known, device, s)
    return known


def _deliver(command: Command, device: Device, s: Stores) -> None:
    desired = {**desired_state(command.command, command.params), "command_id": command.command_id}
    s.iot.update_desired(device.thing_name, desired)
    s.iot.publish(
        commands_topic(command.site_id, command.device_id),
        {"command_id": command.command_id, "command": command.command, "params": command.params,
         "issued_at": command.issued_at},
    )  # fmt: skip


def list_commands(site: str, device_id: str, q: ListQuery, s: Stores) -> Page[Command]:
    s.devices.get(site, device_id)  # 404 for an unknown device
    return s.commands.page(site, device_id, q.limit, q.next_token)


def close(
    command: Command, status: str, reason: str | None, s: Stores, now: Clock = utc_now
) -> Command | None:
    """Move a command from pending to `status`; None when it was not pending any more (another
    report or the stale check closed it first). IllegalTransition for a status it cannot take."""
    rules.check_transition(command.status, status)
    at = to_iso(now())
    if not s.commands.transition(command, rules.OPEN_STATUS, status, at, reason):
        return None
    closed = command.model_copy(update={"status": status, "closed_at": at, "reason": reason})
    events = [_changed(closed)]
    if status == "timed_out":
        events.append(
            DomainEvent(DEVICES_SOURCE, SYSTEM_EVENT, {
                "site": command.site_id, "severity": "warning", "kind": "command_timed_out",
                "dedupe_key": f"command_timed_out#{command.device_id}#{command.command_id}",
                "message": f"device {command.device_id} did not answer command {command.command} "
                           f"({command.command_id}) by {command.expires_at}",
            })
        )  # fmt: skip
    s.events.publish(events)
    return closed


def on_shadow_report(thing: str, document: dict[str, Any], s: Stores, now: Clock = utc_now) -> str:
    """An accepted shadow update (`$aws/things/<thing>/shadow/update/accepted`): when its reported
    state carries `last_command`, that command closes. What happened, for the log."""
    reported = ((document.get("state") or {}).get("reported")) or {}
    raw = reported.get("last_command") if isinstance(reported, dict) else None
    if not isinstance(raw, dict):
        return "no last_command"
    found = s.devices.by_thing(thing)
    if found is None:
        return f"unknown thing {thing}"
    site, device_id = found
    try:
        last = LastCommand.model_validate(raw)
    except ValueError:
        logger.warning("last_command not understood", extra={"thing": thing, "last_command": raw})
        return "last_command not understood"
    command = s.commands.get(site, device_id, last.command_id)
    if command is None:
        return f"unknown command {last.command_id}"
    if command.status != rules.OPEN_STATUS:
        return f"already {command.status}"  # a report repeated, or after the timeout: it stays closed
    closed = close(command, last.status, last.reason, s, now)
    if closed is not None and closed.status == "rejected":
        # The device refused: take the command's keys out of desired, so no delta keeps asking.
        device = s.devices.get(site, device_id)
        cleared = dict.fromkeys(desired_state(command.command, command.params))
        s.iot.update_desired(device.thing_name, {**cleared, "command_id": None})
    return f"{last.command_id} {closed.status if closed else 'already closed'}"


def on_presence(event: dict[str, Any], s: Stores) -> str:
    """IoT Core's presence event (`$aws/events/presence/connected|disconnected/<clientId>`): the
    client id is the thing name. Only a newer event than the last one changes connectivity."""
    client_id, kind, at_ms = event.get("clientId"), event.get("eventType"), event.get("timestamp")
    if (
        not isinstance(client_id, str)
        or kind not in ("connected", "disconnected")
        or not isinstance(at_ms, int)
    ):
        return "not a presence event"
    found = s.devices.by_thing(client_id)
    if found is None:
        return f"unknown client {client_id}"
    changed = s.devices.set_presence(found[0], found[1], kind == "connected", at_ms)
    return f"{found[1]} {kind}" if changed else f"{found[1]} {kind} (older than the last event)"


def check_stale(s: Stores, now: Clock = utc_now) -> dict[str, int]:
    """Commands still pending past their device type's timeout become timed_out (and raise an alert)."""
    moment = now()
    timed_out = 0
    while True:
        stale = s.commands.stale(_ms(moment), STALE_BATCH)
        closed = [c for c in stale if close(c, "timed_out", "no answer from the device", s, lambda: moment)]
        timed_out += len(closed)
        if len(stale) < STALE_BATCH or not closed:
            break
    if timed_out:
        logger.info("stale commands", extra={"timed_out": timed_out})
    return {"timed_out": timed_out}


def release(site: str, device_id: str, source: Source, s: Stores, sent_by: str = "system") -> Released:
    """`source` gives the device up; the next holder's wish (if any) is sent again in its name."""
    s.devices.get(site, device_id)
    if not s.devices.remove_control(site, device_id, source):
        raise NotFound(f"{source} does not hold device {device_id!r}", "source")
    controls = s.devices.controls(site, device_id)
    holder = rules.holder_of(list(controls))
    if holder is None:
        return Released(released=source)
    wish = controls[holder]
    restored = send(
        site, device_id, CommandRequest(command=wish.command, params=wish.params), wish.source, s, sent_by
    )
    return Released(released=source, controller=wish.source, restored=restored)


class DeviceCommands:
    """`send` and `release` for the domains that act through devices (batteries' plans, demand
    response, the optimiser), behind a port of their own (STYLE.md: `DeviceCommands`). Their
    functions' app.py wire it: `DeviceCommands(devices.Stores(...))` with the stores of
    functions/devices/app.py. A refusal by a higher controller is a Conflict naming it."""

    def __init__(self, stores: Stores, sent_by: str = "system") -> None:
        self._stores, self._sent_by = stores, sent_by

    def send(
        self,
        site: str,
        device_id: str,
        command: str,
        params: dict[str, Any],
        source: Source,
        command_id: str | None = None,
    ) -> Command:
        request = CommandRequest.model_validate(
            {"command": command, "params": params, "command_id": command_id}
        )
        return send(site, device_id, request, source, self._stores, self._sent_by)

    def release(self, site: str, device_id: str, source: Source) -> Released:
        return release(site, device_id, source, self._stores, self._sent_by)


# ---------------------------------------------------------------- the hourly plan


def _hours(values: dict[str, str]) -> dict[str, str]:
    return {str(h): values.get(str(h), "participation") for h in range(24)}


def get_plan(site: str, s: Stores) -> dict[str, dict[str, str]]:
    """Every device's 24 hours (the site's local hours): what was put, `participation` elsewhere."""
    stored = s.devices.get_plan(site)
    devices = every(partial(s.devices.page, site, MAX_LIMIT))
    return {d.device_id: _hours(stored.get(d.device_id, {})) for d in devices}


def put_plan(site: str, plan: dict[str, Any], s: Stores) -> dict[str, dict[str, str]]:
    """Merge the hours given for each device into the plan; 422 naming `device.hour` for a bad one."""
    stored = s.devices.get_plan(site)
    for device_id, hours in plan.items():
        if not isinstance(hours, dict):
            raise Invalid('must be an object of hours "0".."23"', device_id)
        s.devices.get(site, device_id)
        for hour, value in hours.items():
            if hour not in {str(h) for h in range(24)}:
                raise Invalid(
                    'is not an hour: hours are "0" to "23" in the site\'s time zone', f"{device_id}.{hour}"
                )
            if value not in INSTRUCTIONS:
                raise Invalid(f"must be one of {', '.join(INSTRUCTIONS)}", f"{device_id}.{hour}")
        stored[device_id] = {**stored.get(device_id, {}), **hours}
    s.devices.put_plan(site, stored)
    return get_plan(site, s)


def instruction_at(plan: dict[str, dict[str, str]], device_id: str, moment: datetime, timezone: str) -> str:
    """The device's instruction for the local hour of `moment` in `timezone`."""
    hour = moment.astimezone(ZoneInfo(timezone)).hour
    return plan.get(device_id, {}).get(str(hour), "participation")


# ---------------------------------------------------------------- the summary


def summary(site: str, caller: Claims, s: Stores, now: Clock = utc_now) -> DevicesSummary:
    """Counts by type and state, rated power, current power from the devices' sensors' newest
    readings (only for a token that sees live readings; the figures are site totals, so any
    data_aggregation may see them), and what is DR-eligible now."""
    moment = now()
    devices = list(every(partial(s.devices.page, site, MAX_LIMIT)))
    timezone = s.sites.get_site(site).timezone if s.sites is not None else "UTC"
    plan = s.devices.get_plan(site)
    by_type: dict[str, int] = {}
    by_state = {"online": 0, "offline": 0, "commanded": 0}
    commanded = s.commands.commanded(site)
    for device in devices:
        by_type[device.device_type] = by_type.get(device.device_type, 0) + 1
        state = connectivity(device)
        if state != "unknown":
            by_state[state] += 1
        if device.device_id in commanded:
            by_state["commanded"] += 1
    power = _current_power_kw(site, devices, s) if caller.sees_live() else None
    eligible = [d for d in devices if d.dr_eligible]
    now_kw: float | None = None
    if power is not None:
        now_kw = sum(
            power.get(d.device_id, 0.0)
            for d in eligible
            if d.connected and instruction_at(plan, d.device_id, moment, timezone) == "participation"
        )
    return DevicesSummary(
        total=len(devices), by_type=by_type, by_state=by_state,
        rated_power_kw=round(sum(d.rated_power_kw or 0.0 for d in devices), 3),
        current_power_kw=None if power is None else round(sum(power.values()), 3),
        dr_eligible_count=len(eligible),
        dr_eligible_rated_kw=round(sum(d.rated_power_kw or 0.0 for d in eligible), 3),
        dr_eligible_now_kw=None if now_kw is None else round(now_kw, 3),
        hour=moment.astimezone(ZoneInfo(timezone)).hour, timezone=timezone,
    )  # fmt: skip


def _current_power_kw(site: str, devices: list[Device], s: Stores) -> dict[str, float]:
    """Each device's power now (kW): the newest `power_w` of the sensors that report for it (a
    sensor names its device_id, or the device lists the sensor)."""
    if s.sites is None or s.latest is None:
        return {}
    known = {d.device_id for d in devices}
    owner: dict[str, str] = {}
    for sensor in every(partial(s.sites.list_sensors, site, None, None, MAX_LIMIT)):
        if sensor.device_id in known:
            owner[sensor.sensor_id] = sensor.device_id
    for device in devices:
        for sensor_id in device.sensors:
            owner.setdefault(sensor_id, device.device_id)
    power: dict[str, float] = {}
    for sensor_id, heard in s.latest.get(site, list(owner)).items():
        if POWER_METRIC in heard.metrics:
            device_id = owner[sensor_id]
            power[device_id] = power.get(device_id, 0.0) + heard.metrics[POWER_METRIC] / 1000
    return power


# ---------------------------------------------------------------- automation rules

LAST_FIRINGS = 10
STATE_ATTEMPTS = 5  # conditional writes of one rule's state lost to concurrent evaluations, at most


def _rules(s: Stores) -> RuleRecords:
    if s.rules is None:
        raise RuntimeError("the devices service was given no rule store")
    return s.rules


def _check_action(site: str, rule: RuleIn, s: Stores) -> None:
    """The action's device exists and takes the command (422 naming `action.<field>`)."""
    try:
        device = s.devices.get(site, rule.action.device_id)
    except NotFound as exc:
        raise Invalid(f"no device {rule.action.device_id!r} in this site", "action.device_id") from exc
    try:
        rules.validate(device.device_type, device.rated_power_kw, rule.action.command, rule.action.params)
    except Invalid as exc:
        raise Invalid(exc.message, f"action.{exc.field}") from exc


def create_rule(site: str, new: RuleIn, s: Stores, now: Clock = utc_now) -> Rule:
    _check_action(site, new, s)
    moment = now()
    rule = Rule(
        **new.model_dump(), rule_id=f"rule_{_ms(moment):013d}_{uuid.uuid4().hex[:8]}", site_id=site,
        created_at=to_iso(moment), updated_at=to_iso(moment),
    )  # fmt: skip
    return _rules(s).create(rule)


def get_rule(site: str, rule_id: str, s: Stores) -> RuleView:
    rule = _rules(s).get(site, rule_id)
    return RuleView(**rule.model_dump(), last_firings=_rules(s).firings(site, rule_id, LAST_FIRINGS))


def list_rules(site: str, q: ListQuery, s: Stores) -> Page[Rule]:
    return _rules(s).page(site, q.limit, q.next_token)


def update_rule(site: str, rule_id: str, change: RuleUpdate, s: Stores, now: Clock = utc_now) -> Rule:
    """A new condition starts unarmed: what was held for the old one says nothing of the new."""
    rule = _rules(s).get(site, rule_id)
    fields = change.model_dump(exclude_unset=True, exclude_none=True)
    updated = Rule.model_validate({**rule.model_dump(), **fields, "updated_at": to_iso(now())})
    _check_action(site, updated, s)
    if change.condition is not None and change.condition != rule.condition:
        updated = updated.model_copy(update={"since_ms": None, "fired": False, "last_ms": None})
    return _rules(s).replace(updated)


def delete_rule(site: str, rule_id: str, s: Stores) -> dict[str, bool]:
    _rules(s).delete(site, rule_id)
    return {"deleted": True}


def evaluate_rules(event: TelemetryReceived, s: Stores, now: Clock = utc_now) -> dict[str, int]:
    """A TelemetryReceived batch against the site's enabled rules on its sensors: each rule's state
    moves by the batch's readings (ems.devices.automation.step) in one conditional write (re-read and
    judged again when a concurrent evaluation wrote first); then each firing sends the rule's action
    as source `rule`, with a command_id of the rule and the reading's time, so a firing is one
    command however often it is sent. A firing a higher controller refuses is skipped and logged."""
    store = _rules(s)
    sensors = {r.sensor_id for r in event.readings}
    watching = [
        r
        for r in every(partial(store.page, event.site, MAX_LIMIT))
        if r.enabled and r.condition.sensor_id in sensors
    ]
    report = {"rules": len(watching), "fired": 0, "skipped": 0}
    for rule in watching:
        condition = rule.condition
        values = [
            (r.ts, r.metrics[condition.metric])
            for r in event.readings
            if r.sensor_id == condition.sensor_id and condition.metric in r.metrics
        ]
        if not values:
            continue
        for _ in range(STATE_ATTEMPTS):
            state = EdgeState(rule.since_ms, rule.fired, rule.last_ms)
            new, fires = step(state, condition.op, condition.threshold, condition.for_minutes, values)
            if new == state or store.save_state(event.site, rule.rule_id, rule.version, new):
                break
            rule = store.get(event.site, rule.rule_id)
        else:
            raise Conflict(f"rule {rule.rule_id} kept changing under this evaluation", "rule_id")
        value_at = dict(values)
        for ts in fires:
            outcome = _fire(event.site, rule, ts, value_at[ts], s, now)
            report["fired" if outcome == "sent" else "skipped"] += 1
    if report["fired"] or report["skipped"]:
        logger.info("rules evaluated", extra={"site": event.site, **report})
    return report


def _fire(site: str, rule: Rule, ts: int, value: float, s: Stores, now: Clock) -> str:
    command_id = f"{rule.rule_id}-{ts}"
    firing = Firing(rule_id=rule.rule_id, at=iso_ms(ts), value=value, command_id=command_id)
    store = _rules(s)
    store.add_firing(site, firing)
    request = CommandRequest(command=rule.action.command, params=rule.action.params, command_id=command_id)
    try:
        send(site, rule.action.device_id, request, "rule", s, f"rule:{rule.rule_id}", now)
        outcome = "sent"
    except Conflict as exc:
        outcome = f"skipped: {exc.message}"
    except DomainError as exc:  # the device or its command changed since the rule was written
        outcome = f"refused: {exc.message}"
    if outcome != "sent":
        logger.info("rule firing not sent", extra={"site": site, "rule_id": rule.rule_id, "outcome": outcome})
    store.add_firing(site, firing.model_copy(update={"outcome": outcome}))
    return outcome


# ---------------------------------------------------------------- schedules


def scheduler_name(schedule_id: str) -> str:
    """The Scheduler's name of one of our schedules (64 characters of [0-9A-Za-z_.-] at most)."""
    return f"ems-devices-{schedule_id}"


def _schedule_stores(s: Stores) -> tuple[ScheduleRecords, Scheduler]:
    if s.schedules is None or s.scheduler is None:
        raise RuntimeError("the devices service was given no schedule store or scheduler")
    return s.schedules, s.scheduler


def put_schedule(
    site: str, new: ScheduleIn, s: Stores, schedule_id: str | None = None, now: Clock = utc_now
) -> Schedule:
    """Create (or, with `schedule_id`, replace) a schedule and its Scheduler schedule. Every action is
    checked against its device first (422 naming `action.<n>.<field>`)."""
    records, scheduler = _schedule_stores(s)
    actions = new.action if isinstance(new.action, list) else [new.action]
    if not actions:
        raise Invalid("name at least one command", "action")
    for i, action in enumerate(actions):
        try:
            device = s.devices.get(site, action.device_id)
        except NotFound as exc:
            raise Invalid(f"no device {action.device_id!r} in this site", f"action.{i}.device_id") from exc
        try:
            rules.validate(device.device_type, device.rated_power_kw, action.command, action.params)
        except Invalid as exc:
            raise Invalid(exc.message, f"action.{i}.{exc.field}") from exc
    timezone = check_timezone(
        new.timezone or (s.sites.get_site(site).timezone if s.sites is not None else "UTC")
    )
    moment = to_iso(now())
    created = moment if schedule_id is None else records.get(site, schedule_id).created_at
    schedule = Schedule(
        schedule_id=schedule_id or f"sch_{_ms(now()):013d}_{uuid.uuid4().hex[:8]}", site_id=site,
        name=new.name, expression=expression(new.cron, new.rate, new.at), timezone=timezone, actions=actions,
        enabled=new.enabled, created_at=created, updated_at=moment,
    )  # fmt: skip
    payload = {"schedule": {"site": site, "schedule_id": schedule.schedule_id,
                            "scheduled_time": "<aws.scheduler.scheduled-time>"}}  # fmt: skip
    scheduler.put(
        scheduler_name(schedule.schedule_id),
        schedule.expression,
        timezone,
        schedule.enabled,
        json.dumps(payload),
    )
    return records.put(schedule)


def get_schedule(site: str, schedule_id: str, s: Stores) -> Schedule:
    return _schedule_stores(s)[0].get(site, schedule_id)


def list_schedules(site: str, q: ListQuery, s: Stores) -> Page[Schedule]:
    return _schedule_stores(s)[0].page(site, q.limit, q.next_token)


def delete_schedule(site: str, schedule_id: str, s: Stores) -> dict[str, bool]:
    records, scheduler = _schedule_stores(s)
    records.get(site, schedule_id)
    scheduler.delete(scheduler_name(schedule_id))
    records.delete(site, schedule_id)
    return {"deleted": True}


def run_schedule(
    site: str, schedule_id: str, scheduled_time: str, s: Stores, now: Clock = utc_now
) -> ScheduleRun:
    """The Scheduler fired: send each action as source `schedule`. The command ids are the schedule's,
    the action's place and the scheduled time, so the Scheduler's retry of one firing sends nothing twice."""
    try:
        schedule = get_schedule(site, schedule_id, s)
    except NotFound:
        logger.warning("schedule fired but is gone", extra={"site": site, "schedule_id": schedule_id})
        return ScheduleRun(schedule_id=schedule_id, scheduled_time=scheduled_time, commands=[])
    stamp = re.sub(r"[^0-9A-Za-z]", "", scheduled_time)
    sent: list[str] = []
    for i, action in enumerate(schedule.actions):
        request = CommandRequest(
            command=action.command, params=action.params, command_id=f"{schedule_id}-{i}-{stamp}"
        )
        try:
            sent.append(
                send(
                    site, action.device_id, request, "schedule", s, f"schedule:{schedule_id}", now
                ).command_id
            )
        except DomainError as exc:  # a higher controller holds the device, or the device changed
            sent.append(f"skipped: {exc.message}")
    logger.info("schedule ran", extra={"site": site, "schedule_id": schedule_id, "commands": sent})
    return ScheduleRun(schedule_id=schedule_id, scheduled_time=scheduled_time, commands=sent)
