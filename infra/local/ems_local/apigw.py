"""API Gateway HTTP API semantics: route matching, payload 2.0 events, the authorizer's verdict.

Pure functions over dicts, shared by the local cloud's server and the integration tests, so both
drive functions with exactly the events API Gateway would send.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

API_ID = "local"
ACCOUNT_ID = "123456789012"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    function: str
    authorizer: str | None  # None: the API's default; "NONE": open

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    def pattern(self) -> re.Pattern[str]:
        parts = []
        for segment in self.path.strip("/").split("/"):
            m = re.fullmatch(r"\{(\w+)(\+?)\}", segment)
            if m:
                parts.append(f"(?P<{m.group(1)}>.+)" if m.group(2) else f"(?P<{m.group(1)}>[^/]+)")
            else:
                parts.append(re.escape(segment))
        return re.compile("^/" + "/".join(parts) + "/?$")


def match(routes: list[Route], method: str, raw_path: str) -> tuple[Route, dict[str, str]] | None:
    """The route API Gateway would pick: exact paths before parameterised ones, then the longest."""
    ranked = sorted(routes, key=lambda r: (r.path.count("{"), -len(r.path)))
    for route in ranked:
        if route.method not in (method, "ANY"):
            continue
        m = route.pattern().match(raw_path)
        if m:
            return route, {k: unquote(v) for k, v in m.groupdict().items()}
    return None


def request_event(
    route: Route,
    path_params: dict[str, str],
    method: str,
    raw_path: str,
    raw_query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    source_ip: str = "127.0.0.1",
    stage: str = "$default",
) -> dict[str, Any]:
    """A payload 2.0 event, as API Gateway sends it to an integration."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    query: dict[str, str] = {}
    for k, v in parse_qsl(raw_query, keep_blank_values=True):
        query[k] = f"{query[k]},{v}" if k in query else v  # API Gateway joins repeats with commas
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT_ID, "apiId": API_ID, "domainName": headers.get("host", "127.0.0.1"),
            "domainPrefix": "127", "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1",
            "sourceIp": source_ip, "userAgent": headers.get("user-agent", "")}, "requestId": str(uuid.uuid4()),
            "routeKey": route.key, "stage": stage, "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }  # fmt: skip
    if "cookie" in headers:
        event["cookies"] = [c.strip() for c in headers["cookie"].split(";")]
    if query:
        event["queryStringParameters"] = query
    if path_params:
        event["pathParameters"] = path_params
    if body:
        try:
            event["body"] = body.decode()
        except UnicodeDecodeError:
            event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    return event


@dataclass(frozen=True)
class IdentitySources:
    """Where a REQUEST authorizer's identity comes from ($request.header.X, $context.routeKey, ...)."""

    headers: tuple[str, ...] = ("Authorization",)
    query_strings: tuple[str, ...] = ()
    context: tuple[str, ...] = ()
    stage_variables: tuple[str, ...] = ()

    @classmethod
    def from_sam(cls, identity: dict[str, Any] | None) -> IdentitySources:
        """From SAM's `Identity` of a Lambda authorizer (Headers, QueryStrings, Context, StageVariables)."""
        if identity is None:
            return cls()
        return cls(
            headers=tuple(identity.get("Headers") or ()), query_strings=tuple(identity.get("QueryStrings") or ()),
            context=tuple(identity.get("Context") or ()), stage_variables=tuple(identity.get("StageVariables") or ()),
        )  # fmt: skip

    def values(self, event: dict[str, Any]) -> list[str] | None:
        """The identity of a request in order, or None when one is missing: API Gateway then answers
        401 without calling the authorizer."""
        headers = event.get("headers") or {}
        query = event.get("queryStringParameters") or {}
        context = event.get("requestContext") or {}
        stage = event.get("stageVariables") or {}
        found = [
            *(headers.get(h.lower()) for h in self.headers), *(query.get(q) for q in self.query_strings),
            *(context.get(c) for c in self.context), *(stage.get(v) for v in self.stage_variables),
        ]  # fmt: skip
        return None if any(v in (None, "") for v in found) else [str(v) for v in found]


def authorizer_event(
    event: dict[str, Any],
    identity_headers: list[str] | tuple[str, ...] = (),
    identity: list[str] | None = None,
) -> dict[str, Any]:
    """The REQUEST authorizer's payload 2.0 event for a request (`identity`: its identity sources'
    values, by default those of `identity_headers`)."""
    route_key = event["routeKey"]
    method, _, path = route_key.partition(" ")
    if identity is None:
        identity = [event["headers"].get(h.lower(), "") for h in identity_headers]
    return {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": f"arn:aws:execute-api:us-east-1:{ACCOUNT_ID}:{API_ID}/$default/{method}{path}",
        "identitySource": identity,
        **{k: v for k, v in event.items() if k not in ("version", "body", "isBase64Encoded")},
    }


@dataclass(frozen=True)
class Verdict:
    status: int  # 200 allowed; else what API Gateway answers
    context: dict[str, Any]


def verdict(call: Callable[[], dict[str, Any]]) -> Verdict:
    """Run the authorizer and read its answer as API Gateway does (simple responses).

    An error whose message is "Unauthorized" is a 401, isAuthorized false a 403, any other
    failure a 500 (API Gateway's "Internal Server Error").
    """
    try:
        result = call()
    except Exception as exc:
        return Verdict(401 if str(exc) == "Unauthorized" else 500, {})
    if not isinstance(result, dict) or "isAuthorized" not in result:
        return Verdict(500, {})
    return Verdict(200, result.get("context") or {}) if result["isAuthorized"] is True else Verdict(403, {})


def with_authorizer_context(event: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    event["requestContext"]["authorizer"] = {"lambda": context}
    return event


def gateway_error(status: int) -> tuple[int, dict[str, str], bytes]:
    message = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 413: "Request Entity Too Large",
               429: "Too Many Requests", 502: "Internal Server Error", 503: "Service Unavailable",
               504: "Service Unavailable"}.get(status, "Internal Server Error")  # fmt: skip
    return status, {"content-type": "application/json"}, json.dumps({"message": message}).encode()


def http_response(result: Any) -> tuple[int, dict[str, str], bytes]:
    """An integration's payload 2.0 result as the HTTP response API Gateway sends."""
    if not isinstance(result, dict) or "statusCode" not in result:
        # Payload 2.0: anything that is not a response object is a 200 JSON body.
        return 200, {"content-type": "application/json"}, json.dumps(result).encode()
    headers = {k.lower(): str(v) for k, v in (result.get("headers") or {}).items()}
    for k, values in (result.get("multiValueHeaders") or {}).items():
        headers[k.lower()] = ",".join(str(v) for v in values)
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    return int(result["statusCode"]), headers, raw


def path_of(route: str, **params: str) -> str:
    """Fill a route path's {params} (URL-quoted), for tests and clients."""
    return re.sub(r"\{(\w+)\+?\}", lambda m: quote(params[m.group(1)], safe=""), route)
