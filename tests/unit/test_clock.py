"""The one clock: its formula, EMS_CLOCK as every process reads it, and utc_now() following it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ems.core import clock
from ems.core.clock import ENV, ScaledClock, utc_now
from ems_local.clock import Clock

ORIGIN = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def restored() -> Iterator[None]:
    """Whatever a test makes this process run on, it runs on the real clock afterwards."""
    yield
    clock.run_on(None)


def test_the_clock_reads_origin_plus_real_seconds_times_speed() -> None:
    fast = ScaledClock(ORIGIN, real_anchor=1000.0, speed=60)
    assert fast.at_real(1000.0) == ORIGIN
    assert fast.at_real(1002.5) == ORIGIN + timedelta(seconds=150)  # 2.5 real s at 60x: 2.5 minutes
    assert fast.at_real(999.0) == ORIGIN - timedelta(minutes=1)


def test_ems_clock_is_origin_anchor_and_speed_and_reads_back_as_the_same_clock() -> None:
    fast = ScaledClock(ORIGIN, real_anchor=1764604800.25, speed=60)
    assert fast.to_env() == "2030-01-01T00:00:00+00:00;1764604800.25;60.0"
    assert ScaledClock.from_env(fast.to_env()) == fast
    assert ScaledClock.from_env("2030-01-01T00:00:00Z;1000;2").at_real(1001) == ORIGIN + timedelta(seconds=2)
    # A naive origin is UTC, as everywhere in the API.
    assert ScaledClock.from_env("2030-01-01T00:00:00;1000;1").origin == ORIGIN


@pytest.mark.parametrize(
    "value",
    ["2030-01-01T00:00:00Z;1000", "yesterday;1000;60", "2030-01-01T00:00:00Z;soon;60", "2030-01-01;1;0"],
)
def test_a_malformed_ems_clock_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match=ENV):
        ScaledClock.from_env(value)


def test_utc_now_runs_on_the_clock_it_is_given_and_hands_it_to_child_processes(restored: None) -> None:
    clock.run_on(ScaledClock(ORIGIN, time.time(), speed=1))
    assert ORIGIN <= utc_now() < ORIGIN + timedelta(minutes=5)
    assert ScaledClock.from_env(os.environ[ENV]) == clock.scaled_clock()
    clock.run_on(None)
    assert ENV not in os.environ and clock.scaled_clock() is None
    assert utc_now().year == datetime.now(UTC).year


def test_a_process_started_with_ems_clock_reads_it_from_its_first_call() -> None:
    anchor = time.time() - 10  # the clock was started 10 real seconds ago, at 60x: it reads 00:10:00
    env = {**os.environ, ENV: ScaledClock(ORIGIN, anchor, 60).to_env()}
    out = subprocess.run(
        [sys.executable, "-c", "from ems.core.clock import utc_now; print(utc_now().isoformat())"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    seen = datetime.fromisoformat(out.strip())
    # 10 real seconds are 10 simulated minutes; the child's start-up adds a few real seconds at most.
    assert ORIGIN + timedelta(minutes=10) <= seen < ORIGIN + timedelta(minutes=15)


def test_the_local_clouds_clock_is_that_same_clock(restored: None) -> None:
    real = iter([500.0, 503.0])
    local = Clock(60, ORIGIN, real=lambda: next(real))
    shared = ScaledClock.from_env(local.environment()[ENV])
    assert shared == ScaledClock(ORIGIN, 500.0, 60)
    assert local.now() == shared.at_real(503.0) == ORIGIN + timedelta(minutes=3)
    assert Clock.from_description(local.describe()).scaled == shared


def test_the_real_clock_sets_no_variable() -> None:
    assert Clock().environment() == {}
    assert Clock(1.0, ORIGIN).environment() != {}  # a start instant is not the real clock


def test_ems_local_up_reads_a_start_instant_or_as_before_a_bare_speed() -> None:
    from ems_local.cli import _parser

    args = _parser().parse_args(["--clock", "2030-01-01T01:00:00+01:00", "--speed", "60"])
    assert (args.clock, args.speed) == (ORIGIN, 60.0)
    assert _parser().parse_args(["--clock", "2030-01-01T00:00:00"]).clock == ORIGIN  # naive: UTC
    assert _parser().parse_args(["--clock", "60"]).clock == 60.0  # `--clock 60`: the speed, as before
    for bad in (["--clock", "soon"], ["--speed", "0"], ["--speed", "-5"], ["--speed", "inf"]):
        with pytest.raises(SystemExit):
            _parser().parse_args(bad)


def test_ems_token_create_mints_on_the_running_local_clouds_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restored: None
) -> None:
    import ems_cli as cli

    stack_clock = ScaledClock(ORIGIN, time.time(), 60)
    (tmp_path / ".local").mkdir()
    (tmp_path / ".local" / "stack.json").write_text(
        json.dumps({"aws": "http://127.0.0.1:1", "env": {}, "clock": {"env": stack_clock.to_env()}})
    )
    monkeypatch.chdir(tmp_path)
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(name, "as it was")  # restored after the test; setdefault leaves them
    monkeypatch.delenv(ENV, raising=False)
    assert cli._configure_from_local_stack()
    assert clock.scaled_clock() == stack_clock
    assert ORIGIN <= utc_now() < ORIGIN + timedelta(hours=1)
