"""Function workers as Lambda runs them: environment, errors, timeouts, concurrency limits."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ems_local.functions import FunctionPool, FunctionSpec
from ems_local.invocation import FunctionError, FunctionTimeout, Throttled
from ems_local.template import ROOT
from tests.e2e.conftest import running

pytestmark = pytest.mark.e2e

APP = """
import os, pathlib, time
import ems

def handler(event, context):
    action = event["action"]
    if action == "describe":
        return {"name": context.function_name, "env_name": os.environ["AWS_LAMBDA_FUNCTION_NAME"],
                "greeting": os.environ["GREETING"], "ems": ems.__file__, "cwd": os.getcwd(),
                "remaining_ms": context.get_remaining_time_in_millis(), "pid": os.getpid()}
    if action == "fail":
        raise ValueError("no such sensor")
    if action == "sleep":
        time.sleep(600)
    if action == "hold":  # hold the worker until the test says so
        pathlib.Path(event["started"]).touch()
        while not pathlib.Path(event["release"]).exists():
            time.sleep(0.01)
        return {"pid": os.getpid()}
"""


def spec(code_dir: Path, timeout_seconds: float = 30, concurrency: int = 2) -> FunctionSpec:
    return FunctionSpec(
        logical_id="ProbeFunction", name="ems-test-probe", handler="app.handler", code_dir=code_dir,
        layer_dirs=(ROOT / "layers" / "core",), environment={"GREETING": "hello"},
        timeout_seconds=timeout_seconds, memory_mb=256, runtime="python3.12", concurrency=concurrency,
    )  # fmt: skip


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    return tmp_path


@pytest.fixture
def pool_for(code_dir: Path) -> Iterator:
    pools: list[FunctionPool] = []

    def make(**kwargs) -> FunctionPool:  # type: ignore[no-untyped-def]
        queue_seconds = kwargs.pop("queue_seconds", None)
        pools.append(FunctionPool(spec(code_dir, **kwargs), {"AWS_REGION": "us-east-1"}, queue_seconds))
        return pools[-1]

    yield make
    for pool in pools:
        pids = pool.pids()
        pool.stop()
        assert [pid for pid in pids if running(pid)] == []


def test_a_worker_runs_the_handler_as_lambda_would(pool_for, code_dir: Path) -> None:
    pool = pool_for()
    first = pool.invoke({"action": "describe"})
    assert first["name"] == first["env_name"] == "ems-test-probe"
    assert first["greeting"] == "hello"
    assert Path(first["ems"]).is_relative_to(ROOT / "layers" / "core")  # the layer's code is importable
    assert Path(first["cwd"]) == code_dir  # the task root
    assert 0 < first["remaining_ms"] <= 30_000
    assert pool.invoke({"action": "describe"})["pid"] == first["pid"]  # warm: the same process


def test_a_handler_error_is_reported_and_the_worker_stays_warm(pool_for) -> None:
    pool = pool_for()
    pid = pool.invoke({"action": "describe"})["pid"]
    with pytest.raises(FunctionError, match="no such sensor") as raised:
        pool.invoke({"action": "fail"})
    assert raised.value.error_type == "ValueError"
    assert pool.invoke({"action": "describe"})["pid"] == pid


def test_a_timeout_stops_the_worker_and_the_next_call_gets_a_new_one(pool_for) -> None:
    pool = pool_for(timeout_seconds=1)
    pid = pool.invoke({"action": "describe"})["pid"]
    with pytest.raises(FunctionTimeout) as raised:
        pool.invoke({"action": "sleep"})
    assert raised.value.status == 504
    assert not running(pid)
    assert pool.invoke({"action": "describe"})["pid"] != pid


def test_requests_beyond_the_concurrency_limit_are_throttled(pool_for, tmp_path: Path) -> None:
    pool = pool_for(concurrency=1, queue_seconds=0)
    started, release = tmp_path / "started", tmp_path / "release"
    results: list[dict] = []
    holder = threading.Thread(
        target=lambda: results.append(
            pool.invoke({"action": "hold", "started": str(started), "release": str(release)})
        )
    )
    holder.start()
    try:
        while not started.exists() and holder.is_alive():
            holder.join(0.01)
        with pytest.raises(Throttled) as raised:
            pool.invoke({"action": "describe"})
        assert raised.value.status == 429
    finally:
        release.touch()
        holder.join()
    assert pool.pids() == [results[0]["pid"]]  # never more workers than the limit
    assert pool.invoke({"action": "describe"})["pid"] == results[0]["pid"]
