"""Schedule expressions: next fire times a calendar can confirm, DST in Europe/Berlin, refused expressions.

Calendar facts used below: 2024-05-01 is a Wednesday, 2024-06-01 a Saturday, 2024-08-31 a
Saturday, 2024-09-15 a Sunday. Europe/Berlin springs forward 2024-03-31 02:00 -> 03:00 CEST and
falls back 2024-10-27 03:00 -> 02:00 CET.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ems_local.schedules import parse


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def fires(expr: str, after: datetime, count: int, tz: str = "UTC", **window: datetime) -> list[datetime]:
    schedule = parse(expr, tz, **window)
    out: list[datetime] = []
    moment: datetime | None = after
    for _ in range(count):
        assert moment is not None
        moment = schedule.next_after(moment)
        if moment is None:
            break
        out.append(moment)
    return out


# --- rate -------------------------------------------------------------------------------------


def test_rate_counts_from_the_previous_fire_without_a_start_date() -> None:
    assert parse("rate(5 minutes)").next_after(utc(2024, 5, 1, 10, 7)) == utc(2024, 5, 1, 10, 12)
    assert parse("rate(1 hour)").next_after(utc(2024, 5, 1, 10, 7)) == utc(2024, 5, 1, 11, 7)
    assert parse("rate(2 days)").next_after(utc(2024, 5, 1)) == utc(2024, 5, 3)


def test_rate_with_a_start_date_fires_on_its_grid() -> None:
    start = utc(2024, 5, 1, 0, 0)
    schedule = parse("rate(5 minutes)", start=start)
    assert schedule.next_after(utc(2024, 4, 30, 12, 0)) == start
    assert schedule.next_after(start) == utc(2024, 5, 1, 0, 5)
    assert schedule.next_after(utc(2024, 5, 1, 0, 7)) == utc(2024, 5, 1, 0, 10)
    assert schedule.next_after(utc(2024, 5, 1, 0, 10)) == utc(2024, 5, 1, 0, 15)


def test_rate_stops_before_the_end_date() -> None:
    schedule = parse("rate(10 minutes)", start=utc(2024, 5, 1), end=utc(2024, 5, 1, 0, 30))
    assert fires(
        "rate(10 minutes)", utc(2024, 4, 30), 10, start=utc(2024, 5, 1), end=utc(2024, 5, 1, 0, 30)
    ) == [
        utc(2024, 5, 1, 0, 0),
        utc(2024, 5, 1, 0, 10),
        utc(2024, 5, 1, 0, 20),
    ]
    assert schedule.next_after(utc(2024, 5, 1, 0, 20)) is None


def test_rate_day_is_24_hours_across_dst() -> None:
    start = datetime(2024, 3, 30, 9, 0, tzinfo=timezone(timedelta(hours=1)))  # 09:00 CET
    schedule = parse("rate(1 day)", "Europe/Berlin", start=start)
    assert schedule.next_after(start) == utc(2024, 3, 31, 8, 0)  # 10:00 CEST


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("rate(1 minutes)", r"rate\(1 minute\)"),
        ("rate(1 hours)", r"rate\(1 hour\)"),
        ("rate(5 minute)", r"rate\(5 minutes\)"),
        ("rate(2 day)", r"rate\(2 days\)"),
        ("rate(0 minutes)", "positive whole number"),
        ("rate(-5 minutes)", "positive whole number"),
        ("rate(1.5 hours)", "positive whole number"),
        ("rate(5 minutess)", "minute\\(s\\), hour\\(s\\) or day\\(s\\)"),
        ("rate(30 seconds)", "minute\\(s\\), hour\\(s\\) or day\\(s\\)"),
        ("rate(5minutes)", "is not rate"),
    ],
)
def test_rate_refused(expr: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse(expr)


# --- cron: fields -----------------------------------------------------------------------------


def test_cron_daily_is_strictly_after_the_moment() -> None:
    assert fires("cron(15 10 * * ? *)", utc(2024, 5, 1, 10, 15), 2) == [
        utc(2024, 5, 2, 10, 15),
        utc(2024, 5, 3, 10, 15),
    ]
    assert fires("cron(15 10 * * ? *)", utc(2024, 5, 1, 10, 14, 59), 1) == [utc(2024, 5, 1, 10, 15)]


def test_cron_weekdays_skip_the_weekend() -> None:
    # Friday 2024-05-03 18:00 -> Monday 2024-05-06
    assert fires("cron(0 18 ? * MON-FRI *)", utc(2024, 5, 3, 18, 0), 2) == [
        utc(2024, 5, 6, 18),
        utc(2024, 5, 7, 18),
    ]


def test_cron_day_of_week_numbers_start_at_sunday() -> None:
    assert fires("cron(0 12 ? * 1 *)", utc(2024, 5, 1), 1) == [utc(2024, 5, 5, 12)]  # Sunday
    assert fires("cron(0 12 ? * 2 *)", utc(2024, 5, 1), 1) == [utc(2024, 5, 6, 12)]  # Monday
    assert fires("cron(0 12 ? * 7 *)", utc(2024, 5, 1), 1) == [utc(2024, 5, 4, 12)]  # Saturday
    assert fires("cron(0 12 ? * SUN *)", utc(2024, 5, 1), 1) == [utc(2024, 5, 5, 12)]


def test_cron_day_of_week_range_may_wrap() -> None:
    # from Tuesday 2024-05-07: Fri 10, Sat 11, Sun 12, Mon 13, then Fri 17
    assert [f.day for f in fires("cron(0 12 ? * FRI-MON *)", utc(2024, 5, 7), 5)] == [10, 11, 12, 13, 17]


def test_cron_lists_steps_and_ranges() -> None:
    assert [f.minute for f in fires("cron(0/20 * * * ? *)", utc(2024, 5, 1, 10, 5), 4)] == [20, 40, 0, 20]
    assert [f.minute for f in fires("cron(5-40/10 10 * * ? *)", utc(2024, 5, 1, 10), 5)] == [5, 15, 25, 35, 5]
    assert [f.hour for f in fires("cron(0 8,12,17 * * ? *)", utc(2024, 5, 1, 9), 4)] == [12, 17, 8, 12]
    assert [f.minute for f in fires("cron(*/30 10 * * ? *)", utc(2024, 5, 1, 9), 2)] == [0, 30]


def test_cron_first_of_month_and_month_names() -> None:
    assert fires("cron(0 8 1 * ? *)", utc(2024, 5, 1, 9), 1) == [utc(2024, 6, 1, 8)]
    assert fires("cron(0 10 1 JAN,JUL ? *)", utc(2024, 2, 1), 2) == [utc(2024, 7, 1, 10), utc(2025, 1, 1, 10)]
    assert fires("cron(0 10 1 jan-mar ? *)", utc(2024, 2, 1, 11), 2) == [
        utc(2024, 3, 1, 10),
        utc(2025, 1, 1, 10),
    ]


def test_cron_year_field() -> None:
    assert fires("cron(0 0 1 1 ? 2030)", utc(2024, 5, 1), 2) == [utc(2030, 1, 1)]
    assert fires("cron(0 0 1 1 ? 2026-2027)", utc(2024, 5, 1), 3) == [utc(2026, 1, 1), utc(2027, 1, 1)]


def test_cron_that_never_fires() -> None:
    assert parse("cron(0 0 30 2 ? *)").next_after(utc(2024, 1, 1)) is None  # no 30 February


def test_cron_day_31_skips_short_months() -> None:
    assert [f.month for f in fires("cron(0 0 31 * ? *)", utc(2024, 1, 31, 1), 3)] == [3, 5, 7]


# --- cron: L, W, # ----------------------------------------------------------------------------


def test_cron_last_day_of_month() -> None:
    assert fires("cron(0 0 L * ? *)", utc(2024, 2, 10), 2) == [utc(2024, 2, 29), utc(2024, 3, 31)]
    assert fires("cron(0 0 L * ? *)", utc(2023, 2, 10), 1) == [utc(2023, 2, 28)]


def test_cron_nearest_weekday() -> None:
    assert fires("cron(0 9 15W * ? *)", utc(2024, 6, 1), 1) == [utc(2024, 6, 14, 9)]  # Sat 15th -> Fri 14th
    assert fires("cron(0 9 15W * ? *)", utc(2024, 9, 1), 1) == [utc(2024, 9, 16, 9)]  # Sun 15th -> Mon 16th
    assert fires("cron(0 9 15W * ? *)", utc(2024, 5, 1), 1) == [utc(2024, 5, 15, 9)]  # Wednesday stays
    assert fires("cron(0 9 1W * ? *)", utc(2024, 5, 31), 1) == [utc(2024, 6, 3, 9)]  # Sat 1st -> Mon 3rd


def test_cron_last_weekday_of_month() -> None:
    assert fires("cron(0 9 LW * ? *)", utc(2024, 8, 1), 1) == [utc(2024, 8, 30, 9)]  # Sat 31st -> Fri 30th


def test_cron_nth_weekday_of_month() -> None:
    assert fires("cron(0 10 ? * 6#3 *)", utc(2024, 5, 1), 2) == [utc(2024, 5, 17, 10), utc(2024, 6, 21, 10)]
    assert fires("cron(0 10 ? * MON#1 *)", utc(2024, 5, 1), 1) == [utc(2024, 5, 6, 10)]
    # a fifth Monday: none in May or June 2024, July has 1, 8, 15, 22, 29
    assert fires("cron(0 10 ? * 2#5 *)", utc(2024, 5, 1), 1) == [utc(2024, 7, 29, 10)]


def test_cron_last_weekday_of_kind() -> None:
    assert fires("cron(0 10 ? * 6L *)", utc(2024, 5, 1), 2) == [utc(2024, 5, 31, 10), utc(2024, 6, 28, 10)]
    assert fires("cron(0 10 ? * FRIL *)", utc(2024, 5, 1), 1) == [utc(2024, 5, 31, 10)]


def test_cron_l_alone_in_day_of_week_is_saturday() -> None:
    assert fires("cron(0 10 ? * L *)", utc(2024, 5, 1), 1) == [utc(2024, 5, 4, 10)]


# --- time zones and DST -----------------------------------------------------------------------


def test_cron_in_a_time_zone() -> None:
    assert fires("cron(0 9 * * ? *)", utc(2024, 7, 1), 1, "Europe/Berlin") == [utc(2024, 7, 1, 7)]  # CEST
    assert fires("cron(0 9 * * ? *)", utc(2024, 1, 1), 1, "Europe/Berlin") == [utc(2024, 1, 1, 8)]  # CET


def test_cron_keeps_wall_time_across_spring_forward() -> None:
    assert fires("cron(0 9 * * ? *)", utc(2024, 3, 30, 8), 2, "Europe/Berlin") == [
        utc(2024, 3, 31, 7),  # 09:00 CEST
        utc(2024, 4, 1, 7),
    ]


def test_cron_in_the_skipped_hour_is_skipped() -> None:
    # 02:30 does not exist in Berlin on 2024-03-31
    assert fires("cron(30 2 * * ? *)", utc(2024, 3, 30, 12), 2, "Europe/Berlin") == [
        utc(2024, 4, 1, 0, 30),  # 02:30 CEST
        utc(2024, 4, 2, 0, 30),
    ]


def test_cron_in_the_repeated_hour_fires_once() -> None:
    # 02:30 happens twice in Berlin on 2024-10-27: 00:30Z (CEST) and 01:30Z (CET)
    assert fires("cron(30 2 * * ? *)", utc(2024, 10, 26, 12), 2, "Europe/Berlin") == [
        utc(2024, 10, 27, 0, 30),
        utc(2024, 10, 28, 1, 30),
    ]


def test_cron_every_half_hour_through_the_fall_back_night() -> None:
    assert fires("cron(0/30 * * * ? *)", utc(2024, 10, 26, 23, 30), 5, "Europe/Berlin") == [
        utc(2024, 10, 27, 0, 0),  # 02:00 CEST
        utc(2024, 10, 27, 0, 30),  # 02:30 CEST
        utc(2024, 10, 27, 2, 0),  # 03:00 CET; 02:00 and 02:30 CET do not repeat
        utc(2024, 10, 27, 2, 30),
        utc(2024, 10, 27, 3, 0),
    ]


def test_cron_moment_in_another_offset_is_understood() -> None:
    moment = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))  # 10:00Z
    assert parse("cron(30 10 * * ? *)").next_after(moment) == utc(2024, 5, 1, 10, 30)


# --- cron: window -----------------------------------------------------------------------------


def test_cron_start_and_end_dates() -> None:
    window = {"start": utc(2024, 6, 10), "end": utc(2024, 6, 12)}
    assert fires("cron(0 6 * * ? *)", utc(2024, 6, 1), 5, **window) == [
        utc(2024, 6, 10, 6),
        utc(2024, 6, 11, 6),
    ]
    assert parse("cron(0 6 * * ? *)", **window).next_after(utc(2024, 6, 11, 6)) is None


def test_start_date_at_a_fire_time_fires_then() -> None:
    assert parse("cron(0 6 * * ? *)", start=utc(2024, 6, 10, 6)).next_after(utc(2024, 6, 1)) == utc(
        2024, 6, 10, 6
    )


# --- at ---------------------------------------------------------------------------------------


def test_at_fires_once_in_its_time_zone() -> None:
    schedule = parse("at(2024-06-01T12:00:00)", "Europe/Berlin")
    assert schedule.next_after(utc(2024, 5, 1)) == utc(2024, 6, 1, 10)
    assert schedule.next_after(utc(2024, 6, 1, 9, 59, 59)) == utc(2024, 6, 1, 10)
    assert schedule.next_after(utc(2024, 6, 1, 10)) is None
    assert schedule.next_after(utc(2025, 1, 1)) is None


def test_at_in_utc_and_ignores_start_and_end() -> None:
    schedule = parse("at(2024-06-01T12:00:30)", start=utc(2024, 7, 1), end=utc(2024, 7, 2))
    assert schedule.next_after(utc(2024, 5, 1)) == utc(2024, 6, 1, 12, 0, 30)


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("at(2024-02-30T00:00:00)", "not a real date"),
        ("at(2024-06-01 12:00:00)", "yyyy-mm-ddThh:mm:ss"),
        ("at(2024-06-01T12:00)", "yyyy-mm-ddThh:mm:ss"),
        ("at(2024-06-01T25:00:00)", "not a real date"),
    ],
)
def test_at_refused(expr: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse(expr)


# --- refused cron and arguments ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("cron(0 12 * * ?)", "6 fields"),
        ("cron(0 12 * * ? * *)", "6 fields"),
        ("cron(0 12 * * MON *)", "exactly one of day-of-month"),
        ("cron(0 12 * * * *)", "exactly one of day-of-month"),
        ("cron(0 12 ? * ? *)", "exactly one of day-of-month"),
        ("cron(60 12 * * ? *)", "minutes value 60 is outside 0-59"),
        ("cron(0 24 * * ? *)", "hours value 24 is outside 0-23"),
        ("cron(0 12 0 * ? *)", "day-of-month value 0"),
        ("cron(0 12 32 * ? *)", "day-of-month value 32"),
        ("cron(0 12 * 13 ? *)", "month value 13"),
        ("cron(0 12 * FOO ? *)", "month value 'FOO'"),
        ("cron(0 12 ? * 0 *)", "day-of-week value 0 is outside 1-7"),
        ("cron(0 12 ? * 8 *)", "day-of-week value 8"),
        ("cron(0 12 ? * 6#6 *)", "'#' value 6"),
        ("cron(0 12 * * ? 1969)", "year value 1969"),
        ("cron(0 12 * * ? 2200)", "year value 2200"),
        ("cron(0/0 12 * * ? *)", "step must be a positive"),
        ("cron(? 12 * * ? *)", "only allowed in day-of-month or day-of-week"),
        ("cron(0 12 1,,2 * ? *)", "empty value"),
        ("cron(0 12 ? * MON-FUNDAY *)", "day-of-week value 'FUNDAY'"),
        ("every 5 minutes", "is not rate"),
        ("", "is not rate"),
    ],
)
def test_cron_refused(expr: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse(expr)


def test_unknown_time_zone_refused() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        parse("cron(0 12 * * ? *)", "Mars/Olympus")


def test_naive_datetimes_refused() -> None:
    with pytest.raises(ValueError, match="moment must be a timezone-aware"):
        parse("rate(5 minutes)").next_after(datetime(2024, 5, 1))
    with pytest.raises(ValueError, match="StartDate must be a timezone-aware"):
        parse("rate(5 minutes)", start=datetime(2024, 5, 1))


def test_end_date_must_follow_start_date() -> None:
    with pytest.raises(ValueError, match="EndDate"):
        parse("rate(5 minutes)", start=utc(2024, 5, 2), end=utc(2024, 5, 1))


# --- against a minute-by-minute scan ----------------------------------------------------------

# Each expression with the same rule written by hand as a predicate on local wall time.
ORACLES: dict[str, Callable[[datetime], bool]] = {
    "cron(0/15 1-3 * * ? *)": lambda t: t.minute % 15 == 0 and 1 <= t.hour <= 3,
    "cron(30 2 ? * SUN *)": lambda t: (t.hour, t.minute) == (2, 30) and t.weekday() == 6,
    "cron(0 12 L * ? *)": lambda t: (t.hour, t.minute) == (12, 0) and (t + timedelta(days=1)).day == 1,
    "cron(45 23 ? * 2-6 *)": lambda t: (t.hour, t.minute) == (23, 45) and t.weekday() < 5,
    "cron(0 0/6 1,15 * ? *)": lambda t: t.minute == 0 and t.hour % 6 == 0 and t.day in (1, 15),
}


def scan(expr: str, zone: ZoneInfo, after: datetime) -> datetime:
    """The first whole minute after `after` whose first occurrence of local wall time matches."""
    moment = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while True:
        local = moment.astimezone(zone)
        if local.fold == 0 and ORACLES[expr](local.replace(tzinfo=None)):
            return moment
        moment += timedelta(minutes=1)


@settings(max_examples=60, deadline=None)
@given(
    expr=st.sampled_from(sorted(ORACLES)),
    tz=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
    after=st.datetimes(
        min_value=datetime(2024, 1, 1), max_value=datetime(2025, 12, 31), timezones=st.just(UTC)
    ),
)
def test_cron_agrees_with_a_minute_by_minute_scan(expr: str, tz: str, after: datetime) -> None:
    assert parse(expr, tz).next_after(after) == scan(expr, ZoneInfo(tz), after)


@pytest.mark.parametrize("expr", sorted(ORACLES))
@pytest.mark.parametrize("after", [utc(2024, 3, 30, 20), utc(2024, 10, 26, 20), utc(2024, 3, 9, 20)])
def test_cron_agrees_with_the_scan_around_dst(expr: str, after: datetime) -> None:
    for tz in ("Europe/Berlin", "America/New_York"):
        moment = after
        for _ in range(3):
            expected = scan(expr, ZoneInfo(tz), moment)
            assert parse(expr, tz).next_after(moment) == expected
            moment = expected
