"""EventBridge and EventBridge Scheduler schedule expressions: when a rate, cron or at schedule fires next.

Pure: `parse` reads an expression, `Schedule.next_after(moment)` answers from the moment the
caller passes (UTC-aware in, UTC-aware out), so the local cloud's scheduler and the tests share
one clock-free engine. Semantics follow the EventBridge Scheduler user guide ("Schedule types"):

- rate(value unit): value a positive integer; unit minute|hour|day when value is 1, minutes|hours|
  days otherwise, as AWS enforces. A day is 24 hours on the clock, DST or not. With a StartDate
  the schedule fires at StartDate + k * rate; without one AWS "starts invoking immediately", so
  the caller fires at creation and then asks next_after(previous fire) = previous + rate.
- cron(minutes hours day-of-month month day-of-week year), six fields, evaluated in the schedule's
  time zone: `, - * /` everywhere (a range may wrap, FRI-MON), names JAN-DEC and SUN-SAT,
  day-of-week 1=SUN..7=SAT, exactly one of day-of-month and day-of-week is `?`; day-of-month
  `L` (last day), `LW` (last weekday), `15W` (weekday nearest the 15th, never leaving the month);
  day-of-week `L` (= 7, Saturday), `6L` (last Friday), `6#3` (third Friday); years 1970-2199.
  DST as the guide says: a fire time that does not exist (spring forward) is skipped; a fire
  time that exists twice (fall back) fires once, at its first occurrence.
- at(yyyy-mm-ddThh:mm:ss): once, at that wall time in the time zone (a wall time a DST change
  skips is read with the offset before the change); StartDate and EndDate are ignored for
  one-time schedules, as AWS does.

StartDate and EndDate bound rate and cron schedules: fires are >= StartDate and < EndDate.
"""

from __future__ import annotations

import calendar
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MONTH_NAMES = {"JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6}
MONTH_NAMES |= {"JUL": 7, "AUG": 8, "SEP": 9, "OCT": 10, "NOV": 11, "DEC": 12}
DAY_NAMES = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
FIRST_YEAR, LAST_YEAR = 1970, 2199

_RATE_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
_RATE = re.compile(r"rate\((?P<value>\S+) (?P<unit>\S+)\)")
_CRON = re.compile(r"cron\((?P<fields>[^()]*)\)")
_AT = re.compile(r"at\((?P<when>[^()]*)\)")


class Schedule(ABC):
    """A parsed schedule expression in its time zone, with an optional [start, end) window."""

    expression: str
    timezone: str
    start: datetime | None
    end: datetime | None

    @abstractmethod
    def next_after(self, moment: datetime) -> datetime | None:
        """The first fire time strictly after `moment` (UTC), or None if there is none."""


def parse(
    expr: str, timezone: str = "UTC", start: datetime | None = None, end: datetime | None = None
) -> Schedule:
    """Parse a ScheduleExpression with its ScheduleExpressionTimezone and optional StartDate/EndDate."""
    if not isinstance(expr, str):
        raise ValueError("schedule expression must be a string")
    zone = _zone(timezone)
    start_utc = _aware(start, "StartDate") if start is not None else None
    end_utc = _aware(end, "EndDate") if end is not None else None
    if start_utc and end_utc and end_utc <= start_utc:
        raise ValueError(f"EndDate {end_utc.isoformat()} is not after StartDate {start_utc.isoformat()}")
    text = expr.strip()
    if m := _RATE.fullmatch(text):
        return RateSchedule(text, timezone, start_utc, end_utc, _rate_seconds(m["value"], m["unit"]))
    if m := _CRON.fullmatch(text):
        return CronSchedule(text, timezone, start_utc, end_utc, zone, _parse_cron(m["fields"]))
    if m := _AT.fullmatch(text):
        return AtSchedule(text, timezone, None, None, _parse_at(m["when"], zone))
    raise ValueError(
        f"schedule expression {expr!r} is not rate(value unit), cron(6 fields) or at(yyyy-mm-ddThh:mm:ss)"
    )


# --- shared -----------------------------------------------------------------------------------


def _zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"unknown time zone {timezone!r} (use an IANA name like 'Europe/Berlin')") from None


def _aware(moment: datetime, what: str) -> datetime:
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {moment!r}")
    return moment.astimezone(UTC)


def _bounded(start: datetime | None, moment: datetime) -> datetime:
    """The moment to search after so that the answer is >= start."""
    moment = _aware(moment, "moment")
    if start is not None and start > moment:
        return start - timedelta(microseconds=1)
    return moment


# --- rate -------------------------------------------------------------------------------------


def _rate_seconds(value: str, unit: str) -> int:
    if not value.isdigit() or int(value) <= 0:
        raise ValueError(f"rate value must be a positive whole number, got {value!r}")
    number = int(value)
    singular = unit[:-1] if unit.endswith("s") else unit
    if singular not in _RATE_UNITS:
        raise ValueError(f"rate unit must be minute(s), hour(s) or day(s), got {unit!r}")
    if number == 1 and unit != singular:
        raise ValueError(f"a rate of 1 takes the singular unit: rate(1 {singular})")
    if number > 1 and unit == singular:
        raise ValueError(f"a rate above 1 takes the plural unit: rate({number} {singular}s)")
    return number * _RATE_UNITS[singular]


@dataclass(frozen=True)
class RateSchedule(Schedule):
    expression: str
    timezone: str
    start: datetime | None
    end: datetime | None
    interval_seconds: int

    def next_after(self, moment: datetime) -> datetime | None:
        moment = _aware(moment, "moment")
        interval = timedelta(seconds=self.interval_seconds)
        if self.start is None:
            fire = moment + interval
        elif moment < self.start:
            fire = self.start
        else:
            periods = (moment - self.start) // interval + 1
            fire = self.start + periods * interval
        return fire if self.end is None or fire < self.end else None


# --- at ---------------------------------------------------------------------------------------


def _parse_at(when: str, zone: ZoneInfo) -> datetime:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", when):
        raise ValueError(f"at() takes yyyy-mm-ddThh:mm:ss, got {when!r}")
    try:
        wall = datetime.fromisoformat(when)
    except ValueError as e:
        raise ValueError(f"at({when}) is not a real date and time: {e}") from None
    return wall.replace(tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True)
class AtSchedule(Schedule):
    expression: str
    timezone: str
    start: datetime | None
    end: datetime | None
    fire_at: datetime

    def next_after(self, moment: datetime) -> datetime | None:
        return self.fire_at if self.fire_at > _aware(moment, "moment") else None


# --- cron -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cron:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: frozenset[int]
    years: frozenset[int]
    day_of_month: str  # the raw field, "?" when day-of-week decides
    day_of_week: str
    dom_days: frozenset[int] = field(default_factory=frozenset)  # plain days of month
    dom_special: tuple[str, ...] = ()  # "L", "LW", "15W"
    dow_days: frozenset[int] = field(default_factory=frozenset)  # plain days of week, 1=SUN
    dow_special: tuple[tuple[int, int], ...] = ()  # (weekday, nth); nth -1 is "last"


def _parse_cron(text: str) -> _Cron:
    parts = text.split()
    if len(parts) != 6:
        raise ValueError(
            f"cron needs 6 fields (minutes hours day-of-month month day-of-week year), got {len(parts)}: {text!r}"
        )
    minute, hour, dom, month, dow, year = parts
    if (dom == "?") == (dow == "?"):
        raise ValueError(
            f"cron {text!r}: exactly one of day-of-month ({dom!r}) and day-of-week ({dow!r}) must be '?'"
        )
    dom_days: set[int] = set()
    dom_special: list[str] = []
    if dom != "?":
        for term in dom.split(","):
            upper = term.upper()
            if upper in ("L", "LW"):
                dom_special.append(upper)
            elif upper.endswith("W"):
                day = _number(upper[:-1], 1, 31, "day-of-month", {})
                dom_special.append(f"{day}W")
            else:
                dom_days |= _range_term(term, 1, 31, "day-of-month", {})
    dow_days: set[int] = set()
    dow_special: list[tuple[int, int]] = []
    if dow != "?":
        for term in dow.split(","):
            upper = term.upper()
            if upper == "L":
                dow_days.add(7)
            elif "#" in upper:
                weekday_text, _, nth_text = upper.partition("#")
                weekday = _number(weekday_text, 1, 7, "day-of-week", DAY_NAMES)
                nth = _number(nth_text, 1, 5, "day-of-week '#'", {})
                dow_special.append((weekday, nth))
            elif upper.endswith("L"):
                dow_special.append((_number(upper[:-1], 1, 7, "day-of-week", DAY_NAMES), -1))
            else:
                dow_days |= _range_term(term, 1, 7, "day-of-week", DAY_NAMES)
    return _Cron(
        minutes=tuple(sorted(_field(minute, 0, 59, "minutes", {}))),
        hours=tuple(sorted(_field(hour, 0, 23, "hours", {}))),
        months=frozenset(_field(month, 1, 12, "month", MONTH_NAMES)),
        years=frozenset(_field(year, FIRST_YEAR, LAST_YEAR, "year", {})),
        day_of_month=dom,
        day_of_week=dow,
        dom_days=frozenset(dom_days),
        dom_special=tuple(dom_special),
        dow_days=frozenset(dow_days),
        dow_special=tuple(dow_special),
    )


def _field(text: str, low: int, high: int, name: str, names: dict[str, int]) -> set[int]:
    if text == "?":
        raise ValueError(f"'?' is only allowed in day-of-month or day-of-week, not in {name}")
    values: set[int] = set()
    for term in text.split(","):
        values |= _range_term(term, low, high, name, names)
    return values


def _range_term(term: str, low: int, high: int, name: str, names: dict[str, int]) -> set[int]:
    """`*`, `a`, `a-b` (may wrap), each optionally `/step`; `a/step` runs from a to the field's end."""
    if not term:
        raise ValueError(f"empty value in the {name} field")
    base, slash, step_text = term.partition("/")
    step = 1
    if slash:
        if not step_text.isdigit() or int(step_text) < 1:
            raise ValueError(f"{name} step must be a positive whole number, got {term!r}")
        step = int(step_text)
    if base == "*":
        first, last = low, high
    elif "-" in base:
        first_text, _, last_text = base.partition("-")
        first = _number(first_text, low, high, name, names)
        last = _number(last_text, low, high, name, names)
    else:
        first = _number(base, low, high, name, names)
        last = high if slash else first
    span = last - first if last >= first else (high - first) + (last - low) + 1
    width = high - low + 1
    return {low + (first - low + offset) % width for offset in range(0, span + 1, step)}


def _number(text: str, low: int, high: int, name: str, names: dict[str, int]) -> int:
    upper = text.upper()
    if upper in names:
        return names[upper]
    if not text.isdigit():
        allowed = f" or {'/'.join(names)}" if names else ""
        raise ValueError(f"{name} value {text!r} is not a number from {low} to {high}{allowed}")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{name} value {value} is outside {low}-{high}")
    return value


def _aws_weekday(day: date) -> int:
    """1=SUN .. 7=SAT, as AWS numbers days of the week (Python's weekday() is 0=MON)."""
    return (day.weekday() + 1) % 7 + 1


def _nearest_weekday(year: int, month: int, day: int) -> int | None:
    last = calendar.monthrange(year, month)[1]
    if day > last:
        return None
    weekday = date(year, month, day).weekday()  # 5=SAT, 6=SUN
    if weekday == 5:
        return day - 1 if day > 1 else day + 2
    if weekday == 6:
        return day + 1 if day < last else day - 2
    return day


def _days(cron: _Cron, year: int, month: int) -> list[int]:
    last = calendar.monthrange(year, month)[1]
    days: set[int] = set()
    if cron.day_of_month != "?":
        days |= {d for d in cron.dom_days if d <= last}
        for special in cron.dom_special:
            if special == "L":
                days.add(last)
            elif special == "LW":
                days.add(_nearest_weekday(year, month, last) or last)
            else:
                nearest = _nearest_weekday(year, month, int(special[:-1]))
                if nearest is not None:
                    days.add(nearest)
    else:
        weekdays = [_aws_weekday(date(year, month, d)) for d in range(1, last + 1)]
        days |= {d for d in range(1, last + 1) if weekdays[d - 1] in cron.dow_days}
        for weekday, nth in cron.dow_special:
            matching = [d for d in range(1, last + 1) if weekdays[d - 1] == weekday]
            if nth == -1:
                days.add(matching[-1])
            elif nth <= len(matching):
                days.add(matching[nth - 1])
    return sorted(days)


@dataclass(frozen=True)
class CronSchedule(Schedule):
    expression: str
    timezone: str
    start: datetime | None
    end: datetime | None
    zone: ZoneInfo
    cron: _Cron

    def next_after(self, moment: datetime) -> datetime | None:
        after = _bounded(self.start, moment)
        local = after.astimezone(self.zone)
        year, month = local.year, local.month
        first_day = local.day
        while year <= LAST_YEAR:
            if year in self.cron.years and month in self.cron.months:
                for day in _days(self.cron, year, month):
                    if day < first_day:
                        continue
                    fire = self._first_fire_on(date(year, month, day), after)
                    if fire is not None:
                        return fire if self.end is None or fire < self.end else None
            first_day = 1
            month += 1
            if month > 12:
                year, month = year + 1, 1
        return None

    def _first_fire_on(self, day: date, after: datetime) -> datetime | None:
        for hour in self.cron.hours:
            for minute in self.cron.minutes:
                wall = datetime(day.year, day.month, day.day, hour, minute)
                local = wall.replace(tzinfo=self.zone)  # fold=0: the first of a repeated time
                fire = local.astimezone(UTC)
                if fire.astimezone(self.zone).replace(tzinfo=None) != wall:
                    continue  # skipped by a spring-forward transition
                if fire > after:
                    return fire
        return None
