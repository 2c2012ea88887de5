"""IoT Core through the local cloud started for real: MQTT devices (paho), topic rules, iot-data, shadows.

A test template (`ems local up --template`) has one function (recorder_app.py) that records every event
to a file, with a SAM IoTRule event on the telemetry topic and an AWS::IoT::TopicRule with a WHERE
clause; when an event asks for it, the function publishes through its own SDK (iot-data). Every wait
is bounded polling; nothing asserts on time.
"""

from __future__ import annotations

import json
import queue
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.e2e.conftest import RecorderStack, recorder_template, running_local_cloud, wait_for

pytestmark = pytest.mark.e2e


EVENTS = """
        Command:
          Type: HttpApi
          Properties:
            ApiId: !Ref HttpApi
            Path: /commands/{device_id}
            Method: POST
        Telemetry:
          Type: IoTRule
          Properties:
            AwsIotSqlVersion: '2016-03-23'
            Sql: >-
              SELECT *, topic(2) AS site, topic(4) AS device_id, clientid() AS client,
              timestamp() AS received_ms FROM 'ems/+/devices/+/telemetry'
"""
RESOURCES = """
  HotRoomRule:
    Type: AWS::IoT::TopicRule
    Properties:
      RuleName: hot_rooms
      TopicRulePayload:
        AwsIotSqlVersion: '2016-03-23'
        Sql: SELECT temperature_c AS hot_c, topic(3) AS room, marker FROM 'test/rooms/+' WHERE temperature_c > 25
        Actions:
          - Lambda:
              FunctionArn: !GetAtt RecorderFunction.Arn
"""


class Stack(RecorderStack):
    def __init__(self, home: Path, description: dict[str, Any]) -> None:
        super().__init__(home, description)
        mqtt_url = urlsplit(description["mqtt"])
        self.mqtt_host, self.mqtt_port = str(mqtt_url.hostname), int(mqtt_url.port or 0)

    def with_marker(self, marker: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if isinstance(e, dict) and e.get("marker") == marker]

    def iot_data(self) -> Any:
        return self.client("iot-data", "aws_services")


class Device:
    """A paho MQTT client that keeps what it receives, per topic."""

    def __init__(self, stack: Stack, client_id: str) -> None:
        self.client_id = client_id
        self.received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_message = lambda client, userdata, message: self.received.put(
            (message.topic, message.payload)
        )
        self.client.connect(stack.mqtt_host, stack.mqtt_port)
        self.client.loop_start()

    def subscribe(self, *topics: str) -> None:
        """Subscribe and wait for the SUBACK: the broker routes to us from then on."""
        acked: queue.Queue[tuple[int, list[Any]]] = queue.Queue()
        self.client.on_subscribe = lambda client, userdata, mid, codes, properties: acked.put((mid, codes))
        _, mid = self.client.subscribe([(topic, 1) for topic in topics])
        got, codes = acked.get(timeout=10)
        assert got == mid and not any(code.is_failure for code in codes), codes

    def publish(self, topic: str, payload: bytes | str) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(timeout=10)

    def next_on(self, topic: str, seconds: float = 20) -> dict[str, Any]:
        """The next message on `topic` (others are skipped), as JSON."""
        give_up = time.monotonic() + seconds
        while True:
            try:
                got, payload = self.received.get(timeout=max(0.01, give_up - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"{self.client_id}: nothing on {topic} within {seconds:g} s")
            if got == topic:
                return dict(json.loads(payload))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("mqtt")
    template = recorder_template(home, EVENTS, RESOURCES)
    with running_local_cloud(home, "--empty", "--template", str(template)) as description:
        yield Stack(home, description)


@pytest.fixture
def device(stack: Stack) -> Iterator[Device]:
    made = Device(stack, f"device-{uuid.uuid4().hex[:8]}")
    yield made
    made.close()


def test_a_device_publish_reaches_a_function_through_a_topic_rule(stack: Stack, device: Device) -> None:
    marker = uuid.uuid4().hex
    topic = "ems/site-a/devices/meter-1/telemetry"
    device.publish(topic, b"not json: the rule logs it and goes on")
    device.publish("ems/site-a/devices/meter-1/status", json.dumps({"marker": marker, "other": True}))
    device.publish(
        topic, json.dumps({"sensor_id": "meter-1", "ts": 1700000000000, "value": 4.5, "marker": marker})
    )

    (event,) = wait_for(lambda: stack.with_marker(marker), "the telemetry reaching the function")
    assert (event["site"], event["device_id"], event["client"]) == ("site-a", "meter-1", device.client_id)
    assert (event["sensor_id"], event["ts"], event["value"]) == ("meter-1", 1700000000000, 4.5)
    assert isinstance(event["received_ms"], int) and event["received_ms"] > 1700000000000
    assert "other" not in event  # the status topic matches no rule: that message went nowhere


def test_a_topic_rule_resource_with_where_invokes_only_for_matching_messages(
    stack: Stack, device: Device
) -> None:
    marker = uuid.uuid4().hex
    device.publish("test/rooms/kitchen", json.dumps({"temperature_c": 21.0, "marker": marker}))
    device.publish("test/rooms/attic", json.dumps({"temperature_c": 31.5, "marker": marker}))

    (event,) = wait_for(lambda: stack.with_marker(marker), "the hot room reaching the function")
    assert event == {"hot_c": 31.5, "room": "attic", "marker": marker}
    # The kitchen was published first on the same connection and the rules run in order.
    assert len(stack.with_marker(marker)) == 1


def test_an_iot_data_publish_reaches_an_mqtt_subscriber(stack: Stack, device: Device) -> None:
    marker = uuid.uuid4().hex
    topic = f"ems/site-a/devices/{device.client_id}/commands"
    device.subscribe(topic)
    command = {"command_id": marker, "command": "off", "params": {}, "issued_at": "2026-01-01T00:00:00Z"}
    stack.iot_data().publish(topic=topic, qos=1, payload=json.dumps(command).encode())
    assert device.next_on(topic) == command


def test_a_function_publishes_through_its_own_sdk(stack: Stack, device: Device) -> None:
    marker = uuid.uuid4().hex
    device.subscribe(f"echo/{marker}")
    device.publish("ems/site-a/devices/relay/telemetry", json.dumps({"marker": marker, "echo": True}))
    assert device.next_on(f"echo/{marker}") == {"echoed": marker}


def test_a_desired_update_reaches_the_device_as_a_delta_and_its_report_clears_it(
    stack: Stack, device: Device
) -> None:
    thing = f"hvac-{uuid.uuid4().hex[:8]}"
    base = f"$aws/things/{thing}/shadow"
    device.subscribe(f"{base}/update/delta", f"{base}/update/accepted", f"{base}/get/accepted")
    iot_data = stack.iot_data()

    iot_data.update_thing_shadow(
        thingName=thing, payload=json.dumps({"state": {"desired": {"power": "off", "setpoint_c": 21}}})
    )
    delta = device.next_on(f"{base}/update/delta")
    assert delta["state"] == {"power": "off", "setpoint_c": 21}
    assert delta["version"] == 1

    device.publish(
        f"{base}/update",
        json.dumps({"state": {"reported": {"power": "off", "setpoint_c": 21}}, "clientToken": "t-1"}),
    )
    accepted = device.next_on(f"{base}/update/accepted")
    assert accepted["state"] == {"reported": {"power": "off", "setpoint_c": 21}}
    assert (accepted["version"], accepted["clientToken"]) == (2, "t-1")

    shadow = json.loads(iot_data.get_thing_shadow(thingName=thing)["payload"].read())
    assert shadow["state"]["reported"] == shadow["state"]["desired"] == {"power": "off", "setpoint_c": 21}
    assert "delta" not in shadow["state"]

    device.publish(f"{base}/get", json.dumps({"clientToken": "t-2"}))
    got = device.next_on(f"{base}/get/accepted")
    assert (got["state"]["reported"]["power"], got["version"], got["clientToken"]) == ("off", 2, "t-2")


def test_a_bad_shadow_request_is_rejected_on_its_topic(stack: Stack, device: Device) -> None:
    thing = f"plug-{uuid.uuid4().hex[:8]}"
    base = f"$aws/things/{thing}/shadow"
    device.subscribe(f"{base}/update/rejected", f"{base}/get/rejected")
    device.publish(f"{base}/update", b"{not json")
    assert device.next_on(f"{base}/update/rejected")["code"] == 400
    device.publish(f"{base}/get", b"{}")
    assert device.next_on(f"{base}/get/rejected")["code"] == 404  # no shadow yet


def _non_loopback_address() -> str | None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent, the route picks an address
        address = str(probe.getsockname()[0])
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def _listening_addresses(port: int) -> list[str]:
    """Local addresses of the sockets listening on `port` (Linux /proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if int(port_hex, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.append(address)
    return found


def test_the_broker_listens_on_loopback_only(stack: Stack) -> None:
    assert stack.mqtt_host == "127.0.0.1"
    assert _listening_addresses(stack.mqtt_port) == ["0100007F"]  # 127.0.0.1, and nothing else
    # Bound to 127.0.0.1 itself, not to every interface: even another loopback address is refused.
    with pytest.raises(OSError), socket.create_connection(("127.0.0.2", stack.mqtt_port), timeout=3):
        pass
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to try")
    with pytest.raises(OSError), socket.create_connection((address, stack.mqtt_port), timeout=3):
        pass


def test_a_command_sent_through_the_api_reaches_the_device_on_its_topic_and_its_shadow(
    stack: Stack, device: Device
) -> None:
    """Until the devices domain lands, the test function stands where its command route will be."""
    thing = device.client_id
    commands, delta = f"ems/site-a/devices/{thing}/commands", f"$aws/things/{thing}/shadow/update/delta"
    device.subscribe(commands, delta)
    command = {
        "site": "site-a",
        "command_id": uuid.uuid4().hex,
        "command": "off",
        "params": {"setpoint_c": 19},
    }

    answer = httpx.post(f"{stack.description['http']}/commands/{thing}", json=command, timeout=30)

    assert (answer.status_code, answer.json()) == (202, {"command_id": command["command_id"]})
    assert device.next_on(commands) == command
    assert device.next_on(delta)["state"] == {"power": "off", "setpoint_c": 19}
    shadow = json.loads(stack.iot_data().get_thing_shadow(thingName=thing)["payload"].read())
    assert shadow["state"]["desired"] == {"power": "off", "setpoint_c": 19}
