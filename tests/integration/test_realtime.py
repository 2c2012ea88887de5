"""The realtime function's WebSocket routes, driven by the sample events of events/websocket against moto."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ems.realtime.store import ConnectionRecord, SubscriptionRecord
from tests.support.inprocess import EVENTS, InProcessApi

CONNECTION = "ZmmEscGcIAMCJWg="  # the connection id of every sample


def sample(name: str, **overrides: Any) -> dict[str, Any]:
    event = json.loads((EVENTS / "websocket" / f"{name}.json").read_text())
    event.update(overrides)
    return event


def invoke(api: InProcessApi, event: dict[str, Any]) -> dict[str, Any]:
    return api.invoke("RealtimeFunction", event)  # type: ignore[no-any-return]


def connect(api: InProcessApi, token: str, **query: str) -> dict[str, Any]:
    return invoke(api, sample("connect", queryStringParameters={"token": token, **query}))


def send(api: InProcessApi, name: str, body: Any = None) -> dict[str, Any]:
    """A message route's reply, as the client receives it (the route response's body)."""
    event = sample(name) if body is None else sample(name, body=json.dumps(body))
    reply = invoke(api, event)
    assert reply["statusCode"] in (200, 400, 404, 422), reply
    return json.loads(reply["body"])  # type: ignore[no-any-return]


def mint(api: InProcessApi, admin_token: str, resources: list[str], **extra: Any) -> str:
    body = {"name": "ws-client", "list_of_resources": resources, **extra}
    minted = api.request("POST", "/api/v1/tokens/generate", token=admin_token, body=body)
    assert minted.status == 201, minted.json
    return str(minted.json["token"])


@pytest.fixture
def building(api: InProcessApi, admin_token: str) -> InProcessApi:
    """The deployment's default site with a room and a sensor in it, made through the HTTP API."""
    assert (
        api.request(
            "POST", "/api/v1/sites", token=admin_token, body={"site_id": "default", "name": "HQ"}
        ).status
        == 201
    )
    room = api.request("POST", "/api/v1/rooms", token=admin_token, body={"name": "Conference Room A"})
    assert room.status == 201, room.json
    sensor = api.request(
        "POST", "/api/v1/sensors", token=admin_token,
        body={"sensor_id": "TEMP_001", "name": "Temperature", "sensor_type": "temperature", "room": "Conference Room A"},
    )  # fmt: skip
    assert sensor.status == 201, sensor.json
    return api


def test_connect_without_token_is_401_and_stores_nothing(api: InProcessApi) -> None:
    reply = invoke(api, sample("connect-no-token"))
    assert reply["statusCode"] == 401
    assert json.loads(reply["body"]) == {"message": "Unauthorized"}  # the reason is logged, not sent
    assert ConnectionRecord.count() == 0


def test_connect_with_a_bad_token_is_401(api: InProcessApi, admin_token: str) -> None:
    assert connect(api, admin_token[:-4] + "AAAA")["statusCode"] == 401
    assert connect(api, "not-a-jwt")["statusCode"] == 401


def test_connect_to_a_site_the_token_lacks_is_403(api: InProcessApi, admin_token: str) -> None:
    token = mint(api, admin_token, ["sensors"], sites=["hq"])
    assert connect(api, token, site="elsewhere")["statusCode"] == 403
    assert ConnectionRecord.count() == 0


def test_a_token_that_reads_no_topic_is_403(api: InProcessApi, admin_token: str) -> None:
    assert connect(api, mint(api, admin_token, ["tokens"]))["statusCode"] == 403


def test_connect_stores_the_connection_with_its_site_claims_and_ttl(
    api: InProcessApi, admin_token: str
) -> None:
    token = mint(api, admin_token, ["sensors"], sites=["hq"])
    assert connect(api, token)["statusCode"] == 200
    record = ConnectionRecord.get(CONNECTION)
    assert record.site == "hq"  # the token's only site
    assert json.loads(record.claims)["resources"] == ["sensors"]
    assert record.source_ip == "203.0.113.10"
    # Two hours of API Gateway's limit plus a quarter of an hour's margin after connecting.
    assert record.expires_at_epoch - int(record.connected_at.timestamp()) == 2 * 3600 + 15 * 60


def test_subscribe_accepts_what_the_token_reads_and_says_why_not_for_the_rest(
    building: InProcessApi, admin_token: str
) -> None:
    token = mint(building, admin_token, ["sensors", "rooms"])
    assert connect(building, token)["statusCode"] == 200
    reply = send(building, "subscribe")  # sensors/TEMP_001, rooms/Conference Room A, site, batteries/BAT_1
    assert reply["type"] == "subscribed" and reply["topic"] is None
    assert reply["data"]["accepted"] == ["sensors/TEMP_001", "rooms/Conference Room A"]
    assert reply["data"]["refused"] == [
        {"topic": "site", "reason": "this token lacks resource 'analytics' or 'events'"},
        {"topic": "batteries/BAT_1", "reason": "this token lacks resource 'batteries'"},
    ]
    keys = sorted((s.site_topic, s.connection_id) for s in SubscriptionRecord.scan())
    assert keys == [("default#rooms/Conference Room A", CONNECTION), ("default#sensors/TEMP_001", CONNECTION)]


def test_subscribe_refuses_unknown_sensors_bad_topics_and_aggregated_tokens(
    building: InProcessApi, admin_token: str
) -> None:
    assert connect(building, admin_token)["statusCode"] == 200
    reply = send(
        building,
        "subscribe",
        {"action": "subscribe", "topics": ["sensors/NOPE", "weather", "site/x", "sensors/*"]},
    )
    assert reply["data"]["accepted"] == ["sensors/*"]
    reasons = {r["topic"]: r["reason"] for r in reply["data"]["refused"]}
    assert reasons["sensors/NOPE"] == "no sensor 'NOPE' in site 'default'"
    assert reasons["weather"].startswith("unknown topic kind 'weather'")
    assert reasons["site/x"] == "'site' is one topic per site: subscribe to 'site' itself"

    room_only = mint(building, admin_token, ["sensors", "rooms"], data_aggregation="room")
    assert connect(building, room_only)["statusCode"] == 200
    reply = send(building, "subscribe", {"action": "subscribe", "topics": ["sensors/TEMP_001", "rooms/*"]})
    assert reply["data"]["accepted"] == ["rooms/*"]
    assert (
        reply["data"]["refused"][0]["reason"]
        == "this token sees data no finer than 'room', never single sensors"
    )


def test_subscribing_twice_is_once_and_unsubscribe_drops_the_topic(
    building: InProcessApi, admin_token: str
) -> None:
    assert connect(building, admin_token)["statusCode"] == 200
    send(building, "subscribe")
    again = send(building, "subscribe")
    assert again["data"]["subscriptions"] == [
        "batteries/BAT_1",
        "rooms/Conference Room A",
        "sensors/TEMP_001",
        "site",
    ]
    assert SubscriptionRecord.count() == 4

    reply = send(building, "unsubscribe")  # site
    assert reply["type"] == "unsubscribed"
    assert reply["data"]["accepted"] == ["site"]
    assert "site" not in reply["data"]["subscriptions"]
    assert SubscriptionRecord.count() == 3
    assert send(building, "unsubscribe")["data"]["refused"] == [{"topic": "site", "reason": "not subscribed"}]


def test_disconnect_removes_the_connection_and_every_subscription(
    building: InProcessApi, admin_token: str
) -> None:
    assert connect(building, admin_token)["statusCode"] == 200
    send(building, "subscribe")
    assert invoke(building, sample("disconnect"))["statusCode"] == 200
    assert ConnectionRecord.count() == 0
    assert SubscriptionRecord.count() == 0
    assert invoke(building, sample("disconnect"))["statusCode"] == 200  # twice is harmless


def test_messages_of_an_unknown_connection_say_reconnect(api: InProcessApi) -> None:
    reply = send(api, "subscribe")
    assert reply["type"] == "error"
    assert reply["data"]["error"] == {
        "code": "not_found", "message": "this connection is not known any more; reconnect", "field": "connection",
    }  # fmt: skip


def test_ping_pongs_and_unknown_actions_get_a_clear_error(api: InProcessApi) -> None:
    pong = send(api, "ping")
    assert (pong["type"], pong["topic"], pong["data"]) == ("pong", None, {})
    unknown = send(api, "unknown-action")
    assert (
        unknown["data"]["error"]["message"] == "unknown action 'dance': send subscribe, unsubscribe or ping"
    )
    not_json = send(api, "not-json")
    assert (
        not_json["data"]["error"]["message"]
        == 'messages are JSON objects with an "action": subscribe, unsubscribe or ping'
    )


def test_a_subscribe_without_topics_names_the_field(api: InProcessApi, admin_token: str) -> None:
    assert connect(api, admin_token)["statusCode"] == 200
    reply = send(api, "subscribe", {"action": "subscribe", "topics": []})
    assert reply["data"]["error"]["code"] == "invalid"
    assert reply["data"]["error"]["field"] == "topics"
