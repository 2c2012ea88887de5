"""One clock for the local cloud, started for real at 2030-01-01T00:00:00Z running 60x.

A test template (its own folder, `ems local up --template`) has one function on the core layer that
answers GET /now with `ems.core.clock.utc_now()` and records every other event with that time (and
its real epoch seconds), a rate(1 minute) ScheduleV2 whose input carries the scheduled time, and an
IoT rule on the telemetry topic, which the simulator's load fleet (run here as `ems simulate` runs it,
on the clock of stack.json) publishes to. The function, the Scheduler and the simulator must agree
within a second of simulated time; each comparison allows for the real delay between the two
readings of the clock, measured, times the speed. Nothing asserts on real elapsed time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from ems.core import clock
from ems_local.clock import Clock
from ems_sim.cli import stack_clock
from ems_sim.fleet import LoadFleet
from tests.e2e.conftest import ROOT, running_local_cloud, wait_for

pytestmark = pytest.mark.e2e

START = datetime(2030, 1, 1, tzinfo=UTC)
SPEED = 60
ONE_SECOND = timedelta(seconds=1)

CLOCK_APP = """
import json
import os
import time

from ems.core.clock import to_iso, utc_now


def handler(event, context):
    now, real = to_iso(utc_now()), time.time()
    if isinstance(event, dict) and event.get("routeKey") == "GET /now":
        return {"statusCode": 200, "body": json.dumps({"now": now})}
    line = (json.dumps({"now": now, "real": real, "event": event}) + "\\n").encode()
    fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return {"ok": True}
"""

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Resources:
  HttpApi:
    Type: AWS::Serverless::HttpApi
  CoreLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      LayerName: ems-test-core
      ContentUri: %(core)s
  ClockFunction:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: ems-test-clock
      CodeUri: clock
      Handler: app.handler
      Runtime: python3.12
      Timeout: 20
      Layers: [!Ref CoreLayer]
      Environment:
        Variables:
          RECORD_FILE: %(record)s
      Events:
        Now:
          Type: HttpApi
          Properties:
            ApiId: !Ref HttpApi
            Path: /now
            Method: GET
        Tick:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: rate(1 minute)
            Input: '{"kind": "tick", "at": "<aws.scheduler.scheduled-time>"}'
        Telemetry:
          Type: IoTRule
          Properties:
            AwsIotSqlVersion: '2016-03-23'
            Sql: SELECT * FROM 'ems/+/devices/+/telemetry'
"""


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class ClockStack:
    def __init__(self, home: Path, description: dict[str, Any]) -> None:
        self.description, self.record = description, home / "events.jsonl"
        self.clock = Clock.from_description(description["clock"])

    def records(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines() if line.strip()]

    def ticks(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["event"].get("kind") == "tick"]

    def readings(self, sensor: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["event"].get("sensor_id") == sensor]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClockStack]:
    home = tmp_path_factory.mktemp("clock")
    (home / "clock").mkdir()
    (home / "clock" / "app.py").write_text(CLOCK_APP)
    template = home / "template.yaml"
    template.write_text(TEMPLATE % {"core": ROOT / "layers" / "core", "record": home / "events.jsonl"})
    args = ("--empty", "--template", str(template), "--clock", "2030-01-01T00:00:00Z", "--speed", str(SPEED))
    with running_local_cloud(home, *args, served=True) as description:
        yield ClockStack(home, description)


def test_stack_json_describes_the_clock_it_was_started_on(stack: ClockStack) -> None:
    described = stack.description["clock"]
    assert (described["origin"], described["rate"]) == ("2030-01-01T00:00:00+00:00", 60.0)
    assert described["env"].startswith("2030-01-01T00:00:00+00:00;")


def test_a_function_reads_the_local_clouds_clock(stack: ClockStack) -> None:
    before = time.time()
    answer = httpx.get(f"{stack.description['http']}/now", timeout=30)
    after = time.time()
    assert answer.status_code == 200, answer.text
    seen = instant(answer.json()["now"])
    # Between the two real readings around the request, give or take a simulated second.
    assert stack.clock.at_real(before) - ONE_SECOND <= seen <= stack.clock.at_real(after) + ONE_SECOND
    assert seen.year == 2030


def test_the_scheduler_fires_each_simulated_minute_on_the_functions_clock(stack: ClockStack) -> None:
    ticks = wait_for(lambda: (found := stack.ticks()) and len(found) >= 3 and found, "three ticks at 60x")
    scheduled = sorted(instant(t["event"]["at"]) for t in ticks)
    # rate(1 minute) at 60x: one scheduled minute after another, on the 2030 clock.
    assert all(b - a == timedelta(minutes=1) for a, b in pairwise(scheduled))
    assert START <= scheduled[0] < START + timedelta(hours=1)
    for tick in ticks:
        at, received = instant(tick["event"]["at"]), instant(tick["now"])
        # The real moment the clock read `at`; the function ran `delay_s` real seconds later.
        delay_s = tick["real"] - (stack.clock.real_origin + (at - stack.clock.origin).total_seconds() / SPEED)
        assert at - ONE_SECOND <= received <= at + ONE_SECOND + timedelta(seconds=max(delay_s, 0) * SPEED)


@pytest.fixture
def on_the_stacks_clock(stack: ClockStack) -> Iterator[None]:
    """This process on the stack's clock, as `ems simulate` puts itself (from stack.json)."""
    clock.run_on(stack_clock(stack.description))
    yield
    clock.run_on(None)


def test_the_simulators_readings_carry_the_clocks_time_and_agree_with_the_function(
    stack: ClockStack, on_the_stacks_clock: None
) -> None:
    mqtt = urlsplit(stack.description["mqtt"])
    fleet = LoadFleet("clocksite", 1, 1000.0, str(mqtt.hostname), int(mqtt.port or 1883), prefix="clock")
    sensor = fleet.device_ids[0]
    try:
        wait_for(fleet.clients[0].client.is_connected, "the simulated device connected")
        before = time.time()
        sent = fleet.run(0.001)  # one reading, maybe two: 1000 a second for a millisecond
        after = time.time()
    finally:
        fleet.close()
    readings = wait_for(lambda: len(found := stack.readings(sensor)) >= sent and found, "the readings")
    assert len(readings) == sent >= 1
    for reading in readings:
        stamped = datetime.fromtimestamp(reading["event"]["ts"] / 1000, UTC)
        received = instant(reading["now"])
        # The simulator stamped it between the two real readings around its run, on the stack's clock.
        assert stack.clock.at_real(before) - ONE_SECOND <= stamped <= stack.clock.at_real(after) + ONE_SECOND
        # The function received it later by the real delay since the run began, times the speed.
        delay = timedelta(seconds=(reading["real"] - before) * SPEED)
        assert stamped - ONE_SECOND <= received <= stamped + ONE_SECOND + delay
