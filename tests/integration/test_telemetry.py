"""Telemetry through the authorizer and the function against moto: ingest with duplicates, retries
and invalid readings comes back from /data/query equal to pandas on the same input."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from ems.auth.models import TokenRequest
from ems.auth.service import mint
from ems.auth.store import TokenStore

SITE = "hq"
ROOMS = ["Room A", "Room B", "Room C", "Room D"]
SENSORS = [f"P{i:02d}" for i in range(20)]
ROOM_OF = {sensor: ROOMS[i % 4] for i, sensor in enumerate(SENSORS)}
WIDTH = {"15m": "15min", "1h": "1h", "1d": "1D"}


def token(**limits: Any) -> str:
    request = TokenRequest(
        name="t", list_of_resources=["ingest", "analytics", "sensors"], sites=[SITE], **limits
    )
    return mint(request, None, TokenStore()).token


@pytest.fixture
def site(api, admin_token) -> str:
    assert (
        api.request("POST", "/api/v1/sites", token=admin_token, body={"site_id": SITE, "name": "HQ"}).status
        == 201
    )
    for room in ROOMS:
        assert api.request("POST", "/api/v1/rooms", token=admin_token, body={"name": room},
                           headers={"x-site": SITE}).status == 201  # fmt: skip
    for sensor in SENSORS:
        created = api.request(
            "POST", "/api/v1/sensors", token=admin_token, headers={"x-site": SITE},
            body={"sensor_id": sensor, "name": sensor, "sensor_type": "power", "room": ROOM_OF[sensor]},
        )  # fmt: skip
        assert created.status == 201, created.json
    return token()


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


# ---------------------------------------------------------------- the input


def make_input(
    now: datetime, rng: random.Random
) -> tuple[list[list[Any]], list[dict[str, Any]], dict[tuple[int, int], str]]:
    """Batches to send; the valid readings in arrival order; expected rejections by (batch, index)."""
    now_s = int(now.timestamp())
    # Most readings within 3 hours of the last UTC midnight (dense enough to share buckets, and
    # across two days); the last 100 in the past two hours, for the embargo.
    midnight_s = (now_s - 4 * 3600) // 86_400 * 86_400  # at least 4 hours ago
    valid: list[dict[str, Any]] = []
    for i in range(2000):
        sensor = SENSORS[i % 20]
        if i < 1900:
            ts = midnight_s + rng.randint(-3 * 3600, 3 * 3600 - 1) + rng.randint(0, 999) / 1000
        else:
            ts = now_s - rng.randint(60, 2 * 3600) + rng.randint(0, 999) / 1000
        reading: dict[str, Any] = {"sensor_id": sensor, "ts": ts if i % 3 else iso(int(ts * 1000))}
        power = round(rng.uniform(-500, 5000), 2)
        if i % 5 == 0:
            reading["value"] = power  # single-metric form: metric "value"
        else:
            reading["metrics"] = {"power_w": power, "energy_wh": round(rng.uniform(0, 100), 3)}
        valid.append(reading)
    stream = list(valid)
    # 5% duplicates: re-sent later as they were, or with another value (the first one stays).
    for reading in rng.sample(valid, 70):
        stream.insert(rng.randint(len(stream) // 2, len(stream)), dict(reading))
    for reading in rng.sample(valid, 30):
        changed = {**reading}
        if "metrics" in changed:
            changed["metrics"] = {k: v + 1000 for k, v in changed["metrics"].items()}
        else:
            changed["value"] = changed["value"] + 1000
        stream.insert(rng.randint(len(stream) // 2, len(stream)), changed)
    invalid: list[tuple[Any, str]] = [
        ({"sensor_id": "NOPE", "ts": now_s, "value": 1}, "unknown sensor"),
        ({"sensor_id": "P01", "ts": now_s, "value": float("nan")}, "finite"),
        ({"sensor_id": "P01", "ts": now_s, "value": float("inf")}, "finite"),
        ({"sensor_id": "P01", "ts": now_s + 3600, "value": 1}, "future"),
        ({"sensor_id": "P01", "ts": now_s - 40 * 86400, "value": 1}, "retention"),
        ({"sensor_id": "P01", "ts": now_s, "metrics": {"humidity_pct": 150}}, "0..100"),
        ({"sensor_id": "P01", "ts": now_s, "metrics": {"Power-W": 1}}, "metric name"),
        ({"sensor_id": "P01", "ts": now_s}, "either value or metrics"),
        ({"sensor_id": "P01", "ts": now_s, "value": 1, "metrics": {"power_w": 1}}, "either value or metrics"),
        ({"sensor_id": "P01", "ts": now_s, "value": "12"}, "number"),
        ({"sensor_id": "P01", "ts": now_s, "value": True}, "number"),
        ({"sensor_id": "P01", "ts": "yesterday", "value": 1}, "ISO 8601"),
        ({"sensor_id": "P01", "ts": (now_s + 3600) * 1000, "value": 1}, "future"),  # epoch ms, an hour ahead
        ({"sensor_id": "P01", "value": 1}, "ts is missing"),
        ({"sensor_id": "P01", "ts": now_s, "value": 1, "colour": "red"}, "unknown field"),
        ([1, 2, 3], "object"),
    ]
    positions = sorted(rng.sample(range(len(stream) + 40), 40))
    expected_at: dict[int, str] = {}
    for n, position in enumerate(positions):
        bad, reason = invalid[n % len(invalid)]
        stream.insert(position, bad)
        expected_at[position] = reason
    batches = [stream[i : i + 500] for i in range(0, len(stream), 500)]
    expected = {(p // 500, p % 500): reason for p, reason in expected_at.items()}
    return batches, valid, expected


def frame(stream_in_order: list[dict[str, Any]], metric: str) -> pd.DataFrame:
    """What was stored: the first reading of each (sensor, ts ms) of `metric`, in arrival order."""
    rows = []
    for r in stream_in_order:
        ts = r["ts"] if isinstance(r["ts"], float | int) else ms(r["ts"]) / 1000
        value = r.get("value") if metric == "value" else (r.get("metrics") or {}).get(metric)
        if value is not None:
            rows.append({"sensor": r["sensor_id"], "ts": math.floor(ts * 1000), "value": value})
    df = pd.DataFrame(rows).drop_duplicates(["sensor", "ts"], keep="first")
    df["time"] = pd.to_datetime(df["ts"], unit="ms", utc=True)
    return df


def expected_buckets(df: pd.DataFrame, resolution: str, key: str) -> pd.DataFrame:
    df = df.assign(bucket=df["time"].dt.floor(WIDTH[resolution]), room=df["sensor"].map(ROOM_OF), site=SITE)
    df = df.sort_values("ts")
    out = df.groupby([key, "bucket"])["value"].agg(["count", "sum", "min", "max", "last"])
    return out


def series_frame(answer: dict[str, Any]) -> pd.DataFrame:
    rows = [
        {"key": s["key"], "bucket": pd.Timestamp(p["ts"]), "value": p["value"], "count": p["count"]}
        for s in answer["series"]
        for p in s["points"]
    ]
    return pd.DataFrame(rows).set_index(["key", "bucket"]).sort_index()


# ---------------------------------------------------------------- the check


def test_ingested_readings_come_back_equal_to_pandas(api, site, stack) -> None:
    from ems.registry.store import RegistryStore
    from ems.telemetry.service import Stores, ingest_readings
    from ems.telemetry.store import DynamoTelemetryStore

    now = datetime.now(UTC)
    batches, _valid, expected = make_input(now, random.Random(7))
    arrived: list[dict[str, Any]] = []

    # A batch that half-finished before (its first half stored, then the process died), sent again.
    crashed = [r for r in batches[1][:250] if isinstance(r, dict)]
    half = [r for i, r in enumerate(batches[1][:250]) if (1, i) not in expected]
    ingest_readings(SITE, half, Stores(RegistryStore(), DynamoTelemetryStore()))
    assert crashed

    for number, batch in enumerate(batches):
        sent = api.request("POST", "/api/v1/data/ingest", token=site, body={"readings": batch})
        assert sent.status == 200, sent.json
        rejected = {r["index"]: r["reason"] for r in sent.json["rejected"]}
        wanted = {i: reason for (b, i), reason in expected.items() if b == number}
        assert sorted(rejected) == sorted(wanted)
        for index, reason in wanted.items():
            assert reason in rejected[index], (index, rejected[index], batch[index])
        assert sent.json["accepted"] == len(batch) - len(wanted)
        good = [r for i, r in enumerate(batch) if i not in wanted]
        if number == 1:
            assert sent.json["duplicates"] >= len(half)
            arrived[:0] = half  # what the crashed attempt stored came first
        arrived.extend(good)
    # The last batch retried whole: everything is a duplicate, nothing counts twice.
    again = api.request("POST", "/api/v1/data/ingest", token=site, body={"readings": batches[-1]})
    assert (
        again.json["accepted"]
        == again.json["duplicates"]
        == len(batches[-1]) - len([k for k in expected if k[0] == len(batches) - 1])
    )

    start, end = (
        iso(int((now - timedelta(days=2)).timestamp() * 1000)),
        iso(int((now + timedelta(minutes=10)).timestamp() * 1000)),
    )
    for metric in ("power_w", "value"):
        df = frame(arrived, metric)

        raw = api.request("POST", "/api/v1/data/query", token=site, body={
            "metric": metric, "start_time": start, "end_time": end, "resolution": "raw", "group_by": "sensor"})  # fmt: skip
        assert raw.status == 200, raw.json
        got = sorted(
            (s["key"], ms(p["ts"]), p["value"], p["count"]) for s in raw.json["series"] for p in s["points"]
        )
        assert got == sorted((r.sensor, r.ts, r.value, 1) for r in df.itertuples())

        for resolution in ("15m", "1h", "1d"):
            want = expected_buckets(df, resolution, "sensor")
            aggregates = ["sum", "min", "max"] if metric == "power_w" else ["sum"]
            if (metric, resolution) == ("power_w", "1h"):
                aggregates += ["last", "mean"]
            for aggregate in aggregates:
                answer = api.request("POST", "/api/v1/data/query", token=site, body={
                    "metric": metric, "start_time": start, "end_time": end, "resolution": resolution,
                    "aggregate": aggregate, "group_by": "sensor"})  # fmt: skip
                assert answer.status == 200, answer.json
                got_frame = series_frame(answer.json)
                assert list(got_frame.index) == [(k, b) for k, b in want.index]
                assert list(got_frame["count"]) == list(want["count"])
                column = want["sum"] / want["count"] if aggregate == "mean" else want[aggregate]
                assert list(got_frame["value"]) == pytest.approx(list(column), rel=1e-9, abs=1e-6)

    # Groups merge buckets exactly: rooms and the site at 1 h.
    df = frame(arrived, "power_w")
    for group_by, key in (("room", "room"), ("site", "site")):
        want = expected_buckets(df, "1h", key)
        answer = api.request("POST", "/api/v1/data/query", token=site, body={
            "metric": "power_w", "start_time": start, "end_time": end, "resolution": "1h", "aggregate": "sum",
            "group_by": group_by})  # fmt: skip
        got_frame = series_frame(answer.json)
        assert list(got_frame["count"]) == list(want["count"])
        assert list(got_frame["value"]) == pytest.approx(list(want["sum"]), rel=1e-9)

    # One sensor's series, as /sensors/{id}/data answers it.
    one = api.request("GET", "/api/v1/sensors/P03/data", token=site, query={
        "start_time": start, "end_time": end, "resolution": "1d", "metric": "power_w", "aggregate": "max"})  # fmt: skip
    assert one.status == 200, one.json
    want = expected_buckets(df[df["sensor"] == "P03"], "1d", "sensor")
    assert one.json["key"] == "P03" and one.json["metric"] == "power_w"
    assert [p["count"] for p in one.json["points"]] == list(want["count"])
    assert [p["value"] for p in one.json["points"]] == pytest.approx(list(want["max"]))

    # ---- a token limited to rooms, 1 h and a 60-minute embargo
    limited = token(data_aggregation="room", time_aggregation="1h", embargo_minutes=60)
    before = datetime.now(UTC)
    answer = api.request("POST", "/api/v1/data/query", token=limited, body={
        "metric": "power_w", "start_time": start, "end_time": end, "aggregate": "sum"})  # fmt: skip
    after = datetime.now(UTC)
    assert answer.status == 200, answer.json
    assert (answer.json["resolution"], answer.json["group_by"]) == ("1h", "room")
    assert sorted(s["key"] for s in answer.json["series"]) == ROOMS
    got_frame = series_frame(answer.json)
    cut_after = pd.Timestamp(after - timedelta(minutes=60))
    assert all(b + pd.Timedelta(hours=1) <= cut_after for _, b in got_frame.index)
    want = expected_buckets(df, "1h", "room")
    cut_before = pd.Timestamp(before - timedelta(minutes=60))
    complete = want[[b + pd.Timedelta(hours=1) <= cut_before for _, b in want.index]]
    assert set(complete.index) <= set(got_frame.index) <= set(want.index)
    assert list(got_frame["count"]) == list(want.loc[got_frame.index, "count"])
    assert df["time"].max() > cut_after  # there was newer data, and it stayed hidden

    for body, field in (
        ({"group_by": "sensor"}, "group_by"),
        ({"resolution": "15m"}, "resolution"),
        ({"resolution": "raw"}, "resolution"),
        ({"sensor_ids": ["P01"], "group_by": "room"}, "sensor_ids"),
    ):
        refused = api.request("POST", "/api/v1/data/query", token=limited, body={
            "metric": "power_w", "start_time": start, "end_time": end, **body})  # fmt: skip
        assert refused.status == 403, (body, refused.json)
        assert refused.json["error"]["field"] == field
    refused = api.request("GET", "/api/v1/sensors/P01/data", token=limited, query={"resolution": "1h"})
    assert refused.status == 403 and refused.json["error"]["field"] == "sensor_id"
    coarser = api.request("POST", "/api/v1/data/query", token=limited, body={
        "metric": "power_w", "start_time": start, "end_time": end, "resolution": "1d", "group_by": "site"})  # fmt: skip
    assert coarser.status == 200
    assert all(
        ms(p["ts"]) + 86_400_000 <= after.timestamp() * 1000 - 3_600_000
        for s in coarser.json["series"]
        for p in s["points"]
    )


def test_ingest_refuses_a_malformed_or_oversized_body(api, site) -> None:
    too_many = [{"sensor_id": "P01", "ts": 1, "value": 1}] * 1001
    sent = api.request("POST", "/api/v1/data/ingest", token=site, body={"readings": too_many})
    assert sent.status == 413 and sent.json["error"]["field"] == "readings"
    sent = api.request("POST", "/api/v1/data/ingest", token=site, body={"readings": {"sensor_id": "P01"}})
    assert sent.status == 422 and sent.json["error"]["field"] == "readings"
    sent = api.request("POST", "/api/v1/data/ingest", token=site, body=b"{not json")
    assert sent.status == 400
    empty = api.request("POST", "/api/v1/data/ingest", token=site, body={"readings": []})
    assert empty.json == {"accepted": 0, "duplicates": 0, "rejected": []}


def test_reads_are_bounded_and_name_the_field(api, site) -> None:
    now = datetime.now(UTC)
    unknown = api.request("GET", "/api/v1/sensors/NOPE/data", token=site)
    assert unknown.status == 404
    backwards = api.request("POST", "/api/v1/data/query", token=site, body={
        "metric": "power_w", "start_time": iso(int(now.timestamp() * 1000)), "end_time": "2020-01-01T00:00:00Z"})  # fmt: skip
    assert backwards.status == 422 and backwards.json["error"]["field"] == "end_time"
    huge = api.request("POST", "/api/v1/data/query", token=site, body={
        "metric": "power_w", "start_time": "2000-01-01T00:00:00Z", "end_time": "2030-01-01T00:00:00Z",
        "resolution": "15m", "group_by": "sensor"})  # fmt: skip
    assert huge.status == 400 and huge.json["error"]["field"] == "start_time"
    missing = api.request("POST", "/api/v1/data/query", token=site, body={
        "metric": "power_w", "start_time": "2024-01-01", "end_time": "2024-01-02", "sensor_ids": ["NOPE"]})  # fmt: skip
    assert missing.status == 422 and missing.json["error"]["field"] == "sensor_ids.0"
    year = api.request("GET", "/api/v1/sensors/P01/data", token=site, query={
        "start_time": "2024-01-01T00:00:00Z", "end_time": "2025-01-01T00:00:00Z", "resolution": "1h"})  # fmt: skip
    assert year.status == 200 and year.json["points"] == []


def test_epoch_ms_epoch_s_and_iso_of_one_instant_are_one_reading(api, site) -> None:
    """Devices and clients write times three ways (API.md); the magnitude tells ms from s."""
    at_ms = (int(datetime.now(UTC).timestamp()) - 600) * 1000 + 250
    forms = [at_ms, at_ms / 1000, iso(at_ms), str(at_ms)]
    readings = [{"sensor_id": "P01", "ts": ts, "value": 10.0 + n} for n, ts in enumerate(forms)]
    sent = api.request("POST", "/api/v1/data/ingest", token=site, body={"readings": readings})
    assert sent.json == {"accepted": 4, "duplicates": 3, "rejected": []}  # all stored, as one reading
    answer = api.request(
        "GET", "/api/v1/sensors/P01/data", token=site,
        query={"start_time": at_ms - 1000, "end_time": at_ms + 1000, "resolution": "raw", "metric": "value"},
    ).json  # fmt: skip
    assert [(ms(p["ts"]), p["value"], p["count"]) for p in answer["points"]] == [(at_ms, 10.0, 1)]
