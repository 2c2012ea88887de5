"""IoT control: the /api/v1/iot routes (devices, commands, control, the hourly plan, the summary,
automation rules, schedules), and what invokes it otherwise: the topic rule on devices' accepted shadow updates,
the rule on presence events, the stale-command check, TelemetryReceived (automation rules) and
the run-time Scheduler schedules of /iot/schedules. `handler` tells the invocations apart by the event's shape.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ems.auth.http import claims, request_site
from ems.core.errors import NotFound
from ems.core.events import EventBridgePublisher, event_handler, is_eventbridge_event
from ems.core.http import body, flag, http_app, lambda_handler, query_model
from ems.core.observability import instrumented, logger
from ems.core.pagination import Page
from ems.devices import service as devices
from ems.devices.commands import SOURCES, Source
from ems.devices.models import (
    Command,
    CommandRequest,
    Deleted,
    Device,
    DeviceIn,
    DevicesSummary,
    DeviceUpdate,
    DeviceView,
    ListQuery,
    PlanIn,
    Released,
    Rule,
    RuleIn,
    RuleUpdate,
    RuleView,
    Schedule,
    ScheduleIn,
    ScheduleRun,
)
from ems.devices.store import (
    CommandStore,
    DeviceStore,
    EventBridgeScheduler,
    IotCoreCloud,
    RuleStore,
    ScheduleStore,
)
from ems.registry.store import RegistryStore
from ems.telemetry.backends import latest_readings
from ems.telemetry.models import TELEMETRY_RECEIVED, TelemetryReceived

app = http_app("devices")
STALE_CHECK = {"check": "stale_commands"}  # the schedule's input (template.yaml)
SHADOW_REPORT = "shadow_report"  # what the topic rules' SQL names their events (template.yaml)
PRESENCE = "presence"


@cache
def stores() -> devices.Stores:
    return devices.Stores(
        devices=DeviceStore(),
        commands=CommandStore(),
        iot=IotCoreCloud(),
        events=EventBridgePublisher(),
        sites=RegistryStore(),
        latest=latest_readings(),
        rules=RuleStore(),
        schedules=ScheduleStore(),
        scheduler=EventBridgeScheduler(),
    )


@app.get("/api/v1/iot/devices")
def list_devices() -> Page[Device]:
    return devices.list_devices(request_site(app), query_model(app, ListQuery), stores())


@app.post("/api/v1/iot/devices")
def register() -> tuple[Device, int]:
    return devices.register(request_site(app), body(app, DeviceIn), stores()), 201


@app.get("/api/v1/iot/devices/summary")
def summary() -> DevicesSummary:
    return devices.summary(request_site(app), claims(app), stores())


@app.get("/api/v1/iot/devices/<device_id>")
def get_device(device_id: str) -> DeviceView:
    return devices.get_device(request_site(app), device_id, claims(app), stores())


@app.put("/api/v1/iot/devices/<device_id>")
def update_device(device_id: str) -> Device:
    return devices.update_device(request_site(app), device_id, body(app, DeviceUpdate), stores())


@app.delete("/api/v1/iot/devices/<device_id>")
def delete_device(device_id: str) -> Deleted:
    return devices.delete_device(request_site(app), device_id, flag(app, "force"), stores())


@app.post("/api/v1/iot/devices/<device_id>/instructions")
def instruct(device_id: str) -> tuple[Command, int]:
    """The seed's route: a manual command from the caller."""
    site, caller = request_site(app), claims(app)
    return devices.send(site, device_id, body(app, CommandRequest), "manual", stores(), caller.sub), 201


@app.get("/api/v1/iot/devices/<device_id>/commands")
def list_commands(device_id: str) -> Page[Command]:
    return devices.list_commands(request_site(app), device_id, query_model(app, ListQuery), stores())


@app.delete("/api/v1/iot/devices/<device_id>/control/<source>")
def release(device_id: str, source: str) -> Released:
    if source not in SOURCES:
        raise NotFound(f"no controller {source!r}: controllers are {', '.join(SOURCES)}", "source")
    known: Source = source
    return devices.release(request_site(app), device_id, known, stores(), claims(app).sub)


@app.get("/api/v1/iot/instructions")
def get_plan() -> dict[str, dict[str, str]]:
    return devices.get_plan(request_site(app), stores())


@app.put("/api/v1/iot/instructions")
def put_plan() -> dict[str, dict[str, str]]:
    return devices.put_plan(request_site(app), body(app, PlanIn).root, stores())


@app.get("/api/v1/iot/rules")
def list_rules() -> Page[Rule]:
    return devices.list_rules(request_site(app), query_model(app, ListQuery), stores())


@app.post("/api/v1/iot/rules")
def create_rule() -> tuple[Rule, int]:
    return devices.create_rule(request_site(app), body(app, RuleIn), stores()), 201


@app.get("/api/v1/iot/rules/<rule_id>")
def get_rule(rule_id: str) -> RuleView:
    return devices.get_rule(request_site(app), rule_id, stores())


@app.put("/api/v1/iot/rules/<rule_id>")
def update_rule(rule_id: str) -> Rule:
    return devices.update_rule(request_site(app), rule_id, body(app, RuleUpdate), stores())


@app.delete("/api/v1/iot/rules/<rule_id>")
def delete_rule(rule_id: str) -> dict[str, bool]:
    return devices.delete_rule(request_site(app), rule_id, stores())


@app.get("/api/v1/iot/schedules")
def list_schedules() -> Page[Schedule]:
    return devices.list_schedules(request_site(app), query_model(app, ListQuery), stores())


@app.post("/api/v1/iot/schedules")
def create_schedule() -> tuple[Schedule, int]:
    return devices.put_schedule(request_site(app), body(app, ScheduleIn), stores()), 201


@app.get("/api/v1/iot/schedules/<schedule_id>")
def get_schedule(schedule_id: str) -> Schedule:
    return devices.get_schedule(request_site(app), schedule_id, stores())


@app.put("/api/v1/iot/schedules/<schedule_id>")
def update_schedule(schedule_id: str) -> Schedule:
    site = request_site(app)
    devices.get_schedule(site, schedule_id, stores())  # 404 before anything is written
    return devices.put_schedule(site, body(app, ScheduleIn), stores(), schedule_id)


@app.delete("/api/v1/iot/schedules/<schedule_id>")
def delete_schedule(schedule_id: str) -> dict[str, bool]:
    return devices.delete_schedule(request_site(app), schedule_id, stores())


http_handler = lambda_handler(app)


def on_event(detail_type: str, detail: dict[str, Any], source: str) -> dict[str, int]:
    if detail_type == TELEMETRY_RECEIVED:
        return devices.evaluate_rules(TelemetryReceived.model_validate(detail), stores())
    raise ValueError(f"no automation from {detail_type!r}")  # the rule's pattern lets no other through


events_handler = event_handler("devices", on_event)


@instrumented("devices")
def iot_handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    """What the topic rules select: an accepted shadow update (with `thing`) or a presence event."""
    if event.get("ems_event") == SHADOW_REPORT:
        outcome = devices.on_shadow_report(str(event.get("thing", "")), event, stores())
    else:
        outcome = devices.on_presence(event, stores())
    logger.info("iot event", extra={"ems_event": event.get("ems_event"), "outcome": outcome})
    return {"outcome": outcome}


@instrumented("devices")
def stale_handler(event: Any, context: Any) -> dict[str, int]:
    return devices.check_stale(stores())


@instrumented("devices")
def schedule_handler(event: dict[str, Any], context: Any) -> ScheduleRun:
    """A run-time schedule fired (its Input: {"schedule": {site, schedule_id, scheduled_time}})."""
    fired = event["schedule"]
    return devices.run_schedule(
        str(fired["site"]), str(fired["schedule_id"]), str(fired["scheduled_time"]), stores()
    )


def handler(event: dict[str, Any], context: Any) -> Any:
    if is_eventbridge_event(event):
        return events_handler(event, context)
    if event == STALE_CHECK:
        return stale_handler(event, context)
    if isinstance(event, dict) and isinstance(event.get("schedule"), dict):
        return schedule_handler(event, context).model_dump()
    if isinstance(event, dict) and event.get("ems_event") in (SHADOW_REPORT, PRESENCE):
        return iot_handler(event, context)
    return http_handler(event, context)
