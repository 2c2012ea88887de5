"""The local cloud's EventBridge on its own: entries checked as AWS checks them, envelopes, the
template's rules, what a target receives, and PutEvents answering without waiting for a function."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ems_local.eventbridge import (
    MAX_REQUEST_BYTES,
    ApiError,
    EventBridgeApi,
    Rule,
    buses_from,
    entry_error,
    entry_size,
    envelope,
    json_path,
    rules_from,
    target_input,
)
from ems_local.template import Stack

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Resources:
  DomainBus:
    Type: AWS::Events::EventBus
    Properties:
      Name: ems-domain
  AlertsFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/alerts
      Handler: app.handler
      Events:
        Raised:
          Type: EventBridgeRule
          Properties:
            EventBusName: !Ref DomainBus
            Pattern:
              source: [ems.alerts]
              detail: {severity: [{anything-but: [info]}]}
        Legacy:
          Type: CloudWatchEvent
          Properties:
            Pattern: {source: [ems.legacy]}
            InputPath: $.detail
        Paused:
          Type: EventBridgeRule
          Properties:
            State: DISABLED
            Pattern: {source: [ems.off]}
        Broken:
          Type: EventBridgeRule
          Properties:
            Pattern: {source: ems.not-a-list}
        Nightly:
          Type: Schedule
          Properties:
            Schedule: cron(0 2 * * ? *)
  MarketFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/market
  ClearedRule:
    Type: AWS::Events::Rule
    Properties:
      Name: market-cleared
      EventBusName: !GetAtt DomainBus.Arn
      EventPattern: {source: [ems.market], detail-type: [Market Cleared]}
      Targets:
        - Id: market
          Arn: !GetAtt MarketFunction.Arn
          InputTransformer:
            InputPathsMap: {slot: $.detail.slot, price: $.detail.price_eur}
            InputTemplate: '{"slot": "<slot>", "price": <price>, "note": "cleared <slot>", "rule": "<aws.events.rule-name>"}'
        - Id: elsewhere
          Arn: arn:aws:sqs:us-east-1:123456789012:queue
"""


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    return Stack.from_file(tmp_path / "template.yaml")


def entry(**fields: Any) -> dict[str, Any]:
    return {"Source": "ems.alerts", "DetailType": "Alert Raised", "Detail": '{"severity": "high"}', **fields}


class Deliveries:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, str]] = []

    def __call__(self, function: str, event: Any, source: str) -> None:
        self.calls.append((function, event, source))


NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def api(stack: Stack) -> tuple[EventBridgeApi, Deliveries]:
    deliveries = Deliveries()
    return EventBridgeApi(rules_from(stack), buses_from(stack), deliveries, now=lambda: NOW), deliveries


# --- the template's rules ------------------------------------------------------------------------


def test_rules_come_from_function_events_and_rule_resources(stack: Stack) -> None:
    rules = {r.name: r for r in rules_from(stack)}
    # Broken is left out (a pattern value must be a list); the SQS target is not a function here.
    assert sorted(rules) == [
        "AlertsFunctionLegacy",
        "AlertsFunctionNightly",
        "AlertsFunctionPaused",
        "AlertsFunctionRaised",
        "market-cleared",
    ]
    raised = rules["AlertsFunctionRaised"]
    assert (raised.bus, raised.function, raised.enabled) == ("ems-domain", "AlertsFunction", True)
    assert raised.arn == "arn:aws:events:us-east-1:123456789012:rule/ems-domain/AlertsFunctionRaised"
    assert rules["AlertsFunctionLegacy"].bus == "default"
    assert rules["AlertsFunctionLegacy"].input_path == "$.detail"
    assert rules["AlertsFunctionPaused"].enabled is False
    assert rules["AlertsFunctionNightly"].schedule_expression == "cron(0 2 * * ? *)"
    assert rules["AlertsFunctionNightly"].pattern is None
    cleared = rules["market-cleared"]
    assert (cleared.bus, cleared.function) == ("ems-domain", "MarketFunction")
    assert buses_from(stack) == {"default", "ems-domain"}


# --- entries -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "code", "message"),
    [
        ({"Source": ""}, "InvalidArgument", "Parameter Source is not valid. Reason: Source is a required argument."),
        ({"DetailType": None}, "InvalidArgument", "Parameter DetailType is not valid. Reason: DetailType is a required argument."),
        ({"Detail": ""}, "InvalidArgument", "Parameter Detail is not valid. Reason: Detail is a required argument."),
        ({"Detail": "{not json"}, "MalformedDetail", "Detail is malformed."),
        ({"Detail": "[1, 2]"}, "MalformedDetail", "Detail is malformed."),
        ({"Source": "aws.ec2"}, "NotAuthorizedForSourceException", "Not authorized for the source."),
    ],
)  # fmt: skip
def test_bad_entries_fail_with_the_code_aws_gives(fields: dict[str, Any], code: str, message: str) -> None:
    assert entry_error(entry(**fields)) == (code, message)


def test_a_good_entry_has_no_error() -> None:
    assert (
        entry_error(entry(Resources=["arn:aws:iot:us-east-1:123456789012:thing/hvac-1"], Time=1700000000))
        is None
    )


def test_entry_size_counts_time_and_the_utf8_bytes_of_each_part() -> None:
    # 14 (Time) + 9 ("ems.tests") + 1 ("X") + 10 ('{"k":"é"}' has é as 2 bytes) + 3 ("arn")
    assert (
        entry_size(
            {"Time": 1, "Source": "ems.tests", "DetailType": "X", "Detail": '{"k":"é"}', "Resources": ["arn"]}
        )
        == 37
    )


def test_envelope_wraps_the_detail_as_eventbridge_delivers_it() -> None:
    event = envelope(entry(Resources=["arn:x"], Time=1700000000), "id-1", NOW, "eu-central-1")
    assert event == {
        "version": "0",
        "id": "id-1",
        "detail-type": "Alert Raised",
        "source": "ems.alerts",
        "account": "123456789012",
        "time": "2023-11-14T22:13:20Z",
        "region": "eu-central-1",
        "resources": ["arn:x"],
        "detail": {"severity": "high"},
    }
    assert envelope(entry(), "id-2", NOW, "us-east-1")["time"] == "2025-03-01T12:00:00Z"


# --- PutEvents -----------------------------------------------------------------------------------


def test_put_events_answers_per_entry_and_delivers_matches_only(
    api: tuple[EventBridgeApi, Deliveries],
) -> None:
    eventbridge, deliveries = api
    answer = eventbridge.put_events(
        {
            "Entries": [
                entry(EventBusName="ems-domain"),  # matches Raised
                entry(EventBusName="ems-domain", Detail='{"severity": "info"}'),  # anything-but info
                entry(Source=""),  # fails
                entry(Source="ems.legacy", Detail='{"a": 1}'),  # default bus: Legacy, InputPath $.detail
                entry(EventBusName="no-such-bus"),  # accepted and dropped, as AWS does
            ]
        }
    )
    assert answer["FailedEntryCount"] == 1
    assert [sorted(e) for e in answer["Entries"]] == [
        ["EventId"],
        ["EventId"],
        ["ErrorCode", "ErrorMessage"],
        ["EventId"],
        ["EventId"],
    ]
    assert answer["Entries"][2]["ErrorCode"] == "InvalidArgument"
    assert [(f, s.rsplit("/", 1)[1]) for f, _, s in deliveries.calls] == [
        ("AlertsFunction", "AlertsFunctionRaised"),
        ("AlertsFunction", "AlertsFunctionLegacy"),
    ]
    raised = deliveries.calls[0][1]
    assert raised["id"] == answer["Entries"][0]["EventId"]
    assert raised["detail"] == {"severity": "high"}
    assert deliveries.calls[1][1] == {"a": 1}


def test_a_disabled_rule_gets_nothing(api: tuple[EventBridgeApi, Deliveries]) -> None:
    eventbridge, deliveries = api
    eventbridge.put_events({"Entries": [entry(Source="ems.off")]})
    assert deliveries.calls == []


@pytest.mark.parametrize("count", [0, 11])
def test_entries_must_number_one_to_ten(api: tuple[EventBridgeApi, Deliveries], count: int) -> None:
    with pytest.raises(ApiError) as refused:
        api[0].put_events({"Entries": [entry()] * count})
    assert refused.value.code == "ValidationException"


def test_a_request_over_256_kb_is_refused_whole(api: tuple[EventBridgeApi, Deliveries]) -> None:
    detail = json.dumps({"blob": "x" * (MAX_REQUEST_BYTES // 2)})
    with pytest.raises(ApiError, match="over the limit"):
        api[0].put_events({"Entries": [entry(Detail=detail), entry(Detail=detail)]})
    assert api[1].calls == []
    assert api[0].put_events({"Entries": [entry(Detail=detail)]})["FailedEntryCount"] == 0


def test_handle_speaks_aws_json_1_1(api: tuple[EventBridgeApi, Deliveries]) -> None:
    eventbridge, deliveries = api
    headers = {"X-Amz-Target": "AWSEvents.PutEvents", "Content-Type": "application/x-amz-json-1.1"}
    body = json.dumps({"Entries": [entry(EventBusName="ems-domain")]}).encode()
    status, out, raw = eventbridge.handle("POST", "/", headers, body)
    assert (status, out["content-type"]) == (200, "application/x-amz-json-1.1")
    assert json.loads(raw)["FailedEntryCount"] == 0
    assert len(deliveries.calls) == 1

    status, out, raw = eventbridge.handle("POST", "/", {"x-amz-target": "AWSEvents.PutRule"}, b"{}")
    assert status == 400
    assert json.loads(raw)["__type"] == out["x-amzn-errortype"] == "UnknownOperationException"
    status, _, raw = eventbridge.handle("POST", "/", headers, b"{nope")
    assert (status, json.loads(raw)["__type"]) == (400, "SerializationException")


# --- what a target receives ----------------------------------------------------------------------

EVENT = {
    "id": "e1",
    "time": "2025-03-01T12:00:00Z",
    "detail": {"slot": "12:00", "price_eur": 0.21, "bids": [{"kwh": 3}]},
}


def test_json_path_reads_keys_and_indexes() -> None:
    assert json_path(EVENT, "$") is EVENT
    assert json_path(EVENT, "$.detail.slot") == "12:00"
    assert json_path(EVENT, "$.detail.bids[0].kwh") == 3
    assert json_path(EVENT, "$.detail.missing.deeper") is None


def test_a_target_gets_the_event_or_its_input_or_input_path() -> None:
    rule = Rule(name="r", function="F")
    assert target_input(rule, EVENT) is EVENT
    assert target_input(Rule(name="r", function="F", input='{"fixed": true}'), EVENT) == {"fixed": True}
    assert target_input(Rule(name="r", function="F", input_path="$.detail.price_eur"), EVENT) == 0.21


def test_input_transformer_fills_placeholders_in_and_out_of_strings(stack: Stack) -> None:
    cleared = next(r for r in rules_from(stack) if r.name == "market-cleared")
    assert target_input(cleared, EVENT) == {
        "slot": "12:00",
        "price": 0.21,
        "note": "cleared 12:00",
        "rule": "market-cleared",
    }
