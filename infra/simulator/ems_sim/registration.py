"""Registering the simulated building through the HTTP API, as an installer would: rooms and sensors
of a site that exists. The devices routes (/iot/devices) do not exist yet: devices become IoT things
when they first report to their shadow, and only their sensors are registered here."""

from __future__ import annotations

from typing import Any

import httpx

from ems_sim.building import SensorSpec


def register(
    http_url: str, token: str, site: str, rooms: list[str] | tuple[str, ...], sensors: list[SensorSpec]
) -> dict[str, int]:
    """Create what is missing (an existing room or sensor is kept: 409); how many of each were created."""
    headers = {"authorization": f"Bearer {token}", "x-site": site}
    created = {"rooms": 0, "sensors": 0}
    with httpx.Client(base_url=http_url, headers=headers, timeout=60) as client:
        for room in rooms:
            created["rooms"] += _create(client, "/api/v1/rooms", {"name": room})
        for sensor in sensors:
            created["sensors"] += _create(client, "/api/v1/sensors", sensor.body())
    return created


def _create(client: httpx.Client, path: str, body: dict[str, Any]) -> int:
    response = client.post(path, json=body)
    if response.status_code == 409:
        return 0
    if response.status_code not in (200, 201):
        raise RuntimeError(f"POST {path} {body}: {response.status_code} {response.text}")
    return 1
