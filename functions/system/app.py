"""System routes, no token: /health and the public signing keys."""

from ems.core.http import http_app, lambda_handler
from ems.system import service as system

app = http_app("system")


@app.get("/health")
def health():  # type: ignore[no-untyped-def]
    report = system.health()
    return report, (200 if report.status == "ok" else 503)


@app.get("/.well-known/jwks.json")
def jwks():  # type: ignore[no-untyped-def]
    return system.jwks()


handler = lambda_handler(app)
