"""System routes, no token: /health and the public signing keys."""

from ems.core.http import http_app, lambda_handler
from ems.system import service as system
from ems.system.service import Health

app = http_app("system")


@app.get("/health")
def health() -> tuple[Health, int]:
    report = system.health()
    return report, (200 if report.status == "ok" else 503)


@app.get("/.well-known/jwks.json")
def jwks() -> dict[str, list[dict[str, str]]]:
    return system.jwks()


handler = lambda_handler(app)
