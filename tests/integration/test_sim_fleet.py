"""The demo building's devices (ems_sim.fleet, real paho clients) against the local cloud's IoT Core
(its amqtt broker and shadows, moto in process): a command on the command topic answered through the
shadow, a command desired while a device was away obeyed when it comes back (its shadow's delta,
asked for on connecting), commands already waiting in every shadow when the fleet connects all
answered, and a message the building cannot handle logged without the device going deaf."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
from moto import mock_aws

from ems.devices.things import commands_topic, thing_name
from ems_local.iot_core import IotCore
from ems_local.template import Stack
from ems_sim import fleet as fleet_module
from ems_sim.building import Building
from ems_sim.fleet import BuildingFleet

T = TypeVar("T")
NOON = datetime(2026, 6, 22, 11, 0, tzinfo=UTC)
SITE, LIGHTING = "site-a", "site-a-lighting"


def wait_for(probe: Callable[[], T | None], what: str, seconds: float = 20) -> T:
    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up:
        if found := probe():
            return found
        time.sleep(0.1)
    pytest.fail(f"no {what} within {seconds} s")


@pytest.fixture
def iot(tmp_path: Path) -> Iterator[IotCore]:
    """The local cloud's IoT Core (its broker on a free port, shadows in moto), no rules."""
    (tmp_path / "template.yaml").write_text("Resources: {}\n")
    with mock_aws():
        clients: dict[str, Any] = {}

        def aws_client(service: str) -> Any:
            return clients.setdefault(service, boto3.client(service, region_name="us-east-1"))

        core = IotCore(
            Stack.from_file(tmp_path / "template.yaml"), lambda *invocation: None, aws_client, port=0
        )
        core.start()
        try:
            yield core
        finally:
            core.stop()


def started_fleet(iot: IotCore, log: Callable[[str], None] = lambda line: None) -> BuildingFleet:
    fleet = BuildingFleet(Building(SITE, NOON, seed=1), "127.0.0.1", iot.broker.port, interval_s=3600, log=log,
                          clock=lambda: NOON)  # fmt: skip
    fleet.start()
    return fleet


@pytest.fixture
def cloud(iot: IotCore) -> Iterator[tuple[IotCore, BuildingFleet]]:
    fleet = started_fleet(iot, print)  # the fleet's log shows with a failure's report
    try:
        yield iot, fleet
    finally:
        fleet.stop()


def reported(iot: IotCore, thing: str) -> dict[str, Any]:
    try:
        return dict(iot.shadows.get(thing).get("state", {}).get("reported") or {})
    except Exception:  # no shadow yet
        return {}


def answer(iot: IotCore, device_id: str, command_id: str, what: str) -> dict[str, Any]:
    """The device's reported state once it carries `command_id`'s answer."""
    thing = thing_name(SITE, device_id)
    return wait_for(lambda: (r := reported(iot, thing)).get("command_id") == command_id and r, what)


def test_a_command_on_its_topic_is_answered_through_the_shadow(cloud: Any) -> None:
    iot, fleet = cloud
    thing = thing_name(SITE, LIGHTING)
    assert fleet.clients[LIGHTING].thing == thing == "site-a:site-a-lighting"
    wait_for(lambda: reported(iot, thing).get("power") == "on", "the first report")
    command = {"command_id": "c-1", "command": "set_power", "params": {"kw": 0.5}, "issued_at": "x"}
    iot.broker.publish(commands_topic(SITE, LIGHTING), json.dumps(command).encode(), qos=1)
    state = answer(iot, LIGHTING, "c-1", "the answer")
    assert state["last_command"] == {"command_id": "c-1", "status": "applied"}
    assert state["power_kw"] == 0.5 and fleet.building.balance().loads_kw[LIGHTING] == 0.5


def test_a_command_desired_while_the_device_was_away_is_obeyed_when_it_returns(cloud: Any) -> None:
    iot, fleet = cloud
    thing = thing_name(SITE, LIGHTING)
    wait_for(lambda: reported(iot, thing).get("power") == "on", "the first report")
    fleet.disconnect(LIGHTING)
    desired = {"power": "off", "command_id": "c-2"}
    iot.shadows.update(thing, json.dumps({"state": {"desired": desired}}).encode())
    time.sleep(1)  # the delta went out with nobody listening: the device has not answered
    assert reported(iot, thing).get("command_id") is None and fleet.building.devices[LIGHTING].on is True
    fleet.connect(LIGHTING)
    state = answer(iot, LIGHTING, "c-2", "the late answer")
    assert state["power"] == "off" and state["last_command"] == {"command_id": "c-2", "status": "applied"}
    assert "delta" not in iot.shadows.get(thing)["state"]  # desired and reported agree, command_id too


def test_commands_waiting_in_every_shadow_when_the_fleet_connects_are_all_answered(
    iot: IotCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo stack's start: EMS sends the first commands while the building is still registering, so
    # every device's get/accepted carries a delta the moment it connects, while the fleet is still
    # being built. Each must obey and report it, and still hear the next command on its topic.
    # Building each client takes a while here (as on a loaded machine), so a client that connected
    # as soon as it was built would hear its delta before the fleet was ready to answer it.
    class SlowToBuild(fleet_module.DeviceClient):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            time.sleep(0.2)

    monkeypatch.setattr(fleet_module, "DeviceClient", SlowToBuild)
    switchable = [
        d for d, device in Building(SITE, NOON, seed=1).devices.items() if "power" in device.reported()
    ]
    assert len(switchable) >= 2, switchable  # more than one device: the first is not the only one heard
    for device_id in switchable:
        desired = {"power": "off", "command_id": f"early-{device_id}"}
        iot.shadows.update(thing_name(SITE, device_id), json.dumps({"state": {"desired": desired}}).encode())
    logged: list[str] = []
    fleet = started_fleet(iot, logged.append)
    try:
        for device_id in switchable:
            state = answer(iot, device_id, f"early-{device_id}", f"{device_id}'s answer to its shadow")
            assert state["power"] == "off", (device_id, state)
        for device_id in switchable:
            command = {"command_id": f"next-{device_id}", "command": "on", "params": {}, "issued_at": "x"}
            iot.broker.publish(commands_topic(SITE, device_id), json.dumps(command).encode(), qos=1)
        for device_id in switchable:
            state = answer(iot, device_id, f"next-{device_id}", f"{device_id}'s answer to the next command")
            assert state["last_command"]["status"] == "applied", (device_id, state)
            assert state["power"] == "on", (device_id, state)
        assert not [line for line in logged if "failed" in line], logged
    finally:
        fleet.stop()


def test_a_message_the_building_cannot_handle_is_logged_and_the_device_still_listens(
    cloud: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    iot, fleet = cloud
    thing = thing_name(SITE, LIGHTING)
    wait_for(lambda: reported(iot, thing).get("power") == "on", "the first report")
    logged: list[str] = []
    fleet.log = logged.append
    receive = fleet.building.receive

    def broken_once(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(fleet.building, "receive", receive)
        raise KeyError("a bug in the simulator")

    monkeypatch.setattr(fleet.building, "receive", broken_once)
    first = {"command_id": "c-3", "command": "off", "params": {}, "issued_at": "x"}
    iot.broker.publish(commands_topic(SITE, LIGHTING), json.dumps(first).encode(), qos=1)
    wait_for(lambda: [line for line in logged if "failed" in line], "the failure in the log")
    second = {"command_id": "c-4", "command": "off", "params": {}, "issued_at": "x"}
    iot.broker.publish(commands_topic(SITE, LIGHTING), json.dumps(second).encode(), qos=1)
    state = answer(iot, LIGHTING, "c-4", "the next answer")
    assert state["power"] == "off" and state["last_command"] == {"command_id": "c-4", "status": "applied"}
    first_line, *trace = logged[0].splitlines()
    topic = commands_topic(SITE, LIGHTING)
    assert (
        first_line == f"{LIGHTING}: handling a message on {topic} failed: KeyError('a bug in the simulator')"
    )
    assert trace[0] == "Traceback (most recent call last):" and "broken_once" in logged[0]
