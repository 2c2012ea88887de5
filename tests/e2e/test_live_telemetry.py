"""The live path on the real template and the local cloud: a paho device publishes a reading on
ems/<site>/devices/<device>/telemetry; the IoT rule invokes TelemetryIngestFunction, which stores it
and puts TelemetryReceived on the bus; the bus's rule invokes RealtimeFunction, which posts it through
@connections to a real websockets client subscribed to the sensor and to its room; and the HTTP API
returns it. The stack runs without the demo building (--no-building), so the only reading is ours.
Every wait is bounded; nothing asserts on time.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e

# Bounds against hanging on a cold machine (workers start on first use); never asserted.
WAIT_SECONDS = 90
SITE = "demo"
ROOM = "Live Lab"
SENSOR, DEVICE = "LIVE_T1", "live-env-1"
VALUE = 23.25


def messages(raw: str | bytes) -> list[dict[str, Any]]:
    """A push is one message, or several due at once as a JSON array."""
    parsed = json.loads(raw)
    return parsed if isinstance(parsed, list) else [parsed]


async def until_both(ws: ClientConnection, topics: set[str]) -> dict[str, dict[str, Any]]:
    """The first message on each of `topics`."""
    found: dict[str, dict[str, Any]] = {}
    give_up = time.monotonic() + WAIT_SECONDS
    while set(found) != topics:
        remaining = give_up - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"within {WAIT_SECONDS} s only {sorted(found)} of {sorted(topics)} arrived")
        for message in messages(await asyncio.wait_for(ws.recv(), remaining)):
            if message.get("topic") in topics:
                found.setdefault(message["topic"], message)
    return found


def publish(stack: RunningStack, topic: str, payload: dict[str, Any]) -> None:
    """One QoS 1 publish by a real MQTT client, acknowledged by the broker."""
    address = urlsplit(str(stack.description["mqtt"]))
    device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=DEVICE)
    device.connect(address.hostname or "127.0.0.1", address.port or 1883)
    device.loop_start()
    try:
        device.publish(topic, json.dumps(payload), qos=1).wait_for_publish(timeout=30)
    finally:
        device.disconnect()
        device.loop_stop()


def test_a_device_reading_reaches_websocket_subscribers_and_the_api(local_stack: RunningStack) -> None:
    admin = {"authorization": f"Bearer {local_stack.admin_token}", "x-site": SITE}
    with httpx.Client(base_url=local_stack.http, headers=admin, timeout=30) as http:
        assert http.post("/api/v1/rooms", json={"name": ROOM}).status_code == 201
        created = http.post(
            "/api/v1/sensors",
            json={"sensor_id": SENSOR, "name": "Lab temperature", "sensor_type": "temperature", "room": ROOM,
                  "device_id": DEVICE},
        )  # fmt: skip
        assert created.status_code == 201, created.text
        assert http.get(f"/api/v1/sensors/{SENSOR}").json()["status"] == "unknown"

        ts_ms = int(time.time() * 1000) - 1000
        topics = {f"sensors/{SENSOR}", f"rooms/{ROOM}"}

        async def live() -> dict[str, dict[str, Any]]:
            url = f"{local_stack.description['ws']}?token={local_stack.admin_token}&site={SITE}"
            async with connect(url) as ws:
                await ws.send(json.dumps({"action": "subscribe", "topics": sorted(topics)}))
                reply = json.loads(await asyncio.wait_for(ws.recv(), WAIT_SECONDS))
                assert reply["type"] == "subscribed" and sorted(reply["data"]["accepted"]) == sorted(
                    topics
                ), reply
                # Subscribed: the device speaks now, from a thread so the socket keeps reading.
                payload = {
                    "ts": ts_ms,
                    "readings": [{"sensor_id": SENSOR, "metrics": {"temperature_c": VALUE}}],
                }
                await asyncio.to_thread(
                    publish, local_stack, f"ems/{SITE}/devices/{DEVICE}/telemetry", payload
                )
                return await until_both(ws, topics)

        pushed = asyncio.run(live())
        reading = pushed[f"sensors/{SENSOR}"]
        assert reading["type"] == "reading"
        assert reading["data"]["sensor_id"] == SENSOR and reading["data"]["room"] == ROOM
        assert reading["data"]["metrics"] == {"temperature_c": VALUE}
        room = pushed[f"rooms/{ROOM}"]
        assert room["type"] == "room"
        assert room["data"]["metrics"] == {"temperature_c": VALUE} and room["data"]["sensors"] == 1
        assert reading["data"]["ts"] == room["data"]["ts"]

        # Pushed after it was stored: the API has it now, once.
        data = http.get(
            f"/api/v1/sensors/{SENSOR}/data",
            params={"metric": "temperature_c", "resolution": "raw", "start_time": ts_ms // 1000 - 60,
                    "end_time": ts_ms // 1000 + 60},
        )  # fmt: skip
        assert data.status_code == 200, data.text
        assert [(p["value"], p["count"]) for p in data.json()["points"]] == [(VALUE, 1)]
        sensor = http.get(f"/api/v1/sensors/{SENSOR}").json()
        assert sensor["status"] == "online"
        assert sensor["last_reading"]["metrics"] == {"temperature_c": VALUE}
        online = http.get("/api/v1/sensors", params={"status": "online"}).json()["items"]
        assert [s["sensor_id"] for s in online] == [SENSOR]


def test_a_reading_above_a_threshold_is_pushed_as_an_alert_and_listed(local_stack: RunningStack) -> None:
    """TelemetryReceived reaches AlertsFunction through the bus's rule; its AlertRaised reaches the
    realtime function through another rule, and from there the `alerts` subscriber."""
    admin = {"authorization": f"Bearer {local_stack.admin_token}", "x-site": SITE}
    sensor = "LIVE_HOT"
    with httpx.Client(base_url=local_stack.http, headers=admin, timeout=30) as http:
        created = http.post(
            "/api/v1/sensors",
            json={"sensor_id": sensor, "name": "Server room", "sensor_type": "temperature",
                  "thresholds": {"temperature_c": {"max": 27, "severity": "critical"}}},
        )  # fmt: skip
        assert created.status_code == 201, created.text

        async def live() -> dict[str, Any]:
            url = f"{local_stack.description['ws']}?token={local_stack.admin_token}&site={SITE}"
            async with connect(url) as ws:
                await ws.send(json.dumps({"action": "subscribe", "topics": ["alerts"]}))
                reply = json.loads(await asyncio.wait_for(ws.recv(), WAIT_SECONDS))
                assert reply["type"] == "subscribed" and reply["data"]["accepted"] == ["alerts"], reply
                reading = {
                    "sensor_id": sensor,
                    "ts": int(time.time()) - 1,
                    "metrics": {"temperature_c": 31.0},
                }
                answer = await asyncio.to_thread(
                    http.post, "/api/v1/data/ingest", json={"readings": [reading]}
                )
                assert answer.json()["accepted"] == 1, answer.text
                return (await until_both(ws, {"alerts"}))["alerts"]

        pushed = asyncio.run(live())
        assert pushed["type"] == "alert_raised"
        alert = pushed["data"]
        assert (alert["sensor_id"], alert["value"], alert["severity"], alert["status"]) == (
            sensor,
            31.0,
            "critical",
            "open",
        )
        listed = http.get("/api/v1/events", params={"severity": "critical"}).json()["items"]
        assert [a["alert_id"] for a in listed] == [alert["alert_id"]]
