"""Site and room rollups: which groups a reading counts in, and the deltas the ingest journal carries
(pure, no I/O; ems.telemetry.store writes and folds them).

A reading counts in its site's group and, when its sensor is in a room, in that room's group: the room
the sensor was in when the reading was stored (a sensor that moves later leaves its past where it was).
A group's bucket is kept by sensor type, so a `sensor_types` filter on a room or site query reads the
buckets of those types only, and a room's climate metric its climate sensors' only (as the room's live
metrics do, ems.telemetry.models.ROOM_METRIC_OF_SENSOR_TYPE).

Ingest does not write group buckets itself: every sensor of a site would then write the same few
items, and transactions that share an item cannot commit side by side. Each ingest transaction puts
one journal entry per site instead, with its readings' 15-minute deltas by group and type; it commits
with the raw items, so a reading is in the journal exactly when it is stored. A fold moves journal
entries into the group buckets (1 h and 1 d are merges of 15-minute deltas: buckets nest), each
entry's delete in the same transaction as the buckets it moves, so an entry is applied exactly once
whoever folds it. A read merges the buckets with the entries not folded yet.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from decimal import Decimal

from ems.telemetry.models import Reading
from ems.telemetry.rollup import ROLLUP_RESOLUTIONS, Bucket, bucket_start

SITE_SCOPE = "site"
# A group bucket: (scope, metric, resolution, bucket start); within it, one Bucket a sensor type.
GroupKey = tuple[str, str, str, int]
# A 15-minute delta of one type: (scope, sensor type, metric, bucket start).
DeltaKey = tuple[str, str, str, int]
Exact = tuple[Bucket, Decimal]  # a bucket and its exact sum


def room_scope(room: str) -> str:
    return f"room:{room}"


def scopes_of(reading: Reading) -> tuple[str, ...]:
    return (SITE_SCOPE,) if reading.room is None else (SITE_SCOPE, room_scope(reading.room))


def group_pk(site_id: str, scope: str, metric: str, resolution: str) -> str:
    """Sensor ids start with a letter or digit and room names hold no '#': '*' keeps these apart."""
    return f"{site_id}#*{scope}#{metric}#{resolution}"


def journal_pk(site_id: str) -> str:
    return f"{site_id}#*journal"


def group_keys(readings: Iterable[Reading]) -> set[GroupKey]:
    """The group buckets (every resolution) that folding these readings moves."""
    return {
        (scope, r.metric, resolution, bucket_start(r.ts_ms, resolution))
        for r in readings
        for scope in scopes_of(r)
        for resolution in ROLLUP_RESOLUTIONS
    }


def deltas(readings: Iterable[Reading]) -> dict[DeltaKey, Exact]:
    """The readings' 15-minute deltas by group and sensor type."""
    out: dict[DeltaKey, Exact] = {}
    for r in readings:
        start = bucket_start(r.ts_ms, "15m")
        for scope in scopes_of(r):
            key = (scope, r.sensor_type or "", r.metric, start)
            held = out.get(key)
            if held is None:
                out[key] = (Bucket.of(r.ts_ms, r.value), Decimal(repr(r.value)))
            else:
                held[0].add(r.ts_ms, r.value)
                out[key] = (held[0], held[1] + Decimal(repr(r.value)))
    return out


def encode(found: Mapping[DeltaKey, Exact]) -> str:
    """A journal entry's deltas as compact JSON (sums as exact decimal strings)."""
    return json.dumps(
        [[scope, kind, metric, start, b.count, str(total), b.min, b.max, b.last, b.last_ts]
         for (scope, kind, metric, start), (b, total) in found.items()],
        separators=(",", ":"),
    )  # fmt: skip


def decode(text: str) -> dict[DeltaKey, Exact]:
    out: dict[DeltaKey, Exact] = {}
    for scope, kind, metric, start, count, total, low, high, last, last_ts in json.loads(text):
        bucket = Bucket(count=count, sum=float(Decimal(total)), min=low, max=high, last=last, last_ts=last_ts)
        out[(scope, kind, metric, start)] = (bucket, Decimal(total))
    return out


def merge_exact(into: dict[str, Exact], kind: str, delta: Exact) -> None:
    held = into.get(kind)
    if held is None:
        into[kind] = (delta[0].copy(), delta[1])
    else:
        into[kind] = (held[0].merged(delta[0]), held[1] + delta[1])


def expand(found: Mapping[DeltaKey, Exact]) -> dict[GroupKey, dict[str, Exact]]:
    """15-minute deltas as the changes of every resolution's group buckets, by sensor type."""
    out: dict[GroupKey, dict[str, Exact]] = {}
    for (scope, kind, metric, start), delta in found.items():
        for resolution in ROLLUP_RESOLUTIONS:
            key = (scope, metric, resolution, bucket_start(start, resolution))
            merge_exact(out.setdefault(key, {}), kind, delta)
    return out


def by_types(buckets: Mapping[str, Bucket], types: frozenset[str] | None) -> Bucket | None:
    """One group bucket's types merged (those of `types`, or all); None when none of them is there."""
    out: Bucket | None = None
    for kind, bucket in buckets.items():
        if types is None or kind in types:
            out = bucket.copy() if out is None else out.merged(bucket)
    return out
