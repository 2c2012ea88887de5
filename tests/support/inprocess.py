"""The template's HTTP API run in this process against moto (`mock_aws`): what integration tests drive.

Requests go through the same steps as in API Gateway (route match, payload 2.0 event, the
authorizer function, its context passed on), using ems_local.apigw, the local cloud's own code.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

from ems_local import apigw
from ems_local.template import ROOT, Stack

EVENTS = ROOT / "events"


@dataclass
class FakeLambdaContext:
    function_name: str
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


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


class InProcessApi:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.functions = stack.functions()
        self.routes = [apigw.Route(**r) for r in stack.http_routes()]
        api = next(iter(stack.of_type("AWS::Serverless::HttpApi").values()))["Properties"]
        auth = api["Auth"]
        self.default_authorizer = auth["DefaultAuthorizer"]
        self.authorizers = auth["Authorizers"]

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        fn = self.functions[function]
        module = load_function(fn["CodeUri"])
        return module.handler(event, FakeLambdaContext(fn["FunctionName"]))

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
        found = apigw.match(self.routes, method, path)
        if found is None:
            return Reply(*apigw.gateway_error(404))
        route, params = found
        event = apigw.request_event(route, params, method, path, urlencode(query or {}), headers, raw)
        return self.send(route, event)

    def replay(self, event_file: str, token: str | None = None, **overrides: Any) -> Reply:
        """Send a sample event from events/ (its Authorization replaced by `token`)."""
        event = json.loads((EVENTS / event_file).read_text())
        event.update(overrides)
        if token is not None:
            event["headers"]["authorization"] = f"Bearer {token}"
        route = next(r for r in self.routes if r.key == event["routeKey"])
        return self.send(route, event)

    def send(self, route: apigw.Route, event: dict[str, Any]) -> Reply:
        name = route.authorizer or self.default_authorizer
        if name != "NONE":
            config = self.authorizers[name]
            identity = config.get("Identity", {}).get("Headers", ["Authorization"])
            if any(not event["headers"].get(h.lower()) for h in identity):
                return Reply(
                    *apigw.gateway_error(401)
                )  # a missing identity source never reaches the function
            function = config["FunctionArn"]["Fn::GetAtt"][0]
            verdict = apigw.verdict(lambda: self.invoke(function, apigw.authorizer_event(event, identity)))
            if verdict.status != 200:
                return Reply(*apigw.gateway_error(verdict.status))
            apigw.with_authorizer_context(event, verdict.context)
        return Reply(*apigw.http_response(self.invoke(route.function, event)))


def event_path(name: str) -> Path:
    return EVENTS / name
