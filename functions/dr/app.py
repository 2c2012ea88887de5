"""Demand response: the routes of API.md "Demand response" (/api/v1/demand-response/...) and
/api/v1/forecast/flexibility."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from ems.auth.http import claims, request_site
from ems.core.events import EventBridgePublisher
from ems.core.http import body, http_app, lambda_handler, query_model
from ems.devices.store import DeviceStore
from ems.dr import service as dr
from ems.dr.forecasts import SeasonalNaiveForecasts
from ems.dr.models import (
    AnswerIn,
    AutoResponse,
    CancelIn,
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
from ems.dr.store import InvitationStore
from ems.registry.store import RegistryStore
from ems.telemetry.backends import telemetry_store
from ems.telemetry.store import SensorStatusStore

app = http_app("dr")


class NoBatteries:
    """# MERGE: replace with ems.batteries.service.dischargeable (the batteries branch's), wired as
    a BatteryFleet: `dischargeable(site, window_minutes)` -> its DischargeableBattery list."""

    def dischargeable(self, site: str, window_minutes: int) -> Sequence[Dischargeable]:
        return []


@cache
def stores() -> dr.Stores:
    return dr.Stores(
        invitations=InvitationStore(), devices=DeviceStore(), events=EventBridgePublisher(),
        sites=RegistryStore(), latest=SensorStatusStore(), rollups=telemetry_store(), batteries=NoBatteries(),
        forecasts=SeasonalNaiveForecasts(RegistryStore(), telemetry_store()),
    )  # fmt: skip


@app.post("/api/v1/demand-response/invitations/send")
def send() -> tuple[Sent, int]:
    return dr.send(request_site(app), body(app, InvitationIn), stores()), 201


@app.get("/api/v1/demand-response/invitations/unanswered")
def unanswered() -> InvitationPage:
    return dr.unanswered(request_site(app), query_model(app, ListQuery), stores())


@app.get("/api/v1/demand-response/invitations/answered")
def answered() -> InvitationPage:
    return dr.answered(request_site(app), query_model(app, ListQuery), stores())


@app.post("/api/v1/demand-response/invitations/answer")
def answer() -> Invitation:
    return dr.answer(request_site(app), body(app, AnswerIn), stores(), by=claims(app).sub)


@app.get("/api/v1/demand-response/invitations/<invitation_id>")
def get_invitation(invitation_id: str) -> Invitation:
    return dr.get(request_site(app), invitation_id, stores())


@app.post("/api/v1/demand-response/invitations/<invitation_id>/cancel")
def cancel(invitation_id: str) -> Invitation:
    raw = app.current_event.decoded_body
    reason = body(app, CancelIn).reason if raw and raw.strip() else None
    return dr.cancel(request_site(app), invitation_id, reason, stores())


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


handler = lambda_handler(app)
