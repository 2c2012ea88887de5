"""A command through the running local cloud, end to end: HTTP POST /iot/devices/{id}/instructions, the
device (a paho client whose client id is its thing name) gets it on its commands topic and in its
shadow's delta, reports `last_command` applied through its shadow, the template's topic rule hands the
accepted update to DevicesFunction, and the command shows `applied` in the API and on the WebSocket
`devices/<id>` topic. Every wait is bounded polling; nothing asserts on time.
"""

from __future__ import annotations

import asyncio
import json
import queue
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from websockets.asyncio.client import connect

from tests.e2e.conftest import RunningStack, wait_for

pytestmark = pytest.mark.e2e

WAIT_SECONDS = 60  # a bound against hanging on a loaded machine, never asserted
SITE = "demo"
DEVICE = "DEVICE_001"
THING = f"{SITE}:{DEVICE}"


class Device:
    """A device on MQTT: keeps what it receives, in order."""

    def __init__(self, stack: RunningStack) -> None:
        url = urlsplit(stack.description["mqtt"])
        self.received: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.kept: dict[str, list[dict[str, Any]]] = {}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=THING)
        self.client.on_message = lambda c, u, m: self.received.put((m.topic, json.loads(m.payload)))
        self.client.connect(str(url.hostname), int(url.port or 0))
        self.client.loop_start()

    def subscribe(self, *topics: str) -> None:
        acked: queue.Queue[int] = queue.Queue()
        self.client.on_subscribe = lambda c, u, mid, codes, p: acked.put(mid)
        _, mid = self.client.subscribe([(t, 1) for t in topics])
        assert acked.get(timeout=10) == mid

    def next_on(self, topic: str) -> dict[str, Any]:
        """The next message on `topic`; messages on other topics are kept for their own turn."""
        give_up = time.monotonic() + WAIT_SECONDS
        while not self.kept.get(topic):
            try:
                got, payload = self.received.get(timeout=max(0.01, give_up - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"nothing on {topic} within {WAIT_SECONDS} s")
            self.kept.setdefault(got, []).append(payload)
        return self.kept[topic].pop(0)

    def report(self, reported: dict[str, Any]) -> None:
        payload = json.dumps({"state": {"reported": reported}})
        self.client.publish(f"$aws/things/{THING}/shadow/update", payload, qos=1).wait_for_publish(timeout=10)

    def close(self) -> None:
        if self.client.is_connected():
            self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def http(local_stack: RunningStack) -> Iterator[httpx.Client]:
    admin = {"authorization": f"Bearer {local_stack.admin_token}"}
    with httpx.Client(base_url=local_stack.http, timeout=30, headers=admin, params={"site": SITE}) as client:
        yield client


@pytest.fixture
def device(local_stack: RunningStack, http: httpx.Client) -> Iterator[Device]:
    created = http.post("/api/v1/iot/devices", json={
        "device_id": DEVICE, "name": "Office HVAC", "device_type": "hvac", "room": "Office", "rated_power_kw": 3.0,
    })  # fmt: skip
    assert created.status_code in (201, 409), created.text  # 409: registered by the module's first test
    assert http.get(f"/api/v1/iot/devices/{DEVICE}").json()["thing_name"] == THING
    made = Device(local_stack)
    made.subscribe(f"ems/{SITE}/devices/{DEVICE}/commands", f"$aws/things/{THING}/shadow/update/delta")
    yield made
    made.close()


def test_a_command_reaches_the_device_which_applies_it_and_the_api_and_websocket_say_so(
    local_stack: RunningStack, http: httpx.Client, device: Device
) -> None:
    minted = http.post(
        "/api/v1/tokens/generate",
        json={"name": "devices_page", "list_of_resources": ["iot"], "sites": [SITE]},
    )
    assert minted.status_code == 201, minted.text
    ws_url = f"{local_stack.description['ws']}?token={minted.json()['token']}"

    async def scenario() -> list[dict[str, Any]]:
        async with connect(ws_url) as ws:
            await ws.send(json.dumps({"action": "subscribe", "topics": [f"devices/{DEVICE}"]}))
            ack = json.loads(await asyncio.wait_for(ws.recv(), WAIT_SECONDS))
            assert ack["data"]["accepted"] == [f"devices/{DEVICE}"], ack
            sent = await asyncio.to_thread(
                http.post, f"/api/v1/iot/devices/{DEVICE}/instructions",
                json={"command": "set_mode", "params": {"mode": "cool"}, "command_id": "e2e-cool-1"},
            )  # fmt: skip
            assert sent.status_code == 201, sent.text
            assert sent.json()["status"] == "pending"

            command = await asyncio.to_thread(device.next_on, f"ems/{SITE}/devices/{DEVICE}/commands")
            assert (command["command_id"], command["command"], command["params"]) == (
                "e2e-cool-1", "set_mode", {"mode": "cool"},
            )  # fmt: skip
            delta = await asyncio.to_thread(device.next_on, f"$aws/things/{THING}/shadow/update/delta")
            assert delta["state"] == {"mode": "cool", "command_id": "e2e-cool-1"}
            device.report({
                "power": "on", "mode": "cool", "command_id": "e2e-cool-1",
                "last_command": {"command_id": "e2e-cool-1", "status": "applied"},
            })  # fmt: skip

            pushed: list[dict[str, Any]] = []
            while not any(m["data"]["status"] == "applied" for m in pushed):
                message = json.loads(await asyncio.wait_for(ws.recv(), WAIT_SECONDS))
                pushed.extend(message if isinstance(message, list) else [message])
            return pushed

    pushed = asyncio.run(scenario())
    assert [(m["topic"], m["type"]) for m in pushed][-1] == (f"devices/{DEVICE}", "command")
    assert [m["data"]["status"] for m in pushed] in (["pending", "applied"], ["applied"])
    assert pushed[-1]["data"]["command_id"] == "e2e-cool-1"

    def applied() -> dict[str, Any] | None:
        view = http.get(f"/api/v1/iot/devices/{DEVICE}").json()
        return view if view["last_command"]["status"] == "applied" else None

    view = wait_for(applied, "the command applied in the API", WAIT_SECONDS)
    assert view["shadow"]["reported"]["mode"] == "cool"
    assert view["shadow"]["delta"] == {}
    commands = http.get(f"/api/v1/iot/devices/{DEVICE}/commands").json()
    assert [(c["command_id"], c["status"]) for c in commands["items"]] == [("e2e-cool-1", "applied")]


def test_connectivity_follows_the_devices_presence_events(http: httpx.Client, device: Device) -> None:
    def connectivity(state: str) -> Any:
        return http.get(f"/api/v1/iot/devices/{DEVICE}").json()["connectivity"] == state or None

    wait_for(lambda: connectivity("online"), "the connected presence event reaching the device", WAIT_SECONDS)
    device.close()
    wait_for(
        lambda: connectivity("offline"), "the disconnected presence event reaching the device", WAIT_SECONDS
    )
