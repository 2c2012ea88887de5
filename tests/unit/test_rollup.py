"""Bucket arithmetic of rollups, checked by hand and by invariants (no AWS)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ems.telemetry.rollup import Bucket, bucket_start, buckets_between, merge_series, rollup

T0 = 1_700_000_000_000 - 1_700_000_000_000 % 86_400_000  # a UTC midnight, in ms


def test_buckets_align_to_utc_multiples_of_their_width() -> None:
    ts = T0 + 3_600_000 + 16 * 60_000 + 5  # 01:16:00.005
    assert bucket_start(ts, "15m") == T0 + 3_600_000 + 15 * 60_000
    assert bucket_start(ts, "1h") == T0 + 3_600_000
    assert bucket_start(ts, "1d") == T0
    assert bucket_start(T0 - 1, "1d") == T0 - 86_400_000


def test_buckets_between_counts_overlapping_buckets() -> None:
    assert buckets_between(T0, T0 + 86_400_000, "1h") == 24
    assert buckets_between(T0 + 1, T0 + 3_600_001, "1h") == 2
    assert buckets_between(T0, T0 + 365 * 86_400_000, "1h") == 8760
    assert buckets_between(T0, T0, "15m") == 0


def test_a_bucket_by_hand() -> None:
    buckets = rollup([(T0 + 10, 2.0), (T0 + 5, 4.0), (T0 + 20, 3.0), (T0 + 3_600_000, 7.0)], "1h")
    first = buckets[T0]
    assert (first.count, first.sum, first.min, first.max, first.last) == (3, 9.0, 2.0, 4.0, 3.0)
    assert first.value("mean") == 3.0
    assert buckets[T0 + 3_600_000].value("last") == 7.0
    with pytest.raises(ValueError):
        first.value("median")


def test_raw_buckets_are_one_per_timestamp() -> None:
    merged = merge_series([rollup([(T0, 1.0)], "raw"), rollup([(T0, 3.0), (T0 + 1, 5.0)], "raw")])
    assert (merged[T0].count, merged[T0].value("mean")) == (2, 2.0)
    assert merged[T0 + 1].count == 1


def test_last_ties_do_not_depend_on_order() -> None:
    a, b = Bucket.of(T0, 1.0), Bucket.of(T0, 2.0)
    assert a.merged(b).last == b.merged(a).last == 2.0


points = st.lists(
    st.tuples(st.integers(T0, T0 + 3 * 86_400_000), st.integers(-10_000, 10_000).map(lambda v: v / 4)),
    min_size=1, max_size=200,
)  # fmt: skip


@given(points)
def test_coarse_buckets_equal_merged_fine_buckets(data: list[tuple[int, float]]) -> None:
    """1 h from 15 min buckets, and 1 d from 1 h, equal the same rollup of the raw points."""
    fine = rollup(data, "15m")
    for coarse in ("1h", "1d"):
        direct = rollup(data, coarse)
        regrouped: dict[int, list[Bucket]] = {}
        for start, bucket in fine.items():
            regrouped.setdefault(bucket_start(start, coarse), []).append(bucket)
        for start, parts in regrouped.items():
            merged = parts[0].copy()
            for part in parts[1:]:
                merged.merge(part)
            want = direct[start]
            assert (merged.count, merged.min, merged.max, merged.last, merged.last_ts) == (
                want.count, want.min, want.max, want.last, want.last_ts,
            )  # fmt: skip
            assert merged.sum == pytest.approx(want.sum)


@given(points, st.randoms())
def test_merging_series_is_order_free(data: list[tuple[int, float]], rnd: random.Random) -> None:
    halves = [rollup(data[::2], "1h"), rollup(data[1::2], "1h")]
    one, other = merge_series(halves), merge_series(list(reversed(halves)))
    assert {k: (b.count, b.min, b.max, b.last) for k, b in one.items()} == {
        k: (b.count, b.min, b.max, b.last) for k, b in other.items()
    }
    assert sum(b.count for b in one.values()) == len(data)
