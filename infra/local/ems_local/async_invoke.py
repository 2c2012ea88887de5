"""Lambda's asynchronous invocation, as EventBridge and Scheduler invoke functions: a queue in front
of the function, retries with exponential backoff, and a dead-letter log for what kept failing.

Lambda retries a failed asynchronous invocation twice (three attempts in all), about one minute
and then two minutes apart. Locally the waits are seconds (RetryPolicy), so a failing function
reaches the dead-letter log while the developer watches. Each line of that log
(<state-dir>/dead-letters.jsonl) has the shape of Lambda's on-failure destination record, plus
`source`: the rule or schedule that sent the event.

The caller never waits: `submit` queues and returns. Worker threads take deliveries whose time
has come; a delivery waiting for its retry sits in the queue, not in a sleeping thread.
"""

from __future__ import annotations

import heapq
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ems_local import console
from ems_local.invocation import FunctionError, InvocationError

Invoke = Callable[[str, Any], Any]  # (function logical id, event) -> result


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3  # Lambda: the first attempt and MaximumRetryAttempts (default 2) retries
    first_delay_seconds: float = 1.0
    factor: float = 2.0

    def delay_after(self, attempt: int) -> float | None:
        """Seconds to wait after failed attempt number `attempt` (1-based); None: no attempt left."""
        if attempt >= self.attempts:
            return None
        return self.first_delay_seconds * self.factor ** (attempt - 1)


@dataclass(order=True)
class Delivery:
    due: float
    sequence: int
    function: str = field(compare=False)
    event: Any = field(compare=False)
    source: str = field(compare=False)
    request_id: str = field(compare=False, default_factory=lambda: str(uuid.uuid4()))
    attempts: int = field(compare=False, default=0)


def dead_letter_record(delivery: Delivery, function_arn: str, error: InvocationError) -> dict[str, Any]:
    """Lambda's on-failure destination record for an event whose retries ran out."""
    response: dict[str, Any] = {"errorMessage": str(error), "errorType": type(error).__name__}
    if isinstance(error, FunctionError):
        response = {
            "errorMessage": str(error),
            "errorType": error.error_type,
            "stackTrace": error.stack_trace,
        }
    return {
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestContext": {
            "requestId": delivery.request_id, "functionArn": f"{function_arn}:$LATEST",
            "condition": "RetriesExhausted", "approximateInvokeCount": delivery.attempts,
        },
        "requestPayload": delivery.event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": response,
        "source": delivery.source,
    }  # fmt: skip


class AsyncInvoker:
    def __init__(
        self,
        invoke: Invoke,
        dead_letter_file: Path,
        policy: RetryPolicy | None = None,
        workers: int = 8,
        function_arns: dict[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._invoke = invoke
        self.dead_letter_file = dead_letter_file
        self.policy = policy or RetryPolicy()
        self._function_arns = function_arns or {}
        self._clock = clock
        self._queue: list[Delivery] = []
        self._sequence = itertools.count()
        self._ready = threading.Condition()
        self._write_lock = threading.Lock()
        self._running = 0  # deliveries being attempted right now
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"async-invoke-{i}", daemon=True) for i in range(workers)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, function: str, event: Any, source: str) -> str:
        """Queue one asynchronous invocation; its request id. Never waits for the function."""
        delivery = Delivery(self._clock(), next(self._sequence), function, event, source)
        with self._ready:
            heapq.heappush(self._queue, delivery)
            self._ready.notify()
        return delivery.request_id

    def pending(self) -> int:
        """Deliveries queued (waiting for a worker or for their retry) or being attempted."""
        with self._ready:
            return len(self._queue) + self._running

    def run_due(self) -> int:
        """Attempt, in this thread, every delivery whose time has come; how many were attempted.
        What the worker threads do, callable directly where time is faked."""
        attempted = 0
        while (delivery := self._take_due()) is not None:
            self._attempt(delivery)
            attempted += 1
        return attempted

    def _take_due(self) -> Delivery | None:
        with self._ready:
            if self._queue and self._queue[0].due <= self._clock():
                self._running += 1
                return heapq.heappop(self._queue)
            return None

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._stopping:
                    if self._queue:
                        wait = self._queue[0].due - self._clock()
                        if wait <= 0:
                            break
                        self._ready.wait(wait)
                    else:
                        self._ready.wait()
                if self._stopping:
                    return
                delivery = heapq.heappop(self._queue)
                self._running += 1
            self._attempt(delivery)

    def _attempt(self, delivery: Delivery) -> None:
        delivery.attempts += 1
        try:
            self._invoke(delivery.function, delivery.event)
        except InvocationError as exc:
            self._failed(delivery, exc)
        except Exception as exc:  # a bug of the emulator: report it like a failed invocation
            self._failed(delivery, InvocationError(repr(exc)))
        finally:
            with self._ready:
                self._running -= 1

    def _failed(self, delivery: Delivery, error: InvocationError) -> None:
        attempt, total = delivery.attempts, self.policy.attempts
        what = f"{delivery.function} (from {delivery.source})"
        delay = self.policy.delay_after(attempt)
        if delay is not None:
            console.line("async", f"{what}: attempt {attempt}/{total} failed ({error}); retry in {delay:g} s")
            delivery.due = self._clock() + delay
            with self._ready:
                heapq.heappush(self._queue, delivery)
                self._ready.notify()
            return
        arn = self._function_arns.get(delivery.function, delivery.function)
        record = dead_letter_record(delivery, arn, error)
        with self._write_lock:
            self.dead_letter_file.parent.mkdir(parents=True, exist_ok=True)
            with self.dead_letter_file.open("a") as log:
                log.write(json.dumps(record, default=str) + "\n")
        console.line(
            "async",
            f"{what}: attempt {attempt}/{total} failed ({error}); dead letter in {self.dead_letter_file}",
        )

    def stop(self) -> None:
        with self._ready:
            self._stopping = True
            dropped = len(self._queue)
            self._queue.clear()
            self._ready.notify_all()
        give_up = time.monotonic() + 5  # an invocation in flight ends when the functions stop
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=max(0.0, give_up - time.monotonic()))
        if dropped:
            console.line("async", f"stopped with {dropped} invocation(s) still queued: dropped")
