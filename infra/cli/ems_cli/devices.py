"""`ems device provision <device_id>`: what a real device needs to talk to IoT Core as itself.

For a device registered through the API (its IoT thing exists): a new certificate and key pair
(active), the device's least-privilege policy (ems.devices.policy) attached to the certificate, the
certificate attached to the thing, and the account's data endpoint (iot:Data-ATS), all written to
one folder with a connection.json; then it prints how to connect. The private key is written once,
readable by its owner only: IoT Core keeps no copy.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from ems.devices.policy import device_policy, policy_name
from ems.devices.things import commands_topic, shadow_topic, telemetry_topic, thing_name

MQTT_PORT = 8883


def _error_code(exc: BaseException) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def provision(iot: Any, site: str, device_id: str, out: Path, region: str, account: str) -> dict[str, Any]:
    """Provision through the `iot` client; the connection description written to `out`."""
    thing = thing_name(site, device_id)
    try:
        iot.describe_thing(thingName=thing)
    except Exception as exc:
        if _error_code(exc) == "ResourceNotFoundException":
            raise SystemExit(
                f"ems: no IoT thing {thing}: register the device first (POST /api/v1/iot/devices)"
            ) from exc
        raise
    name = policy_name(site, device_id)
    document = json.dumps(device_policy(site, device_id, region, account))
    try:
        iot.create_policy(policyName=name, policyDocument=document)
    except Exception as exc:
        if _error_code(exc) != "ResourceAlreadyExistsException":
            raise
    created = iot.create_keys_and_certificate(setAsActive=True)
    certificate_arn = created["certificateArn"]
    iot.attach_policy(policyName=name, target=certificate_arn)
    iot.attach_thing_principal(thingName=thing, principal=certificate_arn)
    endpoint = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]

    out.mkdir(parents=True, exist_ok=True)
    (out / "certificate.pem.crt").write_text(created["certificatePem"])
    (out / "public.pem.key").write_text(created["keyPair"]["PublicKey"])
    key = out / "private.pem.key"
    key.write_text(created["keyPair"]["PrivateKey"])
    os.chmod(key, stat.S_IRUSR | stat.S_IWUSR)
    connection = {
        "endpoint": endpoint, "port": MQTT_PORT, "client_id": thing, "thing_name": thing, "site": site,
        "device_id": device_id, "certificate_arn": certificate_arn, "policy": name,
        "certificate": "certificate.pem.crt", "private_key": "private.pem.key",
        "publish": {"telemetry": telemetry_topic(site, device_id), "shadow_update": shadow_topic(thing, "update")},
        "subscribe": {"commands": commands_topic(site, device_id), "shadow_delta": shadow_topic(thing, "update/delta")},
    }  # fmt: skip
    (out / "connection.json").write_text(json.dumps(connection, indent=2) + "\n")
    return connection


def how_to_connect(connection: dict[str, Any], out: Path) -> str:
    return f"""Provisioned {connection["thing_name"]} in {out}/
  endpoint   {connection["endpoint"]}:{connection["port"]} (MQTT over TLS)
  client id  {connection["client_id"]} (the only one its policy lets connect)
  files      certificate.pem.crt, private.pem.key (keep it secret; IoT Core keeps no copy), connection.json
  CA         Amazon Root CA 1 (from Amazon Trust Services)

Connect, for example with mosquitto:
  mosquitto_sub -h {connection["endpoint"]} -p {connection["port"]} -i '{connection["client_id"]}' \\
    --cafile AmazonRootCA1.pem --cert {out}/certificate.pem.crt --key {out}/private.pem.key \\
    -t '{connection["subscribe"]["commands"]}' -t '{connection["subscribe"]["shadow_delta"]}'
Publish readings on {connection["publish"]["telemetry"]} and report state on {connection["publish"]["shadow_update"]}
as {{"state": {{"reported": {{..., "last_command": {{"command_id", "status": "applied"|"rejected"}}}}}}}}."""


def main(args: Any) -> int:
    import boto3

    site = args.site or os.environ.get("DEFAULT_SITE_ID")
    if not site:
        print("ems: name the device's site with --site", file=sys.stderr)
        return 2
    session = boto3.session.Session()
    region = session.region_name or "us-east-1"
    account = session.client("sts").get_caller_identity()["Account"]
    out = Path(args.out or f"devices/{thing_name(site, args.device_id).replace(':', '_')}")
    connection = provision(session.client("iot"), site, args.device_id, out, region, account)
    print(how_to_connect(connection, out))
    return 0
