"""The local cloud's WebSocket API read from template.yaml, its route selection and its events."""

from __future__ import annotations

import json

import pytest

from ems_local.template import Stack
from ems_local.websocket_api import (
    Session,
    WebSocketSpec,
    connect_event,
    disconnect_event,
    message_event,
    new_connection_id,
    select_route,
)
from tests.support.inprocess import EVENTS


@pytest.fixture(scope="module")
def spec() -> WebSocketSpec:
    found = WebSocketSpec.from_stack(Stack.from_file())
    assert found is not None
    return found


def sample(name: str) -> dict[str, object]:
    return json.loads((EVENTS / "websocket" / f"{name}.json").read_text())  # type: ignore[no-any-return]


def test_the_template_api_routes_every_key_to_the_realtime_function(spec: WebSocketSpec) -> None:
    assert (spec.name, spec.stage, spec.selection_expression) == (
        "ems-dev-realtime",
        "dev",
        "$request.body.action",
    )
    assert sorted(spec.routes) == ["$connect", "$default", "$disconnect", "ping", "subscribe", "unsubscribe"]
    assert {r.function for r in spec.routes.values()} == {"RealtimeFunction"}
    two_way = sorted(k for k, r in spec.routes.items() if r.two_way)
    assert two_way == ["$default", "ping", "subscribe", "unsubscribe"]


@pytest.mark.parametrize(
    ("body", "route"),
    [('{"action":"subscribe","topics":[]}', "subscribe"), ('{"action":"ping"}', "ping"),
     ('{"action":"dance"}', "$default"), ('{"action":"$connect"}', "$default"), ('{"action":1}', "$default"),
     ("hello", "$default"), ("[1,2]", "$default"), (b"\x00\x01", "$default")],
)  # fmt: skip
def test_route_selection_by_the_body_action(spec: WebSocketSpec, body: str | bytes, route: str) -> None:
    assert select_route(spec.selection_expression, body, spec.routes) == route


def test_without_a_default_route_an_unknown_action_has_no_route() -> None:
    assert select_route("$request.body.action", '{"action":"x"}', {"ping": object()}) is None
    assert select_route("$request.body.msg.kind", '{"msg":{"kind":"ping"}}', {"ping": object()}) == "ping"


def test_events_have_the_shape_of_the_samples(spec: WebSocketSpec) -> None:
    session = Session(new_connection_id(), 1795426200.0, "127.0.0.1", "python", "127.0.0.1:8001")
    connect = connect_event(
        spec, session, "token=abc&site=hq", [("Host", "127.0.0.1:8001"), ("User-Agent", "python")]
    )
    message = message_event(spec, session, "subscribe", '{"action":"subscribe"}')
    disconnect = disconnect_event(spec, session, 1000, "Client-side close frame status code")
    for event, name in ((connect, "connect"), (message, "subscribe"), (disconnect, "disconnect")):
        expected = sample(name)
        assert sorted(event) == sorted(expected), name
        assert sorted(event["requestContext"]) == sorted(expected["requestContext"]), name  # type: ignore[arg-type]
    assert connect["queryStringParameters"] == {"token": "abc", "site": "hq"}
    assert connect["requestContext"]["eventType"] == "CONNECT"
    assert connect["requestContext"]["connectedAt"] == 1795426200000
    assert message["body"] == '{"action":"subscribe"}' and message["isBase64Encoded"] is False
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1000
    binary = message_event(spec, session, "$default", b"\x00\x01")
    assert (binary["body"], binary["isBase64Encoded"]) == ("AAE=", True)


def test_connection_ids_look_like_api_gateways() -> None:
    ids = {new_connection_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 16 and i.endswith("=") and i[:-1].isalnum() for i in ids)
