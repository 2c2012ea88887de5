"""GET /api/v1/export against moto, on the building of tests/support/building.py: each format opens in pandas with the
rows that went in; a large file goes to S3 behind a presigned link; a limited token's export holds
only what its limits let it see."""

from __future__ import annotations

import io
import time
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import pandas as pd
import pytest

from ems.core import settings
from tests.support.building import ROOM, SITE, iso
from tests.support.inprocess import InProcessApi, Reply, ok, refused
from tests.support.tokens import issue

HQ = {"x-site": SITE}
COLUMNS = ["ts", "sensor_id", "metric", "value", "count"]


def frame(reply: Reply, fmt: str) -> pd.DataFrame:
    assert reply.status == 200, reply.json
    if fmt == "csv":
        return pd.read_csv(io.BytesIO(reply.raw))
    if fmt == "json":
        return pd.read_json(io.BytesIO(reply.raw), orient="records", dtype=False)
    return pd.read_parquet(io.BytesIO(reply.raw))


def window(t0: int, **more: Any) -> dict[str, Any]:
    return {"start_time": str(t0 // 1000), "end_time": str(t0 // 1000 + 3600), **more}


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_each_format_opens_in_pandas_with_the_rows_that_went_in(
    api: InProcessApi,
    admin_token: str,
    building: int,
    fmt: str,
) -> None:
    t0 = building
    query = window(t0, format=fmt, resolution="raw", sensor_ids="main-meter,pv", metrics="power_w")
    reply = api.request("GET", "/api/v1/export", token=admin_token, headers=HQ, query=query)
    got = frame(reply, fmt)

    assert list(got.columns) == COLUMNS
    assert reply.headers["content-disposition"].endswith(f'.{fmt}"')
    assert int(reply.headers["x-export-rows"]) == len(got) == 6  # 3 readings of each sensor
    times = [iso(t0 + m * 60_000) for m in (0, 5, 20)]
    expected = pd.DataFrame(
        [(ts, sensor, "power_w", value, 1)
         for ts, meter, pv in zip(times, (5000.0, 5000.0, -1500.0), (2000.0, 2000.0, 4000.0), strict=True)
         for sensor, value in (("main-meter", meter), ("pv", pv))],
        columns=COLUMNS,
    )  # fmt: skip
    if fmt == "parquet":  # typed: a UTC timestamp, not text
        assert str(got["ts"].dtype) == "datetime64[ms, UTC]"
        got["ts"] = got["ts"].map(lambda ts: iso(int(ts.timestamp() * 1000)))
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_rollups_and_the_metrics_the_sensors_report(
    api: InProcessApi, admin_token: str, building: int
) -> None:
    """Without `metrics`, every metric the sensors last reported; at 15 min one row per bucket."""
    t0 = building
    query = window(t0, resolution="15m", sensor_ids="battery")
    got = frame(api.request("GET", "/api/v1/export", token=admin_token, headers=HQ, query=query), "csv")
    rows = sorted(zip(got["ts"], got["metric"], got["value"], got["count"], strict=True))
    assert rows == [
        (iso(t0), "power_w", -1000.0, 2), (iso(t0), "soc_pct", 60.5, 2),
        (iso(t0 + 15 * 60_000), "power_w", 500.0, 1), (iso(t0 + 15 * 60_000), "soc_pct", 62.0, 1),
    ]  # fmt: skip


def test_a_large_file_goes_to_s3_behind_a_presigned_link(
    api: InProcessApi,
    admin_token: str,
    building: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t0 = building
    monkeypatch.setenv("EXPORT_INLINE_MAX_BYTES", "100")
    settings.settings.cache_clear()
    query = window(t0, format="parquet", resolution="raw", sensor_ids="main-meter,pv", metrics="power_w")
    body = ok(api.request("GET", "/api/v1/export", token=admin_token, headers=HQ, query=query))

    assert (body["format"], body["rows"]) == ("parquet", 6)
    url = urlsplit(body["url"])
    signed = parse_qs(url.query)
    assert signed["X-Amz-Expires"] == ["900"] and "X-Amz-Signature" in signed
    bucket = f"ems-dev-exports-{boto3.client('sts').get_caller_identity()['Account']}"
    key = unquote(url.path.lstrip("/").removeprefix(f"{bucket}/"))
    stored = boto3.client("s3").get_object(Bucket=bucket, Key=key)
    assert stored["ContentType"] == "application/vnd.apache.parquet"
    data = stored["Body"].read()
    assert len(data) == body["bytes"]
    assert len(pd.read_parquet(io.BytesIO(data))) == 6


def test_a_limited_token_exports_only_hourly_room_rows_older_than_an_hour(
    api: InProcessApi,
    admin_token: str,
    building: int,
) -> None:
    """Readings three hours ago make a complete hour before the embargo's cut."""
    old_hour = int(time.time() // 3600 - 3) * 3600
    older = [{"sensor_id": "office-temperature", "ts": old_hour + m * 60, "metrics": {"temperature_c": v}}
             for m, v in ((5, 20.0), (35, 22.0))]  # fmt: skip
    assert ok(api.request("POST", "/api/v1/data/ingest", token=admin_token, headers=HQ, body={"readings": older}))["accepted"] == 2  # fmt: skip
    token = issue(
        ["export"], sites=[SITE], data_aggregation="room", time_aggregation="1h", embargo_minutes=60
    )
    period = {"start_time": str(old_hour - 3600), "end_time": str(int(time.time()))}

    got = frame(
        api.request("GET", "/api/v1/export", token=token, query={**period, "metrics": "temperature_c"}), "csv"
    )
    assert list(got.columns) == ["ts", "room", "metric", "value", "count"]
    assert got.to_dict("records") == [
        {"ts": iso(old_hour * 1000), "room": ROOM, "metric": "temperature_c", "value": 21.0, "count": 2}
    ]  # the building's own reading, an hour ago, is inside the embargo: not there

    refused(
        api.request("GET", "/api/v1/export", token=token, query={**period, "resolution": "15m"}),
        403,
        "resolution",
    )
    refused(
        api.request("GET", "/api/v1/export", token=token, query={**period, "group_by": "sensor"}),
        403,
        "group_by",
    )
    refused(
        api.request("GET", "/api/v1/export", token=token, query={**period, "sensor_ids": "pv"}),
        403,
        "sensor_ids",
    )


def test_bad_queries_are_refused_naming_the_field(api: InProcessApi, admin_token: str, building: int) -> None:
    t0 = building
    for query, field in (
        (window(t0, format="xlsx"), "format"),
        (window(t0, metrics="Power W"), "metrics"),
        ({"end_time": str(t0 // 1000)}, "start_time"),
        (window(t0, sensor_ids="nobody"), "sensor_ids.0"),
        (window(t0, shape="wide"), "shape"),
    ):
        reply = api.request("GET", "/api/v1/export", token=admin_token, headers=HQ, query=query)
        assert reply.status in (400, 422) and reply.json["error"]["field"] == field, (query, reply.json)
    other = issue(["analytics"], sites=[SITE])
    assert api.request("GET", "/api/v1/export", token=other, query=window(t0)).status == 403
