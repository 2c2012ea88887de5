"""EventBridge and Scheduler through the local cloud started for real, driven by boto3.

A test template (its own folder, `ems local up --template`) has one function that appends every
event it receives to a file, EventBridge rules with patterns, and a rate(1 minute) ScheduleV2; the
stack runs with `--clock 60`, so a schedule minute passes in a real second. Every wait is bounded
polling; nothing asserts on time.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from ems_local.clock import Clock
from tests.e2e.conftest import RecorderStack, recorder_template, running_local_cloud, wait_for

pytestmark = pytest.mark.e2e

FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:ems-test-recorder"
BUS = "ems-test-domain"

EVENTS = """
        Alerts:
          Type: EventBridgeRule
          Properties:
            EventBusName: !Ref DomainBus
            Pattern:
              source: [ems.test]
              detail-type: [Alert Raised]
              detail:
                severity: [{anything-but: [info]}]
        Relay:
          Type: EventBridgeRule
          Properties:
            Pattern: {detail-type: [Relay Requested]}
        Boom:
          Type: CloudWatchEvent
          Properties:
            Pattern: {detail-type: [Boom]}
        Tick:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: rate(1 minute)
            Input: '{"kind": "tick"}'
"""
RESOURCES = f"""
  DomainBus:
    Type: AWS::Events::EventBus
    Properties:
      Name: {BUS}
"""


class Stack(RecorderStack):
    def details(self, detail_type: str) -> list[dict[str, Any]]:
        return [
            e["detail"] for e in self.events() if isinstance(e, dict) and e.get("detail-type") == detail_type
        ]

    def ticks(self) -> int:
        return sum(1 for e in self.events() if e == {"kind": "tick"})


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("events")
    template = recorder_template(home, EVENTS, RESOURCES, BUS)
    args = (
        "--ws-port",
        "0",
        "--aws-services-port",
        "0",
        "--empty",
        "--template",
        str(template),
        "--clock",
        "60",
    )
    with running_local_cloud(home, *args) as description:
        yield Stack(home, description)


def test_a_rule_with_a_pattern_reaches_its_function_and_a_non_matching_event_does_not(stack: Stack) -> None:
    marker = uuid.uuid4().hex
    events = stack.client("events", "aws_services")
    answer = events.put_events(
        Entries=[
            {"Source": "ems.test", "DetailType": "Alert Raised", "EventBusName": BUS,
             "Detail": json.dumps({"severity": "info", "marker": f"{marker}-info"})},  # anything-but info
            {"Source": "ems.other", "DetailType": "Alert Raised", "EventBusName": BUS,
             "Detail": json.dumps({"severity": "high", "marker": f"{marker}-other"})},  # another source
            {"Source": "ems.test", "DetailType": "Alert Raised",  # the default bus has no such rule
             "Detail": json.dumps({"severity": "high", "marker": f"{marker}-default-bus"})},
            {"Source": "ems.test", "DetailType": "Alert Raised", "EventBusName": BUS,
             "Detail": json.dumps({"severity": "high", "marker": f"{marker}-match"})},
            {"Source": "ems.test", "DetailType": "Alert Raised", "Detail": "{not json"},
        ]
    )  # fmt: skip
    assert answer["FailedEntryCount"] == 1
    assert answer["Entries"][4]["ErrorCode"] == "MalformedDetail"
    assert all("EventId" in e for e in answer["Entries"][:4])

    def alerts() -> list[str]:
        return [d["marker"] for d in stack.details("Alert Raised") if d["marker"].startswith(marker)]

    wait_for(alerts, "the matching alert reaching the function")
    # Routing happens inside PutEvents; let the schedule tick twice more before looking again.
    ticks = stack.ticks()
    wait_for(lambda: stack.ticks() >= ticks + 2, "two more ticks")
    assert alerts() == [f"{marker}-match"]
    (event,) = [
        e
        for e in stack.events()
        if isinstance(e, dict) and e.get("detail", {}).get("marker") == f"{marker}-match"
    ]
    assert event["id"] == answer["Entries"][3]["EventId"]
    assert (event["source"], event["account"], event["region"]) == ("ems.test", "123456789012", "us-east-1")


def test_a_function_puts_events_through_its_own_sdk(stack: Stack) -> None:
    marker = uuid.uuid4().hex
    stack.client("events", "aws_services").put_events(
        Entries=[
            {"Source": "ems.test", "DetailType": "Relay Requested", "Detail": json.dumps({"marker": marker})}
        ]
    )
    wait_for(
        lambda: f"{marker}-relayed" in [d["marker"] for d in stack.details("Alert Raised")],
        "the alert the function put on the bus reaching the function",
    )


def test_a_rate_schedule_of_the_template_fires_again_and_again(stack: Stack) -> None:
    seen = stack.ticks()
    wait_for(lambda: stack.ticks() >= seen + 2, "two fires of rate(1 minute) on a 60x clock")
    names = [s["Name"] for s in stack.client("scheduler", "aws").list_schedules()["Schedules"]]
    assert "RecorderFunctionTick" in names  # created in moto, as CloudFormation would


def test_a_one_time_schedule_created_at_run_time_fires_exactly_once(stack: Stack) -> None:
    scheduler = stack.client("scheduler", "aws")
    clock = Clock.from_description(stack.description["clock"])
    when = (clock.now() + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%S")
    marker = uuid.uuid4().hex
    scheduler.create_schedule(
        Name=f"once-{marker[:8]}", ScheduleExpression=f"at({when})", FlexibleTimeWindow={"Mode": "OFF"},
        ActionAfterCompletion="DELETE",
        Target={"Arn": FUNCTION_ARN, "RoleArn": "arn:aws:iam::123456789012:role/scheduler",
                "Input": json.dumps({"kind": "once", "marker": marker, "at": "<aws.scheduler.scheduled-time>"})},
    )  # fmt: skip

    def fires() -> list[Any]:
        return [e for e in stack.events() if isinstance(e, dict) and e.get("marker") == marker]

    (fire,) = wait_for(fires, f"at({when}) firing")
    assert fire["at"] == f"{when}Z"

    def deleted() -> bool:
        try:
            scheduler.get_schedule(Name=f"once-{marker[:8]}")
        except scheduler.exceptions.ResourceNotFoundException:
            return True
        return False

    wait_for(deleted, "the completed schedule deleted (ActionAfterCompletion DELETE)")
    ticks = stack.ticks()
    wait_for(lambda: stack.ticks() >= ticks + 3, "three more ticks")
    assert len(fires()) == 1


def test_a_target_that_keeps_failing_is_retried_then_dead_lettered(stack: Stack) -> None:
    marker = uuid.uuid4().hex
    stack.client("events", "aws_services").put_events(
        Entries=[{"Source": "ems.test", "DetailType": "Boom", "Detail": json.dumps({"marker": marker})}]
    )
    dead_letters = stack.home / stack.description["dead_letters"]

    def records() -> list[dict[str, Any]]:
        if not dead_letters.exists():
            return []
        lines = [json.loads(line) for line in dead_letters.read_text().splitlines()]
        return [r for r in lines if r["requestPayload"]["detail"]["marker"] == marker]

    (record,) = wait_for(records, "the dead letter of an event whose function kept failing")
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["responsePayload"]["errorMessage"] == "boom, as asked"
    assert [d["marker"] for d in stack.details("Boom")].count(marker) == 3  # it saw every attempt
