"""Simulated devices on MQTT, one paho client each, as real ones behave with IoT Core and the wire
contract (ems.devices.things): client id = thing name; telemetry on
`ems/{site}/devices/{device_id}/telemetry`; commands from `.../commands` and from the thing's shadow
(`update/delta`, and the delta of `get/accepted` asked for on every (re)connection, so a command sent
while it was away still arrives); each command_id answered once, by a report to the shadow with
`command_id` and `last_command`.

The building (ems_sim.building) is touched from one thread at a time (a lock): the tick thread that
advances it and publishes, and paho's network threads that deliver commands.

Time is the EMS clock (ems.core.clock.utc_now: the local cloud's, start and speed, when it runs
faster). Pacing stays real: the building ticks every `interval_s` real seconds and the load fleet
sends `rate` readings per real second, whatever the speed (the local cloud's capacity is in real
time); their timestamps, and the building's physics (time of day, the step between ticks), are the
clock's. At 60x a 5 s tick is 5 simulated minutes.
"""

from __future__ import annotations

import json
import random
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ems.core.clock import Clock, utc_now
from ems.devices.things import commands_topic, shadow_topic, telemetry_topic, thing_name
from ems_sim.building import Building

Log = Callable[[str], None]
CONNECT_WAIT_S = 10.0


class DeviceClient:
    """One device's MQTT connection, its client id its thing name; `on_message(device_id, topic,
    payload)` gets what it receives. `listen` False: a device that only publishes (the load fleet).
    It connects on `start()`, not when built: a command can arrive the moment it connects, and its
    owner must be ready to answer it."""

    def __init__(
        self, site: str, device_id: str, host: str, port: int, on_message: Callable[[str, str, bytes], None],
        listen: bool = True,
    ) -> None:  # fmt: skip
        self.site, self.device_id, self.listen = site, device_id, listen
        self.host, self.port = host, port
        self.thing = thing_name(site, device_id)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.thing)
        self.client.on_connect = self._connected
        self.client.on_message = lambda client, userdata, message: on_message(
            device_id, message.topic, bytes(message.payload)
        )

    def start(self) -> None:
        self.client.connect_async(self.host, self.port)
        self.client.loop_start()

    def _connected(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        # On every (re)connection: a clean session forgets subscriptions; then ask for the shadow, whose
        # delta holds what was desired while the device was away.
        if not self.listen:
            return
        client.subscribe(
            [
                (commands_topic(self.site, self.device_id), 1),
                (shadow_topic(self.thing, "update/delta"), 1),
                (shadow_topic(self.thing, "get/accepted"), 1),
            ]
        )
        client.publish(shadow_topic(self.thing, "get"), b"{}", qos=1)

    def publish(self, topic: str, document: dict[str, Any], qos: int = 0) -> bool:
        """Only paho's network thread may write while it connects: a publish from another thread in
        that window can reach the broker before CONNECT, which drops the session (amqtt: "Can't read
        first packet as CONNECT"), and the device is gone until its keepalive. So telemetry (QoS 0)
        is not sent while not connected, as a device without a buffer would lose it; a QoS 1 message
        from another thread is sent only before `start()`, when paho keeps it for the CONNACK.
        False: not sent."""
        if qos == 0 and not self.client.is_connected():
            return False
        self.client.publish(topic, json.dumps(document, separators=(",", ":")), qos=qos)
        return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class BuildingFleet:
    """The demo building's devices on MQTT, ticking every `interval_s` real seconds on `clock`'s time."""

    def __init__(
        self, building: Building, host: str, port: int, interval_s: float = 5.0, log: Log = print,
        clock: Clock = utc_now,
    ) -> None:  # fmt: skip
        self.building, self.interval_s, self.log, self.clock = building, interval_s, log, clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.clients = {
            device_id: DeviceClient(building.site_id, device_id, host, port, self._on_message)
            for device_id in building.devices
        }
        self._thread = threading.Thread(target=self._run, name="demo-building", daemon=True)

    def start(self) -> None:
        for device_id, client in self.clients.items():
            self._report(device_id)  # kept by paho until connected (see DeviceClient.publish)
            client.start()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.tick(self.clock())
            self._stop.wait(self.interval_s)

    def tick(self, now: datetime) -> None:
        """Advance the building to `now` and publish every device's telemetry."""
        ts_ms = int(now.timestamp() * 1000)
        with self._lock:
            self.building.step(now)
            messages = {d: self.building.telemetry(d, ts_ms) for d in self.clients}
        for device_id, message in messages.items():
            self.clients[device_id].publish(telemetry_topic(self.building.site_id, device_id), message)

    def _received(self, device_id: str, topic: str, payload: bytes) -> None:
        try:
            message = json.loads(payload)
            if not isinstance(message, dict):
                raise ValueError("not a JSON object")
            if topic.endswith("/get/accepted"):
                command = (message.get("state") or {}).get("delta")
                if not command:
                    return
            elif topic.endswith("/update/delta"):
                command = message.get("state")
            else:
                command = message
            if not isinstance(command, dict):
                raise ValueError("no state in it")
            with self._lock:
                reported = self.building.receive(device_id, command, delta="/shadow/" in topic)
        except ValueError as exc:  # not JSON, not an object: nothing to answer
            self.log(f"{device_id}: ignored a message on {topic}: {exc}")
            return
        if reported is None:
            return
        answer = reported.get("last_command") or {}
        if answer:
            reason = f": {answer['reason']}" if answer.get("reason") else ""
            self.log(f"{device_id}: {answer['status']} {answer['command_id']}{reason}")
        self._report(device_id, reported)

    def _on_message(self, device_id: str, topic: str, payload: bytes) -> None:
        # paho's network thread: an exception raised here ends that thread, and the device, still
        # connected, would hear and send nothing more. Say what went wrong and go on listening.
        try:
            self._received(device_id, topic, payload)
        except Exception as exc:
            self.log(f"{device_id}: handling a message on {topic} failed: {exc!r}\n{traceback.format_exc()}")

    def _report(self, device_id: str, reported: dict[str, Any] | None = None) -> None:
        if reported is None:
            with self._lock:
                reported = self.building.reported(device_id)
        client = self.clients[device_id]
        client.publish(shadow_topic(client.thing, "update"), {"state": {"reported": reported}}, qos=1)

    def disconnect(self, device_id: str) -> None:
        """The device goes away (switched off, its network down): its connection closes."""
        self.clients[device_id].close()

    def connect(self, device_id: str) -> None:
        """The device comes back: a new connection, which asks for its shadow (what was desired meanwhile)."""
        old = self.clients[device_id]
        self.clients[device_id] = client = DeviceClient(
            old.site, device_id, old.host, old.port, self._on_message
        )
        client.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        for client in self.clients.values():
            client.close()


class LoadFleet:
    """`ems simulate`: N plain metering devices publishing `rate` readings per second in all, for load."""

    def __init__(
        self, site: str, devices: int, rate: float, host: str, port: int, seed: int = 0, prefix: str = "load",
        clock: Clock = utc_now,
    ) -> None:  # fmt: skip
        self.site, self.rate, self.clock = site, rate, clock
        self.rng = random.Random(seed)
        self.device_ids = [f"{prefix}-{i:04d}" for i in range(devices)]
        self.power_w = {d: self.rng.uniform(50, 2000) for d in self.device_ids}
        self.clients = [
            DeviceClient(site, d, host, port, lambda *message: None, listen=False) for d in self.device_ids
        ]
        for client in self.clients:
            client.start()
        self.sent = 0

    def run(self, seconds: float, stop: threading.Event | None = None) -> int:
        """Publish for `seconds` (round-robin over the devices, paced to `rate`, both real), once the
        devices are connected (waiting up to CONNECT_WAIT_S); how many were sent (a device that is
        not connected at its turn sends nothing)."""
        stop = stop or threading.Event()
        give_up = time.monotonic() + CONNECT_WAIT_S
        while not all(c.client.is_connected() for c in self.clients) and time.monotonic() < give_up:
            if stop.wait(0.05):
                return self.sent
        started, turns = time.monotonic(), 0
        while not stop.is_set() and time.monotonic() - started < seconds:
            client = self.clients[turns % len(self.clients)]
            watts = self.power_w[client.device_id] = max(
                0.0, self.power_w[client.device_id] + self.rng.gauss(0, 20)
            )
            ts_ms = int(self.clock().timestamp() * 1000)
            reading = {"sensor_id": client.device_id, "ts": ts_ms, "value": round(watts, 1)}
            self.sent += client.publish(telemetry_topic(self.site, client.device_id), reading)
            turns += 1
            ahead_s = started + turns / self.rate - time.monotonic()
            if ahead_s > 0:
                stop.wait(ahead_s)
        return self.sent

    def close(self) -> None:
        for client in self.clients:
            client.close()
