"""Exports through the local cloud started for real: readings posted to /api/v1/data/ingest come back
from GET /api/v1/export (ExportFunction in its own worker, Parquet through pyarrow) as files that
pandas opens with the same rows, and the room's live metrics and history answer from the same data."""

from __future__ import annotations

import io
import time

import httpx
import pandas as pd
import pytest

from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e

SITE = "demo"
ROOM = "Export Lab"
SENSORS = ("EXP_P1", "EXP_P2")


def test_exports_open_in_pandas_with_the_rows_that_went_in(local_stack: RunningStack) -> None:
    admin = {"authorization": f"Bearer {local_stack.admin_token}", "x-site": SITE}
    with httpx.Client(base_url=local_stack.http, headers=admin, timeout=60) as http:
        assert http.post("/api/v1/rooms", json={"name": ROOM}).status_code == 201
        for sensor_id in SENSORS:
            body = {"sensor_id": sensor_id, "name": sensor_id, "sensor_type": "plug", "room": ROOM}
            assert http.post("/api/v1/sensors", json=body).status_code == 201
        start_s = int(time.time()) - 600
        readings = [
            {"sensor_id": sensor_id, "ts": start_s + 60 * i, "metrics": {"power_w": 100.0 * n + i}}
            for n, sensor_id in enumerate(SENSORS, start=1)
            for i in range(5)
        ]
        ingested = http.post("/api/v1/data/ingest", json={"readings": readings}).json()
        assert (ingested["accepted"], ingested["rejected"]) == (10, [])

        expected = pd.DataFrame(
            sorted((r["sensor_id"], r["ts"], r["metrics"]["power_w"]) for r in readings),
            columns=["sensor_id", "epoch_s", "value"],
        )
        query = {"start_time": start_s, "end_time": start_s + 600, "resolution": "raw",
                 "sensor_ids": ",".join(SENSORS), "metrics": "power_w"}  # fmt: skip
        for fmt, read in (
            ("csv", pd.read_csv),
            ("json", lambda b: pd.read_json(b, orient="records", dtype=False)),
            ("parquet", pd.read_parquet),
        ):
            reply = http.get("/api/v1/export", params={**query, "format": fmt})
            assert reply.status_code == 200, reply.text
            got = read(io.BytesIO(reply.content))
            assert list(got.columns) == ["ts", "sensor_id", "metric", "value", "count"], fmt
            got["epoch_s"] = pd.to_datetime(got["ts"], utc=True).map(lambda ts: int(ts.timestamp()))
            got = got.sort_values(["sensor_id", "epoch_s"]).reset_index(drop=True)
            pd.testing.assert_frame_equal(got[["sensor_id", "epoch_s", "value"]], expected, check_dtype=False)
            assert set(got["metric"]) == {"power_w"} and set(got["count"]) == {1}

        room = http.get(f"/api/v1/rooms/{ROOM}").json()
        assert (room["sensor_count"], room["power_kw"]) == (2, round((104 + 204) / 1000, 3))
        window = {"start_time": start_s, "end_time": start_s + 600, "metric": "power_w"}
        history = http.get(
            f"/api/v1/rooms/{ROOM}/data", params={**window, "aggregate": "sum", "resolution": "1d"}
        )
        assert history.status_code == 200, history.text
        points = history.json()["points"]
        assert sum(p["value"] for p in points) == sum(r["metrics"]["power_w"] for r in readings)
        assert sum(p["count"] for p in points) == 10
