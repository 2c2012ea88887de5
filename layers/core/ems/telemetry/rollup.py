"""Bucket arithmetic of rollups (15 min, 1 h, 1 d): pure, no I/O, shared by the store and the reads.

A bucket holds count, sum, min, max and last (the value with the greatest timestamp). Buckets are
aligned to UTC epoch multiples of their width, so a day is a UTC day. Merging buckets is
associative and commutative, which is what makes rollups of rollups (and of many sensors) exact:
mean = sum / count of the merged bucket, never a mean of means.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

RollupResolution = Literal["15m", "1h", "1d"]
ROLLUP_RESOLUTIONS: tuple[RollupResolution, ...] = ("15m", "1h", "1d")
WIDTH_MS: dict[str, int] = {"15m": 15 * 60_000, "1h": 3_600_000, "1d": 86_400_000}
DAY_MS = WIDTH_MS["1d"]


def bucket_start(ts_ms: int, resolution: str) -> int:
    """The start (epoch ms) of the bucket of `resolution` that holds `ts_ms`."""
    width = WIDTH_MS[resolution]
    return ts_ms - ts_ms % width


def buckets_between(start_ms: int, end_ms: int, resolution: str) -> int:
    """How many buckets overlap [start_ms, end_ms): an upper bound of the points a series can have."""
    if end_ms <= start_ms:
        return 0
    width = WIDTH_MS[resolution]
    return (end_ms - 1) // width - start_ms // width + 1


@dataclass
class Bucket:
    """count, sum, min, max and last of the readings in one bucket; `last_ts` orders `last`."""

    count: int
    sum: float
    min: float
    max: float
    last: float
    last_ts: int

    @classmethod
    def of(cls, ts_ms: int, value: float) -> Bucket:
        return cls(count=1, sum=value, min=value, max=value, last=value, last_ts=ts_ms)

    def add(self, ts_ms: int, value: float) -> None:
        self.merge(Bucket.of(ts_ms, value))

    def merge(self, other: Bucket) -> None:
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        # Ties on the timestamp (two sensors of a room at the same ms) keep the larger value, so
        # the result does not depend on the order buckets arrive in.
        if (other.last_ts, other.last) > (self.last_ts, self.last):
            self.last, self.last_ts = other.last, other.last_ts

    def copy(self) -> Bucket:
        return Bucket(self.count, self.sum, self.min, self.max, self.last, self.last_ts)

    def merged(self, other: Bucket) -> Bucket:
        out = self.copy()
        out.merge(other)
        return out

    def value(self, aggregate: str) -> float:
        if aggregate == "mean":
            return self.sum / self.count
        if aggregate == "sum":
            return self.sum
        if aggregate == "min":
            return self.min
        if aggregate == "max":
            return self.max
        if aggregate == "last":
            return self.last
        raise ValueError(f"unknown aggregate {aggregate!r}")


def rollup(points: Iterable[tuple[int, float]], resolution: str) -> dict[int, Bucket]:
    """The buckets of `resolution` of (ts_ms, value) points, by bucket start; "raw" buckets by ts."""
    out: dict[int, Bucket] = {}
    for ts_ms, value in points:
        start = ts_ms if resolution == "raw" else bucket_start(ts_ms, resolution)
        bucket = out.get(start)
        if bucket is None:
            out[start] = Bucket.of(ts_ms, value)
        else:
            bucket.add(ts_ms, value)
    return out


def merge_series(series: Iterable[dict[int, Bucket]]) -> dict[int, Bucket]:
    """Buckets of several series (sensors of a room, of a site) merged bucket by bucket."""
    out: dict[int, Bucket] = {}
    for buckets in series:
        for start, bucket in buckets.items():
            held = out.get(start)
            if held is None:
                out[start] = bucket.copy()
            else:
                held.merge(bucket)
    return out
