"""Registering the simulated building through the HTTP API, as an installer would: rooms, sensors and
devices of a site that exists, each idempotently (one that exists is kept: 409).

Devices go to POST /api/v1/iot/devices (API.md), which creates their IoT things. Where the devices
routes are not deployed (a 404 on the first one), the building says so in one line and goes on: its
devices then become IoT things when they first report to their shadow."""

from __future__ import annotations

from typing import Any

import httpx

from ems_sim.building import SensorSpec

DEVICES_PATH = "/api/v1/iot/devices"


def register(
    http_url: str, token: str, site: str, rooms: list[str] | tuple[str, ...], sensors: list[SensorSpec],
    devices: list[dict[str, Any]] | None = None, transport: httpx.BaseTransport | None = None,
) -> dict[str, int]:  # fmt: skip
    """Create what is missing; how many rooms, sensors and devices were created, and how many devices
    were not registered because the route is not there (`devices_unrouted`)."""
    headers = {"authorization": f"Bearer {token}", "x-site": site}
    created = {"rooms": 0, "sensors": 0, "devices": 0, "devices_unrouted": 0}
    with httpx.Client(base_url=http_url, headers=headers, timeout=60, transport=transport) as client:
        for room in rooms:
            created["rooms"] += _create(client, "/api/v1/rooms", {"name": room})
        for sensor in sensors:
            created["sensors"] += _create(client, "/api/v1/sensors", sensor.body())
        for device in devices or []:
            response = client.post(DEVICES_PATH, json=device)
            if response.status_code == 404:  # no devices domain deployed: the others are not tried
                created["devices_unrouted"] = len(devices or [])
                break
            created["devices"] += _created(response, DEVICES_PATH, device)
    return created


def _create(client: httpx.Client, path: str, body: dict[str, Any]) -> int:
    return _created(client.post(path, json=body), path, body)


def _created(response: httpx.Response, path: str, body: dict[str, Any]) -> int:
    if response.status_code == 409:
        return 0
    if response.status_code not in (200, 201):
        raise RuntimeError(f"POST {path} {body}: {response.status_code} {response.text}")
    return 1
