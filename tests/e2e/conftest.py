"""The local cloud started for real, as `ems local up` starts it: one stack per test module."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]
# How long a cold machine may take to start moto, the workers and seed the stack; not a test of speed.
START_SECONDS = 120


@dataclass
class RunningStack:
    description: dict[str, Any]
    home: Path  # where `.local/stack.json` is, i.e. the cwd for `ems` commands

    @property
    def http(self) -> str:
        return str(self.description["http"])

    @property
    def admin_token(self) -> str:
        return str(self.description["admin_token"])

    def ports(self) -> list[int]:
        keys = [k for k in ("http", "aws", "ws", "aws_services", "mqtt") if k in self.description]
        return [int(urlsplit(self.description[k]).port or 0) for k in keys]


def children_of(pid: int) -> list[int]:
    """PIDs whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a zombie has exited already)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def port_free(port: int) -> bool:
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def local_up(home: Path, *args: str) -> subprocess.Popen[bytes]:
    """`python -m ems_local` in `home`, on ports the system picks, its output in home/local.log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env["PYTHONUNBUFFERED"] = "1"
    log = (home / "local.log").open("wb")
    command = [
        sys.executable,
        "-m",
        "ems_local",
        "--http-port",
        "0",
        "--aws-port",
        "0",
        "--ws-port",
        "0",
        "--aws-services-port",
        "0",
        "--mqtt-port",
        "0",
        "--state-dir",
        ".local",
        *args,
    ]
    return subprocess.Popen(command, cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT)


T = TypeVar("T")


def wait_for(check: Callable[[], T], what: str, seconds: float = 20) -> T:
    """Poll `check` until it gives something truthy; fail saying `what` did not happen in time."""
    give_up = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > give_up:
            pytest.fail(f"{what}: not within {seconds:g} s")
        time.sleep(0.2)


@contextmanager
def running_local_cloud(home: Path, *args: str, served: bool = False) -> Iterator[dict[str, Any]]:
    """`python -m ems_local` in `home` with `args`: yields its stack.json, then stops it by its PID and
    checks it left nothing behind (exit 0, no worker alive, stack.json gone, every port free).
    `served`: the caller sent requests, so worker processes must have existed."""
    process = local_up(home, *args)
    stack_file, log = home / ".local" / "stack.json", home / "local.log"
    try:
        wait_for(lambda: stack_file.exists() or process.poll() is not None, "stack.json", START_SECONDS)
        if process.poll() is not None:
            pytest.fail(f"the local cloud exited ({process.returncode}):\n{log.read_text()}")
        description: dict[str, Any] = json.loads(stack_file.read_text())
        assert description["pid"] == process.pid
        assert description["aws_pid"] in children_of(process.pid), "moto runs in a child process"
        yield description
    finally:
        workers = children_of(process.pid)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # by its PID, as `kill PID` would
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"the local cloud did not stop on SIGTERM:\n{log.read_text()}")
    assert code == 0, log.read_text()
    assert workers or not served, "the stack served requests, so it had worker processes"
    assert [pid for pid in workers if running(pid)] == [], "worker processes outlived the local cloud"
    assert not running(description["aws_pid"]), "the moto process outlived the local cloud"
    assert not stack_file.exists(), "stack.json describes a stack that is gone"
    keys = ("http", "aws", "ws", "aws_services", "mqtt")
    ports = [urlsplit(str(description[k])).port or 0 for k in keys if description.get(k)]
    assert all(port_free(port) for port in ports), "a port is still held after the stop"


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    home = tmp_path_factory.mktemp("local")
    # These tests own the demo site's rooms and sensors, so no simulated building. A device message
    # whose invocation fails (a cold start past Lambda's 10 s init on a loaded machine) comes back
    # after 30 s rather than the default 180 s (30: what AWS allows with the function's 29 s timeout).
    args = ("--no-building", "--param", "TelemetryQueueVisibilityTimeoutSeconds=30")
    with running_local_cloud(home, *args, served=True) as description:
        yield RunningStack(description, home)


# ---------------------------------------------------------------- test templates with one recorder

RECORDER_APP = Path(__file__).with_name("recorder_app.py")
RECORDER_TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Resources:
  HttpApi:  # the local cloud's HTTP API and WebSocket API each want theirs
    Type: AWS::Serverless::HttpApi
  SocketApi:
    Type: AWS::ApiGatewayV2::Api
    Properties:
      Name: ems-test-ws
      ProtocolType: WEBSOCKET
      RouteSelectionExpression: $request.body.action
  RecorderFunction:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: ems-test-recorder
      CodeUri: recorder
      Handler: app.handler
      Runtime: python3.12
      Timeout: 20
      Environment:
        Variables:
          RECORD_FILE: %(record)s
          RELAY_BUS: %(bus)s
      Events:
%(events)s
%(resources)s
"""


def recorder_template(home: Path, events: str, resources: str = "", bus: str = "default") -> Path:
    """A template in `home` whose one function is recorder_app.py with `events` (YAML under the
    function's Events, indented 8 spaces) and other `resources` (indented 2 spaces)."""
    (home / "recorder").mkdir()
    shutil.copy(RECORDER_APP, home / "recorder" / "app.py")
    template = home / "template.yaml"
    variables = {
        "record": home / "events.jsonl",
        "bus": bus,
        "events": events.strip("\n"),
        "resources": resources,
    }
    template.write_text(RECORDER_TEMPLATE % variables)
    return template


class RecorderStack:
    """A running test template: what its recorder function received, and SDK clients for it."""

    def __init__(self, home: Path, description: dict[str, Any]) -> None:
        self.home, self.description = home, description
        self.record = home / "events.jsonl"

    def events(self) -> list[Any]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines() if line.strip()]

    def client(self, service: str, endpoint: str) -> Any:
        """A boto3 client for `service` at the stack's `endpoint` ("aws" is moto, "aws_services" ours)."""
        return boto3.client(  # type: ignore[call-overload]
            service, endpoint_url=self.description[endpoint], region_name="us-east-1",
            aws_access_key_id="local", aws_secret_access_key="local",
        )  # fmt: skip
