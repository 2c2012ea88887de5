"""Demand response: the routes of API.md "Demand response" (/api/v1/demand-response/...) and
/api/v1/forecast/flexibility, and the one-time Scheduler schedules at each accepted event's start
and end (`{"dr": "start" | "end", "site", "invitation_id"}`). `handler` tells them apart by shape.

Commands go through the devices domain (ems.devices.service.DeviceCommands) with the stores
functions/devices/app.py wires, so demand response holds devices as the `dr` controller."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from ems.auth.http import claims, request_site
from ems.batteries import service as battery_service
from ems.batteries.ports import Stores as BatteryStores
from ems.batteries.store import BatteryStore
from ems.core.events import EventBridgePublisher
from ems.core.http import body, http_app, lambda_handler, query_model
from ems.core.observability import instrumented
from ems.devices import service as devices
from ems.devices.service import DeviceCommands
from ems.devices.store import CommandStore, DeviceStore, IotCoreCloud
from ems.dr import service as dr
from ems.dr.models import (
    AnswerIn,
    AutoResponse,
    Benefits,
    BenefitsQuery,
    CancelIn,
    ExecuteIn,
    Execution,
    Flexibility,
    FlexibilityForecast,
    FlexibilityQuery,
    HorizonQuery,
    Invitation,
    InvitationIn,
    InvitationPage,
    ListQuery,
    Sent,
)
from ems.dr.ports import Dischargeable
from ems.dr.store import EventBridgeSchedules, InvitationStore
from ems.forecast.store import ForecastStore
from ems.ledger.store import LedgerStore
from ems.registry.store import RegistryStore
from ems.telemetry.backends import latest_readings, telemetry_store

app = http_app("dr")


class Batteries:
    """The BatteryFleet of demand response: ems.batteries' `dischargeable` over its own stores."""

    def dischargeable(self, site: str, window_minutes: int) -> Sequence[Dischargeable]:
        return battery_service.dischargeable(site, battery_stores(), window_minutes)


@cache
def battery_stores() -> BatteryStores:
    return BatteryStores(
        batteries=BatteryStore(), sites=RegistryStore(), latest=latest_readings(), rollups=telemetry_store()
    )


@cache
def device_commands() -> DeviceCommands:
    return DeviceCommands(
        devices.Stores(
            devices=DeviceStore(),
            commands=CommandStore(),
            iot=IotCoreCloud(),
            events=EventBridgePublisher(),
            sites=RegistryStore(),
            latest=latest_readings(),
        ),
        sent_by="dr",
    )


@cache
def stores() -> dr.Stores:
    return dr.Stores(
        invitations=InvitationStore(), devices=DeviceStore(), events=EventBridgePublisher(),
        sites=RegistryStore(), latest=latest_readings(), rollups=telemetry_store(), batteries=Batteries(),
        forecasts=ForecastStore(RegistryStore(), telemetry_store()), commands=device_commands(),
        schedules=EventBridgeSchedules(), ledger=LedgerStore(), command_states=CommandStore(),
        shadows=IotCoreCloud(),
    )  # fmt: skip


@app.post("/api/v1/demand-response/invitations/send")
def send() -> tuple[Sent, int]:
    return dr.send(request_site(app), body(app, InvitationIn), stores()), 201


@app.get("/api/v1/demand-response/invitations/unanswered")
def unanswered() -> InvitationPage:
    return dr.unanswered(request_site(app), query_model(app, ListQuery), stores(), claims(app))


@app.get("/api/v1/demand-response/invitations/answered")
def answered() -> InvitationPage:
    return dr.answered(request_site(app), query_model(app, ListQuery), stores(), claims(app))


@app.post("/api/v1/demand-response/invitations/answer")
def answer() -> Invitation:
    return dr.answer(request_site(app), body(app, AnswerIn), stores(), by=claims(app).sub, caller=claims(app))


@app.get("/api/v1/demand-response/invitations/<invitation_id>")
def get_invitation(invitation_id: str) -> Invitation:
    return dr.get(request_site(app), invitation_id, stores(), claims(app))


@app.post("/api/v1/demand-response/invitations/<invitation_id>/cancel")
def cancel(invitation_id: str) -> Invitation:
    raw = app.current_event.decoded_body
    reason = body(app, CancelIn).reason if raw and raw.strip() else None
    return dr.cancel(request_site(app), invitation_id, reason, stores(), caller=claims(app))


@app.get("/api/v1/demand-response/auto-response")
def get_auto_response() -> AutoResponse:
    return dr.get_settings(request_site(app), stores())


@app.put("/api/v1/demand-response/auto-response")
def put_auto_response() -> AutoResponse:
    return dr.put_settings(request_site(app), body(app, AutoResponse), stores())


@app.get("/api/v1/demand-response/flexibility/current")
def current_flexibility() -> Flexibility:
    q = query_model(app, FlexibilityQuery)
    return dr.current_flexibility(request_site(app), q.start, q.duration_minutes, claims(app), stores())


@app.get("/api/v1/forecast/flexibility")
def forecast_flexibility() -> FlexibilityForecast:
    q = query_model(app, HorizonQuery)
    return dr.forecast_flexibility(request_site(app), q.horizon_hours, claims(app), stores())


@app.post("/api/v1/demand-response/load-reduction/execute")
def execute() -> Execution:
    return dr.execute(
        request_site(app), body(app, ExecuteIn), stores(), by=claims(app).sub, caller=claims(app)
    )


@app.get("/api/v1/demand-response/benefits")
def benefits() -> Benefits:
    return dr.benefits(request_site(app), query_model(app, BenefitsQuery), claims(app), stores())


http_handler = lambda_handler(app)


@instrumented("dr")
def schedule_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    invitation = dr.on_schedule(event, stores())
    return {"invitation_id": invitation.invitation_id, "status": invitation.status}


def handler(event: dict[str, Any], context: Any) -> Any:
    if "dr" in event and "invitation_id" in event:
        return schedule_handler(event, context)
    return http_handler(event, context)
