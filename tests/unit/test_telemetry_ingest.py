"""Ingest through fakes (ems.telemetry.service): what a batch answers, what is stored, status, the event."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ems.core.errors import PayloadTooLarge
from ems.registry.status import Heard
from ems.telemetry import service as telemetry
from ems.telemetry.models import IngestRequest
from tests.support.fakes import ListPublisher, MemoryRegistry, MemoryStatus, MemoryTelemetry

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
T_1158 = int(datetime(2025, 6, 2, 11, 58, tzinfo=UTC).timestamp() * 1000)
T_1159 = int(datetime(2025, 6, 2, 11, 59, tzinfo=UTC).timestamp() * 1000)


def clock() -> datetime:
    return NOW


class World:
    def __init__(self) -> None:
        self.registry = MemoryRegistry()
        self.registry.add_site("hq")
        self.registry.add_sensor("hq", "t1", "temperature", unit="C")
        self.registry.add_sensor("hq", "m", "meter", device_id="meter-1")
        self.telemetry = MemoryTelemetry()
        self.status = MemoryStatus()
        self.events = ListPublisher()
        self.stores = telemetry.Stores(
            registry=self.registry, telemetry=self.telemetry, status=self.status, events=self.events
        )


# Six readings: one good, the same again, an unknown sensor, a value that is no number, a meter reading
# of two metrics, one from ten minutes in the future.
BATCH = [
    {"sensor_id": "t1", "ts": "2025-06-02T11:59:00Z", "value": 21.5},
    {"sensor_id": "t1", "ts": "2025-06-02T11:59:00Z", "value": 21.5},
    {"sensor_id": "nope", "ts": "2025-06-02T11:59:00Z", "value": 1},
    {"sensor_id": "t1", "ts": "2025-06-02T11:59:30Z", "value": "hot"},
    {"sensor_id": "m", "ts": "2025-06-02T11:58:00Z", "metrics": {"power_w": 5000, "energy_wh": 100}},
    {"sensor_id": "m", "ts": "2025-06-02T12:10:00Z", "metrics": {"power_w": 1}},
]


def test_a_batch_with_duplicates_and_bad_readings() -> None:
    w = World()
    result = telemetry.ingest("hq", IngestRequest(readings=BATCH), w.stores, clock)

    assert (result.accepted, result.duplicates) == (3, 1)
    assert [(r.index, r.reason) for r in result.rejected] == [
        (2, "unknown sensor 'nope' in site 'hq'"),
        (3, "value must be a number"),
        (5, "ts is more than 5 minutes in the future"),
    ]
    # Three readings stored (t1's value once, the meter's two metrics), with their rollups.
    assert w.telemetry.raw == {
        ("hq", "t1", "value", T_1159): 21.5,
        ("hq", "m", "power_w", T_1158): 5000.0,
        ("hq", "m", "energy_wh", T_1158): 100.0,
    }
    quarter = int(datetime(2025, 6, 2, 11, 45, tzinfo=UTC).timestamp() * 1000)
    bucket = w.telemetry.read_rollups("hq", ["m"], "power_w", "15m", quarter, quarter + 1)["m"][quarter]
    assert (bucket.count, bucket.sum, bucket.last) == (1, 5000.0, 5000.0)


def test_status_moves_to_each_sensors_newest_reading() -> None:
    w = World()
    telemetry.ingest("hq", IngestRequest(readings=BATCH), w.stores, clock)
    assert w.status.get("hq", ["t1", "m", "nope"]) == {
        "t1": Heard("t1", T_1159, {"value": 21.5}),
        "m": Heard("m", T_1158, {"power_w": 5000.0, "energy_wh": 100.0}),
    }


def test_one_telemetry_received_with_what_was_newly_stored() -> None:
    w = World()
    telemetry.ingest("hq", IngestRequest(readings=BATCH), w.stores, clock)
    assert w.events.kinds() == ["TelemetryReceived"]
    assert w.events.events[0].detail == {
        "site": "hq",
        "readings": [  # in time order
            {"sensor_id": "m", "room": None, "sensor_type": "meter", "ts": T_1158,
             "metrics": {"power_w": 5000.0, "energy_wh": 100.0}},
            {"sensor_id": "t1", "room": None, "sensor_type": "temperature", "ts": T_1159,
             "metrics": {"value": 21.5}},
        ],
    }  # fmt: skip


def test_a_retried_batch_gets_the_same_answer_and_stores_nothing_twice() -> None:
    w = World()
    first = telemetry.ingest("hq", IngestRequest(readings=BATCH), w.stores, clock)
    again = telemetry.ingest("hq", IngestRequest(readings=BATCH), w.stores, clock)

    assert again.accepted == first.accepted == 3
    assert again.duplicates == 3  # every accepted reading was stored by the first request
    assert again.rejected == first.rejected
    assert len(w.telemetry.raw) == 3
    quarter = int(datetime(2025, 6, 2, 11, 45, tzinfo=UTC).timestamp() * 1000)
    assert (
        w.telemetry.read_rollups("hq", ["m"], "power_w", "15m", quarter, quarter + 1)["m"][quarter].count == 1
    )
    assert w.events.kinds() == ["TelemetryReceived"]  # nothing new, no second event


def test_a_batch_of_old_and_new_readings_publishes_only_the_new() -> None:
    w = World()
    telemetry.ingest("hq", IngestRequest(readings=BATCH[:1]), w.stores, clock)
    later = {"sensor_id": "t1", "ts": "2025-06-02T11:59:30Z", "value": 22.0}
    result = telemetry.ingest("hq", IngestRequest(readings=[BATCH[0], later]), w.stores, clock)

    assert (result.accepted, result.duplicates, result.rejected) == (2, 1, [])
    assert [r["ts"] for r in w.events.events[1].detail["readings"]] == [T_1159 + 30_000]
    assert w.status.get("hq", ["t1"])["t1"] == Heard("t1", T_1159 + 30_000, {"value": 22.0})


def test_a_late_reading_is_stored_but_does_not_move_status_back() -> None:
    w = World()
    telemetry.ingest("hq", IngestRequest(readings=[BATCH[0]]), w.stores, clock)
    late = {"sensor_id": "t1", "ts": "2025-06-02T11:00:00Z", "value": 19.0}
    assert telemetry.ingest("hq", IngestRequest(readings=[late]), w.stores, clock).accepted == 1
    assert len(w.telemetry.raw) == 2
    assert w.status.get("hq", ["t1"])["t1"].ts_ms == T_1159


def test_more_than_a_thousand_readings_is_refused_whole() -> None:
    w = World()
    readings = [{"sensor_id": "t1", "ts": 1_748_865_000 + i, "value": 20} for i in range(1001)]
    with pytest.raises(PayloadTooLarge) as refused:
        telemetry.ingest("hq", IngestRequest(readings=readings), w.stores, clock)
    assert refused.value.field == "readings"
    assert w.telemetry.raw == {} and w.events.events == []


def test_a_device_message_in_epoch_ms_for_its_own_sensors() -> None:
    """Over MQTT: epoch milliseconds are accepted, a sensor bound to another device is refused."""
    w = World()
    message = {
        "site": "hq", "device_id": "meter-2", "ts": T_1158,
        "readings": [{"sensor_id": "m", "metrics": {"power_w": 1}}, {"sensor_id": "t1", "value": 20.5}],
    }  # fmt: skip
    result = telemetry.ingest_device_message(message, w.stores, clock)
    assert result.accepted == 1
    assert [(r.index, r.reason) for r in result.rejected] == [
        (0, "sensor 'm' belongs to device 'meter-1', not 'meter-2'")
    ]
    assert w.telemetry.raw == {("hq", "t1", "value", T_1158): 20.5}


def test_a_device_message_for_a_site_that_does_not_exist() -> None:
    w = World()
    message = {"site": "elsewhere", "device_id": "meter-1", "sensor_id": "m", "ts": T_1158, "value": 1}
    result = telemetry.ingest_device_message(message, w.stores, clock)
    assert result.accepted == 0
    assert [(r.index, r.reason) for r in result.rejected] == [(-1, "no site 'elsewhere'")]
    assert w.telemetry.raw == {} and w.events.events == []
