"""Alerts: the routes (GET /api/v1/events, POST /api/v1/events/{id}/acknowledge), and the consumers that
raise and clear them: TelemetryReceived (thresholds), other domains' SystemEvent, and the schedule
that checks for sensors gone offline. `handler` tells the invocations apart by the event's shape."""

from functools import cache
from typing import Any

from ems.alerts import service as alerts
from ems.alerts.models import SYSTEM_EVENT, Alert, AlertPage, EventsQuery, SystemEvent
from ems.alerts.store import AlertStore
from ems.auth.http import claims, request_site
from ems.core.events import EventBridgePublisher, event_handler, is_eventbridge_event
from ems.core.http import http_app, lambda_handler, query_model
from ems.core.observability import instrumented
from ems.registry.store import RegistryStore
from ems.telemetry.backends import latest_readings
from ems.telemetry.models import TELEMETRY_RECEIVED, TelemetryReceived

app = http_app("alerts")
OFFLINE_CHECK = {"check": "offline"}  # the schedule's input (template.yaml)


@cache
def stores() -> alerts.Stores:
    return alerts.Stores(
        alerts=AlertStore(),
        registry=RegistryStore(),
        events=EventBridgePublisher(),
        latest=latest_readings(),
    )


@app.get("/api/v1/events")
def list_events() -> AlertPage:
    return alerts.list_events(request_site(app), query_model(app, EventsQuery), stores().alerts)


@app.post("/api/v1/events/<alert_id>/acknowledge")
def acknowledge(alert_id: str) -> Alert:
    return alerts.acknowledge(request_site(app), alert_id, claims(app), stores().alerts)


def on_event(detail_type: str, detail: dict[str, Any], source: str) -> dict[str, Any]:
    if detail_type == TELEMETRY_RECEIVED:
        return alerts.evaluate_readings(TelemetryReceived.model_validate(detail), stores()).model_dump()
    if detail_type == SYSTEM_EVENT:
        return alerts.system_event(source, SystemEvent.model_validate(detail), stores()).model_dump()
    raise ValueError(f"no alerts from {detail_type!r}")  # the rules' patterns let no other through


events_handler = event_handler("alerts", on_event)
http_handler = lambda_handler(app)


@instrumented("alerts")
def offline_handler(event: Any, context: Any) -> dict[str, Any]:
    return alerts.check_offline(stores()).model_dump()


def handler(event: dict[str, Any], context: Any) -> Any:
    if is_eventbridge_event(event):
        return events_handler(event, context)
    if event == OFFLINE_CHECK:
        return offline_handler(event, context)
    return http_handler(event, context)
