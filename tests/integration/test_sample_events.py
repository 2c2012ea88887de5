"""events/http: one sample per route of the token, registry, system, overview, alerts and export functions, each shaped as
API Gateway (HTTP API, payload 2.0) sends it; and the system routes replayed from theirs."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

import pytest

from ems_local import apigw
from ems_local.template import Stack
from tests.support.events import replay
from tests.support.inprocess import EVENTS, InProcessApi

SAMPLED_FUNCTIONS = (
    "TokensFunction",
    "RegistryFunction",
    "SystemFunction",
    "OverviewFunction",
    "AlertsFunction",
    "ExportFunction",
)
HTTP = EVENTS / "http"


def _routes() -> list[apigw.Route]:
    return [apigw.Route(**r) for r in Stack.from_file().http_routes()]


def _samples() -> dict[str, dict[str, Any]]:
    return {
        p.stem: json.loads(p.read_text())
        for p in sorted(HTTP.glob("*.json"))
        if p.stem != "authorizer-request"
    }


def test_every_route_of_these_functions_has_exactly_one_sample() -> None:
    wanted = sorted(r.key for r in _routes() if r.function in SAMPLED_FUNCTIONS)
    assert len(wanted) == 30
    keys = [e["routeKey"] for e in _samples().values()]
    assert [k for k in wanted if keys.count(k) != 1] == []


@pytest.mark.parametrize("name", sorted(_samples()))
def test_sample_is_shaped_as_api_gateway_sends_it(name: str) -> None:
    event = _samples()[name]
    route = next(r for r in _routes() if r.key == event["routeKey"])
    method, _, _ = event["routeKey"].partition(" ")
    context = event["requestContext"]

    assert event["version"] == "2.0"
    assert event["isBase64Encoded"] is False
    assert (context["routeKey"], context["stage"], context["http"]["method"]) == (
        route.key,
        "$default",
        method,
    )
    assert context["http"]["path"] == event["rawPath"]
    assert isinstance(context["timeEpoch"], int)
    assert context["requestId"]
    assert all(k == k.lower() for k in event["headers"])  # HTTP APIs lower-case header names

    found = apigw.match(_routes(), method, event["rawPath"])
    assert found is not None
    assert found[0] == route
    assert found[1] == event.get("pathParameters", {})

    query = dict(parse_qsl(event["rawQueryString"], keep_blank_values=True))
    assert query == event.get("queryStringParameters", {})

    if "body" in event:
        assert isinstance(json.loads(event["body"]), dict)
        assert event["headers"]["content-length"] == str(len(event["body"].encode()))
        assert event["headers"]["content-type"] == "application/json"
    else:
        assert method in ("GET", "DELETE")

    if route.authorizer == "NONE":
        assert "authorization" not in event["headers"]
        assert "authorizer" not in context
    else:
        assert event["headers"]["authorization"] == "Bearer REPLACE_ME"
        assert set(context["authorizer"]["lambda"]) == {"sub", "jti", "site", "claims"}
    if route.path.startswith(("/api/v1/rooms", "/api/v1/sensors")):
        assert event["headers"]["x-site"] == "hq"


def test_authorizer_sample_is_the_request_authorizers_event() -> None:
    event = json.loads((HTTP / "authorizer-request.json").read_text())
    integration = _samples()["rooms-get"]
    assert (event["version"], event["type"]) == ("2.0", "REQUEST")
    assert event["identitySource"] == ["Bearer REPLACE_ME", "GET /api/v1/rooms/{name}"]
    assert event["routeArn"].endswith("/$default/GET/api/v1/rooms/Conference%20Room%20A")
    assert "body" not in event
    for key in ("routeKey", "rawPath", "rawQueryString", "headers", "pathParameters"):
        assert event[key] == integration[key], key
    assert "authorizer" not in event["requestContext"]


def test_health_from_the_sample(api: InProcessApi) -> None:
    reply = replay(api, "health")
    assert reply.status == 200, reply.json
    assert reply.json["status"] == "ok"
    assert {name: check["status"] for name, check in reply.json["checks"].items()} == {
        "dynamodb": "ok",
        "kms": "ok",
    }


def test_health_reports_a_missing_key_as_503(api: InProcessApi, monkeypatch: pytest.MonkeyPatch) -> None:
    from ems.auth import signing
    from ems.core import settings

    monkeypatch.setenv("SIGNING_KEY_ID", "11111111-2222-3333-4444-555555555555")
    settings.settings.cache_clear()
    signing.forget_keys()
    reply = replay(api, "health")
    assert reply.status == 503
    assert (reply.json["status"], reply.json["checks"]["kms"]["status"]) == ("degraded", "error")
