"""Event source mappings of the local cloud: SQS queues in moto polled and their functions invoked in
batches, as Lambda's poller does.

Every SAM `SQS` event of a function (Queue, BatchSize, MaximumBatchingWindowInSeconds,
FunctionResponseTypes, Enabled) is a mapping. Its pollers receive from moto up to BatchSize
messages, for at most the batching window (0: invoke with what one receive brought), and invoke the
function synchronously with Lambda's SQS event. Then, as Lambda does:
- the function returned: every record is deleted, except those its `batchItemFailures` name when
  the mapping reports batch item failures (a response naming a record not in the batch fails the
  whole batch);
- the function raised, timed out, crashed or was throttled: no record is deleted.
What is not deleted is visible again after the queue's visibility timeout, and moto moves a message
to the queue's dead-letter queue once it has been received more than its RedrivePolicy's
maxReceiveCount (moto does this on receive, as SQS does).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ems_local import console
from ems_local.invocation import InvocationError
from ems_local.template import Stack

Invoke = Callable[[str, dict[str, Any]], Any]  # (function logical id, event) -> its result

# One receive brings at most 10 messages (SQS's limit); a long poll of 1 s keeps a stop prompt.
RECEIVE_MAX = 10
LONG_POLL_SECONDS = 1
# Lambda's poller starts with five concurrent batches per queue; locally the function's pool caps it.
POLLERS = 5


@dataclass(frozen=True)
class SqsMapping:
    name: str  # "<function><event>"
    function: str  # logical id
    queue_url: str
    queue_arn: str
    batch_size: int
    window_seconds: float
    report_failures: bool


def sqs_mappings(stack: Stack) -> list[SqsMapping]:
    """The template's SQS event sources; one that names a queue the template lacks is left out."""
    queues = {str(stack.get_att(q, "Arn")): q for q in stack.of_type("AWS::SQS::Queue")}
    found = []
    for function, props in stack.functions().items():
        for event_name, event in props["Events"].items():
            if event.get("Type") != "SQS":
                continue
            spec = stack.resolve(event.get("Properties", {}))
            if spec.get("Enabled") in (False, "false"):
                continue
            arn = str(spec.get("Queue", ""))
            if arn not in queues:
                console.line(
                    "sqs", f"{function}.{event_name}: queue {arn} is not in the template; not polled"
                )
                continue
            visibility = stack.resolve(stack.template["Resources"][queues[arn]].get("Properties", {})).get(
                "VisibilityTimeout", 30
            )
            if float(visibility) < float(props.get("Timeout", 3)):  # AWS refuses to create this mapping
                console.line(
                    "sqs", f"{function}.{event_name}: the queue's visibility timeout {visibility} s is shorter "
                    f"than the function's timeout {props.get('Timeout', 3)} s; AWS refuses that mapping",
                )  # fmt: skip
            found.append(
                SqsMapping(
                    name=f"{function}{event_name}", function=function, queue_url=str(stack.ref(queues[arn])),
                    queue_arn=arn, batch_size=int(spec.get("BatchSize") or 10),
                    window_seconds=float(spec.get("MaximumBatchingWindowInSeconds") or 0),
                    report_failures="ReportBatchItemFailures" in (spec.get("FunctionResponseTypes") or []),
                )
            )  # fmt: skip
    return found


def sqs_event(messages: list[dict[str, Any]], mapping: SqsMapping, region: str) -> dict[str, Any]:
    """Lambda's event for SQS messages as ReceiveMessage returned them (all attributes asked for)."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": dict(m.get("Attributes", {})),
                "messageAttributes": {
                    name: {
                        "stringValue": a.get("StringValue"),
                        "binaryValue": a.get("BinaryValue"),
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": a.get("DataType"),
                    }
                    for name, a in m.get("MessageAttributes", {}).items()
                },
                "md5OfBody": m.get("MD5OfBody") or hashlib.md5(m["Body"].encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": mapping.queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


def to_delete(messages: list[dict[str, Any]], result: Any, report_failures: bool) -> list[dict[str, Any]]:
    """The messages a successful invocation's result lets go: all but the batch item failures it names
    (when the mapping reports them). A response Lambda cannot read keeps the whole batch."""
    if not report_failures or not isinstance(result, dict) or not result.get("batchItemFailures"):
        return messages
    failures = result["batchItemFailures"]
    ids = {m["MessageId"] for m in messages}
    named = (
        {f.get("itemIdentifier") for f in failures if isinstance(f, dict)}
        if isinstance(failures, list)
        else {None}
    )
    if not named <= ids:  # empty, null or unknown identifiers: Lambda fails the whole batch
        return []
    return [m for m in messages if m["MessageId"] not in named]


class SqsPoller:
    """The pollers of one mapping: threads that receive, invoke and delete until stopped."""

    def __init__(self, mapping: SqsMapping, invoke: Invoke, sqs: Any, region: str, pollers: int = POLLERS):
        self.mapping, self._invoke, self._sqs, self._region = mapping, invoke, sqs, region
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"sqs-{mapping.name}-{i}", daemon=True)
            for i in range(pollers)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                messages = self._collect()
                if messages:
                    self.deliver(messages)
            except Exception as exc:  # moto away for a moment, a bug: the poller goes on
                console.line("sqs", f"{self.mapping.name}: {exc!r}")
                self._stopping.wait(1)

    def _collect(self) -> list[dict[str, Any]]:
        """Up to BatchSize messages: what the first receive brings with no window, else what arrives
        until the window closes or the batch is full."""
        mapping = self.mapping
        messages: list[dict[str, Any]] = []
        closes = None
        while len(messages) < mapping.batch_size and not self._stopping.is_set():
            answer = self._sqs.receive_message(
                QueueUrl=mapping.queue_url, MaxNumberOfMessages=min(RECEIVE_MAX, mapping.batch_size - len(messages)),
                WaitTimeSeconds=LONG_POLL_SECONDS, AttributeNames=["All"], MessageAttributeNames=["All"],
            )  # fmt: skip
            received = answer.get("Messages", [])
            messages += received
            if messages and closes is None:
                closes = time.monotonic() + mapping.window_seconds
            if messages and (mapping.window_seconds <= 0 or time.monotonic() >= (closes or 0)):
                break
        return messages

    def deliver(self, messages: list[dict[str, Any]]) -> int:
        """Invoke the function with one batch; how many messages were deleted."""
        mapping = self.mapping
        try:
            result = self._invoke(mapping.function, sqs_event(messages, mapping, self._region))
        except InvocationError as exc:
            console.line(
                "sqs", f"{mapping.name}: {len(messages)} messages back after the visibility timeout ({exc!r})"
            )
            return 0
        done = to_delete(messages, result, mapping.report_failures)
        for start in range(0, len(done), RECEIVE_MAX):
            chunk = done[start : start + RECEIVE_MAX]
            self._sqs.delete_message_batch(
                QueueUrl=mapping.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
        if len(done) < len(messages):
            console.line(
                "sqs", f"{mapping.name}: {len(messages) - len(done)} of {len(messages)} records to retry"
            )
        return len(done)

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=30)


class EventSources:
    """Every SQS mapping of the template, started and stopped as one service."""

    def __init__(
        self, stack: Stack, invoke: Invoke, aws_client: Callable[[str], Any], pollers: int = POLLERS
    ):
        mappings = sqs_mappings(stack)
        sqs = aws_client("sqs") if mappings else None
        self.pollers = [SqsPoller(m, invoke, sqs, stack.region, pollers) for m in mappings]

    def start(self) -> None:
        for poller in self.pollers:
            poller.start()
        names = ", ".join(
            f"{p.mapping.name} (batch {p.mapping.batch_size}, window {p.mapping.window_seconds:g} s)"
            for p in self.pollers
        )
        console.line("sqs", f"event source mappings: {names or 'none'}")

    def stop(self) -> None:
        for poller in self.pollers:
            poller.stop()
