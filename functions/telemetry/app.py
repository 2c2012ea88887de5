"""Telemetry: the HTTP routes (ingest of readings, one sensor's series, queries over many) and, as
TelemetryIngestFunction, the telemetry queue's handler for devices' messages (`sqs_handler`), or the
IoT rule's (`iot_handler`) for a template whose rule invokes the function directly."""

from functools import cache
from typing import Any

from ems.auth.http import claims, request_site
from ems.core.events import EventBridgePublisher
from ems.core.http import body, http_app, lambda_handler, query_model
from ems.core.observability import instrumented
from ems.registry.store import RegistryStore
from ems.telemetry import device_queue
from ems.telemetry import service as telemetry
from ems.telemetry.backends import latest_readings, sensor_status, telemetry_store
from ems.telemetry.models import DataQuery, IngestRequest, IngestResult, SensorDataQuery, Series, SeriesSet
from ems.telemetry.store import SqsDeadLetters

app = http_app("telemetry")


@cache
def stores() -> telemetry.Stores:
    """Made on first use, not at import: the backend comes from the environment."""
    return telemetry.Stores(
        registry=RegistryStore(), telemetry=telemetry_store(), status=sensor_status(), latest=latest_readings(),
        events=EventBridgePublisher(),
    )  # fmt: skip


@app.post("/api/v1/data/ingest")
def ingest() -> IngestResult:
    return telemetry.ingest(request_site(app), body(app, IngestRequest), stores())


@app.get("/api/v1/sensors/<sensor_id>/data")
def sensor_data(sensor_id: str) -> Series:
    return telemetry.sensor_data(
        request_site(app), sensor_id, query_model(app, SensorDataQuery), claims(app), stores()
    )


@app.get("/api/v1/rooms/<name>/data")
def room_data(name: str) -> Series:
    return telemetry.room_data(
        request_site(app), name, query_model(app, SensorDataQuery), claims(app), stores()
    )


@app.post("/api/v1/data/query")
def query() -> SeriesSet:
    return telemetry.query(request_site(app), body(app, DataQuery), claims(app), stores())


handler = lambda_handler(app)


@instrumented("telemetry")
def iot_handler(event: Any, context: Any) -> dict[str, Any]:
    """The IoT rule's event: the device's payload with `site`, `device_id` and `received_ms` added."""
    return telemetry.ingest_device_message(event, stores()).model_dump()


@cache
def dead_letters() -> SqsDeadLetters:
    return SqsDeadLetters()


@instrumented("telemetry")
def sqs_handler(event: Any, context: Any) -> dict[str, Any]:
    """A batch of the telemetry queue; Lambda's partial batch response names the records to retry."""
    failed = device_queue.ingest_batch(event["Records"], stores(), dead_letters())
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}
