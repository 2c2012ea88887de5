"""Which token resource each route needs. One table, read by the authorizer and by tests."""

from __future__ import annotations

# Longest prefix wins. Paths are those of API.md (all under /api/v1 but the system routes).
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("/api/v1/tokens", "tokens"),
    ("/api/v1/sites", "sites"),
    ("/api/v1/rooms", "rooms"),
    ("/api/v1/sensors", "sensors"),
    ("/api/v1/data/ingest", "ingest"),
    ("/api/v1/data/query", "analytics"),
    ("/api/v1/analytics", "analytics"),
    ("/api/v1/export", "export"),
    ("/api/v1/events", "events"),
    ("/api/v1/batteries", "batteries"),
    ("/api/v1/tariffs", "tariffs"),
    ("/api/v1/demand-response", "demand-response"),
    ("/api/v1/p2p", "p2p"),
    ("/api/v1/forecast", "forecast"),
    ("/api/v1/iot", "iot"),
)
# Routes any valid token may call.
ANY_TOKEN = "any"
_OPEN_TO_ANY_TOKEN = ("/api/v1/overview",)


def required_resource(path: str) -> str | None:
    """The resource a path needs, `ANY_TOKEN`, or None for a path no token grants."""
    if any(path == p or path.startswith(p + "/") for p in _OPEN_TO_ANY_TOKEN):
        return ANY_TOKEN
    best: tuple[str, str] | None = None
    for prefix, resource in _PREFIXES:
        if (path == prefix or path.startswith(prefix + "/")) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, resource)
    return best[1] if best else None


def route_path(route_key: str) -> str:
    """'GET /api/v1/rooms/{name}' -> '/api/v1/rooms/{name}'."""
    return route_key.split(" ", 1)[1] if " " in route_key else route_key


# WebSocket topics (API.md "WebSocket"): the kind before the first "/" and the resources of which a
# token needs any one to read it. Live pushes carry what the matching HTTP reads return.
TOPIC_RESOURCES: dict[str, tuple[str, ...]] = {
    "sensors": ("sensors",),
    "rooms": ("rooms",),
    "site": ("analytics", "events"),
    "alerts": ("events", "analytics"),
    "batteries": ("batteries",),
    "dr": ("demand-response",),
    "market": ("p2p",),
    "devices": ("iot",),
}


def topic_resources(kind: str) -> tuple[str, ...] | None:
    """The resources that may read a topic kind (any one of them), or None for an unknown kind."""
    return TOPIC_RESOURCES.get(kind)
