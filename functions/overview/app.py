"""GET /api/v1/overview: the site snapshot (any valid token)."""

from functools import cache

from ems.core.http import claims, http_app, lambda_handler, request_site
from ems.overview import service as overview
from ems.registry.store import RegistryStore
from ems.telemetry.store import SensorStatusStore, telemetry_store

app = http_app("overview")


@cache
def stores() -> overview.Stores:
    """Made on first use, not at import: the telemetry backend comes from the environment."""
    return overview.Stores(registry=RegistryStore(), telemetry=telemetry_store(), latest=SensorStatusStore())


@app.get("/api/v1/overview")
def get_overview():  # type: ignore[no-untyped-def]
    return overview.site_overview(request_site(app), claims(app), stores())


handler = lambda_handler(app)
