"""The local cloud's moto in a process of its own (ems_local.aws_endpoint, ems_local.moto_server):
served over HTTP, its `--state-dir` snapshot written and restored there, stopped by its PID with
the endpoint, and gone by itself when the process that started it dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from ems_local import state
from ems_local.aws_endpoint import AwsEndpoint, MotoProcessError
from ems_local.template import Stack

STOP_SECONDS = 20  # how long a process may take to go on a loaded machine; not a test of speed


def exists(pid: int) -> bool:
    """True while `pid` is a process that has not exited (a zombie has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def gone_within(pid: int, seconds: float) -> bool:
    give_up = time.monotonic() + seconds
    while exists(pid):
        if time.monotonic() > give_up:
            return False
        time.sleep(0.1)
    return True


@pytest.fixture
def endpoint() -> Iterator[AwsEndpoint]:
    aws = AwsEndpoint(port=0)
    aws.start()
    yield aws
    aws.stop()


def tables(stack: Stack) -> list[str]:
    return [
        str(stack.resolve(r["Properties"]["TableName"]))
        for r in stack.of_type("AWS::DynamoDB::Table").values()
    ]


def test_moto_serves_from_a_child_process_gone_after_stop() -> None:
    aws = AwsEndpoint(port=0)
    aws.start()
    pid = aws.pid
    assert pid is not None and pid != os.getpid() and exists(pid)
    try:
        aws.client("s3").create_bucket(Bucket="served-by-the-child")
        assert [b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]] == ["served-by-the-child"]
    finally:
        aws.stop()
    assert gone_within(pid, STOP_SECONDS)  # stop() waits for it: it is gone when stop returns
    assert aws.pid is None and aws.url == ""


def test_the_snapshot_is_written_and_restored_in_the_moto_process(tmp_path: Path) -> None:
    """A table item and the signing key's private half, saved by one moto process, are in the next."""
    first_stack = Stack.from_file(region="us-east-1")
    first = AwsEndpoint(port=0)
    first.start()
    try:
        assert first.restore_keys(tmp_path, first_stack) is False  # no snapshot yet
        first.create_resources(first_stack)
        table = tables(first_stack)[0]
        key_schema = first.client("dynamodb").describe_table(TableName=table)["Table"]["KeySchema"]
        item = {k["AttributeName"]: {"S": f"kept-{k['KeyType']}"} for k in key_schema}
        first.client("dynamodb").put_item(TableName=table, Item=item)
        key_ids = {k: first_stack.physical[k] for k in first_stack.of_type("AWS::KMS::Key")}
        signed = {
            key_id: first.client("kms").sign(
                KeyId=key_id, Message=b"token", SigningAlgorithm="ECDSA_SHA_256", MessageType="RAW"
            )["Signature"]
            for key_id in key_ids.values()
        }
        first.save_state(tmp_path / state.STATE_FILE, first_stack)
    finally:
        first.stop()
    saved: dict[str, Any] = json.loads((tmp_path / state.STATE_FILE).read_text())
    assert saved["dynamodb"][table] == [item]

    second_stack = Stack.from_file(region="us-east-1")
    second = AwsEndpoint(port=0)
    second.start()
    try:
        assert second.restore_keys(tmp_path, second_stack) is True
        assert {k: second_stack.physical[k] for k in key_ids} == key_ids  # same ids: no new keys made
        second.create_resources(second_stack)
        assert second.restore_data() == {"items": 1, "objects": 0, "things": 0, "schedules": 0}
        assert second.client("dynamodb").scan(TableName=table)["Items"] == [item]
        for logical, key_id in key_ids.items():
            # What the first process signed, the restored key's public half verifies; and it signs
            # with the same private half (the saved one's public half verifies its signature).
            public = second.client("kms").get_public_key(KeyId=key_id)["PublicKey"]
            assert public  # the key exists in the second process under its old id
            private = load_pem_private_key(saved["kms"][logical]["pem"].encode(), password=None)
            assert isinstance(private, ec.EllipticCurvePrivateKey)
            private.public_key().verify(signed[key_id], b"token", ec.ECDSA(hashes.SHA256()))
            again = second.client("kms").sign(
                KeyId=key_id, Message=b"token", SigningAlgorithm="ECDSA_SHA_256", MessageType="RAW"
            )["Signature"]
            private.public_key().verify(again, b"token", ec.ECDSA(hashes.SHA256()))
    finally:
        second.stop()


def test_a_snapshot_of_another_version_is_refused_through_the_child(
    endpoint: AwsEndpoint, tmp_path: Path
) -> None:
    (tmp_path / state.STATE_FILE).write_text(json.dumps({"format": state.FORMAT, "moto": "0.0.1"}))
    with pytest.raises(state.IncompatibleState, match="--reset"):
        endpoint.restore_keys(tmp_path, Stack.from_file(region="us-east-1"))


def test_a_failed_command_is_raised_here_and_the_child_serves_on(
    endpoint: AwsEndpoint, tmp_path: Path
) -> None:
    stack = Stack.from_file(region="us-east-1")  # its tables were never made in this moto
    with pytest.raises(MotoProcessError, match="snapshot: ResourceNotFoundException"):
        endpoint.save_state(tmp_path / state.STATE_FILE, stack)
    assert not (tmp_path / state.STATE_FILE).exists()
    assert endpoint.client("s3").list_buckets()["Buckets"] == []


PARENT = """
import sys
from ems_local.aws_endpoint import AwsEndpoint
aws = AwsEndpoint(port=0)
aws.start()
print("child", aws.pid, flush=True)
sys.stdin.read()
"""


def test_the_moto_process_goes_when_its_parent_dies() -> None:
    """Its parent killed (no stop, no clean-up): the child reads the end of its pipe and stops."""
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        said = next(line for line in parent.stdout if line.startswith("child "))  # after the log line
        child = int(said.split()[1])
        assert exists(child)
    finally:
        parent.send_signal(signal.SIGKILL)  # by its own PID
        parent.wait()
    assert gone_within(child, STOP_SECONDS), f"the moto process {child} outlived its parent"
