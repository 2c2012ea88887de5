"""The template's HTTP API, whatever carries the bytes: routes, authorizer and its cache, CORS.

The local cloud's HTTP server and the integration tests' in-process API both send requests
through here; they differ only in how a function is invoked (a warm worker process, or an import).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ems_local import apigw
from ems_local.invocation import InvocationError
from ems_local.template import Stack

Response = tuple[int, dict[str, str], bytes]
Invoke = Callable[[str, dict[str, Any]], Any]  # (function logical id, event) -> result


@dataclass(frozen=True)
class Authorizer:
    name: str
    function: str  # logical id
    identity: apigw.IdentitySources
    ttl_seconds: float  # ReauthorizeEvery; 0: no cache


class AuthorizerCache:
    """API Gateway's cache of authorizer verdicts, keyed by the identity sources' values."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[tuple[str, ...], tuple[float, apigw.Verdict]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...]) -> apigw.Verdict | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= self._clock():
                del self._entries[key]
                return None
            return entry[1]

    def put(self, key: tuple[str, ...], verdict: apigw.Verdict, ttl_seconds: float) -> None:
        now = self._clock()
        with self._lock:
            if len(self._entries) > 10_000:  # keep memory bounded: drop what has expired
                self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
            self._entries[key] = (now + ttl_seconds, verdict)


@dataclass(frozen=True)
class Cors:
    """An HttpApi's CorsConfiguration, applied as API Gateway applies it."""

    allow_origins: tuple[str, ...]
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None
    allow_credentials: bool = False

    @classmethod
    def from_sam(cls, config: Any) -> Cors | None:
        if config is True:  # SAM's shorthand: every origin
            return cls(allow_origins=("*",), allow_methods=("*",), allow_headers=("*",))
        if not isinstance(config, dict):
            return None
        return cls(
            allow_origins=tuple(config.get("AllowOrigins") or ()), allow_methods=tuple(config.get("AllowMethods") or ()),
            allow_headers=tuple(config.get("AllowHeaders") or ()), expose_headers=tuple(config.get("ExposeHeaders") or ()),
            max_age=None if config.get("MaxAge") is None else int(config["MaxAge"]),
            allow_credentials=bool(config.get("AllowCredentials", False)),
        )  # fmt: skip

    def _allowed_origin(self, origin: str | None) -> str | None:
        if not origin:
            return None
        if "*" in self.allow_origins and not self.allow_credentials:
            return "*"
        return origin if origin in self.allow_origins or "*" in self.allow_origins else None

    def preflight(self, headers: dict[str, str]) -> Response:
        """The gateway's own answer to a preflight OPTIONS: no authorizer, no function."""
        out: dict[str, str] = {}
        origin = self._allowed_origin(headers.get("origin"))
        if origin is not None:
            out["access-control-allow-origin"] = origin
            out["access-control-allow-methods"] = ",".join(self.allow_methods)
            out["access-control-allow-headers"] = ",".join(self.allow_headers)
            if self.max_age is not None:
                out["access-control-max-age"] = str(self.max_age)
            if self.allow_credentials:
                out["access-control-allow-credentials"] = "true"
            if origin != "*":
                out["vary"] = "origin"
        return 204, out, b""

    def apply(self, request_headers: dict[str, str], response: Response) -> Response:
        """CORS headers on an actual response (API Gateway's replace the integration's own)."""
        origin = self._allowed_origin(request_headers.get("origin"))
        if origin is None:
            return response
        status, headers, body = response
        headers = {k: v for k, v in headers.items() if not k.startswith("access-control-")}
        headers["access-control-allow-origin"] = origin
        if self.expose_headers:
            headers["access-control-expose-headers"] = ",".join(self.expose_headers)
        if self.allow_credentials:
            headers["access-control-allow-credentials"] = "true"
        if origin != "*":
            headers["vary"] = "origin"
        return status, headers, body


class HttpGateway:
    """The template's (one) AWS::Serverless::HttpApi: every request from route to response."""

    def __init__(self, stack: Stack, invoke: Invoke, clock: Callable[[], float] = time.monotonic) -> None:
        self.stack = stack
        self.invoke = invoke
        self.routes = [apigw.Route(**r) for r in stack.http_routes()]
        ((_, api),) = stack.of_type("AWS::Serverless::HttpApi").items()
        props = stack.resolve(api.get("Properties", {}))
        auth = props.get("Auth") or {}
        self.default_authorizer: str | None = auth.get("DefaultAuthorizer")
        arns = {stack.get_att(name, "Arn"): name for name in stack.of_type("AWS::Serverless::Function")}
        self.authorizers = {
            name: Authorizer(
                name=name, function=arns[config["FunctionArn"]],
                identity=apigw.IdentitySources.from_sam(config.get("Identity")),
                ttl_seconds=float((config.get("Identity") or {}).get("ReauthorizeEvery") or 0),
            )
            for name, config in (auth.get("Authorizers") or {}).items()
        }  # fmt: skip
        self.cors = Cors.from_sam(props.get("CorsConfiguration"))
        self.cache = AuthorizerCache(clock)

    def handle(
        self,
        method: str,
        raw_path: str,
        raw_query: str = "",
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        source_ip: str = "127.0.0.1",
    ) -> Response:
        """One HTTP request as API Gateway answers it."""
        method = method.upper()
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        if self.cors and self._is_preflight(method, raw_path, headers):
            return self.cors.preflight(headers)
        found = apigw.match(self.routes, method, raw_path)
        if found is None:
            response = apigw.gateway_error(404)
        else:
            route, params = found
            event = apigw.request_event(route, params, method, raw_path, raw_query, headers, body, source_ip)
            response = self.send(route, event)
        return self.cors.apply(headers, response) if self.cors else response

    def _is_preflight(self, method: str, raw_path: str, headers: dict[str, str]) -> bool:
        if method != "OPTIONS" or "origin" not in headers or "access-control-request-method" not in headers:
            return False
        # An explicit OPTIONS route takes the preflight itself.
        return not any(r.method == "OPTIONS" and r.pattern().match(raw_path) for r in self.routes)

    def send(self, route: apigw.Route, event: dict[str, Any]) -> Response:
        """A matched request: the authorizer (unless the route is open), then the integration."""
        name = route.authorizer or self.default_authorizer
        if name and name != "NONE":
            verdict = self.authorize(self.authorizers[name], event)
            if verdict.status != 200:
                return apigw.gateway_error(verdict.status)
            apigw.with_authorizer_context(event, dict(verdict.context))
        try:
            result = self.invoke(route.function, event)
        except InvocationError as exc:
            return apigw.gateway_error(exc.status)
        return apigw.http_response(result)

    def authorize(self, authorizer: Authorizer, event: dict[str, Any]) -> apigw.Verdict:
        identity = authorizer.identity.values(event)
        if identity is None:
            return apigw.Verdict(401, {})
        key = (authorizer.name, *identity)
        if authorizer.ttl_seconds > 0:
            cached = self.cache.get(key)
            if cached is not None:
                return cached
        verdict = apigw.verdict(
            lambda: self.invoke(authorizer.function, apigw.authorizer_event(event, identity=identity))
        )
        # Allow and deny policies are cached; a 401 or a failure is not, so the next request retries.
        if authorizer.ttl_seconds > 0 and verdict.status in (200, 403):
            self.cache.put(key, verdict, authorizer.ttl_seconds)
        return verdict
