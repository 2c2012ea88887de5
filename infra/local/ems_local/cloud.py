"""The local cloud: its services composed, started in order, stopped in reverse, described in stack.json.

Services today: the AWS endpoint (moto), the endpoint of AWS services moto does not deliver
(ems_local.aws_services: @connections now), the functions' workers, the SQS event source mappings
(ems_local.event_sources), the WebSocket API and the HTTP API. EventBridge, Scheduler and IoT Core (ems_local.iot_core: broker, topic rules, shadows, iot-data)
plug in the same way: built from the Stack, given `functions.invoke` to call functions and
`aws_environment` to reach AWS, registered with the AWS services endpoint when functions call them,
started and stopped here, described in stack.json.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from ems.core import clock as ems_clock
from ems_local import console, state
from ems_local.async_invoke import AsyncInvoker
from ems_local.aws_endpoint import REGION, AwsEndpoint
from ems_local.aws_services import AwsServices
from ems_local.clock import Clock
from ems_local.event_sources import POLLERS, EventSources
from ems_local.eventbridge import EventBridgeApi
from ems_local.functions import Functions
from ems_local.gateway import HttpGateway
from ems_local.http_api import HttpApiServer
from ems_local.iot_core import IotCore
from ems_local.ports import check_free
from ems_local.scheduler import Scheduler
from ems_local.seed import DEMO_SITE, create_demo_site, mint_admin_token
from ems_local.static import StaticSite
from ems_local.template import TEMPLATE, Stack
from ems_local.websocket_api import WebSocketApi, WebSocketSpec


class Service(Protocol):
    def stop(self) -> None: ...


@dataclass
class Options:
    http_port: int = 8000
    ws_port: int = 8001
    mqtt_port: int = 1883
    aws_port: int = 4566
    aws_services_port: int = 4567
    state_dir: Path = Path(".local")
    reset: bool = False
    demo: bool = True
    concurrency: int = 4
    parameters: dict[str, str] = field(default_factory=dict)  # template parameter overrides
    template: Path = TEMPLATE
    clock_rate: float = 1.0  # the local cloud's time runs this many times faster (--speed)
    clock_start: datetime | None = None  # what its clock reads at start (--clock); None: now
    building: bool = True  # the demo site's simulated building (ems_sim) on MQTT


class LocalCloud:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.stack_file = options.state_dir / "stack.json"
        self._running: list[Service] = []
        self.description: dict[str, Any] = {}
        # Set once the stack's own start-up traffic is over: the demo building said it is registered.
        self.settled = threading.Event()

    def start(self) -> dict[str, Any]:
        """Start every service; what stack.json says about them. Raises PortTaken before starting
        anything when a port is in use."""
        options = self.options
        check_free("http", options.http_port)
        check_free("aws", options.aws_port)
        check_free("ws", options.ws_port)
        check_free("aws-services", options.aws_services_port)
        check_free("mqtt", options.mqtt_port)
        self._prepare_state_dir()
        # One clock for every process: this one (the admin token, IoT rules' timestamp(), the demo
        # building), the workers (EMS_CLOCK in their environment) and the Scheduler.
        clock = Clock(options.clock_rate, options.clock_start)
        ems_clock.run_on(None if clock.is_real else clock.scaled)
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
        stack = Stack.from_file(options.template, REGION, **parameters)
        # The snapshot is read, restored and written in the moto process; a snapshot of another
        # version is refused (--reset).
        saved = aws.restore_keys(options.state_dir, stack)
        aws.create_resources(stack)
        if saved:
            counts = aws.restore_data()
            console.notice(
                "state",
                f"restored {counts['items']} items, {counts['objects']} objects, {counts['things']} IoT things "
                f"and {counts['schedules']} schedules",
            )
        keeper = state.StateKeeper(options.state_dir, lambda path: aws.save_state(path, stack))
        keeper.start()
        self._running.append(keeper)

        services = AwsServices(options.aws_services_port)
        services.start()
        self._running.append(services)
        # The WebSocket API calls functions that do not exist yet: they need the endpoint it serves.
        websocket: WebSocketApi | None = None
        if WebSocketSpec.from_stack(stack) is not None:  # a test template (--template) may have none
            websocket = WebSocketApi(
                stack, lambda fn, event: self.functions.invoke(fn, event), options.ws_port
            )
            services.register(
                "execute-api", websocket.management,
                {"AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI": websocket.management_path()},
            )  # fmt: skip

        # EventBridge and Scheduler invoke functions as Lambda's asynchronous invocation does.
        dead_letters = options.state_dir / "dead-letters.jsonl"
        arns = {name: stack.get_att(name, "Arn") for name in stack.functions()}
        invoker = AsyncInvoker(
            lambda fn, event: self.functions.invoke(fn, event), dead_letters, function_arns=arns
        )
        events = EventBridgeApi.from_stack(stack, invoker.submit)
        services.register(
            "events", lambda request: events.handle(request.method, request.path, request.headers, request.body),
            {"AWS_ENDPOINT_URL_EVENTBRIDGE": ""},  # botocore's name for the `events` client's endpoint
        )  # fmt: skip
        # IoT Core: the broker, the template's topic rules (asynchronous invocations), shadows in moto.
        iot = IotCore(stack, invoker.submit, aws.client, options.mqtt_port)
        services.register(
            "iotdata",
            lambda request: iot.data_plane.handle(
                request.method, request.path, request.headers, request.body, request.query
            ),
            {"AWS_ENDPOINT_URL_IOT_DATA_PLANE": ""},  # botocore's name for service id "IoT Data Plane"
        )

        self.functions = Functions(
            stack,
            {**aws.environment(), **services.environment(), **clock.environment()},
            concurrency=options.concurrency,
        )
        self._running.append(self.functions)
        invoker.start()
        self._running.append(invoker)
        # SQS event source mappings: pollers that invoke functions with batches (the telemetry queue);
        # Lambda starts five per queue, and no more than a function's workers can run at once here.
        sources = EventSources(stack, self.functions.invoke, aws.client, min(POLLERS, options.concurrency))
        sources.start()
        self._running.append(sources)
        iot.start()
        self._running.append(iot)
        scheduler = Scheduler(stack, clock, invoker.submit, aws.client("scheduler"))
        scheduler.start()
        self._running.append(scheduler)
        if websocket is not None:
            websocket.start()
            self._running.append(websocket)
        # The page at the root: the project's web/ beside its template (a test template has none).
        web = options.template.resolve().parent / "web"
        http = HttpApiServer(
            HttpGateway(stack, self.functions.invoke),
            options.http_port,
            websocket.port if websocket else None,
            StaticSite(web) if (web / "index.html").is_file() else None,
        )
        http.start()
        self._running.append(http)

        environment = self.functions.shared_environment()
        # A test template without the tokens table (--template) has no admin token to mint.
        admin_token = (
            mint_admin_token({**environment, **aws.environment()}) if "TOKENS_TABLE" in environment else None
        )
        site = create_demo_site(http.url, admin_token)["site_id"] if options.demo and admin_token else None
        if site and admin_token and options.building:
            from ems_sim.cli import DemoBuilding  # the simulator is a package of its own

            def building_log(text: str) -> None:
                console.notice("building", text)
                self.settled.set()  # its first line: registered, or why not

            building = DemoBuilding(http.url, iot.url, admin_token, site, log=building_log)
            building.start()
            self._running.append(building)
        else:
            self.settled.set()
        self.description = {
            "http": http.url,
            "ws": websocket.url if websocket else None,  # also at ws://<http>/ws
            "mqtt": iot.url,
            "aws": aws.url,
            "aws_pid": aws.pid,  # moto's own process
            "aws_services": services.url,
            "clock": clock.describe(),
            "dead_letters": str(dead_letters),
            "admin_token": admin_token,
            "site": site,
            # The live page, signed in through the URL's fragment (never sent to the server).
            "page": f"{http.url}/#token={admin_token}"
            if (web / "index.html").is_file() and admin_token
            else None,
            "logs": str(options.state_dir / "logs"),  # ems_local.console's files
            "env": environment,
            "pid": os.getpid(),
        }
        self._write_stack_file()
        return self.description

    def _prepare_state_dir(self) -> None:
        state = self.options.state_dir
        state.mkdir(parents=True, exist_ok=True)
        # moto keeps its state in memory; ems_local.state keeps a snapshot here. --reset clears what
        # an earlier run left in the state directory, the snapshot included.
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
        ems_clock.run_on(None)  # this process's clock was the stack's
