"""Telemetry throughput and query time against the template's tables in a moto server.

- Ingest: the same readings stored twice in one run, (a) through POST /api/v1/data/ingest (the
  authorizer and TelemetryFunction in this process, batches of 1,000: validation, the readings in
  their series' quarter items, ems.telemetry.store, and the site's sealing when an hour is due) and (b)
  as plain `batch_write_item` calls of one item a reading (a raw item as it was kept before the quarter
  items), 25 a call, into a copy of the raw table. The figure is (a) readings/s over (b) readings/s.
- Queries: POST /api/v1/data/query for one sensor-year at 1 h (8,760 hour items) and for a site of
  100 sensors over 30 days at 15 min grouped by site, twice: from the site's group items (720 items,
  ems.telemetry.groups) and with the sensors named, which merges their hours (72,000 items; 100
  series of 2,880 points would pass the route's 50,000-point limit). The items are written directly
  with the store's own encoding (the site's sealed through the month), so loading a year does not take
  the benchmark's whole run.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from bench.local_aws import REGION, LocalAws
from bench.report import machine, median, table

NAME = "telemetry"
COMMAND = "python -m bench telemetry"
SITE = "bench-telemetry"
FLEET_SITE = "bench-fleet"  # a site of its own, so that a query of the whole site is the fleet's
YEAR_SITE = "bench-year"  # a site whose every hour of the year is sealed (read from hour items)
INGEST_SENSORS, INGEST_STEPS = 50, 100  # 5,000 readings a round
# Rounds of both paths in turn (new sensors each round, so each does the same work): the figure is the
# median round's ratio, since one pass of each moves by a tenth from run to run on a shared machine.
INGEST_ROUNDS = 3
BATCH = 1000
YEAR_SAMPLES, FLEET_SAMPLES = 5, 2  # a fleet query by sensor reads 72,000 items: seconds in moto
HOUR_MS, QUARTER_MS = 3_600_000, 900_000


def _client(aws: LocalAws, service: str) -> Any:
    import boto3

    return boto3.client(service, endpoint_url=aws.endpoint, region_name=REGION,  # type: ignore[call-overload]
                        aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip


def _ok(result: tuple[int, Any], what: str) -> Any:
    status, body = result
    if status not in (200, 201):
        raise RuntimeError(f"{what}: {status} {body}")
    return body


def _seed_site(aws: LocalAws, token: str, sensors: int, prefix: str, site: str = SITE) -> list[str]:
    ids = [f"{prefix}{n:03d}" for n in range(sensors)]
    for sensor_id in ids:
        body = {"sensor_id": sensor_id, "name": sensor_id, "sensor_type": "plug"}
        _ok(aws.call("POST", "/api/v1/sensors", token, body, f"site={site}"), "sensor")
    return ids


@contextmanager
def _time_spent_in(targets: Mapping[str, tuple[type, str]], spent: dict[str, float]) -> Iterator[None]:
    """Wall time spent in each (class, method) while the block runs (calls from one thread)."""
    originals = {name: getattr(cls, method) for name, (cls, method) in targets.items()}

    def timed(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - started

        return call

    for name, (cls, method) in targets.items():
        setattr(cls, method, timed(name, originals[name]))
    try:
        yield
    finally:
        for name, (cls, method) in targets.items():
            setattr(cls, method, originals[name])


def _ingest(aws: LocalAws, token: str, round_no: int) -> tuple[int, float, float, dict[str, float]]:
    """One round: (readings, seconds through the handler, seconds of raw batch_write_item of the same
    items, seconds of the handler's time spent in the store's write and in sealing)."""
    from ems.core.settings import settings
    from ems.telemetry.store import DynamoTelemetryStore

    sensors = _seed_site(aws, token, INGEST_SENSORS, f"IN{round_no}_")
    start_s = int(time.time()) - INGEST_STEPS * 60 - 600
    rng = random.Random(7)
    readings = [
        {"sensor_id": s, "ts": start_s + step * 60, "metrics": {"power_w": round(rng.uniform(0, 3000), 2)}}
        for step in range(INGEST_STEPS)
        for s in sensors
    ]
    phases: dict[str, float] = {}
    parts = {"store": (DynamoTelemetryStore, "write"), "seal": (DynamoTelemetryStore, "seal_hour")}
    started = time.perf_counter()
    with _time_spent_in(parts, phases):
        for offset in range(0, len(readings), BATCH):
            body = {"readings": readings[offset : offset + BATCH]}
            answer = _ok(aws.call("POST", "/api/v1/data/ingest", token, body, f"site={SITE}"), "ingest")
            if answer["accepted"] != len(body["readings"]) or answer["duplicates"] or answer["rejected"]:
                raise RuntimeError(f"ingest did not store every reading once: {answer}")
    through_handler = time.perf_counter() - started

    dynamodb = _client(aws, "dynamodb")
    source = dynamodb.describe_table(TableName=settings().telemetry_table)["Table"]
    copy = source["TableName"] + f"-bench-copy-{round_no}"
    dynamodb.create_table(TableName=copy, BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=source["AttributeDefinitions"], KeySchema=source["KeySchema"])  # fmt: skip
    expires = settings().raw_retention_days * 86_400
    items = []
    for r in readings:  # one item a reading, as the raw table held them before quarter items
        ts_ms = int(cast(int, r["ts"])) * 1000
        day = time.strftime("%Y-%m-%d", time.gmtime(ts_ms // 1000))
        items.append({"pk": {"S": f"{SITE}#{r['sensor_id']}#{day}"}, "sk": {"S": f"power_w#{ts_ms:013d}"},
                      "v": {"N": repr(cast(dict[str, float], r["metrics"])["power_w"])},
                      "expires_at_epoch": {"N": str(ts_ms // 1000 + expires)}, "k": {"S": "plug"}})  # fmt: skip
    started = time.perf_counter()
    for offset in range(0, len(items), 25):
        request = {copy: [{"PutRequest": {"Item": i}} for i in items[offset : offset + 25]]}
        while request:
            request = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
    raw = time.perf_counter() - started
    return len(readings), through_handler, raw, phases


def _put_all(aws: LocalAws, items: Iterator[dict[str, Any]]) -> None:
    """batch_write_item of the items into the rollups table, 25 a call."""
    from ems.core.settings import settings

    dynamodb = _client(aws, "dynamodb")
    table_name = settings().rollups_table
    batch: list[dict[str, Any]] = []
    for item in [*items, None]:
        if item is not None:
            batch.append(item)
        if batch and (item is None or len(batch) == 25):
            request: dict[str, Any] = {table_name: [{"PutRequest": {"Item": i}} for i in batch]}
            while request:
                request = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
            batch.clear()


def _quarter(start_ms: int, sensors: int) -> Any:
    """A quarter hour of `sensors` plugs, four readings each (50, 150, 80, 120: sum 400)."""
    from decimal import Decimal

    from ems.telemetry.rollup import Bucket

    bucket = Bucket(
        count=4 * sensors, sum=400.0 * sensors, min=50, max=150, last=120, last_ts=start_ms + 60_000
    )
    return bucket, Decimal(400 * sensors)


def _load_hours(aws: LocalAws, sensors: list[str], start_ms: int, hours: int, site: str = SITE) -> None:
    """Each sensor's hour items, four quarters each, as the store writes them."""
    from ems.telemetry.hourly import cell
    from ems.telemetry.store import _quarters_attrs, hour_pk

    plug = cell(None, "plug")
    _put_all(aws, (
        {"pk": {"S": hour_pk(site, sensor_id, "power_w")}, "sk": {"N": str(hour)}, "b": {"N": "1"},
         **_quarters_attrs({q: {plug: _quarter(hour + q * QUARTER_MS, 1)} for q in range(4)})}
        for sensor_id in sensors
        for hour in (start_ms + n * HOUR_MS for n in range(hours))
    ))  # fmt: skip


def _load_site_hours(aws: LocalAws, site: str, sensors: int, start_ms: int, hours: int) -> None:
    """The site's group items of `sensors` sensors loaded by `_load_hours`, merged."""
    from ems.telemetry.groups import SITE_SCOPE, group_pk
    from ems.telemetry.store import _quarters_attrs

    _put_all(aws, (
        {"pk": {"S": group_pk(site, SITE_SCOPE, "power_w")}, "sk": {"N": str(hour)}, "b": {"N": str(sensors)},
         **_quarters_attrs({q: {"plug": _quarter(hour + q * QUARTER_MS, sensors)} for q in range(4)})}
        for hour in (start_ms + n * HOUR_MS for n in range(hours))
    ))  # fmt: skip


def _seal_through(aws: LocalAws, site: str, last_hour_ms: int) -> None:
    """The site's seal as sealing leaves it: every hour up to `last_hour_ms` read from hour and group items."""
    from ems.telemetry.store import seal_pk

    item = {"pk": {"S": seal_pk(site)}, "sk": {"N": "0"}, "t": {"N": str(last_hour_ms)}, "v": {"N": "1"}}
    _put_all(aws, iter([item]))


def _time_query(
    aws: LocalAws, token: str, body: dict[str, Any], expect_points: int, samples: int, site: str = SITE
) -> list[float]:
    timings = []
    for _ in range(samples):
        request = aws.request("POST", "/api/v1/data/query", token, body, f"site={site}")
        started = time.perf_counter()
        reply = aws._invoke_in_process(request.function, request.event)
        timings.append((time.perf_counter() - started) * 1000)
        if reply["statusCode"] != 200:
            raise RuntimeError(f"query failed: {reply}")
        points = sum(len(s["points"]) for s in json.loads(reply["body"])["series"])
        if points != expect_points:
            raise RuntimeError(f"query answered {points} points, expected {expect_points}")
    return timings


def run(aws: LocalAws, scratch: Path, samples: int | None = None) -> str:
    from ems.core import aws as ems_aws
    from ems.core import settings

    # moto answers a 2,880-item page in seconds under 16 parallel reads; DynamoDB in milliseconds.
    os.environ["EMS_AWS_READ_TIMEOUT_SECONDS"] = "120"
    settings.settings.cache_clear()
    ems_aws.client.cache_clear()
    token = aws.mint("bench-telemetry", ["*"], ["*"])
    _ok(aws.call("POST", "/api/v1/sites", token, {"site_id": SITE, "name": "bench"}), "site")
    rounds = [_ingest(aws, token, n) for n in range(INGEST_ROUNDS)]
    ratios = [raw / through for _, through, raw, _ in rounds]
    count, handler_s, _, phases = sorted(rounds, key=lambda r: r[2] / r[1])[len(rounds) // 2]

    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    year_start = int((now - timedelta(days=365)).timestamp() * 1000)
    _ok(aws.call("POST", "/api/v1/sites", token, {"site_id": YEAR_SITE, "name": "year"}), "site")
    (year_sensor,) = _seed_site(aws, token, 1, "YEAR_", YEAR_SITE)
    _load_hours(aws, [year_sensor], year_start, 8760, YEAR_SITE)
    _seal_through(aws, YEAR_SITE, year_start + 8759 * HOUR_MS)
    month_start = int((now - timedelta(days=30)).timestamp() * 1000)
    _ok(aws.call("POST", "/api/v1/sites", token, {"site_id": FLEET_SITE, "name": "fleet"}), "site")
    fleet = _seed_site(aws, token, 100, "FLEET_", FLEET_SITE)
    _load_hours(aws, fleet, month_start, 720, FLEET_SITE)
    _load_site_hours(aws, FLEET_SITE, len(fleet), month_start, 720)
    _seal_through(aws, FLEET_SITE, month_start + 719 * HOUR_MS)

    year = _time_query(aws, token, {
        "sensor_ids": [year_sensor], "metric": "power_w", "start_time": year_start // 1000,
        "end_time": year_start // 1000 + 8760 * 3600, "resolution": "1h", "aggregate": "mean"}, 8760,
        samples or YEAR_SAMPLES, YEAR_SITE)  # fmt: skip
    month_query = {"metric": "power_w", "start_time": month_start // 1000, "end_time": month_start // 1000 + 2880 * 900,
                   "resolution": "15m", "aggregate": "mean", "group_by": "site"}  # fmt: skip
    month = _time_query(aws, token, month_query, 2880, samples or YEAR_SAMPLES, FLEET_SITE)
    merged = _time_query(
        aws, token, {**month_query, "sensor_ids": fleet}, 2880, samples or FLEET_SAMPLES, FLEET_SITE
    )

    ingest_rows = [
        [str(n + 1), f"{h:.2f}", f"{c / h:,.0f}", f"{r:.2f}", f"{c / r:,.0f}", f"{r / h:.2f}"]
        for n, (c, h, r, _) in enumerate(rounds)
    ]
    query_rows = [
        ["one sensor-year at 1 h (8,760 hour items)", f"{median(year):.0f}", f"{max(year):.0f}"],
        ["100 sensors x 30 days at 15 min, by site, from the site's group items (720 hour items)",
         f"{median(month):.0f}", f"{max(month):.0f}"],
        ["the same with the 100 sensors named: their hours merged (72,000 items)",
         f"{median(merged):.0f}", f"{max(merged):.0f}"],
    ]  # fmt: skip
    return f"""## Telemetry ingest and queries (`{NAME}`)

**Command:** `{COMMAND}`

{machine()}

**What:** the template's tables in a moto server on 127.0.0.1, in a process of its own as in the
local cloud (its DynamoDB with the local cloud's patches, ems_local.moto_dynamodb: transactions,
partition-only queries, requests read by json.loads, condition parses kept, answers written by
json.dumps; both paths below go through them). Ingest: {count:,} readings a round ({INGEST_SENSORS} sensors,
one metric) through the authorizer and TelemetryFunction in this process, then the same raw items
with plain `batch_write_item` into a copy of the raw table; {INGEST_ROUNDS} rounds of both in turn,
each with new sensors, in the same run. A handler batch costs a read of the quarter items it moves
(BatchGetItem), their conditional puts (here 20 readings a sensor a batch: dense, so in transactions of
100 quarters), the series' pointers when they move and, when an hour of the site is due, its sealing;
and a TelemetryReceived event. A plain write is one item a reading. Queries: {
        samples or YEAR_SAMPLES
    } timed calls of the first two and {
        samples or FLEET_SAMPLES
    } of the third through TelemetryFunction (median and slowest), every
answer's point count checked.

{
        table(
            [
                "round",
                "POST /api/v1/data/ingest s (handler, batches of 1,000)",
                "readings/s",
                "batch_write_item s (25 a call)",
                "readings/s",
                "ratio",
            ],
            ingest_rows,
        )
    }

**Ratio handler / raw `batch_write_item`: {median(ratios):.2f}** (the median round; target >= 0.7)

In the median round, where the handler's {handler_s:.1f} s went: the store's write {
        phases.get("store", 0):.1f} s
(of which sealing the site's hours {phases.get("seal", 0):.1f} s), the rest (authorizer, parsing and
validating 1,000 readings a request, the registry, the event) {handler_s - phases.get("store", 0):.1f} s.

{table(["POST /api/v1/data/query", "median ms", "slowest ms"], query_rows)}

**The site query from the site's group items over the sensor-year query: {median(month) / median(year):.2f}**
(target <= 1: no longer than the one-sensor-year query, same run)
"""
