"""The cost of a reading, measured: every AWS request the functions make on a site's workload, in
billing units by AWS's documented rules, and in dollars at named list prices.

The workload: a site of 200 sensors on 20 devices, each device sending one message of its 10
readings every interval. Messages reach TelemetryIngestFunction's `sqs_handler` as the SQS event
source mapping would hand them over (batches, below), and each TelemetryReceived it publishes goes
to the functions the template's EventBridge rules name (ems_local's own rule matching), called in
this process, with the event EventBridge would deliver. Time is simulated: the ems clock is set to
each batch's arrival, so an hour of messages runs as fast as the code.

Counting hooks botocore's event system on the process's one session (ems.core.aws.session, which
PynamoDB's connections use too): `before-call`/`after-call` of DynamoDB record every operation with
its request; the items' sizes come from the items as stored, read back from moto by key on a client
of another session (uncounted). PutEvents and PostToConnection are answered by the hook itself
(`before-call` may answer a call in botocore), so the bench routes the events and counts the posts.
Units follow the DynamoDB developer guide ("Read/write capacity mode", "Item sizes and formats"):

- PutItem, UpdateItem, DeleteItem: ceil(size / 1 KB), the larger of the item before and after;
  BatchWriteItem the same per item; TransactWriteItems twice that per item; at least 1 an item.
- GetItem: ceil(size / 4 KB) per item, BatchGetItem per item rounded, Query and Scan per response
  (the sum of the items read, before any filter, rounded up to 4 KB); x0.5 unless ConsistentRead;
  TransactGetItems x2; a read of nothing still costs 1 (0.5).

Nothing about today's item layout is written here: everything comes from the counted requests.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.local_aws import FAKE_CREDENTIALS, REGION, LocalAws
from bench.report import machine, table

NAME = "cost"
COMMAND = "python -m bench cost"
SITE = "bench-cost"
DEVICES, SENSORS_PER_DEVICE = 20, 10
KB = 1024

# List prices, us-east-1, USD, as read on 2026-12-01 (the sources' own dates in brackets).
PRICES_READ = "2026-12-01"
PRICES: dict[str, tuple[float, str]] = {
    # aws.amazon.com/dynamodb/pricing/on-demand/ (Standard table class; since the 2024-11-01 cut)
    "dynamodb_wru": (0.625 / 1e6, "DynamoDB on-demand, $0.625 per million write request units"),
    "dynamodb_rru": (0.125 / 1e6, "DynamoDB on-demand, $0.125 per million read request units"),
    # aws.amazon.com/lambda/pricing/ (requests; duration is not priced here, see the section)
    "lambda_request": (0.20 / 1e6, "Lambda, $0.20 per million requests"),
    # aws.amazon.com/eventbridge/pricing/ (custom events, each 64 KB chunk one event)
    "eventbridge_event": (1.00 / 1e6, "EventBridge custom events, $1.00 per million (64 KB chunks)"),
    # aws.amazon.com/sqs/pricing/ (standard queue, first 1 million a month free: not applied)
    "sqs_request": (0.40 / 1e6, "SQS standard, $0.40 per million requests (64 KB chunks)"),
    # aws.amazon.com/iot-core/pricing/ (first billion messages; rules engine)
    "iot_message": (1.00 / 1e6, "IoT Core messaging, $1.00 per million (5 KB chunks)"),
    "iot_rule": (0.15 / 1e6, "IoT Core rules triggered, $0.15 per million (5 KB chunks)"),
    "iot_action": (0.15 / 1e6, "IoT Core actions executed, $0.15 per million (5 KB chunks)"),
    "iot_connection_minute": (0.08 / 1e6, "IoT Core connectivity, $0.08 per million connection-minutes"),
    # aws.amazon.com/api-gateway/pricing/ (WebSocket messages, 32 KB chunks, first billion)
    "websocket_message": (1.00 / 1e6, "API Gateway WebSocket, $1.00 per million messages (32 KB chunks)"),
    # aws.amazon.com/timestream/pricing/ (LiveAnalytics writes, 1 KiB units)
    "timestream_write": (0.50 / 1e6, "Timestream for LiveAnalytics, $0.50 per million 1 KiB writes"),
}


# ---------------------------------------------------------------- billing arithmetic (pure)


def number_size(text: str) -> int:
    """A DynamoDB number's bytes: 1 per two significant digits, plus 1 (leading and trailing zeroes
    trimmed; "Item sizes and formats")."""
    digits = re.sub(r"[^0-9]", "", text.lower().split("e")[0]).strip("0")
    return math.ceil(max(1, len(digits)) / 2) + 1


def value_size(value: Mapping[str, Any]) -> int:
    """The bytes of one attribute value in DynamoDB's typed form ({"S": ...}, {"N": ...}, ...)."""
    ((kind, data),) = value.items()
    if kind == "S":
        return len(str(data).encode())
    if kind == "N":
        return number_size(str(data))
    if kind == "B":
        return len(data) if isinstance(data, bytes | bytearray) else len(str(data).encode())
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in data)
    if kind == "NS":
        return sum(number_size(n) for n in data)
    if kind == "BS":
        return sum(len(b) for b in data)
    if kind == "M":  # 3 bytes, and each element its name, its value and 1 byte
        return 3 + sum(len(k.encode()) + value_size(v) + 1 for k, v in data.items())
    if kind == "L":
        return 3 + sum(value_size(v) + 1 for v in data)
    raise ValueError(f"not a DynamoDB attribute type: {kind!r}")


def item_size(item: Mapping[str, Mapping[str, Any]] | None) -> int:
    """An item's bytes: every attribute's name (UTF-8) and value."""
    return sum(len(name.encode()) + value_size(value) for name, value in (item or {}).items())


def write_units(size_bytes: int, transactional: bool = False) -> int:
    """Write request units of one item: 1 per started KB, at least 1; twice in a transaction."""
    return max(1, math.ceil(size_bytes / KB)) * (2 if transactional else 1)


def read_units(size_bytes: int, consistent: bool, transactional: bool = False) -> float:
    """Read request units of one read of `size_bytes` (an item, or a Query's whole response): 1 per
    started 4 KB, at least 1; half when eventually consistent, twice in a transaction."""
    units = max(1, math.ceil(size_bytes / (4 * KB)))
    if transactional:
        return units * 2.0
    return float(units) if consistent else units / 2


def chunks(size_bytes: int, chunk_bytes: int) -> int:
    """Billed units of a payload metered in chunks (EventBridge and SQS 64 KB, IoT 5 KB): at least 1."""
    return max(1, math.ceil(size_bytes / chunk_bytes))


def eventbridge_entry_size(entry: Mapping[str, Any]) -> int:
    """PutEvents entry size ("Calculating PutEvents event entry size"): Time 14 bytes when given,
    Source, DetailType, Detail and each Resources entry in UTF-8 bytes."""
    size = 14 if entry.get("Time") is not None else 0
    size += sum(len(str(entry.get(k) or "").encode()) for k in ("Source", "DetailType", "Detail"))
    return size + sum(len(str(r).encode()) for r in entry.get("Resources") or [])


def timestream_record_size(record: Mapping[str, Any], common: Mapping[str, Any] | None = None) -> int:
    """A Timestream record's write size ("Metering: writes"): 8 bytes of time, each dimension's name
    and value, the measure name, and each measure value by type (DOUBLE and BIGINT 8, BOOLEAN 1,
    VARCHAR its UTF-8 bytes; a multi-measure value its name too). `common`: CommonAttributes."""
    merged = {**(common or {}), **record}
    dimensions = [*(common or {}).get("Dimensions", []), *record.get("Dimensions", [])]
    size = 8 + sum(len(d["Name"].encode()) + len(str(d["Value"]).encode()) for d in dimensions)
    size += len(str(merged.get("MeasureName", "")).encode())

    def measure(kind: str, value: str) -> int:
        if kind in ("DOUBLE", "BIGINT", "TIMESTAMP"):
            return 8
        if kind == "BOOLEAN":
            return 1
        return len(value.encode())

    if "MeasureValues" in merged:
        size += sum(
            len(m["Name"].encode()) + measure(m["Type"], str(m["Value"])) for m in merged["MeasureValues"]
        )
    elif "MeasureValue" in merged:
        size += measure(str(merged.get("MeasureValueType", "DOUBLE")), str(merged["MeasureValue"]))
    return size


def timestream_write_units(
    records: Sequence[Mapping[str, Any]], common: Mapping[str, Any] | None = None
) -> int:
    """1 KiB units of one WriteRecords request: its records' sizes summed, rounded up."""
    return chunks(sum(timestream_record_size(r, common) for r in records), KB)


# ---------------------------------------------------------------- counting


@dataclass
class Tally:
    """What one workload cost, by function (and by table for DynamoDB)."""

    wru: Counter[tuple[str, str]] = field(default_factory=Counter)  # (function, table)
    rru: defaultdict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    dynamodb_calls: Counter[tuple[str, str]] = field(default_factory=Counter)  # (function, operation)
    invocations: Counter[str] = field(default_factory=Counter)
    events: int = 0  # PutEvents entries
    event_units: int = 0  # in 64 KB chunks
    posts: int = 0  # PostToConnection
    post_units: int = 0  # in 32 KB chunks
    sqs_calls: Counter[str] = field(default_factory=Counter)  # by the functions themselves
    timestream_calls: int = 0
    timestream_records: int = 0
    timestream_bytes: int = 0
    timestream_units: int = 0
    other_calls: Counter[str] = field(default_factory=Counter)


_WRITES = {"PutItem", "UpdateItem", "DeleteItem"}


class Meter:
    """botocore hooks on the functions' session that put every request in the current Tally."""

    def __init__(self, endpoint: str) -> None:
        import botocore.session

        self.tally = Tally()
        self.endpoint = endpoint
        self.function = "setup"
        self.pending_events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._keys: dict[str, list[str]] = {}
        # Reads of items as stored: another session, so nothing here is counted.
        self._lookup: Any = botocore.session.Session().create_client(
            "dynamodb", region_name=REGION, endpoint_url=endpoint,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )  # fmt: skip

    def install(self) -> None:
        from ems.core import aws

        events = aws.session()
        events.register("before-call.dynamodb", self._before_dynamodb)
        events.register("after-call.dynamodb", self._after_dynamodb)
        events.register("before-call.eventbridge.PutEvents", self._put_events)
        events.register("before-call.apigatewaymanagementapi.PostToConnection", self._post)
        events.register("before-call.sqs", self._sqs)
        events.register("before-call.timestream-write.WriteRecords", self._write_records)
        events.register("before-call.timestream-write.DescribeEndpoints", self._timestream_endpoint)
        _fresh_clients()  # clients copy the session's handlers when made: make them again

    # ------------------------------------------------------------ DynamoDB

    def key_names(self, table_name: str) -> list[str]:
        if table_name not in self._keys:
            schema = self._lookup.describe_table(TableName=table_name)["Table"]["KeySchema"]
            self._keys[table_name] = [k["AttributeName"] for k in schema]
        return self._keys[table_name]

    def _key(self, table_name: str, item: Mapping[str, Any]) -> dict[str, Any]:
        return {k: item[k] for k in self.key_names(table_name)}

    def stored_sizes(self, table_name: str, keys: Sequence[Mapping[str, Any]]) -> list[int]:
        """The sizes of the items under `keys` as stored now (0: none), in order."""
        found: dict[str, int] = {}
        unique = list({json.dumps(k, sort_keys=True): k for k in keys}.values())
        for start in range(0, len(unique), 100):
            request: dict[str, Any] = {
                table_name: {"Keys": unique[start : start + 100], "ConsistentRead": True}
            }
            while request:
                answer = self._lookup.batch_get_item(RequestItems=request)
                for item in answer["Responses"].get(table_name, []):
                    found[json.dumps(self._key(table_name, item), sort_keys=True)] = item_size(item)
                request = answer.get("UnprocessedKeys") or {}
        return [found.get(json.dumps(dict(k), sort_keys=True), 0) for k in keys]

    def _writes(self, operation: str, body: Mapping[str, Any]) -> list[tuple[str, dict[str, Any], int, bool]]:
        """(table, key, size of the item the request carries, transactional) of each item written."""
        if operation in _WRITES:
            table_name = body["TableName"]
            item = body.get("Item")
            key = self._key(table_name, item) if item else dict(body["Key"])
            return [(table_name, key, item_size(item), False)]
        if operation == "BatchWriteItem":
            out = []
            for table_name, requests in body["RequestItems"].items():
                for r in requests:
                    if "PutRequest" in r:
                        item = r["PutRequest"]["Item"]
                        out.append((table_name, self._key(table_name, item), item_size(item), False))
                    else:
                        out.append((table_name, dict(r["DeleteRequest"]["Key"]), 0, False))
            return out
        if operation == "TransactWriteItems":
            out = []
            for entry in body["TransactItems"]:
                ((_kind, spec),) = entry.items()
                item = spec.get("Item")
                key = self._key(spec["TableName"], item) if item else dict(spec["Key"])
                out.append((spec["TableName"], key, item_size(item), True))
            return out
        return []

    def _before_dynamodb(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        body = json.loads(params.get("body") or b"{}")
        writes = self._writes(model.name, body)
        before = self._sizes_of(writes)
        context["bench_cost"] = (model.name, body, writes, before)

    def _sizes_of(self, writes: Sequence[tuple[str, dict[str, Any], int, bool]]) -> list[int]:
        by_table: dict[str, list[int]] = defaultdict(list)
        for n, (table_name, _key, _size, _tx) in enumerate(writes):
            by_table[table_name].append(n)
        sizes = [0] * len(writes)
        for table_name, indexes in by_table.items():
            for n, size in zip(
                indexes, self.stored_sizes(table_name, [writes[i][1] for i in indexes]), strict=True
            ):
                sizes[n] = size
        return sizes

    def _after_dynamodb(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if "bench_cost" not in context:
            return
        operation, body, writes, before = context.pop("bench_cost")
        function = self.function
        wru: Counter[str] = Counter()
        rru: defaultdict[str, float] = defaultdict(float)
        if writes:
            unprocessed = {
                json.dumps(self._key(t, r["PutRequest"]["Item"]) if "PutRequest" in r else r["DeleteRequest"]["Key"], sort_keys=True)
                for t, rs in (parsed.get("UnprocessedItems") or {}).items() for r in rs
            }  # fmt: skip
            after = self._sizes_of(writes)
            for (table_name, key, carried, tx), old, new in zip(writes, before, after, strict=True):
                if json.dumps(key, sort_keys=True) in unprocessed:
                    continue
                wru[table_name] += write_units(max(old, new, carried), tx)
        elif operation == "GetItem":
            size = self.stored_sizes(body["TableName"], [body["Key"]])[0]
            rru[body["TableName"]] += read_units(size, bool(body.get("ConsistentRead")))
        elif operation == "BatchGetItem":
            for table_name, spec in body["RequestItems"].items():
                for size in self.stored_sizes(table_name, spec["Keys"]):
                    rru[table_name] += read_units(size, bool(spec.get("ConsistentRead")))
        elif operation == "TransactGetItems":
            for entry in body["TransactItems"]:
                spec = entry["Get"]
                size = self.stored_sizes(spec["TableName"], [spec["Key"]])[0]
                rru[spec["TableName"]] += read_units(size, True, transactional=True)
        elif operation in ("Query", "Scan"):
            projected = (
                "ProjectionExpression" in body
                or "AttributesToGet" in body
                or body.get("Select") not in (None, "ALL_ATTRIBUTES")
            )
            if projected or parsed.get("ScannedCount", 0) != parsed.get("Count", 0):
                size = self._read_before_filter(operation, body)  # the page as read, not as answered
            else:
                size = sum(item_size(i) for i in parsed.get("Items", []))
            rru[body["TableName"]] += read_units(size, bool(body.get("ConsistentRead")))
        with self._lock:
            self.tally.dynamodb_calls[(function, operation)] += 1
            for table_name, units in wru.items():
                self.tally.wru[(function, table_name)] += units
            for table_name, read in rru.items():
                self.tally.rru[(function, table_name)] += read

    def _read_before_filter(self, operation: str, body: Mapping[str, Any]) -> int:
        """The bytes a Query or Scan page read: the same page without its filter and projection
        (DynamoDB charges for what it read, not for what the filter kept)."""
        plain = {k: v for k, v in body.items() if k not in (
            "FilterExpression", "ProjectionExpression", "Select", "AttributesToGet", "QueryFilter",
            "ScanFilter", "ReturnConsumedCapacity", "ConditionalOperator")}  # fmt: skip
        kept = str(plain.get("KeyConditionExpression", ""))
        names = {k: v for k, v in (plain.get("ExpressionAttributeNames") or {}).items() if k in kept}
        values = {
            k: v
            for k, v in (plain.get("ExpressionAttributeValues") or {}).items()
            if re.search(re.escape(k) + r"\b", kept)
        }
        plain.pop("ExpressionAttributeNames", None)
        plain.pop("ExpressionAttributeValues", None)
        if names:
            plain["ExpressionAttributeNames"] = names
        if values:
            plain["ExpressionAttributeValues"] = values
        answer = getattr(self._lookup, operation.lower())(**plain)
        return sum(item_size(i) for i in answer.get("Items", []))

    # ------------------------------------------------------------ the other services

    def _put_events(self, params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        entries = json.loads(params.get("body") or b"{}").get("Entries", [])
        with self._lock:
            self.tally.events += len(entries)
            self.tally.event_units += sum(chunks(eventbridge_entry_size(e), 64 * KB) for e in entries)
            self.pending_events.extend(entries)
        return _ok(), {"FailedEntryCount": 0, "Entries": [{"EventId": str(uuid.uuid4())} for _ in entries]}

    def _post(self, params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        data = params.get("body") or b""
        with self._lock:
            self.tally.posts += 1
            self.tally.post_units += chunks(len(data), 32 * KB)
        return _ok(), {}

    def _sqs(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.tally.sqs_calls[f"{self.function} {model.name}"] += 1

    def _timestream_endpoint(self, **_: Any) -> tuple[Any, dict[str, Any]]:
        """Timestream's clients discover their endpoint; moto's answer names AWS's, so this names moto."""
        return _ok(), {"Endpoints": [{"Address": self.endpoint, "CachePeriodInMinutes": 1440}]}

    def _write_records(self, params: dict[str, Any], **_: Any) -> None:
        body = json.loads(params.get("body") or b"{}")
        records, common = body.get("Records", []), body.get("CommonAttributes")
        with self._lock:
            self.tally.timestream_calls += 1
            self.tally.timestream_records += len(records)
            self.tally.timestream_bytes += sum(timestream_record_size(r, common) for r in records)
            self.tally.timestream_units += timestream_write_units(records, common)


def _ok() -> Any:
    from botocore.awsrequest import AWSResponse

    headers: Any = {}
    return AWSResponse("http://bench.invalid", 200, headers, None)


def _fresh_clients() -> None:
    """Forget every cached client: ems.core.aws's and each PynamoDB model's connection."""
    from pynamodb.models import Model

    from ems.core import aws

    aws.client.cache_clear()
    todo: list[type] = [Model]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if "_connection" in cls.__dict__ or cls is not Model:
            cls._connection = None  # type: ignore[attr-defined]


# ---------------------------------------------------------------- the workload


@dataclass(frozen=True)
class Workload:
    label: str
    interval_s: int
    minutes: int
    aligned: bool  # every device sends at the same second (else their phases spread evenly)
    subscriber: bool = False

    @property
    def messages(self) -> int:
        return DEVICES * self.minutes * 60 // self.interval_s


def device_messages(
    start: datetime, w: Workload, sensors: list[list[str]]
) -> list[tuple[datetime, str, str]]:
    """(sent at, device, the IoT rule's output for its message) in time order."""
    out = []
    ticks = w.minutes * 60 // w.interval_s
    for tick in range(ticks):
        for d, device_sensors in enumerate(sensors):
            phase = 0.0 if w.aligned else w.interval_s * d / DEVICES
            sent = start + timedelta(seconds=tick * w.interval_s + phase)
            ts_ms = int(sent.timestamp() * 1000)
            readings = [
                {"sensor_id": s, "metrics": {_metric(n): _value(n, tick, d)}}
                for n, s in enumerate(device_sensors)
            ]
            body = {
                "ts": ts_ms,
                "readings": readings,
                "site": SITE,
                "device_id": f"dev{d:02d}",
                "received_ms": ts_ms + 40,
            }
            out.append((sent, f"dev{d:02d}", json.dumps(body, separators=(",", ":"))))
    out.sort(key=lambda m: m[0])
    return out


def _metric(n: int) -> str:
    return "temperature_c" if n == 0 else "power_w"


def _value(n: int, tick: int, device: int) -> float:
    if n == 0:  # inside its threshold [5, 35]: evaluated, never raised
        return round(21 + ((tick + device) % 20) / 10, 1)
    return round(100 + (tick * 7 + device * 13 + n * 31) % 2000 + 0.25, 2)


def batches(
    messages: list[tuple[datetime, str, str]], batch_size: int
) -> list[list[tuple[datetime, str, str]]]:
    """Receives of the event source mapping with a batching window of 0: the messages sent at the
    same moment, up to BatchSize a receive (messages apart in time are received apart)."""
    out: list[list[tuple[datetime, str, str]]] = []
    for message in messages:
        if out and out[-1][0][0] == message[0] and len(out[-1]) < batch_size:
            out[-1].append(message)
        else:
            out.append([message])
    return out


def sqs_event(batch: Sequence[tuple[datetime, str, str]], queue_arn: str) -> dict[str, Any]:
    records = []
    for sent, _device, body in batch:
        sent_ms = str(int(sent.timestamp() * 1000))
        records.append({
            "messageId": str(uuid.uuid4()), "receiptHandle": uuid.uuid4().hex, "body": body,
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": sent_ms, "SenderId": "iot",
                           "ApproximateFirstReceiveTimestamp": sent_ms},
            "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn, "awsRegion": REGION,
        })  # fmt: skip
    return {"Records": records}


@dataclass
class Outcome:
    workload: Workload
    backend: str
    tally: Tally
    readings: int
    messages: int
    receives: int
    message_bytes: int
    topic_bytes: int
    seconds: float


def drive(aws: LocalAws, meter: Meter, w: Workload, start: datetime, sensors: list[list[str]],
          backend: str) -> Outcome:  # fmt: skip
    from ems.core.clock import ScaledClock, run_on
    from ems_local.eventbridge import EventBridgeApi

    batch_size = int(aws.stack.parameters["TelemetryBatchSize"])
    deliveries: list[tuple[str, Any]] = []
    bus = EventBridgeApi.from_stack(
        aws.stack, lambda function, event, _arn: deliveries.append((function, event))
    )
    meter.tally = Tally()
    messages = device_messages(start, w, sensors)
    receives = batches(messages, batch_size)
    started = time.perf_counter()
    for batch in receives:
        run_on(ScaledClock(batch[-1][0] + timedelta(seconds=1), time.time(), 1.0))
        invoke(
            aws,
            meter,
            "TelemetryIngestFunction",
            sqs_event(batch, "arn:aws:sqs:us-east-1:123456789012:telemetry"),
        )
        while meter.pending_events:
            entries, meter.pending_events = meter.pending_events, []
            bus.put_events({"Entries": entries})
            while deliveries:
                function, event = deliveries.pop(0)
                invoke(aws, meter, function, event)
    run_on(None)
    readings = sum(len(json.loads(body)["readings"]) for _, _, body in messages)
    topic_bytes = sum(len(f"ems/{SITE}/devices/{device}/telemetry".encode()) for _, device, _ in messages)
    payload = sum(
        len(
            json.dumps(
                {k: v for k, v in json.loads(b).items() if k in ("ts", "readings")}, separators=(",", ":")
            ).encode()
        )
        for _, _, b in messages
    )
    return Outcome(w, backend, meter.tally, readings, len(messages), len(receives), payload, topic_bytes,
                   time.perf_counter() - started)  # fmt: skip


def invoke(aws: LocalAws, meter: Meter, function: str, event: Any) -> None:
    meter.function = function
    meter.tally.invocations[function] += 1
    from ems_local.lambda_context import LambdaContext

    fn = aws.functions[function]
    handler = getattr(aws._module(fn["CodeUri"]), fn["Handler"].rpartition(".")[2])
    context = LambdaContext(fn["FunctionName"], int(fn.get("MemorySize", 128)), float(fn.get("Timeout", 3)))
    with _function_env(aws, function):
        answer = handler(event, context)
    if function == "TelemetryIngestFunction" and answer.get("batchItemFailures"):
        raise RuntimeError(f"ingest failed records: {answer}")
    meter.function = "bench"


class _function_env:
    """The function's environment variables while it runs (as its own process would have them)."""

    def __init__(self, aws: LocalAws, function: str) -> None:
        self.variables = aws.functions[function]["Environment"]["Variables"]
        self.saved: dict[str, str | None] = {}

    def __enter__(self) -> None:
        from ems.core import settings

        for k, v in self.variables.items():
            self.saved[k] = os.environ.get(k)
            os.environ[k] = str(v)
        settings.settings.cache_clear()

    def __exit__(self, *_: object) -> None:
        from ems.core import settings

        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        settings.settings.cache_clear()


# ---------------------------------------------------------------- setup


def seed(aws: LocalAws) -> list[list[str]]:
    from bench.telemetry import _ok as ok

    token = aws.mint("bench-cost", ["*"], ["*"])
    ok(aws.call("POST", "/api/v1/sites", token, {"site_id": SITE, "name": "cost"}), "site")
    for room in range(5):
        ok(aws.call("POST", "/api/v1/rooms", token, {"name": f"room{room}"}, f"site={SITE}"), "room")
    sensors = []
    for d in range(DEVICES):
        ids = [f"d{d:02d}s{n}" for n in range(SENSORS_PER_DEVICE)]
        for n, sensor_id in enumerate(ids):
            body: dict[str, Any] = {"sensor_id": sensor_id, "name": sensor_id, "device_id": f"dev{d:02d}",
                                    "room": f"room{d % 5}", "sensor_type": "temperature" if n == 0 else "plug"}  # fmt: skip
            if n == 0:
                body["thresholds"] = {"temperature_c": {"min": 5, "max": 35}}
            ok(aws.call("POST", "/api/v1/sensors", token, body, f"site={SITE}"), "sensor")
        sensors.append(ids)
    return sensors


def subscribe_one(minutes: int) -> None:
    """One dashboard connection holding the site's `site` and `sensors/*` topics."""
    from ems.auth.models import Claims
    from ems.core.clock import utc_now
    from ems.core.ids import new_id
    from ems.core.settings import settings
    from ems.realtime.models import Connection
    from ems.realtime.store import RealtimeStore, epoch

    now = utc_now()
    claims = Claims(sub="bench", name="bench", jti=new_id("tok_"), iat=epoch(now), exp=epoch(now) + 86_400,
                    iss=settings().token_issuer, aud=settings().token_audience, resources=["*"], sites=[SITE])  # fmt: skip
    connection = Connection("bench-conn", SITE, claims, now, epoch(now + timedelta(minutes=minutes + 600)))
    store = RealtimeStore()
    store.save_connection(connection)
    store.add_topics(connection, ["site", "sensors/*"])


def unsubscribe_one() -> None:
    from ems.realtime.store import RealtimeStore

    RealtimeStore().remove("bench-conn")


def use_timestream(aws: LocalAws) -> dict[str, str]:
    import boto3

    database, table_name = "ems_bench", "readings"
    write = boto3.client("timestream-write", endpoint_url=aws.endpoint, region_name=REGION,
                         aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    write.create_database(DatabaseName=database)
    write.create_table(DatabaseName=database, TableName=table_name)
    return {
        "TELEMETRY_BACKEND": "timestream",
        "TIMESTREAM_DATABASE": database,
        "TIMESTREAM_TABLE": table_name,
    }


# ---------------------------------------------------------------- the section


WORKLOADS = (
    Workload("1 message a device a minute, phases spread", 60, 60, aligned=False),
    Workload("1 a minute, all devices at the same second", 60, 60, aligned=True),
    Workload("1 a minute, spread, one WebSocket subscriber", 60, 5, aligned=False, subscriber=True),
    Workload("1 message a device every 5 s, spread", 5, 2, aligned=False),
    Workload("every 5 s, all devices at the same second", 5, 5, aligned=True),
)
TIMESTREAM_WORKLOAD = Workload("1 a minute, spread, TelemetryBackend=timestream", 60, 10, aligned=False)


def dollars(o: Outcome) -> dict[str, float]:
    """The workload's bill by line, USD (list prices above; free tiers not applied)."""
    t = o.tally
    p = {k: v for k, (v, _) in PRICES.items()}
    iot_units = _iot_chunks(o)
    sqs = _sqs_requests(o) + sum(t.sqs_calls.values())
    return {
        "DynamoDB writes": sum(t.wru.values()) * p["dynamodb_wru"],
        "DynamoDB reads": sum(t.rru.values()) * p["dynamodb_rru"],
        "Lambda requests": sum(t.invocations.values()) * p["lambda_request"],
        "EventBridge events": t.event_units * p["eventbridge_event"],
        "SQS requests": sqs * p["sqs_request"],
        "IoT messages": iot_units * p["iot_message"],
        "IoT rules + actions": iot_units * (p["iot_rule"] + p["iot_action"]),
        "WebSocket messages": t.post_units * p["websocket_message"],
        "Timestream writes": t.timestream_units * p["timestream_write"],
    }


def _iot_chunks(o: Outcome) -> int:
    """Each device message metered in 5 KB chunks of its payload and topic (averaged: all alike)."""
    per_message = (o.message_bytes + o.topic_bytes) / max(1, o.messages)
    return o.messages * chunks(math.ceil(per_message), 5 * KB)


def _sqs_requests(o: Outcome) -> int:
    """The IoT rule's SendMessage per message, and per receive the poller's ReceiveMessage and
    DeleteMessageBatch (each 64 KB of payload one request; these payloads are far below)."""
    return o.messages + 2 * o.receives


def _per_reading_rows(outcomes: Iterable[Outcome]) -> list[list[str]]:
    rows = []
    for o in outcomes:
        t, n = o.tally, o.readings
        bill = dollars(o)
        rows.append([
            f"{o.workload.label} ({o.workload.minutes} min)", f"{n:,}", f"{o.receives:,}",
            f"{sum(t.wru.values()) / n:.3f}", f"{sum(t.rru.values()) / n:.3f}",
            f"{sum(t.invocations.values()) / n:.3f}", f"{t.events / n:.3f}",
            f"{(_sqs_requests(o) + sum(t.sqs_calls.values())) / n:.3f}", f"{_iot_chunks(o) / n:.3f}",
            f"{t.post_units / n:.3f}",
            f"{t.timestream_units / n:.3f}", f"{sum(bill.values()) / n * 1e6:,.2f}",
        ])  # fmt: skip
    return rows


def _by_table_rows(o: Outcome) -> list[list[str]]:
    keys = sorted(set(o.tally.wru) | set(o.tally.rru))
    calls: dict[str, Counter[str]] = defaultdict(Counter)
    for (function, operation), count in o.tally.dynamodb_calls.items():
        calls[function][operation] += count
    rows = [
        [function, table_name, f"{o.tally.wru[(function, table_name)] / o.readings:.3f}",
         f"{o.tally.rru[(function, table_name)] / o.readings:.3f}"]
        for function, table_name in keys
    ]  # fmt: skip
    rows += [[function, f"{o.tally.invocations[function]:,} invocations; DynamoDB requests: "
              + ", ".join(f"{op} {c:,}" for op, c in sorted(ops.items())), "", ""]
             for function, ops in sorted(calls.items())]  # fmt: skip
    return rows


def _bill_rows(o: Outcome, scale_to_month: float | None) -> list[list[str]]:
    bill = dollars(o)
    rows = [[line, f"{v / o.readings * 1e6:,.3f}", f"{v * scale_to_month:,.4f}" if scale_to_month else ""]
            for line, v in bill.items() if v]  # fmt: skip
    total = sum(bill.values())
    rows.append(
        [
            "**total**",
            f"**{total / o.readings * 1e6:,.3f}**",
            f"**{total * scale_to_month:,.4f}**" if scale_to_month else "",
        ]
    )
    return rows


def run(aws: LocalAws, scratch: Path, samples: int | None = None) -> str:
    sensors = seed(aws)
    meter = Meter(aws.endpoint)
    meter.install()
    # The first run starts at a quarter past an hour, so that each 60-minute run holds one sealing of the
    # site's hour (at ten past: ems.telemetry.store), the hourly cost of the hour and group items, and the
    # short runs after them none.
    start = (datetime.now(UTC) + timedelta(hours=1)).replace(minute=15, second=0, microsecond=0)
    outcomes = []
    for w in WORKLOADS:
        if w.subscriber:
            subscribe_one(w.minutes)
        outcomes.append(drive(aws, meter, w, start, sensors, "dynamodb"))
        if w.subscriber:
            unsubscribe_one()
        start += timedelta(minutes=w.minutes + 5)
    saved = {k: os.environ.get(k) for k in ("TELEMETRY_BACKEND", "TIMESTREAM_DATABASE", "TIMESTREAM_TABLE")}
    ingest_env = aws.functions["TelemetryIngestFunction"]["Environment"]["Variables"]
    original = dict(ingest_env)
    ingest_env.update(use_timestream(aws))
    _forget_stores(aws)
    try:
        stream = drive(aws, meter, TIMESTREAM_WORKLOAD, start, sensors, "timestream")
    finally:
        ingest_env.clear()
        ingest_env.update(original)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _forget_stores(aws)
    return section(outcomes, stream, aws.stack.parameters)


def _forget_stores(aws: LocalAws) -> None:
    from ems.core import settings

    settings.settings.cache_clear()
    module = aws._module(aws.functions["TelemetryIngestFunction"]["CodeUri"])
    module.stores.cache_clear()
    _fresh_clients()


def _ingest_wru(o: Outcome) -> int:
    return sum(v for (function, _table), v in o.tally.wru.items() if function == "TelemetryIngestFunction")


def section(outcomes: list[Outcome], stream: Outcome, parameters: Mapping[str, Any]) -> str:
    month = 30 * 24 * 60 / outcomes[0].workload.minutes  # the hour's counts x 720
    headline = outcomes[0]
    dynamo_ingest = _ingest_wru(headline) / headline.readings
    stream_ingest = _ingest_wru(stream) / stream.readings
    stream_store = stream.tally.timestream_units
    shortened = "; ".join(
        f"{o.workload.label}: {o.workload.minutes} min, {o.messages:,} messages" for o in [*outcomes, stream]
    )
    pace = sum(o.seconds for o in [*outcomes, stream]) / sum(o.receives for o in [*outcomes, stream])
    prices = "\n".join(f"- {text}" for _, text in PRICES.values())
    connection_month = DEVICES * 30 * 24 * 60 * PRICES["iot_connection_minute"][0]
    return f"""## The cost of a reading (`{NAME}`)

**Command:** `{COMMAND}`

{machine()}

**What:** a site of {DEVICES * SENSORS_PER_DEVICE} sensors on {DEVICES} devices; every interval each
device sends one message of its {SENSORS_PER_DEVICE} readings (one metric each: {SENSORS_PER_DEVICE - 1} `power_w`, and
one `temperature_c` with a threshold that the readings stay inside, so alerts evaluates and raises
nothing; no WebSocket subscriber, but in the workload that says one: a connection holding the site's
`site` and `sensors/*` topics). The messages go to TelemetryIngestFunction's `sqs_handler` in batches as the event source
mapping would make them, and every event it publishes goes, through the template's EventBridge rules,
to the functions they name (RealtimeFunction's fan-out, AlertsFunction's `evaluate_readings`, DevicesFunction's automation rules), all in
this process against the template's tables in a moto server, on simulated time (the ems clock at each
batch's arrival). Every DynamoDB request is counted by botocore hooks and priced in request units from
the items as stored (the rules in bench/cost.py's docstring); nothing is scaled but the building-month.

**Batching assumption** (TelemetryBatchSize {parameters["TelemetryBatchSize"]} and
TelemetryBatchingWindowSeconds {parameters["TelemetryBatchingWindowSeconds"]}, the template's defaults; the model
is for a window of 0): the poller invokes as soon as a receive returns, so messages sent at different
moments arrive in different invocations; messages sent at the same second are received together, up
to BatchSize. "Spread": the devices' clocks are evenly out of phase (one message per invocation);
"same second": all {DEVICES} send at once. Real fleets sit in between.

**Counted outside DynamoDB:** Lambda invocations of each function (ingest per receive, each rule's
target per event); EventBridge entries in 64 KB chunks; PostToConnection in 32 KB chunks; the
functions' own SQS and Timestream requests. Modelled per message, as the template wires it: SQS the
topic rule's SendMessage per message and the poller's ReceiveMessage and DeleteMessageBatch per
receive (payloads far below 64 KB); IoT Core per message its payload and topic in 5 KB chunks, one
rule triggered and one action (the SQS action) executed.

**Run lengths:** {shortened}. Moto took {pace:.2f} s an ingest invocation here (its consumers
included), so the runs shorter than an hour were shortened to fit; their figures are per reading as
measured (nothing multiplied; a short run's first minutes weigh more in it, where the first writes
of a bucket create its items). The first run starts at a quarter past an hour, so each 60-minute run
holds one sealing of the site's hour (ten past the hour: each series' hour item and the groups', made
from the quarter items), as every hour would; the shorter runs hold none.

Per reading (units and requests divided by readings; the last column is USD per million readings):

{table(["workload", "readings", "invocations of ingest", "WRU", "RRU", "Lambda invocations", "EventBridge entries", "SQS requests", "IoT messages", "WebSocket messages", "Timestream 1 KiB writes", "USD / million readings"], _per_reading_rows([*outcomes, stream]))}

### Where the units go: {headline.workload.label}, per reading

{table(["function", "table", "WRU", "RRU"], _by_table_rows(headline))}

### The bill: {headline.workload.label}

USD per million readings, and per building-month (this run's {headline.workload.minutes} minutes of
counts x {month:.0f}: 30 days of one message a device a minute). Free tiers not applied. Not in it: Lambda duration (GB-seconds: the
in-process durations against moto say nothing of Lambda's), CloudWatch Logs and metrics, storage,
the poller's empty receives when the queue is idle, and IoT connectivity
(20 devices always connected: {connection_month:.3f} USD a month).

{table(["line", "USD / million readings", "USD / building-month"], _bill_rows(headline, month))}

### DynamoDB against Timestream for the store's writes

The same workload ({stream.workload.label.split(",")[0]}, {stream.readings:,} readings) with
TelemetryBackend=timestream: {stream.tally.timestream_calls:,} WriteRecords calls of
{stream.tally.timestream_records:,} records, {stream.tally.timestream_bytes:,} bytes by Timestream's
write-size rule, **{stream_store:,} writes of 1 KiB** (each request's records summed and rounded up
to 1 KiB; the pricing page's "repeated dimensions charged once" would lower this, not modelled):
**{stream_store * PRICES["timestream_write"][0] / stream.readings * 1e6:,.3f} USD per million readings**.
The ingest function's DynamoDB writes: {dynamo_ingest:.3f} WRU per reading with the DynamoDB store,
{stream_ingest:.3f} with Timestream (the sensors' status stays in DynamoDB); the difference, the
DynamoDB store's own writes, is {dynamo_ingest - stream_ingest:.3f} WRU per reading:
**{(dynamo_ingest - stream_ingest) * PRICES["dynamodb_wru"][0] * 1e6:,.3f} USD per million readings**.

**Prices** (us-east-1, list, read {PRICES_READ}; the IoT rules-engine rates could not be confirmed in a
stored copy of the pricing page and are the latest published figures we know):
{prices}

Run times (moto, this machine): {", ".join(f"{o.workload.label} {o.seconds:.0f} s" for o in [*outcomes, stream])}.
"""
