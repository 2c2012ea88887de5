"""`ems local up` for a benchmark: `python -m ems_local` in a scratch folder on ports the system picks
(127.0.0.1), quiet workers, stopped by its PID."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

START_SECONDS = 120
PORT_FLAGS = ("--http-port", "--aws-port", "--ws-port", "--aws-services-port", "--mqtt-port")


def start(home: Path, args: list[str]) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """The process and its stack.json, once written; its output goes to home/local.log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env["PYTHONUNBUFFERED"] = "1"
    env["POWERTOOLS_LOG_LEVEL"] = "WARNING"  # the workers' INFO lines would be most of the work
    ports = [a for flag in PORT_FLAGS for a in (flag, "0")]
    log = (home / "local.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "ems_local", *ports, "--state-dir", ".local", *args],
        cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    stack_file = home / ".local" / "stack.json"
    give_up = time.monotonic() + START_SECONDS
    while not stack_file.exists():
        if process.poll() is not None or time.monotonic() > give_up:
            stop(process)
            raise RuntimeError(f"the local cloud did not start:\n{(home / 'local.log').read_text()}")
        time.sleep(0.1)
    return process, json.loads(stack_file.read_text())


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # by its PID
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running(home: Path, args: list[str]) -> Iterator[dict[str, Any]]:
    """The stack's description while it runs."""
    process, stack = start(home, args)
    try:
        yield stack
    finally:
        stop(process)
