"""The schedules' clock: wall time, or wall time running `rate` times faster (`ems local up --clock 60`).

One Clock per local cloud; the scheduler reads it and nothing else does (functions, tokens and
TTLs keep real time). It starts at the real time of its creation and runs from there:
schedule time = origin + (real now - real origin) * rate. stack.json carries `describe()`, so a
test or a demo can tell what time the schedules see (`Clock.from_description`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any


class Clock:
    def __init__(
        self, rate: float = 1.0, origin: datetime | None = None, real: Callable[[], float] = time.time
    ) -> None:
        if not rate > 0:
            raise ValueError(f"the clock's rate must be positive, got {rate!r}")
        self.rate = float(rate)
        self._real = real
        self.real_origin = real()
        self.origin = origin or datetime.fromtimestamp(self.real_origin, UTC)

    def now(self) -> datetime:
        """The schedules' time now (UTC)."""
        return self.at_real(self._real())

    def at_real(self, epoch_seconds: float) -> datetime:
        """The schedules' time when the real clock read `epoch_seconds`."""
        return self.origin + timedelta(seconds=(epoch_seconds - self.real_origin) * self.rate)

    def real_seconds_until(self, moment: datetime) -> float:
        """Real seconds from now until the schedules' clock reads `moment` (negative: it has passed)."""
        return (moment - self.now()).total_seconds() / self.rate

    def describe(self) -> dict[str, Any]:
        return {"rate": self.rate, "real_origin": self.real_origin, "origin": self.origin.isoformat()}

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> Clock:
        """The same clock, as another process reads it from stack.json."""
        clock = cls(float(description["rate"]), datetime.fromisoformat(description["origin"]))
        clock.real_origin = float(description["real_origin"])
        return clock
