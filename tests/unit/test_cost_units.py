"""The billing arithmetic of bench/cost.py, against the examples of AWS's own documentation (DynamoDB
"Item sizes and formats" and "Read/write capacity mode", Timestream "Metering: writes", EventBridge
"Calculating PutEvents event entry size") and sizes worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bench.cost import (
    KB,
    Workload,
    batches,
    chunks,
    device_messages,
    eventbridge_entry_size,
    item_size,
    number_size,
    read_units,
    timestream_record_size,
    timestream_write_units,
    write_units,
)


@pytest.mark.parametrize(
    ("number", "size"),
    [
        ("123.45", 4),  # 5 significant digits: 3 bytes, and 1
        ("1795000000000", 3),  # trailing zeroes trimmed: 1795, 2 bytes and 1
        ("0.001", 2),  # leading zeroes trimmed: 1
        ("-7", 2),
        ("0", 2),
    ],
)
def test_a_number_takes_a_byte_per_two_significant_digits_and_one(number: str, size: int) -> None:
    assert number_size(number) == size


def test_an_item_is_its_names_and_values() -> None:
    # "pk" 2 + "hq#S1" 5 + "v" 1 + 21.5 (3 digits: 2 + 1) = 11
    assert item_size({"pk": {"S": "hq#S1"}, "v": {"N": "21.5"}}) == 11
    # UTF-8: "név" is 4 bytes, "é" 2
    assert item_size({"név": {"S": "é"}}) == 6
    assert item_size({"flag": {"BOOL": True}, "gone": {"NULL": True}}) == 4 + 1 + 4 + 1
    assert item_size({"tags": {"SS": ["ab", "c"]}}) == 4 + 3
    assert item_size(None) == 0


def test_maps_and_lists_take_three_bytes_and_one_per_element() -> None:
    # "m" 1 + 3 + ("a" 1 + 1 digit 2 + 1) + ("bb" 2 + "xyz" 3 + 1) = 14
    assert item_size({"m": {"M": {"a": {"N": "1"}, "bb": {"S": "xyz"}}}}) == 14
    # "l" 1 + 3 + ("ab" 2 + 1) + (true 1 + 1) = 9
    assert item_size({"l": {"L": [{"S": "ab"}, {"BOOL": True}]}}) == 9
    assert item_size({"e": {"M": {}}}) == 1 + 3


def test_writes_round_up_to_a_kilobyte_and_transactions_double() -> None:
    # The developer guide: a 3 KB item takes 3 WCU, 6 in a transaction; 3.5 KB takes 4.
    assert write_units(3 * KB) == 3
    assert write_units(3 * KB, transactional=True) == 6
    assert write_units(3 * KB + KB // 2) == 4
    assert write_units(KB) == 1
    assert write_units(KB + 1) == 2
    assert write_units(0) == 1  # a write of nothing (a delete of no item) still costs one


def test_reads_round_up_to_four_kilobytes() -> None:
    # The developer guide: an 8 KB item is 2 RCU strongly consistent, 1 eventually, 4 in a transaction.
    assert read_units(8 * KB, consistent=True) == 2
    assert read_units(8 * KB, consistent=False) == 1
    assert read_units(8 * KB, consistent=True, transactional=True) == 4
    assert read_units(0, consistent=True) == 1  # an item that does not exist
    assert read_units(0, consistent=False) == 0.5


def test_a_query_is_rounded_once_and_a_batch_get_per_item() -> None:
    # Query: 10 items of 40.8 KB together are rounded to 44 KB: 11 RCU, 5.5 eventually consistent.
    assert read_units(int(40.8 * KB), consistent=True) == 11
    assert read_units(int(40.8 * KB), consistent=False) == 5.5
    # 1,500 items of 64 bytes: 96 KB, 24 RCU
    assert read_units(1500 * 64, consistent=True) == 24
    # BatchGetItem of a 1.5 KB and a 6.5 KB item: 4 KB + 8 KB = 12 KB, 3 RCU (not 8 KB, 2)
    assert sum(read_units(size, consistent=True) for size in (1536, 6656)) == 3


def test_chunked_payloads() -> None:
    assert chunks(256 * KB, 64 * KB) == 4  # EventBridge: a 256 KB event is billed as 4
    assert chunks(8 * KB, 5 * KB) == 2  # IoT Core: an 8 KB message is 2
    assert chunks(300, 64 * KB) == 1
    assert chunks(0, 64 * KB) == 1


def test_a_putevents_entry_size() -> None:
    entry = {"Source": "ems.telemetry", "DetailType": "TelemetryReceived", "Detail": '{"a":1}'}
    assert eventbridge_entry_size(entry) == 13 + 17 + 7
    assert eventbridge_entry_size({**entry, "Time": "2030-01-01T00:00:00Z"}) == 13 + 17 + 7 + 14


CPU_EVENT = {
    "Dimensions": [
        {"Name": "region", "Value": "us-east-1"},
        {"Name": "az", "Value": "1d"},
        {"Name": "vpc", "Value": "vpc-1a2b3c4d"},
        {"Name": "hostname", "Value": "host-24Gju"},
    ],
    "MeasureName": "cpu_utilization",
    "MeasureValue": "35.0",
    "MeasureValueType": "DOUBLE",
    "Time": "1602983435238563000",
}


def test_timestream_write_size_of_the_docs_example() -> None:
    # Timestream's own example: 8 + 15 + 4 + 15 + 18 + 15 + 8 = 83 bytes
    assert timestream_record_size(CPU_EVENT) == 83


def test_timestream_multi_measure_records_and_common_attributes() -> None:
    record = {"Dimensions": [{"Name": "sensor_id", "Value": "S1"}], "Time": "1", "MeasureValueType": "MULTI",
              "MeasureValues": [{"Name": "power_w", "Value": "1.5", "Type": "DOUBLE"}]}  # fmt: skip
    common = {"Dimensions": [{"Name": "site", "Value": "hq"}], "MeasureName": "metrics"}
    # time 8 + site/hq 6 + sensor_id/S1 11 + "metrics" 7 + power_w 7 and its DOUBLE 8 = 47
    assert timestream_record_size(record, common) == 47


def test_timestream_counts_a_request_in_kibibytes() -> None:
    assert timestream_write_units([CPU_EVENT] * 12) == 1  # 996 bytes
    assert timestream_write_units([CPU_EVENT] * 13) == 2  # 1,079 bytes


def test_the_workload_and_its_batches() -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    sensors = [[f"d{d}s{n}" for n in range(10)] for d in range(20)]
    spread = device_messages(start, Workload("spread", 60, 60, aligned=False), sensors)
    assert len(spread) == 20 * 60
    assert spread[0][0] == start and spread[-1][0] == datetime(2030, 1, 1, 0, 59, 57, tzinfo=UTC)
    assert [len(b) for b in batches(spread, 10)] == [1] * 1200  # 3 s apart: one message a receive
    aligned = device_messages(start, Workload("aligned", 5, 1, aligned=True), sensors)
    assert [len(b) for b in batches(aligned, 10)] == [10, 10] * 12  # 20 at once: two receives of 10
