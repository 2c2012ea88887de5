"""The one place that reads the time, so tests can set it, and the local cloud can run it faster.

In AWS `utc_now()` is the real clock. The local cloud runs one clock for all its processes (its
functions' workers, the simulator, the Scheduler; `ems local up --clock START --speed N`) and hands
it to each through one environment variable:

    EMS_CLOCK = "<origin, ISO 8601>;<real anchor, epoch seconds>;<speed>"
    e.g. "2030-01-01T00:00:00+00:00;1764604800.25;60"

    time = origin + (real epoch seconds now - real anchor) * speed

so every process that reads the same variable agrees on the time, whenever it started. Unset (as in
AWS), `utc_now()` is `datetime.now(UTC)`: the variable is read once, at import; `run_on` changes it
for the process that calls it (and for the processes it starts afterwards with its environment).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]

ENV = "EMS_CLOCK"


class ScaledClock:
    """A clock that read `origin` when the real clock read `real_anchor`, and runs `speed` times faster.
    (A plain class: dataclasses would pull inspect and ast into every function's cold start.)"""

    __slots__ = ("origin", "real_anchor", "speed")

    def __init__(self, origin: datetime, real_anchor: float, speed: float = 1.0) -> None:
        if not speed > 0:
            raise ValueError(f"the clock's speed must be positive, got {speed!r}")
        if origin.tzinfo is None:
            raise ValueError("the clock's origin must be timezone-aware")
        self.origin, self.real_anchor, self.speed = origin, float(real_anchor), float(speed)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ScaledClock) and self.to_env() == other.to_env()

    def __hash__(self) -> int:
        return hash(self.to_env())

    def __repr__(self) -> str:
        return f"ScaledClock({self.to_env()!r})"

    def at_real(self, epoch_seconds: float) -> datetime:
        """The time this clock read when the real clock read `epoch_seconds` (the formula above)."""
        return self.origin + timedelta(seconds=(epoch_seconds - self.real_anchor) * self.speed)

    def now(self) -> datetime:
        return self.at_real(time.time())

    def to_env(self) -> str:
        return f"{self.origin.astimezone(UTC).isoformat()};{self.real_anchor!r};{self.speed!r}"

    @classmethod
    def from_env(cls, value: str) -> ScaledClock:
        """Parse EMS_CLOCK; ValueError naming the variable and its form when it is not one."""
        try:
            origin, anchor, speed = value.split(";")
            moment = datetime.fromisoformat(origin.strip().replace("Z", "+00:00"))
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
            return cls(moment, float(anchor), float(speed))
        except ValueError as exc:
            raise ValueError(
                f"{ENV}={value!r} is not '<origin ISO 8601>;<real anchor epoch seconds>;<speed>': {exc}"
            ) from exc


def _from_environment() -> ScaledClock | None:
    value = os.environ.get(ENV)
    return ScaledClock.from_env(value) if value else None


_scaled: ScaledClock | None = _from_environment()


def utc_now() -> datetime:
    if _scaled is None:
        return datetime.now(UTC)
    return _scaled.now()


def scaled_clock() -> ScaledClock | None:
    """The clock this process runs on; None: the real one."""
    return _scaled


def run_on(clock: ScaledClock | None) -> None:
    """Run this process on `clock` (None: the real clock), and set EMS_CLOCK in its environment so
    the processes it starts inherit it."""
    global _scaled
    _scaled = clock
    if clock is None:
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = clock.to_env()


def to_iso(moment: datetime) -> str:
    """ISO 8601 UTC with a Z, to the millisecond, as API.md writes times."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Epoch seconds stay below this until the year 5138, and epoch milliseconds are above it since 1973:
# the magnitude tells them apart (IoT SQL's timestamp(), most firmware and JavaScript send ms).
EPOCH_MS_FROM = 1e11
TIME_FORMS = "an ISO 8601 time, epoch seconds or epoch milliseconds"


def epoch_ms_of(value: int | float) -> int:
    """Epoch seconds or milliseconds, by magnitude, as whole milliseconds (an int in ms is exact)."""
    if value > EPOCH_MS_FROM:
        return math.floor(value)
    return math.floor(value * 1000)


def parse_time(value: str | int | float, field: str) -> datetime:
    """Accept ISO 8601 (naive means UTC), epoch seconds or epoch milliseconds, as API.md promises."""
    from ems.core.errors import Invalid

    if isinstance(value, bool):
        raise Invalid(f"must be {TIME_FORMS}", field)
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(epoch_ms_of(value) / 1000, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise Invalid("epoch time out of range", field) from exc
    text = value.strip()
    if text.replace(".", "", 1).isdigit():
        return parse_time(float(text), field)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Invalid(f"not an ISO 8601 time: {value!r}", field) from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso_ms(ts_ms: int) -> str:
    """Epoch milliseconds as API.md writes times."""
    return to_iso(datetime.fromtimestamp(ts_ms / 1000, UTC))
