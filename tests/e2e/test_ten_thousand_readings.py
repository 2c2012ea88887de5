"""10,000 readings of 50 sensors through the local cloud started for real, half published by paho
devices over MQTT (topic rule, telemetry queue, ingest function in batches) and half posted to
/api/v1/data/ingest, with 5 % duplicates and 2 % invalid ones, come back from /api/v1/data/query
with the counts, sums, minimums and maximums that pandas computes from the same input, at raw,
15 min, 1 h and 1 d. Every invalid reading is rejected with a reason:
in the HTTP answer, or (MQTT has no answer) in the ingest function's log line.

Deterministic (seeded); readings spread over the last 30 hours (two or three UTC days, so 1 d has
several buckets; longer would only make the local moto slower). Every wait is bounded polling.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as mqtt
import pandas as pd
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.e2e.conftest import RunningStack, wait_for

pytestmark = pytest.mark.e2e

SITE = "demo"
TOTAL, DUPLICATES, INVALID = 10_000, 500, 200
DEVICES, SENSORS_PER_DEVICE = 10, 5
METRIC = "power_w"
PER_MESSAGE = 100  # readings per MQTT message
# Readings per POST (the route takes 1,000; a quarter keeps each request far from the function's 29 s
# timeout while the MQTT half is ingested at the same time on a loaded 2-core machine).
HTTP_BATCH = 250
WIDTH_S = {"15m": 900, "1h": 3600, "1d": 86_400}


def sensor_id(device: int, n: int) -> str:
    return f"TK_{device:02d}_{n}"


def device_id(device: int) -> str:
    return f"tk-device-{device:02d}"


def build(now_s: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(valid readings without duplicates, everything sent in sending order, each with its path)."""
    rng = random.Random(20261124)
    sensors = [(d, sensor_id(d, n)) for d in range(DEVICES) for n in range(SENSORS_PER_DEVICE)]
    valid_count = TOTAL - DUPLICATES - INVALID
    seen: set[tuple[str, int]] = set()
    valid: list[dict[str, Any]] = []
    while len(valid) < valid_count:
        device, sensor = sensors[len(valid) % len(sensors)]
        ts = now_s - rng.randint(120, 30 * 3600)
        if (sensor, ts) in seen:
            continue
        seen.add((sensor, ts))
        valid.append(
            {"device": device, "sensor_id": sensor, "ts": ts, "value": round(rng.uniform(-500, 5000), 3)}
        )
    duplicates = [dict(r) for r in rng.sample(valid, DUPLICATES)]
    invalid = []
    for i in range(INVALID):
        device, sensor = sensors[i % len(sensors)]
        kind = i % 4
        bad: dict[str, Any] = {
            "device": device,
            "sensor_id": sensor,
            "ts": now_s - 600,
            "value": 1.0,
            "invalid": True,
        }
        if kind == 0:
            bad["sensor_id"] = f"TK_NOPE_{i}"  # no such sensor
        elif kind == 1:
            bad["value"] = "lots"  # not a number
        elif kind == 2:
            bad["ts"] = now_s + 3600  # an hour ahead
        else:
            bad["metric"] = "Power W"  # not a metric name
        invalid.append(bad)
    sent = valid + duplicates + invalid
    rng.shuffle(sent)
    for index, reading in enumerate(sent):
        reading["path"] = "mqtt" if index % 2 == 0 else "http"
    return valid, sent


def as_posted(reading: dict[str, Any], ts_ms: bool) -> dict[str, Any]:
    metric = reading.get("metric", METRIC)
    return {
        "sensor_id": reading["sensor_id"],
        "ts": reading["ts"] * 1000 if ts_ms else reading["ts"],
        "metrics": {metric: reading["value"]},
    }


def publish_all(stack: RunningStack, sent: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """The MQTT half, each device's readings in messages of PER_MESSAGE; the (device, index) of each
    invalid reading within its message."""
    address = urlsplit(str(stack.description["mqtt"]))
    expected_rejections = []
    for device in range(DEVICES):
        mine = [r for r in sent if r["path"] == "mqtt" and r["device"] == device]
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id(device))
        client.connect(str(address.hostname), int(address.port or 0))
        client.loop_start()
        try:
            for start in range(0, len(mine), PER_MESSAGE):
                chunk = mine[start : start + PER_MESSAGE]
                payload = {"readings": [as_posted(r, ts_ms=True) for r in chunk]}
                topic = f"ems/{SITE}/devices/{device_id(device)}/telemetry"
                client.publish(topic, json.dumps(payload), qos=1).wait_for_publish(timeout=30)
                expected_rejections += [
                    (device_id(device), i) for i, r in enumerate(chunk) if r.get("invalid")
                ]
        finally:
            client.disconnect()
            client.loop_stop()
    return expected_rejections


def logged_rejections(stack: RunningStack) -> list[tuple[str, int, str]]:
    """(device, index, reason) of every rejection the ingest function logged for MQTT messages (in its
    log file, as CloudWatch would have them)."""
    found = []
    for text in (stack.home / ".local" / "logs" / "TelemetryIngestFunction.log").read_text().splitlines():
        if '"message":"ingest"' not in text:
            continue
        entry = json.loads(text)
        if entry.get("source") != "mqtt":
            continue
        # A batch of the telemetry queue names each rejection's device; a direct rule's line, its own.
        for r in entry["rejections"]:
            device = str(r.get("device_id", entry.get("device_id")))
            if device.startswith("tk-device-"):
                found.append((device, r["index"], r["reason"]))
    return found


def expected_table(valid: list[dict[str, Any]], resolution: str) -> pd.DataFrame:
    frame = pd.DataFrame(valid)
    if resolution != "raw":
        frame["ts"] = frame["ts"] // WIDTH_S[resolution] * WIDTH_S[resolution]
    return (
        frame.groupby(["sensor_id", "ts"])["value"]
        .agg(["count", "sum", "min", "max"])
        .reset_index()
        .sort_values(["sensor_id", "ts"])
    )


def queried_table(http: httpx.Client, resolution: str, start_s: int, end_s: int) -> pd.DataFrame:
    """count, sum, min and max per sensor and bucket from /data/query: one query per aggregate (a raw
    point is one reading, so its sum, min and max are its value: one query)."""
    sensors = [sensor_id(d, n) for d in range(DEVICES) for n in range(SENSORS_PER_DEVICE)]
    aggregates = ("sum",) if resolution == "raw" else ("sum", "min", "max")
    rows: dict[tuple[str, int], dict[str, float]] = {}
    for aggregate in aggregates:
        body = {"sensor_ids": sensors, "metric": METRIC, "start_time": start_s, "end_time": end_s,
                "resolution": resolution, "aggregate": aggregate, "group_by": "sensor"}  # fmt: skip
        answer = http.post("/api/v1/data/query", json=body)
        assert answer.status_code == 200, answer.text
        for series in answer.json()["series"]:
            for point in series["points"]:
                ts = int(pd.Timestamp(point["ts"]).timestamp())
                row = rows.setdefault((series["key"], ts), {"count": point["count"]})
                row[aggregate] = point["value"]
                if resolution == "raw":
                    row["min"] = row["max"] = point["value"]
    table = pd.DataFrame([{"sensor_id": k[0], "ts": k[1], **v} for k, v in rows.items()])
    return table[["sensor_id", "ts", "count", "sum", "min", "max"]].sort_values(["sensor_id", "ts"])


def stored_count(http: httpx.Client, start_s: int, end_s: int) -> int:
    body = {"metric": METRIC, "start_time": start_s, "end_time": end_s, "resolution": "1d", "aggregate": "sum",
            "group_by": "site"}  # fmt: skip
    answer = http.post("/api/v1/data/query", json=body).json()
    return sum(p["count"] for s in answer["series"] for p in s["points"])


@pytest.mark.timeout(900)
def test_ten_thousand_readings_half_over_mqtt_come_back_as_pandas_says(local_stack: RunningStack) -> None:
    now_s = int(time.time())
    valid, sent = build(now_s)
    assert len(sent) == TOTAL and Counter(r["path"] for r in sent) == {"mqtt": 5000, "http": 5000}
    admin = {"authorization": f"Bearer {local_stack.admin_token}", "x-site": SITE}
    with httpx.Client(base_url=local_stack.http, headers=admin, timeout=120) as http:
        for device in range(DEVICES):
            for n in range(SENSORS_PER_DEVICE):
                body = {"sensor_id": sensor_id(device, n), "name": f"plug {device}.{n}", "sensor_type": "plug",
                        "device_id": device_id(device)}  # fmt: skip
                assert http.post("/api/v1/sensors", json=body).status_code == 201

        expected_mqtt = publish_all(local_stack, sent)

        posted = [r for r in sent if r["path"] == "http"]
        for start in range(0, len(posted), HTTP_BATCH):
            batch = posted[start : start + HTTP_BATCH]
            answer = http.post(
                "/api/v1/data/ingest", json={"readings": [as_posted(r, ts_ms=False) for r in batch]}
            )
            assert answer.status_code == 200, answer.text
            rejected = answer.json()["rejected"]
            assert [x["index"] for x in rejected] == [i for i, r in enumerate(batch) if r.get("invalid")]
            assert all(x["reason"] for x in rejected)

        start_s, end_s = now_s - 2 * 86_400, now_s + 60
        wait_for(lambda: stored_count(http, start_s, end_s) >= len(valid), "every valid reading stored", 240)
        assert stored_count(http, start_s, end_s) == len(valid)  # nothing lost, nothing twice

        logged = wait_for(lambda: logged_rejections(local_stack), "the MQTT rejections logged", 30)
        assert sorted((d, i) for d, i, _ in logged) == sorted(expected_mqtt)
        assert all(reason for _, _, reason in logged)

        for resolution in ("raw", "15m", "1h", "1d"):
            got = queried_table(http, resolution, start_s, end_s)
            want = expected_table(valid, resolution)
            assert len(got) == len(want), resolution
            pd.testing.assert_frame_equal(
                got.reset_index(drop=True),
                want.reset_index(drop=True),
                check_dtype=False,
                rtol=1e-6,
                obj=resolution,
            )
