"""Where readings and rollups live: the DynamoDB adapter of the `TelemetryStore` port (ems.telemetry.ports), the
sensors' status store, and the telemetry dead-letter queue's SQS adapter (`SqsDeadLetters`).

The adapter talks to DynamoDB through the low-level client, not PynamoDB (ems.core.tables says why
that is the exception): it is the measured hot path. `python -m bench telemetry` (bench/RESULTS.md) times
the ingest handler against plain `batch_write_item` of the same readings; most of the handler's time
is the store's write. Where the time goes is where a model layer would add its cost per item, so
requests are built as dicts, once per attempt, and sent by a client that skips botocore's own check
of each request (ems.core.aws: DynamoDB checks them anyway).

Raw table: pk "<site>#<sensor>#<yyyy-mm-dd>" (UTC day), sk "<metric>#<ts ms, 13 digits>", v, and
expires_at_epoch (ts + RAW_RETENTION_DAYS) for TTL. One sensor-day is one partition; reads name one
metric, so putting the metric first in sk makes a metric's day one contiguous key range instead of
a range shared with the sensor's other metrics.

Rollups table: pk "<site>#<sensor>#<metric>#<15m|1h|1d>", sk bucket start (epoch ms, number), and
c (count), s (sum), mn, mx, l (last value), lt (ts of last). A year of hourly data of a sensor
metric is one partition, read by one Query of 8,760 items. Rollups have no TTL: they stay.

Idempotency and concurrency: a new reading is written in a TransactWriteItems that puts its raw
item on condition attribute_not_exists(pk) *and* updates its 15m, 1h and 1d rollups, so a rollup
moves only with the write that created the raw item, and a half-finished batch that is retried
finds the committed part already there. Each rollup update is conditioned on the count the writer
read (c = :seen, or no item yet): the count grows with every change, so it is the item's version.
The new totals (count, exact decimal sum, min, max, last) are computed from that version and put
whole, so all five move together or not at all; an ADD would be no safer under this condition, and
min and max cannot be expressed as updates anyway. A concurrent writer therefore makes the transaction fail (never double-count or lose a
min); the cancellation reasons say which raw items were written meanwhile (now duplicates) and which
rollups moved (read again), and the transaction is rebuilt and retried with backoff.

BatchWriteItem cannot carry a condition, so it could not tell creating a raw item from overwriting
it; the batching unit of writes is therefore the transaction (up to 100 items). Duplicates are not
looked up first: a transaction's cancellation reasons name the raw items that exist already, and it
goes again without them (a new batch, the usual case, pays no lookup; a batch retried whole pays one
refused transaction per transaction). BatchGetItem reads the rollups the batch moves (100 keys a
call, unprocessed keys retried with backoff).
Transactions that share no item (other series) commit side by side (`_lanes`).

Reads name no ProjectionExpression: DynamoDB charges the whole item whatever a read returns, and
these items are a few attributes each (moto, for its part, spends more on a projection than on the
item).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from itertools import groupby
from typing import Any, TypeVar

from ems.core.aws import client, error_code
from ems.core.errors import TooManyRequests
from ems.core.observability import logger
from ems.core.settings import settings
from ems.registry.status import Heard
from ems.telemetry import groups
from ems.telemetry.groups import DeltaKey, Exact, GroupKey
from ems.telemetry.models import Reading
from ems.telemetry.ports import WriteOutcome
from ems.telemetry.rollup import DAY_MS, ROLLUP_RESOLUTIONS, Bucket, bucket_start

MAX_TRANSACTION_ITEMS = 100
BATCH_GET_KEYS = 100
MAX_ATTEMPTS = 10
BACKOFF_BASE_S = 0.02
BACKOFF_CAP_S = 1.0
READ_WORKERS = 16
WRITE_WORKERS = 8
# One write in this many folds its sites' journals into the group buckets (ems.telemetry.groups): a
# fold's cost is shared by the entries it moves, and reads merge what is not folded yet.
FOLD_EVERY = 8
FOLD_ENTRIES = 50  # journal entries read a fold round
FOLD_ROUNDS = 4  # transactions a write's fold may take
READ_ATTEMPTS = 5
RETRYABLE = frozenset(
    {"ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
     "InternalServerError", "TransactionConflictException", "TransactionInProgressException"}
)  # fmt: skip

Sleep = Callable[[float], None]


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


def rollup_pk(site_id: str, sensor_id: str, metric: str, resolution: str) -> str:
    return f"{site_id}#{sensor_id}#{metric}#{resolution}"


RollupKey = tuple[str, int]
# A bucket as stored, with its sum kept exact (a DynamoDB number is a 38-digit decimal).
RollupState = tuple[Bucket, Decimal]


def _rollup_keys(reading: Reading) -> list[RollupKey]:
    return [
        (rollup_pk(reading.site_id, reading.sensor_id, reading.metric, r), bucket_start(reading.ts_ms, r))
        for r in ROLLUP_RESOLUTIONS
    ]


def _number(value: float | int | Decimal) -> dict[str, str]:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def _bucket(item: dict[str, Any]) -> Bucket:
    return Bucket(
        count=int(item["c"]["N"]), sum=float(item["s"]["N"]), min=float(item["mn"]["N"]),
        max=float(item["mx"]["N"]), last=float(item["l"]["N"]), last_ts=int(item["lt"]["N"]),
    )  # fmt: skip


def _bucket_item(bucket: Bucket, total: Decimal) -> dict[str, Any]:
    return {
        "c": _number(bucket.count), "s": _number(total), "mn": _number(bucket.min), "mx": _number(bucket.max),
        "l": _number(bucket.last), "lt": _number(bucket.last_ts),
    }  # fmt: skip


def _types(item: dict[str, Any]) -> dict[str, Exact]:
    """A group bucket's buckets by sensor type, with their exact sums."""
    return {kind: (_bucket(m["M"]), Decimal(m["M"]["s"]["N"])) for kind, m in item["t"]["M"].items()}


# ---------------------------------------------------------------- the DynamoDB adapter


class DynamoTelemetryStore:
    def __init__(self, sleep: Sleep = time.sleep, fold_every: int = FOLD_EVERY) -> None:
        """`fold_every`: 1 folds after every write, 0 never (reads stay exact either way)."""
        self._sleep = sleep
        self._fold_every = fold_every

    @property
    def _raw_table(self) -> str:
        return settings().telemetry_table

    @property
    def _rollups_table(self) -> str:
        return settings().rollups_table

    # ------------------------------------------------------------ writes

    def write(self, readings: Sequence[Reading]) -> WriteOutcome:
        outcome = WriteOutcome()
        # No lookup of the raw items first: each transaction's cancellation reasons name the readings
        # stored already (duplicates) and it goes again without them, so a new batch, the usual case,
        # costs its rollups' read and its transactions only, and a batch retried whole costs one
        # refused transaction per transaction.
        states = self._rollup_states({k for r in readings for k in _rollup_keys(r)})
        new = sorted(readings, key=lambda r: (r.site_id, r.sensor_id, r.metric, r.ts_ms))
        lanes = _lanes(new)

        def run(lane: list[list[Reading]]) -> int:
            return sum(self._commit(group, states, outcome.duplicates) for group in lane)

        # Lanes share no item, raw or rollup, so they commit side by side; each touches only its own
        # keys of `states` and only adds to `duplicates`.
        outcome.created = sum(_in_parallel(run, lanes, WRITE_WORKERS))
        if outcome.created and self._fold_every and random.randrange(self._fold_every) == 0:
            for site_id in sorted({r.site_id for r in readings}):
                self._fold_quietly(site_id)
        return outcome

    def _commit(
        self,
        group: list[Reading],
        states: dict[RollupKey, RollupState | None],
        duplicates: set[tuple[str, str, int]],
    ) -> int:
        """Write one transaction's readings and their rollup changes; returns how many it created."""
        pending = list(group)
        expires_after_s = settings().raw_retention_days * 86_400
        for attempt in range(MAX_ATTEMPTS):
            if not pending:
                return 0
            deltas: dict[RollupKey, Bucket] = {}
            sums: dict[RollupKey, Decimal] = {}
            for reading in pending:
                for key in _rollup_keys(reading):
                    held = deltas.get(key)
                    if held is None:
                        deltas[key] = Bucket.of(reading.ts_ms, reading.value)
                        sums[key] = Decimal(repr(reading.value))
                    else:
                        held.add(reading.ts_ms, reading.value)
                        sums[key] += Decimal(repr(reading.value))
            rollup_keys = list(deltas)
            items = [self._put_raw(r, expires_after_s) for r in pending]
            items += [self._put_rollup(k, states.get(k), deltas[k], sums[k]) for k in rollup_keys]
            # The readings' share of their site's and rooms' buckets, committed with them.
            for site_id, readings in groupby(pending, key=lambda r: r.site_id):
                items.append(self._put_journal(site_id, groups.deltas(readings)))
            try:
                _dynamodb().transact_write_items(TransactItems=items)
            except Exception as exc:
                code = error_code(exc)
                if code not in RETRYABLE and code != "TransactionCanceledException":
                    raise
                reasons = [r.get("Code") for r in getattr(exc, "response", {}).get("CancellationReasons", [])]
                raced = {i for i, c in enumerate(reasons[: len(pending)]) if c == "ConditionalCheckFailed"}
                moved = [k for k, c in zip(rollup_keys, reasons[len(pending) :], strict=False) if c == "ConditionalCheckFailed"]  # fmt: skip
                for i in raced:
                    duplicates.add((pending[i].sensor_id, pending[i].metric, pending[i].ts_ms))
                pending = [r for i, r in enumerate(pending) if i not in raced]
                if moved:
                    # Other writers are moving these rollups (say a device's messages of the same
                    # sensors): read them again, wait a little, and let each series go on in its own
                    # transaction, so one busy series cannot keep failing the others' writes.
                    states.update(self._rollup_states(set(moved)))
                    self._sleep(_backoff(attempt))
                    series = [list(run) for _, run in groupby(pending, key=_series)]
                    if len(series) > 1:
                        return sum(self._commit(one, states, duplicates) for one in series)
                elif not raced:
                    self._sleep(_backoff(attempt))
                continue
            for key in rollup_keys:
                old = states.get(key)
                if old is None:
                    states[key] = (deltas[key], sums[key])
                else:
                    states[key] = (old[0].merged(deltas[key]), old[1] + sums[key])
            return len(pending)
        raise TooManyRequests("telemetry storage is busy; retry the batch (it is safe to send again)")

    def _put_raw(self, reading: Reading, expires_after_s: int) -> dict[str, Any]:
        pk, sk = raw_key(reading)
        return {
            "Put": {
                "TableName": self._raw_table,
                "Item": {
                    "pk": {"S": pk}, "sk": {"S": sk}, "v": _number(reading.value),
                    "expires_at_epoch": _number(reading.ts_ms // 1000 + expires_after_s),
                },
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }  # fmt: skip

    def _put_journal(self, site_id: str, found: dict[DeltaKey, Exact]) -> dict[str, Any]:
        """A journal entry: its key is random, so a retried transaction puts a new one (a cancelled
        transaction put nothing); the condition only guards against a collision."""
        return {
            "Put": {
                "TableName": self._rollups_table,
                "Item": {"pk": {"S": groups.journal_pk(site_id)}, "sk": {"N": str(random.getrandbits(120))},
                         "d": {"S": groups.encode(found)}},
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }  # fmt: skip

    def _put_rollup(
        self, key: RollupKey, old: RollupState | None, delta: Bucket, delta_sum: Decimal
    ) -> dict[str, Any]:
        """The bucket's new totals, on condition that it is still the version (count) read."""
        after = delta if old is None else old[0].merged(delta)
        total = delta_sum if old is None else old[1] + delta_sum
        put: dict[str, Any] = {
            "TableName": self._rollups_table,
            "Item": {"pk": {"S": key[0]}, "sk": _number(key[1]), **_bucket_item(after, total)},
        }
        if old is None:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            put["ConditionExpression"] = "c = :seen"
            put["ExpressionAttributeValues"] = {":seen": _number(old[0].count)}
        return {"Put": put}

    def _rollup_states(self, keys: Iterable[RollupKey]) -> dict[RollupKey, RollupState | None]:
        wanted = list(keys)
        states: dict[RollupKey, RollupState | None] = dict.fromkeys(wanted)
        request = [{"pk": {"S": pk}, "sk": _number(sk)} for pk, sk in wanted]
        for item in self._batch_get(self._rollups_table, request):
            states[(item["pk"]["S"], int(item["sk"]["N"]))] = (_bucket(item), Decimal(item["s"]["N"]))
        return states

    def _batch_get(self, table: str, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Consistent BatchGetItem of any number of keys, 100 a call (side by side), unprocessed keys
        retried with backoff."""

        def chunk(wanted: list[dict[str, Any]]) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            request: dict[str, Any] = {table: {"Keys": wanted, "ConsistentRead": True}}
            for attempt in range(MAX_ATTEMPTS):
                answer = _dynamodb().batch_get_item(RequestItems=request)
                found.extend(answer.get("Responses", {}).get(table, []))
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    return found
                self._sleep(_backoff(attempt))
            raise TooManyRequests("telemetry storage is busy; retry the batch (it is safe to send again)")

        chunks = [keys[start : start + BATCH_GET_KEYS] for start in range(0, len(keys), BATCH_GET_KEYS)]
        return [item for found in _in_parallel(chunk, chunks, READ_WORKERS) for item in found]

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
        def one(sensor_id: str) -> dict[int, Bucket]:
            pk = rollup_pk(site_id, sensor_id, metric, resolution)
            items = self._query(
                self._rollups_table,
                pk,
                _number(start_ms),
                _number(end_ms - 1),
                None,
            )
            return {int(item["sk"]["N"]): _bucket(item) for item in items}

        return dict(zip(sensor_ids, _in_parallel(one, sensor_ids, READ_WORKERS), strict=True))

    # ------------------------------------------------------------ site and room rollups

    def read_groups(
        self, site_id: str, scopes: Sequence[str], metric: str, resolution: str, start_ms: int, end_ms: int
    ) -> dict[str, dict[int, dict[str, Bucket]]]:
        """Each scope's buckets whose start is in [start_ms, end_ms), by start, then by sensor type:
        its group buckets merged with the journal entries not folded yet.

        A fold commits a journal entry's delete with the buckets it moves, so a read that saw the
        entry must not see those buckets. The journal is read before and after the buckets: when
        every entry of the first read is still there, no fold of theirs committed in between, and
        the answer counts each stored reading once. Otherwise it reads again."""
        for _ in range(READ_ATTEMPTS):
            journal = self._journal(site_id, None)

            def one(scope: str) -> dict[int, dict[str, Exact]]:
                pk = groups.group_pk(site_id, scope, metric, resolution)
                items = self._query(
                    self._rollups_table, pk, _number(start_ms), _number(end_ms - 1), None, True
                )
                return {int(item["sk"]["N"]): _types(item) for item in items}

            found = dict(zip(scopes, _in_parallel(one, scopes, READ_WORKERS), strict=True))
            still = {sk for sk, _ in self._journal(site_id, None)}
            if all(sk in still for sk, _ in journal):
                break
        else:
            raise TooManyRequests("the site's rollups are being folded; retry the query")
        wanted = set(scopes)
        for _, entry in journal:
            for (scope, m, res, start), by_type in groups.expand(entry).items():
                if scope in wanted and m == metric and res == resolution and start_ms <= start < end_ms:
                    held = found[scope].setdefault(start, {})
                    for kind, delta in by_type.items():
                        groups.merge_exact(held, kind, delta)
        return {
            scope: {
                start: {kind: exact[0] for kind, exact in by_type.items()}
                for start, by_type in buckets.items()
            }
            for scope, buckets in found.items()
        }

    def fold(self, site_id: str, rounds: int = FOLD_ROUNDS) -> int:
        """Move journal entries of the site into its group buckets, in up to `rounds` transactions
        (a write's fold is bounded; whatever is left waits for the next); returns how many it moved. Each
        transaction deletes the entries it applies (on condition they are there) with the buckets'
        new totals (on condition of the version read), so two folders never apply an entry twice: the
        second's transaction is cancelled, and it stops."""
        moved = 0
        for _ in range(rounds):
            journal = self._journal(site_id, FOLD_ENTRIES)
            if not journal:
                return moved
            chosen: list[int] = []
            changes: dict[GroupKey, dict[str, Exact]] = {}
            for sk, entry in journal:
                expanded = groups.expand(entry)
                added = len(set(expanded) - set(changes))
                if chosen and len(chosen) + 1 + len(changes) + added > MAX_TRANSACTION_ITEMS:
                    break
                chosen.append(sk)
                for key, by_type in expanded.items():
                    for kind, delta in by_type.items():
                        groups.merge_exact(changes.setdefault(key, {}), kind, delta)
            states = self._group_states(site_id, list(changes))
            items: list[dict[str, Any]] = [
                {"Delete": {"TableName": self._rollups_table,
                            "Key": {"pk": {"S": groups.journal_pk(site_id)}, "sk": {"N": str(sk)}},
                            "ConditionExpression": "attribute_exists(pk)"}}
                for sk in chosen
            ]  # fmt: skip
            items += [self._put_group(site_id, key, states.get(key), changes[key]) for key in changes]
            try:
                _dynamodb().transact_write_items(TransactItems=items)
            except Exception as exc:
                if error_code(exc) not in RETRYABLE and error_code(exc) != "TransactionCanceledException":
                    raise
                logger.info("fold: another writer is folding or moving these buckets; left to it",
                            extra={"site": site_id, "entries": len(chosen), "code": error_code(exc)})  # fmt: skip
                return moved
            moved += len(chosen)
        return moved

    def _fold_quietly(self, site_id: str) -> None:
        """A fold after a write: the readings are stored and journaled already, so a failed fold loses
        nothing (reads merge the journal; a later write folds it)."""
        try:
            self.fold(site_id)
        except Exception:
            logger.exception("fold failed; the journal stays for a later write", extra={"site": site_id})

    def _journal(self, site_id: str, limit: int | None) -> list[tuple[int, dict[DeltaKey, Exact]]]:
        items = self._query(
            self._rollups_table, groups.journal_pk(site_id), {"N": "0"}, {"N": str(2**120)}, limit, True
        )
        return [(int(item["sk"]["N"]), groups.decode(item["d"]["S"])) for item in items]

    def _group_states(
        self, site_id: str, keys: list[GroupKey]
    ) -> dict[GroupKey, tuple[int, dict[str, Exact]]]:
        """(version, buckets by type) of the group buckets that exist."""
        request = [
            {"pk": {"S": groups.group_pk(site_id, scope, metric, res)}, "sk": _number(start)}
            for scope, metric, res, start in keys
        ]
        by_key = {(k["pk"]["S"], int(k["sk"]["N"])): key for k, key in zip(request, keys, strict=True)}
        return {
            by_key[(item["pk"]["S"], int(item["sk"]["N"]))]: (int(item["v"]["N"]), _types(item))
            for item in self._batch_get(self._rollups_table, request)
        }

    def _put_group(
        self, site_id: str, key: GroupKey, old: tuple[int, dict[str, Exact]] | None, change: dict[str, Exact]
    ) -> dict[str, Any]:
        """A group bucket's new totals by type; its version (v) counts the readings in it."""
        scope, metric, res, start = key
        after = {} if old is None else dict(old[1])
        for kind, delta in change.items():
            groups.merge_exact(after, kind, delta)
        put: dict[str, Any] = {
            "TableName": self._rollups_table,
            "Item": {
                "pk": {"S": groups.group_pk(site_id, scope, metric, res)}, "sk": _number(start),
                "v": _number(sum(b.count for b, _ in after.values())),
                "t": {"M": {kind: {"M": _bucket_item(b, total)} for kind, (b, total) in after.items()}},
            },
        }  # fmt: skip
        if old is None:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            put["ConditionExpression"] = "v = :seen"
            put["ExpressionAttributeValues"] = {":seen": _number(old[0])}
        return {"Put": put}

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


class _Fit:
    """What one transaction holds so far: its raw puts, rollup updates and one journal entry a site,
    at most 100 items; and its journal entries move at most 99 group buckets, so that a fold can apply
    any one of them (its delete and its buckets) in a transaction."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.rollups: set[RollupKey] = set()
        self.groups: dict[str, set[GroupKey]] = {}

    def add(self, readings: list[Reading]) -> bool:
        """Take the readings if they fit (a first one always does); False, and nothing taken, if not."""
        rollups = self.rollups | {k for r in readings for k in _rollup_keys(r)}
        moved = {site: set(keys) for site, keys in self.groups.items()}
        for r in readings:
            moved.setdefault(r.site_id, set()).update(groups.group_keys([r]))
        items = len(self.readings) + len(readings) + len(rollups) + len(moved)
        if self.readings and (
            items > MAX_TRANSACTION_ITEMS or max(map(len, moved.values())) >= MAX_TRANSACTION_ITEMS
        ):
            return False
        self.readings.extend(readings)
        self.rollups, self.groups = rollups, moved
        return True


def _pack(readings: list[Reading]) -> list[list[Reading]]:
    """Readings (sorted by series and time) in groups that each fit one transaction (`_Fit`);
    neighbours in time share rollup items, so a group is mostly raw puts."""
    packed: list[list[Reading]] = []
    fit = _Fit()
    for reading in readings:
        if not fit.add([reading]):
            packed.append(fit.readings)
            fit = _Fit()
            fit.add([reading])
    if fit.readings:
        packed.append(fit.readings)
    return packed


def _backoff(attempt: int) -> float:
    """Seconds to wait before attempt `attempt + 1`: exponential, capped, with jitter."""
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt) * random.uniform(0.5, 1.0)


def _series(reading: Reading) -> tuple[str, str, str]:
    """What a rollup item belongs to: readings of two series never share one."""
    return reading.site_id, reading.sensor_id, reading.metric


def _lanes(readings: list[Reading]) -> list[list[list[Reading]]]:
    """Transactions in lanes that share no item, so lanes can commit side by side.

    Rollup items belong to one series (site, sensor, metric), so series never share an item: a
    series that needs several transactions is a lane of its own (its transactions share rollup
    items and go in turn), and series that fit one transaction are packed together into
    one-transaction lanes."""
    lanes: list[list[list[Reading]]] = []
    shared = _Fit()
    for _, run in groupby(readings, key=_series):
        series = list(run)
        packed = _pack(series)
        if len(packed) > 1:
            lanes.append(packed)
        elif not shared.add(series):
            lanes.append([shared.readings])
            shared = _Fit()
            shared.add(series)
    if shared.readings:
        lanes.append([shared.readings])
    return lanes


T = TypeVar("T")
R = TypeVar("R")


def _in_parallel(work: Callable[[T], R], inputs: Sequence[T], workers: int) -> list[R]:
    """work(x) for each input, in order; in threads when there is more than one (I/O-bound calls)."""
    if len(inputs) <= 1:
        return [work(x) for x in inputs]
    with ThreadPoolExecutor(max_workers=min(workers, len(inputs))) as pool:
        return list(pool.map(work, inputs))


# ---------------------------------------------------------------- sensor status


STATUS_WORKERS = 8


def status_pk(site_id: str) -> str:
    """Status items share the raw table: pk "<site>#status" (raw keys have a sensor and a day after
    the site, so they never meet it), sk the sensor id; no TTL attribute, so they stay."""
    return f"{site_id}#status"


class SensorStatusStore:
    """Each sensor's newest reading (ts and metrics), one item per sensor, moved only forward in time."""

    def __init__(self, sleep: Sleep = time.sleep) -> None:
        self._sleep = sleep

    @property
    def _table(self) -> str:
        return settings().telemetry_table

    def record(self, site_id: str, heard: Sequence[Heard]) -> int:
        """Move each sensor's item to its newest reading, unless the item holds a newer one (late or
        replayed readings never move status back). How many moved.

        Puts go 100 to a transaction (one alone as a plain put), so a batch of 50 sensors is one
        call, not 50: each put is conditioned on the item's ts, a cancellation names the puts
        refused (those sensors hold a newer reading: left as they are) and the others go again; a
        conflict with another writer of the same items is retried with backoff."""
        chunks = [
            list(heard[i : i + MAX_TRANSACTION_ITEMS]) for i in range(0, len(heard), MAX_TRANSACTION_ITEMS)
        ]
        return sum(_in_parallel(lambda chunk: self._record(site_id, chunk), chunks, STATUS_WORKERS))

    def _record(self, site_id: str, heard: list[Heard]) -> int:
        if len(heard) == 1:  # a device's message: a plain put costs half a transaction's writes
            try:
                _dynamodb().put_item(**self._put(site_id, heard[0])["Put"])
            except Exception as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    return 0  # it holds a newer reading
                raise
            return 1
        pending = heard
        for attempt in range(MAX_ATTEMPTS):
            if not pending:
                return 0
            try:
                _dynamodb().transact_write_items(TransactItems=[self._put(site_id, h) for h in pending])
            except Exception as exc:
                code = error_code(exc)
                if code not in RETRYABLE and code != "TransactionCanceledException":
                    raise
                reasons = [r.get("Code") for r in getattr(exc, "response", {}).get("CancellationReasons", [])]
                newer = {i for i, c in enumerate(reasons) if c == "ConditionalCheckFailed"}
                pending = [h for i, h in enumerate(pending) if i not in newer]
                if not newer:
                    self._sleep(_backoff(attempt))
                continue
            return len(pending)
        raise TooManyRequests("sensor status is busy; retry the batch (it is safe to send again)")

    def _put(self, site_id: str, h: Heard) -> dict[str, Any]:
        """The sensor's item put whole (it holds nothing else: a put costs what an update would, and
        is the lighter request), on condition that it holds no newer reading."""
        return {
            "Put": {
                "TableName": self._table,
                "Item": {
                    "pk": {"S": status_pk(site_id)}, "sk": {"S": h.sensor_id}, "ts": _number(h.ts_ms),
                    "m": {"M": {k: _number(v) for k, v in h.metrics.items()}},
                },
                "ConditionExpression": "attribute_not_exists(ts) OR ts <= :ts",
                "ExpressionAttributeValues": {":ts": _number(h.ts_ms)},
            }
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
