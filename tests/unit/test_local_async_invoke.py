"""Lambda's asynchronous invocation in the local cloud: retries with backoff on a fake clock, and the
dead-letter record of an event whose function kept failing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ems_local.async_invoke import AsyncInvoker, RetryPolicy
from ems_local.invocation import FunctionError


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


class Function:
    """Fails its first `failures` invocations, then succeeds; remembers every event."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.events: list[Any] = []

    def __call__(self, function: str, event: Any) -> Any:
        self.events.append(event)
        if len(self.events) <= self.failures:
            raise FunctionError("meter offline", "DeviceUnavailable", ["app.py line 3"])
        return {"ok": True}


def test_the_policy_backs_off_exponentially_and_stops_after_the_last_attempt() -> None:
    policy = RetryPolicy(attempts=4, first_delay_seconds=1.5, factor=2.0)
    assert [policy.delay_after(n) for n in (1, 2, 3, 4)] == [1.5, 3.0, 6.0, None]
    assert RetryPolicy().attempts == 3  # Lambda: one attempt and two retries


def test_a_failing_event_is_retried_when_its_backoff_has_passed(tmp_path: Path) -> None:
    clock, function = Clock(), Function(failures=2)
    invoker = AsyncInvoker(function, tmp_path / "dead-letters.jsonl", RetryPolicy(3, 1.0, 2.0), clock=clock)
    invoker.submit("MeterFunction", {"n": 1}, "arn:rule")

    assert invoker.run_due() == 1  # attempt 1 fails: the next is due 1 s later
    clock.now += 0.99
    assert invoker.run_due() == 0
    clock.now += 0.01
    assert invoker.run_due() == 1  # attempt 2 fails: the next is due 2 s later
    clock.now += 1.99
    assert invoker.run_due() == 0
    clock.now += 0.01
    assert invoker.run_due() == 1  # attempt 3 succeeds
    assert function.events == [{"n": 1}] * 3
    assert invoker.pending() == 0
    assert not (tmp_path / "dead-letters.jsonl").exists()


def test_an_event_whose_retries_run_out_goes_to_the_dead_letter_log(tmp_path: Path) -> None:
    clock, function = Clock(), Function(failures=99)
    log = tmp_path / "state" / "dead-letters.jsonl"
    arns = {"MeterFunction": "arn:aws:lambda:us-east-1:123456789012:function:ems-meter"}
    invoker = AsyncInvoker(function, log, RetryPolicy(3, 1.0, 2.0), function_arns=arns, clock=clock)
    request_id = invoker.submit("MeterFunction", {"n": 7}, "arn:aws:events:us-east-1:123456789012:rule/r")
    for _ in range(3):
        invoker.run_due()
        clock.now += 10
    assert invoker.run_due() == 0
    assert len(function.events) == 3

    (line,) = log.read_text().splitlines()
    record = json.loads(line)
    assert record["requestContext"] == {
        "requestId": request_id,
        "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:ems-meter:$LATEST",
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 3,
    }
    assert record["requestPayload"] == {"n": 7}
    assert record["responsePayload"]["errorType"] == "DeviceUnavailable"
    assert record["responsePayload"]["errorMessage"] == "meter offline"
    assert record["source"] == "arn:aws:events:us-east-1:123456789012:rule/r"


def test_submit_never_runs_the_function(tmp_path: Path) -> None:
    function = Function(failures=0)
    invoker = AsyncInvoker(function, tmp_path / "dl.jsonl", clock=Clock())
    invoker.submit("F", {}, "src")
    invoker.submit("F", {}, "src")
    assert function.events == []
    assert invoker.pending() == 2
