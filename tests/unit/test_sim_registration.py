"""The demo building registers itself through the HTTP API (httpx's MockTransport stands in for it):
rooms, sensors and devices with API.md's bodies, 409 kept as it is, and no devices route (404) said
once rather than failing."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from ems_sim.building import Building
from ems_sim.registration import DEVICES_PATH, register

NOON = datetime(2026, 6, 22, 11, 0, tzinfo=UTC)


def run(devices_answer: int) -> tuple[dict[str, int], list[tuple[str, dict[str, object]]]]:
    building, calls = Building("demo", NOON), []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append((request.url.path, body))
        assert request.headers["authorization"] == "Bearer t" and request.headers["x-site"] == "demo"
        if request.url.path == DEVICES_PATH:
            return httpx.Response(devices_answer, json={})
        return httpx.Response(409 if body.get("name") == "Office" else 201, json={})

    created = register(
        "http://ems.test", "t", "demo", building.rooms, building.sensors(), building.registrations(),
        transport=httpx.MockTransport(answer),
    )  # fmt: skip
    return created, calls


def test_rooms_sensors_and_devices_are_registered_an_existing_one_kept() -> None:
    created, calls = run(201)
    assert created == {"rooms": 3, "sensors": 25, "devices": 9, "devices_unrouted": 0}  # Office: 409
    devices = [body for path, body in calls if path == DEVICES_PATH]
    allowed = {
        "device_id",
        "name",
        "device_type",
        "room",
        "rated_power_kw",
        "dr_eligible",
        "comfort_priority",
    }
    assert all(body.keys() <= allowed for body in devices)
    assert {b["device_id"]: b["device_type"] for b in devices if b["device_id"] in ("DEVICE_001", "DEVICE_002", "BATT001")} == {
        "DEVICE_001": "hvac", "DEVICE_002": "water_heater", "BATT001": "battery_inverter",
    }  # fmt: skip
    # Rooms before the sensors and devices placed in them.
    assert [path for path, _ in calls][:4] == ["/api/v1/rooms"] * 4


def test_devices_already_there_are_kept() -> None:
    created, _ = run(409)
    assert (created["devices"], created["devices_unrouted"]) == (0, 0)


def test_no_devices_route_is_said_once_and_the_rest_goes_on() -> None:
    created, calls = run(404)
    assert created == {"rooms": 3, "sensors": 25, "devices": 0, "devices_unrouted": 9}
    assert sum(path == DEVICES_PATH for path, _ in calls) == 1  # not tried nine times


def test_another_failure_is_raised_with_what_was_sent() -> None:
    with pytest.raises(RuntimeError, match=r"POST /api/v1/iot/devices .* 422"):
        run(422)
