"""What a device command costs in AWS requests: its send (POST /iot/devices/{id}/instructions), its
close (the device's shadow report through the ShadowReports rule), a rule's evaluation of a batch,
and the summary of a site's devices - counted request by request (service and operation) as the
devices service makes them, in one process against moto (`mock_aws`, tables from template.yaml).

Counts, not timings: they are what AWS bills (every request here is a single-item write or read of
an item under 1 KB, so one write or read unit each, Query aside) and do not depend on the machine.
`python -m bench.device_commands` writes its section of bench/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

NAME = "device_commands"
COMMAND = "python -m bench.device_commands"
DEVICES = 20


def _environment() -> None:
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1", POWERTOOLS_LOG_LEVEL="WARNING",
    )  # fmt: skip
    for name in [k for k in os.environ if k.startswith("AWS_ENDPOINT_URL")]:
        del os.environ[name]


def measure() -> dict[str, tuple[int, Counter[str]]]:
    """Per phase: how many times it ran, and the requests of all its runs by service.operation."""
    import boto3
    from moto import mock_aws

    from ems.core import aws
    from ems.devices import service as devices
    from ems.devices.models import CommandRequest, DeviceIn, RuleIn
    from ems.devices.store import (
        CommandStore,
        DeviceStore,
        EventBridgeScheduler,
        IotCoreCloud,
        RuleStore,
        ScheduleStore,
    )  # fmt: skip
    from ems.registry.models import SiteIn
    from ems.registry.service import create_site
    from ems.registry.store import RegistryStore
    from ems.telemetry.models import ReceivedReading, TelemetryReceived
    from ems.telemetry.store import DynamoLatestReadings
    from ems_local import moto_dynamodb
    from ems_local.template import Stack

    moto_dynamodb.install()
    with mock_aws():
        stack = Stack.from_file()
        stack.create_resources(lambda service: boto3.client(service, region_name="us-east-1"))
        for fn in stack.functions().values():
            os.environ.update(fn["Environment"]["Variables"])
        requests: Counter[str] = Counter()

        def count(event_name: str, **_: Any) -> None:
            service, operation = event_name.split(".", 2)[1:]
            requests[f"{service}.{operation}"] += 1

        aws.session().register("before-call", count)
        registry = RegistryStore()
        create_site(SiteIn(site_id="bench", name="Bench", timezone="Europe/Berlin"), _caller(), registry)
        s = devices.Stores(
            devices=DeviceStore(), commands=CommandStore(), iot=IotCoreCloud(), events=_NoEvents(), sites=registry,
            latest=DynamoLatestReadings(), rules=RuleStore(), schedules=ScheduleStore(), scheduler=EventBridgeScheduler(),
        )  # fmt: skip
        iot_data = boto3.client("iot-data", region_name="us-east-1")
        phases: dict[str, tuple[int, Counter[str]]] = {}

        def phase(name: str, runs: int, work: Callable[[int], object]) -> None:
            requests.clear()
            for i in range(runs):
                work(i)
            phases[name] = (runs, Counter(requests))

        phase(
            "register a device (POST /iot/devices)",
            DEVICES,
            lambda i: devices.register(
                "bench",
                DeviceIn(device_id=f"HVAC_{i}", name=f"HVAC {i}", device_type="hvac", dr_eligible=True),
                s,
            ),
        )
        phase(
            "send a command (POST .../instructions)",
            DEVICES,
            lambda i: devices.send(
                "bench",
                f"HVAC_{i}",
                CommandRequest(command="set_mode", params={"mode": "cool"}, command_id=f"c-{i}"),
                "manual",
                s,
                "bench",
            ),
        )

        reports: list[dict[str, Any]] = []
        for i in range(DEVICES):  # the device's own update, not counted: it is IoT Core's, not ours
            reported = {"mode": "cool", "last_command": {"command_id": f"c-{i}", "status": "applied"}}
            answer = iot_data.update_thing_shadow(
                thingName=f"bench:HVAC_{i}", payload=json.dumps({"state": {"reported": reported}}).encode()
            )
            reports.append(json.loads(answer["payload"].read()))
        phase("close it from the shadow report (ShadowReports rule)", DEVICES,
              lambda i: devices.on_shadow_report(f"bench:HVAC_{i}", reports[i], s))  # fmt: skip
        phase(
            "GET /iot/devices/{id} (with the shadow)",
            DEVICES,
            lambda i: devices.get_device("bench", f"HVAC_{i}", _caller(), s),
        )
        rule = RuleIn.model_validate({
            "name": "warm", "condition": {"sensor_id": "T", "metric": "temperature_c", "op": ">", "threshold": 26,
                                          "for_minutes": 5},
            "action": {"device_id": "HVAC_0", "command": "set_mode", "params": {"mode": "cool"}},
        })  # fmt: skip
        devices.create_rule("bench", rule, s)
        batch = TelemetryReceived(site="bench", readings=[
            ReceivedReading(sensor_id="T", ts=1_893_456_000_000 + m * 60_000, metrics={"temperature_c": 25.0})
            for m in range(5)
        ])  # fmt: skip
        phase("a TelemetryReceived batch, one rule, no firing", 10, lambda i: devices.evaluate_rules(
            batch.model_copy(update={"readings": [r.model_copy(update={"ts": r.ts + i * 600_000})
                                                  for r in batch.readings]}), s))  # fmt: skip
        phase(
            f"GET /iot/devices/summary ({DEVICES} devices)",
            1,
            lambda i: devices.summary("bench", _caller(), s),
        )
        return phases


class _NoEvents:
    def publish(self, events: Any) -> Any:
        from ems.core.events import PublishOutcome

        return PublishOutcome(sent=len(events))


def _caller() -> Any:
    from ems.auth.models import Claims

    return Claims(
        sub="bench", name="bench", jti="bench", iat=0, exp=2**31, iss="ems", aud="ems-api", resources=["*"]
    )


def run(aws: Any = None, scratch: Path | None = None, samples: int | None = None) -> str:
    from bench.report import machine

    phases = measure()
    lines = [
        f"## {NAME}", "", f"`{COMMAND}` ({machine()})", "",
        "AWS requests the devices service makes, per run of each operation (the bus's PutEvents not "
        "counted: one per command change, sent by the publisher).", "",
        "| operation | runs | requests per run | by service.operation (per run) |", "|---|---|---|---|",
    ]  # fmt: skip
    for name, (runs, counted) in phases.items():
        per_run = sum(counted.values()) / runs
        detail = ", ".join(f"{op} {n / runs:g}" for op, n in sorted(counted.items()))
        lines.append(f"| {name} | {runs} | {per_run:g} | {detail} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    _environment()
    from bench.report import write_section

    section = run()
    write_section(NAME, section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
