"""Where readings and rollups live: the DynamoDB adapter of the `TelemetryStore` port (ems.telemetry.ports),
each sensor's newest reading read from it (`DynamoLatestReadings`), the sensors' status store of the
Timestream deployment (`SensorStatusStore`), and the telemetry dead-letter queue (`SqsDeadLetters`).

The adapter talks to DynamoDB through the low-level client, not PynamoDB (ems.core.tables says why that
is the exception): it is the measured hot path (`python -m bench telemetry` for its speed, `python -m
bench cost` for what a reading costs). Requests are built as dicts and sent by a client that skips
botocore's own check of each request (ems.core.aws: DynamoDB checks them anyway).

Items:
- raw table, a quarter hour of a series (sensor and metric): pk "<site>#<sensor>#<metric>#q", sk the
  quarter's start (epoch ms, 13 digits), v (version: one more at every write), d (its readings as compact
  JSON: offset in the quarter, value, and the cell, the sensor's room and type when it was stored,
  ems.telemetry.hourly), expires_at_epoch (the quarter's end + RAW_RETENTION_DAYS) for TTL. These are the
  raw readings and, summed when read, the open hours' buckets;
- raw table, a series: pk "<site>#series", sk "<sensor>#<metric>", h: its newest hour with readings (where
  its newest reading is, and which series an hour of the site has);
- rollups table, an hour of a series: pk "<site>#<sensor>#<metric>#hour", sk the hour's start, b (basis,
  below), q: its quarters' buckets by cell (count, exact sum, min, max, last, ts of last) as compact JSON.
  15 min and 1 h buckets of a sealed hour (below) are read from these, 1 d buckets merge 24. No TTL;
- rollups table, an hour of a group (the site, a room): pk "<site>#*<scope>#<metric>#hour", sk the hour,
  b, q: its quarters by sensor type;
- rollups table, the site's seal: pk "<site>#*seal", sk 0, t (every hour up to t is sealed), p and ps (the
  hour being sealed and since when, real epoch ms), v.
JSON in one string attribute, not nested maps: DynamoDB never looks inside, and one string is one
json.loads where nested maps of numbers cost botocore and moto a typed value each.

A reading is exactly once in its quarter item: a batch reads its quarters (consistent), adds the readings
each does not hold (the first of two equal readings stays; the others are duplicates) and puts it on
condition that its version is the one read. A writer that loses (another moved the quarter meanwhile) reads
it again and adds what is still missing. The readings and their 15-minute bucket are one item, so nothing
can hold one without the other. With one reading a series in each message, a reading costs one write unit
(two while a quarter passes 1 KB: one reading every 5 s); dense batches (DENSE_READINGS_PER_ITEM a quarter
and more, as a history upload) go 100 quarters to a transaction, one request instead of 100, at twice the
units an item, shared by its readings.

Sealing, exactly once. An hour's series and group items are made from its quarter items once it is over
plus a grace, by the write that finds it due, under the site's seal item: (a) mark the hour pending, (b)
read the series and their quarters, put each series' hour item, then read those and put the groups' (all
consistent reads), (c) move t to the hour. A read takes hours up to t from hour and group items, later
ones (the pending one too) from the quarter items. A writer reads the seal after its quarter puts and its
series pointers; when its hour is sealed or pending it makes that hour's items of its series, then of their
groups, itself. Either its read of the seal came after the mark, or the sealer's reads came after its
writes: the items count its readings either way. Hour and group items are put on condition that their
basis grows (the summed versions of what they were made from: versions only grow), so of two makers the
one that read later never loses to the one that read earlier; a maker that loses reads again until the
stored basis is what it reads. A sealer that stops between (a) and (c) is taken over after SEAL_STALE_MS.
A reading is refused when its hour began before the raw retention (ems.telemetry.validation), so an hour
is never made again from quarters that TTL is deleting.

Reads name no ProjectionExpression: DynamoDB charges the whole item whatever a read returns.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from ems.core.aws import client, error_code
from ems.core.clock import Clock, utc_now
from ems.core.errors import TooManyRequests
from ems.core.observability import logger
from ems.core.settings import settings
from ems.registry.status import Heard
from ems.telemetry import groups, hourly
from ems.telemetry.hourly import HOUR_MS, QUARTER_MS, Quarters, cell, hour_of
from ems.telemetry.models import Reading
from ems.telemetry.ports import WriteOutcome
from ems.telemetry.rollup import Bucket, bucket_start

BATCH_GET_KEYS = 100
MAX_TRANSACTION_ITEMS = 100
MAX_ATTEMPTS = 10
BACKOFF_BASE_S = 0.02
BACKOFF_CAP_S = 1.0
READ_WORKERS = 16
# A batch that adds at least this many readings a quarter on average puts its quarters in transactions.
DENSE_READINGS_PER_ITEM = 4
# An hour is sealed this long after it ends, so that readings a little late (a device's clock, a queue's
# retry) still reach the quarters before the hour's items are made.
SEAL_GRACE_MS = 10 * 60_000
SEAL_HOURS_PER_WRITE = 2  # a write seals at most this many hours; the next writes go on
SEAL_STALE_MS = 60_000  # a pending seal older than this (real time) is taken over
# Open (unsealed) hours of a site read by BatchGetItem up to this many, by a Query per series beyond.
OPEN_HOURS_BY_GET = 3

Sleep = Callable[[float], None]
QuarterKey = tuple[str, str, str, int]  # site, sensor, metric, quarter start
SeriesKey = tuple[str, str, str]  # site, sensor, metric
T = TypeVar("T")
R = TypeVar("R")


def _dynamodb() -> Any:
    """The stores' DynamoDB client: their requests are built here and tested, so botocore's own check
    of each one is skipped (ems.core.aws; DynamoDB checks every request anyway)."""
    return client("dynamodb", validated=False)


# ---------------------------------------------------------------- keys


def quarter_pk(site_id: str, sensor_id: str, metric: str) -> str:
    return f"{site_id}#{sensor_id}#{metric}#q"


def hour_pk(site_id: str, sensor_id: str, metric: str) -> str:
    return f"{site_id}#{sensor_id}#{metric}#hour"


def series_pk(site_id: str) -> str:
    """Quarter keys have a sensor and a metric after the site, so they never meet this one."""
    return f"{site_id}#series"


def seal_pk(site_id: str) -> str:
    return f"{site_id}#*seal"


def _number(value: float | int | Decimal) -> dict[str, str]:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def _sk(start_ms: int) -> dict[str, str]:
    return {"S": f"{start_ms:013d}"}


# ---------------------------------------------------------------- items


@dataclass(frozen=True)
class Quarter:
    """A quarter item as read: its version (0: no item yet) and its readings, ts -> (value, cell)."""

    version: int = 0
    readings: dict[int, tuple[float, str]] = field(default_factory=dict)


def quarter_item(key: QuarterKey, version: int, readings: Mapping[int, tuple[float, str]]) -> dict[str, Any]:
    """The quarter's item at `version`, holding `readings`."""
    site_id, sensor_id, metric, start = key
    cells = sorted({c for _, c in readings.values()})
    index = {c: i for i, c in enumerate(cells)}
    body = {"c": cells, "r": [[ts - start, value, index[c]] for ts, (value, c) in sorted(readings.items())]}
    return {
        "pk": {"S": quarter_pk(site_id, sensor_id, metric)}, "sk": _sk(start), "v": _number(version),
        "d": {"S": json.dumps(body, separators=(",", ":"))},
        "expires_at_epoch": _number((start + QUARTER_MS) // 1000 + settings().raw_retention_days * 86_400),
    }  # fmt: skip


def _quarter(item: Mapping[str, Any]) -> Quarter:
    start = int(item["sk"]["S"])
    body = json.loads(item["d"]["S"])
    cells = body["c"]
    return Quarter(int(item["v"]["N"]), {start + offset: (value, cells[c]) for offset, value, c in body["r"]})


def _quarters_attrs(quarters: Quarters) -> dict[str, Any]:
    rows = [[q, key, b.count, str(total), b.min, b.max, b.last, b.last_ts]
            for q, cells in sorted(quarters.items()) for key, (b, total) in sorted(cells.items())]  # fmt: skip
    return {"q": {"S": json.dumps(rows, separators=(",", ":"))}}


def _quarters(item: Mapping[str, Any]) -> Quarters:
    """The quarters of an hour or group item: [[quarter, cell, count, "exact sum", min, max, last, ts of
    last], ...]."""
    out: Quarters = {}
    for q, key, count, total, low, high, last, last_ts in json.loads(item["q"]["S"]):
        exact = Decimal(total)
        out.setdefault(q, {})[key] = (
            Bucket(count=count, sum=float(exact), min=low, max=high, last=last, last_ts=last_ts),
            exact,
        )
    return out


def _hour_quarters(quarters: Iterable[Quarter]) -> Quarters:
    """An hour's quarters from its quarter items."""
    return hourly.quarters_of([(ts, v, c) for q in quarters for ts, (v, c) in q.readings.items()])


@dataclass(frozen=True)
class Made:
    """An hour or group item as read: its basis (0: none yet) and its quarters."""

    basis: int
    quarters: Quarters


@dataclass(frozen=True)
class Seal:
    through: int  # every hour up to this one is sealed
    pending: int | None  # the hour being sealed
    since_ms: int  # when it was marked pending (real time)
    version: int


def _seal(item: Mapping[str, Any]) -> Seal:
    return Seal(
        through=int(item["t"]["N"]),
        pending=int(item["p"]["N"]) if "p" in item else None,
        since_ms=int(item["ps"]["N"]) if "ps" in item else 0,
        version=int(item["v"]["N"]),
    )


# ---------------------------------------------------------------- the DynamoDB adapter


class DynamoTelemetryStore:
    def __init__(self, sleep: Sleep = time.sleep, now: Clock = utc_now) -> None:
        """`now`: the clock that says which hours are over (sealing)."""
        self._sleep = sleep
        self._now = now

    @property
    def _raw_table(self) -> str:
        return settings().telemetry_table

    @property
    def _rollups_table(self) -> str:
        return settings().rollups_table

    # ------------------------------------------------------------ writes

    def write(self, readings: Sequence[Reading]) -> WriteOutcome:
        outcome = WriteOutcome()
        by_quarter: dict[QuarterKey, dict[int, Reading]] = {}
        for r in readings:  # the first of two equal readings is the one
            by_quarter.setdefault((r.site_id, r.sensor_id, r.metric, r.ts_ms - r.ts_ms % QUARTER_MS), {}).setdefault(
                r.ts_ms, r
            )  # fmt: skip
        if not by_quarter:
            return outcome
        newest: dict[SeriesKey, int] = {}
        for site_id, sensor_id, metric, start in by_quarter:
            series = (site_id, sensor_id, metric)
            newest[series] = max(hour_of(start), newest.get(series, 0))
        quarters, pointers = self._quarters_and_pointers(list(by_quarter), list(newest))

        # A dense batch (a history upload) puts its quarters and pointers in transactions.
        dense = len(by_quarter) > 1 and len(readings) >= DENSE_READINGS_PER_ITEM * len(by_quarter)
        pending = list(by_quarter)
        for attempt in range(MAX_ATTEMPTS):
            puts: dict[QuarterKey, tuple[Quarter, list[Reading], list[Reading]]] = {}
            for key in pending:
                held = quarters[key]
                added = [r for ts, r in by_quarter[key].items() if ts not in held.readings]
                there = [r for ts, r in by_quarter[key].items() if ts in held.readings]
                if added:
                    puts[key] = (held, added, there)
                else:
                    outcome.duplicates.update((r.sensor_id, r.metric, r.ts_ms) for r in there)
            lost = self._put_quarters({key: (held, added) for key, (held, added, _) in puts.items()}, dense)
            for key, (_, added, there) in puts.items():
                if key not in lost:
                    outcome.created += len(added)
                    outcome.duplicates.update((r.sensor_id, r.metric, r.ts_ms) for r in there)
            if not lost:
                break
            # Other writers moved these quarters since they were read: read them again and add what
            # is still missing.
            self._sleep(_backoff(attempt))
            quarters.update(self._get_quarters(sorted(lost)))
            pending = sorted(lost)
        else:
            raise TooManyRequests("telemetry storage is busy; retry the batch (it is safe to send again)")

        self._advance(newest, pointers, dense)
        for site_id in sorted({k[0] for k in by_quarter}):
            self._after_write(site_id, [k for k in by_quarter if k[0] == site_id])
        return outcome

    def _quarters_and_pointers(
        self, keys: list[QuarterKey], series: list[SeriesKey]
    ) -> tuple[dict[QuarterKey, Quarter], dict[SeriesKey, int]]:
        """The quarter items (consistent: their versions condition the puts) and the series' pointers, in
        the same requests."""
        pointer_keys = [{"pk": {"S": series_pk(s)}, "sk": {"S": f"{sensor}#{m}"}} for s, sensor, m in series]
        found = _batch_get({self._raw_table: (_quarter_keys(keys) + pointer_keys, True)}, self._sleep)
        quarters = dict.fromkeys(keys, Quarter())
        pointers: dict[SeriesKey, int] = {}
        by_series = {(k["pk"]["S"], k["sk"]["S"]): key for k, key in zip(pointer_keys, series, strict=True)}
        for item in found[self._raw_table]:
            if "h" in item:
                pointers[by_series[(item["pk"]["S"], item["sk"]["S"])]] = int(item["h"]["N"])
            else:
                quarters[_quarter_key(item)] = _quarter(item)
        return quarters, pointers

    def _get_quarters(self, keys: Sequence[QuarterKey]) -> dict[QuarterKey, Quarter]:
        """Quarter items, consistent (a missing one is Quarter())."""
        found = dict.fromkeys(keys, Quarter())
        table = self._raw_table
        for item in _batch_get({table: (_quarter_keys(keys), True)}, self._sleep)[table]:
            found[_quarter_key(item)] = _quarter(item)
        return found

    def _put_quarters(
        self, puts: Mapping[QuarterKey, tuple[Quarter, list[Reading]]], dense: bool
    ) -> set[QuarterKey]:
        """Put each quarter with its added readings on condition that it is still the version read; the
        keys whose condition failed (moved meanwhile: to read again). A dense batch's go 100 to a transaction
        (one refused: all its keys are read again)."""
        requests: dict[QuarterKey, dict[str, Any]] = {}
        for key, (held, added) in puts.items():
            readings = dict(held.readings)
            for r in added:
                readings[r.ts_ms] = (r.value, cell(r.room, r.sensor_type))
            put: dict[str, Any] = {
                "TableName": self._raw_table,
                "Item": quarter_item(key, held.version + 1, readings),
            }
            if held.version:
                put["ConditionExpression"] = "v = :v"
                put["ExpressionAttributeValues"] = {":v": _number(held.version)}
            else:
                put["ConditionExpression"] = "attribute_not_exists(pk)"
            requests[key] = put
        keys = list(requests)
        if dense and len(keys) > 1:
            parts = _in_parallel(
                lambda c: [] if self._transact([{"Put": requests[k]} for k in c]) else c,
                _chunks(keys, MAX_TRANSACTION_ITEMS),
            )
            return {k for part in parts for k in part}

        def refused(key: QuarterKey) -> bool:
            return _refused(_dynamodb().put_item, **requests[key]) is not None

        return {k for k, lost in zip(keys, _in_parallel(refused, keys), strict=True) if lost}

    def _advance(
        self, newest: Mapping[SeriesKey, int], pointers: Mapping[SeriesKey, int], dense: bool
    ) -> None:
        """Move each series' pointer to its newest hour with readings (forward only); a dense batch's in
        transactions of 100 (one refused goes again pointer by pointer)."""
        updates = [
            {"TableName": self._raw_table, "Key": {"pk": {"S": series_pk(site_id)}, "sk": {"S": f"{sensor_id}#{metric}"}},
             "UpdateExpression": "SET h = :h", "ConditionExpression": "attribute_not_exists(h) OR h < :h",
             "ExpressionAttributeValues": {":h": _number(hour)}}
            for (site_id, sensor_id, metric), hour in newest.items() if pointers.get((site_id, sensor_id, metric), -1) < hour
        ]  # fmt: skip

        def chunk(part: list[dict[str, Any]]) -> None:
            if not (dense and len(part) > 1 and self._transact([{"Update": u} for u in part])):
                for update in part:
                    _refused(_dynamodb().update_item, **update)  # refused: a newer hour is there

        _in_parallel(chunk, _chunks(updates, MAX_TRANSACTION_ITEMS))

    # ------------------------------------------------------------ sealing

    def _after_write(self, site_id: str, keys: list[QuarterKey]) -> None:
        """After a site's quarters moved: make the items of the sealed (or pending) hours they are in,
        then seal the hours that are due."""
        seal = self._get_seal(site_id)
        if seal is None:
            seal = self._create_seal(site_id, min(hour_of(k[3]) for k in keys) - HOUR_MS)
        touched: dict[int, set[tuple[str, str]]] = {}
        for _, sensor_id, metric, start in keys:
            hour = hour_of(start)
            if hour <= seal.through or hour == seal.pending:
                touched.setdefault(hour, set()).add((sensor_id, metric))
        for hour, series in sorted(touched.items()):
            self._make_hours(site_id, hour, sorted(series))
            self._make_groups(site_id, hour, {metric for _, metric in series})
        self._seal_due(site_id, seal)

    def _get_seal(self, site_id: str) -> Seal | None:
        item = _dynamodb().get_item(
            TableName=self._rollups_table, Key={"pk": {"S": seal_pk(site_id)}, "sk": {"N": "0"}}, ConsistentRead=True
        ).get("Item")  # fmt: skip
        return None if item is None else _seal(item)

    def _create_seal(self, site_id: str, through: int) -> Seal:
        """A site's first write: its hours before its first readings' are sealed (they have none)."""
        if _refused(
            _dynamodb().put_item, TableName=self._rollups_table,
            Item={"pk": {"S": seal_pk(site_id)}, "sk": {"N": "0"}, "t": _number(through), "v": {"N": "1"}},
            ConditionExpression="attribute_not_exists(pk)",
        ) is not None:  # fmt: skip
            found = self._get_seal(site_id)  # another first write made it
            if found is not None:
                return found
        return Seal(through, None, 0, 1)

    def _seal_due(self, site_id: str, seal: Seal) -> None:
        due = hour_of(int(self._now().timestamp() * 1000) - SEAL_GRACE_MS) - HOUR_MS  # the newest hour over
        for _ in range(SEAL_HOURS_PER_WRITE):
            if seal.pending is not None and _real_ms() - seal.since_ms < SEAL_STALE_MS:
                return  # another writer is sealing it
            hour = seal.pending if seal.pending is not None else seal.through + HOUR_MS
            if hour > due:
                return
            marked = self._update_seal(
                site_id, seal, "SET p = :p, ps = :ps, v = :next", {":p": _number(hour), ":ps": _number(_real_ms())}
            )  # fmt: skip
            if not marked:
                return  # another writer marked it first
            self.seal_hour(site_id, hour)
            pending = Seal(seal.through, hour, 0, seal.version + 1)
            if not self._update_seal(
                site_id, pending, "SET t = :p, v = :next REMOVE p, ps", {":p": _number(hour)}
            ):
                return  # taken over meanwhile: the taker finishes it
            logger.info("sealed", extra={"site": site_id, "hour_ms": hour})
            seal = Seal(hour, None, 0, seal.version + 2)

    def _update_seal(self, site_id: str, seal: Seal, expression: str, values: dict[str, Any]) -> bool:
        return _refused(
            _dynamodb().update_item, TableName=self._rollups_table, Key={"pk": {"S": seal_pk(site_id)}, "sk": {"N": "0"}},
            UpdateExpression=expression, ConditionExpression="v = :v",
            ExpressionAttributeValues={**values, ":v": _number(seal.version), ":next": _number(seal.version + 1)},
        ) is None  # fmt: skip

    def seal_hour(self, site_id: str, hour: int) -> None:
        """Make one hour's items of the site: each series' hour, then each group's."""
        series = [
            (sensor_id, metric) for sensor_id, metric, newest in self._series(site_id) if newest >= hour
        ]
        self._make_hours(site_id, hour, series)
        self._make_groups(site_id, hour, None)

    def _make_hours(self, site_id: str, hour: int, series: Sequence[tuple[str, str]]) -> None:
        """Each series' hour item from its four quarter items (basis: their summed versions)."""

        def make() -> dict[tuple[str, ...], tuple[int, dict[str, Any]]]:
            keys = [
                (site_id, sensor_id, metric, hour + q * QUARTER_MS)
                for sensor_id, metric in series
                for q in range(4)
            ]
            found = self._get_quarters(keys)
            out: dict[tuple[str, ...], tuple[int, dict[str, Any]]] = {}
            for sensor_id, metric in series:
                parts = [found[(site_id, sensor_id, metric, hour + q * QUARTER_MS)] for q in range(4)]
                basis = sum(p.version for p in parts)
                if basis:
                    item = {"pk": {"S": hour_pk(site_id, sensor_id, metric)}, "sk": _number(hour),
                            **_quarters_attrs(_hour_quarters(parts))}  # fmt: skip
                    out[(sensor_id, metric)] = (basis, item)
            return out

        self._settle(make)

    def _make_groups(self, site_id: str, hour: int, metrics: set[str] | None) -> None:
        """Each group's hour item (of `metrics`, or all) from its series' hour items (basis: their summed
        bases), the series being those with readings in or after the hour."""

        def make() -> dict[tuple[str, ...], tuple[int, dict[str, Any]]]:
            series = [(sensor_id, m) for sensor_id, m, newest in self._series(site_id)
                      if newest >= hour and (metrics is None or m in metrics)]  # fmt: skip
            found = self._get_made(self._rollups_table, [hour_pk(site_id, s, m) for s, m in series], hour)
            out: dict[tuple[str, ...], tuple[int, dict[str, Any]]] = {}
            for metric in sorted({m for _, m in series}):
                of_metric = [found[hour_pk(site_id, s, m)] for s, m in series if m == metric]
                basis = sum(h.basis for h in of_metric)
                for scope, quarters in groups.group_hours(h.quarters for h in of_metric).items():
                    item = {"pk": {"S": groups.group_pk(site_id, scope, metric)}, "sk": _number(hour),
                            **_quarters_attrs(quarters)}  # fmt: skip
                    out[(metric, scope)] = (basis, item)
            return out

        self._settle(make)

    def _settle(self, make: Callable[[], dict[tuple[str, ...], tuple[int, dict[str, Any]]]]) -> None:
        """Put the items `make` makes from a read, each on condition that its basis grows. One that holds
        a basis this read does not pass was made from a later read: read again, until what is stored is
        what the read makes (its basis is this read's)."""
        stored: dict[tuple[str, ...], int] = {}  # key -> basis held by a newer maker
        for attempt in range(MAX_ATTEMPTS):
            made = make()
            todo = {k: m for k, m in made.items() if not attempt or (k in stored and stored[k] != m[0])}
            lost = self._put_all_based(todo)
            if not lost:
                return
            stored = lost
            self._sleep(_backoff(attempt))
        raise TooManyRequests("the site's rollups are busy; retry the batch (it is safe to send again)")

    def _put_all_based(
        self, todo: Mapping[tuple[str, ...], tuple[int, dict[str, Any]]]
    ) -> dict[tuple[str, ...], int]:
        """Put each item on condition that its basis grows; those refused, with the basis that stays.
        Several go 100 to a transaction (an hour of a site's series: one request, not one a series); a
        transaction refused goes again item by item, which says who holds what."""

        def chunk(part: list[tuple[str, ...]]) -> dict[tuple[str, ...], int]:
            if len(part) > 1 and self._transact(
                [{"Put": _based_put(self._rollups_table, *todo[k])} for k in part]
            ):
                return {}
            held = {k: self._put_based(*todo[k]) for k in part}
            return {k: b for k, b in held.items() if b is not None}

        return {
            k: b
            for found in _in_parallel(chunk, _chunks(list(todo), MAX_TRANSACTION_ITEMS))
            for k, b in found.items()
        }

    def _put_based(self, basis: int, item: dict[str, Any]) -> int | None:
        """None when put; else the basis of the item that stays (made from a read at least as new)."""
        held = _refused(
            _dynamodb().put_item,
            **_based_put(self._rollups_table, basis, item),
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        if held is None:
            return None
        return int(held["b"]["N"]) if "b" in held else basis

    def _transact(self, items: list[dict[str, Any]]) -> bool:
        """One transaction; False when it is cancelled (a condition failed, or another transaction held
        an item): then nothing of it was written."""
        try:
            _dynamodb().transact_write_items(TransactItems=items)
        except Exception as exc:
            if error_code(exc) not in ("TransactionCanceledException", "TransactionConflictException"):
                raise
            return False
        return True

    def _get_made(self, table: str, pks: Sequence[str], hour: int) -> dict[str, Made]:
        """Hour or group items of one hour by pk, consistent (a missing one is Made(0, {}))."""
        found = dict.fromkeys(pks, Made(0, {}))
        keys = [{"pk": {"S": pk}, "sk": _number(hour)} for pk in dict.fromkeys(pks)]
        for item in _batch_get({table: (keys, True)}, self._sleep)[table]:
            found[item["pk"]["S"]] = Made(int(item["b"]["N"]), _quarters(item))
        return found

    def _series(self, site_id: str) -> list[tuple[str, str, int]]:
        """(sensor, metric, newest hour) of every series of the site."""
        return [(*_series_of(item), int(item["h"]["N"])) for item in _query(
            self._raw_table, series_pk(site_id), {"S": " "}, {"S": "\U0010ffff"}, consistent=True)]  # fmt: skip

    # ------------------------------------------------------------ reads

    def read_raw(
        self, site_id: str, sensor_ids: Sequence[str], metric: str, start_ms: int, end_ms: int, limit: int
    ) -> dict[str, list[tuple[int, float]]]:
        low, high = bucket_start(start_ms, "15m"), bucket_start(end_ms - 1, "15m")

        def one(sensor_id: str) -> list[tuple[int, float]]:
            # Past limit + 2 quarters, more than `limit` readings are in range (all but the first and the
            # last quarter are whole in it, and a quarter item holds a reading at least).
            points: list[tuple[int, float]] = []
            for item in _query(self._raw_table, quarter_pk(site_id, sensor_id, metric), _sk(low), _sk(high),
                               enough=limit + 2):  # fmt: skip
                points += sorted(
                    (ts, v) for ts, (v, _) in _quarter(item).readings.items() if start_ms <= ts < end_ms
                )
            return points[: limit + 1]

        return dict(zip(sensor_ids, _in_parallel(one, sensor_ids), strict=True))

    def _sealed_until(self, site_id: str, first: int, last: int) -> int:
        """The end of the sealed hours among [first, last): read from hour and group items before it, from
        quarter items after."""
        seal = self._get_seal(site_id)
        return first if seal is None else min(max(first, seal.through + HOUR_MS), last)

    def read_rollups(
        self,
        site_id: str,
        sensor_ids: Sequence[str],
        metric: str,
        resolution: str,
        start_ms: int,
        end_ms: int,
    ) -> dict[str, dict[int, Bucket]]:
        first, last = hourly.hours_between(start_ms, end_ms, resolution)
        split = self._sealed_until(site_id, first, last)

        def one(sensor_id: str) -> dict[int, Bucket]:
            hours: dict[int, Quarters] = {}
            if split > first:
                for item in _query(self._rollups_table, hour_pk(site_id, sensor_id, metric), _number(first),
                                   _number(split - 1)):  # fmt: skip
                    hours[int(item["sk"]["N"])] = _quarters(item)
            if split < last:
                for item in _query(self._raw_table, quarter_pk(site_id, sensor_id, metric), _sk(split),
                                   _sk(last - QUARTER_MS)):  # fmt: skip
                    start = int(item["sk"]["S"])
                    hours.setdefault(hour_of(start), {}).update(_hour_quarters([_quarter(item)]))
            found = hourly.buckets(hours, resolution)
            return {start: b for start, b in found.items() if start_ms <= start < end_ms}

        return dict(zip(sensor_ids, _in_parallel(one, sensor_ids), strict=True))

    def read_groups(
        self, site_id: str, scopes: Sequence[str], metric: str, resolution: str, start_ms: int, end_ms: int
    ) -> dict[str, dict[int, dict[str, Bucket]]]:
        """Each scope's buckets whose start is in [start_ms, end_ms), by start, then by sensor type: the
        sealed hours from the group items, the others from the quarter items of the site's series."""
        first, last = hourly.hours_between(start_ms, end_ms, resolution)
        split = self._sealed_until(site_id, first, last)
        wanted = set(scopes)

        def sealed(scope: str) -> dict[int, Quarters]:
            if split <= first:
                return {}
            items = _query(self._rollups_table, groups.group_pk(site_id, scope, metric), _number(first),
                           _number(split - 1))  # fmt: skip
            return {int(item["sk"]["N"]): _quarters(item) for item in items}

        found = dict(zip(scopes, _in_parallel(sealed, scopes), strict=True))
        if split < last:
            for hour, by_scope in self._open_hours(site_id, metric, split, last).items():
                for scope, quarters in by_scope.items():
                    if scope in wanted:
                        found[scope][hour] = quarters
        return {
            scope: {start: b for start, b in groups.by_type(hours, resolution).items() if start_ms <= start < end_ms}
            for scope, hours in found.items()
        }  # fmt: skip

    def _open_hours(self, site_id: str, metric: str, start: int, end: int) -> dict[int, dict[str, Quarters]]:
        """The groups' quarters of the hours in [start, end) made from the series' quarter items, by hour."""
        series = [sensor for sensor, m, newest in self._series(site_id) if m == metric and newest >= start]
        per_hour: dict[int, list[Quarter]] = {}
        if (end - start) // HOUR_MS <= OPEN_HOURS_BY_GET:
            keys = [(site_id, s, metric, q) for s in series for q in range(start, end, QUARTER_MS)]
            for (_, _, _, q_start), quarter in self._get_quarters(keys).items():
                if quarter.version:
                    per_hour.setdefault(hour_of(q_start), []).append(quarter)
        else:

            def one(sensor_id: str) -> list[dict[str, Any]]:
                return _query(self._raw_table, quarter_pk(site_id, sensor_id, metric), _sk(start),
                              _sk(end - QUARTER_MS), consistent=True)  # fmt: skip

            for items in _in_parallel(one, series):
                for item in items:
                    per_hour.setdefault(hour_of(int(item["sk"]["S"])), []).append(_quarter(item))
        return {
            h: groups.group_hours(_hour_quarters([q]) for q in quarters) for h, quarters in per_hour.items()
        }


# ---------------------------------------------------------------- plumbing


def _based_put(table: str, basis: int, item: dict[str, Any]) -> dict[str, Any]:
    """A put of an item made from a read whose basis is `basis`, on condition that the basis grows."""
    return {
        "TableName": table, "Item": {**item, "b": _number(basis)},
        "ConditionExpression": "attribute_not_exists(pk) OR b < :b", "ExpressionAttributeValues": {":b": _number(basis)},
    }  # fmt: skip


def _refused(write: Callable[..., Any], **request: Any) -> dict[str, Any] | None:
    """write(**request), a conditional write: None when written; when its condition refused it, the item
    that stays (its old image when the request asks for one, else {}). Other errors are raised."""
    try:
        write(**request)
    except Exception as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
        return getattr(exc, "response", {}).get("Item") or {}
    return None


def _chunks(items: list[T], size: int) -> list[list[T]]:
    """`items` in runs of `size` (the last shorter): a request's most keys or items."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def _quarter_keys(keys: Sequence[QuarterKey]) -> list[dict[str, Any]]:
    return [{"pk": {"S": quarter_pk(s, sensor, m)}, "sk": _sk(q)} for s, sensor, m, q in keys]


def _quarter_key(item: Mapping[str, Any]) -> QuarterKey:
    site_id, sensor_id, metric, _ = item["pk"]["S"].rsplit("#", 3)
    return site_id, sensor_id, metric, int(item["sk"]["S"])


def _series_of(item: Mapping[str, Any]) -> tuple[str, str]:
    sensor_id, metric = item["sk"]["S"].rsplit("#", 1)
    return sensor_id, metric


def _batch_get(
    requests: Mapping[str, tuple[list[dict[str, Any]], bool]], sleep: Sleep = time.sleep
) -> dict[str, list[dict[str, Any]]]:
    """BatchGetItem of any number of keys of one or more tables (table -> (keys, consistent)), 100 keys a
    call, calls side by side, unprocessed keys retried with backoff. Items by table."""
    flat = [(table, key) for table, (keys, _) in requests.items() for key in keys]

    def chunk(wanted: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
        request: dict[str, Any] = {}
        for table, key in wanted:
            request.setdefault(table, {"Keys": [], "ConsistentRead": requests[table][1]})["Keys"].append(key)
        found: list[tuple[str, dict[str, Any]]] = []
        for attempt in range(MAX_ATTEMPTS):
            answer = _dynamodb().batch_get_item(RequestItems=request)
            found += [(table, item) for table, items in answer.get("Responses", {}).items() for item in items]
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                return found
            sleep(_backoff(attempt))
        raise TooManyRequests("telemetry storage is busy; retry the batch (it is safe to send again)")

    out: dict[str, list[dict[str, Any]]] = {table: [] for table in requests}
    for found in _in_parallel(chunk, _chunks(flat, BATCH_GET_KEYS)):
        for table, item in found:
            out[table].append(item)
    return out


def _query(
    table: str,
    pk: str,
    low: dict[str, str],
    high: dict[str, str],
    consistent: bool = False,
    enough: int | None = None,
) -> list[dict[str, Any]]:
    """Every item of `pk` with sk in [low, high], page after page (or until more than `enough`)."""
    items: list[dict[str, Any]] = []
    request: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
        "ExpressionAttributeValues": {":pk": {"S": pk}, ":low": low, ":high": high},
    }
    if consistent:
        request["ConsistentRead"] = True
    while True:
        answer = _dynamodb().query(**request)
        items.extend(answer.get("Items", []))
        last = answer.get("LastEvaluatedKey")
        if not last or (enough is not None and len(items) > enough):
            return items
        request["ExclusiveStartKey"] = last


def _real_ms() -> int:
    """Real time, not the ems clock: how long a sealer has been at it (the local cloud's clock may run
    faster than the sealer)."""
    return int(time.time() * 1000)


def _backoff(attempt: int) -> float:
    """Seconds to wait before attempt `attempt + 1`: exponential, capped, with jitter."""
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt) * random.uniform(0.5, 1.0)


def _in_parallel(work: Callable[[T], R], inputs: Sequence[T]) -> list[R]:
    """work(x) for each input, in order; in threads of a pool of its own when there is more than one
    (I/O-bound calls). A call from one of those threads runs in it (nested calls never wait on a pool)."""
    if len(inputs) <= 1 or threading.current_thread().name.startswith("ems-store"):
        return [work(x) for x in inputs]
    with ThreadPoolExecutor(
        max_workers=min(READ_WORKERS, len(inputs)), thread_name_prefix="ems-store"
    ) as pool:
        return list(pool.map(work, inputs))


# ---------------------------------------------------------------- each sensor's newest reading


class DynamoLatestReadings:
    """Each sensor's newest reading (`LatestReadings`), read where the DynamoDB store keeps it: a series'
    pointer names its newest hour, whose quarter items hold the reading. Nothing is written a reading for
    it (the store moves a pointer once an hour a series)."""

    def get(self, site_id: str, sensor_ids: Iterable[str]) -> dict[str, Heard]:
        wanted = set(sensor_ids)
        if not wanted:
            return {}
        table = settings().telemetry_table
        if len(wanted) <= 4:  # a few sensors: their own series; else the site's, in one query
            found = [item for sensor_id in sorted(wanted) for item in _query(
                table, series_pk(site_id), {"S": f"{sensor_id}#"}, {"S": f"{sensor_id}#\U0010ffff"})]  # fmt: skip
        else:
            found = _query(table, series_pk(site_id), {"S": " "}, {"S": "\U0010ffff"})
        keys: list[QuarterKey] = []
        for item in found:
            sensor_id, metric = _series_of(item)
            if sensor_id in wanted:
                hour = int(item["h"]["N"])
                keys += [(site_id, sensor_id, metric, hour + q * QUARTER_MS) for q in range(4)]
        newest: dict[tuple[str, str], tuple[int, float]] = {}
        for item in _batch_get({table: (_quarter_keys(keys), False)})[table]:
            _, sensor_id, metric, _ = _quarter_key(item)
            for ts, (value, _cell) in _quarter(item).readings.items():
                held = newest.get((sensor_id, metric))
                if held is None or ts > held[0]:
                    newest[(sensor_id, metric)] = (ts, value)
        out: dict[str, Heard] = {}
        for (sensor_id, metric), (ts, value) in sorted(newest.items()):
            heard = out.get(sensor_id)
            if heard is None or ts > heard.ts_ms:
                out[sensor_id] = Heard(sensor_id, ts, {metric: value})
            elif ts == heard.ts_ms:
                heard.metrics[metric] = value
        return out


# ---------------------------------------------------------------- sensor status (Timestream deployments)


def status_pk(site_id: str) -> str:
    """Status items share the raw table: pk "<site>#status" (quarter keys have a sensor and a metric after
    the site, so they never meet it), sk the sensor id; no TTL attribute, so they stay."""
    return f"{site_id}#status"


class SensorStatusStore:
    """Each sensor's newest reading (ts and metrics), one item per sensor, moved only forward in time:
    what a deployment that keeps readings in Timestream reads as `LatestReadings` (the DynamoDB store
    has them in its quarters: `DynamoLatestReadings`)."""

    @property
    def _table(self) -> str:
        return settings().telemetry_table

    def record(self, site_id: str, heard: Sequence[Heard]) -> int:
        """Move each sensor's item to its newest reading, unless the item holds a newer one (late or
        replayed readings never move status back). How many moved. One conditional put a sensor, side
        by side."""

        def moved(h: Heard) -> bool:  # refused: the item holds a newer reading
            return _refused(_dynamodb().put_item, **self._put(site_id, h)) is None

        return sum(_in_parallel(moved, list(heard)))

    def _put(self, site_id: str, h: Heard) -> dict[str, Any]:
        """The sensor's item put whole, on condition that it holds no newer reading."""
        return {
            "TableName": self._table,
            "Item": {
                "pk": {"S": status_pk(site_id)}, "sk": {"S": h.sensor_id}, "ts": _number(h.ts_ms),
                "m": {"M": {k: _number(v) for k, v in h.metrics.items()}},
            },
            "ConditionExpression": "attribute_not_exists(ts) OR ts <= :ts",
            "ExpressionAttributeValues": {":ts": _number(h.ts_ms)},
        }  # fmt: skip

    def get(self, site_id: str, sensor_ids: Iterable[str]) -> dict[str, Heard]:
        """The newest reading of each sensor among `sensor_ids` that has reported."""
        keys = [{"pk": {"S": status_pk(site_id)}, "sk": {"S": s}} for s in sorted(set(sensor_ids))]
        found = _batch_get({self._table: (keys, False)})[self._table]
        return {heard.sensor_id: heard for heard in map(_heard, found)}


def _heard(item: dict[str, Any]) -> Heard:
    metrics = {k: float(v["N"]) for k, v in item.get("m", {}).get("M", {}).items()}
    return Heard(item["sk"]["S"], int(item["ts"]["N"]), metrics)


# ---------------------------------------------------------------- the dead-letter queue

# SQS caps a message attribute's value with the message at 256 KB; a reason is a sentence.
MAX_REASON_CHARS = 1000


class SqsDeadLetters:
    """The telemetry dead-letter queue (TELEMETRY_DEAD_LETTER_QUEUE_URL): the message as it came, its
    reason and its message id as message attributes."""

    def send(self, body: str, reason: str, message_id: str) -> None:
        url = settings().telemetry_dead_letter_queue_url
        if not url:
            raise RuntimeError("TELEMETRY_DEAD_LETTER_QUEUE_URL is not set")
        client("sqs").send_message(
            QueueUrl=url, MessageBody=body or "(empty)",
            MessageAttributes={
                "reason": {"DataType": "String", "StringValue": reason[:MAX_REASON_CHARS]},
                "source_message_id": {"DataType": "String", "StringValue": message_id or "(none)"},
            },
        )  # fmt: skip
