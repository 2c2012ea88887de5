"""The local cloud's IoT Core on its own: topic rules read from a template, the rule engine on one
message at a time, and the iot-data endpoint's Publish and routing (broker and shadows faked)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ems_local import iotsql
from ems_local.iot_core import MAX_PAYLOAD_BYTES, IotDataPlane, TopicRule, TopicRuleEngine, topic_rules
from ems_local.template import Stack

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Resources:
  TelemetryFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/telemetry
      Handler: app.handler
      Events:
        Ingest:
          Type: IoTRule
          Properties:
            AwsIotSqlVersion: '2016-03-23'
            Sql: !Sub "SELECT *, topic(2) AS site FROM 'ems/+/devices/+/telemetry'"
        Broken:
          Type: IoTRule
          Properties:
            Sql: SELECT CASE x WHEN 1 THEN 2 END FROM 'a/b'
  AlertsFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/alerts
      Handler: app.handler
  HotRule:
    Type: AWS::IoT::TopicRule
    Properties:
      RuleName: hot
      TopicRulePayload:
        Sql: SELECT temperature_c AS t FROM 'rooms/+' WHERE temperature_c > 25
        Actions:
          - Lambda: {FunctionArn: !GetAtt AlertsFunction.Arn}
          - Republish: {Topic: elsewhere, RoleArn: arn:aws:iam::123456789012:role/r}
  OffRule:
    Type: AWS::IoT::TopicRule
    Properties:
      TopicRulePayload:
        RuleDisabled: true
        Sql: SELECT * FROM 'rooms/+'
        Actions:
          - Lambda: {FunctionArn: !GetAtt AlertsFunction.Arn}
"""


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE)
    return Stack.from_file(path)


def test_rules_come_from_iot_rule_events_and_topic_rule_resources(stack: Stack) -> None:
    rules = {rule.name: rule for rule in topic_rules(stack)}
    # The unsupported SQL (CASE) and the disabled rule are left out; the rest still runs.
    assert sorted(rules) == ["TelemetryFunctionIngest", "hot"]
    assert rules["TelemetryFunctionIngest"].functions == ("TelemetryFunction",)
    assert rules["TelemetryFunctionIngest"].rule.topic_filter == "ems/+/devices/+/telemetry"
    assert rules["hot"].functions == ("AlertsFunction",)  # the Republish action is not run locally


def test_a_message_invokes_the_functions_of_the_rules_it_matches(stack: Stack) -> None:
    submitted: list[tuple[str, Any, str]] = []
    engine = TopicRuleEngine(
        topic_rules(stack), lambda fn, event, source: submitted.append((fn, event, source))
    )

    payload = json.dumps({"sensor_id": "s1", "value": 2.5}).encode()
    assert engine.on_message("ems/hq/devices/d1/telemetry", payload, "d1", 1_000) == 1
    assert engine.on_message("rooms/attic", b'{"temperature_c": 30}', "d2", 1_000) == 1
    assert engine.on_message("rooms/cellar", b'{"temperature_c": 12}', "d2", 1_000) == 0
    assert engine.on_message("other/topic", payload, "d1", 1_000) == 0
    assert submitted == [
        (
            "TelemetryFunction",
            {"sensor_id": "s1", "value": 2.5, "site": "hq"},
            "iot rule TelemetryFunctionIngest",
        ),
        ("AlertsFunction", {"t": 30}, "iot rule hot"),
    ]


PRESENCE_TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Resources:
  DevicesFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/devices
      Handler: app.handler
      Events:
        Presence:
          Type: IoTRule
          Properties:
            Sql: SELECT *, topic(4) AS event, topic(5) AS client FROM '$aws/events/presence/+/+'
"""


def test_a_template_rule_selects_presence_events_and_their_topic_levels(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(PRESENCE_TEMPLATE)
    submitted: list[tuple[str, Any, str]] = []
    engine = TopicRuleEngine(
        topic_rules(Stack.from_file(tmp_path / "template.yaml")),
        lambda fn, event, source: submitted.append((fn, event, source)),
    )
    event = {"clientId": "hq:DEVICE_001", "eventType": "disconnected", "clientInitiatedDisconnect": False}
    topic = "$aws/events/presence/disconnected/hq:DEVICE_001"
    assert engine.on_message(topic, json.dumps(event).encode(), "", 0) == 1
    assert submitted == [
        (
            "DevicesFunction",
            {**event, "event": "disconnected", "client": "hq:DEVICE_001"},
            "iot rule DevicesFunctionPresence",
        )
    ]
    # Only presence topics: a device's telemetry does not match.
    assert engine.on_message("ems/hq/devices/DEVICE_001/telemetry", b"{}", "hq:DEVICE_001", 0) == 0


def test_a_payload_a_rule_cannot_take_is_logged_and_the_other_rules_still_run(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    submitted: list[str] = []
    rules = topic_rules(stack)
    # A catch-all rule after the telemetry one: it must still see the message the first one fails on.
    catch_all = TopicRule("everything", iotsql.parse("SELECT topic() AS t FROM '#'"), ("AlertsFunction",))
    engine = TopicRuleEngine([*rules, catch_all], lambda fn, event, source: submitted.append(source))

    assert engine.on_message("ems/hq/devices/d1/telemetry", b"\x00binary", "d1", 1) == 1
    assert submitted == ["iot rule everything"]
    assert "TelemetryFunctionIngest" in capsys.readouterr().out  # said why that rule did not fire


class FakeShadows:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def get(self, thing: str, shadow: str | None = None) -> dict[str, Any]:
        self.calls.append(("get", thing, shadow))
        return {"state": {}, "version": 1}

    def update(self, thing: str, payload: bytes, shadow: str | None = None) -> dict[str, Any]:
        self.calls.append(("update", thing, payload, shadow))
        return {"state": json.loads(payload)["state"], "version": 2}

    def delete(self, thing: str, shadow: str | None = None) -> dict[str, Any]:
        self.calls.append(("delete", thing, shadow))
        return {"version": 3}

    def list_named(self, thing: str) -> list[str]:
        return ["config"]


@pytest.fixture
def plane() -> tuple[IotDataPlane, list[tuple[str, bytes, int, bool]], FakeShadows]:
    published: list[tuple[str, bytes, int, bool]] = []
    shadows = FakeShadows()
    endpoint = IotDataPlane(lambda *message: published.append(message), shadows)  # type: ignore[arg-type]
    return endpoint, published, shadows


def test_publish_takes_the_topic_from_the_path_as_botocore_encodes_it(plane: Any) -> None:
    endpoint, published, _ = plane
    status, _, body = endpoint.handle(
        "POST", "/topics/ems%2Fhq%2Fdevices%2Fd1%2Fcommands", {}, b"{}", "qos=1"
    )
    assert (status, body) == (200, b"")
    status, _, _ = endpoint.handle("POST", "/topics/%24aws%2Fthings%2Fd1%2Fx", {}, b"r", "qos=0&retain=true")
    assert status == 200
    assert published == [("ems/hq/devices/d1/commands", b"{}", 1, False), ("$aws/things/d1/x", b"r", 0, True)]


@pytest.mark.parametrize(
    ("path", "query", "body", "status", "code"),
    [
        ("/topics/a%2F%2B", "", b"", 400, "InvalidRequestException"),  # a filter, not a topic
        ("/topics/a", "qos=2", b"", 400, "InvalidRequestException"),  # IoT Core has no QoS 2
        ("/topics/a", "", b"x" * (MAX_PAYLOAD_BYTES + 1), 413, "RequestEntityTooLargeException"),
    ],
)
def test_publish_refuses_what_iot_core_refuses(
    plane: Any, path: str, query: str, body: bytes, status: int, code: str
) -> None:
    endpoint, published, _ = plane
    got, headers, _ = endpoint.handle("POST", path, {}, body, query)
    assert (got, headers["x-amzn-errortype"]) == (status, code)
    assert published == []


def test_shadow_operations_go_to_the_shadows(plane: Any) -> None:
    endpoint, _, shadows = plane
    status, _, body = endpoint.handle(
        "POST", "/things/hvac-1/shadow", {}, b'{"state": {"desired": {"on": true}}}'
    )
    assert (status, json.loads(body)["version"]) == (200, 2)
    assert endpoint.handle("GET", "/things/hvac-1/shadow", {}, b"", "name=config")[0] == 200
    assert endpoint.handle("DELETE", "/things/hvac-1/shadow", {}, b"")[0] == 200
    status, _, body = endpoint.handle("GET", "/api/things/shadow/ListNamedShadowsForThing/hvac-1", {}, b"")
    assert json.loads(body)["results"] == ["config"]
    assert [call[0] for call in shadows.calls] == ["update", "get", "delete"]
    assert shadows.calls[1] == ("get", "hvac-1", "config")
    assert endpoint.handle("GET", "/retainedMessage", {}, b"")[0] == 404
