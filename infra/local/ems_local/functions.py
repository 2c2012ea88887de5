"""The template's functions run as Lambda runs them: warm worker processes, per-function limits.

Each AWS::Serverless::Function gets a pool of worker processes (ems_local.worker), started on first
use (a logged cold start) and reused while warm. A pool never runs more workers than the function's
concurrency limit; a request beyond it waits for a free worker, then is throttled. A worker that
runs past the function's Timeout is stopped by its PID and replaced on the next request.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ems_local import console
from ems_local.invocation import FunctionCrashed, FunctionError, FunctionTimeout, InvocationError, Throttled
from ems_local.template import Stack

# Lambda gives the init phase (imports, module-level code) 10 s of its own, apart from Timeout.
INIT_SECONDS = 10.0
# Variables a worker inherits from this process: what a Python needs to start, nothing of AWS.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "SYSTEMROOT")


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    name: str
    handler: str
    code_dir: Path
    layer_dirs: tuple[Path, ...]
    environment: dict[str, str]
    timeout_seconds: float
    memory_mb: int
    runtime: str
    concurrency: int

    @classmethod
    def all_from(cls, stack: Stack, concurrency: int) -> dict[str, FunctionSpec]:
        layers = {
            name: stack.base_dir / str(stack.resolve(resource["Properties"]["ContentUri"]))
            for name, resource in stack.of_type("AWS::Serverless::LayerVersion").items()
        }
        specs = {}
        for logical_id, props in stack.functions().items():
            layer_dirs = tuple(_layer_path(layers[ref]) for ref in props.get("Layers", []) if ref in layers)
            specs[logical_id] = cls(
                logical_id=logical_id, name=props["FunctionName"], handler=props.get("Handler", "app.handler"),
                code_dir=(stack.base_dir / props["CodeUri"]).resolve(), layer_dirs=layer_dirs,
                environment=dict(props["Environment"]["Variables"]),
                timeout_seconds=float(props.get("Timeout", 3)), memory_mb=int(props.get("MemorySize", 128)),
                runtime=str(props.get("Runtime", "python3.12")),
                concurrency=int(props.get("ReservedConcurrentExecutions") or concurrency),
            )  # fmt: skip
        return specs

    def process_environment(self, aws_env: dict[str, str]) -> dict[str, str]:
        """What Lambda sets, the function's own variables, and where the (local) AWS endpoints are."""
        inherited = {k: os.environ[k] for k in _INHERITED if k in os.environ}
        lambda_env = {
            "AWS_LAMBDA_FUNCTION_NAME": self.name, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"local/[$LATEST]{uuid.uuid4().hex}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand", "AWS_EXECUTION_ENV": f"AWS_Lambda_{self.runtime}",
            "LAMBDA_TASK_ROOT": str(self.code_dir), "_HANDLER": self.handler, "TZ": ":UTC",
            "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
        }  # fmt: skip
        return {**inherited, **lambda_env, **self.environment, **aws_env}


def _layer_path(content: Path) -> Path:
    # A Python layer's code sits in python/ when it is packaged that way, else at its root.
    return content / "python" if (content / "python").is_dir() else content


class Worker:
    """One function instance: a process, its invocation channel, and the thread that relays its logs."""

    def __init__(self, spec: FunctionSpec, aws_env: dict[str, str]) -> None:
        self.spec = spec
        ours, theirs = socket.socketpair()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ems_local.worker", str(theirs.fileno()), *map(str, spec.layer_dirs)],
                env=spec.process_environment(aws_env), cwd=spec.code_dir, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=(theirs.fileno(),),
                # Its own process group: Ctrl-C in the terminal reaches only the parent, which stops
                # every worker by its PID in order.
                process_group=0,
            )  # fmt: skip
        finally:
            theirs.close()
        self.channel = ours
        self._replies = ours.makefile("rb")
        self._logs = threading.Thread(target=self._relay_logs, name=f"logs-{spec.name}", daemon=True)
        self._logs.start()
        self.alive = True

    @property
    def pid(self) -> int:
        return self.process.pid

    def _relay_logs(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            console.function_line(self.spec.logical_id, self.spec.name, raw.decode(errors="replace"))

    def _read(self, timeout_seconds: float) -> dict[str, Any]:
        self.channel.settimeout(max(timeout_seconds, 0.001))
        line = self._replies.readline()
        if not line:
            self.stop()
            raise FunctionCrashed(f"{self.spec.name}: worker {self.pid} exited ({self.process.wait()})")
        return dict(json.loads(line))

    def wait_ready(self) -> float:
        """Wait for the init phase; the milliseconds it took."""
        try:
            ready = self._read(INIT_SECONDS)
        except TimeoutError:
            self.stop()
            raise FunctionTimeout(f"{self.spec.name}: init ran past {INIT_SECONDS:.0f} s") from None
        if not ready.get("ready"):
            self.stop()
            error = ready.get("error", {})
            raise FunctionError(
                error.get("errorMessage", "init failed"), error.get("errorType", "Runtime.Init")
            )
        return float(ready.get("init_ms", 0.0))

    def invoke(self, event: dict[str, Any], request_id: str) -> Any:
        deadline = time.time() + self.spec.timeout_seconds
        message = {"request_id": request_id, "deadline_ms": int(deadline * 1000), "event": event}
        try:
            self.channel.settimeout(self.spec.timeout_seconds)
            self.channel.sendall(json.dumps(message).encode() + b"\n")
            reply = self._read(deadline - time.time())
        except TimeoutError:
            self.stop()
            raise FunctionTimeout(
                f"{self.spec.name}: task timed out after {self.spec.timeout_seconds:.2f} seconds"
            ) from None
        except OSError as exc:
            self.stop()
            raise FunctionCrashed(f"{self.spec.name}: worker {self.pid}: {exc}") from exc
        if "error" in reply:
            error = reply["error"]
            raise FunctionError(
                error.get("errorMessage", ""), error.get("errorType", ""), error.get("stackTrace")
            )
        return reply["result"]

    def stop(self) -> None:
        """Stop this worker's process, by its PID (Popen never signals a PID it has already reaped)."""
        self.alive = False
        self.channel.close()  # an idle worker exits on its own when its channel closes
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._logs.join(timeout=2)


class FunctionPool:
    """The warm workers of one function, at most `spec.concurrency` of them."""

    def __init__(
        self, spec: FunctionSpec, aws_env: dict[str, str], queue_seconds: float | None = None
    ) -> None:
        self.spec = spec
        self.aws_env = aws_env
        self.queue_seconds = spec.timeout_seconds if queue_seconds is None else queue_seconds
        self._ready = threading.Condition()
        self._idle: list[Worker] = []
        self._workers: set[Worker] = set()
        self._starting = 0
        self._stopping = False

    def pids(self) -> list[int]:
        with self._ready:
            return [w.pid for w in self._workers]

    def invoke(self, event: dict[str, Any]) -> Any:
        worker = self._acquire()
        request_id = str(uuid.uuid4())
        started = time.perf_counter()
        error: str | None = None  # its first line, for the terminal
        try:
            return worker.invoke(event, request_id)
        except (FunctionTimeout, FunctionCrashed) as exc:
            # the worker is gone: say so where its logs were
            console.function_line(self.spec.logical_id, self.spec.name, str(exc))
            error = str(exc)
            raise
        except FunctionError as exc:
            # An authorizer's "Unauthorized" is how it answers 401: an outcome, not an error.
            error = None if str(exc) == "Unauthorized" else f"{exc.error_type}: {exc}"
            raise
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            console.function_line(
                self.spec.logical_id,
                self.spec.name,
                f"REPORT RequestId: {request_id} Duration: {elapsed_ms:.1f} ms",
            )
            console.invocation(self.spec.logical_id, elapsed_ms, error)
            self._release(worker)

    def _acquire(self) -> Worker:
        give_up = time.monotonic() + self.queue_seconds
        with self._ready:
            while True:
                if self._stopping:
                    raise FunctionCrashed(f"{self.spec.name}: the local cloud is stopping")
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive and worker.process.poll() is None:
                        return worker
                    self._workers.discard(worker)
                if len(self._workers) + self._starting < self.spec.concurrency:
                    self._starting += 1
                    break
                remaining = give_up - time.monotonic()
                if remaining <= 0:
                    raise Throttled(f"{self.spec.name}: all {self.spec.concurrency} workers busy")
                self._ready.wait(remaining)
        return self._start_worker()

    def _start_worker(self) -> Worker:
        worker: Worker | None = None
        try:
            worker = Worker(self.spec, self.aws_env)
            init_ms = worker.wait_ready()
        finally:
            with self._ready:
                self._starting -= 1
                if worker is not None and worker.alive and not self._stopping:
                    self._workers.add(worker)
                self._ready.notify()
        assert worker is not None
        if self._stopping:
            worker.stop()
            raise FunctionCrashed(f"{self.spec.name}: the local cloud is stopping")
        console.function_line(
            self.spec.logical_id,
            self.spec.name,
            f"cold start: init {init_ms:.1f} ms, worker pid {worker.pid}",
        )
        return worker

    def _release(self, worker: Worker) -> None:
        with self._ready:
            if worker.alive and not self._stopping:
                self._idle.append(worker)
            else:
                self._workers.discard(worker)
            self._ready.notify()

    def stop(self) -> None:
        with self._ready:
            self._stopping = True
            workers = list(self._workers)
            self._workers.clear()
            self._idle.clear()
            self._ready.notify_all()
        for worker in workers:
            worker.stop()


class Functions:
    """Every function of the template, invoked by logical id; the one door to them for every service."""

    def __init__(
        self, stack: Stack, aws_env: dict[str, str], concurrency: int = 4, queue_seconds: float | None = None
    ) -> None:
        self.specs = FunctionSpec.all_from(stack, concurrency)
        self.pools = {name: FunctionPool(spec, aws_env, queue_seconds) for name, spec in self.specs.items()}

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        pool = self.pools.get(logical_id)
        if pool is None:
            raise InvocationError(f"no function {logical_id} in the template")
        return pool.invoke(event)

    def shared_environment(self) -> dict[str, str]:
        """The variables every function has with the same value (SAM Globals, in practice)."""
        envs = [spec.environment for spec in self.specs.values()]
        if not envs:
            return {}
        return {k: v for k, v in envs[0].items() if all(e.get(k) == v for e in envs[1:])}

    def pids(self) -> list[int]:
        return [pid for pool in self.pools.values() for pid in pool.pids()]

    def stop(self) -> None:
        for pool in self.pools.values():
            pool.stop()
