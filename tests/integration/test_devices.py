"""Devices against moto through DevicesFunction: the HTTP routes (replayed from events/http/devices),
the IoT thing and classic shadow in moto's IoT, the device's report run through the template's own
topic rule SQL (ems_local.iotsql) as IoT Core would, presence events, the stale check, and the
DeviceCommandChanged events pushed by RealtimeFunction. DevicesFunction's events go to a list."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from ems.core import clock
from ems.core.clock import parse_time
from ems_local import iotsql
from ems_local.template import Stack
from tests.support.events import assert_shaped_as_api_gateway_sends_it, replay
from tests.support.fakes import ListPublisher
from tests.support.inprocess import EVENTS, InProcessApi, load_function, ok, refused
from tests.support.tokens import issue

SITE = "hq"
HQ = {"x-site": SITE}
DEVICES = EVENTS / "http" / "devices"


def sample(name: str) -> str:
    return f"devices/{name}"


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch, api: InProcessApi, admin_token: str) -> ListPublisher:
    ok(api.request("POST", "/api/v1/sites", token=admin_token,
                   body={"site_id": SITE, "name": "HQ", "timezone": "Europe/Berlin"}), 201)  # fmt: skip
    module = load_function("functions/devices/")
    module.stores.cache_clear()
    real, fake = module.stores(), ListPublisher()
    monkeypatch.setattr(module, "stores", lambda: replace(real, events=fake))
    return fake


def register(api: InProcessApi, token: str, **body: Any) -> dict[str, Any]:
    return ok(api.request("POST", "/api/v1/iot/devices", token=token, headers=HQ, body=body), 201)  # type: ignore[no-any-return]


def rule_event(name: str, topic: str, payload: dict[str, Any], client_id: str = "") -> Any:
    """What the template's topic rule `name` of DevicesFunction hands the function for a message."""
    sql = Stack.from_file().functions()["DevicesFunction"]["Events"][name]["Properties"]["Sql"]
    return iotsql.parse(sql).apply(topic, json.dumps(payload).encode(), client_id, 1_893_456_000_000)


def device_reports(api: InProcessApi, thing: str, reported: dict[str, Any]) -> Any:
    """The device updates its shadow (moto's IoT data plane); IoT Core's update/accepted document goes
    through the ShadowReports rule to DevicesFunction."""
    answer = boto3.client("iot-data", region_name="us-east-1").update_thing_shadow(
        thingName=thing, payload=json.dumps({"state": {"reported": reported}}).encode()
    )
    accepted = json.loads(answer["payload"].read())
    event = rule_event("ShadowReports", f"$aws/things/{thing}/shadow/update/accepted", accepted)
    return api.invoke("DevicesFunction", event)


def test_every_devices_route_has_exactly_one_sample() -> None:
    routes = [r for r in Stack.from_file().http_routes() if r["function"] == "DevicesFunction"]
    keys = [json.loads(p.read_text())["routeKey"] for p in sorted(DEVICES.glob("*.json"))]
    assert sorted(keys) == sorted(f"{r['method']} {r['path']}" for r in routes)
    assert len(keys) == 21


@pytest.mark.parametrize("path", sorted(DEVICES.glob("*.json")), ids=lambda p: p.stem)
def test_each_devices_sample_is_shaped_as_api_gateway_sends_it(path: Path) -> None:
    assert_shaped_as_api_gateway_sends_it(json.loads(path.read_text()), ("DevicesFunction",))


def test_register_get_command_report_and_list_from_the_samples(
    api: InProcessApi, admin_token: str, published: ListPublisher
) -> None:
    created = ok(replay(api, sample("devices-create"), admin_token), 201)
    assert (created["thing_name"], created["site_id"]) == ("hq:DEVICE_001", "hq")
    thing = boto3.client("iot", region_name="us-east-1").describe_thing(thingName="hq:DEVICE_001")
    assert (thing["thingTypeName"], thing["attributes"]) == (
        "hvac", {"site": "hq", "device_id": "DEVICE_001", "device_type": "hvac"},
    )  # fmt: skip

    command = ok(replay(api, sample("devices-instructions"), admin_token), 201)
    assert (command["command_id"], command["status"], command["source"]) == (
        "cmd-2030-01-01-0001",
        "pending",
        "manual",
    )
    view = ok(replay(api, sample("devices-get"), admin_token))
    assert view["shadow"]["desired"] == {"mode": "cool", "command_id": "cmd-2030-01-01-0001"}
    assert view["shadow"]["delta"] == {"mode": "cool", "command_id": "cmd-2030-01-01-0001"}
    assert (view["connectivity"], view["last_command"]["status"], view["controller"]) == (
        "unknown",
        "pending",
        "manual",
    )

    outcome = device_reports(api, "hq:DEVICE_001", {
        "mode": "cool", "command_id": "cmd-2030-01-01-0001",
        "last_command": {"command_id": "cmd-2030-01-01-0001", "status": "applied"},
    })  # fmt: skip
    assert outcome == {"outcome": "cmd-2030-01-01-0001 applied"}
    view = ok(replay(api, sample("devices-get"), admin_token))
    assert (view["last_command"]["status"], view["shadow"]["delta"]) == ("applied", {})
    listed = ok(replay(api, sample("devices-commands"), admin_token))
    assert [(c["command_id"], c["status"]) for c in listed["items"]] == [("cmd-2030-01-01-0001", "applied")]
    assert [e.detail["command"]["status"] for e in published.events] == ["pending", "applied"]

    # The retry of the seed's POST is the same command, not a second one.
    again = ok(replay(api, sample("devices-instructions"), admin_token), 201)
    assert (again["command_id"], again["status"]) == ("cmd-2030-01-01-0001", "applied")
    assert ok(replay(api, sample("devices-commands"), admin_token))["count"] == 1


def test_the_command_reaches_the_topic(api: InProcessApi, admin_token: str, published: ListPublisher) -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.iotdata.models import iotdata_backends

    register(
        api,
        admin_token,
        device_id="BATT001",
        name="Battery",
        device_type="battery_inverter",
        rated_power_kw=5,
    )
    body = {"command": "set_power", "params": {"kw": -2.5, "duration_minutes": 30}, "command_id": "b-1"}
    ok(
        api.request(
            "POST", "/api/v1/iot/devices/BATT001/instructions", token=admin_token, headers=HQ, body=body
        ),
        201,
    )
    messages = iotdata_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].published_payloads
    topic, payload = messages[-1]
    assert topic == "ems/hq/devices/BATT001/commands"
    assert {k: v for k, v in json.loads(payload).items() if k != "issued_at"} == {
        "command_id": "b-1", "command": "set_power", "params": {"kw": -2.5, "duration_minutes": 30},
    }  # fmt: skip


def test_a_limited_token_s_set_power_422_names_the_rated_power_and_no_reading(
    api: InProcessApi, admin_token: str, published: ListPublisher
) -> None:
    register(api, admin_token, device_id="BATT001", name="Battery", device_type="battery_inverter",
             rated_power_kw=5)  # fmt: skip
    sensor = {
        "sensor_id": "BATT001",
        "name": "Battery",
        "sensor_type": "battery_inverter",
        "device_id": "BATT001",
    }
    ok(api.request("POST", "/api/v1/sensors", token=admin_token, headers=HQ, body=sensor), 201)  # fmt: skip
    body = {"readings": [{"sensor_id": "BATT001", "ts": int(time.time() * 1000) - 1000,
                          "metrics": {"soc_pct": 37.25, "power_w": -1234}}]}  # fmt: skip
    ingested = ok(api.request("POST", "/api/v1/data/ingest", token=admin_token, headers=HQ, body=body))
    assert ingested["accepted"] == 1  # the live SoC and power that the 422 must not show
    limited = issue(["iot"], sites=[SITE], embargo_minutes=30)
    command = {"command": "set_power", "params": {"kw": -7, "duration_minutes": 30}}
    message = refused(
        api.request("POST", "/api/v1/iot/devices/BATT001/instructions", token=limited, headers=HQ, body=command),
        422, "params.kw",
    )  # fmt: skip
    assert "-5 to 5 kW" in message  # the device's rated power, a record
    assert not any(value in message for value in ("37.25", "1234", "1.234"))
    assert (
        ok(replay(api, sample("devices-commands"), admin_token, path={"device_id": "BATT001"}))["count"] == 0
    )


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"command": "set_setpoint", "params": {"celsius": 35}}, "params.celsius", "16 to 30"),
        ({"command": "curtail", "params": {"kw": 1}}, "command", "a hvac takes on, off"),
        ({"command": "warp"}, "command", "Input should be"),
        ({"command": "on", "command_id": "no spaces"}, "command_id", "pattern"),
    ],
)
def test_a_bad_command_is_a_422_naming_the_field_and_nothing_is_written(
    api: InProcessApi,
    admin_token: str,
    published: ListPublisher,
    body: dict[str, Any],
    field: str,
    words: str,
) -> None:
    ok(replay(api, sample("devices-create"), admin_token), 201)
    message = refused(replay(api, sample("devices-instructions"), admin_token, body=body), 422, field)
    assert words in message
    assert ok(replay(api, sample("devices-commands"), admin_token))["count"] == 0
    assert published.events == []


def test_delete_with_open_commands_is_409_unless_forced(
    api: InProcessApi, admin_token: str, published: ListPublisher
) -> None:
    ok(replay(api, sample("devices-create"), admin_token), 201)
    ok(replay(api, sample("devices-instructions"), admin_token), 201)
    message = refused(replay(api, sample("devices-delete"), admin_token, query={}), 409, "device_id")
    assert "1 open command(s) (cmd-2030-01-01-0001)" in message
    assert ok(replay(api, sample("devices-delete"), admin_token)) == {"deleted": True, "commands_closed": 1}
    refused(replay(api, sample("devices-get"), admin_token), 404, "device_id")
    with pytest.raises(Exception, match="ResourceNotFound"):
        boto3.client("iot", region_name="us-east-1").describe_thing(thingName="hq:DEVICE_001")


def test_manual_is_refused_while_dr_holds_and_release_restores(
    api: InProcessApi, admin_token: str, published: ListPublisher
) -> None:
    from ems.devices import service as devices
    from ems.devices.models import CommandRequest

    ok(replay(api, sample("devices-create"), admin_token), 201)
    ok(replay(api, sample("devices-instructions"), admin_token), 201)  # manual: cool
    stores = load_function("functions/devices/").stores()
    devices.send(SITE, "DEVICE_001", CommandRequest(command="off"), "dr", stores, "dr")
    body = {"command": "on"}
    message = refused(replay(api, sample("devices-instructions"), admin_token, body=body), 409, "source")
    assert "controlled by dr" in message
    released = ok(
        replay(api, sample("devices-release"), admin_token, path={"device_id": "DEVICE_001", "source": "dr"})
    )
    assert (released["controller"], released["restored"]["command"], released["restored"]["params"]) == (
        "manual", "set_mode", {"mode": "cool"},
    )  # fmt: skip
    refused(
        replay(
            api, sample("devices-release"), admin_token, path={"device_id": "DEVICE_001", "source": "nobody"}
        ),
        404,
        "source",
    )


def test_presence_events_through_the_rule_give_connectivity(
    api: InProcessApi, admin_token: str, published: ListPublisher
) -> None:
    ok(replay(api, sample("devices-create"), admin_token), 201)
    for name in ("presence-connected", "presence-disconnected"):
        payload = {
            k: v
            for k, v in json.loads((EVENTS / "iot" / f"{name}.json").read_text()).items()
            if k != "ems_event"
        }
        topic = f"$aws/events/presence/{payload['eventType']}/hq:DEVICE_001"
        event = rule_event("Presence", topic, payload)
        assert event == json.loads(
            (EVENTS / "iot" / f"{name}.json").read_text()
        )  # the sample is what the rule sends
        api.invoke("DevicesFunction", event)
        view = ok(replay(api, sample("devices-get"), admin_token))
        assert view["connectivity"] == ("online" if payload["eventType"] == "connected" else "offline")


def test_the_shadow_sample_closes_its_command(
    api: InProcessApi, admin_token: str, published: ListPublisher
) -> None:
    ok(replay(api, sample("devices-create"), admin_token), 201)
    ok(replay(api, sample("devices-instructions"), admin_token), 201)
    event = json.loads((EVENTS / "iot" / "shadow-accepted.json").read_text())
    assert api.invoke("DevicesFunction", event) == {"outcome": "cmd-2030-01-01-0001 applied"}
    assert api.invoke("DevicesFunction", event) == {"outcome": "already applied"}


def test_the_stale_check_times_out_and_raises_the_alert(
    api: InProcessApi, admin_token: str, published: ListPublisher
) -> None:
    ok(replay(api, sample("devices-create"), admin_token), 201)
    command = ok(replay(api, sample("devices-instructions"), admin_token), 201)
    event = json.loads((EVENTS / "schedule" / "stale-commands.json").read_text())
    assert api.invoke("DevicesFunction", event) == {"timed_out": 0}
    later = parse_time(command["expires_at"], "t") + timedelta(seconds=1)
    clock.run_on(clock.ScaledClock(later, time.time()))
    try:
        assert api.invoke("DevicesFunction", event) == {"timed_out": 1}
    finally:
        clock.run_on(None)
    assert ok(replay(api, sample("devices-commands"), admin_token))["items"][0]["status"] == "timed_out"
    assert published.kinds() == ["DeviceCommandChanged", "DeviceCommandChanged", "SystemEvent"]
    alert = published.events[-1]
    assert (alert.source, alert.detail["kind"], alert.detail["site"]) == (
        "ems.devices",
        "command_timed_out",
        "hq",
    )


def test_plan_and_summary_from_the_samples(
    api: InProcessApi, admin_token: str, published: ListPublisher
) -> None:
    ok(replay(api, sample("devices-create"), admin_token), 201)
    plan = ok(replay(api, sample("instructions-put"), admin_token))
    assert (plan["DEVICE_001"]["17"], plan["DEVICE_001"]["18"], plan["DEVICE_001"]["19"]) == (
        "no-participation", "shifting", "participation",
    )  # fmt: skip
    assert ok(replay(api, sample("instructions-get"), admin_token)) == plan
    refused(
        replay(api, sample("instructions-put"), admin_token, body={"NOPE": {"1": "shifting"}}),
        404,
        "device_id",
    )
    summary = ok(replay(api, sample("devices-summary"), admin_token))
    assert (summary["total"], summary["by_type"], summary["rated_power_kw"], summary["timezone"]) == (
        1, {"hvac": 1}, 3.0, "Europe/Berlin",
    )  # fmt: skip
    assert summary["current_power_kw"] == 0.0  # no power sensor reports for it yet
    limited = issue(["iot"], sites=[SITE], embargo_minutes=30)
    assert ok(api.request("GET", "/api/v1/iot/devices/summary", token=limited))["current_power_kw"] is None


def test_device_list_pages_and_put(api: InProcessApi, admin_token: str, published: ListPublisher) -> None:
    for i in range(3):
        register(api, admin_token, device_id=f"PLUG_{i}", name=f"Plug {i}", device_type="plug")
    first = ok(api.request("GET", "/api/v1/iot/devices", token=admin_token, headers=HQ, query={"limit": 2}))
    rest = ok(api.request("GET", "/api/v1/iot/devices", token=admin_token, headers=HQ,
                          query={"limit": 2, "next_token": first["next_token"]}))  # fmt: skip
    assert [d["device_id"] for d in first["items"] + rest["items"]] == ["PLUG_0", "PLUG_1", "PLUG_2"]
    put = ok(replay(api, sample("devices-put"), admin_token, path={"device_id": "PLUG_1"}))
    assert (put["rated_power_kw"], put["comfort_priority"], put["name"]) == (3.5, 4, "Plug 1")
    refused(api.request("POST", "/api/v1/iot/devices", token=admin_token, headers=HQ,
                        body={"device_id": "PLUG_1", "name": "x", "device_type": "plug"}), 409, "device_id")  # fmt: skip
    refused(api.request("POST", "/api/v1/iot/devices", token=admin_token, headers=HQ,
                        body={"device_id": "X", "name": "x", "device_type": "toaster"}), 422, "device_type")  # fmt: skip


def test_realtime_pushes_the_command_on_its_device_topic(
    api: InProcessApi, admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sample DeviceCommandChanged reaches a connection subscribed to devices/DEVICE_001 of hq."""
    realtime = load_function("functions/realtime/")
    posts: list[tuple[str, Any]] = []

    class Recorder:
        def post(self, connection_id: str, data: bytes) -> None:
            posts.append((connection_id, json.loads(data)))

    monkeypatch.setattr(realtime, "poster", Recorder())
    ws = json.loads((EVENTS / "websocket" / "connect.json").read_text())
    token = issue(["iot"], sites=[SITE])
    assert (
        api.invoke("RealtimeFunction", {**ws, "queryStringParameters": {"token": token}})["statusCode"] == 200
    )
    subscribe = json.loads((EVENTS / "websocket" / "subscribe.json").read_text())
    subscribe["body"] = json.dumps({"action": "subscribe", "topics": ["devices/DEVICE_001", "devices/OTHER"]})
    reply = json.loads(api.invoke("RealtimeFunction", subscribe)["body"])
    assert reply["data"]["accepted"] == ["devices/DEVICE_001", "devices/OTHER"]

    event = json.loads((EVENTS / "eventbridge" / "device-command-changed.json").read_text())
    assert api.invoke("RealtimeFunction", event) == {"connections": 1, "posts": 1, "failed": 0}
    ((connection, message),) = posts
    assert connection == ws["requestContext"]["connectionId"]
    assert (message["topic"], message["type"]) == ("devices/DEVICE_001", "command")
    assert message["data"] == event["detail"]["command"]


def telemetry_received(api: InProcessApi, *points: tuple[int, float]) -> Any:
    """A TelemetryReceived of TEMP_001's temperature (minutes after T0, °C), as the bus's rule delivers it."""
    event = json.loads((EVENTS / "eventbridge" / "telemetry-received.json").read_text())
    event["detail"] = {
        "site": SITE,
        "readings": [
            {"sensor_id": "TEMP_001", "ts": 1_893_456_000_000 + m * 60_000, "metrics": {"temperature_c": v}}
            for m, v in points
        ],
    }
    return api.invoke("DevicesFunction", event)


def test_a_rule_from_the_samples_fires_once_per_rising_edge_through_the_handler(
    api: InProcessApi, admin_token: str, published: ListPublisher
) -> None:
    ok(replay(api, sample("devices-create"), admin_token), 201)
    rule = ok(replay(api, sample("rules-create"), admin_token), 201)
    path = {"rule_id": rule["rule_id"]}
    assert telemetry_received(api, (0, 27.0), (2, 27.5), (4, 27.0)) == {"rules": 1, "fired": 0, "skipped": 0}
    assert telemetry_received(api, (6, 27.0), (8, 27.0)) == {"rules": 1, "fired": 1, "skipped": 0}
    assert telemetry_received(api, (6, 27.0), (8, 27.0))["fired"] == 0  # redelivered
    assert telemetry_received(api, (10, 27.0), (20, 28.0))["fired"] == 0  # still above: no second firing
    telemetry_received(api, (21, 25.0), (22, 27.0), (27, 27.0))
    view = ok(replay(api, sample("rules-get"), admin_token, path=path))
    assert [(f["value"], f["outcome"]) for f in view["last_firings"]] == [(27.0, "sent"), (27.0, "sent")]
    commands = ok(replay(api, sample("devices-commands"), admin_token))["items"]
    assert [(c["command"], c["source"], c["params"]) for c in commands] == [
        ("set_mode", "rule", {"mode": "cool"})
    ] * 2

    listed = ok(replay(api, sample("rules-list"), admin_token))
    assert [r["rule_id"] for r in listed["items"]] == [rule["rule_id"]]
    assert ok(replay(api, sample("rules-put"), admin_token, path=path))["enabled"] is False
    assert telemetry_received(api, (40, 25.0), (41, 30.0), (50, 30.0))["rules"] == 0
    assert ok(replay(api, sample("rules-delete"), admin_token, path=path)) == {"deleted": True}
    refused(replay(api, sample("rules-get"), admin_token, path=path), 404, "rule_id")


def test_a_rule_naming_a_command_its_device_refuses_is_422(
    api: InProcessApi, admin_token: str, published: ListPublisher
) -> None:
    ok(replay(api, sample("devices-create"), admin_token), 201)
    body = json.loads(load_sample("rules-create")["body"])
    body["action"]["params"] = {"mode": "turbo"}
    assert "cool, heat" in refused(
        replay(api, sample("rules-create"), admin_token, body=body), 422, "action.params.mode"
    )
    body["condition"]["op"] = "!="
    refused(replay(api, sample("rules-create"), admin_token, body=body), 422, "condition.op")


def load_sample(name: str) -> dict[str, Any]:
    return dict(json.loads((DEVICES / f"{name}.json").read_text()))


def test_a_schedule_from_the_samples_is_a_scheduler_schedule_that_runs_its_scene(
    api: InProcessApi, admin_token: str, published: ListPublisher
) -> None:
    from ems_local.scheduler import scheduler_input

    ok(replay(api, sample("devices-create"), admin_token), 201)
    created = ok(replay(api, sample("schedules-create"), admin_token), 201)
    path = {"schedule_id": created["schedule_id"]}
    assert (created["expression"], created["timezone"]) == ("cron(0 7 ? * MON-FRI *)", "Europe/Berlin")
    moto_scheduler = boto3.client("scheduler", region_name="us-east-1")
    held = moto_scheduler.get_schedule(Name=f"ems-devices-{created['schedule_id']}")
    assert (held["ScheduleExpression"], held["ScheduleExpressionTimezone"], held["State"]) == (
        "cron(0 7 ? * MON-FRI *)", "Europe/Berlin", "ENABLED",
    )  # fmt: skip
    function = Stack.from_file().functions()["DevicesFunction"]
    assert held["Target"]["Arn"] == function["Environment"]["Variables"]["DEVICES_FUNCTION_ARN"]

    fired = scheduler_input(held["Target"]["Input"], held["Arn"], parse_time("2030-01-07T06:00:00Z", "t"))
    sample_input = json.loads((EVENTS / "schedule" / "device-schedule.json").read_text())
    assert fired == {
        **sample_input,
        "schedule": {**sample_input["schedule"], "schedule_id": created["schedule_id"]},
    }
    run = api.invoke("DevicesFunction", fired)
    assert run == api.invoke("DevicesFunction", fired)  # a retried firing sends nothing twice
    commands = ok(replay(api, sample("devices-commands"), admin_token))["items"]
    assert sorted((c["command"], c["source"]) for c in commands) == [
        ("set_mode", "schedule"),
        ("set_setpoint", "schedule"),
    ]

    assert ok(replay(api, sample("schedules-get"), admin_token, path=path))["name"] == "Office morning"
    assert [x["schedule_id"] for x in ok(replay(api, sample("schedules-list"), admin_token))["items"]] == [
        created["schedule_id"]
    ]
    ok(replay(api, sample("schedules-put"), admin_token, path=path))
    assert moto_scheduler.get_schedule(Name=f"ems-devices-{created['schedule_id']}")[
        "ScheduleExpression"
    ] == ("cron(30 6 ? * MON-FRI *)")
    assert ok(replay(api, sample("schedules-delete"), admin_token, path=path)) == {"deleted": True}
    assert moto_scheduler.list_schedules()["Schedules"] == []
    refused(replay(api, sample("schedules-get"), admin_token, path=path), 404, "schedule_id")
    body = {"name": "x", "cron": "0 7 * * *", "action": {"device_id": "DEVICE_001", "command": "on"}}
    refused(replay(api, sample("schedules-create"), admin_token, body=body), 422, "cron")


def test_a_limited_token_gets_the_device_without_its_reported_state(
    api: InProcessApi, admin_token: str, published: ListPublisher
) -> None:
    ok(replay(api, sample("devices-create"), admin_token), 201)
    ok(replay(api, sample("devices-instructions"), admin_token), 201)
    device_reports(api, "hq:DEVICE_001", {"mode": "cool", "room_c": 23.4})
    assert ok(replay(api, sample("devices-get"), admin_token))["shadow"]["reported"]["room_c"] == 23.4
    for limits in ({"embargo_minutes": 30}, {"data_aggregation": "room"}):
        limited = issue(["iot"], sites=[SITE], **limits)
        shadow = ok(replay(api, sample("devices-get"), limited))["shadow"]
        assert (shadow["reported"], shadow["delta"]) == ({}, {})
        assert shadow["desired"] == {"mode": "cool", "command_id": "cmd-2030-01-01-0001"}
        assert shadow["withheld"] == "this token does not see one device's live readings"


def test_the_same_batch_judged_by_eight_invocations_at_once_fires_one_command(
    api: InProcessApi, admin_token: str, published: ListPublisher
) -> None:
    """Redelivery and concurrency at once: the rule's state is written on its version's condition in
    moto (whose conditional writes hold a lock, ems_local.moto_dynamodb), so one evaluation wins."""
    ok(replay(api, sample("devices-create"), admin_token), 201)
    rule = ok(replay(api, sample("rules-create"), admin_token), 201)
    results: list[Any] = []
    errors: list[BaseException] = []

    def evaluate() -> None:
        try:
            results.append(telemetry_received(api, (0, 27.0), (3, 27.5), (5, 28.0)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=evaluate) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(r["fired"] for r in results) == 1
    commands = ok(replay(api, sample("devices-commands"), admin_token))["items"]
    assert [c["command_id"] for c in commands] == [f"{rule['rule_id']}-{1_893_456_000_000 + 5 * 60_000}"]
    view = ok(replay(api, sample("rules-get"), admin_token, path={"rule_id": rule["rule_id"]}))
    assert (view["fired"], view["last_ms"], len(view["last_firings"])) == (
        True,
        1_893_456_000_000 + 5 * 60_000,
        1,
    )
