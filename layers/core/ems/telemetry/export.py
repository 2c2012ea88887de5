"""Export of readings (API.md `GET /api/v1/export`) as CSV, JSON or Parquet.

The rows come from the same reads as POST /data/query, one query per metric, so the token's
data-sharing limits hold exactly as there. One row per point:

    ts (ISO 8601 UTC, the bucket's start) | <sensor_id | room | site> | metric | value | count

where the key column is named by `group_by` and `value` is the requested aggregate (for raw, the
reading itself and count 1). Rows are ordered by ts, key, metric. A file up to
`EXPORT_INLINE_MAX_BYTES` (below Lambda's 6 MB response limit, and counted after base64 for
Parquet) is the response itself; a larger one is put in the export bucket and the answer is a
presigned link valid for LINK_SECONDS. Parquet needs pyarrow (the science layer): it is imported
only when that format is asked.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from pydantic import ConfigDict, Field, field_validator

from ems.auth.models import Claims
from ems.core.clock import Clock, to_iso, utc_now
from ems.core.errors import BadRequest
from ems.core.models import Model
from ems.core.observability import logger
from ems.core.settings import settings
from ems.registry.models import METRIC_PATTERN
from ems.telemetry import service as telemetry
from ems.telemetry import sharing
from ems.telemetry.models import Aggregate, DataQuery, GroupBy, Resolution, RoomName, SensorId, TimeInput

Format = Literal["csv", "json", "parquet"]
CONTENT_TYPES: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "parquet": "application/vnd.apache.parquet",
}
KEY_COLUMN: dict[str, str] = {"sensor": "sensor_id", "room": "room", "site": "site"}
LINK_SECONDS = 900
# Raw readings in one export (a year of one sensor every 30 s); beyond it, ask a coarser resolution.
MAX_RAW_ROWS = 1_000_000
MAX_METRICS = 20


def _comma_list(value: Any) -> Any:
    """A query string gives `a,b,c`; a list stays a list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class ExportQuery(Model):
    """The query string of GET /export. `metrics` defaults to what the sensors last reported."""

    model_config = ConfigDict(extra="forbid")

    start_time: TimeInput
    end_time: TimeInput
    format: Format = "csv"
    sensor_ids: list[SensorId] | None = Field(default=None, min_length=1, max_length=500)
    rooms: list[RoomName] | None = Field(default=None, min_length=1, max_length=200)
    metrics: list[str] | None = Field(default=None, min_length=1, max_length=MAX_METRICS)
    resolution: Resolution | None = None
    aggregate: Aggregate = "mean"
    group_by: GroupBy | None = None

    _lists = field_validator("sensor_ids", "rooms", "metrics", mode="before")(
        classmethod(lambda cls, v: _comma_list(v))
    )

    @field_validator("metrics")
    @classmethod
    def _metric_names(cls, value: list[str] | None) -> list[str] | None:
        import re

        for name in value or []:
            if not re.fullmatch(METRIC_PATTERN, name):
                raise ValueError(f"{name!r} is not a metric name (lower case, digits, _)")
        return value


class ExportLink(Model):
    """The answer for a file too large to return inline."""

    url: str
    expires_at: str
    format: Format
    rows: int
    bytes: int


@dataclass(frozen=True)
class ExportFile:
    body: bytes
    content_type: str
    filename: str
    rows: int


class ExportFiles(Protocol):
    """Where large exports go (S3): put a file, answer a presigned GET link to it."""

    def put(self, key: str, body: bytes, content_type: str, filename: str, expires_s: int) -> str: ...


# ---------------------------------------------------------------- rows and files (pure)


def rows_of(sets: Sequence[Any]) -> list[tuple[str, str, str, float, int]]:
    """(ts, key, metric, value, count) of every point of every SeriesSet, ordered."""
    rows = [
        (point.ts, series.key, found.metric, point.value, point.count)
        for found in sets
        for series in found.series
        for point in series.points
    ]
    rows.sort(key=lambda row: (row[0], row[1], row[2]))
    return rows


def encode(rows: list[tuple[str, str, str, float, int]], key_column: str, fmt: Format) -> bytes:
    columns = ["ts", key_column, "metric", "value", "count"]
    if fmt == "csv":
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        return text.getvalue().encode()
    if fmt == "json":
        return json.dumps([dict(zip(columns, row, strict=True)) for row in rows]).encode()
    import pyarrow as pa  # the science layer; only this format needs it
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "ts": pa.array([_instant(row[0]) for row in rows], type=pa.timestamp("ms", tz="UTC")),
            key_column: pa.array([row[1] for row in rows], type=pa.string()),
            "metric": pa.array([row[2] for row in rows], type=pa.string()),
            "value": pa.array([row[3] for row in rows], type=pa.float64()),
            "count": pa.array([row[4] for row in rows], type=pa.int64()),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _instant(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def inline_bytes(size: int, fmt: Format) -> int:
    """What a file costs in the response: Parquet travels base64-encoded (4 bytes per 3)."""
    return (size + 2) // 3 * 4 if fmt == "parquet" else size


# ---------------------------------------------------------------- the export


def export(
    site_id: str,
    q: ExportQuery,
    caller: Claims,
    s: telemetry.Stores,
    files: ExportFiles,
    now: Clock = utc_now,
) -> ExportFile | ExportLink:
    metrics = q.metrics or _reported_metrics(site_id, q, s)
    sets = []
    for metric in metrics:
        query = DataQuery(
            sensor_ids=q.sensor_ids, rooms=q.rooms, metric=metric, start_time=q.start_time,
            end_time=q.end_time, resolution=q.resolution, aggregate=q.aggregate, group_by=q.group_by,
        )  # fmt: skip
        sets.append(telemetry.query(site_id, query, caller, s, now, max_raw_points=MAX_RAW_ROWS))
    grouping = sets[0].group_by if sets else sharing.group_by(q.group_by, caller)
    resolution = sets[0].resolution if sets else sharing.resolution(q.resolution, caller)
    rows = rows_of(sets)
    key_column = KEY_COLUMN[grouping]
    body = encode(rows, key_column, q.format)
    moment = now()
    filename = f"ems-{site_id}-{resolution}-{moment.strftime('%Y%m%dT%H%M%SZ')}.{q.format}"
    content_type = CONTENT_TYPES[q.format]
    logger.info(
        "export",
        extra={"site": site_id, "format": q.format, "rows": len(rows), "bytes": len(body),
               "metrics": metrics, "resolution": resolution, "group_by": grouping},
    )  # fmt: skip
    if inline_bytes(len(body), q.format) <= settings().export_inline_max_bytes:
        return ExportFile(body=body, content_type=content_type, filename=filename, rows=len(rows))
    key = f"exports/{site_id}/{uuid.uuid4().hex}/{filename}"
    url = files.put(key, body, content_type, filename, LINK_SECONDS)
    return ExportLink(
        url=url, expires_at=to_iso(moment + timedelta(seconds=LINK_SECONDS)), format=q.format,
        rows=len(rows), bytes=len(body),
    )  # fmt: skip


def _reported_metrics(site_id: str, q: ExportQuery, s: telemetry.Stores) -> list[str]:
    """The metrics the selected sensors gave in their newest readings (no scan of readings)."""
    selection = DataQuery(sensor_ids=q.sensor_ids, rooms=q.rooms, metric="value", start_time=0, end_time=1)
    sensors = telemetry.select_sensors(site_id, selection, s.registry)
    if s.latest is None or not sensors:
        return ["value"]
    heard = s.latest.get(site_id, [x.sensor_id for x in sensors])
    found = sorted({metric for h in heard.values() for metric in h.metrics})
    if len(found) > MAX_METRICS:
        raise BadRequest(f"these sensors report {len(found)} metrics; name at most {MAX_METRICS}", "metrics")
    return found or ["value"]
