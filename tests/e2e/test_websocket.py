"""The WebSocket API of the running local cloud, driven by real clients: websockets, httpx and boto3.

Messages are published from this process with ems.realtime's own `publish`, configured as a
function would be (the stack's environment, moto for DynamoDB, the local @connections endpoint).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import boto3
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e

# Long enough for a cold worker on a slow machine; only a bound against hanging, never asserted.
WAIT_SECONDS = 60


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coroutine)


async def receive(ws: ClientConnection) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), WAIT_SECONDS))


async def request(ws: ClientConnection, message: dict[str, Any]) -> Any:
    await ws.send(json.dumps(message))
    return await receive(ws)


async def closed(ws: ClientConnection) -> ConnectionClosed:
    """How the server closed the connection."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), WAIT_SECONDS)
    except ConnectionClosed as exc:
        return exc


@pytest.fixture(scope="module")
def http(local_stack: RunningStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=local_stack.http, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def reader_token(http: httpx.Client, local_stack: RunningStack) -> str:
    """A dashboard's token: sensors and rooms of the demo site; two sensors to subscribe to."""
    admin = {"authorization": f"Bearer {local_stack.admin_token}"}
    for sensor_id in ("TEMP_001", "TEMP_002"):
        created = http.post(
            "/api/v1/sensors", params={"site": "demo"}, headers=admin,
            json={"sensor_id": sensor_id, "name": f"Temperature {sensor_id}", "sensor_type": "temperature"},
        )  # fmt: skip
        assert created.status_code == 201, created.text
    minted = http.post(
        "/api/v1/tokens/generate", headers=admin,
        json={"name": "ws_reader", "list_of_resources": ["sensors", "rooms"], "sites": ["demo"]},
    )  # fmt: skip
    assert minted.status_code == 201, minted.text
    return str(minted.json()["token"])


@pytest.fixture
def functions_env(local_stack: RunningStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """This process configured as a function of the stack is: its variables and its endpoints."""
    env = dict(local_stack.description["env"])
    management = f"{local_stack.description['aws_services']}/{env['STAGE']}"
    for key, value in {**env, "AWS_ENDPOINT_URL": local_stack.description["aws"],
                       "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI": management}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    _forget_clients()
    yield {**env, "management": management}
    _forget_clients()


def _forget_clients() -> None:
    """Drop what this process built for the stack: settings, the botocore session and its clients
    (made before moto was imported, they would bypass a later `mock_aws`), PynamoDB's connections."""
    from ems.core import aws, settings
    from ems.realtime.store import ConnectionRecord, SubscriptionRecord

    settings.settings.cache_clear()
    aws.client.cache_clear()
    aws.session.cache_clear()
    for model in (ConnectionRecord, SubscriptionRecord):
        model._connection = None


def ws_url(local_stack: RunningStack, token: str | None = None, on_http_port: bool = False) -> str:
    base = (
        local_stack.http.replace("http://", "ws://", 1) + "/ws"
        if on_http_port
        else local_stack.description["ws"]
    )
    return base if token is None else f"{base}?token={token}"


# ---------------------------------------------------------------- $connect


@pytest.mark.parametrize("token", [None, "", "not-a-jwt"])
def test_a_missing_or_bad_token_is_refused_at_connect(local_stack: RunningStack, token: str | None) -> None:
    async def attempt() -> int:
        try:
            async with connect(ws_url(local_stack, token)):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    assert run(attempt()) == 401


def test_a_revoked_token_is_401_and_a_site_not_granted_is_403(
    local_stack: RunningStack, http: httpx.Client, reader_token: str
) -> None:
    admin = {"authorization": f"Bearer {local_stack.admin_token}"}
    minted = http.post(
        "/api/v1/tokens/generate", headers=admin, json={"name": "gone", "list_of_resources": ["sensors"]}
    )
    assert (
        http.post("/api/v1/tokens/revoke", headers=admin, json={"jti": minted.json()["jti"]}).status_code
        == 200
    )

    async def status(url: str) -> int:
        try:
            async with connect(url):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    assert run(status(ws_url(local_stack, minted.json()["token"]))) == 401
    assert run(status(ws_url(local_stack, reader_token) + "&site=elsewhere")) == 403


# ---------------------------------------------------------------- subscribe, publish, 410


def test_subscriber_gets_the_ack_and_the_message_published_for_its_topic(
    local_stack: RunningStack, reader_token: str, functions_env: dict[str, str]
) -> None:
    from ems.realtime import service
    from ems.realtime.store import ManagementApiPoster, RealtimeStore

    async def scenario() -> tuple[Any, Any, Any, Any]:
        async with connect(ws_url(local_stack, reader_token)) as ws:
            ack = await request(
                ws, {"action": "subscribe", "topics": ["sensors/TEMP_001", "batteries/BAT_1"]}
            )
            report = await asyncio.to_thread(
                service.publish, "demo", "sensors/TEMP_001", "reading", {"value": 21.5}, RealtimeStore(),
                ManagementApiPoster(),
            )  # fmt: skip
            pushed = await receive(ws)
            # A message for another sensor, then one for ours: only ours arrives.
            await asyncio.to_thread(
                service.publish,
                "demo",
                "sensors/TEMP_002",
                "reading",
                {"value": 1},
                RealtimeStore(),
                ManagementApiPoster(),
            )
            await asyncio.to_thread(
                service.publish,
                "demo",
                "sensors/TEMP_001",
                "reading",
                {"value": 22.0},
                RealtimeStore(),
                ManagementApiPoster(),
            )
            return ack, report, pushed, await receive(ws)

    ack, report, pushed, second = run(scenario())
    assert ack["type"] == "subscribed"
    assert ack["data"]["accepted"] == ["sensors/TEMP_001"]
    assert ack["data"]["refused"] == [
        {"topic": "batteries/BAT_1", "reason": "this token lacks resource 'batteries'"}
    ]
    assert (report.connections, report.delivered, report.gone, report.failed) == (1, 1, [], 0)
    assert {k: pushed[k] for k in ("topic", "type", "data")} == {
        "topic": "sensors/TEMP_001", "type": "reading", "data": {"value": 21.5},
    }  # fmt: skip
    assert pushed["ts"].endswith("Z")
    assert second["data"] == {"value": 22.0}


def test_a_closed_connection_answers_410_and_publish_removes_its_record(
    local_stack: RunningStack, reader_token: str, functions_env: dict[str, str]
) -> None:
    from ems.realtime import service
    from ems.realtime.models import Connection, Topic
    from ems.realtime.store import ManagementApiPoster, RealtimeStore

    store = RealtimeStore()

    async def subscribed_then_closed() -> Connection | None:
        async with connect(ws_url(local_stack, reader_token)) as ws:
            ack = await request(ws, {"action": "subscribe", "topics": ["sensors/TEMP_002"]})
            assert ack["data"]["accepted"] == ["sensors/TEMP_002"]
            (holder,) = store.subscribers("demo", [Topic.parse("sensors/TEMP_002")], int(time.time()))
            return store.get_connection(holder.connection_id)

    connection = run(subscribed_then_closed())
    assert connection is not None and connection.topics == {"sensors/TEMP_002"}
    connection_id = connection.connection_id
    management = boto3.session.Session().client(
        "apigatewaymanagementapi", endpoint_url=functions_env["management"], region_name="us-east-1"
    )
    with pytest.raises(management.exceptions.GoneException) as gone:
        management.post_to_connection(ConnectionId=connection_id, Data=b'{"late": true}')
    assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410

    # $disconnect ran and removed the record. API Gateway does not promise it: put the record back
    # as if it had not, and let fan-out find the connection gone.
    give_up = time.monotonic() + WAIT_SECONDS
    while store.get_connection(connection_id) is not None and time.monotonic() < give_up:
        time.sleep(0.05)
    assert store.get_connection(connection_id) is None
    store.save_connection(connection)
    store.add_topics(connection, ["sensors/TEMP_002"])

    report = service.publish(
        "demo", "sensors/TEMP_002", "reading", {"value": 3}, store, ManagementApiPoster()
    )
    assert report.gone == [connection_id]
    assert store.get_connection(connection_id) is None
    assert store.subscribers("demo", [Topic.parse("sensors/TEMP_002")], int(time.time())) == []


def test_management_api_reads_and_deletes_a_live_connection(
    local_stack: RunningStack, reader_token: str, functions_env: dict[str, str]
) -> None:
    from ems.realtime.models import Topic
    from ems.realtime.store import RealtimeStore

    management = boto3.session.Session().client(
        "apigatewaymanagementapi", endpoint_url=functions_env["management"], region_name="us-east-1"
    )

    async def scenario() -> tuple[dict[str, Any], ConnectionClosed]:
        async with connect(ws_url(local_stack, reader_token), user_agent_header="e2e-client") as ws:
            await request(ws, {"action": "subscribe", "topics": ["sensors/*"]})
            (holder,) = RealtimeStore().subscribers("demo", [Topic.parse("sensors/*")], int(time.time()))
            info = await asyncio.to_thread(management.get_connection, ConnectionId=holder.connection_id)
            await asyncio.to_thread(
                management.post_to_connection, ConnectionId=holder.connection_id, Data=b"hello"
            )
            assert await asyncio.wait_for(ws.recv(), WAIT_SECONDS) == "hello"
            await asyncio.to_thread(management.delete_connection, ConnectionId=holder.connection_id)
            return info, await closed(ws)

    info, close = run(scenario())
    assert info["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "e2e-client"}
    assert info["LastActiveAt"] >= info["ConnectedAt"]
    assert close.rcvd is not None and close.rcvd.code == 1000


# ---------------------------------------------------------------- other routes, /ws, limits


@pytest.mark.parametrize("on_http_port", [False, True], ids=["ws-port", "http-port-ws"])
def test_ping_pongs_and_unknown_actions_are_explained(
    local_stack: RunningStack, reader_token: str, on_http_port: bool
) -> None:
    async def scenario() -> tuple[Any, Any, Any, Any]:
        async with connect(ws_url(local_stack, reader_token, on_http_port)) as ws:
            return (
                await request(ws, {"action": "ping"}),
                await request(ws, {"action": "dance"}),
                await request(ws, {"action": "subscribe", "topics": ["sensors/TEMP_001"]}),
                await request(ws, {"action": "unsubscribe", "topics": ["sensors/TEMP_001"]}),
            )

    pong, unknown, subscribed, unsubscribed = run(scenario())
    assert (pong["type"], pong["topic"], pong["data"]) == ("pong", None, {})
    assert unknown["type"] == "error"
    assert (
        unknown["data"]["error"]["message"] == "unknown action 'dance': send subscribe, unsubscribe or ping"
    )
    assert subscribed["data"]["subscriptions"] == ["sensors/TEMP_001"]
    assert unsubscribed["data"]["subscriptions"] == []


def test_frames_over_32_kb_and_messages_over_128_kb_close_with_1009(
    local_stack: RunningStack, reader_token: str
) -> None:
    chunk = "x" * (30 * 1024)

    async def fragmented(parts: int) -> Any:
        """A ping whose padding makes it `parts` frames of 30 KB."""
        async with connect(ws_url(local_stack, reader_token), max_size=None) as ws:
            body = '{"action":"ping","padding":"' + chunk * parts + '"}'
            await ws.send([body[i : i + len(chunk)] for i in range(0, len(body), len(chunk))])
            try:
                return await receive(ws)
            except ConnectionClosed as exc:
                return exc

    async def one_frame(size: int) -> ConnectionClosed:
        async with connect(ws_url(local_stack, reader_token), max_size=None) as ws:
            await ws.send('{"action":"ping","padding":"' + "x" * size + '"}')
            return await closed(ws)

    assert run(fragmented(4))["type"] == "pong"  # 4 frames of 30 KB: a 120 KB message is fine
    too_long = run(fragmented(5))
    assert isinstance(too_long, ConnectionClosed) and too_long.rcvd is not None and too_long.rcvd.code == 1009
    too_big = run(one_frame(40 * 1024))
    assert too_big.rcvd is not None and too_big.rcvd.code == 1009


def test_idle_and_overlong_connections_are_closed_as_api_gateway_closes_them() -> None:
    """The limits of ems_local.websocket_api, shortened, on a server of this process."""
    from ems_local.template import Stack
    from ems_local.websocket_api import WebSocketApi

    disconnects: list[dict[str, Any]] = []

    def invoke(function: str, event: dict[str, Any]) -> Any:
        if event["requestContext"]["eventType"] == "DISCONNECT":
            disconnects.append(event["requestContext"])
        return {"statusCode": 200, "body": json.dumps({"type": "pong"})}

    async def idle_until_closed(api: WebSocketApi) -> ConnectionClosed:
        async with connect(api.url) as ws:  # sends nothing
            return await closed(ws)

    async def busy_until_closed(api: WebSocketApi) -> ConnectionClosed:
        async with connect(api.url) as ws:  # never idle, but past its maximum duration
            try:
                while True:
                    await ws.send('{"action":"ping"}')
                    await asyncio.wait_for(ws.recv(), WAIT_SECONDS)
            except ConnectionClosed as exc:
                return exc

    idle = WebSocketApi(Stack.from_file(), invoke, port=0, idle_seconds=0.3, max_seconds=3600)
    busy = WebSocketApi(Stack.from_file(), invoke, port=0, idle_seconds=3600, max_seconds=0.5)
    idle.start()
    busy.start()
    try:
        idle_close = run(idle_until_closed(idle))
        busy_close = run(busy_until_closed(busy))
    finally:
        idle.stop()
        busy.stop()
    assert idle_close.rcvd is not None and idle_close.rcvd.code == 1001
    assert busy_close.rcvd is not None and busy_close.rcvd.code == 1001
    reasons = sorted(d["disconnectReason"] for d in disconnects)
    assert reasons == ["Connection duration exceeded", "Idle timeout"]
    assert {d["disconnectStatusCode"] for d in disconnects} == {1001}
