"""The live path against moto: the IoT rule's events (events/iot) through TelemetryIngestFunction,
sensor status on the registry's routes, the TelemetryReceived event it emits, and that event
(events/eventbridge) through RealtimeFunction to WebSocket subscribers (a fake @connections poster).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import pytest

from ems.core.events import PublishOutcome
from ems.realtime.models import ConnectionGone
from ems_local.lambda_context import LambdaContext
from tests.integration.test_realtime import connect, mint, send
from tests.support.fakes import ListPublisher
from tests.support.inprocess import EVENTS, InProcessApi, load_function
from tests.support.tokens import issue

SITE = "default"  # the deployment's default site, as the WebSocket samples assume
ROOM = "Conference Room A"


def iot_event(name: str, ts_ms: int | None = None) -> dict[str, Any]:
    """events/iot/<name>.json with its message's ts moved to `ts_ms` (the store refuses readings older
    than its retention, so the committed time would age out)."""
    event = json.loads((EVENTS / "iot" / f"{name}.json").read_text())
    if ts_ms is not None:
        event["ts"] = ts_ms
    return event


def now_ms() -> int:
    return int(time.time()) * 1000


class FakePoster:
    def __init__(self, gone: set[str] | None = None) -> None:
        self.posts: list[tuple[str, Any]] = []
        self.gone = gone or set()

    def post(self, connection_id: str, data: bytes) -> None:
        if connection_id in self.gone:
            raise ConnectionGone(connection_id)
        self.posts.append((connection_id, json.loads(data)))


@pytest.fixture
def site(api: InProcessApi, admin_token: str) -> InProcessApi:
    """The default site: a room with a temperature and a humidity sensor of one device, a main meter."""
    assert (
        api.request("POST", "/api/v1/sites", token=admin_token, body={"site_id": SITE, "name": "HQ"}).status
        == 201
    )
    assert api.request("POST", "/api/v1/rooms", token=admin_token, body={"name": ROOM}).status == 201
    for body in (
        {"sensor_id": "TEMP_001", "name": "T", "sensor_type": "temperature", "room": ROOM, "device_id": "env-conference-a",
         "expected_interval_seconds": 60},
        {"sensor_id": "HUM_001", "name": "H", "sensor_type": "humidity", "room": ROOM, "device_id": "env-conference-a"},
        {"sensor_id": "MAIN_METER", "name": "Meter", "sensor_type": "meter", "device_id": "main-meter"},
    ):  # fmt: skip
        created = api.request("POST", "/api/v1/sensors", token=admin_token, body=body)
        assert created.status == 201, created.json
    return api


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch, stack: object) -> ListPublisher:
    """The telemetry functions' event publisher, replaced by a list."""
    module = load_function("functions/telemetry/")
    module.stores.cache_clear()
    real = module.stores()
    fake = ListPublisher()
    monkeypatch.setattr(module, "stores", lambda: replace(real, events=fake))
    return fake


def ingest(api: InProcessApi, event: dict[str, Any]) -> dict[str, Any]:
    """The IoT rule's event through `iot_handler`, the handler of a template whose rule invokes the
    function directly (the project's template sends to the queue: tests/integration/test_telemetry_queue.py)."""
    fn = api.functions["TelemetryIngestFunction"]
    context = LambdaContext(fn["FunctionName"], int(fn["MemorySize"]), float(fn["Timeout"]))
    return load_function(fn["CodeUri"]).iot_handler(event, context)  # type: ignore[no-any-return]


def test_the_template_routes_the_telemetry_topic_to_the_telemetry_queue(stack: Any) -> None:
    from ems_local.iot_core import topic_rules

    (rule,) = [r for r in topic_rules(stack) if stack.ref("TelemetryQueue") in r.queues]
    assert rule.functions == ()
    assert rule.error_queue == stack.ref("TelemetryDeadLetterQueue")
    selected = rule.rule.apply(
        "ems/hq/devices/dev-1/telemetry", b'{"sensor_id":"S1","ts":1,"value":2}', "client", 1234
    )
    assert selected == {
        "sensor_id": "S1",
        "ts": 1,
        "value": 2,
        "site": "hq",
        "device_id": "dev-1",
        "received_ms": 1234,
    }
    assert rule.rule.apply("ems/hq/devices/dev-1/commands", b"{}", "client", 1) is None


def test_batch_form_is_stored_and_shows_in_status_and_data(
    site: InProcessApi, admin_token: str, published: ListPublisher
) -> None:
    ts = now_ms() - 60_000
    result = ingest(site, iot_event("telemetry-batch", ts))
    assert result == {"accepted": 2, "duplicates": 0, "rejected": []}

    sensor = site.request("GET", "/api/v1/sensors/TEMP_001", token=admin_token).json
    assert sensor["status"] == "online"
    assert sensor["last_reading"]["metrics"] == {"temperature_c": 21.5}
    assert sensor["last_seen"] == sensor["last_reading"]["ts"]
    data = site.request(
        "GET", "/api/v1/sensors/TEMP_001/data", token=admin_token,
        query={"metric": "temperature_c", "start_time": ts // 1000 - 60, "end_time": ts // 1000 + 60},
    )  # fmt: skip
    assert data.status == 200, data.json
    assert [(p["value"], p["count"]) for p in data.json["points"]] == [(21.5, 1)]

    (event,) = published.events
    assert (event.source, event.detail_type) == ("ems.telemetry", "TelemetryReceived")
    assert event.detail == {
        "site": SITE,
        "readings": [
            {"sensor_id": "HUM_001", "room": ROOM, "sensor_type": "humidity", "ts": ts, "metrics": {"humidity_pct": 41.0}},
            {"sensor_id": "TEMP_001", "room": ROOM, "sensor_type": "temperature", "ts": ts, "metrics": {"temperature_c": 21.5}},
        ],
    }  # fmt: skip

    # The same message again (IoT's at-least-once, a Lambda retry): counted once, no second event.
    assert ingest(site, iot_event("telemetry-batch", ts)) == {"accepted": 2, "duplicates": 2, "rejected": []}
    assert len(published.events) == 1


def test_single_form_and_status_filter(
    site: InProcessApi, admin_token: str, published: ListPublisher
) -> None:
    assert ingest(site, iot_event("telemetry-single", now_ms() - 1000)) == {
        "accepted": 1, "duplicates": 0, "rejected": [],
    }  # fmt: skip
    (event,) = published.events
    assert event.detail["readings"][0]["metrics"] == {"value": 5321.5}

    # TEMP_001 reported 4 expected intervals (60 s) ago: offline; HUM_001 never: unknown.
    ingest(site, iot_event("telemetry-batch", now_ms() - 4 * 60_000))
    listed = site.request("GET", "/api/v1/sensors", token=admin_token).json["items"]
    assert {s["sensor_id"]: s["status"] for s in listed} == {
        "MAIN_METER": "online", "TEMP_001": "offline", "HUM_001": "online",  # HUM_001: default 300 s
    }  # fmt: skip
    online = site.request("GET", "/api/v1/sensors", token=admin_token, query={"status": "online"}).json
    assert sorted(s["sensor_id"] for s in online["items"]) == ["HUM_001", "MAIN_METER"]
    bad = site.request("GET", "/api/v1/sensors", token=admin_token, query={"status": "asleep"})
    assert bad.status == 422 and bad.json["error"]["field"] == "status"


def test_status_moves_only_forward_in_time(
    site: InProcessApi, admin_token: str, published: ListPublisher
) -> None:
    newer, older = now_ms() - 10_000, now_ms() - 20_000
    ingest(site, iot_event("telemetry-batch", newer))
    late = iot_event("telemetry-batch", older)
    late["readings"][0]["metrics"]["temperature_c"] = 5.0
    assert ingest(site, late)["accepted"] == 2  # stored, as a late reading is
    sensor = site.request("GET", "/api/v1/sensors/TEMP_001", token=admin_token).json
    assert sensor["last_reading"]["metrics"] == {"temperature_c": 21.5}


def test_a_poison_message_is_rejected_whole_and_blocks_nothing(
    site: InProcessApi, published: ListPublisher, caplog: pytest.LogCaptureFixture
) -> None:
    assert ingest(site, iot_event("telemetry-poison", now_ms())) == {
        "accepted": 0, "duplicates": 0, "rejected": [{"index": -1, "reason": "readings must be a list"}],
    }  # fmt: skip
    assert [r.message for r in caplog.records if r.levelname == "WARNING"] == ["ingest: message rejected"]
    unknown_site = {**iot_event("telemetry-batch", now_ms()), "site": "nowhere"}
    assert ingest(site, unknown_site)["rejected"] == [{"index": -1, "reason": "no site 'nowhere'"}]
    assert ingest(site, "not an object")["rejected"][0]["index"] == -1  # type: ignore[arg-type]
    # The next good message goes through.
    assert ingest(site, iot_event("telemetry-batch", now_ms()))["accepted"] == 2
    assert len(published.events) == 1


def test_each_bad_reading_is_rejected_with_its_reason(site: InProcessApi, published: ListPublisher) -> None:
    result = ingest(site, iot_event("telemetry-mixed", now_ms()))
    assert result["accepted"] == 1
    assert result["rejected"] == [
        {"index": 1, "reason": "unknown sensor 'NOPE_404' in site 'default'"},
        {"index": 2, "reason": "sensor 'MAIN_METER' belongs to device 'main-meter', not 'env-conference-a'"},
        {"index": 3, "reason": "humidity_pct must be a number"},
        {"index": 4, "reason": "a reading must be an object"},
        {"index": 5, "reason": "humidity_pct must be within 0..100"},
    ]
    (event,) = published.events
    assert [r["sensor_id"] for r in event.detail["readings"]] == ["TEMP_001"]


def test_http_ingest_emits_the_event_too(
    site: InProcessApi, admin_token: str, published: ListPublisher
) -> None:
    ts_s = int(time.time()) - 30
    reply = site.request(
        "POST", "/api/v1/data/ingest", token=admin_token,
        body={"readings": [{"sensor_id": "MAIN_METER", "ts": ts_s, "metrics": {"power_w": 1500}}]},
    )  # fmt: skip
    assert reply.status == 200, reply.json
    (event,) = published.events
    assert event.detail["readings"] == [
        {"sensor_id": "MAIN_METER", "room": None, "sensor_type": "meter", "ts": ts_s * 1000, "metrics": {"power_w": 1500.0}}
    ]  # fmt: skip


def test_ingest_publishes_on_the_templates_bus(site: InProcessApi) -> None:
    """The real publisher against moto's EventBridge: the bus exists and PutEvents takes the event."""
    from ems.core.events import EventBridgePublisher
    from ems.telemetry import service
    from ems.telemetry.models import Reading

    reading = Reading(SITE, "MAIN_METER", "power_w", now_ms(), 10.0)
    events = service.telemetry_received(SITE, [reading], {})
    assert EventBridgePublisher().publish(events) == PublishOutcome(sent=1, failed=0)


# ---------------------------------------------------------------- fan-out


@pytest.fixture
def poster(monkeypatch: pytest.MonkeyPatch, stack: object) -> FakePoster:
    fake = FakePoster()
    monkeypatch.setattr(load_function("functions/realtime/"), "poster", fake)
    return fake


def received_event() -> dict[str, Any]:
    return json.loads((EVENTS / "eventbridge" / "telemetry-received.json").read_text())


def test_telemetry_received_reaches_sensor_room_and_site_subscribers(
    site: InProcessApi, admin_token: str, poster: FakePoster
) -> None:
    assert connect(site, admin_token)["statusCode"] == 200
    reply = send(
        site, "subscribe", {"action": "subscribe", "topics": ["sensors/TEMP_001", f"rooms/{ROOM}", "site"]}
    )
    assert reply["data"]["refused"] == []

    result = site.invoke("RealtimeFunction", received_event())
    assert result == {"connections": 1, "posts": 1, "failed": 0}
    ((connection_id, batch),) = poster.posts  # one post: the three messages as one JSON array
    assert connection_id == "ZmmEscGcIAMCJWg="
    by_topic = {m["topic"]: (m["type"], m["data"]) for m in batch}
    assert by_topic == {
        "sensors/TEMP_001": ("reading", {"sensor_id": "TEMP_001", "room": ROOM, "ts": "2026-11-23T09:30:00.000Z",
                                         "metrics": {"temperature_c": 21.5}}),
        f"rooms/{ROOM}": ("room", {"room": ROOM, "ts": "2026-11-23T09:30:00.000Z",
                                   "metrics": {"temperature_c": 22.0}, "sensors": 2}),  # the mean of 21.5 and 22.5
        "site": ("power", {"ts": "2026-11-23T09:30:00.000Z", "power_w": 5321.5, "meters": {"MAIN_METER": 5321.5}}),
    }  # fmt: skip


def test_an_event_over_256_kb_is_split_and_every_reading_is_pushed_once(
    site: InProcessApi, admin_token: str, published: ListPublisher, poster: FakePoster
) -> None:
    """1,000 readings of 20 metrics each in one request: their TelemetryReceived is over 256 KB, so it goes
    as several events, each within EventBridge's limit; a `sensors/*` subscriber gets each reading once."""
    assert connect(site, admin_token)["statusCode"] == 200
    assert send(site, "subscribe", {"action": "subscribe", "topics": ["sensors/*"]})["data"]["refused"] == []
    start_ms = (now_ms() - 3_600_000) // 1000 * 1000
    body = {"readings": [{"sensor_id": "MAIN_METER", "ts": start_ms + n * 1000,
                          "metrics": {f"m{k:02d}_w": n + k / 100 for k in range(20)}} for n in range(1000)]}  # fmt: skip
    reply = site.request("POST", "/api/v1/data/ingest", token=admin_token, body=body)
    assert reply.status == 200 and reply.json["accepted"] == 1000, reply.json
    details = [e.detail for e in published.events]
    sizes = [len(json.dumps(d, separators=(",", ":")).encode()) for d in details]  # as PutEvents sends them
    assert len(details) > 1 and max(sizes) <= 256 * 1024 < sum(sizes)  # as one, it would not fit
    assert sum(len(d["readings"]) for d in details) == 1000
    for detail in details:  # each as EventBridge delivers it to the realtime function
        site.invoke("RealtimeFunction", {**received_event(), "detail": detail})
    pushed = [m["data"] for _, batch in poster.posts for m in (batch if isinstance(batch, list) else [batch])
              if m["topic"] == "sensors/MAIN_METER"]  # fmt: skip
    assert len(pushed) == 1000
    assert sorted(p["ts"] for p in pushed) == sorted({p["ts"] for p in pushed})  # none twice
    assert all(len(p["metrics"]) == 20 for p in pushed)


def test_a_room_limited_token_gets_the_room_not_the_sensor(
    site: InProcessApi, admin_token: str, poster: FakePoster
) -> None:
    token = mint(site, admin_token, ["sensors", "rooms"], sites=[SITE], data_aggregation="room")
    assert connect(site, token)["statusCode"] == 200
    reply = send(site, "subscribe", {"action": "subscribe", "topics": ["sensors/*", f"rooms/{ROOM}"]})
    assert reply["data"]["accepted"] == [f"rooms/{ROOM}"]
    site.invoke("RealtimeFunction", received_event())
    ((_, message),) = poster.posts
    assert message["topic"] == f"rooms/{ROOM}"


def test_a_gone_connection_is_removed_and_fan_out_goes_on(
    site: InProcessApi, admin_token: str, poster: FakePoster
) -> None:
    from ems.realtime.store import ConnectionRecord

    assert connect(site, admin_token)["statusCode"] == 200
    send(site, "subscribe", {"action": "subscribe", "topics": ["sensors/TEMP_001"]})
    poster.gone.add("ZmmEscGcIAMCJWg=")
    assert site.invoke("RealtimeFunction", received_event())["failed"] == 0
    assert ConnectionRecord.count() == 0


@pytest.mark.parametrize(
    ("limits", "sees_values"),
    [
        ({}, True),
        ({"data_aggregation": "site"}, False),  # no single sensor's value
        ({"data_aggregation": "room"}, False),
        ({"time_aggregation": "15m"}, False),  # a raw reading is finer than 15 minutes
        ({"embargo_minutes": 60}, False),  # the reading is 2 minutes old
        ({"embargo_minutes": 1}, True),  # ... and older than a 1-minute embargo
    ],
)
def test_a_sensors_newest_reading_honours_the_tokens_limits(
    site: InProcessApi, published: ListPublisher, limits: dict[str, Any], sees_values: bool
) -> None:
    """GET /sensors/{id} and GET /sensors show the newest reading's values only to a token that may see
    one sensor's raw reading of that time; status and last_seen are the sensor's own and stay."""
    ts = now_ms() - 120_000
    ingest(site, iot_event("telemetry-batch", ts))
    token = issue(["sensors"], [SITE], **limits)
    one = site.request("GET", "/api/v1/sensors/TEMP_001", token=token).json
    listed = {s["sensor_id"]: s for s in site.request("GET", "/api/v1/sensors", token=token).json["items"]}
    for sensor in (one, listed["TEMP_001"]):
        assert sensor["status"] == "online" and sensor["last_seen"] is not None
        if sees_values:
            assert sensor["last_reading"]["metrics"] == {"temperature_c": 21.5}
        else:
            assert sensor["last_reading"] is None
