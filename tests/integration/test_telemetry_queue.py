"""Devices' telemetry through the queue against moto: TelemetryIngestFunction's `sqs_handler` with SQS
events (events/sqs), the template's queues and tables. A poison message and a throttled write in the
middle of a batch: only the throttled site's records come back as failures, the poison is in the
dead-letter queue with its reason, and nothing is stored twice when the failed records return; a
batch delivered twice changes no rollup; one TelemetryReceived per site and batch."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from ems.telemetry.models import Reading
from ems.telemetry.ports import TelemetryStore, WriteOutcome
from ems_local.lambda_context import LambdaContext
from tests.support.fakes import ListPublisher
from tests.support.inprocess import EVENTS, InProcessApi, load_function

SENSORS = {  # site -> device -> its sensors
    "hq": {"dev-a": ["A1", "A2"], "dev-c": ["C1"]},
    "annex": {"dev-b": ["B1"]},
}
RESOLUTIONS = ("15m", "1h", "1d")


@pytest.fixture
def sites(api: InProcessApi, admin_token: str) -> InProcessApi:
    for site, devices in SENSORS.items():
        created = api.request(
            "POST", "/api/v1/sites", token=admin_token, body={"site_id": site, "name": site}
        )
        assert created.status == 201, created.json
        for device, sensors in devices.items():
            for sensor in sensors:
                body = {"sensor_id": sensor, "name": sensor, "sensor_type": "power", "device_id": device}
                made = api.request(
                    "POST", "/api/v1/sensors", token=admin_token, body=body, headers={"x-site": site}
                )
                assert made.status == 201, made.json
    return api


class ThrottledSite:
    """The telemetry store, except that a write holding a reading of `site` is throttled (as
    DynamoDB answers at its limit) while `throttling` is true."""

    def __init__(self, real: TelemetryStore, site: str) -> None:
        self.real, self.site, self.throttling, self.writes = real, site, True, 0

    def write(self, readings: Sequence[Reading]) -> WriteOutcome:
        self.writes += 1
        if self.throttling and any(r.site_id == self.site for r in readings):
            error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}
            raise ClientError(error, "PutItem")  # type: ignore[arg-type]
        return self.real.write(readings)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.fixture
def function(monkeypatch: pytest.MonkeyPatch, stack: object) -> Any:
    module = load_function("functions/telemetry/")
    module.stores.cache_clear()
    module.dead_letters.cache_clear()
    return module


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch, function: Any) -> ListPublisher:
    real = function.stores()
    fake = ListPublisher()
    monkeypatch.setattr(function, "stores", lambda: replace(real, events=fake))
    return fake


def record(message_id: str, body: Any, receive_count: int = 1) -> dict[str, Any]:
    text = body if isinstance(body, str) else json.dumps(body)
    return {
        "messageId": message_id, "receiptHandle": f"handle-{message_id}", "body": text,
        "attributes": {"ApproximateReceiveCount": str(receive_count)}, "messageAttributes": {},
        "md5OfBody": hashlib.md5(text.encode()).hexdigest(), "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ems-dev-telemetry", "awsRegion": "us-east-1",
    }  # fmt: skip


def message(site: str, device: str, readings: list[tuple[str, int, float]]) -> dict[str, Any]:
    """What the topic rule selects from a device's batch message: (sensor, ts ms, power_w) each."""
    return {
        "readings": [{"sensor_id": s, "ts": ts, "metrics": {"power_w": v}} for s, ts, v in readings],
        "site": site, "device_id": device, "received_ms": int(time.time() * 1000),
    }  # fmt: skip


def deliver(api: InProcessApi, function: Any, records: list[dict[str, Any]]) -> list[str]:
    """The batch through the template's ingest function and its handler; the failed message ids."""
    fn = api.functions["TelemetryIngestFunction"]
    assert fn["Handler"] == "app.sqs_handler"
    handler = getattr(function, fn["Handler"].split(".")[1])
    answer = handler({"Records": records}, LambdaContext(fn["FunctionName"], 1024, 29.0))
    return [failure["itemIdentifier"] for failure in answer["batchItemFailures"]]


def dead_letters(stack: Any) -> list[tuple[str, str, str]]:
    """(body, reason, source message id) of everything in the telemetry dead-letter queue."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    found = []
    while True:
        answer = sqs.receive_message(
            QueueUrl=stack.ref("TelemetryDeadLetterQueue"),
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
        )
        if not answer.get("Messages"):
            return found
        for m in answer["Messages"]:
            attributes = m.get("MessageAttributes", {})
            found.append(
                (
                    m["Body"],
                    attributes["reason"]["StringValue"],
                    attributes["source_message_id"]["StringValue"],
                )
            )
            sqs.delete_message(
                QueueUrl=stack.ref("TelemetryDeadLetterQueue"), ReceiptHandle=m["ReceiptHandle"]
            )


def rollups(api: InProcessApi, token: str, site: str, sensors: list[str], start_ms: int) -> dict[str, Any]:
    """(count, sum) of every bucket of `sensors` at every resolution, and the raw count."""
    out: dict[str, Any] = {}
    for resolution in ("raw", *RESOLUTIONS):
        body = {"sensor_ids": sensors, "metric": "power_w", "start_time": start_ms // 1000 - 86_400,
                "end_time": int(time.time()) + 60, "resolution": resolution, "aggregate": "sum", "group_by": "sensor"}  # fmt: skip
        answer = api.request("POST", "/api/v1/data/query", token=token, body=body, headers={"x-site": site})
        assert answer.status == 200, answer.json
        out[resolution] = {
            s["key"]: [(p["ts"], p["count"], p["value"]) for p in s["points"]] for s in answer.json["series"]
        }
    return out


def counts(table: dict[str, Any], resolution: str) -> dict[str, int]:
    return {sensor: sum(p[1] for p in points) for sensor, points in table[resolution].items()}


def test_a_poison_and_a_throttled_site_mid_batch_retry_only_that_site_and_store_nothing_twice(
    sites: InProcessApi, admin_token: str, function: Any, stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    t0 = (int(time.time()) - 3600) * 1000
    real = function.stores()
    throttled = ThrottledSite(real.telemetry, "annex")
    monkeypatch.setattr(function, "stores", lambda: replace(real, telemetry=throttled))
    batch = [
        record("hq-1", message("hq", "dev-a", [("A1", t0, 100.0), ("A2", t0, 7.5)])),
        record("poison-1", "{not json"),
        record("annex-1", message("annex", "dev-b", [("B1", t0, 40.0), ("B1", t0 + 60_000, 60.0)])),
        record("hq-2", message("hq", "dev-c", [("C1", t0 + 1000, 3.0), ("A1", t0 + 2000, 1.0)])),
        record("nowhere-1", message("nowhere", "dev-x", [("X1", t0, 1.0)])),
    ]

    assert deliver(sites, function, batch) == ["annex-1"]

    letters = sorted(dead_letters(stack), key=lambda x: x[2])
    assert [(reason, source) for _, reason, source in letters] == [
        ("no site 'nowhere'", "nowhere-1"),
        ("the message is not JSON", "poison-1"),
    ]
    assert letters[1][0] == "{not json"  # the message as it came
    hq = rollups(sites, admin_token, "hq", ["A1", "A2", "C1"], t0)
    # hq-2 sent A1 from dev-c, which A1 is not bound to: that reading is refused (logged), C1 stored.
    assert counts(hq, "raw") == {"A1": 1, "A2": 1, "C1": 1}
    annex = rollups(sites, admin_token, "annex", ["B1"], t0)
    assert counts(annex, "raw") == {"B1": 0}  # nothing of the throttled site yet

    # The queue delivers the failed record again, with the rest of the next batch; storage is back.
    throttled.throttling = False
    again = [
        {**record("annex-1", json.loads(batch[2]["body"]), receive_count=2)},
        record(
            "hq-3", message("hq", "dev-a", [("A1", t0, 100.0), ("A2", t0 + 5000, 2.5)])
        ),  # A1 repeats hq-1
    ]
    assert deliver(sites, function, again) == []
    assert dead_letters(stack) == []
    annex = rollups(sites, admin_token, "annex", ["B1"], t0)
    for resolution in ("raw", *RESOLUTIONS):
        assert counts(annex, resolution) == {"B1": 2}, resolution
    assert sum(p[2] for p in annex["1d"]["B1"]) == pytest.approx(100.0)
    hq = rollups(sites, admin_token, "hq", ["A1", "A2", "C1"], t0)
    for resolution in ("raw", *RESOLUTIONS):
        assert counts(hq, resolution) == {"A1": 1, "A2": 2, "C1": 1}, resolution  # A1 at t0 once


def test_a_batch_delivered_twice_changes_no_rollup(
    sites: InProcessApi, admin_token: str, function: Any
) -> None:
    t0 = (int(time.time()) - 7200) * 1000
    batch = [
        record("m1", message("hq", "dev-a", [("A1", t0 + i * 60_000, float(i)) for i in range(30)])),
        record(
            "m2", message("hq", "dev-a", [("A2", t0, 5.0), ("A1", t0, 0.0)])
        ),  # A1 at t0 twice in the batch
        record("m3", message("annex", "dev-b", [("B1", t0 + i * 900_000, 10.0) for i in range(4)])),
    ]
    assert deliver(sites, function, batch) == []
    once = (
        rollups(sites, admin_token, "hq", ["A1", "A2"], t0),
        rollups(sites, admin_token, "annex", ["B1"], t0),
    )
    assert counts(once[0], "1d") == {"A1": 30, "A2": 1}
    assert sum(p[2] for p in once[0]["1d"]["A1"]) == pytest.approx(sum(range(30)))  # 435
    assert counts(once[1], "15m") == {"B1": 4}

    assert deliver(sites, function, batch) == []  # at-least-once: SQS may deliver it whole again
    twice = (
        rollups(sites, admin_token, "hq", ["A1", "A2"], t0),
        rollups(sites, admin_token, "annex", ["B1"], t0),
    )
    assert twice == once


def test_one_telemetry_received_per_site_and_batch(
    sites: InProcessApi, function: Any, published: ListPublisher
) -> None:
    t0 = (int(time.time()) - 600) * 1000
    batch = [
        record("m1", message("hq", "dev-a", [("A1", t0, 1.0)])),
        record("m2", message("annex", "dev-b", [("B1", t0, 2.0)])),
        record("m3", message("hq", "dev-c", [("C1", t0, 3.0)])),
        record("m4", message("hq", "dev-a", [("A2", t0, 4.0)])),
    ]
    assert deliver(sites, function, batch) == []
    by_site = {
        e.detail["site"]: sorted(r["sensor_id"] for r in e.detail["readings"]) for e in published.events
    }
    assert len(published.events) == 2
    assert by_site == {"hq": ["A1", "A2", "C1"], "annex": ["B1"]}


def test_a_poison_message_stays_in_the_queue_when_the_dead_letter_queue_is_unreachable(
    sites: InProcessApi, function: Any, stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ems.core import settings

    monkeypatch.setenv("TELEMETRY_DEAD_LETTER_QUEUE_URL", stack.queue_url("no-such-queue"))
    settings.settings.cache_clear()
    t0 = (int(time.time()) - 600) * 1000
    batch = [
        record("bad", json.dumps({"site": "hq"})),
        record("good", message("hq", "dev-a", [("A1", t0, 1.0)])),
    ]
    assert deliver(sites, function, batch) == ["bad"]  # nothing is dropped silently


def test_the_sample_event_of_the_queue(
    sites: InProcessApi, admin_token: str, function: Any, stack: Any
) -> None:
    """events/sqs/telemetry-batch.json (its messages' ts moved to now: the store refuses old readings)."""
    event = json.loads((EVENTS / "sqs" / "telemetry-batch.json").read_text())
    site = {"site_id": "default", "name": "Default"}
    assert sites.request("POST", "/api/v1/sites", token=admin_token, body=site).status == 201
    for sensor, device in (
        ("TEMP_001", "env-conference-a"),
        ("HUM_001", "env-conference-a"),
        ("MAIN_METER", "main-meter"),
    ):
        body = {"sensor_id": sensor, "name": sensor, "sensor_type": "meter", "device_id": device}
        assert (
            sites.request(
                "POST", "/api/v1/sensors", token=admin_token, body=body, headers={"x-site": "default"}
            ).status
            == 201
        )
    ts = (int(time.time()) - 60) * 1000
    for r in event["Records"]:
        body = json.loads(r["body"])
        if isinstance(body, dict):
            r["body"] = json.dumps({**body, "ts": ts})
    assert deliver(sites, function, event["Records"]) == []
    ((_, reason, source),) = dead_letters(stack)
    assert (reason, source) == ("the message is not a JSON object", event["Records"][2]["messageId"])
    status = sites.request(
        "GET", "/api/v1/sensors/MAIN_METER", token=admin_token, headers={"x-site": "default"}
    )
    assert status.json["last_reading"]["metrics"] == {"power_w": 5230.0, "energy_wh": 812345.0}
