"""Domain events between functions: the publisher port, its EventBridge adapter, and the glue of a
function that an EventBridge rule invokes.

A domain publishes `DomainEvent`s through an `EventPublisher` it is given (tests pass a list-backed
fake); `EventBridgePublisher` is the store of events: it packs entries into PutEvents calls (at most
10 entries and 256 KB a call, EventBridge's limits) on the bus EVENT_BUS_NAME names. Publishing never
raises: an event that could not be sent is logged and counted (metric `EventsFailed`), because the
work that raised it (a batch of readings stored) is done and must not be failed or retried for it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aws_lambda_powertools.metrics import MetricUnit

from ems.core.aws import client
from ems.core.observability import instrumented, logger, metrics
from ems.core.settings import settings

# PutEvents: at most 10 entries a call, and entries of at most 256 KB together (the user guide's
# "Calculating PutEvents event entry size": Source, DetailType and Detail in UTF-8 bytes, Time 14).
MAX_ENTRIES_PER_CALL = 10
MAX_CALL_BYTES = 256 * 1024
# What a detail is split to stay under, leaving room for Source and DetailType.
MAX_DETAIL_BYTES = 250 * 1024


@dataclass(frozen=True)
class DomainEvent:
    source: str  # "ems.<domain>"
    detail_type: str  # what happened, in the domain's words: "TelemetryReceived"
    detail: dict[str, Any]

    def encoded_detail(self) -> str:
        return json.dumps(self.detail, separators=(",", ":"))


@dataclass
class PublishOutcome:
    sent: int = 0
    failed: int = 0


class EventPublisher(Protocol):
    def publish(self, events: Sequence[DomainEvent]) -> PublishOutcome:
        """Send every event; never raises (what failed is logged and counted)."""
        ...


def split_detail(
    common: dict[str, Any], key: str, items: Sequence[Any], limit_bytes: int = MAX_DETAIL_BYTES
) -> list[dict[str, Any]]:
    """`common` with `items` under `key`, split into as few details as keep each encoded detail under
    `limit_bytes` (items keep their order; an item too big on its own goes alone, and fails alone)."""
    base = len(json.dumps({**common, key: []}, separators=(",", ":")).encode())
    details: list[dict[str, Any]] = []
    chunk: list[Any] = []
    size = base
    for item in items:
        item_bytes = len(json.dumps(item, separators=(",", ":")).encode()) + 1  # and its comma
        if chunk and size + item_bytes > limit_bytes:
            details.append({**common, key: chunk})
            chunk, size = [], base
        chunk.append(item)
        size += item_bytes
    if chunk:
        details.append({**common, key: chunk})
    return details


def _entry_bytes(entry: dict[str, Any]) -> int:
    return sum(len(str(entry[k]).encode()) for k in ("Source", "DetailType", "Detail"))


class EventBridgePublisher:
    """PutEvents on the deployment's bus (EVENT_BUS_NAME)."""

    def publish(self, events: Sequence[DomainEvent]) -> PublishOutcome:
        outcome = PublishOutcome()
        if not events:
            return outcome
        bus = settings().event_bus_name
        if not bus:
            logger.warning("events not sent: EVENT_BUS_NAME is not set", extra={"events": len(events)})
            return self._count(outcome, len(events))
        entries = [
            {
                "Source": e.source,
                "DetailType": e.detail_type,
                "Detail": e.encoded_detail(),
                "EventBusName": bus,
            }
            for e in events
        ]
        for call in _calls(entries):
            try:
                answer = client("events").put_events(Entries=call)
            except Exception:
                logger.exception("PutEvents failed", extra={"entries": len(call), "bus": bus})
                outcome.failed += len(call)
                continue
            failed = int(answer.get("FailedEntryCount") or 0)
            if failed:
                reasons = [
                    f"{r.get('ErrorCode')}: {r.get('ErrorMessage')}"
                    for r in answer.get("Entries", [])
                    if r.get("ErrorCode")
                ]
                logger.warning("PutEvents refused entries", extra={"failed": failed, "reasons": reasons[:5]})
            outcome.failed += failed
            outcome.sent += len(call) - failed
        return self._count(outcome, 0)

    @staticmethod
    def _count(outcome: PublishOutcome, more_failed: int) -> PublishOutcome:
        outcome.failed += more_failed
        metrics.add_metric(name="EventsSent", unit=MetricUnit.Count, value=outcome.sent)
        if outcome.failed:
            metrics.add_metric(name="EventsFailed", unit=MetricUnit.Count, value=outcome.failed)
        return outcome


def _calls(entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Entries in PutEvents calls of at most 10 entries and 256 KB each, in order."""
    calls: list[list[dict[str, Any]]] = []
    call: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        entry_bytes = _entry_bytes(entry)
        if call and (len(call) == MAX_ENTRIES_PER_CALL or size + entry_bytes > MAX_CALL_BYTES):
            calls.append(call)
            call, size = [], 0
        call.append(entry)
        size += entry_bytes
    if call:
        calls.append(call)
    return calls


# ---------------------------------------------------------------- functions that rules invoke


def is_eventbridge_event(event: Any) -> bool:
    """An EventBridge event as a rule delivers it (an API Gateway event has neither key)."""
    return isinstance(event, dict) and "detail-type" in event and "source" in event


def event_handler(
    domain: str, handle: Callable[[str, dict[str, Any], str], Any]
) -> Callable[[dict[str, Any], Any], Any]:
    """A Lambda handler for EventBridge events: `handle(detail_type, detail, source)` with the event's id and
    type in every log line, one `Events` count, and its result returned (for the logs of asynchronous
    invocations). Errors propagate, so Lambda's asynchronous retries apply."""

    @instrumented(domain)
    def handler(event: dict[str, Any], context: Any) -> Any:
        detail_type = str(event.get("detail-type", ""))
        logger.append_keys(event_id=event.get("id"), detail_type=detail_type, source=event.get("source"))
        metrics.add_metric(name="Events", unit=MetricUnit.Count, value=1)
        detail = event.get("detail")
        return handle(detail_type, detail if isinstance(detail, dict) else {}, str(event.get("source", "")))

    return handler
