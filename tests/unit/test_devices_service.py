"""ems.devices.service on fakes: devices with their things, commands that close from reports or
time out, control priority, presence, the hourly plan and the summary (with a limited token)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ems.core.errors import Conflict, Invalid, NotFound
from ems.devices import service as devices
from ems.devices.models import CommandRequest, DeviceIn, DeviceUpdate, ListQuery
from ems.registry.status import Heard
from tests.support.fakes import caller
from tests.support.fakes_devices import MemoryIot, memory_stores

T0 = datetime(2030, 3, 30, 12, 0, tzinfo=UTC)
SITE = "hq"


def at(seconds: float = 0) -> Any:
    return lambda: T0 + timedelta(seconds=seconds)


@pytest.fixture
def s() -> devices.Stores:
    stores = memory_stores()
    devices.register(SITE, DeviceIn(device_id="DEVICE_001", name="Office HVAC", device_type="hvac",
                                    room="Office", rated_power_kw=3.0, dr_eligible=True), stores, at())  # fmt: skip
    devices.register(SITE, DeviceIn(device_id="BATT001", name="Battery", device_type="battery_inverter",
                                    rated_power_kw=5.0), stores, at())  # fmt: skip
    stores.events.events.clear()  # type: ignore[attr-defined]
    return stores


def iot(s: devices.Stores) -> MemoryIot:
    assert isinstance(s.iot, MemoryIot)
    return s.iot


def kinds(s: devices.Stores) -> list[str]:
    return s.events.kinds()  # type: ignore[attr-defined,no-any-return]


def cmd(command: str, command_id: str | None = None, **params: Any) -> CommandRequest:
    return CommandRequest(command=command, params=params, command_id=command_id)  # type: ignore[arg-type]


def report(s: devices.Stores, thing: str, command_id: str, status: str = "applied", **state: Any) -> str:
    last: dict[str, Any] = {"command_id": command_id, "status": status}
    if status == "rejected":
        last["reason"] = "compressor fault"
    document = iot(s).report(thing, {**state, "command_id": command_id, "last_command": last})
    return devices.on_shadow_report(thing, document, s, at(30))


# ---------------------------------------------------------------- devices


def test_registering_creates_the_site_qualified_thing_with_its_type_and_attributes(s: devices.Stores) -> None:
    assert iot(s).things["hq:DEVICE_001"] == {
        "type": "hvac", "attributes": {"site": "hq", "device_id": "DEVICE_001", "device_type": "hvac"},
    }  # fmt: skip
    other = devices.register(
        "lab", DeviceIn(device_id="DEVICE_001", name="x", device_type="plug"), _with_site(s, "lab")
    )
    assert other.thing_name == "lab:DEVICE_001"  # two sites' DEVICE_001 never collide
    assert set(iot(s).things) == {"hq:DEVICE_001", "hq:BATT001", "lab:DEVICE_001"}


def _with_site(s: devices.Stores, site: str) -> devices.Stores:
    s.sites.add_site(site)  # type: ignore[union-attr]
    return s


def test_a_second_registration_is_409_and_an_unknown_site_404(s: devices.Stores) -> None:
    with pytest.raises(Conflict) as twice:
        devices.register(SITE, DeviceIn(device_id="DEVICE_001", name="again", device_type="hvac"), s)
    assert twice.value.field == "device_id"
    with pytest.raises(NotFound):
        devices.register("nowhere", DeviceIn(device_id="D", name="d", device_type="plug"), s)


def test_get_shows_the_shadow_delta_connectivity_and_last_command(s: devices.Stores) -> None:
    view = devices.get_device(SITE, "DEVICE_001", caller(), s)
    assert (view.connectivity, view.last_command, view.shadow.desired) == ("unknown", None, {})
    sent = devices.send(SITE, "DEVICE_001", cmd("set_setpoint", celsius=21), "manual", s, "alice", at())
    devices.on_presence(
        {"clientId": "hq:DEVICE_001", "eventType": "connected", "timestamp": 1_900_000_000_000}, s
    )
    view = devices.get_device(SITE, "DEVICE_001", caller(), s)
    assert view.shadow.desired == {"setpoint_c": 21.0, "command_id": sent.command_id}
    assert view.shadow.delta == {"setpoint_c": 21.0, "command_id": sent.command_id}
    assert (view.connectivity, view.controller) == ("online", "manual")
    assert view.last_command is not None and (view.last_command.command_id, view.last_command.status) == (
        sent.command_id, "pending",
    )  # fmt: skip


def test_presence_moves_only_forward_in_time(s: devices.Stores) -> None:
    thing = "hq:DEVICE_001"
    devices.on_presence({"clientId": thing, "eventType": "connected", "timestamp": 2000}, s)
    assert devices.on_presence(
        {"clientId": thing, "eventType": "disconnected", "timestamp": 1000}, s
    ).endswith("(older than the last event)")
    assert devices.get_device(SITE, "DEVICE_001", caller(), s).connectivity == "online"
    devices.on_presence({"clientId": thing, "eventType": "disconnected", "timestamp": 3000}, s)
    assert devices.get_device(SITE, "DEVICE_001", caller(), s).connectivity == "offline"
    assert devices.on_presence({"clientId": "someone:else", "eventType": "connected", "timestamp": 1}, s) == (
        "unknown client someone:else"
    )


def test_update_keeps_what_it_does_not_name(s: devices.Stores) -> None:
    updated = devices.update_device(SITE, "DEVICE_001", DeviceUpdate(rated_power_kw=3.5), s)
    assert (updated.rated_power_kw, updated.name, updated.room) == (3.5, "Office HVAC", "Office")


def test_deleting_a_device_with_open_commands_is_409_unless_forced(s: devices.Stores) -> None:
    devices.send(SITE, "DEVICE_001", cmd("on"), "manual", s, now=at())
    with pytest.raises(Conflict) as refused:
        devices.delete_device(SITE, "DEVICE_001", False, s)
    assert "1 open command" in refused.value.message and "force=true" in refused.value.message
    assert devices.delete_device(SITE, "DEVICE_001", True, s).commands_closed == 1
    assert "hq:DEVICE_001" not in iot(s).things
    with pytest.raises(NotFound):
        devices.get_device(SITE, "DEVICE_001", caller(), s)
    assert devices.delete_device(SITE, "BATT001", False, s).deleted  # no open command: no force needed


# ---------------------------------------------------------------- commands


def test_a_command_goes_to_the_shadow_and_the_topic_and_closes_when_the_device_reports(
    s: devices.Stores,
) -> None:
    sent = devices.send(SITE, "DEVICE_001", cmd("set_mode", mode="cool"), "manual", s, "alice", at())
    assert (sent.status, sent.source, sent.sent_by) == ("pending", "manual", "alice")
    assert sent.expires_at == "2030-03-30T12:02:00.000Z"  # hvac: 120 s
    assert iot(s).published == [(
        "ems/hq/devices/DEVICE_001/commands",
        {"command_id": sent.command_id, "command": "set_mode", "params": {"mode": "cool"},
         "issued_at": "2030-03-30T12:00:00.000Z"},
    )]  # fmt: skip
    assert report(s, "hq:DEVICE_001", sent.command_id, mode="cool") == f"{sent.command_id} applied"
    closed = devices.list_commands(SITE, "DEVICE_001", ListQuery(), s).items[0]
    assert (closed.status, closed.closed_at) == ("applied", "2030-03-30T12:00:30.000Z")
    assert iot(s).shadow("hq:DEVICE_001").delta == {}
    assert kinds(s) == ["DeviceCommandChanged", "DeviceCommandChanged"]
    # The same report again (a redelivery) changes nothing.
    assert report(s, "hq:DEVICE_001", sent.command_id, mode="cool") == "already applied"
    assert kinds(s) == ["DeviceCommandChanged", "DeviceCommandChanged"]


def test_a_rejected_command_says_why_and_leaves_no_delta(s: devices.Stores) -> None:
    sent = devices.send(SITE, "DEVICE_001", cmd("set_setpoint", celsius=18), "manual", s, now=at())
    report(s, "hq:DEVICE_001", sent.command_id, status="rejected")
    closed = devices.list_commands(SITE, "DEVICE_001", ListQuery(), s).items[0]
    assert (closed.status, closed.reason) == ("rejected", "compressor fault")
    assert iot(s).shadow("hq:DEVICE_001").desired == {}


def test_the_same_command_id_is_one_command_sent_again_while_pending(s: devices.Stores) -> None:
    first = devices.send(SITE, "DEVICE_001", cmd("on", "c-1"), "manual", s, now=at())
    again = devices.send(SITE, "DEVICE_001", cmd("on", "c-1"), "manual", s, now=at(5))
    assert again == first
    assert len(iot(s).published) == 2  # the device applies c-1 once, whichever copy it gets
    assert devices.list_commands(SITE, "DEVICE_001", ListQuery(), s).count == 1
    with pytest.raises(Conflict) as other:
        devices.send(SITE, "DEVICE_001", cmd("off", "c-1"), "manual", s)
    assert other.value.field == "command_id"
    report(s, "hq:DEVICE_001", "c-1", power="on")
    devices.send(SITE, "DEVICE_001", cmd("on", "c-1"), "manual", s)
    assert len(iot(s).published) == 2  # closed: not sent again


def test_a_bad_command_is_refused_before_anything_is_written(s: devices.Stores) -> None:
    with pytest.raises(Invalid) as refused:
        devices.send(SITE, "BATT001", cmd("set_power", kw=7), "manual", s)
    assert refused.value.field == "params.kw" and "-5 to 5" in refused.value.message
    assert iot(s).published == [] and kinds(s) == []
    assert devices.list_commands(SITE, "BATT001", ListQuery(), s).count == 0


def test_commands_list_newest_first_a_page_at_a_time(s: devices.Stores) -> None:
    ids = [
        devices.send(SITE, "DEVICE_001", cmd("on", f"c-{i}"), "manual", s, now=at(i)).command_id
        for i in range(5)
    ]
    first = devices.list_commands(SITE, "DEVICE_001", ListQuery(limit=3), s)
    second = devices.list_commands(SITE, "DEVICE_001", ListQuery(limit=3, next_token=first.next_token), s)
    assert [c.command_id for c in first.items + second.items] == ids[::-1]
    assert second.next_token is None


def test_an_unanswered_command_times_out_and_raises_an_alert_and_a_late_report_leaves_it(
    s: devices.Stores,
) -> None:
    sent = devices.send(SITE, "DEVICE_001", cmd("off"), "manual", s, now=at())
    assert devices.check_stale(s, at(119)) == {"timed_out": 0}
    assert devices.check_stale(s, at(121)) == {"timed_out": 1}
    assert kinds(s) == ["DeviceCommandChanged", "DeviceCommandChanged", "SystemEvent"]
    alert = s.events.events[-1].detail  # type: ignore[attr-defined]
    assert (alert["site"], alert["kind"], alert["severity"]) == ("hq", "command_timed_out", "warning")
    assert "DEVICE_001" in alert["message"] and sent.command_id in alert["message"]
    assert report(s, "hq:DEVICE_001", sent.command_id, power="off") == "already timed_out"
    assert devices.check_stale(s, at(600)) == {"timed_out": 0}


def test_closing_a_closed_command_is_refused(s: devices.Stores) -> None:
    sent = devices.send(SITE, "DEVICE_001", cmd("off"), "manual", s, now=at())
    closed = devices.close(sent, "applied", None, s)
    assert closed is not None
    with pytest.raises(Conflict):
        devices.close(closed, "timed_out", None, s)
    assert devices.close(sent, "rejected", None, s) is None  # the stored one is applied already


# ---------------------------------------------------------------- who controls a device


def test_a_rule_cannot_undo_a_dr_shed_and_release_restores_the_next_holder(s: devices.Stores) -> None:
    devices.send(SITE, "DEVICE_001", cmd("set_mode", mode="cool"), "rule", s, now=at())
    devices.send(SITE, "DEVICE_001", cmd("set_setpoint", celsius=24), "manual", s, "alice", at(1))
    shed = devices.send(SITE, "DEVICE_001", cmd("off"), "dr", s, "dr", at(2))
    for source in ("rule", "schedule", "battery", "manual"):
        with pytest.raises(Conflict) as refused:
            devices.send(SITE, "DEVICE_001", cmd("on"), source, s, now=at(3))  # type: ignore[arg-type]
        assert "controlled by dr" in refused.value.message
    assert devices.get_device(SITE, "DEVICE_001", caller(), s).last_command.command_id == shed.command_id  # type: ignore[union-attr]

    released = devices.release(SITE, "DEVICE_001", "dr", s)
    assert (released.controller, released.restored.command, released.restored.params) == (  # type: ignore[union-attr]
        "manual", "set_setpoint", {"celsius": 24.0},
    )  # fmt: skip
    assert released.restored.source == "manual"  # type: ignore[union-attr]
    released = devices.release(SITE, "DEVICE_001", "manual", s)
    assert (released.controller, released.restored.command) == ("rule", "set_mode")  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        devices.release(SITE, "DEVICE_001", "dr", s)


# ---------------------------------------------------------------- the plan and the summary


def test_the_plan_is_per_device_and_local_hour(s: devices.Stores) -> None:
    plan = devices.put_plan(SITE, {"DEVICE_001": {"14": "no-participation", "15": "shifting"}}, s)
    assert plan["DEVICE_001"]["14"] == "no-participation" and plan["DEVICE_001"]["13"] == "participation"
    assert set(plan) == {"DEVICE_001", "BATT001"} and len(plan["BATT001"]) == 24
    # 12:00 UTC on 2030-03-30 is 13:00 in Berlin (CET), the next day 14:00 (CEST).
    stored = s.devices.get_plan(SITE)
    assert devices.instruction_at(stored, "DEVICE_001", T0, "Europe/Berlin") == "participation"
    assert (
        devices.instruction_at(stored, "DEVICE_001", T0 + timedelta(days=1), "Europe/Berlin")
        == "no-participation"
    )
    with pytest.raises(Invalid) as bad:
        devices.put_plan(SITE, {"DEVICE_001": {"24": "shifting"}}, s)
    assert bad.value.field == "DEVICE_001.24"
    with pytest.raises(Invalid) as bad:
        devices.put_plan(SITE, {"DEVICE_001": {"3": "maybe"}}, s)
    assert (
        bad.value.field == "DEVICE_001.3" and "participation, no-participation, shifting" in bad.value.message
    )


def _powered(s: devices.Stores) -> None:
    s.sites.add_sensor(SITE, "HVAC_POWER", "power", device_id="DEVICE_001")  # type: ignore[union-attr]
    s.sites.add_sensor(SITE, "BATT_POWER", "power", device_id="BATT001")  # type: ignore[union-attr]
    ts = int(T0.timestamp() * 1000) - 10_000
    s.latest.record(
        SITE, [Heard("HVAC_POWER", ts, {"power_w": 2400.0}), Heard("BATT_POWER", ts, {"power_w": 1000.0})]
    )  # type: ignore[union-attr]
    devices.on_presence({"clientId": "hq:DEVICE_001", "eventType": "connected", "timestamp": 1}, s)
    devices.on_presence({"clientId": "hq:BATT001", "eventType": "disconnected", "timestamp": 1}, s)


def test_the_summary_counts_by_type_and_state_with_power_now(s: devices.Stores) -> None:
    _powered(s)
    devices.send(SITE, "BATT001", cmd("set_power", kw=2), "battery", s, now=at())
    summary = devices.summary(SITE, caller(), s, at())
    assert (summary.total, summary.by_type) == (2, {"hvac": 1, "battery_inverter": 1})
    assert summary.by_state == {"online": 1, "offline": 1, "commanded": 1}
    assert (summary.rated_power_kw, summary.current_power_kw) == (8.0, 3.4)
    assert (summary.dr_eligible_count, summary.dr_eligible_rated_kw, summary.dr_eligible_now_kw) == (
        1,
        3.0,
        2.4,
    )
    assert (summary.hour, summary.timezone) == (13, "Europe/Berlin")
    devices.put_plan(SITE, {"DEVICE_001": {"13": "no-participation"}}, s)
    assert devices.summary(SITE, caller(), s, at()).dr_eligible_now_kw == 0.0


@pytest.mark.parametrize("limits", [{"embargo_minutes": 60}, {"time_aggregation": "15m"}])
def test_the_summary_shows_no_power_to_a_token_that_may_not_see_live_readings(
    s: devices.Stores, limits: dict[str, Any]
) -> None:
    _powered(s)
    summary = devices.summary(SITE, caller(**limits), s, at())
    assert (summary.current_power_kw, summary.dr_eligible_now_kw) == (None, None)
    assert (summary.total, summary.rated_power_kw) == (2, 8.0)
    assert devices.summary(SITE, caller(data_aggregation="site"), s, at()).current_power_kw == 3.4


def test_other_domains_send_and_release_through_device_commands(s: devices.Stores) -> None:
    commander = devices.DeviceCommands(s, sent_by="dr")
    shed = commander.send(
        SITE, "BATT001", "set_power", {"kw": -3, "duration_minutes": 60}, "dr", "dr-inv-7-BATT001"
    )
    assert (shed.source, shed.sent_by, shed.params) == ("dr", "dr", {"kw": -3.0, "duration_minutes": 60})
    with pytest.raises(Conflict):
        commander.send(SITE, "BATT001", "set_power", {"kw": 2}, "battery")
    assert commander.release(SITE, "BATT001", "dr").controller is None
    assert commander.send(SITE, "BATT001", "set_power", {"kw": 2}, "battery").status == "pending"


@pytest.mark.parametrize(
    "limits",
    [
        {"data_aggregation": "room"},
        {"data_aggregation": "site"},
        {"embargo_minutes": 15},
        {"time_aggregation": "1h"},
    ],
)
def test_a_limited_token_sees_no_reported_state(s: devices.Stores, limits: dict[str, Any]) -> None:
    sent = devices.send(SITE, "DEVICE_001", cmd("set_setpoint", celsius=21), "manual", s, now=at())
    iot(s).report("hq:DEVICE_001", {"setpoint_c": 21.0, "room_c": 23.4, "command_id": sent.command_id})
    full = devices.get_device(SITE, "DEVICE_001", caller(), s).shadow
    assert (full.reported["room_c"], full.withheld) == (23.4, None)
    limited = devices.get_device(SITE, "DEVICE_001", caller(**limits), s).shadow
    assert (limited.reported, limited.delta, limited.desired) == ({}, {}, full.desired)
    assert limited.withheld == "this token does not see one device's live readings"


def test_an_explicit_null_in_an_update_changes_nothing(s: devices.Stores) -> None:
    updated = devices.update_device(
        SITE, "DEVICE_001", DeviceUpdate.model_validate({"sensors": None, "name": "HVAC 1"}), s
    )
    assert (updated.sensors, updated.name, updated.rated_power_kw) == ([], "HVAC 1", 3.0)
