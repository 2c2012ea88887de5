"""`ems device provision` against moto: the certificate is active and attached to the thing and to
the policy, the files and the endpoint are written, and the policy document (read back from moto)
allows the device's own topics and shadow and nothing else, judged request by request as IoT Core
judges an allow-only policy (an action is allowed when a statement names it and a resource matches,
`*` and `?` as wildcards)."""

from __future__ import annotations

import json
import stat
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import boto3
import pytest

from ems_cli import main as ems
from ems_cli.devices import provision

ARN = "arn:aws:iot:us-east-1:123456789012"
THING = "hq:DEVICE_001"


def allows(policy: dict[str, Any], action: str, resource: str) -> bool:
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        if (
            statement["Effect"] == "Allow"
            and any(fnmatchcase(action, a) for a in actions)
            and any(fnmatchcase(resource, r) for r in resources)
        ):
            return True
    return False


@pytest.fixture
def provisioned(stack: object, tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any], Path]:
    iot = boto3.client("iot", region_name="us-east-1")
    iot.create_thing(thingName=THING)
    iot.create_thing(thingName="hq:DEVICE_002")
    connection = provision(iot, "hq", "DEVICE_001", tmp_path / "dev1", "us-east-1", "123456789012")
    policy = json.loads(iot.get_policy(policyName=connection["policy"])["policyDocument"])
    return connection, policy, tmp_path / "dev1"


OWN = [
    ("iot:Connect", f"client/{THING}"),
    ("iot:Publish", "topic/ems/hq/devices/DEVICE_001/telemetry"),
    ("iot:Publish", f"topic/$aws/things/{THING}/shadow/update"),
    ("iot:Publish", f"topic/$aws/things/{THING}/shadow/get"),
    ("iot:Subscribe", "topicfilter/ems/hq/devices/DEVICE_001/commands"),
    ("iot:Receive", "topic/ems/hq/devices/DEVICE_001/commands"),
    *[(a, f"{kind}/$aws/things/{THING}/shadow/{answer}")
      for a, kind in (("iot:Subscribe", "topicfilter"), ("iot:Receive", "topic"))
      for answer in ("update/accepted", "update/rejected", "update/delta", "update/documents", "get/accepted",
                     "get/rejected")],
]  # fmt: skip
OTHERS = [
    ("iot:Connect", "client/hq:DEVICE_002"),
    ("iot:Connect", "client/anything"),
    ("iot:Publish", "topic/ems/hq/devices/DEVICE_002/telemetry"),
    ("iot:Publish", "topic/ems/lab/devices/DEVICE_001/telemetry"),  # the same id in another site
    ("iot:Publish", "topic/ems/hq/devices/DEVICE_001/commands"),  # commands come from EMS only
    ("iot:Publish", "topic/$aws/things/hq:DEVICE_002/shadow/update"),
    ("iot:Publish", f"topic/$aws/things/{THING}/shadow/delete"),
    ("iot:Publish", f"topic/$aws/things/{THING}/shadow/name/other/update"),
    ("iot:Publish", "topic/$aws/events/presence/connected/hq:DEVICE_001"),
    ("iot:Subscribe", "topicfilter/ems/hq/devices/+/commands"),
    ("iot:Subscribe", "topicfilter/ems/#"),
    ("iot:Subscribe", "topicfilter/$aws/things/hq:DEVICE_002/shadow/update/delta"),
    ("iot:Subscribe", "topicfilter/ems/hq/devices/DEVICE_001/telemetry"),
    ("iot:Receive", "topic/ems/hq/devices/DEVICE_002/commands"),
    ("iot:UpdateThingShadow", f"thing/{THING}"),
    ("iot:GetThingShadow", f"thing/{THING}"),
    ("iot:DeleteThing", f"thing/{THING}"),
    ("iot:RetainPublish", "topic/ems/hq/devices/DEVICE_001/telemetry"),
]


def test_the_policy_allows_the_devices_own_topics_and_shadow_and_nothing_else(
    provisioned: tuple[dict[str, Any], dict[str, Any], Path],
) -> None:
    policy = provisioned[1]
    assert [(a, r) for a, r in OWN if not allows(policy, a, f"{ARN}:{r}")] == []
    assert [(a, r) for a, r in OTHERS if allows(policy, a, f"{ARN}:{r}")] == []


def test_every_resource_of_the_policy_is_one_of_the_devices_own_and_none_is_a_wildcard(
    provisioned: tuple[dict[str, Any], dict[str, Any], Path],
) -> None:
    _, policy, _ = provisioned
    granted = {(s["Action"], r.removeprefix(f"{ARN}:")) for s in policy["Statement"] for r in s["Resource"]}
    assert granted == set(OWN)
    assert not any(ch in r for _, r in granted for ch in "*?")
    assert {s["Effect"] for s in policy["Statement"]} == {"Allow"}


def test_the_certificate_is_active_attached_and_written_with_the_endpoint(
    provisioned: tuple[dict[str, Any], dict[str, Any], Path],
) -> None:
    connection, _, out = provisioned
    iot = boto3.client("iot", region_name="us-east-1")
    certificate_id = connection["certificate_arn"].rsplit("/", 1)[1]
    assert (
        iot.describe_certificate(certificateId=certificate_id)["certificateDescription"]["status"] == "ACTIVE"
    )
    assert iot.list_thing_principals(thingName=THING)["principals"] == [connection["certificate_arn"]]
    attached = iot.list_attached_policies(target=connection["certificate_arn"])["policies"]
    assert [p["policyName"] for p in attached] == ["ems-device-hq_DEVICE_001"]
    # moto makes up an account endpoint per call; the form is AWS's ATS data endpoint.
    assert connection["endpoint"].endswith("-ats.iot.us-east-1.amazonaws.com")
    assert connection["client_id"] == THING and connection["port"] == 8883
    assert (out / "certificate.pem.crt").read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert stat.S_IMODE((out / "private.pem.key").stat().st_mode) == 0o600
    assert json.loads((out / "connection.json").read_text()) == connection


def test_the_command_provisions_a_registered_device_and_refuses_an_unknown_one(
    stack: object, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .local/stack.json here: the environment's account (moto)
    boto3.client("iot", region_name="us-east-1").create_thing(thingName=THING)
    assert ems(["device", "provision", "DEVICE_001", "--site", "hq", "--out", "dev1"]) == 0
    printed = capsys.readouterr().out
    assert f"-i '{THING}'" in printed and "ems/hq/devices/DEVICE_001/commands" in printed
    assert (tmp_path / "dev1" / "connection.json").exists()
    with pytest.raises(SystemExit, match="register the device first"):
        ems(["device", "provision", "DEVICE_404", "--site", "hq", "--out", "dev2"])
