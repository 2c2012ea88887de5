"""Devices' telemetry from the SQS queue the IoT rule fills: one batch of records at a time.

A record is a device's message as the rule selected it (`site` and `device_id` from the topic).
Poison records, which no retry can mend (not JSON, not an object, no site or device, too many
readings, a site that does not exist), go to the dead-letter queue with their reason and are not
reported as failures; the others are ingested one site at a time (`service.ingest_device_messages`),
and only the records of a site whose write failed are reported back, for the queue to deliver again
after its visibility timeout (and to its dead-letter queue after its max receives).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ems.core.clock import Clock, utc_now
from ems.core.observability import logger, metrics
from ems.telemetry import service
from ems.telemetry.models import MAX_READINGS_PER_BATCH
from ems.telemetry.ports import DeadLetters
from ems.telemetry.validation import Rejected


@dataclass(frozen=True)
class DeviceMessage:
    message_id: str
    site: str
    device_id: str
    readings: list[Any]
    body: str  # as it came: what the dead-letter queue gets if the site turns out not to exist


@dataclass(frozen=True)
class Poison:
    message_id: str
    body: str
    reason: str


def parse_record(record: Mapping[str, Any]) -> DeviceMessage | Poison:
    """One SQS record: the device's message, or Poison with the reason it can never be ingested."""
    message_id, body = str(record.get("messageId", "")), record.get("body")
    if not isinstance(body, str):
        return Poison(message_id, json.dumps(body), "the record has no body")
    try:
        message = json.loads(body)
    except ValueError:
        return Poison(message_id, body, "the message is not JSON")
    try:
        site, device, readings = service.device_readings(message)
    except Rejected as exc:
        return Poison(message_id, body, str(exc))
    if len(readings) > MAX_READINGS_PER_BATCH:
        return Poison(
            message_id, body, f"at most {MAX_READINGS_PER_BATCH} readings per message, got {len(readings)}"
        )
    return DeviceMessage(message_id, site, device, readings, body)


def by_site(messages: Sequence[DeviceMessage]) -> dict[str, list[DeviceMessage]]:
    """The messages of each site, in arrival order (the first of two equal readings wins)."""
    groups: dict[str, list[DeviceMessage]] = {}
    for message in messages:
        groups.setdefault(message.site, []).append(message)
    return groups


def ingest_batch(
    records: Sequence[Mapping[str, Any]], s: service.Stores, dead_letters: DeadLetters, now: Clock = utc_now
) -> list[str]:
    """Ingest one batch of the queue's records; the message ids to deliver again (retryable failures
    only: a poison record is in the dead-letter queue, or among these when it could not be sent there)."""
    messages: list[DeviceMessage] = []
    poison: list[Poison] = []
    for record in records:
        parsed = parse_record(record)
        if isinstance(parsed, Poison):
            poison.append(parsed)
        else:
            messages.append(parsed)

    failed: list[str] = []
    for site, group in by_site(messages).items():
        try:
            if not s.registry.site_exists(site):
                poison += [Poison(m.message_id, m.body, f"no site {site!r}") for m in group]
                continue
            service.ingest_device_messages(site, [(m.device_id, m.readings) for m in group], s, now)
        except Exception:  # storage busy, a network error: these messages come back, nothing is lost
            logger.exception("ingest: site's messages to retry", extra={"site": site, "messages": len(group)})
            metrics.add_metric(name="MessagesRetried", unit="Count", value=len(group))
            failed += [m.message_id for m in group]

    for item in poison:
        logger.warning("ingest: message to the dead-letter queue", extra={"message_id": item.message_id,
                                                                          "reason": item.reason})  # fmt: skip
        try:
            dead_letters.send(item.body, item.reason, item.message_id)
        except Exception:  # not in the dead-letter queue yet: it must stay in the queue
            logger.exception("ingest: dead-letter queue unreachable", extra={"message_id": item.message_id})
            failed.append(item.message_id)
        else:
            metrics.add_metric(name="MessagesRejected", unit="Count", value=1)
    return failed
