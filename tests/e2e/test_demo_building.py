"""The demo building on the local cloud started for real with the project's template: its sensors
registered through the HTTP API, its devices' telemetry on MQTT, and devices answering commands as the
wire contract says (ems.devices.things): from the shadow's desired state and from their command
topic, each reported with `last_command`, a refusal with its reason. Bounded polling only; nothing
asserts on time."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import boto3
import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ems.devices.things import commands_topic, thing_name
from tests.e2e.conftest import running_local_cloud, wait_for

pytestmark = pytest.mark.e2e

T = TypeVar("T")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    # the project's template, the demo site and its building
    with running_local_cloud(tmp_path_factory.mktemp("building")) as description:
        yield description


@pytest.fixture(scope="module")
def telemetry(stack: dict[str, Any]) -> Iterator[queue.Queue[tuple[str, dict[str, Any]]]]:
    received: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
    url = urlsplit(stack["mqtt"])
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="dashboard-watcher")
    client.on_message = lambda c, u, message: received.put((message.topic, json.loads(message.payload)))
    client.on_connect = lambda c, u, flags, reason, properties: c.subscribe(
        f"ems/{stack['site']}/devices/+/telemetry"
    )
    client.connect(str(url.hostname), int(url.port or 0))
    client.loop_start()
    yield received
    client.disconnect()
    client.loop_stop()


def iot_data(stack: dict[str, Any]) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        "iot-data", endpoint_url=stack["aws_services"], region_name="us-east-1",
        aws_access_key_id="local", aws_secret_access_key="local",
    )  # fmt: skip


def shadow(stack: dict[str, Any], thing: str) -> dict[str, Any]:
    try:
        return dict(json.loads(iot_data(stack).get_thing_shadow(thingName=thing)["payload"].read())["state"])
    except iot_data(stack).exceptions.ResourceNotFoundException:
        return {}


def next_power_w(received: queue.Queue[tuple[str, dict[str, Any]]], device_id: str) -> float:
    give_up = time.monotonic() + 30
    while time.monotonic() < give_up:
        try:
            topic, message = received.get(timeout=1)
        except queue.Empty:
            continue
        if topic.endswith(f"/devices/{device_id}/telemetry"):
            return float(message["readings"][0]["metrics"]["power_w"])
    pytest.fail(f"no telemetry from {device_id}")


def test_the_building_is_registered_through_the_api(stack: dict[str, Any]) -> None:
    headers = {"authorization": f"Bearer {stack['admin_token']}", "x-site": stack["site"]}

    def sensors() -> set[str]:
        answer = httpx.get(
            f"{stack['http']}/api/v1/sensors", headers=headers, params={"limit": 100}, timeout=30
        )
        return {s["sensor_id"] for s in answer.json()["items"]} if answer.status_code == 200 else set()

    found = wait_for(lambda: len(sensors()) >= 25 and sensors(), "the 25 sensors registered")
    assert {"demo-meter", "demo-pv", "BATT001", "DEVICE_001", "DEVICE_002", "demo-office-co2"} <= found
    assert len(found) == 25
    rooms = httpx.get(f"{stack['http']}/api/v1/rooms", headers=headers, timeout=30).json()["items"]
    assert sorted(r["name"] for r in rooms) == ["Kitchen", "Lobby", "Meeting Room", "Office"]


def test_devices_publish_telemetry_in_the_api_shape(stack: dict[str, Any], telemetry: Any) -> None:
    topic, message = telemetry.get(timeout=30)
    assert topic.startswith(f"ems/{stack['site']}/devices/") and topic.endswith("/telemetry")
    assert isinstance(message["ts"], int) and message["readings"][0]["metrics"]


def test_a_desired_state_and_a_command_are_obeyed(stack: dict[str, Any], telemetry: Any) -> None:
    charger = thing_name(stack["site"], "demo-ev-charger")
    wait_for(lambda: shadow(stack, charger).get("reported", {}).get("power") == "on", "the charger's report")
    desired = {"power": "off", "command_id": "c-0"}
    iot_data(stack).update_thing_shadow(
        thingName=charger, payload=json.dumps({"state": {"desired": desired}})
    )
    state = wait_for(
        lambda: (s := shadow(stack, charger)).get("reported", {}).get("power") == "off" and s,
        "the charger reporting off",
    )
    assert "delta" not in state  # its report caught up with what was desired, command_id included
    assert state["reported"]["last_command"] == {"command_id": "c-0", "status": "applied"}
    # Its telemetry after the change (the first may be from the tick before it).
    readings = [next_power_w(telemetry, "demo-ev-charger") for _ in range(2)]
    assert readings[-1] == 0

    lighting = thing_name(stack["site"], "demo-lighting")
    command = {"command_id": "c-1", "command": "off", "params": {}, "issued_at": "2026-01-01T00:00:00Z"}
    iot_data(stack).publish(
        topic=commands_topic(stack["site"], "demo-lighting"), qos=1, payload=json.dumps(command)
    )
    reported = wait_for(
        lambda: (r := shadow(stack, lighting).get("reported", {})).get("command_id") == "c-1" and r,
        "lighting's answer",
    )
    assert reported["power"] == "off" and reported["last_command"]["status"] == "applied"


def test_a_refused_command_is_reported_with_its_reason(stack: dict[str, Any]) -> None:
    hvac = thing_name(stack["site"], "DEVICE_001")
    command = {"command_id": "c-2", "command": "set_setpoint", "params": {"celsius": 40}, "issued_at": "x"}
    iot_data(stack).publish(
        topic=commands_topic(stack["site"], "DEVICE_001"), qos=1, payload=json.dumps(command)
    )
    reported = wait_for(
        lambda: (r := shadow(stack, hvac).get("reported", {})).get("command_id") == "c-2" and r,
        "the HVAC's answer",
    )
    assert reported["last_command"] == {
        "command_id": "c-2", "status": "rejected", "reason": "setpoint °C 40 is outside this device's range 16 to 30"
    }  # fmt: skip
    assert reported["setpoint_c"] == 21.0


def test_the_meter_reads_the_sum_of_the_devices_at_each_tick(stack: dict[str, Any], telemetry: Any) -> None:
    loads = ["DEVICE_001", "DEVICE_002", "demo-heat-pump", "demo-lighting", "demo-plug", "demo-ev-charger"]
    wanted = {"demo-meter", "demo-pv", "BATT001", *loads}
    ticks: dict[int, dict[str, float]] = {}
    give_up = time.monotonic() + 60
    while time.monotonic() < give_up:
        try:
            topic, message = telemetry.get(timeout=1)
        except queue.Empty:
            continue
        device = topic.split("/")[3]
        if device in wanted:
            tick = ticks.setdefault(message["ts"], {})
            tick[device] = float(message["readings"][0]["metrics"]["power_w"])
            if wanted <= tick.keys():
                break
    else:
        pytest.fail("no tick with every device's telemetry")
    expected_w = sum(tick[d] for d in loads) - tick["demo-pv"] + tick["BATT001"]
    assert tick["demo-meter"] == pytest.approx(expected_w, abs=1.0)  # each rounded to 0.1 W
