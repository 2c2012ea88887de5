"""The local cloud's scheduler on its own: the clock, first fires, inputs, and schedules armed from a
stand-in for moto's Scheduler API, fired on a fake clock (no threads, no moto)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ems_local import schedules
from ems_local.clock import Clock
from ems_local.scheduler import Scheduler, _first_fire, scheduler_input, template_schedules
from ems_local.template import Stack

START = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
ARN = "arn:aws:lambda:us-east-1:123456789012:function:ems-test-dr"

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Resources:
  DrFunction:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: ems-test-dr
      CodeUri: functions/dr
      Events:
        Replan:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: rate(15 minutes)
            Input: '{"job": "replan"}'
        Morning:
          Type: ScheduleV2
          Properties:
            Name: morning
            ScheduleExpression: cron(0 7 * * ? *)
            ScheduleExpressionTimezone: Europe/Berlin
            State: DISABLED
        Hourly:
          Type: Schedule
          Properties:
            Schedule: rate(1 hour)
"""


class RealTime:
    """The real clock a Clock reads, moved by hand."""

    def __init__(self) -> None:
        self.now = START.timestamp()

    def __call__(self) -> float:
        return self.now


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


class FakeScheduler:
    """What the scheduler uses of boto3's `scheduler` client, kept in a dict as moto keeps it."""

    class exceptions:
        ResourceNotFoundException = NotFound
        ConflictException = Conflict

    def __init__(self, real: RealTime) -> None:
        self.real = real
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.deleted: list[str] = []

    def create_schedule(self, **request: Any) -> None:
        key = (request.get("GroupName", "default"), request["Name"])
        if key in self.items:
            raise Conflict(request["Name"])
        moment = datetime.fromtimestamp(self.real(), UTC)
        self.items[key] = {
            "Arn": f"arn:aws:scheduler:us-east-1:123456789012:schedule/{key[0]}/{key[1]}",
            "GroupName": key[0], "State": "ENABLED", "ScheduleExpressionTimezone": "UTC",
            "CreationDate": moment, "LastModificationDate": moment, **request,
        }  # fmt: skip

    def update_schedule(self, **request: Any) -> None:
        key = (request.get("GroupName", "default"), request["Name"])
        self.items[key] |= {**request, "LastModificationDate": datetime.fromtimestamp(self.real(), UTC)}

    def get_schedule(self, Name: str, GroupName: str = "default") -> dict[str, Any]:
        if (GroupName, Name) not in self.items:
            raise NotFound(Name)
        return dict(self.items[(GroupName, Name)])

    def delete_schedule(self, Name: str, GroupName: str = "default") -> None:
        self.deleted.append(Name)
        del self.items[(GroupName, Name)]

    def get_paginator(self, operation: str) -> Any:
        assert operation == "list_schedules"
        items = self.items

        class Pages:
            def paginate(self) -> list[dict[str, Any]]:
                keys = ("Arn", "Name", "GroupName", "State", "LastModificationDate")
                return [{"Schedules": [{k: s[k] for k in keys} for s in items.values()]}]

        return Pages()


class Fires:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, str]] = []

    def __call__(self, function: str, event: Any, source: str) -> None:
        self.calls.append((function, event, source))


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    return Stack.from_file(tmp_path / "template.yaml")


@pytest.fixture
def real() -> RealTime:
    return RealTime()


@pytest.fixture
def running(stack: Stack, real: RealTime) -> tuple[Scheduler, FakeScheduler, Fires]:
    client, fires = FakeScheduler(real), Fires()
    scheduler = Scheduler(stack, Clock(60, real=real), fires, client)
    scheduler._create_template_schedules()
    scheduler._arm_rules()
    return scheduler, client, fires


def advance(real: RealTime, scheduler: Scheduler, real_seconds: float) -> None:
    """Let real time pass a second at a time, polling and firing as the scheduler's thread does."""
    for _ in range(int(real_seconds)):
        real.now += 1
        scheduler.poll()
        scheduler.fire_due()


# --- the clock -----------------------------------------------------------------------------------


def test_the_clock_runs_rate_times_faster_from_its_origin(real: RealTime) -> None:
    clock = Clock(60, real=real)
    assert clock.now() == START
    real.now += 2.5
    assert clock.now() == START + timedelta(minutes=2, seconds=30)
    assert clock.real_seconds_until(START + timedelta(minutes=3, seconds=30)) == pytest.approx(1.0)
    again = Clock.from_description(clock.describe())
    assert abs((again.at_real(real.now) - clock.now()).total_seconds()) < 1e-6


def test_a_clock_refuses_a_rate_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Clock(0)


# --- first fires and inputs ----------------------------------------------------------------------


def test_first_fire_of_each_kind_of_schedule() -> None:
    now = START
    at = schedules.parse("at(2025-03-01T12:05:00)")
    assert _first_fire(at, now, created=now, fresh=True) == START + timedelta(minutes=5)
    passed = schedules.parse("at(2025-03-01T11:59:30)")
    assert _first_fire(passed, now, created=now - timedelta(seconds=10), fresh=True) == now  # came due unseen
    assert (
        _first_fire(passed, now, created=now + timedelta(hours=1), fresh=True) is None
    )  # created long after
    rate = schedules.parse("rate(5 minutes)")
    assert _first_fire(rate, now, created=now, fresh=True) == now  # starts invoking immediately
    assert _first_fire(rate, now, created=now, fresh=False) == now + timedelta(minutes=5)
    cron = schedules.parse("cron(30 12 * * ? *)")
    assert _first_fire(cron, now, created=now, fresh=True) == START + timedelta(minutes=30)


def test_scheduler_input_fills_the_context_attributes() -> None:
    text = '{"schedule": "<aws.scheduler.schedule-arn>", "at": "<aws.scheduler.scheduled-time>", "n": 1}'
    assert scheduler_input(text, "arn:s", START) == {
        "schedule": "arn:s",
        "at": "2025-03-01T12:00:00Z",
        "n": 1,
    }
    assert scheduler_input(None, "arn:s", START) == {}
    assert scheduler_input("plain text", "arn:s", START) == "plain text"


def test_template_schedule_v2_events_become_create_schedule_requests(stack: Stack) -> None:
    requests = {r["Name"]: r for r in template_schedules(stack)}
    assert sorted(requests) == ["DrFunctionReplan", "morning"]
    replan = requests["DrFunctionReplan"]
    assert replan["ScheduleExpression"] == "rate(15 minutes)"
    assert replan["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert replan["Target"]["Arn"] == ARN
    assert replan["Target"]["Input"] == '{"job": "replan"}'
    assert requests["morning"]["State"] == "DISABLED"
    assert requests["morning"]["ScheduleExpressionTimezone"] == "Europe/Berlin"


# --- firing ----------------------------------------------------------------------------------------


def test_template_schedules_fire_on_the_fast_clock(
    running: tuple[Scheduler, FakeScheduler, Fires], real: RealTime
) -> None:
    scheduler, _, fires = running
    scheduler.poll()
    scheduler.fire_due()  # rate(15 minutes) without StartDate: at once
    advance(real, scheduler, 15 * 60 * 2 // 60)  # 30 schedule minutes in 30 real seconds
    replans = [event for fn, event, source in fires.calls if source.endswith("/DrFunctionReplan")]
    assert replans == [{"job": "replan"}] * 3  # 12:00, 12:15, 12:30
    hourly = [event for fn, event, source in fires.calls if source.endswith("rule/DrFunctionHourly")]
    assert hourly == []  # a rule's rate starts one period after creation
    advance(real, scheduler, 30)
    (hourly_event,) = [event for fn, event, source in fires.calls if source.endswith("rule/DrFunctionHourly")]
    assert hourly_event["detail-type"] == "Scheduled Event"
    assert hourly_event["time"] == "2025-03-01T13:00:00Z"
    assert all(fn == "DrFunction" for fn, _, _ in fires.calls)
    assert not any(source.endswith("/morning") for _, _, source in fires.calls)  # DISABLED


def test_a_one_time_schedule_fires_once_and_is_deleted_after(
    running: tuple[Scheduler, FakeScheduler, Fires], real: RealTime
) -> None:
    scheduler, client, fires = running
    client.create_schedule(
        Name="dr-start", ScheduleExpression="at(2025-03-01T12:02:00)", FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": ARN, "RoleArn": "arn:aws:iam::123456789012:role/r", "Input": '{"dr": "start"}'},
        ActionAfterCompletion="DELETE",
    )  # fmt: skip
    client.create_schedule(
        Name="dr-end", ScheduleExpression="at(2025-03-01T12:03:00)", FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": ARN, "RoleArn": "arn:aws:iam::123456789012:role/r", "Input": '{"dr": "end"}'},
    )  # fmt: skip
    advance(real, scheduler, 10)  # ten schedule minutes
    dr = [event for _, event, source in fires.calls if "/dr-" in source]
    assert dr == [{"dr": "start"}, {"dr": "end"}]
    assert client.deleted == ["dr-start"]  # ActionAfterCompletion DELETE; dr-end stays, fired once


def test_an_updated_schedule_is_armed_again_and_a_deleted_one_stops(
    running: tuple[Scheduler, FakeScheduler, Fires], real: RealTime
) -> None:
    scheduler, client, fires = running
    common = {
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": {"Arn": ARN, "RoleArn": "arn:aws:iam::123456789012:role/r"},
    }
    client.create_schedule(Name="tick", ScheduleExpression="rate(1 minute)", **common)
    advance(real, scheduler, 3)
    ticks = sum(1 for _, _, s in fires.calls if s.endswith("/tick"))
    assert ticks >= 3
    client.update_schedule(Name="tick", ScheduleExpression="rate(10 minutes)", **common)
    advance(real, scheduler, 5)
    after_update = sum(1 for _, _, s in fires.calls if s.endswith("/tick"))
    assert after_update <= ticks + 1  # at most the fire due before the poll saw the update
    client.delete_schedule(Name="tick")
    advance(real, scheduler, 20)
    assert sum(1 for _, _, s in fires.calls if s.endswith("/tick")) == after_update


def test_a_schedule_whose_target_is_not_a_function_here_never_fires(
    running: tuple[Scheduler, FakeScheduler, Fires], real: RealTime
) -> None:
    scheduler, client, fires = running
    client.create_schedule(
        Name="queue", ScheduleExpression="rate(1 minute)", FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": "arn:aws:sqs:us-east-1:123456789012:q", "RoleArn": "arn:aws:iam::123456789012:role/r"},
    )  # fmt: skip
    advance(real, scheduler, 5)
    assert not any(s.endswith("/queue") for _, _, s in fires.calls)
