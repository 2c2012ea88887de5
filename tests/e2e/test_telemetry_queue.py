"""SQS event source mappings in the local cloud started for real.

- A test template (its one function records what it gets): a record the function reports as failed
  comes back after the queue's visibility timeout (a test-stack parameter of 8 s: longer than a
  worker's cold start, as AWS wants it longer than the function's timeout), with its receive
  count grown, while the rest of its batch is deleted; after the queue's max receives it is in the
  dead-letter queue.
- The project's template: a device's message for a site that does not exist goes from MQTT through
  the topic rule and the telemetry queue to the ingest function, which puts it in the telemetry
  dead-letter queue with its reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.e2e.conftest import RecorderStack, recorder_template, running_local_cloud, wait_for

pytestmark = pytest.mark.e2e

ACCOUNT = "123456789012"
EVENTS = """
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt WorkQueue.Arn
            BatchSize: 10
            FunctionResponseTypes: [ReportBatchItemFailures]
"""
RESOURCES = """
  WorkQueue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: ems-test-work
      VisibilityTimeout: !Ref VisibilitySeconds
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt WorkDeadLetters.Arn
        maxReceiveCount: 2
  WorkDeadLetters:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: ems-test-work-dlq
Parameters:
  VisibilitySeconds:
    Type: Number
    Default: 180
"""


def queue_url(name: str) -> str:
    return f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/{name}"


def drain(sqs: Any, name: str) -> list[dict[str, Any]]:
    answer = sqs.receive_message(
        QueueUrl=queue_url(name), MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )
    return list(answer.get("Messages", []))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecorderStack]:
    home = tmp_path_factory.mktemp("sqs")
    template = recorder_template(home, EVENTS, RESOURCES)
    args = ("--empty", "--template", str(template), "--param", "VisibilitySeconds=8")
    with running_local_cloud(home, *args, served=True) as description:
        yield RecorderStack(home, description)


def test_a_failed_record_comes_back_after_the_visibility_timeout_then_goes_to_the_dead_letter_queue(
    stack: RecorderStack,
) -> None:
    sqs = stack.client("sqs", "aws")
    for body in ({"n": 1}, {"n": 2, "fail": True}, {"n": 3}):
        sqs.send_message(QueueUrl=queue_url("ems-test-work"), MessageBody=json.dumps(body))

    def seen() -> list[tuple[int, int]]:
        """(n, receive count) of every record the function got, in order."""
        return [
            (json.loads(r["body"])["n"], int(r["attributes"]["ApproximateReceiveCount"]))
            for event in stack.events()
            for r in event.get("Records", [])
        ]

    wait_for(lambda: sorted(seen()).count((2, 2)) == 1, "the failed record delivered a second time", 60)
    letters = wait_for(
        lambda: drain(sqs, "ems-test-work-dlq"), "the failed record in the dead-letter queue", 60
    )
    assert [json.loads(m["Body"]) for m in letters] == [{"n": 2, "fail": True}]
    # Each good record once (deleted after its batch), the failed one at receive counts 1 and 2 only.
    assert sorted(seen()) == [(1, 1), (2, 1), (2, 2), (3, 1)]
    assert drain(sqs, "ems-test-work") == []


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecorderStack]:
    home = tmp_path_factory.mktemp("project")
    with running_local_cloud(home, "--no-building", served=True) as description:
        yield RecorderStack(home, description)


def test_a_message_of_a_site_that_does_not_exist_is_dead_lettered_with_its_reason(
    project: RecorderStack,
) -> None:
    address = urlsplit(str(project.description["mqtt"]))
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="lost-device")
    client.connect(str(address.hostname), int(address.port or 0))
    client.loop_start()
    try:
        payload = json.dumps({"sensor_id": "S1", "ts": 1_700_000_000_000, "value": 1})
        client.publish("ems/nowhere/devices/lost-device/telemetry", payload, qos=1).wait_for_publish(
            timeout=30
        )
    finally:
        client.disconnect()
        client.loop_stop()
    sqs = project.client("sqs", "aws")
    (letter,) = wait_for(
        lambda: drain(sqs, "ems-dev-telemetry-dlq"), "the message in the dead-letter queue", 60
    )
    assert letter["MessageAttributes"]["reason"]["StringValue"] == "no site 'nowhere'"
    assert json.loads(letter["Body"])["device_id"] == "lost-device"
    assert drain(sqs, "ems-dev-telemetry") == []
