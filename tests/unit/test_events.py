"""Domain events split to EventBridge's limits: details under 256 KB, calls of 10 entries and 256 KB."""

from __future__ import annotations

import json

from ems.core.events import MAX_CALL_BYTES, MAX_ENTRIES_PER_CALL, _calls, _entry_bytes, split_detail


def test_a_detail_is_split_in_order_and_each_part_fits() -> None:
    items = [{"sensor_id": f"S{i:04d}", "ts": i, "metrics": {"power_w": float(i)}} for i in range(5000)]
    details = split_detail({"site": "hq"}, "readings", items, limit_bytes=16 * 1024)
    assert len(details) > 1
    assert [r for d in details for r in d["readings"]] == items  # nothing lost, nothing twice, in order
    assert all(d["site"] == "hq" for d in details)
    assert all(len(json.dumps(d, separators=(",", ":")).encode()) <= 16 * 1024 for d in details)


def test_a_small_detail_is_one_event() -> None:
    assert split_detail({"site": "hq"}, "readings", [{"a": 1}]) == [{"site": "hq", "readings": [{"a": 1}]}]


def test_calls_hold_at_most_ten_entries_and_256_kb() -> None:
    entry = {"Source": "ems.telemetry", "DetailType": "TelemetryReceived", "Detail": "x" * 100_000}
    small = {"Source": "ems.telemetry", "DetailType": "TelemetryReceived", "Detail": "{}"}
    calls = _calls([entry, entry, entry] + [small] * 25)
    assert sum(len(c) for c in calls) == 28
    assert all(len(c) <= MAX_ENTRIES_PER_CALL for c in calls)
    assert all(sum(_entry_bytes(e) for e in c) <= MAX_CALL_BYTES for c in calls)
