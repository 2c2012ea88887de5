"""The local cloud: its services composed, started in order, stopped in reverse, described in stack.json.

Services today: the AWS endpoint (moto), the functions' workers and the HTTP API. The WebSocket
API, EventBridge, Scheduler and the MQTT broker plug in the same way: built from the Stack,
given `functions.invoke` to call functions and `aws_environment` to reach AWS, started and stopped
here, and described in stack.json.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ems_local import console
from ems_local.aws_endpoint import REGION, AwsEndpoint
from ems_local.functions import Functions
from ems_local.gateway import HttpGateway
from ems_local.http_api import HttpApiServer
from ems_local.ports import HOST, check_free
from ems_local.seed import DEMO_SITE, create_demo_site, mint_admin_token
from ems_local.template import TEMPLATE, Stack


class Service(Protocol):
    def stop(self) -> None: ...


@dataclass
class Options:
    http_port: int = 8000
    ws_port: int = 8001
    mqtt_port: int = 1883
    aws_port: int = 4566
    state_dir: Path = Path(".local")
    reset: bool = False
    demo: bool = True
    concurrency: int = 4
    parameters: dict[str, str] = field(default_factory=dict)  # template parameter overrides


class LocalCloud:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.stack_file = options.state_dir / "stack.json"
        self._running: list[Service] = []
        self.description: dict[str, Any] = {}

    def start(self) -> dict[str, Any]:
        """Start every service; what stack.json says about them. Raises PortTaken before starting
        anything when a port is in use."""
        options = self.options
        check_free("http", options.http_port)
        check_free("aws", options.aws_port)
        self._prepare_state_dir()
        # This process mints the admin token against the local endpoint: nothing of the developer's
        # own AWS configuration may redirect it.
        for name in [k for k in os.environ if k.startswith("AWS_ENDPOINT_URL") or k == "AWS_PROFILE"]:
            del os.environ[name]

        aws = AwsEndpoint(options.aws_port)
        aws.start()
        self._running.append(aws)
        # The demo site is the deployment's default: the original dashboard's site-less calls land there.
        defaults = {"DefaultSiteId": DEMO_SITE["site_id"]} if options.demo else {}
        parameters: dict[str, Any] = {**defaults, **options.parameters}
        stack = Stack.from_file(TEMPLATE, REGION, **parameters)
        aws.create_resources(stack)

        self.functions = Functions(stack, aws.environment(), concurrency=options.concurrency)
        self._running.append(self.functions)
        http = HttpApiServer(HttpGateway(stack, self.functions.invoke), options.http_port)
        http.start()
        self._running.append(http)

        environment = self.functions.shared_environment()
        admin_token = mint_admin_token({**environment, **aws.environment()})
        site = create_demo_site(http.url, admin_token)["site_id"] if options.demo else None
        self.description = {
            "http": http.url,
            "ws": f"ws://{HOST}:{options.ws_port}",  # placeholder until the WebSocket API lands
            "mqtt": f"mqtt://{HOST}:{options.mqtt_port}",  # placeholder until the broker lands
            "aws": aws.url,
            "admin_token": admin_token,
            "site": site,
            "env": environment,
            "pid": os.getpid(),
        }
        self._write_stack_file()
        return self.description

    def _prepare_state_dir(self) -> None:
        state = self.options.state_dir
        state.mkdir(parents=True, exist_ok=True)
        # moto keeps its state in memory only, so every start is a fresh stack; --reset clears
        # what an earlier run left in the state directory.
        if self.options.reset:
            for leftover in state.iterdir():
                if leftover.is_file():
                    leftover.unlink()

    def _write_stack_file(self) -> None:
        # Written whole, then renamed: a reader never sees half a file.
        partial = self.stack_file.with_suffix(".json.partial")
        partial.write_text(json.dumps(self.description, indent=2) + "\n")
        partial.replace(self.stack_file)

    def stop(self) -> None:
        """Stop every service in reverse order; the stack file goes, as the stack it describes."""
        if self.stack_file.exists() and self.description:
            self.stack_file.unlink()
        while self._running:
            service = self._running.pop()
            try:
                service.stop()
            except Exception as exc:  # keep stopping the others whatever one of them does
                console.line("local", f"stopping {type(service).__name__}: {exc!r}")
