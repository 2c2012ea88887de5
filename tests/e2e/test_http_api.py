"""The HTTP API of the running local cloud, driven with httpx as the dashboard and scripts drive it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import RunningStack, local_up, running, running_local_cloud

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def client(local_stack: RunningStack) -> httpx.Client:
    with httpx.Client(base_url=local_stack.http, timeout=30) as http:
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_health_checks_every_dependency(client: httpx.Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] and all(check["status"] == "ok" for check in body["checks"].values())


def test_demo_site_exists(client: httpx.Client, local_stack: RunningStack) -> None:
    assert local_stack.description["site"] == "demo"
    response = client.get("/api/v1/sites/demo", headers=bearer(local_stack.admin_token))
    assert response.status_code == 200, response.text
    assert (response.json()["name"], response.json()["country"]) == (
        "Demo building",
        "DE-BE",
    )  # Berlin's holidays


def test_seed_workflow_until_revoked(client: httpx.Client, local_stack: RunningStack) -> None:
    minted = client.post(
        "/api/v1/tokens/generate", headers=bearer(local_stack.admin_token),
        json={"name": "dashboard_user", "list_of_resources": ["sensors", "rooms", "analytics"]},
    )  # fmt: skip
    assert minted.status_code == 201, minted.text
    user = {**bearer(minted.json()["token"]), "x-site": "demo"}

    room = client.post(
        "/api/v1/rooms", headers=user, json={"name": "Conference Room A", "floor": "2nd", "capacity": 20}
    )
    assert room.status_code == 201, room.text
    sensor = client.post(
        "/api/v1/sensors", params={"site": "demo"}, headers=bearer(minted.json()["token"]),
        json={"sensor_id": "TEMP_001", "name": "Conference Room Temperature", "sensor_type": "temperature",
              "room": "Conference Room A"},
    )  # fmt: skip
    assert sensor.status_code == 201, sensor.text
    assert client.get("/api/v1/sensors/TEMP_001", headers=user).json()["room"] == "Conference Room A"

    # The original dashboard names no site: the local stack's default site is the demo site.
    rooms = client.get("/api/v1/rooms", headers=bearer(minted.json()["token"]))
    assert rooms.status_code == 200, rooms.text
    assert [room["name"] for room in rooms.json()["items"]] == ["Conference Room A"]

    revoked = client.post(
        "/api/v1/tokens/revoke", headers=bearer(local_stack.admin_token), json={"jti": minted.json()["jti"]}
    )
    assert revoked.status_code == 200, revoked.text
    assert client.get("/api/v1/rooms", headers=user).status_code == 401


def test_no_token_is_401(client: httpx.Client) -> None:
    response = client.get("/api/v1/rooms", params={"site": "demo"})
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}


def test_token_without_the_resource_is_403(client: httpx.Client, local_stack: RunningStack) -> None:
    minted = client.post(
        "/api/v1/tokens/generate", headers=bearer(local_stack.admin_token),
        json={"name": "sensor_reader", "list_of_resources": ["sensors"], "sites": ["demo"]},
    )  # fmt: skip
    assert minted.status_code == 201, minted.text
    token = minted.json()["token"]
    assert client.get("/api/v1/sensors", headers=bearer(token)).status_code == 200
    response = client.get("/api/v1/rooms", headers=bearer(token))
    assert response.status_code == 403
    assert response.json() == {"message": "Forbidden"}


def test_unknown_route_is_404(client: httpx.Client) -> None:
    assert client.get("/api/v1/no-such-thing").status_code == 404


def test_cors_preflight_is_answered_by_the_gateway(client: httpx.Client) -> None:
    response = client.options(
        "/api/v1/rooms",
        headers={"origin": "http://localhost:3000", "access-control-request-method": "POST",
                 "access-control-request-headers": "authorization,content-type"},
    )  # fmt: skip
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"].split(",")
    assert "Authorization" in response.headers["access-control-allow-headers"].split(",")
    assert response.headers["access-control-max-age"] == "600"
    # ...and an actual cross-origin response carries the origin header too, even a refusal.
    refused = client.get("/api/v1/rooms", headers={"origin": "http://localhost:3000"})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "*"


def test_cli_admin_token_works_against_the_running_stack(
    client: httpx.Client, local_stack: RunningStack
) -> None:
    # The CLI finds the stack through ./.local/stack.json, as after `make dev`.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    for name in local_stack.description["env"]:
        env.pop(name, None)
    ems = Path(sys.executable).with_name("ems")
    command = [str(ems)] if ems.exists() else [sys.executable, "-m", "ems_cli"]
    done = subprocess.run(
        [*command, "token", "create", "--admin"], cwd=local_stack.home, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.count(".") == 2
    response = client.get("/api/v1/sites", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert "demo" in [site["site_id"] for site in response.json()["items"]]


def test_a_taken_port_is_refused_clearly(local_stack: RunningStack, tmp_path: Path) -> None:
    taken = local_stack.ports()[0]
    second = local_up(tmp_path, "--http-port", str(taken))
    assert second.wait(timeout=120) == 1
    output = (tmp_path / "local.log").read_text()
    assert f"port {taken} on 127.0.0.1 (http) is already in use" in output
    assert not (tmp_path / ".local" / "stack.json").exists()


def test_the_state_dir_keeps_data_and_tokens_across_a_restart_and_reset_clears_it(tmp_path: Path) -> None:
    """Started, given a room and a reading, stopped by its PID; started again on the same directory:
    the room, the reading and the first admin token are there. With --reset: none of them."""
    window = {"metric": "temperature_c", "resolution": "raw"}
    with running_local_cloud(tmp_path, "--no-building", "--empty") as first:
        admin = {"authorization": f"Bearer {first['admin_token']}", "x-site": "kept"}
        with httpx.Client(base_url=first["http"], headers=admin, timeout=30) as http:
            assert http.post("/api/v1/sites", json={"site_id": "kept", "name": "Kept"}).status_code == 201
            assert http.post("/api/v1/rooms", json={"name": "Vault"}).status_code == 201
            sensor = {"sensor_id": "KEPT_T", "name": "t", "sensor_type": "temperature", "room": "Vault"}
            assert http.post("/api/v1/sensors", json=sensor).status_code == 201
            ts = int(time.time()) - 60
            reading = {"sensor_id": "KEPT_T", "ts": ts, "metrics": {"temperature_c": 19.5}}
            assert http.post("/api/v1/data/ingest", json={"readings": [reading]}).json()["accepted"] == 1
    assert (tmp_path / ".local" / "aws-state.json").exists()  # written by the moto process on the stop
    assert not running(first["aws_pid"]), "the first run's moto process outlived it"

    query = {**window, "start_time": ts - 60, "end_time": ts + 60}
    with (
        running_local_cloud(tmp_path, "--no-building", "--empty") as second,
        httpx.Client(base_url=second["http"], headers=admin, timeout=30) as http,
    ):  # the first run's token: signed by the first moto process's key, verified by the second's
        assert second["aws_pid"] != first["aws_pid"]
        assert http.get("/api/v1/rooms/Vault").json()["sensor_count"] == 1
        points = http.get("/api/v1/sensors/KEPT_T/data", params=query).json()["points"]
        assert [(p["value"], p["count"]) for p in points] == [(19.5, 1)]

    with running_local_cloud(tmp_path, "--no-building", "--empty", "--reset") as third:
        fresh = {"authorization": f"Bearer {third['admin_token']}", "x-site": "kept"}
        with httpx.Client(base_url=third["http"], timeout=30) as http:
            assert http.get("/api/v1/rooms", headers=admin).status_code == 401  # its key is gone
            assert http.get("/api/v1/sites/kept", headers=fresh).status_code == 404
