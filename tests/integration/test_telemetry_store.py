"""The DynamoDB telemetry store against moto: idempotency when a write races another."""

from __future__ import annotations

from datetime import UTC, datetime

from ems.telemetry.models import Reading
from ems.telemetry.rollup import bucket_start
from ems.telemetry.store import DynamoTelemetryStore

NOW = int(datetime.now(UTC).timestamp() * 1000)
HOUR = NOW - NOW % 3_600_000 - 3_600_000


def readings(values: list[float], offset_ms: int = 0) -> list[Reading]:
    return [Reading("hq", "S1", "power_w", HOUR + offset_ms + i * 60_000, v) for i, v in enumerate(values)]


def totals(store: DynamoTelemetryStore, resolution: str = "1h") -> tuple[int, float, float, float, float]:
    start = bucket_start(HOUR, resolution)
    b = store.read_rollups("hq", ["S1"], "power_w", resolution, start, start + 1)["S1"][start]
    return b.count, b.sum, b.min, b.max, b.last


def test_the_same_readings_twice_count_once(stack) -> None:
    store = DynamoTelemetryStore()
    assert store.write(readings([1.5, 2.5, -1.0])).created == 3
    again = store.write(readings([9.0, 9.0, 9.0]))  # same keys, other values: the first stay
    assert (again.created, len(again.duplicates)) == (0, 3)
    assert totals(store) == (3, 3.0, -1.0, 2.5, -1.0)
    assert totals(store, "1d")[0] == 3
    raw = store.read_raw("hq", ["S1"], "power_w", HOUR, HOUR + 3_600_000, 100)["S1"]
    assert [v for _, v in raw] == [1.5, 2.5, -1.0]


def test_a_writer_that_lost_a_race_counts_nothing_twice(stack, monkeypatch) -> None:
    """Another request stored the same readings after this one looked: its transaction is refused,
    the readings become duplicates, and the rollups it read are read again."""
    first, second = DynamoTelemetryStore(), DynamoTelemetryStore()
    first.write(readings([1.0, 2.0]))
    monkeypatch.setattr(second, "_existing_raw", lambda _readings: set())  # looked before the other wrote
    stale = {}
    monkeypatch.setattr(second, "_rollup_states", lambda keys: stale.setdefault("k", dict.fromkeys(keys)) if not stale else DynamoTelemetryStore._rollup_states(second, keys))  # fmt: skip
    outcome = second.write(readings([1.0, 2.0, 5.0]))
    assert outcome.created == 1 and len(outcome.duplicates) == 2
    assert totals(first) == (3, 8.0, 1.0, 5.0, 5.0)


def test_a_stale_rollup_is_read_again_not_overwritten(stack, monkeypatch) -> None:
    store = DynamoTelemetryStore()
    store.write(readings([4.0]))
    late = DynamoTelemetryStore()
    calls = []

    def stale_then_real(keys):  # the first read misses the item the other writer made
        calls.append(1)
        return dict.fromkeys(keys) if len(calls) == 1 else DynamoTelemetryStore._rollup_states(late, keys)

    monkeypatch.setattr(late, "_rollup_states", stale_then_real)
    assert late.write(readings([3.0], offset_ms=30_000)).created == 1
    assert len(calls) == 2
    assert totals(store) == (2, 7.0, 3.0, 4.0, 3.0)
