"""The baseline rule of ems.dr.baseline on hand-made histories (fixed dates in March 2030, UTC site):
the 10 most recent weekdays without an event and not holidays, fewer days, too few, a weekend
event's 4 most recent days of its kind, the day-of adjustment and its cap, and the delivered kWh."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from ems.dr.baseline import baseline, delivered_kwh, same_time_on

EVENT = datetime(2030, 3, 13, 14, 0, tzinfo=UTC)  # a Wednesday, 14:00-15:00: 4 slots
NOTICE = datetime(2030, 3, 13, 10, 0, tzinfo=UTC)  # the adjustment window: 08:00-10:00


def history(
    days: dict[date, float], pre_kw: float = 10.0, today_pre_kw: float | None = 10.0
) -> dict[int, float]:
    """Each day's event slots at its kW, its 08:00-10:00 slots at `pre_kw`; the event day's
    08:00-10:00 at `today_pre_kw`."""
    out: dict[int, float] = {}
    for day, kw in days.items():
        for i in range(4):
            out[
                int(
                    (
                        datetime(day.year, day.month, day.day, 14, tzinfo=UTC) + i * timedelta(minutes=15)
                    ).timestamp()
                    * 1000
                )
            ] = kw
        for i in range(8):
            out[
                int(
                    (
                        datetime(day.year, day.month, day.day, 8, tzinfo=UTC) + i * timedelta(minutes=15)
                    ).timestamp()
                    * 1000
                )
            ] = pre_kw
    if today_pre_kw is not None:
        for i in range(8):
            out[
                int((datetime(2030, 3, 13, 8, tzinfo=UTC) + i * timedelta(minutes=15)).timestamp() * 1000)
            ] = today_pre_kw
    return out


def every_day_before(first: date, last: date) -> dict[date, float]:
    """Each day its day of the month as kW (weekends 100: they must never count for a weekday)."""
    days, day = {}, first
    while day <= last:
        days[day] = float(day.day) if day.weekday() < 5 else 100.0
        day += timedelta(days=1)
    return days


FULL = every_day_before(date(2030, 2, 1), date(2030, 3, 12))


def test_ten_weekdays_without_the_event_day_or_the_holiday() -> None:
    got = baseline(EVENT, 4, NOTICE, "UTC", history(FULL), {date(2030, 3, 12)}, {date(2030, 3, 11)})
    assert got.days == [date(2030, 3, d) for d in (8, 7, 6, 5, 4, 1)] + [
        date(2030, 2, d) for d in (28, 27, 26, 25)
    ]
    # (8 + 7 + 6 + 5 + 4 + 1 + 28 + 27 + 26 + 25) / 10 = 13.7 kW; the same 10 kW before the notice: factor 1
    assert got.slots_kw == pytest.approx([13.7] * 4)
    assert (got.adjustment, got.note) == (1.0, None)


@pytest.mark.parametrize(("today_kw", "factor"), [(11.0, 1.1), (15.0, 1.2), (9.0, 0.9), (5.0, 0.8)])
def test_the_day_of_adjustment_is_capped_at_twenty_percent(today_kw: float, factor: float) -> None:
    got = baseline(
        EVENT,
        4,
        NOTICE,
        "UTC",
        history(FULL, today_pre_kw=today_kw),
        {date(2030, 3, 12)},
        {date(2030, 3, 11)},
    )
    assert got.adjustment == pytest.approx(factor)
    assert got.slots_kw == pytest.approx([13.7 * factor] * 4)
    assert got.unadjusted_kw == pytest.approx([13.7] * 4)


def test_no_adjustment_when_the_hours_before_the_notice_are_not_metered() -> None:
    got = baseline(EVENT, 4, NOTICE, "UTC", history(FULL, today_pre_kw=None), set(), set())
    assert got.adjustment == 1.0
    assert got.note == "no day-of adjustment: the 2 hours before the notice are not all metered"


def test_fewer_than_ten_days_is_what_there_is_and_fewer_than_three_is_unknown() -> None:
    five = {d: kw for d, kw in FULL.items() if d >= date(2030, 3, 6)}  # 6, 7, 8, 11, 12 and a weekend
    got = baseline(EVENT, 4, NOTICE, "UTC", history(five), set(), set())
    assert got.days == [date(2030, 3, d) for d in (12, 11, 8, 7, 6)]
    assert got.slots_kw == pytest.approx([(12 + 11 + 8 + 7 + 6) / 5] * 4)
    assert got.note == "5 comparable weekdays, not 10"
    two = {d: kw for d, kw in FULL.items() if d >= date(2030, 3, 11)}
    unknown = baseline(EVENT, 4, NOTICE, "UTC", history(two), set(), set())
    assert (unknown.slots_kw, unknown.note) == (None, "baseline unknown: 2 comparable weekdays (at least 3)")


def test_a_day_with_a_slot_missing_does_not_count() -> None:
    gappy = history(FULL)
    del gappy[int(datetime(2030, 3, 12, 14, 30, tzinfo=UTC).timestamp() * 1000)]
    got = baseline(EVENT, 4, NOTICE, "UTC", gappy, set(), set())
    assert got.days[0] == date(2030, 3, 11)


def test_a_weekend_event_uses_the_four_most_recent_days_of_its_kind() -> None:
    saturday = datetime(2030, 3, 16, 14, 0, tzinfo=UTC)
    days = {**FULL, date(2030, 3, 15): 15.0, date(2030, 3, 11): 40.0}  # Monday the 11th is a holiday
    got = baseline(
        saturday, 4, saturday - timedelta(hours=4), "UTC", history(days), set(), {date(2030, 3, 11)}
    )
    assert got.days == [date(2030, 3, 11), date(2030, 3, 10), date(2030, 3, 9), date(2030, 3, 3)]
    assert got.unadjusted_kw == pytest.approx([(40 + 100 + 100 + 100) / 4] * 4)


def test_the_same_local_time_through_a_daylight_saving_change() -> None:
    # 14:00 in Berlin is 13:00 UTC in summer time (31 March 2030) and 14:00 UTC the day before.
    summer = datetime(2030, 4, 1, 12, 0, tzinfo=UTC)
    assert same_time_on(summer, date(2030, 3, 30), "Europe/Berlin") == datetime(
        2030, 3, 30, 13, 0, tzinfo=UTC
    )


def test_delivered_energy_by_hand() -> None:
    # (13.7 - 10) + (13.7 - 10) + (13.7 - 12) + (13.7 - 13.7), each over a quarter hour
    assert delivered_kwh([13.7] * 4, [10.0, 10.0, 12.0, 13.7]) == pytest.approx(2.275)
