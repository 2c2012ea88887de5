"""The DynamoDB telemetry store against moto: each reading once in its quarter however writes race or come
again, what a reading costs in requests, dense batches in transactions; each sensor's newest reading."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from ems.registry.status import Heard
from ems.telemetry.models import Reading
from ems.telemetry.rollup import bucket_start
from ems.telemetry.store import DynamoLatestReadings, DynamoTelemetryStore, Quarter, SensorStatusStore

NOW = int(datetime.now(UTC).timestamp() * 1000)
HOUR = NOW - NOW % 3_600_000 - 3_600_000


def at_hour_start() -> datetime:
    """A clock by which no hour of these tests is due for sealing (store tests; sealing has its own)."""
    return datetime.fromtimestamp(HOUR / 1000, UTC)


def store() -> DynamoTelemetryStore:
    return DynamoTelemetryStore(now=at_hour_start)


def readings(values: list[float], offset_ms: int = 0, sensor: str = "S1") -> list[Reading]:
    return [Reading("hq", sensor, "power_w", HOUR + offset_ms + i * 60_000, v) for i, v in enumerate(values)]


def totals(s: DynamoTelemetryStore, resolution: str = "1h", sensor: str = "S1") -> tuple:
    start = bucket_start(HOUR, resolution)
    b = s.read_rollups("hq", [sensor], "power_w", resolution, start, start + 1)[sensor][start]
    return b.count, b.sum, b.min, b.max, b.last


def raw_values(s: DynamoTelemetryStore, sensor: str = "S1") -> list[float]:
    return [v for _, v in s.read_raw("hq", [sensor], "power_w", HOUR, HOUR + 3_600_000, 1000)[sensor]]


def test_the_same_readings_twice_count_once(stack) -> None:
    s = store()
    assert s.write(readings([1.5, 2.5, -1.0])).created == 3
    again = s.write(readings([9.0, 9.0, 9.0]))  # same keys, other values: the first stay
    assert (again.created, len(again.duplicates)) == (0, 3)
    assert totals(s) == (3, 3.0, -1.0, 2.5, -1.0)
    assert totals(s, "1d")[0] == 3
    assert raw_values(s) == [1.5, 2.5, -1.0]
    # A message of one new reading among old ones: the old ones are found in the raw readings.
    mixed = s.write(readings([9.0, 9.0, 9.0, 4.0]))
    assert (mixed.created, len(mixed.duplicates)) == (1, 3)
    assert totals(s) == (4, 7.0, -1.0, 4.0, 4.0)
    assert raw_values(s) == [1.5, 2.5, -1.0, 4.0]


def test_a_late_reading_joins_its_quarter(stack) -> None:
    s = store()
    s.write(readings([float(m) for m in range(20)]))  # minutes 0..19: quarters 0 and 1
    late = s.write([Reading("hq", "S1", "power_w", HOUR + 90_000, 100.0)])  # minute 1.5, behind the newest
    assert (late.created, len(late.duplicates)) == (1, 0)
    quarters = s.read_rollups("hq", ["S1"], "power_w", "15m", HOUR, HOUR + 3_600_000)["S1"]
    first = quarters[HOUR]
    assert (first.count, first.sum, first.max, first.last) == (16, sum(range(15)) + 100.0, 100.0, 14.0)
    assert quarters[HOUR + 900_000].count == 5
    assert totals(s)[:2] == (21, sum(range(20)) + 100.0)
    assert raw_values(s)[:3] == [0.0, 1.0, 100.0]


def test_a_write_that_lost_a_race_reads_the_quarter_again(stack, monkeypatch) -> None:
    """Another writer stored some of the same readings after this one read the quarter: this one's put
    is refused, it reads the quarter again and adds only what is still missing, and says which were there."""
    first, second = store(), store()
    first.write(readings([1.0, 2.0]))
    real = DynamoTelemetryStore._quarters_and_pointers
    reads = []

    def stale_first(self, keys, series):
        reads.append(1)
        quarters, pointers = real(self, keys, series)
        return ({k: Quarter() for k in quarters}, {}) if len(reads) == 1 else (quarters, pointers)

    monkeypatch.setattr(DynamoTelemetryStore, "_quarters_and_pointers", stale_first)
    outcome = second.write(readings([1.0, 2.0, 5.0]))
    assert (outcome.created, len(outcome.duplicates)) == (1, 2)
    assert totals(first) == (3, 8.0, 1.0, 5.0, 5.0)
    assert raw_values(first) == [1.0, 2.0, 5.0]


def fleet(sensors: int, minutes: int, value: float, prefix: str = "S") -> list[Reading]:
    return [
        Reading("hq", f"{prefix}{s}", "power_w", HOUR + m * 60_000, value + s)
        for s in range(sensors)
        for m in range(minutes)
    ]


def test_writers_racing_on_the_same_series_count_each_reading_once(stack, monkeypatch) -> None:
    """Four writers with overlapping batches of the same six sensors' hour, each reading the quarters
    before any has written: one put of each quarter wins, the others read it again and add what is
    missing; each reading is created once in all."""
    batches = [fleet(6, 60, 1.0)[i::2] + fleet(6, 60, 1.0)[: 40 * (i + 1)] for i in range(4)]
    distinct = {r for b in batches for r in b}
    all_looked = threading.Barrier(4)
    real = DynamoTelemetryStore._quarters_and_pointers
    first_looks: set[str] = set()

    def look_then_wait(self, keys, series):  # each racer's first look waits for the others'
        found = real(self, keys, series)
        me = threading.current_thread().name
        if me.startswith("racer") and me not in first_looks:
            first_looks.add(me)
            all_looked.wait()
        return found

    monkeypatch.setattr(DynamoTelemetryStore, "_quarters_and_pointers", look_then_wait)
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="racer") as pool:
        outcomes = list(pool.map(lambda b: store().write(list(dict.fromkeys(b))), batches))
    assert sum(o.created for o in outcomes) == len(distinct) == 360
    s = store()
    sensors = [f"S{n}" for n in range(6)]
    hours = s.read_rollups("hq", sensors, "power_w", "1h", HOUR, HOUR + 1)
    quarters = s.read_rollups("hq", sensors, "power_w", "15m", HOUR, HOUR + 3_600_000)
    for n, sensor in enumerate(sensors):
        assert (hours[sensor][HOUR].count, hours[sensor][HOUR].sum) == (60, 60 * (1.0 + n))
        assert [b.count for _, b in sorted(quarters[sensor].items())] == [15, 15, 15, 15]
        assert len(raw_values(s, sensor)) == 60


def counting(monkeypatch) -> list[tuple[str, int]]:
    """The store's write requests from now on: (operation, items it writes)."""
    from ems.telemetry import store as store_module

    calls: list[tuple[str, int]] = []
    client = store_module._dynamodb()
    for name in ("put_item", "update_item", "batch_write_item", "transact_write_items"):

        def call(real=getattr(client, name), name=name, **kwargs):
            if name == "transact_write_items":  # which kind of write, and how many items
                calls.append(
                    (f"transact {next(iter(kwargs['TransactItems'][0]))}", len(kwargs["TransactItems"]))
                )
            else:
                calls.append((name, 1))
            return real(**kwargs)

        monkeypatch.setattr(client, name, call)
    return calls


def test_a_message_costs_a_put_a_reading(stack, monkeypatch) -> None:
    """A device's message of 10 sensors' readings, the first of their hour and then the next minute's:
    each message puts the 10 quarters (one reading each: no transaction); the series' pointers move once
    (with the first message), the site's seal is made once."""
    calls = counting(monkeypatch)
    s = store()
    for minute in range(2):
        calls.clear()
        s.write([Reading("hq", f"S{n}", "power_w", HOUR + minute * 60_000, float(n)) for n in range(10)])
        if minute == 0:  # 10 quarters, the seal, 10 pointers
            assert sorted(calls) == [("put_item", 1)] * 11 + [("update_item", 1)] * 10
        else:
            assert sorted(calls) == [("put_item", 1)] * 10


def test_a_dense_batch_goes_in_transactions_of_100_quarters(stack, monkeypatch) -> None:
    """150 sensors' hour at one reading a minute (9,000 readings, 600 quarters of 15): six transactions of
    100 quarters, and the 150 new pointers in two. Sent again, nothing is written, and every reading is
    a duplicate."""
    calls = counting(monkeypatch)
    s = store()
    batch = fleet(150, 60, 1.0)
    assert s.write(batch).created == 9000
    assert sorted(calls) == [
        ("put_item", 1),
        ("transact Put", 100),
        ("transact Put", 100),
        ("transact Put", 100),
        ("transact Put", 100),
        ("transact Put", 100),
        ("transact Put", 100),
        ("transact Update", 50),
        ("transact Update", 100),
    ]  # and the site's seal
    calls.clear()
    again = s.write(batch)
    assert (again.created, len(again.duplicates)) == (0, 9000)
    assert calls == []
    assert totals(s, sensor="S149") == (60, 60 * 150.0, 150.0, 150.0, 150.0)


# ---------------------------------------------------------------- each sensor's newest reading


def test_the_newest_reading_is_read_from_the_series_newest_hour(stack) -> None:
    s, latest = store(), DynamoLatestReadings()
    s.write([
        Reading("hq", "M1", "power_w", HOUR + 60_000, 5.0), Reading("hq", "M1", "energy_wh", HOUR + 60_000, 7.0),
        Reading("hq", "M1", "power_w", HOUR - 60_000, 4.0), Reading("hq", "M2", "power_w", HOUR, 1.0),
    ])  # fmt: skip
    assert latest.get("hq", ["M1", "M2", "M3"]) == {
        "M1": Heard("M1", HOUR + 60_000, {"power_w": 5.0, "energy_wh": 7.0}),
        "M2": Heard("M2", HOUR, {"power_w": 1.0}),
    }
    s.write([Reading("hq", "M1", "power_w", HOUR - 120_000, 9.0)])  # late: stays behind
    s.write([Reading("hq", "M2", "power_w", HOUR + 3_600_000, 2.0)])  # the next hour
    assert latest.get("hq", ["M1", "M2"])["M2"] == Heard("M2", HOUR + 3_600_000, {"power_w": 2.0})
    assert latest.get("hq", ["M1"])["M1"].ts_ms == HOUR + 60_000
    many = latest.get("hq", [f"M{n}" for n in range(1, 9)])  # the site's series in one query
    assert set(many) == {"M1", "M2"}


def test_status_moves_forward_only_and_many_sensors_at_once(stack) -> None:
    statuses = SensorStatusStore()  # the Timestream deployment's
    assert (
        statuses.record("hq", [Heard("A", NOW - 60_000, {"power_w": 1.0}), Heard("B", NOW, {"power_w": 2.0})])
        == 2
    )
    # A moves to a newer reading, B is offered an older one and keeps its own.
    assert (
        statuses.record("hq", [Heard("A", NOW, {"power_w": 3.0}), Heard("B", NOW - 1, {"power_w": 9.0})]) == 1
    )
    found = statuses.get("hq", ["A", "B", "C"])
    assert found == {"A": Heard("A", NOW, {"power_w": 3.0}), "B": Heard("B", NOW, {"power_w": 2.0})}
    many = [Heard(f"S{n}", NOW, {"power_w": float(n)}) for n in range(250)]
    assert statuses.record("hq", many) == 250
    assert len(statuses.get("hq", [h.sensor_id for h in many])) == 250
