"""The template's AWS, in the local cloud's moto process on 127.0.0.1, and the requests a benchmark sends to it.

Tables and keys come from template.yaml (`Stack.create_resources`); tokens are minted as
`ems token create` does; events are built by the local cloud's own API Gateway code (route match,
payload 2.0 event, the REQUEST authorizer's event and its context), so a benchmark's event is the
one API Gateway would send.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from ems_local import apigw
from ems_local.aws_endpoint import AwsEndpoint
from ems_local.gateway import HttpGateway
from ems_local.template import ROOT, Stack

REGION = "us-east-1"
CORE_LAYER = ROOT / "layers" / "core"
# Credentials moto accepts; nothing here ever reaches AWS.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@dataclass(frozen=True)
class Request:
    """An event ready to hand to a function, and the function it goes to."""

    function: str
    event: dict[str, Any]


class LocalAws:
    """Start with `with LocalAws() as aws:`; the server stops when the block ends."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.stack = Stack.from_file(region=REGION)
        self.functions: dict[str, dict[str, Any]] = {}
        self.endpoint = ""
        self._server: AwsEndpoint | None = None
        self._modules: dict[str, ModuleType] = {}

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> LocalAws:
        import boto3

        # The local cloud's own AWS endpoint: moto with its patches, in a process of its own, so the
        # functions' Python and moto's run side by side (two interpreters, two locks) as they do there.
        self._server = AwsEndpoint(port=0)
        self._server.start()
        self.endpoint = self._server.url
        session = boto3.session.Session(
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=REGION,
        )
        self.stack.create_resources(lambda service: session.client(service, endpoint_url=self.endpoint))
        self.functions = self.stack.functions()
        # This process mints tokens and seeds data through the same code the functions run.
        os.environ.update({k: v for k, v in self.base_env().items() if k.startswith("AWS_")})
        os.environ.update(self.functions["TokensFunction"]["Environment"]["Variables"])
        _forget_ems_caches()
        self.gateway = HttpGateway(self.stack, self._invoke_in_process)
        return self

    def __exit__(self, *_exc: object) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()  # by its own PID

    # ------------------------------------------------------------ what a function process gets

    def base_env(self) -> dict[str, str]:
        """What every function process (and every floor) starts with: no inherited environment, so
        a developer's AWS profile or PYTHON* variables cannot change a figure."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.scratch),
            "AWS_CONFIG_FILE": str(self.scratch / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.scratch / "no-aws-credentials"),
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
            **FAKE_CREDENTIALS,
        }

    def function_env(self, name: str) -> dict[str, str]:
        fn = self.functions[name]
        return {
            **self.base_env(),
            **fn["Environment"]["Variables"],
            "AWS_LAMBDA_FUNCTION_NAME": fn["FunctionName"],
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.get("MemorySize", 128)),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "_HANDLER": fn["Handler"],
        }

    def function_spec(self, name: str) -> dict[str, Any]:
        """Where a function's handler lives: sys.path = its CodeUri folder, then the core layer."""
        fn = self.functions[name]
        module, _, handler = fn["Handler"].rpartition(".")
        return {
            "sys_path": [str((ROOT / fn["CodeUri"]).resolve()), str(CORE_LAYER)],
            "module": module, "handler": handler, "function_name": fn["FunctionName"],
            "memory_mb": int(fn.get("MemorySize", 128)), "timeout_s": float(fn.get("Timeout", 3)),
        }  # fmt: skip

    # ------------------------------------------------------------ tokens and requests

    def mint(
        self, name: str, resources: list[str], sites: list[str], issued_ago: timedelta | None = None
    ) -> str:
        """A token signed by the stack's key, as `ems token create` makes it."""
        from ems.auth.models import TokenRequest
        from ems.auth.service import mint
        from ems.auth.store import TokenStore

        def now() -> datetime:
            return datetime.now(UTC) - (issued_ago or timedelta())

        request = TokenRequest(name=name, list_of_resources=resources, sites=sites, exp_minutes=60)
        return mint(request, None, TokenStore(), now=now).token

    def request(
        self, method: str, path: str, token: str | None = None, body: Any = None, query: str = ""
    ) -> Request:
        """The event API Gateway hands to the route's function, authorizer context included."""
        found = apigw.match(self.gateway.routes, method, path)
        if found is None:
            raise ValueError(f"no route {method} {path}")
        route, params = found
        headers = {"host": "api.example.com", "user-agent": "bench", "authorization": f"Bearer {token}"}
        if token is None:
            del headers["authorization"]
        raw = None if body is None else json.dumps(body).encode()
        if raw is not None:
            headers["content-type"] = "application/json"
        event = apigw.request_event(route, params, method, path, query, headers, raw)
        name = route.authorizer or self.gateway.default_authorizer
        if name and name != "NONE":
            verdict = self.gateway.authorize(self.gateway.authorizers[name], event)
            if verdict.status != 200:
                raise RuntimeError(f"the authorizer refused {method} {path}: {verdict.status}")
            apigw.with_authorizer_context(event, dict(verdict.context))
        return Request(route.function, event)

    def authorizer_request(self, method: str, path: str, token: str | None, query: str = "") -> Request:
        """The REQUEST authorizer's event for a request (its identity sources as API Gateway reads them)."""
        found = apigw.match(self.gateway.routes, method, path)
        if found is None:
            raise ValueError(f"no route {method} {path}")
        route, params = found
        headers = {"host": "api.example.com", "user-agent": "bench"}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        event = apigw.request_event(route, params, method, path, query, headers)
        authorizer = self.gateway.authorizers[route.authorizer or self.gateway.default_authorizer or ""]
        identity = authorizer.identity.values(event) or []
        return Request(authorizer.function, apigw.authorizer_event(event, identity=identity))

    def call(
        self, method: str, path: str, token: str | None = None, body: Any = None, query: str = ""
    ) -> tuple[int, Any]:
        """One request through the gateway, functions run in this process (to seed data)."""
        raw = None if body is None else json.dumps(body).encode()
        headers = {"authorization": f"Bearer {token}"} if token else {}
        if raw is not None:
            headers["content-type"] = "application/json"
        status, _headers, reply = self.gateway.handle(method, path, query, headers, raw)
        return status, (json.loads(reply) if reply else None)

    def _invoke_in_process(self, function: str, event: dict[str, Any]) -> Any:
        from ems_local.lambda_context import LambdaContext

        fn = self.functions[function]
        return self._module(fn["CodeUri"]).handler(
            event,
            LambdaContext(fn["FunctionName"], int(fn.get("MemorySize", 128)), float(fn.get("Timeout", 3))),
        )

    def _module(self, code_uri: str) -> ModuleType:
        path = (ROOT / code_uri / "app.py").resolve()
        name = "bench_fn_" + path.parent.name
        if name not in self._modules:
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            self._modules[name] = module
        return self._modules[name]


def _forget_ems_caches() -> None:
    """Settings, clients and keys are cached per process; a new server means new values."""
    from ems.auth import signing
    from ems.core import aws, settings
    from ems.core.observability import metrics

    settings.settings.cache_clear()
    aws.client.cache_clear()
    signing.forget_keys()
    # Read from the environment when ems.core.observability was imported, maybe before this server.
    metrics.namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE")
