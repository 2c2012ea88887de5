"""What the local cloud reaches into on moto's running objects is still there (pyproject.toml bounds
moto for that reason; tests/integration/test_pinned_patches.py checks signatures and source): each failure
names the patch and moto's version, so trying a new version says what to re-check.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import moto
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from ems_local import state
from ems_local.moto_server import MotoServer
from ems_local.ports import PortTaken, check_free
from ems_local.template import Stack

MOTO = f"moto {moto.__version__}"


def client(service: str) -> Any:
    return boto3.client(service, region_name="us-east-1")  # type: ignore[call-overload]


def test_state_keeps_and_restores_the_template_kms_keys_private_half(stack: Stack) -> None:
    patch = "ems_local.state reads moto's KMS keys (kms_backends[account][region].keys[id].private_key)"
    key_ids = {logical: stack.physical[logical] for logical in stack.of_type("AWS::KMS::Key")}
    assert key_ids, "the template has a KMS key (the token signing key)"
    saved = state.snapshot(state.Inventory.of(stack), client)
    assert set(saved["kms"]) == set(key_ids), (
        f"{patch}; it found no private key material in {MOTO}'s KMS backend: re-check the patch"
    )
    for logical, key_id in key_ids.items():
        assert saved["kms"][logical]["id"] == key_id
        assert saved["kms"][logical]["key_spec"] == "ECC_NIST_P256"  # the template's KeySpec

    patch = "ems_local.state restores moto's KMS keys (create_key, then the id, arn and private_key replaced)"
    assert state.restore_keys(saved, stack.region) == key_ids, f"{patch}; the restored keys' ids differ"
    kms = client("kms")
    for logical, key_id in key_ids.items():
        # The restored key signs with the saved private half: the saved key's public half verifies it.
        signature = kms.sign(
            KeyId=key_id, Message=b"token", SigningAlgorithm="ECDSA_SHA_256", MessageType="RAW"
        )["Signature"]
        private = load_pem_private_key(saved["kms"][logical]["pem"].encode(), password=None)
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        private.public_key().verify(signature, b"token", ec.ECDSA(hashes.SHA256()))
        arn = kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]
        assert arn.endswith(f"key/{key_id}"), f"{patch}; {MOTO} gave the restored key the arn {arn}"


def test_moto_server_stop_closes_motos_listening_socket() -> None:
    server = MotoServer(port=0)
    server.start()
    port = int(server.url.rsplit(":", 1)[1])
    try:
        with pytest.raises(PortTaken):  # held while moto serves on it
            check_free("aws", port)
    finally:
        server.stop()
    check_free("aws", port)  # raises PortTaken if the listening socket was left open


def test_moto_server_keeps_connections_open() -> None:
    """Ten calls of one client over one TCP connection (werkzeug's own handler closes each), and the
    answers are moto's: a queue made, eight messages in, the same eight out."""
    server = MotoServer(port=0)
    server.start()
    try:
        sqs = server.client("sqs")
        url = sqs.create_queue(QueueName="keep-alive")["QueueUrl"]
        for n in range(8):
            sqs.send_message(QueueUrl=url, MessageBody=f"m{n}")
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        pool = sqs._endpoint.http_session._manager.connection_from_url(server.url)
        assert sorted(m["Body"] for m in got) == [f"m{n}" for n in range(8)]
        assert pool.num_connections == 1, f"{pool.num_connections} connections for 10 calls"
    finally:
        server.stop()


def test_state_restores_a_shadows_version(stack: Stack) -> None:
    patch = (
        "ems_local.state sets a restored shadow's version (iot_backends[account][region] thing.thing_shadows)"
    )
    saved = {"iot": {"thing_types": [], "things": [
        {"name": "site-a:DEVICE_001", "type": None, "attributes": {},
         "shadows": {"": {"desired": {"power": "off"}, "reported": {"power": "on"}, "version": 7}}},
    ]}}  # fmt: skip
    assert state.restore_data(saved, client, stack.region)["things"] == 1
    shadow = json.loads(client("iot-data").get_thing_shadow(thingName="site-a:DEVICE_001")["payload"].read())
    assert shadow["version"] == 7, f"{patch}; {MOTO} shows version {shadow['version']}: re-check the patch"
    assert shadow["state"]["delta"] == {"power": "off"}
