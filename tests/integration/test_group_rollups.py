"""Site and room rollups (ems.telemetry.groups) against moto: the journal every ingest transaction
writes, the folds that move it into the group buckets, and reads that merge both. Each figure is
checked against the readings themselves: count, sum, min, max and last of what was stored."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from ems.telemetry.groups import SITE_SCOPE, by_types, room_scope
from ems.telemetry.models import Reading
from ems.telemetry.rollup import bucket_start
from ems.telemetry.store import DynamoTelemetryStore

NOW = int(datetime.now(UTC).timestamp() * 1000)
DAY = NOW - NOW % 86_400_000 - 86_400_000  # yesterday, UTC
ROOMS = {"T1": "lab", "T2": "lab", "P1": "lab", "P2": "hall", "P3": None}
TYPES = {"T1": "temperature", "T2": "temperature", "P1": "plug", "P2": "plug", "P3": "plug"}


def reading(sensor: str, minute: float, value: float, room: str | None = "same") -> Reading:
    return Reading("hq", sensor, "power_w", DAY + int(minute * 60_000), value,
                   ROOMS[sensor] if room == "same" else room, TYPES[sensor])  # fmt: skip


def expected(
    stored: list[Reading], scope: str, resolution: str, types: set[str] | None = None
) -> dict[int, tuple]:
    """(count, sum, min, max, last) by bucket, from the readings themselves."""
    out: dict[int, list[Reading]] = {}
    for r in stored:
        in_scope = scope == SITE_SCOPE or (r.room is not None and scope == room_scope(r.room))
        if in_scope and (types is None or r.sensor_type in types):
            out.setdefault(bucket_start(r.ts_ms, resolution), []).append(r)
    return {
        start: (len(rs), round(sum(r.value for r in rs), 6), min(r.value for r in rs), max(r.value for r in rs),
                max(rs, key=lambda r: (r.ts_ms, r.value)).value)
        for start, rs in out.items()
    }  # fmt: skip


def answered(
    store: DynamoTelemetryStore, scope: str, resolution: str, types: set[str] | None = None
) -> dict[int, tuple]:
    start, end = DAY - 86_400_000, DAY + 2 * 86_400_000
    found = store.read_groups("hq", [scope], "power_w", resolution, start, end)[scope]
    out = {}
    for bucket_ms, by_type in found.items():
        b = by_types(by_type, frozenset(types) if types else None)
        if b is not None:
            out[bucket_ms] = (b.count, round(b.sum, 6), b.min, b.max, b.last)
    return out


def check_all(store: DynamoTelemetryStore, stored: list[Reading]) -> None:
    for scope in (SITE_SCOPE, room_scope("lab"), room_scope("hall")):
        for resolution in ("15m", "1h", "1d"):
            assert answered(store, scope, resolution) == expected(stored, scope, resolution), (
                scope,
                resolution,
            )
    assert answered(store, room_scope("lab"), "1h", {"plug"}) == expected(
        stored, room_scope("lab"), "1h", {"plug"}
    )


def journal_size(store: DynamoTelemetryStore) -> int:
    return len(store._journal("hq", None))


@pytest.mark.parametrize("fold_every", [0, 1, 3])
def test_group_buckets_equal_the_readings_folded_or_not(stack, fold_every: int) -> None:
    """Batches with duplicates inside and across them, and a batch sent again whole: each reading
    counts once in its site's and room's buckets, whether the journal was folded after every write,
    now and then, or never (then a read merges every entry)."""
    rng = random.Random(fold_every)
    store = DynamoTelemetryStore(fold_every=fold_every)
    sensors = list(ROOMS)
    batches = [
        [reading(rng.choice(sensors), rng.randint(0, 36 * 60) + rng.random(), round(rng.uniform(-50, 500), 2))
         for _ in range(rng.randint(1, 120))]
        for _ in range(12)
    ]  # fmt: skip
    batches.append(batches[3])  # a batch retried whole
    batches.append(batches[5][:7] + batches[8][-4:])  # a retry of parts of two
    stored: dict[tuple[str, str, int], Reading] = {}
    for batch in batches:
        distinct = {(r.sensor_id, r.metric, r.ts_ms): r for r in reversed(batch)}  # the first of equal keys
        store.write(list(distinct.values()))
        for key, r in distinct.items():
            stored.setdefault(key, r)
    check_all(store, list(stored.values()))
    if fold_every == 0:
        assert journal_size(store) >= len(batches) - 2  # every transaction journaled, none folded
    assert store.fold("hq", rounds=1000) >= 0 and journal_size(store) == 0
    check_all(store, list(stored.values()))  # the same once everything is folded


def test_a_reading_counts_for_the_room_its_sensor_was_in(stack) -> None:
    store = DynamoTelemetryStore(fold_every=1)
    before = [reading("P1", m, 10.0 + m) for m in range(5)]  # P1 in the lab
    after = [reading("P1", 5 + m, 100.0 + m, room="hall") for m in range(3)]  # then moved to the hall
    store.write(before)
    store.write(after)
    assert answered(store, room_scope("lab"), "1h") == {DAY: (5, 60.0, 10.0, 14.0, 14.0)}
    assert answered(store, room_scope("hall"), "1h") == {DAY: (3, 303.0, 100.0, 102.0, 102.0)}
    assert answered(store, SITE_SCOPE, "1h") == {DAY: (8, 363.0, 10.0, 102.0, 102.0)}


def test_a_fold_that_lost_the_race_applies_nothing_twice(stack, monkeypatch) -> None:
    """Two folders read the same entries; the first commits, the second's transaction is refused
    (its deletes find nothing) and it stops."""
    writer = DynamoTelemetryStore(fold_every=0)
    stored = [reading("P2", m, float(m)) for m in range(20)]
    writer.write(stored[:10])
    writer.write(stored[10:])
    late = DynamoTelemetryStore(fold_every=0)
    seen = late._journal("hq", None)
    assert writer.fold("hq") == 2
    monkeypatch.setattr(late, "_journal", lambda site, limit: seen)
    assert late.fold("hq") == 0
    monkeypatch.undo()
    check_all(writer, stored)


def test_a_read_that_raced_a_fold_reads_again(stack, monkeypatch) -> None:
    """A fold commits after the read took the journal and before it took the buckets: counting both
    would count those readings twice, so the read goes again."""
    store = DynamoTelemetryStore(fold_every=0)
    stored = [reading(s, m, float(m)) for s in ("P1", "P2") for m in range(30)]
    store.write(stored)
    assert journal_size(store) == 1
    real = DynamoTelemetryStore._journal
    calls = []

    def journal_then_fold(site_id: str, limit: int | None):
        calls.append(1)
        entries = real(store, site_id, limit)
        if len(calls) == 1:
            DynamoTelemetryStore(fold_every=0).fold(site_id)  # commits between this and the buckets
        return entries

    monkeypatch.setattr(store, "_journal", journal_then_fold)
    assert answered(store, SITE_SCOPE, "15m") == expected(stored, SITE_SCOPE, "15m")
    assert len(calls) == 4  # journal, buckets, journal (an entry gone): again, once


def test_a_failed_fold_loses_nothing(stack, monkeypatch) -> None:
    """The write succeeds when its fold fails: the entry stays in the journal and reads count it."""
    store = DynamoTelemetryStore(fold_every=1)
    monkeypatch.setattr(
        store, "fold", lambda site_id, rounds=4: (_ for _ in ()).throw(RuntimeError("DynamoDB is down"))
    )
    stored = [reading("T1", m, 20.0 + m / 10) for m in range(12)]
    assert store.write(stored).created == 12
    assert journal_size(store) == 1
    check_all(store, stored)


def test_a_wide_batch_is_journaled_in_entries_a_fold_can_apply(stack) -> None:
    """A batch spread over many buckets (a history upload): each transaction's entry moves fewer than
    100 group buckets, so every entry folds in a transaction of its own deletes and buckets."""
    store = DynamoTelemetryStore(fold_every=0)
    stored = [reading(s, m * 15, float(m)) for s in ("P1", "P2") for m in range(180)]  # 45 h
    store.write(stored)
    entries = store._journal("hq", None)
    assert len(entries) > 1
    assert store.fold("hq", rounds=1000) == len(entries) and journal_size(store) == 0
    check_all(store, stored)


# ---------------------------------------------------------------- through the API


def test_room_and_site_queries_read_the_group_rollups(api, admin_token, monkeypatch) -> None:
    """A sensor moves from the lab to the hall between two uploads: a room series holds what was read
    in the room; a `sensor_types` filter reads those types' buckets; a room's climate metric is its
    climate sensors' only. With GROUP_ROLLUPS_SINCE after the range, the same query merges the sensors'
    rollups by the rooms they are in now (what a deployment with older data gets)."""
    from ems.core import settings

    hq = {"x-site": "hq"}

    def call(method: str, path: str, **kwargs):
        answer = api.request(method, path, token=admin_token, headers=hq, **kwargs)
        assert answer.status in (200, 201), answer.json
        return answer.json

    api.request("POST", "/api/v1/sites", token=admin_token, body={"site_id": "hq", "name": "HQ"})
    for room in ("lab", "hall"):
        call("POST", "/api/v1/rooms", body={"name": room})
    for sensor, kind, room in (("T1", "temperature", "lab"), ("W1", "water_heater", "lab"), ("P1", "plug", "lab"),
                               ("P2", "plug", "hall")):  # fmt: skip
        call(
            "POST",
            "/api/v1/sensors",
            body={"sensor_id": sensor, "name": sensor, "sensor_type": kind, "room": room},
        )
    hour_s = (NOW // 1000 - 3 * 3600) // 3600 * 3600
    first = [{"sensor_id": "T1", "ts": hour_s + 60, "metrics": {"temperature_c": 21.0}},
             {"sensor_id": "W1", "ts": hour_s + 60, "metrics": {"temperature_c": 60.0}},
             {"sensor_id": "P1", "ts": hour_s + 60, "metrics": {"power_w": 100.0}},
             {"sensor_id": "P2", "ts": hour_s + 60, "metrics": {"power_w": 10.0}}]  # fmt: skip
    assert call("POST", "/api/v1/data/ingest", body={"readings": first})["accepted"] == 4
    call("PUT", "/api/v1/sensors/P1", body={"room": "hall"})
    second = [{"sensor_id": "P1", "ts": hour_s + 120, "metrics": {"power_w": 200.0}}]
    assert call("POST", "/api/v1/data/ingest", body={"readings": second})["accepted"] == 1
    window = {"start_time": hour_s, "end_time": hour_s + 3600, "resolution": "1h"}

    def by_room(**extra) -> dict[str, tuple[float, int]]:
        body = call(
            "POST",
            "/api/v1/data/query",
            body={"metric": "power_w", "aggregate": "sum", "group_by": "room", **window, **extra},
        )
        return {s["key"]: [(p["value"], p["count"]) for p in s["points"]] for s in body["series"]}  # fmt: skip

    assert by_room() == {"lab": [(100.0, 1)], "hall": [(210.0, 2)]}  # P1's first reading stays in the lab
    site = call("POST", "/api/v1/data/query", body={"metric": "temperature_c", "aggregate": "mean", "group_by": "site",
                                                   "sensor_types": ["temperature"], **window})  # fmt: skip
    assert [(p["value"], p["count"]) for p in site["series"][0]["points"]] == [
        (21.0, 1)
    ]  # not the water heater
    room = call(
        "GET", "/api/v1/rooms/lab/data", query={"metric": "temperature_c", "aggregate": "max", **window}
    )
    assert [(p["value"], p["count"]) for p in room["points"]] == [(21.0, 1)]  # the lab's climate sensors only

    monkeypatch.setenv("GROUP_ROLLUPS_SINCE", "2999-01-01T00:00:00Z")
    settings.settings.cache_clear()
    assert by_room() == {"lab": [], "hall": [(310.0, 3)]}  # P1 is in the hall now: the lab has no power_w
