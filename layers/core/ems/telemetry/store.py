"""Where readings and rollups live: the DynamoDB adapter of the `TelemetryStore` port (ems.telemetry.ports),
each sensor's newest reading read from it (`DynamoLatestReadings`), the sensors' status store of the
Timestream deployment (`SensorStatusStore`), and the telemetry dead-letter queue (`SqsDeadLetters`).

The adapter talks to DynamoDB through the low-level client, not PynamoDB (ems.core.tables says why that
is the exception): it is the measured hot path (`python -m bench telemetry` for its speed, `python -m
bench cost` for what a reading costs). Requests are built as dicts and sent by a client that skips
botocore's own check of each request (ems.core.aws: DynamoDB checks them anyway).

Items (every one well under 1 KB, so each write costs one write unit):
- raw table, a reading: pk "<site>#<sensor>#<yyyy-mm-dd>" (UTC day), sk "<metric>#<ts ms, 13 digits>",
  v, r (the sensor's room then, if any), k (its type), expires_at_epoch (ts + RAW_RETENTION_DAYS) for TTL;
- raw table, a series: pk "<site>#series", sk "<sensor>#<metric>", h: the newest hour with readings
  (what the sensor's newest reading, site sealing and site reads start from);
- rollups table, an hour of a series: pk "<site>#<sensor>#<metric>#hour", sk the hour's start (epoch ms),
  v (version: one more at every write), q0..q3: the quarter hours, each a map of cells (room and type,
  ems.telemetry.hourly) to [count, exact sum, min, max, last, ts of last]. 15 min and 1 h buckets are
  read from these, 1 d buckets merge 24 of them. No TTL: rollups stay;
- rollups table, an hour of a group (the site, a room): pk "<site>#*<scope>#<metric>#hour", sk the hour,
  b (basis, below), q0..q3 by sensor type;
- rollups table, the site's seal: pk "<site>#*seal", sk 0, t (every hour up to t has its group items),
  p and ps (the hour being sealed and since when, real epoch ms), v.

Why no transactions. A transaction costs two write units an item; a reading written with its three
rollups in one cost ten units with status (bench/RESULTS.md, issue 9). Here each item moves on its own
and is idempotent by itself, so a reading costs its raw item and its hour's put (and, once an hour, its
series' pointer): two write units when each batch brings one reading a series.

Exactly once, without transactions. A series' hour is always its raw readings' rollup:
1. Read the hour items the batch moves (consistent). A reading after the newest reading of its quarter
   cannot have been counted yet; any other (a retried batch, a late reading) makes its hour rebuild its
   quarters from their raw readings, read before the write (they also say which readings are duplicates:
   the first of two equal readings stays).
2. Write the new raw items (BatchWriteItem: no condition is needed, a rebuilt quarter reads what is there).
3. Put each hour (the old one plus the new readings, or its rebuilt quarters) on condition that its
   version is the one read. A writer that loses (another moved the hour meanwhile) reads the hour and its
   raw readings again, its own among them now, and rebuilds. Of racing writers, the last to succeed read
   the raw items after every earlier success, so every reading whose writer finished is counted, once.
A batch that fails between 2 and 3 has raw items its hours do not count until it is retried (the queue
retries; the API answers 5xx, which says to retry): the retry finds its readings stored and rebuilds the
quarters, and so does any later write behind them. A reading is refused when its quarter began before the
raw retention (ems.telemetry.validation), so a rebuild never reads a quarter that TTL is deleting.

Groups, exactly once. A group's hour is made from its sensors' hours once the hour is over plus a grace
("sealing", by the write that finds it due), under the site's seal item: (a) mark the hour pending,
(b) read the series and their hours (consistent) and put the group items, (c) move t to the hour. A read
takes hours up to t from group items, later ones (the pending one too) from the sensors' hours. A writer
reads the seal after its hour puts and its series pointers; when its hour is sealed or pending it makes
the group items of that hour itself. Either its read of the seal came after the mark, or the sealer's
reads came after its writes: the group items count its readings in both cases. Group items are put on
condition that their basis (the sum of the versions of the hours they were made from) grows: versions
only grow, so of two makers the one that read later never loses to the one that read earlier; a maker
that loses reads again until the stored basis is what it reads. A sealer that stops between (a) and (c)
is taken over after SEAL_STALE_MS.

Reads name no ProjectionExpression: DynamoDB charges the whole item whatever a read returns.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from ems.core.aws import client, error_code
from ems.core.clock import Clock, utc_now
from ems.core.errors import TooManyRequests
from ems.core.observability import logger
from ems.core.settings import settings
from ems.registry.status import Heard
from ems.telemetry import groups, hourly
from ems.telemetry.hourly import HOUR_MS, QUARTER_MS, Cells, Exact, Quarters, cell, hour_of, quarter_of
from ems.telemetry.models import Reading
from ems.telemetry.ports import WriteOutcome
from ems.telemetry.rollup import DAY_MS, Bucket

BATCH_GET_KEYS = 100
BATCH_WRITE_ITEMS = 25
MAX_ATTEMPTS = 10
BACKOFF_BASE_S = 0.02
BACKOFF_CAP_S = 1.0
READ_WORKERS = 16
WRITE_WORKERS = 8
# An hour is sealed this long after it ends, so that readings a little late (a device's clock, a queue's
# retry) still reach the sensors' hours before the group items are made.
SEAL_GRACE_MS = 10 * 60_000
SEAL_HOURS_PER_WRITE = 2  # a write seals at most this many hours; the next writes go on
SEAL_STALE_MS = 60_000  # a pending seal older than this (real time) is taken over
# Open (unsealed) hours of a site read by BatchGetItem up to this many, by a Query per series beyond.
OPEN_HOURS_BY_GET = 6
RETRYABLE = frozenset(
    {"ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
     "InternalServerError"}
)  # fmt: skip

Sleep = Callable[[float], None]
HourKey = tuple[str, str, str, int]  # site, sensor, metric, hour start
SeriesKey = tuple[str, str, str]  # site, sensor, metric


def _dynamodb() -> Any:
    """The stores' DynamoDB client: their requests are built here and tested, so botocore's own check
    of each one is skipped (ems.core.aws; DynamoDB checks every request anyway)."""
    return client("dynamodb", validated=False)


# ---------------------------------------------------------------- keys


def _day(ts_ms: int) -> str:
    moment = time.gmtime(ts_ms // 1000)
    return f"{moment.tm_year:04d}-{moment.tm_mon:02d}-{moment.tm_mday:02d}"


def raw_key(reading: Reading) -> tuple[str, str]:
    return (
        f"{reading.site_id}#{reading.sensor_id}#{_day(reading.ts_ms)}",
        f"{reading.metric}#{reading.ts_ms:013d}",
    )


def raw_item(reading: Reading, expires_after_s: int) -> dict[str, Any]:
    """A reading's raw item: its value, and its sensor's room and type then (what a rebuilt quarter
    counts it by)."""
    pk, sk = raw_key(reading)
    item = {"pk": {"S": pk}, "sk": {"S": sk}, "v": _number(reading.value),
            "expires_at_epoch": _number(reading.ts_ms // 1000 + expires_after_s)}  # fmt: skip
    if reading.room is not None:
        item["r"] = {"S": reading.room}
    if reading.sensor_type is not None:
        item["k"] = {"S": reading.sensor_type}
    return item


def hour_pk(site_id: str, sensor_id: str, metric: str) -> str:
    return f"{site_id}#{sensor_id}#{metric}#hour"


def series_pk(site_id: str) -> str:
    """Raw keys have a sensor and a day after the site, so they never meet this one."""
    return f"{site_id}#series"


def seal_pk(site_id: str) -> str:
    return f"{site_id}#*seal"


def _number(value: float | int | Decimal) -> dict[str, str]:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


# ---------------------------------------------------------------- item encoding

QUARTER_ATTRS = ("q0", "q1", "q2", "q3")


def _cells_attr(cells: Cells) -> dict[str, Any]:
    return {"M": {key: {"L": [_number(b.count), _number(total), _number(b.min), _number(b.max),
                              _number(b.last), _number(b.last_ts)]}
                  for key, (b, total) in sorted(cells.items())}}  # fmt: skip


def _quarters_attrs(quarters: Quarters) -> dict[str, Any]:
    return {QUARTER_ATTRS[q]: _cells_attr(cells) for q, cells in sorted(quarters.items()) if cells}


def _quarters(item: Mapping[str, Any]) -> Quarters:
    out: Quarters = {}
    for q, name in enumerate(QUARTER_ATTRS):
        attr = item.get(name)
        if attr is None:
            continue
        cells: Cells = {}
        for key, value in attr["M"].items():
            c, s, low, high, last, last_ts = (x["N"] for x in value["L"])
            total = Decimal(s)
            cells[key] = (Bucket(count=int(c), sum=float(total), min=float(low), max=float(high),
                                 last=float(last), last_ts=int(last_ts)), total)  # fmt: skip
        out[q] = cells
    return out


@dataclass(frozen=True)
class Hour:
    """An hour item as read: its version (0: no item yet) and its quarters."""

    version: int
    quarters: Quarters


@dataclass(frozen=True)
class Seal:
    through: int  # every hour up to this one has its group items
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
        by_hour: dict[HourKey, list[Reading]] = {}
        seen: set[tuple[str, str, str, int]] = set()
        for r in readings:
            if (r.site_id, r.sensor_id, r.metric, r.ts_ms) in seen:
                continue  # the first of two equal readings is the one
            seen.add((r.site_id, r.sensor_id, r.metric, r.ts_ms))
            by_hour.setdefault((r.site_id, r.sensor_id, r.metric, hour_of(r.ts_ms)), []).append(r)
        if not by_hour:
            return outcome
        newest: dict[SeriesKey, int] = {}
        for site_id, sensor_id, metric, hour in by_hour:
            newest[(site_id, sensor_id, metric)] = max(hour, newest.get((site_id, sensor_id, metric), hour))
        hours, pointers = self._hours_and_pointers(list(by_hour), list(newest))

        # Hours with a reading not after its quarter's newest are checked against their raw readings.
        behind = [k for k, rs in by_hour.items() if not all(_after(hours[k], r) for r in rs)]
        stored = dict(zip(behind, _in_parallel(lambda k: self._raw_quarters(k, _touched(by_hour[k])), behind,
                                               READ_WORKERS), strict=True))  # fmt: skip
        new: dict[HourKey, list[Reading]] = {}
        for key, rs in by_hour.items():
            there = stored.get(key)
            new[key] = rs if there is None else [r for r in rs if r.ts_ms not in there]
            if there is not None:
                outcome.duplicates.update((r.sensor_id, r.metric, r.ts_ms) for r in rs if r.ts_ms in there)
        self._put_raw([r for rs in new.values() for r in rs])
        outcome.created = sum(len(rs) for rs in new.values())

        keys = list(by_hour)
        _in_parallel(lambda k: self._settle(k, hours[k], new[k], stored.get(k), _touched(by_hour[k])), keys,
                     WRITE_WORKERS)  # fmt: skip
        self._advance(newest, pointers)
        for site_id in sorted({k[0] for k in keys}):
            self._after_write(site_id, [k for k in keys if k[0] == site_id])
        return outcome

    def _hours_and_pointers(
        self, keys: list[HourKey], series: list[SeriesKey]
    ) -> tuple[dict[HourKey, Hour], dict[SeriesKey, int]]:
        """The hour items (consistent: their versions condition the puts) and the series' pointers (any
        read will do: a stale one only moves a pointer that had moved), in the same requests."""
        pointer_keys = [{"pk": {"S": series_pk(s)}, "sk": {"S": f"{sensor}#{m}"}} for s, sensor, m in series]
        found = _batch_get(
            {self._rollups_table: (_hour_keys(keys), True), self._raw_table: (pointer_keys, False)},
            self._sleep,
        )
        by_key = {(k["pk"]["S"], k["sk"]["S"]): key for k, key in zip(pointer_keys, series, strict=True)}
        pointers = {by_key[(i["pk"]["S"], i["sk"]["S"])]: int(i["h"]["N"]) for i in found[self._raw_table]}
        return _hours(keys, found[self._rollups_table]), pointers

    def _get_hours(self, keys: Sequence[HourKey]) -> dict[HourKey, Hour]:
        """Hour items, consistent (a missing one is Hour(0, {}))."""
        table = self._rollups_table
        return _hours(keys, _batch_get({table: (_hour_keys(keys), True)}, self._sleep)[table])

    def _raw_quarters(self, key: HourKey, quarters: set[int]) -> dict[int, tuple[float, str]]:
        """The raw readings of the hour's quarters from the first to the last of `quarters`: ts ->
        (value, cell). Consistent: a rebuild must see every write that finished before it."""
        site_id, sensor_id, metric, hour = key
        low, high = hour + min(quarters) * QUARTER_MS, hour + (max(quarters) + 1) * QUARTER_MS - 1
        items = self._query(
            self._raw_table, f"{site_id}#{sensor_id}#{_day(hour)}",
            {"S": f"{metric}#{low:013d}"}, {"S": f"{metric}#{high:013d}"}, None, consistent=True,
        )  # fmt: skip
        return {
            int(item["sk"]["S"].rsplit("#", 1)[1]): (
                float(item["v"]["N"]),
                cell(item["r"]["S"] if "r" in item else None, item["k"]["S"] if "k" in item else None),
            )
            for item in items
        }

    def _put_raw(self, readings: Sequence[Reading]) -> None:
        expires_after_s = settings().raw_retention_days * 86_400
        chunks = [readings[i : i + BATCH_WRITE_ITEMS] for i in range(0, len(readings), BATCH_WRITE_ITEMS)]
        _in_parallel(lambda chunk: self._batch_write(self._raw_table, [raw_item(r, expires_after_s) for r in chunk]),
                     chunks, WRITE_WORKERS)  # fmt: skip

    def _batch_write(self, table: str, items: list[dict[str, Any]]) -> None:
        request: dict[str, Any] = {table: [{"PutRequest": {"Item": item}} for item in items]}
        for attempt in range(MAX_ATTEMPTS):
            request = _dynamodb().batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
            if not request:
                return
            self._sleep(_backoff(attempt))
        raise TooManyRequests("telemetry storage is busy; retry the batch (it is safe to send again)")

    def _settle(
        self, key: HourKey, hour: Hour, new: list[Reading], stored: dict[int, tuple[float, str]] | None,
        touched: set[int],
    ) -> None:  # fmt: skip
        """Put the hour with its new readings: added to it when `stored` is None (each after its quarter's
        newest), else its touched quarters rebuilt from `stored` and `new`. A lost race reads again."""
        fresh = [(r.ts_ms, r.value, cell(r.room, r.sensor_type)) for r in new]
        for attempt in range(MAX_ATTEMPTS):
            if stored is None:
                after = hourly.added(hour.quarters, hourly.quarters_of(fresh))
            else:
                rebuilt = hourly.quarters_of([(ts, v, c) for ts, (v, c) in stored.items()] + fresh)
                after = {q: cells for q, cells in hour.quarters.items() if q not in touched}
                after.update({q: rebuilt[q] for q in touched if q in rebuilt})
            if _same(after, hour.quarters):
                return  # nothing to move: duplicates, or a retry whose hour is whole already
            if self._put_hour(key, hour.version, after):
                return
            # Another writer moved the hour since it was read: read it and the raw readings again (ours
            # are among them now) and rebuild.
            self._sleep(_backoff(attempt))
            hour = self._get_hours([key])[key]
            stored, fresh = self._raw_quarters(key, touched), []
        raise TooManyRequests("telemetry storage is busy; retry the batch (it is safe to send again)")

    def _put_hour(self, key: HourKey, version: int, quarters: Quarters) -> bool:
        site_id, sensor_id, metric, hour = key
        put: dict[str, Any] = {
            "TableName": self._rollups_table,
            "Item": {"pk": {"S": hour_pk(site_id, sensor_id, metric)}, "sk": _number(hour),
                     "v": _number(version + 1), **_quarters_attrs(quarters)},
        }  # fmt: skip
        if version == 0:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            put["ConditionExpression"] = "v = :v"
            put["ExpressionAttributeValues"] = {":v": _number(version)}
        try:
            _dynamodb().put_item(**put)
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _advance(self, newest: Mapping[SeriesKey, int], pointers: Mapping[SeriesKey, int]) -> None:
        """Move each series' pointer to its newest hour with readings (forward only)."""
        moves = [(k, h) for k, h in newest.items() if pointers.get(k, -1) < h]

        def move(job: tuple[SeriesKey, int]) -> None:
            (site_id, sensor_id, metric), hour = job
            try:
                _dynamodb().update_item(
                    TableName=self._raw_table,
                    Key={"pk": {"S": series_pk(site_id)}, "sk": {"S": f"{sensor_id}#{metric}"}},
                    UpdateExpression="SET h = :h", ConditionExpression="attribute_not_exists(h) OR h < :h",
                    ExpressionAttributeValues={":h": _number(hour)},
                )  # fmt: skip
            except Exception as exc:
                if error_code(exc) != "ConditionalCheckFailedException":  # else: a newer hour is there
                    raise

        _in_parallel(move, moves, WRITE_WORKERS)

    # ------------------------------------------------------------ sealing: the site's and rooms' hours

    def _after_write(self, site_id: str, keys: list[HourKey]) -> None:
        """After a site's hours moved: make the group items of the sealed (or pending) hours it moved,
        then seal the hours that are due."""
        seal = self._get_seal(site_id)
        if seal is None:
            seal = self._create_seal(site_id, min(k[3] for k in keys) - HOUR_MS)
        touched: dict[int, set[str]] = {}
        for _, _, metric, hour in keys:
            if hour <= seal.through or hour == seal.pending:
                touched.setdefault(hour, set()).add(metric)
        for hour, metrics in sorted(touched.items()):
            self.seal_hour(site_id, hour, metrics)
        self._seal_due(site_id, seal)

    def _get_seal(self, site_id: str) -> Seal | None:
        item = _dynamodb().get_item(
            TableName=self._rollups_table, Key={"pk": {"S": seal_pk(site_id)}, "sk": {"N": "0"}}, ConsistentRead=True
        ).get("Item")  # fmt: skip
        return None if item is None else _seal(item)

    def _create_seal(self, site_id: str, through: int) -> Seal:
        """A site's first write: its hours before its first readings' are sealed (they have none)."""
        try:
            _dynamodb().put_item(
                TableName=self._rollups_table,
                Item={"pk": {"S": seal_pk(site_id)}, "sk": {"N": "0"}, "t": _number(through), "v": {"N": "1"}},
                ConditionExpression="attribute_not_exists(pk)",
            )  # fmt: skip
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
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
                site_id, seal, "SET p = :p, ps = :ps, v = :next",
                {":p": _number(hour), ":ps": _number(_real_ms())},
            )  # fmt: skip
            if not marked:
                return  # another writer marked it first
            self.seal_hour(site_id, hour, None)
            pending = Seal(seal.through, hour, 0, seal.version + 1)
            if not self._update_seal(
                site_id, pending, "SET t = :p, v = :next REMOVE p, ps", {":p": _number(hour)}
            ):
                return  # taken over meanwhile: the taker finishes it
            logger.info("sealed", extra={"site": site_id, "hour_ms": hour})
            seal = Seal(hour, None, 0, seal.version + 2)

    def _update_seal(self, site_id: str, seal: Seal, expression: str, values: dict[str, Any]) -> bool:
        try:
            _dynamodb().update_item(
                TableName=self._rollups_table, Key={"pk": {"S": seal_pk(site_id)}, "sk": {"N": "0"}},
                UpdateExpression=expression, ConditionExpression="v = :v",
                ExpressionAttributeValues={**values, ":v": _number(seal.version), ":next": _number(seal.version + 1)},
            )  # fmt: skip
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def seal_hour(self, site_id: str, hour: int, metrics: set[str] | None) -> None:
        """Make the group items of one hour of the site (of `metrics`, or all) from its sensors' hours.
        Each group item is put on condition that its basis grows; one that holds a basis this read does
        not pass was made from a later read, so this reads again, until what is stored is what it reads."""
        stored: dict[tuple[str, str], int] = {}  # (metric, scope) -> basis stored by a newer maker
        for attempt in range(MAX_ATTEMPTS):
            made = self._group_hours(site_id, hour, metrics)
            lost: dict[tuple[str, str], int] = {}
            for metric, (basis, scopes) in made.items():
                for scope, quarters in scopes.items():
                    if attempt and (metric, scope) not in stored:
                        continue  # put in an earlier round
                    if stored.get((metric, scope)) == basis:
                        continue  # what is stored was made from this very state
                    held = self._put_group(site_id, scope, metric, hour, basis, quarters)
                    if held is not None:
                        lost[(metric, scope)] = held
            if not lost:
                return
            stored = lost
            self._sleep(_backoff(attempt))
        raise TooManyRequests("the site's rollups are busy; retry the batch (it is safe to send again)")

    def _group_hours(
        self, site_id: str, hour: int, metrics: set[str] | None
    ) -> dict[str, tuple[int, dict[str, Quarters]]]:
        """metric -> (basis, the groups' quarters by scope) of one hour, from the series that have readings
        in or after it and their hours (consistent reads)."""
        series = [(sensor, m) for sensor, m, newest in self._series(site_id)
                  if newest >= hour and (metrics is None or m in metrics)]  # fmt: skip
        hours = self._get_hours([(site_id, sensor, m, hour) for sensor, m in series])
        out: dict[str, tuple[int, dict[str, Quarters]]] = {}
        for metric in {m for _, m in series}:
            of_metric = [h for (_, _, m, _), h in hours.items() if m == metric]
            out[metric] = (
                sum(h.version for h in of_metric),
                groups.group_hours(h.quarters for h in of_metric),
            )
        return out

    def _put_group(
        self, site_id: str, scope: str, metric: str, hour: int, basis: int, quarters: Quarters
    ) -> int | None:
        """None when put; else the basis of the item that stays (made from a read at least as new)."""
        try:
            _dynamodb().put_item(
                TableName=self._rollups_table,
                Item={"pk": {"S": groups.group_pk(site_id, scope, metric)}, "sk": _number(hour),
                      "b": _number(basis), **_quarters_attrs(quarters)},
                ConditionExpression="attribute_not_exists(pk) OR b < :b",
                ExpressionAttributeValues={":b": _number(basis)},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )  # fmt: skip
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            item = getattr(exc, "response", {}).get("Item") or {}
            return int(item["b"]["N"]) if "b" in item else basis
        return None

    def _series(self, site_id: str) -> list[tuple[str, str, int]]:
        """(sensor, metric, newest hour) of every series of the site."""
        items = self._query(self._raw_table, series_pk(site_id), {"S": " "}, {"S": "\U0010ffff"}, None, True)
        out = []
        for item in items:
            sensor_id, metric = item["sk"]["S"].rsplit("#", 1)
            out.append((sensor_id, metric, int(item["h"]["N"])))
        return out

    # ------------------------------------------------------------ reads

    def read_raw(
        self, site_id: str, sensor_ids: Sequence[str], metric: str, start_ms: int, end_ms: int, limit: int
    ) -> dict[str, list[tuple[int, float]]]:
        days = range(start_ms - start_ms % DAY_MS, end_ms, DAY_MS)

        def one(sensor_id: str) -> list[tuple[int, float]]:
            points: list[tuple[int, float]] = []
            for day_ms in days:
                pk = f"{site_id}#{sensor_id}#{_day(day_ms)}"
                low, high = max(start_ms, day_ms), min(end_ms, day_ms + DAY_MS) - 1
                for item in self._query(
                    self._raw_table, pk, {"S": f"{metric}#{low:013d}"}, {"S": f"{metric}#{high:013d}"},
                    limit + 1 - len(points),
                ):  # fmt: skip
                    points.append((int(item["sk"]["S"].rsplit("#", 1)[1]), float(item["v"]["N"])))
                if len(points) > limit:
                    break
            return points

        return dict(zip(sensor_ids, _in_parallel(one, sensor_ids, READ_WORKERS), strict=True))

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

        def one(sensor_id: str) -> dict[int, Bucket]:
            items = self._query(
                self._rollups_table, hour_pk(site_id, sensor_id, metric), _number(first), _number(last - 1), None
            )  # fmt: skip
            found = hourly.buckets({int(item["sk"]["N"]): _quarters(item) for item in items}, resolution)
            return {start: b for start, b in found.items() if start_ms <= start < end_ms}

        return dict(zip(sensor_ids, _in_parallel(one, sensor_ids, READ_WORKERS), strict=True))

    def read_groups(
        self, site_id: str, scopes: Sequence[str], metric: str, resolution: str, start_ms: int, end_ms: int
    ) -> dict[str, dict[int, dict[str, Bucket]]]:
        """Each scope's buckets whose start is in [start_ms, end_ms), by start, then by sensor type: the
        sealed hours from the group items, the others from the sensors' hours."""
        first, last = hourly.hours_between(start_ms, end_ms, resolution)
        seal = self._get_seal(site_id)
        open_from = max(first, seal.through + HOUR_MS) if seal is not None else first
        wanted = set(scopes)

        def sealed(scope: str) -> dict[int, Quarters]:
            if open_from <= first:
                return {}
            items = self._query(self._rollups_table, groups.group_pk(site_id, scope, metric), _number(first),
                                _number(min(last, open_from) - 1), None)  # fmt: skip
            return {int(item["sk"]["N"]): _quarters(item) for item in items}

        found = dict(zip(scopes, _in_parallel(sealed, scopes, READ_WORKERS), strict=True))
        if open_from < last:
            for hour, by_scope in self._open_hours(site_id, metric, open_from, last).items():
                for scope, quarters in by_scope.items():
                    if scope in wanted:
                        found[scope][hour] = quarters
        return {
            scope: {start: b for start, b in groups.by_type(hours, resolution).items() if start_ms <= start < end_ms}
            for scope, hours in found.items()
        }  # fmt: skip

    def _open_hours(self, site_id: str, metric: str, start: int, end: int) -> dict[int, dict[str, Quarters]]:
        """The groups' quarters of the hours in [start, end) made from the sensors' hours, by hour."""
        series = [sensor for sensor, m, newest in self._series(site_id) if m == metric and newest >= start]
        hours = list(range(start, end, HOUR_MS))
        per_hour: dict[int, list[Quarters]] = {}
        if len(hours) <= OPEN_HOURS_BY_GET:
            found = self._get_hours([(site_id, sensor, metric, h) for sensor in series for h in hours])
            for (_, _, _, h), hour in found.items():
                if hour.version:
                    per_hour.setdefault(h, []).append(hour.quarters)
        else:

            def one(sensor: str) -> list[dict[str, Any]]:
                return self._query(self._rollups_table, hour_pk(site_id, sensor, metric), _number(start),
                                   _number(end - 1), None, True)  # fmt: skip

            for items in _in_parallel(one, series, READ_WORKERS):
                for item in items:
                    per_hour.setdefault(int(item["sk"]["N"]), []).append(_quarters(item))
        return {h: groups.group_hours(quarters) for h, quarters in per_hour.items()}

    # ------------------------------------------------------------ plumbing

    @staticmethod
    def _query(
        table: str,
        pk: str,
        low: dict[str, str],
        high: dict[str, str],
        limit: int | None,
        consistent: bool = False,
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {
            "TableName": table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
            "ExpressionAttributeValues": {":pk": {"S": pk}, ":low": low, ":high": high},
        }
        if consistent:
            request["ConsistentRead"] = True
        while True:
            if limit is not None:
                request["Limit"] = max(1, limit - len(items))
            answer = _dynamodb().query(**request)
            items.extend(answer.get("Items", []))
            last = answer.get("LastEvaluatedKey")
            if not last or (limit is not None and len(items) >= limit):
                return items
            request["ExclusiveStartKey"] = last


def _hour_keys(keys: Sequence[HourKey]) -> list[dict[str, Any]]:
    return [{"pk": {"S": hour_pk(s, sensor, m)}, "sk": _number(h)} for s, sensor, m, h in keys]


def _hours(keys: Sequence[HourKey], items: Iterable[dict[str, Any]]) -> dict[HourKey, Hour]:
    by_key = {(s_id, hour_pk(s_id, sensor, m), h): (s_id, sensor, m, h) for s_id, sensor, m, h in keys}
    found = dict.fromkeys(keys, Hour(0, {}))
    for item in items:
        pk, hour = item["pk"]["S"], int(item["sk"]["N"])
        found[by_key[(pk.split("#", 1)[0], pk, hour)]] = Hour(int(item["v"]["N"]), _quarters(item))
    return found


def _batch_get(
    requests: Mapping[str, tuple[list[dict[str, Any]], bool]], sleep: Sleep = time.sleep
) -> dict[str, list[dict[str, Any]]]:
    """BatchGetItem of any number of keys of one or more tables (table -> (keys, consistent)), 100 keys a
    call, calls side by side, unprocessed keys retried with backoff. Items by table."""
    flat = [(table, key) for table, (keys, _) in requests.items() for key in keys]
    chunks = [flat[i : i + BATCH_GET_KEYS] for i in range(0, len(flat), BATCH_GET_KEYS)]

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
    for found in _in_parallel(chunk, chunks, READ_WORKERS):
        for table, item in found:
            out[table].append(item)
    return out


def _same(a: Quarters, b: Quarters) -> bool:
    """Whether two hours hold the same buckets (sums compared as decimals: 4.0 is 4)."""

    def norm(quarters: Quarters) -> dict[int, dict[str, tuple[Any, ...]]]:
        return {q: {k: (x.count, total, x.min, x.max, x.last, x.last_ts) for k, (x, total) in cells.items()}
                for q, cells in quarters.items() if cells}  # fmt: skip

    return norm(a) == norm(b)


def _after(hour: Hour, reading: Reading) -> bool:
    """Whether the reading is after the newest reading of its quarter (so it cannot be counted yet)."""
    newest = hourly.last_ts(hour.quarters.get(quarter_of(reading.ts_ms)))
    return newest is None or reading.ts_ms > newest


def _touched(readings: Iterable[Reading]) -> set[int]:
    return {quarter_of(r.ts_ms) for r in readings}


def _real_ms() -> int:
    """Real time, not the ems clock: how long a sealer has been at it (the local cloud's clock may run
    faster than the sealer)."""
    return int(time.time() * 1000)


def _backoff(attempt: int) -> float:
    """Seconds to wait before attempt `attempt + 1`: exponential, capped, with jitter."""
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt) * random.uniform(0.5, 1.0)


T = TypeVar("T")
R = TypeVar("R")


def _in_parallel(work: Callable[[T], R], inputs: Sequence[T], workers: int) -> list[R]:
    """work(x) for each input, in order; in threads when there is more than one (I/O-bound calls)."""
    if len(inputs) <= 1:
        return [work(x) for x in inputs]
    with ThreadPoolExecutor(max_workers=min(workers, len(inputs))) as pool:
        return list(pool.map(work, inputs))


# ---------------------------------------------------------------- each sensor's newest reading


class DynamoLatestReadings:
    """Each sensor's newest reading (`LatestReadings`), read where the DynamoDB store keeps it: a series'
    pointer names its newest hour, whose newest quarter holds the reading. Nothing more is written a
    reading for it (the store moves a pointer once an hour a series)."""

    def get(self, site_id: str, sensor_ids: Iterable[str]) -> dict[str, Heard]:
        wanted = set(sensor_ids)
        if not wanted:
            return {}
        table = settings().telemetry_table
        if len(wanted) <= 4:  # a few sensors: their own series; else the site's, in one query
            found = [item for sensor_id in sorted(wanted) for item in DynamoTelemetryStore._query(
                table, series_pk(site_id), {"S": f"{sensor_id}#"}, {"S": f"{sensor_id}#\U0010ffff"}, None)]  # fmt: skip
        else:
            found = DynamoTelemetryStore._query(
                table, series_pk(site_id), {"S": " "}, {"S": "\U0010ffff"}, None
            )
        keys: list[HourKey] = []
        for item in found:
            sensor_id, metric = item["sk"]["S"].rsplit("#", 1)
            if sensor_id in wanted:
                keys.append((site_id, sensor_id, metric, int(item["h"]["N"])))
        newest: dict[str, Heard] = {}
        table = settings().rollups_table
        for (_, sensor_id, metric, _), hour in _hours(
            keys, _batch_get({table: (_hour_keys(keys), False)})[table]
        ).items():
            last = _newest(hour.quarters)
            if last is None:
                continue  # the pointer moved before its hour was put (a write that failed between)
            ts_ms, value = last
            held = newest.get(sensor_id)
            if held is None or ts_ms > held.ts_ms:
                newest[sensor_id] = Heard(sensor_id, ts_ms, {metric: value})
            elif ts_ms == held.ts_ms:
                held.metrics[metric] = value
        return newest


def _newest(quarters: Quarters) -> tuple[int, float] | None:
    """(ts, value) of the newest reading in an hour."""
    best: Exact | None = None
    for cells in quarters.values():
        for bucket, total in cells.values():
            if best is None or (bucket.last_ts, bucket.last) > (best[0].last_ts, best[0].last):
                best = (bucket, total)
    return None if best is None else (best[0].last_ts, best[0].last)


# ---------------------------------------------------------------- sensor status (Timestream deployments)


STATUS_WORKERS = 8


def status_pk(site_id: str) -> str:
    """Status items share the raw table: pk "<site>#status" (raw keys have a sensor and a day after
    the site, so they never meet it), sk the sensor id; no TTL attribute, so they stay."""
    return f"{site_id}#status"


class SensorStatusStore:
    """Each sensor's newest reading (ts and metrics), one item per sensor, moved only forward in time:
    what a deployment that keeps readings in Timestream reads as `LatestReadings` (the DynamoDB store
    has them in its hours: `DynamoLatestReadings`)."""

    def __init__(self, sleep: Sleep = time.sleep) -> None:
        self._sleep = sleep

    @property
    def _table(self) -> str:
        return settings().telemetry_table

    def record(self, site_id: str, heard: Sequence[Heard]) -> int:
        """Move each sensor's item to its newest reading, unless the item holds a newer one (late or
        replayed readings never move status back). How many moved. One conditional put a sensor, side
        by side."""

        def one(h: Heard) -> int:
            try:
                _dynamodb().put_item(**self._put(site_id, h))
            except Exception as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    return 0  # it holds a newer reading
                raise
            return 1

        return sum(_in_parallel(one, list(heard), STATUS_WORKERS))

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
        found: dict[str, Heard] = {}
        for start in range(0, len(keys), BATCH_GET_KEYS):
            request: dict[str, Any] = {self._table: {"Keys": keys[start : start + BATCH_GET_KEYS]}}
            for _attempt in range(MAX_ATTEMPTS):
                answer = _dynamodb().batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self._table, []):
                    heard = _heard(item)
                    found[heard.sensor_id] = heard
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(BACKOFF_BASE_S)
        return found


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
