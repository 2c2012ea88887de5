"""The DynamoDB telemetry store against moto: idempotency when a write races another, and the
transactions it commits side by side."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from ems.registry.status import Heard
from ems.telemetry.models import Reading
from ems.telemetry.rollup import bucket_start
from ems.telemetry.store import DynamoTelemetryStore, SensorStatusStore, _lanes, _rollup_keys

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
    # A message of one new reading among old ones (its transaction names the old ones itself).
    mixed = store.write(readings([9.0, 9.0, 9.0, 4.0]))
    assert (mixed.created, len(mixed.duplicates)) == (1, 3)
    assert totals(store) == (4, 7.0, -1.0, 4.0, 4.0)


def test_a_writer_that_lost_a_race_counts_nothing_twice(stack, monkeypatch) -> None:
    """Another request stored the same readings after this one read the rollups: its transaction is
    refused, the readings become duplicates, and the rollups it read are read again."""
    first, second = DynamoTelemetryStore(), DynamoTelemetryStore()
    first.write(readings([1.0, 2.0]))
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


def fleet(sensors: int, minutes: int, value: float, prefix: str = "S") -> list[Reading]:
    return [
        Reading("hq", f"{prefix}{s}", "power_w", HOUR + m * 60_000, value + s)
        for s in range(sensors)
        for m in range(minutes)
    ]


def test_writers_racing_on_the_same_series_count_each_reading_once(stack, monkeypatch) -> None:
    """Four writers at once, with overlapping readings of 6 sensors over an hour (long series take
    several transactions in turn, short ones share one), all looking before any writes (a barrier):
    every reading is stored once and every rollup counts it once, whoever won each race."""
    batches = [fleet(6, 60, 1.0)[i::2] + fleet(6, 60, 1.0)[: 40 * (i + 1)] for i in range(4)]
    distinct = {(r.sensor_id, r.ts_ms) for batch in batches for r in batch}
    all_looked = threading.Barrier(4, timeout=60)
    read_states = DynamoTelemetryStore._rollup_states

    first_looks: set[str] = set()

    def look_then_wait(self, keys):  # each racer's first look waits for the others' (not re-reads)
        states = read_states(self, keys)
        me = threading.current_thread().name
        if me.startswith("racer") and me not in first_looks:
            first_looks.add(me)
            all_looked.wait()
        return states

    monkeypatch.setattr(DynamoTelemetryStore, "_rollup_states", look_then_wait)
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="racer") as pool:
        outcomes = list(pool.map(lambda b: DynamoTelemetryStore().write(list(dict.fromkeys(b))), batches))
    assert sum(o.created for o in outcomes) == len(distinct) == 360
    store = DynamoTelemetryStore()
    sensors = [f"S{s}" for s in range(6)]
    hours = store.read_rollups("hq", sensors, "power_w", "1h", HOUR, HOUR + 1)
    quarters = store.read_rollups("hq", sensors, "power_w", "15m", HOUR, HOUR + 3_600_000)
    for s, sensor in enumerate(sensors):
        assert (hours[sensor][HOUR].count, hours[sensor][HOUR].sum) == (60, 60 * (1.0 + s))
        assert [b.count for _, b in sorted(quarters[sensor].items())] == [15, 15, 15, 15]


def test_series_that_fill_transactions_commit_in_lanes_that_share_no_item() -> None:
    readings = sorted(fleet(3, 150, 1.0, "L") + fleet(40, 1, 2.0, "S"), key=lambda r: (r.sensor_id, r.ts_ms))
    lanes = _lanes(readings)
    groups = [group for lane in lanes for group in lane]
    assert Counter(r for g in groups for r in g) == Counter(readings)  # each reading once
    for group in groups:  # each fits one transaction: its raw puts, distinct rollup items, a journal entry a site
        rollups = {k for r in group for k in _rollup_keys(r)}
        assert len(group) + len(rollups) + len({r.site_id for r in group}) <= 100
    items_of_lane = [{k for g in lane for r in g for k in _rollup_keys(r)} for lane in lanes]
    for i, mine in enumerate(items_of_lane):
        assert all(not mine & other for other in items_of_lane[i + 1 :])
    # L0..L2 need two transactions each (150 readings): a lane each; S0..S39 (one reading, three
    # rollup items each) share one-transaction lanes of 24 series (96 items and the site's journal
    # entry; a 25th would make 101): 24 and 16.
    assert sorted(len(lane) for lane in lanes) == [1, 1, 2, 2, 2]
    assert sorted(len(lane[0]) for lane in lanes if lane[0][0].sensor_id.startswith("S")) == [16, 24]


def test_status_moves_forward_only_and_many_sensors_at_once(stack) -> None:
    statuses = SensorStatusStore()
    assert (
        statuses.record("hq", [Heard("A", NOW - 60_000, {"power_w": 1.0}), Heard("B", NOW, {"power_w": 2.0})])
        == 2
    )
    # One call: A moves to a newer reading, B is offered an older one and keeps its own.
    late = [Heard("A", NOW, {"power_w": 3.0}), Heard("B", NOW - 120_000, {"power_w": 9.0})]
    assert statuses.record("hq", late) == 1
    found = statuses.get("hq", ["A", "B", "never"])
    assert {s: (h.ts_ms, h.metrics) for s, h in found.items()} == {
        "A": (NOW, {"power_w": 3.0}), "B": (NOW, {"power_w": 2.0}),
    }  # fmt: skip
    # 150 sensors: two transactions (100 updates each at most), every one applied.
    many = [Heard(f"M{i}", NOW, {"value": float(i)}) for i in range(150)]
    assert statuses.record("hq", many) == 150
    assert {h.metrics["value"] for h in statuses.get("hq", [h.sensor_id for h in many]).values()} == {
        float(i) for i in range(150)
    }
