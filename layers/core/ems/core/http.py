"""HTTP glue for every API function: the resolver, error mapping, request parsing and the handler.

A function's app.py builds `app = http_app("domain")`, declares routes that parse, call one
service function and return its model, and ends with `handler = lambda_handler(app)`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ValidationError

from ems.core.errors import BadRequest, DomainError, Invalid, NotFound
from ems.core.observability import logger, metrics

M = TypeVar("M", bound=BaseModel)


def _serialize(value: Any) -> str:
    def default(obj: Any) -> Any:
        if isinstance(obj, BaseModel):
            return obj.model_dump(mode="json")
        raise TypeError(f"cannot serialise {type(obj).__name__}")

    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return json.dumps(value, separators=(",", ":"), default=default)


def error_response(error: DomainError) -> Response:
    return Response(status_code=error.status, content_type="application/json", body=error.body())


def invalid_from(exc: ValidationError, prefix: str = "") -> Invalid:
    """The first complaint of pydantic, as one Invalid naming the field (`rooms.0.name`)."""
    first = exc.errors()[0]
    field = ".".join(str(part) for part in (prefix, *first.get("loc", ())) if part != "")
    message = str(first.get("msg", "is not valid")).removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        message = "is not a field of this request"
    return Invalid(message, field or None)


def _observe(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
    """Per request: the caller in every log line, and one count and one latency per route (EMF)."""
    event = app.current_event
    # The resolver matches the raw (URL-encoded) path; API Gateway's pathParameters are decoded.
    route_args = app.context.get("_route_args")
    if route_args:
        app.context["_route_args"] = {k: unquote(v) for k, v in route_args.items()}
    auth = (event.request_context.authorizer.get_lambda or {}) if event.request_context.authorizer else {}
    if auth.get("sub"):
        logger.append_keys(sub=auth.get("sub"), site=auth.get("site") or None)
    started = time.perf_counter()
    response = next_middleware(app)
    elapsed_ms = (time.perf_counter() - started) * 1000
    route = event.route_key or "unknown"
    metrics.add_dimension(name="route", value=route)
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=elapsed_ms)
    if response.status_code >= 500:
        metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1)
    elif response.status_code >= 400:
        metrics.add_metric(name="ClientErrors", unit=MetricUnit.Count, value=1)
    logger.info(
        "request", extra={"route": route, "status": response.status_code, "elapsed_ms": round(elapsed_ms, 1)}
    )
    return response


def http_app(domain: str) -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(serializer=_serialize, strip_prefixes=None)
    metrics.set_default_dimensions(domain=domain, service="ems")
    app.use(middlewares=[_observe])

    @app.exception_handler(DomainError)
    def domain_error(exc: DomainError) -> Response:
        logger.info(
            "refused",
            extra={"status": exc.status, "code": exc.code, "field": exc.field, "reason": exc.message},
        )
        return error_response(exc)

    @app.exception_handler(ValidationError)
    def validation_error(exc: ValidationError) -> Response:
        return error_response(invalid_from(exc))

    @app.not_found
    def not_found(_exc: Exception) -> Response:
        return error_response(NotFound(f"no route {app.current_event.http_method} {app.current_event.path}"))

    return app


def lambda_handler(app: APIGatewayHttpResolver) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    @metrics.log_metrics(raise_on_empty_metrics=False)
    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return app.resolve(event, context)

    return handler


# ---------------------------------------------------------------- request parsing


def body(app: APIGatewayHttpResolver, model: type[M]) -> M:
    """The JSON body as `model`; 400 when it is not JSON, 422 naming the field when it breaks a rule."""
    raw = app.current_event.decoded_body
    if raw is None or raw.strip() == "":
        raise BadRequest("a JSON body is required", "body")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", "body") from exc
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object", "body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_from(exc) from exc


def query(app: APIGatewayHttpResolver, name: str, default: str | None = None) -> str | None:
    params = app.current_event.query_string_parameters or {}
    value = params.get(name)
    return default if value is None else value


def query_model(app: APIGatewayHttpResolver, model: type[M]) -> M:
    """The query string as `model`, without `site` (it names the site, it is no filter); 422 naming
    the parameter that breaks a rule."""
    params = {k: v for k, v in (app.current_event.query_string_parameters or {}).items() if k != "site"}
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise invalid_from(exc) from exc


def flag(app: APIGatewayHttpResolver, name: str) -> bool:
    value = (query(app, name) or "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise BadRequest("must be true or false", name)
    return value in ("true", "1")
