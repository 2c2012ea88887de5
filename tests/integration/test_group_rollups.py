"""Site and room rollups (ems.telemetry.groups) against moto: hours read from the sensors' quarters until
they are sealed, from the hour and group items after, and late readings that reach sealed hours. Each figure is checked
against the readings themselves: count, sum, min, max and last of what was stored."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from ems.telemetry import store as store_module
from ems.telemetry.groups import SITE_SCOPE, by_types, room_scope
from ems.telemetry.models import Reading
from ems.telemetry.rollup import bucket_start
from ems.telemetry.store import DynamoTelemetryStore

NOW = int(datetime.now(UTC).timestamp() * 1000)
DAY = NOW - NOW % 86_400_000 - 2 * 86_400_000  # the day before yesterday, UTC
HOUR = 3_600_000
ROOMS = {"T1": "lab", "T2": "lab", "P1": "lab", "P2": "hall", "P3": None}
TYPES = {"T1": "temperature", "T2": "temperature", "P1": "plug", "P2": "plug", "P3": "plug"}


def clock(ms: int):
    return lambda: datetime.fromtimestamp(ms / 1000, UTC)


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
    for bucket_ms, kinds in found.items():
        b = by_types(kinds, frozenset(types) if types else None)
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


def sealed_through(store: DynamoTelemetryStore) -> int | None:
    seal = store._get_seal("hq")
    return None if seal is None else seal.through


def random_batches(seed: int) -> list[list[Reading]]:
    rng = random.Random(seed)
    sensors = list(ROOMS)
    batches = [
        [reading(rng.choice(sensors), rng.randint(0, 36 * 60) + rng.random(), round(rng.uniform(-50, 500), 2))
         for _ in range(rng.randint(1, 120))]
        for _ in range(12)
    ]  # fmt: skip
    batches.append(batches[3])  # a batch retried whole
    batches.append(batches[5][:7] + batches[8][-4:])  # a retry of parts of two
    return batches


def write_all(store: DynamoTelemetryStore, batches: list[list[Reading]]) -> list[Reading]:
    stored: dict[tuple[str, str, int], Reading] = {}
    for batch in batches:
        distinct = {(r.sensor_id, r.metric, r.ts_ms): r for r in reversed(batch)}  # the first of equal keys
        store.write(list(distinct.values()))
        for key, r in distinct.items():
            stored.setdefault(key, r)
    return list(stored.values())


@pytest.mark.parametrize("now_ms", [DAY, DAY + 3 * 86_400_000], ids=["nothing due", "every hour due"])
def test_group_buckets_equal_the_readings_sealed_or_not(stack, now_ms: int) -> None:
    """Batches over 36 hours with duplicates inside and across them, and batches sent again: each reading
    counts once in its site's and room's buckets, whether its hour is read from its sensors' hours (open)
    or from the group items (sealed), and late batches reach the hours sealed before them."""
    store = DynamoTelemetryStore(now=clock(now_ms))
    batches = random_batches(now_ms % 7)
    stored = write_all(store, batches)
    check_all(store, stored)
    through = sealed_through(store)
    assert through is not None
    if now_ms == DAY:  # the seal as the site's first write made it (the hour before its readings): no more
        first_hour = min(r.ts_ms for r in batches[0]) // HOUR * HOUR
        assert through == first_hour - HOUR
    else:
        assert through >= DAY + 20 * HOUR  # two hours a write: most of the 36 are sealed, some while written
        writes = 0  # writes of one reading again and again seal the rest, two hours each (hours over + grace)
        while sealed_through(store) != DAY + 2 * 86_400_000 + 22 * HOUR and writes < 40:
            stored = write_all(store, [stored, [reading("P3", 0, -50.0)]])  # stored again: counted once
            writes += 1
        assert sealed_through(store) == DAY + 2 * 86_400_000 + 22 * HOUR
        check_all(store, stored)
    late = write_all(store, [[reading(s, m * 7.5, 1000.0 + m) for s in ROOMS for m in range(0, 36 * 8, 5)]])
    check_all(
        store,
        stored + [r for r in late if r.ts_ms not in {x.ts_ms for x in stored if x.sensor_id == r.sensor_id}],
    )


def test_a_reading_counts_for_the_room_its_sensor_was_in(stack) -> None:
    """P1 moves from the lab to the hall within a quarter hour: its readings stay where they were read, and
    its own series holds all of them."""
    store = DynamoTelemetryStore(now=clock(DAY + 86_400_000))
    before = [reading("P1", m, 10.0 + m) for m in range(5)]  # P1 in the lab
    after = [reading("P1", 5 + m, 100.0 + m, room="hall") for m in range(3)]  # then moved to the hall
    store.write(before)
    store.write(after)
    for _ in range(2):
        assert answered(store, room_scope("lab"), "1h") == {DAY: (5, 60.0, 10.0, 14.0, 14.0)}
        assert answered(store, room_scope("hall"), "1h") == {DAY: (3, 303.0, 100.0, 102.0, 102.0)}
        assert answered(store, SITE_SCOPE, "15m") == {DAY: (8, 363.0, 10.0, 102.0, 102.0)}
        own = store.read_rollups("hq", ["P1"], "power_w", "15m", DAY, DAY + HOUR)["P1"][DAY]
        assert (own.count, own.sum) == (8, 363.0)
        store.seal_hour("hq", DAY)  # and the same from the hour and group items
        store_module.DynamoTelemetryStore._update_seal(store, "hq", store._get_seal("hq"), "SET t = :p, v = :next",
                                                       {":p": {"N": str(DAY)}})  # fmt: skip


def test_a_late_writer_racing_the_sealer_is_counted(stack, monkeypatch) -> None:
    """The sealer reads the quarters; late readings of that hour are written before the sealer puts the
    hour and group items: the late writer finds the hour pending and makes the items itself, and the
    sealer's (made from the older read) do not overwrite them."""
    stored = [reading("P2", m, float(m)) for m in range(30)]
    DynamoTelemetryStore(now=clock(DAY)).write(stored[:1])  # the site's first write, nothing due: its seal
    store = DynamoTelemetryStore(now=clock(DAY + 2 * HOUR))  # by this one's clock hour DAY is due
    real = DynamoTelemetryStore._get_quarters
    raced = []

    def read_then_race(keys):
        found = real(store, keys)
        if not raced and store._get_seal("hq").pending == DAY:  # the sealer's first read
            raced.append(1)
            DynamoTelemetryStore(now=clock(DAY + 2 * HOUR)).write(stored[1:])  # a late writer of that hour
        return found

    monkeypatch.setattr(store, "_get_quarters", read_then_race)
    store.write([reading("P3", 60, 1.0)])  # finds hour DAY due: seals it
    assert raced and sealed_through(store) == DAY
    assert answered(store, room_scope("hall"), "15m") == expected(stored, room_scope("hall"), "15m")
    own = store.read_rollups("hq", ["P2"], "power_w", "1h", DAY, DAY + HOUR)["P2"][DAY]
    assert (own.count, own.sum) == (30, float(sum(range(30))))


def test_a_sealer_that_stopped_is_taken_over(stack, monkeypatch) -> None:
    """A sealer marks its hour pending and dies: reads keep reading that hour from the sensors' hours, and
    once the mark is stale a write finishes it."""
    stored = [reading(s, m, float(m)) for s in ("P1", "P2") for m in range(0, 60, 3)]
    DynamoTelemetryStore(now=clock(DAY)).write(stored[:1])  # the site's first write, nothing due: its seal
    store = DynamoTelemetryStore(now=clock(DAY + 2 * HOUR))
    monkeypatch.setattr(DynamoTelemetryStore, "seal_hour", lambda *a: (_ for _ in ()).throw(TimeoutError()))
    with pytest.raises(TimeoutError):
        store.write(stored[1:])
    monkeypatch.undo()
    seal = store._get_seal("hq")
    assert (seal.through, seal.pending) == (DAY - HOUR, DAY)
    check_all(store, stored)  # read from the sensors' hours
    store.write([reading("P3", 61, 1.0)])  # the mark is fresh: left to its sealer
    assert store._get_seal("hq").pending == DAY
    monkeypatch.setattr(store_module, "_real_ms", lambda: seal.since_ms + store_module.SEAL_STALE_MS + 1)
    store.write([reading("P3", 62, 1.0)])
    seal = store._get_seal("hq")
    assert (seal.through, seal.pending) == (DAY, None)
    check_all(store, [*stored, reading("P3", 61, 1.0), reading("P3", 62, 1.0)])


# ---------------------------------------------------------------- through the API


def test_room_and_site_queries_read_the_group_rollups(api, admin_token) -> None:
    """A sensor moves from the lab to the hall between two uploads: a room series holds what was read
    in the room; a `sensor_types` filter reads those types' buckets; a room's climate metric is its
    climate sensors' only."""
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

    def by_room(**extra) -> dict[str, list[tuple[float, int]]]:
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
    # Named sensors are their own series merged, by the rooms they are in now.
    assert by_room(sensor_ids=["P1", "P2"]) == {"hall": [(310.0, 3)]}
