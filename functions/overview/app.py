"""Reads of the site's state: GET /api/v1/overview (any valid token), a room with its live metrics
(GET /api/v1/rooms/{name}), and the analytics summary and energy (GET /api/v1/analytics/...)."""

from functools import cache

from ems.alerts.store import AlertStore
from ems.core.http import claims, http_app, lambda_handler, request_site
from ems.overview import service as overview
from ems.overview.models import EnergyQuery
from ems.registry.store import RegistryStore
from ems.tariffs.store import TariffStore
from ems.telemetry.store import SensorStatusStore, telemetry_store

app = http_app("overview")


@cache
def stores() -> overview.Stores:
    """Made on first use, not at import: the telemetry backend comes from the environment."""
    return overview.Stores(
        registry=RegistryStore(),
        telemetry=telemetry_store(),
        latest=SensorStatusStore(),
        tariffs=TariffStore(),
        alerts=AlertStore(),
    )


@app.get("/api/v1/overview")
def get_overview():  # type: ignore[no-untyped-def]
    return overview.site_overview(request_site(app), claims(app), stores())


@app.get("/api/v1/rooms/<name>")
def get_room(name: str):  # type: ignore[no-untyped-def]
    return overview.room_detail(request_site(app), name, claims(app), stores())


@app.get("/api/v1/analytics/summary")
def get_summary():  # type: ignore[no-untyped-def]
    return overview.summary(request_site(app), claims(app), stores())


@app.get("/api/v1/analytics/energy")
def get_energy():  # type: ignore[no-untyped-def]
    params = {k: v for k, v in (app.current_event.query_string_parameters or {}).items() if k != "site"}
    return overview.energy_report(
        request_site(app), EnergyQuery.model_validate(params), claims(app), stores()
    )


handler = lambda_handler(app)
