"""The AWS endpoint of the local cloud: moto in server mode, holding the template's resources, in a
process of its own (ems_local.moto_server), so that moto's work and the emulator's use two cores.

Functions reach it through AWS_ENDPOINT_URL (see `environment`); services the emulator serves
itself where moto stops short (EventBridge PutEvents, IoT data plane, @connections) are in this
process (ems_local.aws_services) and have their own AWS_ENDPOINT_URL_<SERVICE>. This process reaches
moto over HTTP (`client`) and, for `--state-dir`, through the child's commands on a pipe
(`restore_keys`, `restore_data`, `save_state`). The child is stopped by its PID with this endpoint,
and stops by itself when this process dies (its stdin, this process's pipe, closes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import boto3

from ems_local import console, state
from ems_local.ports import HOST, check_free
from ems_local.template import Stack

REGION = "us-east-1"
# moto accepts any credentials; fixed fake ones make sure nothing ever signs with a real key.
CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
STOP_SECONDS = 10  # a clean stop takes well under a second; after this it is killed (by its PID)


def client(url: str, service: str) -> Any:
    """A boto3 client of `service` at the moto server `url`."""
    return boto3.client(  # type: ignore[call-overload]  # the stubs know services by literal name only
        service, endpoint_url=url, region_name=REGION,
        aws_access_key_id=CREDENTIALS["aws_access_key_id"],
        aws_secret_access_key=CREDENTIALS["aws_secret_access_key"],
    )  # fmt: skip


class MotoProcessError(RuntimeError):
    pass


class AwsEndpoint:
    def __init__(self, port: int = 4566) -> None:
        check_free("aws", port)
        self._port = port
        self._process: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()  # one command at a time on the pipe
        self.url = ""

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        # ems_local from wherever this one was imported, whatever the caller's sys.path was made of.
        package_root = str(Path(__file__).resolve().parents[1])
        pythonpath = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "ems_local.moto_server", str(self._port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": pythonpath},
            # Its own process group: Ctrl-C reaches only this process, which saves the state through
            # the child before it stops it.
            process_group=0,
        )  # fmt: skip
        ready = self._reply()
        self.url = f"http://{HOST}:{int(ready['port'])}"
        console.line("aws", f"moto listening on {self.url} (pid {self._process.pid})")

    def client(self, service: str) -> Any:
        return client(self.url, service)

    def create_resources(self, stack: Stack) -> None:
        stack.create_resources(self.client)
        tables = [
            str(stack.resolve(r["Properties"]["TableName"]))
            for r in stack.of_type("AWS::DynamoDB::Table").values()
        ]
        console.line(
            "aws", f"created the template's resources: keys {sorted(stack.physical)}, tables {tables}"
        )

    def environment(self) -> dict[str, str]:
        """What a process needs to talk to this endpoint as if it were AWS."""
        return {
            "AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"], "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        }  # fmt: skip

    # ------------------------------------------------------------ --state-dir, done in the child

    def restore_keys(self, state_dir: Path, stack: Stack) -> bool:
        """Before `create_resources`: the snapshot's KMS keys made again (same ids and material), so
        the stack does not make new ones. False when there is no snapshot. Raises IncompatibleState."""
        reply = self._command("restore_keys", path=str((state_dir / state.STATE_FILE).resolve()))
        stack.physical.update(reply["keys"])
        return bool(reply["found"])

    def restore_data(self) -> dict[str, int]:
        """After `create_resources`, before the Scheduler starts: the snapshot's items, objects, IoT
        things (with their shadows) and schedules; how many of each."""
        reply = self._command("restore_data")
        return {k: int(reply.get(k, 0)) for k in ("items", "objects", "things", "schedules")}

    def save_state(self, path: Path, stack: Stack) -> None:
        """The snapshot of the stack's tables, buckets and keys, IoT things and shadows, and schedules,
        written to `path` by the child."""
        self._command("snapshot", path=str(path.resolve()), inventory=state.Inventory.of(stack).to_json())

    def _command(self, name: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            process = self._process
            if process is None or process.stdin is None:
                raise MotoProcessError("the moto process is not running")
            try:
                process.stdin.write(json.dumps({"command": name, **fields}) + "\n")
                process.stdin.flush()
            except (BrokenPipeError, ValueError) as exc:
                raise MotoProcessError(f"the moto process (pid {process.pid}) is gone: {exc!r}") from exc
            reply = self._reply()
        if reply.get("error") == "IncompatibleState":
            raise state.IncompatibleState(reply["message"])
        if "error" in reply:
            raise MotoProcessError(f"moto process, {name}: {reply['error']}: {reply['message']}")
        return reply

    def _reply(self) -> dict[str, Any]:
        process = self._process
        assert process is not None and process.stdout is not None
        line = process.stdout.readline()
        if not line:
            code = process.wait()
            self._process = None
            raise MotoProcessError(f"the moto process exited ({code}); its output is above")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def stop(self) -> None:
        process, self._process = self._process, None
        self.url = ""
        if process is None:
            return
        if process.stdin:
            process.stdin.close()  # its signal to stop
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()  # by its own PID (Popen never signals a PID it has already reaped)
            process.wait()
        if process.stdout:
            process.stdout.close()
