"""Reads of the site's state: GET /api/v1/overview (any valid token), a room with its live metrics
(GET /api/v1/rooms/{name}), and the analytics summary and energy (GET /api/v1/analytics/...)."""

from functools import cache

from ems.alerts.store import AlertStore
from ems.auth.http import claims, request_site
from ems.core.http import http_app, lambda_handler, query_model
from ems.overview import service as overview
from ems.overview.models import EnergyQuery, EnergyReport, Overview, RoomDetail, Summary
from ems.registry.store import RegistryStore
from ems.telemetry.backends import latest_readings, telemetry_store

app = http_app("overview")


@cache
def stores() -> overview.Stores:
    """Made on first use, not at import: the telemetry backend comes from the environment."""
    return overview.Stores(
        registry=RegistryStore(),
        telemetry=telemetry_store(),
        latest=latest_readings(),
        tariffs=RegistryStore(),
        alerts=AlertStore(),
    )


@app.get("/api/v1/overview")
def get_overview() -> Overview:
    return overview.site_overview(request_site(app), claims(app), stores())


@app.get("/api/v1/rooms/<name>")
def get_room(name: str) -> RoomDetail:
    return overview.room_detail(request_site(app), name, claims(app), stores())


@app.get("/api/v1/analytics/summary")
def get_summary() -> Summary:
    return overview.summary(request_site(app), claims(app), stores())


@app.get("/api/v1/analytics/energy")
def get_energy() -> EnergyReport:
    return overview.energy_report(request_site(app), query_model(app, EnergyQuery), claims(app), stores())


handler = lambda_handler(app)
