"""The `TelemetryStore` adapter a deployment chooses (TELEMETRY_BACKEND: dynamodb or timestream)."""

from __future__ import annotations

from ems.core.settings import settings
from ems.telemetry.ports import TelemetryStore


def telemetry_store() -> TelemetryStore:
    backend = settings().telemetry_backend
    if backend == "timestream":
        from ems.telemetry.timestream import TimestreamTelemetryStore  # only that deployment loads it

        return TimestreamTelemetryStore()
    if backend != "dynamodb":
        raise RuntimeError(f"TELEMETRY_BACKEND={backend!r}: choose dynamodb or timestream")
    from ems.telemetry.store import DynamoTelemetryStore

    return DynamoTelemetryStore()
