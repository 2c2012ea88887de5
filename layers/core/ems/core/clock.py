"""The one place that reads the time, so tests can set it."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


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
