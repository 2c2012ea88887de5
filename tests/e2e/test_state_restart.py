"""`--state-dir` across a restart of the local cloud started for real: an IoT thing (type,
attributes), its shadow and a Scheduler schedule, all made at run time through boto3, are there after
the restart, and the schedule fires in the second run. Bounded polling; nothing asserts on time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import RecorderStack, recorder_template, running_local_cloud, wait_for

pytestmark = pytest.mark.e2e

FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:ems-test-recorder"
EVENTS = """
        Daily:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: rate(1 day)
            Input: '{"kind": "daily"}'
"""
THING = "kept:DEVICE_001"


def test_things_shadows_and_schedules_are_kept_across_a_restart(tmp_path: Path) -> None:
    template = recorder_template(tmp_path, EVENTS)
    args = ("--empty", "--template", str(template), "--clock", "60")
    desired = {"power": "off", "command_id": "c-1"}
    with running_local_cloud(tmp_path, *args) as first:
        stack = RecorderStack(tmp_path, first)
        iot, iot_data = stack.client("iot", "aws"), stack.client("iot-data", "aws_services")
        iot.create_thing_type(thingTypeName="hvac")
        iot.create_thing(
            thingName=THING, thingTypeName="hvac", attributePayload={"attributes": {"site": "kept"}}
        )
        iot_data.update_thing_shadow(
            thingName=THING, payload=json.dumps({"state": {"reported": {"power": "on"}}})
        )
        iot_data.update_thing_shadow(thingName=THING, payload=json.dumps({"state": {"desired": desired}}))
        stack.client("scheduler", "aws").create_schedule(
            Name="kept-every-minute", ScheduleExpression="rate(1 minute)", FlexibleTimeWindow={"Mode": "OFF"},
            Target={"Arn": FUNCTION_ARN, "RoleArn": "arn:aws:iam::123456789012:role/r", "Input": '{"kind": "kept"}'},
        )  # fmt: skip
    # What the first run's schedule did is set aside: a "kept" event from now on is the second run's.
    record = tmp_path / "events.jsonl"
    if record.exists():
        record.rename(tmp_path / "first-run-events.jsonl")

    with running_local_cloud(tmp_path, *args) as second:
        stack = RecorderStack(tmp_path, second)
        iot, iot_data = stack.client("iot", "aws"), stack.client("iot-data", "aws_services")
        thing = iot.describe_thing(thingName=THING)
        assert (thing["thingTypeName"], thing["attributes"]) == ("hvac", {"site": "kept"})
        shadow: dict[str, Any] = json.loads(iot_data.get_thing_shadow(thingName=THING)["payload"].read())
        assert shadow["state"]["desired"] == desired and shadow["state"]["reported"] == {"power": "on"}
        assert shadow["version"] == 2
        kept = stack.client("scheduler", "aws").get_schedule(Name="kept-every-minute")
        assert kept["ScheduleExpression"] == "rate(1 minute)"
        wait_for(lambda: {"kind": "kept"} in stack.events(), "the kept schedule firing in the second run", 60)
    log = (tmp_path / "local.log").read_text()
    assert "restored" in log and "1 IoT things and 2 schedules" in log  # the template's and ours
