"""The Timestream for LiveAnalytics adapter of the TelemetryStore port (TelemetryBackend=timestream).

Writes: one multi-measure record per sensor and time (dimensions `site` and `sensor_id`, measure name
`metrics`, one DOUBLE per metric), 100 records a WriteRecords call (its limit). Timestream is
idempotent by itself: a record equal to one it holds is accepted again, and one with the same
dimensions and time but other values is rejected (`ExistingVersion`), which is the port's "the first
of two readings with one key wins": those are reported as duplicates. What Timestream cannot say is
whether an accepted record was new or a retry, so `created` counts accepted records (a retried batch
emits its TelemetryReceived again). Any other rejection fails the write with its reasons, never
silently: the readings are not stored, and the caller's retry is safe.

Reads: Timestream SQL. Rollups are computed at query time with `bin()` (Timestream keeps no rollups
of ours, and needs none). Every name put into SQL is checked against the pattern that admitted it
(site and sensor ids, metric names: letters, digits, `_`, `-`, `.`), and string literals double
their quotes, so a query cannot be anything but the one built here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ems.core.aws import client, error_code
from ems.core.errors import BadRequest
from ems.core.observability import logger
from ems.core.settings import settings
from ems.telemetry.models import Reading
from ems.telemetry.ports import WriteOutcome
from ems.telemetry.rollup import Bucket

RECORDS_PER_CALL = 100
MEASURE_NAME = "metrics"
_IDENTIFIER = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
_METRIC = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
BIN = {"15m": "15m", "1h": "1h", "1d": "1d"}


class StorageRejected(Exception):
    """Timestream refused records for a reason other than an existing version."""


def _literal(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise BadRequest(f"{value!r} cannot be queried", "sensor_ids")
    return "'" + value.replace("'", "''") + "'"


def _column(metric: str) -> str:
    if not _METRIC.match(metric):
        raise BadRequest(f"{metric!r} is not a metric name", "metric")
    return f'"{metric}"'


def records_of(
    readings: Sequence[Reading],
) -> list[tuple[tuple[str, str, int], dict[str, Any], list[Reading]]]:
    """One multi-measure record per (site, sensor, ts), with the readings it carries."""
    grouped: dict[tuple[str, str, int], list[Reading]] = {}
    for reading in readings:
        grouped.setdefault((reading.site_id, reading.sensor_id, reading.ts_ms), []).append(reading)
    out = []
    for (site, sensor, ts_ms), members in sorted(grouped.items()):
        record = {
            "Dimensions": [{"Name": "site", "Value": site}, {"Name": "sensor_id", "Value": sensor}],
            "MeasureName": MEASURE_NAME, "MeasureValueType": "MULTI",
            "MeasureValues": [{"Name": r.metric, "Value": repr(float(r.value)), "Type": "DOUBLE"} for r in members],
            "Time": str(ts_ms), "TimeUnit": "MILLISECONDS",
        }  # fmt: skip
        out.append(((site, sensor, ts_ms), record, members))
    return out


def rollup_sql(database: str, table: str, site: str, sensor_ids: Sequence[str], metric: str, resolution: str,
               start_ms: int, end_ms: int) -> str:  # fmt: skip
    column = _column(metric)
    sensors = ", ".join(_literal(s) for s in sorted(sensor_ids))
    width = BIN[resolution]
    return (
        f"SELECT sensor_id, to_milliseconds(bin(time, {width})) AS bucket, count({column}) AS c, "
        f"sum({column}) AS s, min({column}) AS mn, max({column}) AS mx, max_by({column}, time) AS l, "
        f"to_milliseconds(max(time)) AS lt "
        f'FROM "{database}"."{table}" '
        f"WHERE site = {_literal(site)} AND sensor_id IN ({sensors}) AND measure_name = '{MEASURE_NAME}' "
        f"AND {column} IS NOT NULL AND time >= from_milliseconds({int(start_ms)}) "
        f"AND time < from_milliseconds({int(end_ms)}) "
        f"GROUP BY sensor_id, bin(time, {width}) ORDER BY sensor_id, bucket"
    )


def raw_sql(database: str, table: str, site: str, sensor_ids: Sequence[str], metric: str, start_ms: int,
            end_ms: int, limit: int) -> str:  # fmt: skip
    column = _column(metric)
    sensors = ", ".join(_literal(s) for s in sorted(sensor_ids))
    return (
        f"SELECT sensor_id, to_milliseconds(time) AS ts, {column} AS v "
        f'FROM "{database}"."{table}" '
        f"WHERE site = {_literal(site)} AND sensor_id IN ({sensors}) AND measure_name = '{MEASURE_NAME}' "
        f"AND {column} IS NOT NULL AND time >= from_milliseconds({int(start_ms)}) "
        f"AND time < from_milliseconds({int(end_ms)}) "
        f"ORDER BY sensor_id, time LIMIT {int(limit) + 1}"
    )


def rows_of(answer: dict[str, Any]) -> list[dict[str, str | None]]:
    """A Query page's rows as {column: scalar text} (NULL as None)."""
    names = [c["Name"] for c in answer.get("ColumnInfo", [])]
    return [
        {name: cell.get("ScalarValue") for name, cell in zip(names, row["Data"], strict=True)}
        for row in answer.get("Rows", [])
    ]


class TimestreamTelemetryStore:
    @property
    def _target(self) -> tuple[str, str]:
        return settings().timestream_database, settings().timestream_table

    def write(self, readings: Sequence[Reading]) -> WriteOutcome:
        database, table = self._target
        outcome = WriteOutcome()
        records = records_of(readings)
        for start in range(0, len(records), RECORDS_PER_CALL):
            chunk = records[start : start + RECORDS_PER_CALL]
            rejected: dict[int, str] = {}
            try:
                client("timestream-write").write_records(
                    DatabaseName=database, TableName=table, Records=[record for _, record, _ in chunk]
                )
            except Exception as exc:
                if error_code(exc) != "RejectedRecordsException":
                    raise
                for entry in getattr(exc, "response", {}).get("RejectedRecords", []):
                    rejected[int(entry["RecordIndex"])] = str(entry.get("Reason", ""))
            others = {
                i: why
                for i, why in rejected.items()
                if "ExistingVersion" not in why and "existing" not in why.lower()
            }
            if others:
                logger.error(
                    "Timestream rejected records", extra={"reasons": sorted(set(others.values()))[:5]}
                )
                raise StorageRejected(f"{len(others)} records rejected: {sorted(set(others.values()))[:3]}")
            for index, (_key, _record, members) in enumerate(chunk):
                if index in rejected:
                    outcome.duplicates.update((r.sensor_id, r.metric, r.ts_ms) for r in members)
                else:
                    outcome.created += len(members)
        return outcome

    def _query(self, sql: str) -> list[dict[str, str | None]]:
        rows: list[dict[str, str | None]] = []
        request: dict[str, Any] = {"QueryString": sql}
        while True:
            answer = client("timestream-query").query(**request)
            rows.extend(rows_of(answer))
            token = answer.get("NextToken")
            if not token:
                return rows
            request["NextToken"] = token

    def read_raw(
        self, site_id: str, sensor_ids: Sequence[str], metric: str, start_ms: int, end_ms: int, limit: int
    ) -> dict[str, list[tuple[int, float]]]:
        database, table = self._target
        out: dict[str, list[tuple[int, float]]] = {s: [] for s in sensor_ids}
        if not sensor_ids:
            return out
        for row in self._query(
            raw_sql(database, table, site_id, sensor_ids, metric, start_ms, end_ms, limit)
        ):
            if row["v"] is not None and row["sensor_id"] in out:
                out[str(row["sensor_id"])].append((int(str(row["ts"])), float(row["v"])))
        return out

    def read_rollups(
        self,
        site_id: str,
        sensor_ids: Sequence[str],
        metric: str,
        resolution: str,
        start_ms: int,
        end_ms: int,
    ) -> dict[str, dict[int, Bucket]]:
        database, table = self._target
        out: dict[str, dict[int, Bucket]] = {s: {} for s in sensor_ids}
        if not sensor_ids:
            return out
        sql = rollup_sql(database, table, site_id, sensor_ids, metric, resolution, start_ms, end_ms)
        for row in self._query(sql):
            sensor = str(row["sensor_id"])
            if sensor not in out or not row["c"]:
                continue
            out[sensor][int(str(row["bucket"]))] = Bucket(
                count=int(str(row["c"])), sum=float(str(row["s"])), min=float(str(row["mn"])),
                max=float(str(row["mx"])), last=float(str(row["l"])), last_ts=int(str(row["lt"])),
            )  # fmt: skip
        return out
