"""WebSocket glue for functions behind an API Gateway WebSocket API: routes by routeKey, the request's
parts, errors mapped once.

A function's app.py builds `app = websocket_app("domain")`, declares `@app.route("$connect")` and
the like (each parses, calls one service function and returns its model or None), and ends with
`handler = app.handler`. `$connect` answers a status API Gateway turns into the handshake's answer
(2xx accepts, 401/403 refuse). Message routes answer a body, which API Gateway sends to the client
when the route has a route response (template.yaml gives each one).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ValidationError

from ems.core.clock import to_iso, utc_now
from ems.core.errors import BadRequest, DomainError
from ems.core.http import invalid_from
from ems.core.observability import logger, metrics

M = TypeVar("M", bound=BaseModel)
CONNECT = "$connect"


@dataclass(frozen=True)
class WebSocketRequest:
    event: dict[str, Any]

    @property
    def context(self) -> dict[str, Any]:
        return dict(self.event.get("requestContext") or {})

    @property
    def route_key(self) -> str:
        return str(self.context.get("routeKey", ""))

    @property
    def connection_id(self) -> str:
        return str(self.context.get("connectionId", ""))

    @property
    def query(self) -> dict[str, str]:
        return dict(self.event.get("queryStringParameters") or {})

    @property
    def headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in (self.event.get("headers") or {}).items()}

    @property
    def source_ip(self) -> str | None:
        return (self.context.get("identity") or {}).get("sourceIp")

    @property
    def body(self) -> str | None:
        raw = self.event.get("body")
        if raw is not None and self.event.get("isBase64Encoded"):
            import base64

            raw = base64.b64decode(raw).decode(errors="replace")
        return raw

    def parse(self, model: type[M]) -> M:
        """The message as `model`; 400 when it is not a JSON object, 422 naming the field otherwise."""
        try:
            data = json.loads(self.body or "")
        except ValueError as exc:
            raise BadRequest(f"message is not valid JSON: {exc}", "body") from exc
        if not isinstance(data, dict):
            raise BadRequest("a message is a JSON object", "body")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise invalid_from(exc) from exc


Route = Callable[[WebSocketRequest], BaseModel | None]


def _error_body(route_key: str, error: DomainError) -> str:
    """$connect: what the handshake refusal carries (the reason is logged, not sent, as the HTTP
    authorizer does). Other routes: a server message the client can read."""
    if route_key == CONNECT:
        body: dict[str, Any] = {
            "message": {401: "Unauthorized", 403: "Forbidden"}.get(error.status, error.code)
        }
    else:
        body = {"topic": None, "type": "error", "ts": to_iso(utc_now()), "data": error.body()}
    return json.dumps(body, separators=(",", ":"))


class WebSocketApp:
    def __init__(self, domain: str) -> None:
        self.domain = domain
        self.routes: dict[str, Route] = {}
        metrics.set_default_dimensions(domain=domain, service="ems")

    def route(self, route_key: str) -> Callable[[Route], Route]:
        def register(fn: Route) -> Route:
            self.routes[route_key] = fn
            return fn

        return register

    def resolve(self, event: dict[str, Any]) -> dict[str, Any]:
        request = WebSocketRequest(event)
        route_key = request.route_key
        logger.append_keys(connection_id=request.connection_id, route=route_key)
        fn = self.routes.get(route_key) or self.routes.get("$default")
        started = time.perf_counter()
        status, body = 200, None
        try:
            if fn is None:
                raise BadRequest(f"no route {route_key!r}")
            try:
                result = fn(request)
            except ValidationError as exc:
                raise invalid_from(exc) from exc
            body = None if result is None else result.model_dump_json()
        except DomainError as exc:
            logger.info(
                "refused",
                extra={"status": exc.status, "code": exc.code, "field": exc.field, "reason": exc.message},
            )
            status, body = exc.status, _error_body(route_key, exc)
        elapsed_ms = (time.perf_counter() - started) * 1000
        metrics.add_dimension(name="route", value=route_key or "unknown")
        metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=elapsed_ms)
        if status >= 400:
            metrics.add_metric(name="ClientErrors", unit=MetricUnit.Count, value=1)
        logger.info("request", extra={"status": status, "elapsed_ms": round(elapsed_ms, 1)})
        response: dict[str, Any] = {"statusCode": status}
        if body is not None:
            response["body"] = body
        return response

    @property
    def handler(self) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
        @metrics.log_metrics(raise_on_empty_metrics=False)
        @logger.inject_lambda_context(clear_state=True)
        def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
            return self.resolve(event)

        return handler


def websocket_app(domain: str) -> WebSocketApp:
    return WebSocketApp(domain)
