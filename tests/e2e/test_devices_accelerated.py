"""Devices in the local cloud on an accelerated clock (2030-03-30T12:00Z, 60x; ems local up --clock
--speed): a command nobody answers ends timed_out by the StaleCommands schedule and raises an alert
(GET /api/v1/events); the rule "Office temperature > 26 for 5 minutes -> HVAC set_mode cool" fires
exactly once over 20 minutes of readings above 26 that go in over MQTT (topic rule, queue, ingest,
TelemetryReceived), and again after the temperature fell below 26 and rose again. Every wait is
bounded polling on the stack's own state; nothing asserts on time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ems.core.clock import ScaledClock
from tests.e2e.conftest import running_local_cloud, wait_for

pytestmark = pytest.mark.e2e

SITE = "demo"
WAIT_SECONDS = 90  # a bound against hanging on a loaded machine, never asserted


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home: Path = tmp_path_factory.mktemp("devices60x")
    args = ("--no-building", "--clock", "2030-03-30T12:00:00Z", "--speed", "60",
            "--param", "TelemetryQueueVisibilityTimeoutSeconds=30")  # fmt: skip
    with running_local_cloud(home, *args, served=True) as description:
        yield description


@pytest.fixture(scope="module")
def http(stack: dict[str, Any]) -> Iterator[httpx.Client]:
    admin = {"authorization": f"Bearer {stack['admin_token']}"}
    with httpx.Client(base_url=stack["http"], timeout=30, headers=admin, params={"site": SITE}) as client:
        yield client


def created(reply: httpx.Response) -> Any:
    assert reply.status_code == 201, reply.text
    return reply.json()


def test_an_unanswered_command_times_out_and_raises_an_alert(http: httpx.Client) -> None:
    created(http.post("/api/v1/iot/devices", json={"device_id": "DEVICE_002", "name": "Water heater",
                                                  "device_type": "water_heater", "rated_power_kw": 2.0}))  # fmt: skip
    command = created(http.post("/api/v1/iot/devices/DEVICE_002/instructions", json={"command": "on"}))
    assert command["status"] == "pending"

    def closed() -> Any:
        items = http.get("/api/v1/iot/devices/DEVICE_002/commands").json()["items"]
        return items[0] if items[0]["status"] != "pending" else None

    final = wait_for(closed, "the stale check closing the command", WAIT_SECONDS)
    assert (final["status"], final["reason"]) == ("timed_out", "no answer from the device")

    def alert() -> Any:
        events = http.get("/api/v1/events").json()["items"]
        return [e for e in events if command["command_id"] in e["message"]]

    (raised,) = wait_for(alert, "the alert of the timed-out command", WAIT_SECONDS)
    assert (raised["kind"], raised["source"], raised["severity"]) == ("system", "ems.devices", "warning")


def test_the_office_rule_fires_once_while_hot_and_again_after_it_cooled(
    stack: dict[str, Any], http: httpx.Client
) -> None:
    clock = ScaledClock.from_env(stack["clock"]["env"])
    created(http.post("/api/v1/sensors", json={"sensor_id": "TEMP_OFFICE", "name": "Office temperature",
                                              "sensor_type": "temperature"}))  # fmt: skip
    created(http.post("/api/v1/iot/devices", json={"device_id": "DEVICE_001", "name": "Office HVAC",
                                                  "device_type": "hvac", "rated_power_kw": 3.0}))  # fmt: skip
    rule = created(http.post("/api/v1/iot/rules", json={
        "name": "Office too warm",
        "condition": {"sensor_id": "TEMP_OFFICE", "metric": "temperature_c", "op": ">", "threshold": 26, "for_minutes": 5},
        "action": {"device_id": "DEVICE_001", "command": "set_mode", "params": {"mode": "cool"}},
    }))  # fmt: skip

    url = urlsplit(stack["mqtt"])
    thermometer = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="office-thermometer")
    thermometer.connect(str(url.hostname), int(url.port or 0))
    thermometer.loop_start()
    start = clock.now().replace(second=0, microsecond=0) + timedelta(minutes=1)

    def publish(minutes: list[int], celsius: float) -> int:
        """One reading a simulated minute from `start`, sent once its time has come; the last ts."""
        ts_ms = 0
        for minute in minutes:
            at = start + timedelta(minutes=minute)
            while clock.now() < at:
                time.sleep(0.05)
            ts_ms = int(at.timestamp() * 1000)
            payload = {
                "ts": ts_ms,
                "readings": [{"sensor_id": "TEMP_OFFICE", "metrics": {"temperature_c": celsius}}],
            }
            thermometer.publish(
                f"ems/{SITE}/devices/office-thermometer/telemetry", json.dumps(payload), qos=1
            )
        return ts_ms

    def judged_up_to(ts_ms: int) -> Any:
        return http.get(f"/api/v1/iot/rules/{rule['rule_id']}").json().get("last_ms") == ts_ms or None

    def from_the_rule() -> list[dict[str, Any]]:
        items = http.get("/api/v1/iot/devices/DEVICE_001/commands").json()["items"]
        return [c for c in items if c["source"] == "rule"]

    try:
        last = publish(list(range(21)), 27.5)  # twenty minutes above 26
        wait_for(lambda: judged_up_to(last), "the rule judging every reading", WAIT_SECONDS)
        first = from_the_rule()
        assert [(c["command"], c["params"]) for c in first] == [("set_mode", {"mode": "cool"})]
        assert (
            first[0]["command_id"]
            == f"{rule['rule_id']}-{int((start + timedelta(minutes=5)).timestamp() * 1000)}"
        )

        publish([21, 22], 25.0)  # below: re-armed
        last = publish(list(range(23, 30)), 27.0)  # above again, six minutes
        wait_for(lambda: judged_up_to(last), "the rule judging every reading", WAIT_SECONDS)
        assert len(from_the_rule()) == 2
        firings = http.get(f"/api/v1/iot/rules/{rule['rule_id']}").json()["last_firings"]
        assert [f["outcome"] for f in firings] == ["sent", "sent"]
    finally:
        thermometer.disconnect()
        thermometer.loop_stop()


@pytest.fixture(scope="module")
def dst_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The night Berlin moves to summer time: 2030-03-31 01:00 UTC is 03:00 CEST (02:00 CET before)."""
    home: Path = tmp_path_factory.mktemp("devicesdst")
    with running_local_cloud(
        home, "--no-building", "--clock", "2030-03-31T00:15:00Z", "--speed", "30"
    ) as described:
        yield described


def test_a_berlin_cron_fires_at_the_utc_instant_of_summer_time_on_the_local_scheduler(
    dst_stack: dict[str, Any],
) -> None:
    clock = ScaledClock.from_env(dst_stack["clock"]["env"])
    admin = {"authorization": f"Bearer {dst_stack['admin_token']}"}
    with httpx.Client(base_url=dst_stack["http"], timeout=30, headers=admin, params={"site": SITE}) as client:
        created(client.post("/api/v1/iot/devices", json={"device_id": "DEVICE_001", "name": "Office HVAC",
                                                        "device_type": "hvac"}))  # fmt: skip
        schedule = created(client.post("/api/v1/iot/schedules", json={
            "name": "Warm the office by 03:00", "cron": "0 3 * * ? *", "timezone": "Europe/Berlin",
            "action": {"device_id": "DEVICE_001", "command": "set_mode", "params": {"mode": "heat"}},
        }))  # fmt: skip
        # 45 simulated minutes before 01:00 UTC are 90 real seconds at 30x for a loaded machine's start.
        assert clock.now().isoformat() < "2030-03-31T00:59", "the stack started too late to see 01:00 UTC"

        def sent() -> list[dict[str, Any]]:
            return client.get("/api/v1/iot/devices/DEVICE_001/commands").json()["items"]

        (command,) = wait_for(sent, "the schedule's first firing", 240)
        # 03:00 in Berlin that morning is 01:00 UTC (CEST); a fixed +01:00 would have said 02:00 UTC.
        assert command["command_id"] == f"{schedule['schedule_id']}-0-20300331T010000Z"
        assert (command["source"], command["command"]) == ("schedule", "set_mode")
        assert command["issued_at"] < "2030-03-31T01:30"
