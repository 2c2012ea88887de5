"""The local cloud's one clock: wall time, or a start instant running `speed` times faster
(`ems local up --clock 2030-01-01T00:00:00Z --speed 60`).

The formula and its variable are ems.core.clock's (`ScaledClock`, EMS_CLOCK); this is the local
cloud's handle on it. The cloud runs its own process on it (the admin token it mints, the demo
building it runs), hands `environment()` to every function worker, and the Scheduler fires by
`now()`; stack.json carries `describe()`, so a test or `ems simulate` reads the very same clock
(`Clock.from_description`, or its "env"). Every process thus agrees on the time, whenever it started.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ems.core.clock import ENV, ScaledClock


class Clock:
    def __init__(
        self, rate: float = 1.0, origin: datetime | None = None, real: Callable[[], float] = time.time
    ) -> None:
        if not rate > 0:
            raise ValueError(f"the clock's rate must be positive, got {rate!r}")
        self._real = real
        anchor = real()
        self.is_real = origin is None and rate == 1
        self.scaled = ScaledClock(origin or datetime.fromtimestamp(anchor, UTC), anchor, rate)

    @property
    def rate(self) -> float:
        return self.scaled.speed

    @property
    def origin(self) -> datetime:
        return self.scaled.origin

    @property
    def real_origin(self) -> float:
        return self.scaled.real_anchor

    def now(self) -> datetime:
        """The local cloud's time now (UTC)."""
        return self.at_real(self._real())

    def at_real(self, epoch_seconds: float) -> datetime:
        """The local cloud's time when the real clock read `epoch_seconds`."""
        return self.scaled.at_real(epoch_seconds)

    def real_seconds_until(self, moment: datetime) -> float:
        """Real seconds from now until the clock reads `moment` (negative: it has passed)."""
        return (moment - self.now()).total_seconds() / self.rate

    def environment(self) -> dict[str, str]:
        """What a process needs to run on this clock: EMS_CLOCK, or nothing for the real clock."""
        return {} if self.is_real else {ENV: self.scaled.to_env()}

    def describe(self) -> dict[str, Any]:
        return {
            "rate": self.rate, "real_origin": self.real_origin, "origin": self.origin.isoformat(),
            "env": self.environment().get(ENV),  # None: the real clock
        }  # fmt: skip

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> Clock:
        """The same clock, as another process reads it from stack.json."""
        clock = cls(float(description["rate"]), datetime.fromisoformat(description["origin"]))
        clock.scaled = ScaledClock(clock.origin, float(description["real_origin"]), clock.rate)
        return clock
