"""Schedules for the local cloud: EventBridge Scheduler schedules and scheduled rules, fired on time.

Where schedules come from:
- the template: SAM `ScheduleV2` events and AWS::Scheduler::Schedule resources are created in
  moto's Scheduler at start (so ListSchedules shows them, and a function may update or delete
  them, as in AWS); SAM `Schedule` events and AWS::Events::Rule resources with a
  ScheduleExpression are EventBridge rules, fired from memory with the "Scheduled Event" envelope;
- run time: functions create, update and delete schedules through the ordinary Scheduler API,
  which moto serves (AWS_ENDPOINT_URL). Every second this module lists moto's schedules and reads
  again (GetSchedule) each one whose LastModificationDate changed.

We let moto keep the schedules instead of serving the Scheduler API ourselves: moto already has the
whole API (groups, tags, pagination, conflicts), and the schedules then live with the rest of the
AWS state. The cost is up to a second (one poll) before a new schedule is armed; a one-time
schedule whose time came during that second still fires (see `_first_fire`).

Time is the local cloud's one Clock (ems_local.clock: `--clock START --speed N`), the functions' too.
A target is invoked as Scheduler invokes Lambda: asynchronously (ems_local.async_invoke), with the
target's Input (its context attributes such as <aws.scheduler.scheduled-time> filled in) as the
event, `{}` without one. A one-time at() schedule fires once; with ActionAfterCompletion DELETE it
is then deleted, as is a recurring one after its EndDate.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ems_local import console, schedules
from ems_local.clock import Clock
from ems_local.eventbridge import (
    Rule,
    function_for,
    function_ids_by_arn,
    iso_seconds,
    rules_from,
    target_input,
)
from ems_local.template import ACCOUNT_ID, Stack

Deliver = Callable[[str, Any, str], Any]  # (function logical id, event, source ARN)

POLL_SECONDS = 1.0
# Scheduler invokes "with 60 second precision": a one-time schedule created up to a minute after
# its time has come still fires.
AT_GRACE = timedelta(seconds=60)
# After a pause (a laptop asleep), fire a recurring schedule's missed times at most this often.
MAX_CATCH_UP = 10


@dataclass
class Timer:
    key: str  # the schedule's or rule's ARN
    schedule: schedules.Schedule
    function: str  # logical id
    event: Callable[[datetime], Any]  # the event for a fire at that time
    next_fire: datetime | None
    version: Any = None  # moto's LastModificationDate; None for rules
    name: str = ""
    group: str = ""
    delete_after: bool = False  # ActionAfterCompletion DELETE


def scheduler_input(text: str | None, schedule_arn: str, fire: datetime) -> Any:
    """The event a Scheduler target receives: its Input with the context attributes filled in."""
    if text is None:
        return {}
    attributes = {
        "<aws.scheduler.schedule-arn>": schedule_arn,
        "<aws.scheduler.scheduled-time>": iso_seconds(fire),
        "<aws.scheduler.execution-id>": str(uuid.uuid4()),
        "<aws.scheduler.attempt-number>": "1",
    }
    for name, value in attributes.items():
        text = text.replace(name, value)
    try:
        return json.loads(text)
    except ValueError:
        return text


def scheduled_event(rule: Rule, fire: datetime) -> dict[str, Any]:
    """What an EventBridge scheduled rule sends: the "Scheduled Event" envelope."""
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
        "account": ACCOUNT_ID, "time": iso_seconds(fire), "region": rule.region, "resources": [rule.arn],
        "detail": {},
    }  # fmt: skip


def _first_fire(
    schedule: schedules.Schedule, now: datetime, created: datetime | None, fresh: bool
) -> datetime | None:
    """When a schedule seen now fires first. `created`: when it was created (on the schedules'
    clock); `fresh`: seen for the first time rather than changed."""
    if isinstance(schedule, schedules.AtSchedule):
        if schedule.fire_at > now:
            return schedule.fire_at
        # Its time came between its creation (less the precision AWS allows) and our noticing it.
        if created is not None and schedule.fire_at >= created - AT_GRACE:
            return now
        return None
    if isinstance(schedule, schedules.RateSchedule) and schedule.start is None and fresh:
        return now  # "If you do not provide a StartDate, your schedule starts invoking immediately"
    return schedule.next_after(now)


def _moment(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def template_schedules(stack: Stack) -> list[dict[str, Any]]:
    """CreateSchedule requests for the template's ScheduleV2 events and AWS::Scheduler::Schedule
    resources, as CloudFormation would make them."""
    requests = []
    for logical_id, function in stack.functions().items():
        for event_name, event in function["Events"].items():
            if event.get("Type") != "ScheduleV2":
                continue
            props = stack.resolve(event.get("Properties", {}))
            target = {
                "Arn": stack.get_att(logical_id, "Arn"),
                "RoleArn": props.get("RoleArn")
                or f"arn:aws:iam::{ACCOUNT_ID}:role/{logical_id}{event_name}Role",
            }
            if props.get("Input") is not None:
                target["Input"] = str(props["Input"])
            requests.append(
                {
                    "Name": props.get("Name") or f"{logical_id}{event_name}",
                    **_schedule_fields(props),
                    "Target": target,
                }
            )
    for logical_id, resource in stack.of_type("AWS::Scheduler::Schedule").items():
        props = stack.resolve(resource.get("Properties", {}))
        target = {k: v for k, v in props.get("Target", {}).items() if k in ("Arn", "RoleArn", "Input")}
        requests.append(
            {"Name": props.get("Name") or logical_id, **_schedule_fields(props), "Target": target}
        )
    return requests


def _schedule_fields(props: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "ScheduleExpression": props["ScheduleExpression"],
        "FlexibleTimeWindow": props.get("FlexibleTimeWindow") or {"Mode": "OFF"},
        "State": props.get("State", "ENABLED"),
    }
    for key in ("ScheduleExpressionTimezone", "Description", "GroupName"):
        if props.get(key):
            fields[key] = props[key]
    for key in ("StartDate", "EndDate"):
        if props.get(key):
            fields[key] = _moment(props[key])
    return fields


class Scheduler:
    """Fires every schedule on the Clock's time: one thread that polls moto and fires what is due."""

    def __init__(
        self,
        stack: Stack,
        clock: Clock,
        deliver: Deliver,
        scheduler_client: Any,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.stack = stack
        self.clock = clock
        self._deliver = deliver
        self._client = scheduler_client
        self.poll_seconds = poll_seconds
        self._functions = function_ids_by_arn(stack)
        self._timers: dict[str, Timer] = {}
        self._settled: set[tuple[str, Any]] = set()  # (arn, version) never to arm again
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)

    def start(self) -> None:
        self._create_template_schedules()
        self._arm_rules()
        self._thread.start()
        console.line(
            "scheduler", f"running on a clock at {self.clock.rate:g}x, now {iso_seconds(self.clock.now())}"
        )

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    # --- where timers come from -------------------------------------------------------------

    def _create_template_schedules(self) -> None:
        groups = {"default"}
        for request in template_schedules(self.stack):
            group = request.get("GroupName", "default")
            try:
                if group not in groups:
                    with contextlib.suppress(self._client.exceptions.ConflictException):
                        self._client.create_schedule_group(Name=group)
                    groups.add(group)
                try:
                    self._client.create_schedule(**request)
                except self._client.exceptions.ConflictException:
                    self._client.update_schedule(**request)
            except Exception as exc:  # a schedule CloudFormation would refuse: say so, run the rest
                console.line("scheduler", f"template schedule {request['Name']} refused: {exc}")

    def _arm_rules(self) -> None:
        now = self.clock.now()
        for rule in rules_from(self.stack):
            if rule.schedule_expression is None or not rule.enabled:
                continue
            try:
                schedule = schedules.parse(rule.schedule_expression)  # rules run in UTC, never at()
                if isinstance(schedule, schedules.AtSchedule):
                    raise ValueError("a rule takes rate() or cron(), not at()")
            except ValueError as exc:
                console.line("scheduler", f"rule {rule.name}: {exc}; never fires")
                continue

            def event(fire: datetime, rule: Rule = rule) -> Any:
                return target_input(rule, scheduled_event(rule, fire))

            self._timers[rule.arn] = Timer(rule.arn, schedule, rule.function, event, schedule.next_after(now))

    def poll(self) -> None:
        """Bring the timers in line with moto's schedules: new, changed and deleted ones."""
        seen: dict[str, dict[str, Any]] = {}
        for page in self._client.get_paginator("list_schedules").paginate():
            for summary in page.get("Schedules", []):
                seen[summary["Arn"]] = summary
        for arn, summary in seen.items():
            version = summary.get("LastModificationDate")
            timer = self._timers.get(arn)
            if timer is not None and timer.version == version:
                continue
            if (arn, version) in self._settled:
                continue
            if summary.get("State", "ENABLED") != "ENABLED":
                self._timers.pop(arn, None)
                self._settled.add((arn, version))
                continue
            try:
                detail = self._client.get_schedule(
                    Name=summary["Name"], GroupName=summary.get("GroupName") or "default"
                )
            except self._client.exceptions.ResourceNotFoundException:
                continue  # deleted since the listing
            self._arm(detail, fresh=timer is None)
        for arn in [a for a, t in self._timers.items() if t.version is not None and a not in seen]:
            del self._timers[arn]

    def _arm(self, detail: dict[str, Any], fresh: bool) -> None:
        arn, version = detail["Arn"], detail.get("LastModificationDate")
        self._timers.pop(arn, None)
        self._settled.add((arn, version))  # armed below, or never to be
        name = f"{detail.get('GroupName', 'default')}/{detail['Name']}"
        target = detail.get("Target", {})
        function = function_for(target.get("Arn"), self._functions)
        if function is None:
            console.line("scheduler", f"schedule {name}: target {target.get('Arn')} is not a function here")
            return
        try:
            schedule = schedules.parse(
                detail["ScheduleExpression"], detail.get("ScheduleExpressionTimezone") or "UTC",
                _moment(detail.get("StartDate")), _moment(detail.get("EndDate")),
            )  # fmt: skip
        except ValueError as exc:
            console.line("scheduler", f"schedule {name}: {exc}; never fires")
            return
        created = _moment(detail.get("CreationDate"))
        now = self.clock.now()
        first = _first_fire(
            schedule, now, self.clock.at_real(created.timestamp()) if created else None, fresh
        )
        if first is None:
            console.line(
                "scheduler", f"schedule {name}: {detail['ScheduleExpression']} has no time left to fire"
            )
            return
        text = target.get("Input")

        def event(fire: datetime) -> Any:
            return scheduler_input(text, arn, fire)

        self._timers[arn] = Timer(
            arn, schedule, function, event, first, version=version, name=detail["Name"],
            group=detail.get("GroupName") or "default",
            delete_after=detail.get("ActionAfterCompletion") == "DELETE",
        )  # fmt: skip
        console.line(
            "scheduler", f"schedule {name} armed: {detail['ScheduleExpression']}, first {iso_seconds(first)}"
        )

    # --- firing -------------------------------------------------------------------------------

    def fire_due(self) -> int:
        """Fire every timer whose time has come; how many fires."""
        fired, now = 0, self.clock.now()
        for key, timer in list(self._timers.items()):
            catch_up = 0
            while timer.next_fire is not None and timer.next_fire <= now and catch_up < MAX_CATCH_UP:
                self._deliver(timer.function, timer.event(timer.next_fire), timer.key)
                fired, catch_up = fired + 1, catch_up + 1
                timer.next_fire = timer.schedule.next_after(timer.next_fire)
            if timer.next_fire is not None and timer.next_fire <= now:
                timer.next_fire = timer.schedule.next_after(now)  # skip the rest of a long pause
            if timer.next_fire is None:
                del self._timers[key]
                self._completed(timer)
        return fired

    def _completed(self, timer: Timer) -> None:
        if not (timer.delete_after and timer.version is not None):
            return
        try:
            self._client.delete_schedule(Name=timer.name, GroupName=timer.group)
            console.line("scheduler", f"schedule {timer.group}/{timer.name} completed and deleted")
        except Exception as exc:
            console.line(
                "scheduler", f"schedule {timer.group}/{timer.name}: deleting after completion: {exc}"
            )

    def _run(self) -> None:
        next_poll = 0.0
        while not self._stopping.is_set():
            if time.monotonic() >= next_poll:
                try:
                    self.poll()
                except Exception as exc:  # moto busy or stopping: try again next time
                    console.line("scheduler", f"listing schedules: {exc!r}")
                next_poll = time.monotonic() + self.poll_seconds
            self.fire_due()
            wait = next_poll - time.monotonic()
            upcoming = [t.next_fire for t in self._timers.values() if t.next_fire is not None]
            if upcoming:
                wait = min(wait, self.clock.real_seconds_until(min(upcoming)))
            self._stopping.wait(max(wait, 0.01))
