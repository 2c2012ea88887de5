"""Quarter hours and hours of a series' readings (pure, no I/O; ems.telemetry.store keeps them).

A series' readings are kept a quarter hour an item, and each hour's 15-minute buckets in one item once the
hour is sealed: the 1 h bucket is the merge of its quarters, and the 1 d bucket the merge of its 24 hours,
both made when read (buckets nest, and merging is exact: ems.telemetry.rollup). Within a quarter, buckets
are kept by cell, the sensor's room and type when the reading was stored, so that site and room rollups
(ems.telemetry.groups) count a reading where its sensor was. A sum is kept as an exact decimal (a
DynamoDB number has 38 digits), so an hour made from its quarters again equals the first, to the last
digit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal

from ems.telemetry.rollup import WIDTH_MS, Bucket, bucket_start, merge_series

HOUR_MS = 3_600_000
QUARTER_MS = 900_000
# A cell's key: the room (or none) and the sensor type, apart by a character no room name or type holds
# (ems.registry.models: room names exclude control characters, types are [a-z0-9_]).
CELL_SEPARATOR = "\x1f"

Exact = tuple[Bucket, Decimal]  # a bucket and its exact sum
Cells = dict[str, Exact]  # cell key -> its bucket
Quarters = dict[int, Cells]  # quarter of the hour (0..3) -> its cells


def cell(room: str | None, sensor_type: str | None) -> str:
    return f"{room or ''}{CELL_SEPARATOR}{sensor_type or ''}"


def cell_room(key: str) -> str | None:
    return key.split(CELL_SEPARATOR, 1)[0] or None


def cell_type(key: str) -> str:
    return key.split(CELL_SEPARATOR, 1)[1]


def hour_of(ts_ms: int) -> int:
    return ts_ms - ts_ms % HOUR_MS


def quarter_of(ts_ms: int) -> int:
    return (ts_ms % HOUR_MS) // QUARTER_MS


def exact_of(ts_ms: int, value: float) -> Exact:
    return Bucket.of(ts_ms, value), Decimal(repr(value))


def merge_exact(into: dict[str, Exact], key: str, delta: Exact) -> None:
    held = into.get(key)
    into[key] = (
        (delta[0].copy(), delta[1]) if held is None else (held[0].merged(delta[0]), held[1] + delta[1])
    )


def quarters_of(points: Iterable[tuple[int, float, str]]) -> Quarters:
    """The quarters of (ts_ms, value, cell key) points of one hour."""
    out: Quarters = {}
    for ts_ms, value, key in points:
        merge_exact(out.setdefault(quarter_of(ts_ms), {}), key, exact_of(ts_ms, value))
    return out


def by_start(hours: Mapping[int, Quarters], resolution: str) -> Iterator[tuple[int, Cells]]:
    """(bucket start, cells) of each quarter of `hours` (by hour start) in the buckets of `resolution`."""
    if resolution not in ("15m", "1h", "1d"):
        raise ValueError(f"no buckets of {resolution!r} in hours")
    for hour_ms, quarters in hours.items():
        for q, cells in quarters.items():
            yield (
                (hour_ms + q * QUARTER_MS if resolution == "15m" else bucket_start(hour_ms, resolution)),
                cells,
            )


def buckets(hours: Mapping[int, Quarters], resolution: str) -> dict[int, Bucket]:
    """Buckets of `resolution` (15m, 1h, 1d) by start, every cell merged, from hours by start."""
    return merge_series({start: b} for start, cells in by_start(hours, resolution) for b, _ in cells.values())


def hours_between(start_ms: int, end_ms: int, resolution: str) -> tuple[int, int]:
    """[first, end) of the hours whose items hold the buckets of `resolution` that start in
    [start_ms, end_ms): a day's bucket is its 24 hours, a quarter's is in its hour."""
    last = bucket_start(end_ms - 1, resolution) + WIDTH_MS[resolution]
    return (bucket_start(start_ms, "1d") if resolution == "1d" else hour_of(start_ms)), hour_of(
        last - 1
    ) + HOUR_MS
