"""Schedules' expressions (pure): what a schedule of the API becomes for EventBridge Scheduler.

The Scheduler takes `cron(minutes hours day-of-month month day-of-week year)`, `rate(value unit)` or
`at(yyyy-mm-ddThh:mm:ss)` with a ScheduleExpressionTimezone, and evaluates cron and at in that zone
(so a 07:00 Europe/Berlin cron fires at 06:00 UTC in winter and 05:00 UTC in summer). We check the
form here so a bad one is a 422 naming the field, not a Scheduler ValidationException.
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ems.core.errors import Invalid

_CRON_FIELD = re.compile(r"^[0-9A-Za-z,\-*/?#]+$")
_RATE = re.compile(r"^(?P<value>[1-9][0-9]{0,5}) (?P<unit>minute|minutes|hour|hours|day|days)$")
_AT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")


def check_timezone(timezone: str) -> str:
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise Invalid(f"{timezone!r} is not an IANA time zone (like Europe/Berlin)", "timezone") from exc
    return timezone


def expression(cron: str | None, rate: str | None, at: str | None) -> str:
    """The ScheduleExpression of exactly one of `cron`, `rate` and `at`; Invalid naming the field."""
    given = [name for name, value in (("cron", cron), ("rate", rate), ("at", at)) if value is not None]
    if len(given) != 1:
        raise Invalid("give exactly one of cron, rate or at", "cron")
    if cron is not None:
        fields = cron.split()
        if len(fields) != 6 or not all(_CRON_FIELD.match(f) for f in fields):
            raise Invalid(
                "must be six fields: minutes hours day-of-month month day-of-week year (like 0 7 ? * MON-FRI *)",
                "cron",
            )
        if (fields[2] == "?") == (fields[4] == "?"):
            raise Invalid("exactly one of day-of-month and day-of-week must be ?", "cron")
        return f"cron({' '.join(fields)})"
    if rate is not None:
        found = _RATE.match(rate.strip())
        if found is None or (found["value"] == "1") != (not found["unit"].endswith("s")):
            raise Invalid('must be "<n> minutes|hours|days" ("1 minute", "1 hour", "1 day" for one)', "rate")
        return f"rate({rate.strip()})"
    assert at is not None
    if not _AT.match(at):
        raise Invalid("must be a local wall time yyyy-mm-ddThh:mm:ss (no offset: the timezone says it)", "at")
    try:
        datetime.fromisoformat(at)
    except ValueError as exc:
        raise Invalid("is not a date and time that exists", "at") from exc
    return f"at({at})"
