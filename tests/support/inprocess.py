"""The template's HTTP API run in this process against moto (`mock_aws`): what integration tests drive.

Requests go through ems_local.gateway, the local cloud's own API Gateway (route match, payload 2.0
event, the authorizer and its cache, CORS); only the invocation differs: the handler is imported
and called here instead of in a worker process.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

from ems_local import apigw
from ems_local.gateway import HttpGateway
from ems_local.lambda_context import LambdaContext
from ems_local.template import ROOT, Stack

EVENTS = ROOT / "events"

# Kept for tests that build a context themselves.
FakeLambdaContext = LambdaContext

_modules: dict[str, ModuleType] = {}


def load_function(code_uri: str) -> ModuleType:
    """Import functions/<name>/app.py once, under a name of its own (every function's file is app.py)."""
    path = (ROOT / code_uri / "app.py").resolve()
    name = "fn_" + path.parent.name
    if name not in _modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        _modules[name] = module
    return _modules[name]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw) if self.raw else None


def ok(reply: Reply, status: int = 200) -> Any:
    """The reply's JSON, once its status is `status`."""
    assert reply.status == status, reply.json
    return reply.json


def refused(reply: Reply, status: int, field: str | None) -> str:
    """The error's message, once the reply is `status` naming `field` (API.md's error shape)."""
    assert reply.status == status, reply.json
    assert reply.json["error"]["field"] == field, reply.json
    return str(reply.json["error"]["message"])


class InProcessApi:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.functions = stack.functions()
        self.gateway = HttpGateway(stack, self.invoke)
        self.routes = self.gateway.routes
        self.default_authorizer = self.gateway.default_authorizer
        self.authorizers = self.gateway.authorizers

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        fn = self.functions[function]
        module = load_function(fn["CodeUri"])
        context = LambdaContext(
            fn["FunctionName"], int(fn.get("MemorySize", 128)), float(fn.get("Timeout", 3))
        )
        # The function's Handler names the module (always app.py) and the callable in it.
        return getattr(module, str(fn.get("Handler", "app.handler")).rsplit(".", 1)[-1])(event, context)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        query: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        headers = dict(headers or {})
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        raw = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        if raw is not None:
            headers.setdefault("content-type", "application/json")
        return Reply(*self.gateway.handle(method, path, urlencode(query or {}), headers, raw))

    def replay(self, event_file: str, token: str | None = None, **overrides: Any) -> Reply:
        """Send a sample event from events/ (its Authorization replaced by `token`)."""
        event = json.loads((EVENTS / event_file).read_text())
        event.update(overrides)
        if token is not None:
            event["headers"]["authorization"] = f"Bearer {token}"
        route = next(r for r in self.routes if r.key == event["routeKey"])
        return self.send(route, event)

    def send(self, route: apigw.Route, event: dict[str, Any]) -> Reply:
        return Reply(*self.gateway.send(route, event))


def event_path(name: str) -> Path:
    return EVENTS / name
