"""IoT Core's parts against their real neighbours: the amqtt broker on loopback with a paho client,
and shadows kept by moto (in process), with the MQTT messages IoT Core publishes for them."""

from __future__ import annotations

import json
import queue
import socket
import time
from collections.abc import Iterator
from typing import Any

import boto3
import paho.mqtt.client as mqtt
import pytest
from moto import mock_aws
from paho.mqtt.enums import CallbackAPIVersion

from ems.core.clock import utc_now
from ems_local import iotsql
from ems_local.iot_core import Shadows, TopicRule, TopicRuleEngine
from ems_local.mqtt_broker import MqttBroker


@pytest.fixture
def broker() -> Iterator[tuple[MqttBroker, list[tuple[str, bytes, str]]]]:
    seen: list[tuple[str, bytes, str]] = []
    running = MqttBroker(0, lambda topic, payload, client_id: seen.append((topic, payload, client_id)))
    running.start()
    yield running, seen
    running.stop()


def _client(
    port: int, client_id: str, topics: tuple[str, ...] = ("$aws/things/dev-1/shadow/#", "ems/#")
) -> tuple[mqtt.Client, queue.Queue[tuple[str, bytes]]]:
    received: queue.Queue[tuple[str, bytes]] = queue.Queue()
    connected: queue.Queue[Any] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    client.on_message = lambda c, u, message: received.put((message.topic, message.payload))
    client.on_connect = lambda c, u, flags, reason, properties: connected.put(reason)
    client.on_subscribe = lambda c, u, mid, codes, properties: connected.put(codes)
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert not connected.get(timeout=10).is_failure
    client.subscribe([(topic, 1) for topic in topics])
    assert not any(code.is_failure for code in connected.get(timeout=10))
    return client, received


def test_the_broker_takes_port_0_and_listens_on_loopback_only(broker: Any) -> None:
    running, _ = broker
    assert running.port > 0 and running.url == f"mqtt://127.0.0.1:{running.port}"
    with socket.create_connection(("127.0.0.1", running.port), timeout=3):
        pass
    # Bound to 127.0.0.1 itself, not to every interface: another loopback address is refused.
    with pytest.raises(OSError), socket.create_connection(("127.0.0.2", running.port), timeout=3):
        pass


def test_devices_may_publish_to_aws_topics_and_every_message_is_observed(broker: Any) -> None:
    running, seen = broker
    client, received = _client(running.port, "dev-1")
    try:
        client.publish("$aws/things/dev-1/shadow/update", b'{"state": {}}', qos=1).wait_for_publish(10)
        client.publish("ems/hq/devices/dev-1/telemetry", b"{}", qos=1).wait_for_publish(10)
        running.publish("ems/hq/devices/dev-1/commands", b'{"command": "off"}', qos=1)
        got = {received.get(timeout=10) for _ in range(3)}
        assert got == {
            ("$aws/things/dev-1/shadow/update", b'{"state": {}}'),
            ("ems/hq/devices/dev-1/telemetry", b"{}"),
            ("ems/hq/devices/dev-1/commands", b'{"command": "off"}'),
        }
        assert client.is_connected()  # amqtt alone would have dropped it for the '$' topic
        seen = [message for message in seen if not message[0].startswith("$aws/events/presence/")]
        assert sorted(seen) == sorted(
            [
                ("$aws/things/dev-1/shadow/update", b'{"state": {}}', "dev-1"),
                ("ems/hq/devices/dev-1/telemetry", b"{}", "dev-1"),
                ("ems/hq/devices/dev-1/commands", b'{"command": "off"}', ""),
            ]
        )
    finally:
        client.disconnect()
        client.loop_stop()


def _presence(received: queue.Queue[tuple[str, bytes]], event: str, client_id: str) -> dict[str, Any]:
    topic, payload = received.get(timeout=10)
    assert topic == f"$aws/events/presence/{event}/{client_id}"
    return dict(json.loads(payload))


def test_presence_events_on_connect_clean_disconnect_and_a_dropped_connection(broker: Any) -> None:
    running, _ = broker
    watcher, received = _client(running.port, "watcher", ("$aws/events/presence/+/+",))
    try:
        before_ms = int(utc_now().timestamp() * 1000)
        device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="site-a:DEVICE_001")
        device.connect("127.0.0.1", running.port)
        device.loop_start()
        connected = _presence(received, "connected", "site-a:DEVICE_001")
        assert set(connected) == {
            "clientId", "timestamp", "eventType", "sessionIdentifier", "principalIdentifier", "ipAddress",
            "versionNumber",
        }  # fmt: skip
        assert (connected["clientId"], connected["eventType"], connected["ipAddress"]) == (
            "site-a:DEVICE_001", "connected", "127.0.0.1",
        )  # fmt: skip
        assert connected["timestamp"] >= before_ms and connected["versionNumber"] == 0
        device.disconnect()
        device.loop_stop()
        clean = _presence(received, "disconnected", "site-a:DEVICE_001")
        assert clean["clientInitiatedDisconnect"] is True
        assert clean["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT"
        assert clean["sessionIdentifier"] == connected["sessionIdentifier"]
        assert clean["versionNumber"] == 0 and "ipAddress" not in clean

        # The same client id again, then its socket killed without a DISCONNECT.
        device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="site-a:DEVICE_001")
        device.connect("127.0.0.1", running.port)
        device.loop_start()
        again = _presence(received, "connected", "site-a:DEVICE_001")
        assert again["versionNumber"] == 1 and again["sessionIdentifier"] != connected["sessionIdentifier"]
        device.loop_stop()
        sock = device.socket()
        assert sock is not None
        sock.close()
        lost = _presence(received, "disconnected", "site-a:DEVICE_001")
        assert (lost["clientInitiatedDisconnect"], lost["disconnectReason"]) == (False, "CONNECTION_LOST")
        assert lost["sessionIdentifier"] == again["sessionIdentifier"] and lost["versionNumber"] == 1
        assert received.empty()
    finally:
        watcher.disconnect()
        watcher.loop_stop()


def test_a_second_connection_of_a_client_id_ends_the_first_as_iot_core_does(broker: Any) -> None:
    running, _ = broker
    watcher, received = _client(running.port, "watcher", ("$aws/events/presence/+/+",))
    first = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="twin")
    second = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="twin")
    try:
        first.connect("127.0.0.1", running.port)
        first.loop_start()
        opened = _presence(received, "connected", "twin")
        first.loop_stop()  # it stays connected but will not reconnect once it is ended
        second.connect("127.0.0.1", running.port)
        second.loop_start()
        events = {
            event["eventType"]: event for event in (json.loads(received.get(timeout=10)[1]) for _ in range(2))
        }
        ended, took_over = events["disconnected"], events["connected"]
        assert (ended["sessionIdentifier"], ended["disconnectReason"]) == (
            opened["sessionIdentifier"],
            "DUPLICATE_CLIENTID",
        )
        assert ended["clientInitiatedDisconnect"] is False
        assert (took_over["eventType"], took_over["versionNumber"]) == ("connected", 1)
        give_up = time.monotonic() + 10  # its CONNACK, read by paho's thread
        while not second.is_connected() and time.monotonic() < give_up:
            time.sleep(0.05)
        assert second.is_connected()
    finally:
        second.disconnect()
        second.loop_stop()
        watcher.disconnect()
        watcher.loop_stop()


def test_a_topic_rule_on_presence_events_invokes_its_target() -> None:
    submitted: queue.Queue[tuple[str, Any, str]] = queue.Queue()
    # topic() counts from 1, as IoT SQL does: $aws(1)/events(2)/presence(3)/<event>(4)/<clientId>(5).
    rule = iotsql.parse(
        "SELECT clientId, eventType, topic(4) AS event, topic(5) AS thing FROM '$aws/events/presence/+/+'"
    )
    engine = TopicRuleEngine(
        [TopicRule("presence", rule, ("DevicesFunction",))],
        lambda function, event, source: submitted.put((function, event, source)),
    )
    running = MqttBroker(0, lambda topic, payload, client_id: engine.on_message(topic, payload, client_id, 0))
    running.start()
    try:
        device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="site-a:BATT001")
        device.connect("127.0.0.1", running.port)
        device.loop_start()
        assert submitted.get(timeout=10) == (
            "DevicesFunction",
            {
                "clientId": "site-a:BATT001",
                "eventType": "connected",
                "event": "connected",
                "thing": "site-a:BATT001",
            },
            "iot rule presence",
        )
        device.disconnect()
        device.loop_stop()
        function, event, _ = submitted.get(timeout=10)
        assert (function, event["event"], event["thing"]) == (
            "DevicesFunction",
            "disconnected",
            "site-a:BATT001",
        )
        assert submitted.empty()
    finally:
        running.stop()


def test_stopping_frees_the_port() -> None:
    running = MqttBroker(0)
    running.start()
    port = running.port
    running.stop()
    probe = socket.socket()
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind(("127.0.0.1", port))
    finally:
        probe.close()


@pytest.fixture
def shadows() -> Iterator[tuple[Shadows, list[tuple[str, dict[str, Any]]]]]:
    published: list[tuple[str, dict[str, Any]]] = []
    with mock_aws():
        iot_data, iot = (boto3.client(s, region_name="us-east-1") for s in ("iot-data", "iot"))
        yield (
            Shadows(iot_data, iot, lambda topic, payload: published.append((topic, json.loads(payload)))),
            published,
        )


def _topics(published: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [topic.removeprefix("$aws/things/hvac-1/shadow/") for topic, _ in published]


def test_a_desired_update_publishes_accepted_documents_and_delta(shadows: Any) -> None:
    service, published = shadows
    service.update("hvac-1", json.dumps({"state": {"desired": {"mode": "eco", "setpoint_c": 20}}}).encode())
    assert _topics(published) == ["update/accepted", "update/documents", "update/delta"]
    documents, delta = published[1][1], published[2][1]
    assert documents["previous"] is None and documents["current"]["state"]["desired"]["mode"] == "eco"
    assert (delta["state"], delta["version"]) == ({"mode": "eco", "setpoint_c": 20}, 1)
    assert set(delta["metadata"]) == {"mode", "setpoint_c"}


def test_a_report_that_matches_clears_the_delta_and_publishes_none(shadows: Any) -> None:
    service, published = shadows
    service.update("hvac-1", b'{"state": {"desired": {"mode": "eco"}}}')
    published.clear()
    service.update("hvac-1", b'{"state": {"reported": {"mode": "eco"}}, "clientToken": "c1"}')
    assert _topics(published) == ["update/accepted", "update/documents"]
    assert published[0][1]["clientToken"] == "c1"
    assert "delta" not in service.get("hvac-1")["state"]


def test_device_requests_over_mqtt_are_answered_on_their_topics(shadows: Any) -> None:
    service, published = shadows
    assert service.on_message("$aws/things/hvac-1/shadow/get", b'{"clientToken": "g"}')
    assert published[-1] == (
        "$aws/things/hvac-1/shadow/get/rejected",
        {"code": 404, "message": "No shadow exists with name: 'hvac-1'", "timestamp": published[-1][1]["timestamp"],
         "clientToken": "g"},
    )  # fmt: skip
    assert service.on_message("$aws/things/hvac-1/shadow/update", b"{oops")
    assert published[-1][0].endswith("update/rejected") and published[-1][1]["code"] == 400
    assert service.on_message(
        "$aws/things/hvac-1/shadow/name/cfg/update", b'{"state": {"reported": {"a": 1}}}'
    )
    assert published[-2][0] == "$aws/things/hvac-1/shadow/name/cfg/update/accepted"
    assert service.on_message("$aws/things/hvac-1/shadow/name/cfg/get", b"")
    assert published[-1][0].endswith("name/cfg/get/accepted") and published[-1][1]["state"]["reported"] == {
        "a": 1
    }
    assert not service.on_message("$aws/things/hvac-1/shadow/update/accepted", b"{}")  # not a request
    assert not service.on_message("ems/hq/devices/hvac-1/telemetry", b"{}")
