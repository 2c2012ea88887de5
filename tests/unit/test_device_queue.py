"""The pure parts of the telemetry queue: a record's poison detection and the grouping by site
(ems.telemetry.device_queue); the local poller's event and what it deletes (ems_local.event_sources);
the template's topic rule and mapping as the local cloud reads them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ems.telemetry.device_queue import DeviceMessage, Poison, by_site, parse_record
from ems_local.event_sources import SqsMapping, sqs_event, sqs_mappings, to_delete
from ems_local.iot_core import TopicRule, TopicRuleEngine, topic_rules
from ems_local.iotsql import parse
from ems_local.template import Stack


def record(body: Any, message_id: str = "m1") -> dict[str, Any]:
    return {"messageId": message_id, "body": body if isinstance(body, str) else json.dumps(body)}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{not json", "the message is not JSON"),
        ("[1, 2]", "the message is not a JSON object"),
        (
            {"device_id": "d1", "sensor_id": "S1", "ts": 1, "value": 2},
            "the topic's site None is not a site id",
        ),
        (
            {"site": "hq", "device_id": "no/slash", "readings": []},
            "the topic's device 'no/slash' is not a device id",
        ),
        ({"site": "hq", "device_id": "d1", "readings": {}}, "readings must be a list"),
        (
            {"site": "hq", "device_id": "d1", "readings": [], "extra": 1},
            "unknown field 'extra' in a message of readings",
        ),
        (
            {"site": "hq", "device_id": "d1", "readings": [{}] * 1001},
            "at most 1000 readings per message, got 1001",
        ),
    ],
)
def test_a_record_that_can_never_be_ingested_is_poison_with_its_reason(body: Any, reason: str) -> None:
    parsed = parse_record(record(body))
    assert isinstance(parsed, Poison)
    assert (parsed.message_id, parsed.reason) == ("m1", reason)
    assert parsed.body == (body if isinstance(body, str) else json.dumps(body))


def test_a_record_without_a_body_is_poison() -> None:
    assert parse_record({"messageId": "m9"}) == Poison("m9", "null", "the record has no body")


def test_a_record_with_bad_readings_is_not_poison_its_readings_are_rejected_one_by_one() -> None:
    body = {"site": "hq", "device_id": "d1", "ts": 1700000000000, "readings": [{"sensor_id": "S1"}, "junk"]}
    parsed = parse_record(record(body))
    assert parsed == DeviceMessage(
        "m1", "hq", "d1", [{"sensor_id": "S1", "ts": 1700000000000}, "junk"], json.dumps(body)
    )


def test_the_single_form_is_one_reading_without_the_rules_fields() -> None:
    body = {"sensor_id": "S1", "ts": 5, "value": 2, "site": "hq", "device_id": "d1", "received_ms": 9}
    parsed = parse_record(record(body))
    assert isinstance(parsed, DeviceMessage)
    assert parsed.readings == [{"sensor_id": "S1", "ts": 5, "value": 2}]


def test_messages_are_grouped_by_site_in_arrival_order() -> None:
    messages = [DeviceMessage(f"m{i}", site, "d", [], "") for i, site in enumerate(["b", "a", "b", "c", "a"])]
    groups = by_site(messages)
    assert list(groups) == ["b", "a", "c"]
    assert {site: [m.message_id for m in group] for site, group in groups.items()} == {
        "b": ["m0", "m2"], "a": ["m1", "m4"], "c": ["m3"]
    }  # fmt: skip


# ---------------------------------------------------------------- the local poller

MAPPING = SqsMapping("FnQueue", "Fn", "https://sqs/q", "arn:aws:sqs:us-east-1:123456789012:q", 10, 0, True)
RECEIVED = [
    {"MessageId": f"id{i}", "ReceiptHandle": f"rh{i}", "Body": f'{{"n": {i}}}', "MD5OfBody": "x",
     "Attributes": {"ApproximateReceiveCount": "1"}}
    for i in range(3)
]  # fmt: skip


def test_the_event_has_lambdas_sqs_record_shape() -> None:
    (first, *_) = sqs_event(RECEIVED, MAPPING, "us-east-1")["Records"]
    assert first == {
        "messageId": "id0", "receiptHandle": "rh0", "body": '{"n": 0}',
        "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}, "md5OfBody": "x",
        "eventSource": "aws:sqs", "eventSourceARN": MAPPING.queue_arn, "awsRegion": "us-east-1",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("result", "deleted"),
    [
        ({"batchItemFailures": []}, ["id0", "id1", "id2"]),
        (None, ["id0", "id1", "id2"]),
        ({"batchItemFailures": [{"itemIdentifier": "id1"}]}, ["id0", "id2"]),
        ({"batchItemFailures": [{"itemIdentifier": "id0"}, {"itemIdentifier": "id2"}]}, ["id1"]),
        ({"batchItemFailures": [{"itemIdentifier": "elsewhere"}]}, []),  # Lambda fails the whole batch
        ({"batchItemFailures": [{"itemIdentifier": None}]}, []),
        ({"batchItemFailures": "id1"}, []),
    ],
)
def test_a_successful_batch_deletes_all_but_its_reported_failures(result: Any, deleted: list[str]) -> None:
    assert [m["MessageId"] for m in to_delete(RECEIVED, result, True)] == deleted


def test_without_report_batch_item_failures_a_success_deletes_the_whole_batch() -> None:
    result = {"batchItemFailures": [{"itemIdentifier": "id1"}]}
    assert len(to_delete(RECEIVED, result, False)) == 3


# ---------------------------------------------------------------- the template, as the local cloud reads it


def test_the_template_maps_the_telemetry_queue_to_the_ingest_function_with_its_parameters() -> None:
    stack = Stack.from_file(TelemetryBatchSize=50, TelemetryBatchingWindowSeconds=2)
    (mapping,) = sqs_mappings(stack)
    assert mapping == SqsMapping(
        name="TelemetryIngestFunctionDeviceTelemetry", function="TelemetryIngestFunction",
        queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/ems-dev-telemetry",
        queue_arn="arn:aws:sqs:us-east-1:123456789012:ems-dev-telemetry", batch_size=50, window_seconds=2.0,
        report_failures=True,
    )  # fmt: skip
    env = stack.functions()["TelemetryIngestFunction"]["Environment"]["Variables"]
    assert env["TELEMETRY_DEAD_LETTER_QUEUE_URL"].endswith("/123456789012/ems-dev-telemetry-dlq")


def test_the_telemetry_rule_sends_the_selected_json_to_the_queue() -> None:
    stack = Stack.from_file()
    (rule,) = [r for r in topic_rules(stack) if r.queues]
    assert (rule.name, rule.functions) == ("ems_dev_telemetry", ())
    sent: list[tuple[str, str]] = []
    engine = TopicRuleEngine([rule], lambda *a: None, lambda url, body: sent.append((url, body)))
    assert (
        engine.on_message("ems/hq/devices/d1/telemetry", b'{"sensor_id":"S1","ts":1,"value":2}', "c", 77) == 1
    )
    ((url, body),) = sent
    assert url == stack.ref("TelemetryQueue")
    assert json.loads(body) == {"sensor_id": "S1", "ts": 1, "value": 2, "site": "hq", "device_id": "d1",
                                "received_ms": 77}  # fmt: skip


def test_a_send_that_fails_goes_to_the_error_action_with_the_original_payload() -> None:
    rule = TopicRule("r", parse("SELECT * FROM 'a/#'"), (), ("https://sqs/main",), "https://sqs/dlq")
    sent: list[tuple[str, str]] = []

    def send(url: str, body: str) -> None:
        if url == "https://sqs/main":
            raise ConnectionError("queue away")
        sent.append((url, body))

    engine = TopicRuleEngine([rule], lambda *a: None, send)
    assert engine.on_message("a/b", b'{"x": 1}', "client-1", 5) == 1
    ((url, body),) = sent
    error = json.loads(body)
    assert url == "https://sqs/dlq"
    assert (error["ruleName"], error["topic"], error["clientId"], error["base64OriginalPayload"]) == (
        "r", "a/b", "client-1", "eyJ4IjogMX0="
    )  # fmt: skip
    assert error["failures"][0]["failedResource"] == "https://sqs/main"
