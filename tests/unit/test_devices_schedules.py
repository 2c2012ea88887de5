"""Schedules on fakes: what a schedule of the API becomes for EventBridge Scheduler, when that fires
(a Europe/Berlin cron across the 2030 DST changes, evaluated by the local cloud's Scheduler engine,
ems_local.schedules), the refusals, and a firing that sends its scene once however often it is retried."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from ems.core.errors import Invalid
from ems.devices import service as devices
from ems.devices.models import CommandRequest, DeviceIn, ListQuery, ScheduleIn
from ems_local import schedules
from tests.support.fakes_devices import MemoryScheduler, memory_stores

SITE = "hq"  # Europe/Berlin (memory_stores)


@pytest.fixture
def s() -> devices.Stores:
    stores = memory_stores()
    devices.register(SITE, DeviceIn(device_id="DEVICE_001", name="HVAC", device_type="hvac"), stores)
    devices.register(
        SITE, DeviceIn(device_id="DEVICE_002", name="Boiler", device_type="water_heater"), stores
    )
    return stores


def scheduler(s: devices.Stores) -> MemoryScheduler:
    assert isinstance(s.scheduler, MemoryScheduler)
    return s.scheduler


def schedule(**fields: Any) -> ScheduleIn:
    fields.setdefault("name", "Morning")
    fields.setdefault("action", {"device_id": "DEVICE_001", "command": "on"})
    return ScheduleIn.model_validate(fields)


def fires(expression: str, timezone: str, after: datetime, count: int) -> list[str]:
    engine = schedules.parse(expression, timezone)
    found, moment = [], after
    for _ in range(count):
        nxt = engine.next_after(moment)
        assert nxt is not None
        found.append(nxt.strftime("%Y-%m-%d %H:%M"))
        moment = nxt
    return found


def test_a_berlin_cron_fires_at_seven_local_across_both_dst_changes(s: devices.Stores) -> None:
    created = devices.put_schedule(SITE, schedule(cron="0 7 * * ? *"), s)
    held = scheduler(s).schedules[devices.scheduler_name(created.schedule_id)]
    assert (held["expression"], held["timezone"], held["enabled"]) == (
        "cron(0 7 * * ? *)",
        "Europe/Berlin",
        True,
    )
    # 2030: summer time begins on 31 March, ends on 27 October.
    spring = fires(held["expression"], held["timezone"], datetime(2030, 3, 29, 12, tzinfo=UTC), 3)
    assert spring == ["2030-03-30 06:00", "2030-03-31 05:00", "2030-04-01 05:00"]
    autumn = fires(held["expression"], held["timezone"], datetime(2030, 10, 26, 12, tzinfo=UTC), 2)
    assert autumn == ["2030-10-27 06:00", "2030-10-28 06:00"]


def test_rate_and_at_and_the_input_the_target_gets(s: devices.Stores) -> None:
    every = devices.put_schedule(SITE, schedule(rate="15 minutes", timezone="UTC"), s)
    once = devices.put_schedule(SITE, schedule(at="2030-03-31T02:30:00"), s)
    held = scheduler(s).schedules
    assert held[devices.scheduler_name(every.schedule_id)]["expression"] == "rate(15 minutes)"
    assert held[devices.scheduler_name(once.schedule_id)]["expression"] == "at(2030-03-31T02:30:00)"
    # 02:30 does not exist in Berlin that night; Scheduler reads it with the offset before the change.
    assert fires("at(2030-03-31T02:30:00)", "Europe/Berlin", datetime(2030, 3, 30, tzinfo=UTC), 1) == [
        "2030-03-31 01:30"
    ]
    assert json.loads(held[devices.scheduler_name(once.schedule_id)]["input"]) == {
        "schedule": {
            "site": "hq",
            "schedule_id": once.schedule_id,
            "scheduled_time": "<aws.scheduler.scheduled-time>",
        }
    }
    assert {x.schedule_id for x in devices.list_schedules(SITE, ListQuery(), s).items} == {
        every.schedule_id, once.schedule_id,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"cron": "0 7 * * *"}, "cron", "six fields"),
        ({"cron": "0 7 * * MON *"}, "cron", "exactly one of day-of-month and day-of-week"),
        ({"rate": "1 minutes"}, "rate", '"1 minute"'),
        ({"rate": "5 weeks"}, "rate", "minutes|hours|days"),
        ({"at": "2030-03-31T02:30:00Z"}, "at", "no offset"),
        ({"at": "2030-02-30T02:30:00"}, "at", "exists"),
        ({"cron": "0 7 * * ? *", "at": "2030-03-31T02:30:00"}, "cron", "exactly one of cron, rate or at"),
        ({"cron": "0 7 * * ? *", "timezone": "Mars/Olympus"}, "timezone", "IANA"),
        ({"cron": "0 7 * * ? *", "action": [{"device_id": "DEVICE_001", "command": "on"},
                                            {"device_id": "DEVICE_002", "command": "set_setpoint",
                                             "params": {"celsius": 90}}]}, "action.1.params.celsius", "35 to 75"),
        ({"cron": "0 7 * * ? *", "action": {"device_id": "NOPE", "command": "on"}}, "action.0.device_id", "NOPE"),
    ],
)  # fmt: skip
def test_a_bad_schedule_is_422_naming_the_field_and_nothing_is_scheduled(
    s: devices.Stores, fields: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(Invalid) as refused:
        devices.put_schedule(SITE, schedule(**fields), s)
    assert refused.value.field == field and words in refused.value.message
    assert scheduler(s).schedules == {}


def test_a_scene_runs_once_per_firing_and_a_higher_controller_is_skipped(s: devices.Stores) -> None:
    scene = [
        {"device_id": "DEVICE_001", "command": "set_mode", "params": {"mode": "heat"}},
        {"device_id": "DEVICE_002", "command": "set_setpoint", "params": {"celsius": 60}},
    ]
    created = devices.put_schedule(SITE, schedule(cron="0 7 * * ? *", action=scene), s)
    first = devices.run_schedule(SITE, created.schedule_id, "2030-03-31T05:00:00Z", s)
    again = devices.run_schedule(
        SITE, created.schedule_id, "2030-03-31T05:00:00Z", s
    )  # the Scheduler's retry
    assert first.commands == again.commands == [
        f"{created.schedule_id}-0-20300331T050000Z", f"{created.schedule_id}-1-20300331T050000Z",
    ]  # fmt: skip
    for device_id in ("DEVICE_001", "DEVICE_002"):
        (sent,) = devices.list_commands(SITE, device_id, ListQuery(), s).items
        assert (sent.source, sent.sent_by) == ("schedule", f"schedule:{created.schedule_id}")
    devices.send(SITE, "DEVICE_001", CommandRequest(command="off"), "manual", s, "alice")
    next_day = devices.run_schedule(SITE, created.schedule_id, "2030-04-01T05:00:00Z", s)
    assert next_day.commands[0].startswith("skipped: device 'DEVICE_001' is controlled by manual")
    assert next_day.commands[1] == f"{created.schedule_id}-1-20300401T050000Z"


def test_replacing_and_deleting_a_schedule_change_the_schedulers(s: devices.Stores) -> None:
    created = devices.put_schedule(SITE, schedule(cron="0 7 * * ? *"), s)
    name = devices.scheduler_name(created.schedule_id)
    devices.put_schedule(SITE, schedule(cron="30 6 ? * MON-FRI *", enabled=False), s, created.schedule_id)
    assert (scheduler(s).schedules[name]["expression"], scheduler(s).schedules[name]["enabled"]) == (
        "cron(30 6 ? * MON-FRI *)", False,
    )  # fmt: skip
    assert devices.delete_schedule(SITE, created.schedule_id, s) == {"deleted": True}
    assert scheduler(s).schedules == {}
    assert devices.run_schedule(SITE, created.schedule_id, "2030-04-01T05:00:00Z", s).commands == []
