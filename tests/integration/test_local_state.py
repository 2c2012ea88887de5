"""The local cloud's snapshot file: none is no state, one of another version is refused clearly; and
what it keeps besides tables, buckets and keys: IoT things, their shadows, run-time schedules."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import moto
import pytest

from ems_local import state
from ems_local.aws_endpoint import AwsEndpoint
from ems_local.clock import Clock
from ems_local.scheduler import Scheduler
from ems_local.template import Stack


def test_no_snapshot_is_a_fresh_start(tmp_path: Path) -> None:
    assert state.load(tmp_path) is None


def test_a_snapshot_of_another_version_is_refused_with_the_way_out(tmp_path: Path) -> None:
    (tmp_path / state.STATE_FILE).write_text(json.dumps({"format": state.FORMAT, "moto": "0.0.1"}))
    with pytest.raises(state.IncompatibleState, match="--reset") as refused:
        state.load(tmp_path)
    assert "moto 0.0.1" in str(refused.value) and moto.__version__ in str(refused.value)


def test_a_snapshot_of_this_version_loads(tmp_path: Path) -> None:
    saved = {"format": state.FORMAT, "moto": moto.__version__, "kms": {}, "dynamodb": {"t": []}, "s3": {}}
    (tmp_path / state.STATE_FILE).write_text(json.dumps(saved))
    assert state.load(tmp_path) == saved


class FakeRealTime:
    """The real clock the local Scheduler reads, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


def test_things_shadows_and_schedules_made_at_run_time_are_back_after_a_restart(tmp_path: Path) -> None:
    """Through boto3 against the moto process: a thing (type, attributes), its shadow and a schedule;
    snapshot, stop; a second moto process restores them, and the local Scheduler fires the schedule."""
    thing = "site-a:DEVICE_001"
    desired = {"power": "off", "command_id": "c-1"}
    first_stack = Stack.from_file(region="us-east-1")
    target = str(first_stack.get_att(next(iter(first_stack.functions())), "Arn"))
    schedule = {
        "Name": "office-morning", "GroupName": "devices", "ScheduleExpression": "cron(0 7 * * ? *)",
        "ScheduleExpressionTimezone": "Europe/Berlin", "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": {"Arn": target, "RoleArn": "arn:aws:iam::123456789012:role/scheduler",
                   "Input": '{"scene": "morning", "at": "<aws.scheduler.scheduled-time>"}'},
    }  # fmt: skip
    first = AwsEndpoint(port=0)
    first.start()
    try:
        assert first.restore_keys(tmp_path, first_stack) is False
        first.create_resources(first_stack)
        iot, iot_data = first.client("iot"), first.client("iot-data")
        iot.create_thing_type(
            thingTypeName="hvac", thingTypeProperties={"thingTypeDescription": "HVAC units"}
        )
        iot.create_thing(
            thingName=thing, thingTypeName="hvac",
            attributePayload={"attributes": {"site": "site-a", "device_id": "DEVICE_001"}},
        )  # fmt: skip
        iot_data.update_thing_shadow(
            thingName=thing, payload=json.dumps({"state": {"reported": {"power": "on"}}})
        )
        iot_data.update_thing_shadow(thingName=thing, payload=json.dumps({"state": {"desired": desired}}))
        scheduler = first.client("scheduler")
        scheduler.create_schedule_group(Name="devices")
        scheduler.create_schedule(**schedule)
        first.save_state(tmp_path / state.STATE_FILE, first_stack)
    finally:
        first.stop()

    second_stack = Stack.from_file(region="us-east-1")
    second = AwsEndpoint(port=0)
    second.start()
    try:
        assert second.restore_keys(tmp_path, second_stack) is True
        second.create_resources(second_stack)
        counts = second.restore_data()
        assert (counts["things"], counts["schedules"]) == (1, 1)
        iot, iot_data = second.client("iot"), second.client("iot-data")
        described = iot.describe_thing(thingName=thing)
        assert described["thingTypeName"] == "hvac"
        assert described["attributes"] == {"site": "site-a", "device_id": "DEVICE_001"}
        properties = iot.describe_thing_type(thingTypeName="hvac")["thingTypeProperties"]
        assert properties["thingTypeDescription"] == "HVAC units"
        document = json.loads(iot_data.get_thing_shadow(thingName=thing)["payload"].read())
        assert document["state"]["desired"] == desired and document["state"]["reported"] == {"power": "on"}
        assert document["state"]["delta"] == desired  # power differs, and command_id is not reported
        assert document["version"] == 2  # two updates before the restart, none counted by the restore
        client = second.client("scheduler")
        kept = client.get_schedule(Name="office-morning", GroupName="devices")
        for field in ("ScheduleExpression", "ScheduleExpressionTimezone", "FlexibleTimeWindow"):
            assert kept[field] == schedule[field], field
        assert schedule["Target"].items() <= kept["Target"].items()  # with Scheduler's default RetryPolicy

        # The local Scheduler arms it from moto: 07:00 in Berlin in winter is 06:00 UTC.
        real, fires = FakeRealTime(), []
        clock = Clock(60, origin=datetime(2030, 1, 1, 5, 58, tzinfo=UTC), real=real)
        local = Scheduler(second_stack, clock, lambda fn, event, source: fires.append((fn, event)), client)
        local.poll()
        for _ in range(3):  # three real seconds: three minutes at 60x, to 06:01 UTC
            real.now += 1
            local.poll()
            local.fire_due()
        function = next(iter(second_stack.functions()))
        assert fires == [(function, {"scene": "morning", "at": "2030-01-01T06:00:00Z"})]
    finally:
        second.stop()
