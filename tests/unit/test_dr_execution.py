"""Execution on fakes, through the devices domain's own DeviceCommands (ems.devices.service on its
fakes): the start and end schedules an acceptance creates, the plan at the start (the battery first,
then devices by comfort priority until the target is met), a device that fails replaced by the next,
the shortfall, a plan run twice sending nothing twice, and the end (or a cancel) handing every device
back to its next holder's wish."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ems.core.errors import Conflict
from ems.devices import service as devices
from ems.devices.models import CommandRequest, DeviceIn
from ems.dr import service as dr
from ems.dr.models import AnswerIn, ExecuteIn, InvitationIn
from ems.registry.status import Heard
from tests.support.fakes import ListPublisher, MemoryRegistry, MemoryStatus, caller
from tests.support.fakes_devices import MemoryCommands, MemoryDevices, MemoryIot
from tests.support.fakes_dr import Battery, FixedFleet, MemoryInvitations, MemorySchedules

T0 = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)  # a Monday, 10:00 in Berlin
START = datetime(2030, 3, 4, 13, 0, tzinfo=UTC)
SITE = "demo"
# device, type, rated kW, comfort priority, power now (W)
FLEET = [
    ("DEVICE_001", "hvac", 3.0, 6, 2800.0),
    ("DEVICE_002", "water_heater", 2.0, 2, 1800.0),
    ("LIGHTS", "lighting", 1.0, 1, 500.0),
    ("BATT_INV", "battery_inverter", 5.0, 5, None),
]


class Failing:
    """DeviceCommands whose sends to `broken` are refused (a device that does not take its command)."""

    def __init__(self, real: devices.DeviceCommands, broken: set[str]) -> None:
        self.real, self.broken = real, broken

    def send(self, site: str, device_id: str, command: str, params: dict[str, Any], source: Any,
             command_id: str | None = None) -> Any:  # fmt: skip
        if device_id in self.broken:
            raise Conflict(f"device {device_id!r} did not take the command", "device_id")
        return self.real.send(site, device_id, command, params, source, command_id)

    def release(self, site: str, device_id: str, source: Any) -> Any:
        return self.real.release(site, device_id, source)


@pytest.fixture
def dev() -> devices.Stores:
    registry = MemoryRegistry()
    registry.add_site(SITE, timezone="Europe/Berlin")
    latest = MemoryStatus()
    stores = devices.Stores(devices=MemoryDevices(), commands=MemoryCommands(), iot=MemoryIot(),
                            events=ListPublisher(), sites=registry, latest=latest)  # fmt: skip
    for device_id, kind, kw, priority, watts in FLEET:
        sensor = f"P_{device_id}"
        registry.add_sensor(SITE, sensor, "power", device_id=device_id)
        devices.register(SITE, DeviceIn(device_id=device_id, name=device_id, device_type=kind, rated_power_kw=kw,  # type: ignore[arg-type]
                                        dr_eligible=kind != "battery_inverter", comfort_priority=priority),
                         stores, lambda: T0)  # fmt: skip
        if watts is not None:
            latest.record(SITE, [Heard(sensor, int(START.timestamp() * 1000) - 10_000, {"power_w": watts})])
    return stores


@pytest.fixture
def s(dev: devices.Stores) -> dr.Stores:
    assert dev.sites is not None
    return dr.Stores(
        invitations=MemoryInvitations(), devices=dev.devices, events=ListPublisher(), sites=dev.sites,  # type: ignore[arg-type]
        latest=dev.latest, batteries=FixedFleet([Battery("B1", "BATT_INV", 60.0, 3.0, 3.0)]),
        commands=devices.DeviceCommands(dev, sent_by="dr"), schedules=MemorySchedules(), command_states=dev.commands,
        shadows=dev.iot,
    )  # fmt: skip


def at(moment: datetime) -> Any:
    return lambda: moment


def accepted(s: dr.Stores, **body: Any) -> str:
    body = {"event_time": "2030-03-04T13:00:00Z", "duration_minutes": 60, **body}
    invitation_id = dr.send(SITE, InvitationIn.model_validate(body), s, at(T0)).invitation_id
    dr.answer(SITE, AnswerIn(invitation_id=invitation_id, response="YES"), s, "ops", at(T0))
    return invitation_id


def commands(dev: devices.Stores) -> list[tuple[str, str, dict[str, Any], str]]:
    held = dev.commands.commands.values()  # type: ignore[attr-defined]
    return sorted((c.device_id, c.command, c.params, c.source) for c in held)


def test_acceptance_schedules_the_start_and_the_end_and_a_decline_removes_them(s: dr.Stores) -> None:
    invitation_id = accepted(s, load_kw=5)
    schedules = s.schedules.schedules  # type: ignore[union-attr]
    assert schedules == {
        f"ems-dr-{invitation_id}-start": (START, {"dr": "start", "site": SITE, "invitation_id": invitation_id}),
        f"ems-dr-{invitation_id}-check": (START + timedelta(minutes=2),
                                          {"dr": "check", "site": SITE, "invitation_id": invitation_id}),
        f"ems-dr-{invitation_id}-end": (START + timedelta(hours=1),
                                        {"dr": "end", "site": SITE, "invitation_id": invitation_id}),
        f"ems-dr-{invitation_id}-measure": (START + timedelta(hours=1, minutes=5),
                                            {"dr": "measure", "site": SITE, "invitation_id": invitation_id}),
    }  # fmt: skip
    assert max(len(name) for name in schedules) <= 64  # Scheduler's limit
    dr.answer(SITE, AnswerIn(invitation_id=invitation_id, response="NO"), s, "ops", at(T0))
    assert schedules == {}


def test_the_battery_first_then_by_comfort_priority_until_the_target(
    s: dr.Stores, dev: devices.Stores
) -> None:
    invitation_id = accepted(s, load_kw=5)
    active = dr.on_schedule({"dr": "start", "site": SITE, "invitation_id": invitation_id}, s, at(START))
    assert active.status == "active" and active.execution is not None
    # Battery 3.0 kW, then LIGHTS (priority 1) 0.5, then the water heater (2) 1.8: 5.3 >= 5; the HVAC stays.
    assert [(x.device_id, x.command, x.params, x.kw, x.status) for x in active.execution.steps] == [
        ("BATT_INV", "set_power", {"kw": -3.0, "duration_minutes": 60}, 3.0, "pending"),
        ("LIGHTS", "off", {}, 0.5, "pending"),
        ("DEVICE_002", "off", {}, 1.8, "pending"),
    ]  # fmt: skip
    assert (active.execution.planned_kw, active.execution.shortfall_kw) == (5.3, 0.0)
    assert commands(dev) == [
        ("BATT_INV", "set_power", {"kw": -3.0, "duration_minutes": 60}, "dr"),
        ("DEVICE_002", "off", {}, "dr"), ("LIGHTS", "off", {}, "dr"),
    ]  # fmt: skip
    assert dev.iot.shadow(dev.devices.get(SITE, "DEVICE_002").thing_name).desired["power"] == "off"
    # The schedule fires again (a retry): nothing is sent twice.
    again = dr.start_event(SITE, invitation_id, s, at(START + timedelta(seconds=30)))
    assert again.execution == active.execution
    assert len(commands(dev)) == 3


def test_a_device_that_fails_is_replaced_by_the_next(s: dr.Stores, dev: devices.Stores) -> None:
    failing = Failing(s.commands, {"LIGHTS"})  # type: ignore[arg-type]
    s2 = dr.Stores(**{**s.__dict__, "commands": failing})
    invitation_id = accepted(s2, load_kw=5)
    active = dr.start_event(SITE, invitation_id, s2, at(START))
    assert active.execution is not None
    assert [(x.device_id, x.status) for x in active.execution.steps] == [
        ("BATT_INV", "pending"), ("LIGHTS", "failed"), ("DEVICE_002", "pending"), ("DEVICE_001", "pending"),
    ]  # fmt: skip
    assert active.execution.steps[1].reason == "device 'LIGHTS' did not take the command"
    assert (active.execution.planned_kw, active.execution.shortfall_kw) == (7.6, 0.0)  # 3 + 1.8 + 2.8


def test_only_the_named_devices_and_the_shortfall_is_recorded(s: dr.Stores, dev: devices.Stores) -> None:
    invitation_id = accepted(s, load_kwh=10, iots=["DEVICE_001"])  # 10 kWh over an hour: 10 kW
    active = dr.start_event(SITE, invitation_id, s, at(START))
    assert active.execution is not None
    assert [x.device_id for x in active.execution.steps] == ["BATT_INV", "DEVICE_001"]
    assert (active.execution.target_kw, active.execution.planned_kw, active.execution.shortfall_kw) == (
        10,
        5.8,
        4.2,
    )


def test_the_end_returns_each_device_to_its_next_holders_wish(s: dr.Stores, dev: devices.Stores) -> None:
    # The water heater was set by hand before the event.
    devices.send(
        SITE, "DEVICE_002", CommandRequest(command="set_setpoint", params={"celsius": 55}), "manual", dev
    )
    invitation_id = accepted(s, load_kw=5)
    dr.start_event(SITE, invitation_id, s, at(START))
    thing = dev.devices.get(SITE, "DEVICE_002").thing_name
    assert dev.iot.shadow(thing).desired.get("power") == "off"
    done = dr.on_schedule(
        {"dr": "end", "site": SITE, "invitation_id": invitation_id}, s, at(START + timedelta(hours=1))
    )
    assert done.status == "completed" and done.execution is not None
    assert sorted(done.execution.released) == ["BATT_INV", "DEVICE_002", "LIGHTS"]
    assert dev.devices.controls(SITE, "DEVICE_002").keys() == {"manual"}
    assert dev.devices.controls(SITE, "LIGHTS") == {}
    # Nobody held the lights before: drawing 0.5 kW then, they are switched back on in dr's name.
    lights = dev.iot.shadow(dev.devices.get(SITE, "LIGHTS").thing_name).desired  # type: ignore[attr-defined]
    assert lights["power"] == "on"
    assert [c[1] for c in commands(dev) if c[0] == "LIGHTS"] == ["off", "on"]
    # the manual setpoint before the event, and sent again at its end in the holder's name; no "on" from dr
    assert [c[1:] for c in commands(dev) if c[0] == "DEVICE_002"] == [
        ("off", {}, "dr"),
        ("set_setpoint", {"celsius": 55.0}, "manual"),
        ("set_setpoint", {"celsius": 55.0}, "manual"),
    ]
    assert [c[1] for c in commands(dev) if c[0] == "BATT_INV"] == [
        "set_power"
    ]  # the battery: back to its plan
    assert dev.iot.shadow(thing).desired.get("setpoint_c") == 55  # the manual wish sent again
    # A retried end changes nothing.
    assert dr.end_event(SITE, invitation_id, s, at(START + timedelta(hours=1, minutes=1))) == done
    measured = dr.on_schedule({"dr": "measure", "site": SITE, "invitation_id": invitation_id}, s,
                              at(START + timedelta(hours=1, minutes=5)))  # fmt: skip
    assert measured.performance is not None  # (no meter here: "not every slot of the event was metered")
    assert s.schedules.schedules == {}  # type: ignore[union-attr]


def test_a_cancel_while_active_releases_at_once(s: dr.Stores, dev: devices.Stores) -> None:
    invitation_id = accepted(s, load_kw=1)
    dr.start_event(SITE, invitation_id, s, at(START))
    assert dev.devices.controls(SITE, "BATT_INV").keys() == {"dr"}
    cancelled = dr.cancel(SITE, invitation_id, "grid operator withdrew", s, at(START + timedelta(minutes=10)))
    assert cancelled.status == "cancelled" and cancelled.execution is not None
    assert cancelled.execution.released == ["BATT_INV"]
    assert dev.devices.controls(SITE, "BATT_INV") == {}


def test_execute_an_invitation_now_or_an_ad_hoc_target(s: dr.Stores, dev: devices.Stores) -> None:
    invitation_id = accepted(s, load_kw=2)
    first = dr.execute(SITE, ExecuteIn(invitation_id=invitation_id), s, "ops", at(T0))
    assert [x.device_id for x in first.steps] == ["BATT_INV"]
    assert dr.execute(SITE, ExecuteIn(invitation_id=invitation_id), s, "ops", at(T0)) == first
    ad_hoc = dr.execute(SITE, ExecuteIn(target_kw=1.5, duration_minutes=30, iots=["DEVICE_001"]), s, "ops",
                        at(T0 + timedelta(minutes=5)))  # fmt: skip
    # The battery is held by the first event's plan already: its command id differs, DR outranks
    # itself, so it discharges for this one too; 1.5 kW are met by it alone.
    assert [(x.device_id, x.kw) for x in ad_hoc.steps] == [("BATT_INV", 1.5)]
    held = s.invitations.get(SITE, ad_hoc.invitation_id)
    assert (held.status, held.end) == ("active", "2030-03-04T09:35:00.000Z")
    assert {f"ems-dr-{ad_hoc.invitation_id}-end", f"ems-dr-{ad_hoc.invitation_id}-measure"} <= set(
        s.schedules.schedules
    )  # type: ignore[union-attr]


def test_the_plans_kw_are_withheld_from_a_token_that_may_not_see_raw_readings(s: dr.Stores) -> None:
    invitation_id = accepted(s, load_kw=5)
    dr.start_event(SITE, invitation_id, s, at(START))
    seen = dr.get(SITE, invitation_id, s, caller(), at(START + timedelta(minutes=1)))
    assert seen.execution is not None and seen.execution.planned_kw == 5.3
    hidden = dr.get(SITE, invitation_id, s, caller(data_aggregation="room"), at(START + timedelta(minutes=1)))
    assert hidden.execution is not None
    assert (hidden.execution.planned_kw, [x.kw for x in hidden.execution.steps]) == (None, [None, None, None])
    assert [x.device_id for x in hidden.execution.steps] == ["BATT_INV", "LIGHTS", "DEVICE_002"]


def test_a_named_device_drawing_nothing_is_switched_off_at_no_kw(s: dr.Stores, dev: devices.Stores) -> None:
    assert dev.latest is not None
    dev.latest.record(SITE, [Heard("P_LIGHTS", int(START.timestamp() * 1000) - 5_000, {"power_w": 0.0})])  # type: ignore[attr-defined]
    invitation_id = accepted(s, load_kw=4, iots=["LIGHTS", "DEVICE_002"])
    active = dr.start_event(SITE, invitation_id, s, at(START))
    assert active.execution is not None
    assert [(x.device_id, x.kw) for x in active.execution.steps] == [
        ("BATT_INV", 3.0),
        ("LIGHTS", 0.0),
        ("DEVICE_002", 1.8),
    ]
    unnamed = accepted(
        s, event_time="2030-03-04T14:00:00Z", load_kw=4
    )  # every eligible device: LIGHTS is left on
    later = dr.start_event(SITE, unnamed, s, at(START + timedelta(hours=1)))
    assert later.execution is not None and "LIGHTS" not in [x.device_id for x in later.execution.steps]


def test_a_device_that_rejects_its_command_is_replaced_at_the_check(
    s: dr.Stores, dev: devices.Stores
) -> None:
    invitation_id = accepted(s, load_kw=5)
    active = dr.start_event(SITE, invitation_id, s, at(START))
    assert active.execution is not None
    [water] = [x for x in active.execution.steps if x.device_id == "DEVICE_002"]
    assert water.command_id is not None
    sent = dev.commands.get(SITE, "DEVICE_002", water.command_id)
    assert sent is not None
    devices.close(sent, "rejected", "tank below its minimum", dev, lambda: START + timedelta(seconds=40))
    checked = dr.on_schedule({"dr": "check", "site": SITE, "invitation_id": invitation_id}, s,
                             at(START + timedelta(minutes=2)))  # fmt: skip
    assert checked.execution is not None
    # 3.0 (battery) + 0.5 (lights) + 1.8 (rejected) fell to 3.5: the HVAC's 2.8 kW come in after them.
    assert [(x.device_id, x.status) for x in checked.execution.steps] == [
        ("BATT_INV", "pending"), ("LIGHTS", "pending"), ("DEVICE_002", "rejected"), ("DEVICE_001", "pending"),
    ]  # fmt: skip
    assert checked.execution.steps[2].reason == "tank below its minimum"
    assert (checked.execution.planned_kw, checked.execution.shortfall_kw) == (6.3, 0.0)
    again = dr.check_event(SITE, invitation_id, s, at(START + timedelta(minutes=3)))
    assert again.execution == checked.execution  # checked twice: nothing more is sent
    assert len(commands(dev)) == 4
    done = dr.end_event(SITE, invitation_id, s, at(START + timedelta(hours=1)))
    assert done.execution is not None and "DEVICE_002" not in done.execution.released


def test_a_pending_invitation_expires_when_its_start_schedule_fires(s: dr.Stores) -> None:
    body = {"event_time": "2030-03-04T13:00:00Z", "load_kw": 1}
    invitation_id = dr.send(SITE, InvitationIn.model_validate(body), s, at(T0)).invitation_id
    assert set(s.schedules.schedules) == {f"ems-dr-{invitation_id}-start"}  # type: ignore[union-attr]
    fired = dr.on_schedule({"dr": "start", "site": SITE, "invitation_id": invitation_id}, s, at(START))
    assert (fired.status, fired.execution) == ("expired", None)
    assert s.events.kinds()[-2:] == ["InvitationChanged", "SystemEvent"]  # type: ignore[attr-defined]
    assert s.schedules.schedules == {}  # type: ignore[union-attr]


def test_execute_and_cancel_answer_a_limited_token_without_the_plans_kw(s: dr.Stores) -> None:
    limited = caller(embargo_minutes=30)
    plan = dr.execute(SITE, ExecuteIn(target_kw=1.0, duration_minutes=30), s, "ops", at(T0), caller=limited)
    assert (plan.planned_kw, [x.kw for x in plan.steps], plan.steps[0].device_id) == (
        None,
        [None],
        "BATT_INV",
    )
    cancelled = dr.cancel(SITE, plan.invitation_id, None, s, at(T0 + timedelta(minutes=1)), caller=limited)
    assert cancelled.execution is not None and cancelled.execution.planned_kw is None
    assert cancelled.withheld == "the plan's kW are devices' raw readings beyond this token's limits"
    assert s.invitations.get(SITE, plan.invitation_id).execution.planned_kw == 1.0  # type: ignore[union-attr]


def test_a_named_load_idle_but_on_is_switched_back_on_and_one_that_was_off_is_left(
    s: dr.Stores, dev: devices.Stores
) -> None:
    assert dev.latest is not None
    moment_ms = int(START.timestamp() * 1000) - 5_000
    dev.latest.record(
        SITE,
        [Heard("P_LIGHTS", moment_ms, {"power_w": 0.0}), Heard("P_DEVICE_002", moment_ms, {"power_w": 0.0})],
    )  # type: ignore[attr-defined]
    dev.iot.report(dev.devices.get(SITE, "LIGHTS").thing_name, {"power": "on"})  # type: ignore[attr-defined]
    dev.iot.report(dev.devices.get(SITE, "DEVICE_002").thing_name, {"power": "off"})  # type: ignore[attr-defined]
    invitation_id = accepted(s, load_kw=5, iots=["LIGHTS", "DEVICE_002"])
    active = dr.start_event(SITE, invitation_id, s, at(START))
    assert active.execution is not None
    assert [(x.device_id, x.kw, x.restore) for x in active.execution.steps] == [
        ("BATT_INV", 3.0, None), ("LIGHTS", 0.0, "on"), ("DEVICE_002", 0.0, None),
    ]  # fmt: skip
    dr.end_event(SITE, invitation_id, s, at(START + timedelta(hours=1)))
    assert [c[1] for c in commands(dev) if c[0] == "LIGHTS"] == ["off", "on"]
    assert [c[1] for c in commands(dev) if c[0] == "DEVICE_002"] == ["off"]  # it was off: left off
