"""The adapters a deployment chooses (TELEMETRY_BACKEND: dynamodb or timestream): where readings are stored
(`TelemetryStore`) and where each sensor's newest reading is read (`LatestReadings`) and kept
(`SensorStatus`: only Timestream needs one; the DynamoDB store keeps it in its hours)."""

from __future__ import annotations

from ems.core.settings import settings
from ems.registry.status import LatestReadings
from ems.telemetry.ports import SensorStatus, TelemetryStore


def _backend() -> str:
    backend = settings().telemetry_backend
    if backend not in ("dynamodb", "timestream"):
        raise RuntimeError(f"TELEMETRY_BACKEND={backend!r}: choose dynamodb or timestream")
    return backend


def telemetry_store() -> TelemetryStore:
    if _backend() == "timestream":
        from ems.telemetry.timestream import TimestreamTelemetryStore  # only that deployment loads it

        return TimestreamTelemetryStore()
    from ems.telemetry.store import DynamoTelemetryStore

    return DynamoTelemetryStore()


def sensor_status() -> SensorStatus | None:
    """What ingest moves after a write: nothing with the DynamoDB store."""
    if _backend() == "timestream":
        from ems.telemetry.store import SensorStatusStore

        return SensorStatusStore()
    return None


def latest_readings() -> LatestReadings:
    from ems.telemetry.store import DynamoLatestReadings, SensorStatusStore

    return SensorStatusStore() if _backend() == "timestream" else DynamoLatestReadings()
