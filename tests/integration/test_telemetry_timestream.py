"""The Timestream adapter of the TelemetryStore port: writes against moto (records land, 100 a call,
rejections handled), reads against canned query results (moto has no time-series engine: it answers
a query string with what was queued for it), the SQL it builds, and the template's switch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from ems.core import aws, settings
from ems.core.errors import BadRequest
from ems.telemetry.backends import telemetry_store
from ems.telemetry.models import Reading
from ems.telemetry.rollup import Bucket
from ems.telemetry.store import DynamoTelemetryStore
from ems.telemetry.timestream import StorageRejected, TimestreamTelemetryStore, raw_sql, rollup_sql
from ems_local.template import Stack

DATABASE, TABLE, SITE = "ems_dev", "readings", "hq"
ACCOUNT, REGION = "123456789012", "us-east-1"


@pytest.fixture
def timestream(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("TELEMETRY_BACKEND", "timestream")
    monkeypatch.setenv("TIMESTREAM_DATABASE", DATABASE)
    monkeypatch.setenv("TIMESTREAM_TABLE", TABLE)
    with mock_aws():
        settings.settings.cache_clear()
        aws.client.cache_clear()
        write = boto3.client("timestream-write", region_name=REGION)
        write.create_database(DatabaseName=DATABASE)
        write.create_table(DatabaseName=DATABASE, TableName=TABLE)
        yield write
    settings.settings.cache_clear()
    aws.client.cache_clear()


def readings(count: int) -> list[Reading]:
    """`count` sensor-times of sensor S1, two metrics each."""
    out = []
    for n in range(count):
        ts = 1_795_000_000_000 + n * 1000
        out += [Reading(SITE, "S1", "power_w", ts, 100.0 + n), Reading(SITE, "S1", "energy_wh", ts, float(n))]
    return out


def stored_records() -> list[dict[str, Any]]:
    from moto.timestreamwrite.models import timestreamwrite_backends

    return timestreamwrite_backends[ACCOUNT][REGION].databases[DATABASE].tables[TABLE].records  # type: ignore[no-any-return]


def test_the_template_switch_chooses_the_adapter(timestream: Any) -> None:
    assert isinstance(telemetry_store(), TimestreamTelemetryStore)
    variables = Stack.from_file(TelemetryBackend="timestream").functions()["TelemetryFunction"][
        "Environment"
    ]["Variables"]
    assert (variables["TELEMETRY_BACKEND"], variables["TIMESTREAM_TABLE"]) == ("timestream", "readings")
    assert variables["TIMESTREAM_DATABASE"] == "ems_dev"
    assert (
        Stack.from_file().functions()["TelemetryFunction"]["Environment"]["Variables"]["TIMESTREAM_DATABASE"]
        == ""
    )


def test_writes_are_multi_measure_records_100_a_call(timestream: Any) -> None:
    calls: list[int] = []
    client = aws.client("timestream-write")
    client.meta.events.register(
        "provide-client-params.timestream-write.WriteRecords",
        lambda params, **_: calls.append(len(params["Records"])),
    )
    outcome = TimestreamTelemetryStore().write(readings(250))

    assert calls == [100, 100, 50]  # 250 sensor-times, each one record of two measures
    assert (outcome.created, outcome.duplicates) == (500, set())
    records = stored_records()
    assert len(records) == 250
    first = records[0]
    assert first["Dimensions"] == [{"Name": "site", "Value": SITE}, {"Name": "sensor_id", "Value": "S1"}]
    assert (first["MeasureName"], first["MeasureValueType"], first["TimeUnit"]) == (
        "metrics",
        "MULTI",
        "MILLISECONDS",
    )
    assert {m["Name"]: m["Value"] for m in first["MeasureValues"]} == {"power_w": "100.0", "energy_wh": "0.0"}


def test_a_record_of_another_version_is_a_duplicate_and_any_other_rejection_fails(timestream: Any) -> None:
    client = aws.client("timestream-write")
    store = TimestreamTelemetryStore()
    with Stubber(client) as stub:
        stub.add_client_error(
            "write_records", "RejectedRecordsException", "some records were rejected",
            response_meta={},
            modeled_fields={"RejectedRecords": [{"RecordIndex": 1, "Reason": "A record with this identifier exists with a different value. ExistingVersion: 1"}]},
        )  # fmt: skip
        outcome = store.write(readings(3))
    assert outcome.created == 4  # two records of two measures
    assert outcome.duplicates == {
        ("S1", "power_w", 1_795_000_001_000),
        ("S1", "energy_wh", 1_795_000_001_000),
    }

    with Stubber(client) as stub:
        stub.add_client_error(
            "write_records", "RejectedRecordsException", "rejected", response_meta={},
            modeled_fields={"RejectedRecords": [{"RecordIndex": 0, "Reason": "The record timestamp is outside the time range"}]},
        )  # fmt: skip
        with pytest.raises(StorageRejected, match="outside the time range"):
            store.write(readings(1))


def canned(sql: str, columns: list[str], rows: list[list[str | None]]) -> None:
    from moto.timestreamquery.models import timestreamquery_backends

    result = {
        "QueryId": "canned",
        "ColumnInfo": [{"Name": name, "Type": {"ScalarType": "VARCHAR"}} for name in columns],
        "Rows": [
            {"Data": [{"ScalarValue": v} if v is not None else {"NullValue": True} for v in row]}
            for row in rows
        ],
    }
    timestreamquery_backends[ACCOUNT][REGION].query_result_queue[sql] = [result]


def test_rollups_and_raw_readings_from_timestream_sql(timestream: Any) -> None:
    start, end = 1_795_000_000_000, 1_795_003_600_000
    sql = rollup_sql(DATABASE, TABLE, SITE, ["S1", "S2"], "power_w", "15m", start, end)
    canned(sql, ["sensor_id", "bucket", "c", "s", "mn", "mx", "l", "lt"], [
        ["S1", str(start), "3", "30.5", "9.5", "11", "10", str(start + 600_000)],
        ["S2", str(start + 900_000), "1", "4", "4", "4", "4", str(start + 901_000)],
    ])  # fmt: skip
    buckets = TimestreamTelemetryStore().read_rollups(SITE, ["S1", "S2"], "power_w", "15m", start, end)
    assert buckets == {
        "S1": {start: Bucket(count=3, sum=30.5, min=9.5, max=11.0, last=10.0, last_ts=start + 600_000)},
        "S2": {
            start + 900_000: Bucket(count=1, sum=4.0, min=4.0, max=4.0, last=4.0, last_ts=start + 901_000)
        },
    }

    raw = raw_sql(DATABASE, TABLE, SITE, ["S1"], "power_w", start, end, 10)
    canned(raw, ["sensor_id", "ts", "v"], [["S1", str(start), "1.5"], ["S1", str(start + 1000), "2.5"]])
    assert TimestreamTelemetryStore().read_raw(SITE, ["S1"], "power_w", start, end, 10) == {
        "S1": [(start, 1.5), (start + 1000, 2.5)]
    }


def test_the_sql_bins_and_quotes() -> None:
    sql = rollup_sql("db", "t", "hq", ["B", "A"], "power_w", "1h", 0, 3_600_000)
    assert "bin(time, 1h)" in sql and 'max_by("power_w", time)' in sql
    assert "sensor_id IN ('A', 'B')" in sql and "site = 'hq'" in sql
    assert "time >= from_milliseconds(0) AND time < from_milliseconds(3600000)" in sql
    with pytest.raises(BadRequest):
        rollup_sql("db", "t", "hq", ["x' OR '1'='1"], "power_w", "1h", 0, 1)
    with pytest.raises(BadRequest):
        raw_sql("db", "t", "hq", ["A"], 'v" FROM x --', 0, 1, 5)


def test_the_dynamodb_adapter_stays_the_default() -> None:
    settings.settings.cache_clear()
    assert isinstance(telemetry_store(), DynamoTelemetryStore)
