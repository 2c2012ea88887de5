"""The local cloud's API Gateway on its own: authorizer verdicts, its cache, CORS, invocation failures."""

from __future__ import annotations

from typing import Any

import pytest

from ems_local.gateway import HttpGateway
from ems_local.invocation import FunctionCrashed, FunctionError, FunctionTimeout, Throttled
from ems_local.template import Stack


class Functions:
    """Stands in for the workers: the authorizer allows "good", forbids "bad", refuses the rest."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.failure: Exception | None = None

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        self.calls.append(function)
        if function == "AuthorizerFunction":
            token = event["identitySource"][0]
            if token == "Bearer good":
                return {"isAuthorized": True, "context": {"sub": "ann"}}
            if token == "Bearer bad":
                return {"isAuthorized": False}
            raise FunctionError("Unauthorized")
        if self.failure:
            raise self.failure
        return {"statusCode": 200, "body": event["requestContext"]["authorizer"]["lambda"]["sub"]}


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def gateway(ttl: int = 0) -> tuple[HttpGateway, Functions, Clock]:
    functions, clock = Functions(), Clock()
    stack = Stack.from_file(AuthorizerCacheTtlSeconds=str(ttl))
    return HttpGateway(stack, functions.invoke, clock), functions, clock


def get(
    gw: HttpGateway, token: str | None, path: str = "/api/v1/rooms", **headers: str
) -> tuple[int, dict, bytes]:
    if token:
        headers["authorization"] = f"Bearer {token}"
    return gw.handle("GET", path, "", headers)


def test_verdicts_as_api_gateway_reads_them() -> None:
    gw, functions, _ = gateway()
    assert get(gw, "good") == (200, {}, b"ann")
    assert get(gw, "bad")[0] == 403
    assert get(gw, "forged")[0] == 401
    functions.calls.clear()
    assert get(gw, None)[0] == 401
    assert functions.calls == []  # no identity source: the authorizer is not even called


def test_without_a_cache_every_request_is_authorized() -> None:
    gw, functions, _ = gateway(ttl=0)
    get(gw, "good")
    get(gw, "good")
    assert functions.calls.count("AuthorizerFunction") == 2


def test_the_cache_keeps_a_verdict_per_identity_for_its_ttl() -> None:
    gw, functions, clock = gateway(ttl=300)
    get(gw, "good")
    get(gw, "good")
    get(gw, "bad")
    get(gw, "bad")
    assert functions.calls.count("AuthorizerFunction") == 2
    get(gw, "good", "/api/v1/sensors")  # the route key is an identity source too
    assert functions.calls.count("AuthorizerFunction") == 3
    clock.now += 301
    get(gw, "good")
    assert functions.calls.count("AuthorizerFunction") == 4


def test_a_refused_identity_is_not_cached() -> None:
    gw, functions, _ = gateway(ttl=300)
    get(gw, "forged")
    get(gw, "forged")
    assert functions.calls.count("AuthorizerFunction") == 2


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (FunctionError("boom"), 500),
        (FunctionCrashed("gone"), 502),
        (FunctionTimeout("slow"), 504),
        (Throttled("busy"), 429),
    ],
)
def test_invocation_failures_become_gateway_errors(failure: Exception, status: int) -> None:
    gw, functions, _ = gateway()
    functions.failure = failure
    assert get(gw, "good")[0] == status


def test_open_routes_skip_the_authorizer() -> None:
    gw, functions, _ = gateway()
    functions.failure = FunctionError("the function ran")
    assert get(gw, None, "/health")[0] == 500
    assert functions.calls == ["SystemFunction"]


def test_cors_preflight_and_actual_responses() -> None:
    gw, functions, _ = gateway()
    status, headers, body = gw.handle(
        "OPTIONS",
        "/api/v1/rooms/Room%201",
        "",
        {"Origin": "http://app", "Access-Control-Request-Method": "PUT"},
    )
    assert (status, body) == (204, b"")
    assert headers["access-control-allow-origin"] == "*"
    assert headers["access-control-allow-methods"] == "GET,POST,PUT,DELETE,OPTIONS"
    assert functions.calls == []
    assert get(gw, "good", origin="http://app")[1]["access-control-allow-origin"] == "*"
    assert "access-control-allow-origin" not in get(gw, "good")[1]
