"""The forecast harness's own arithmetic (bench/forecast_api.py): the shift, the readings, the
holiday check and the backtest's origins, by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np

from bench.forecast_api import CLOCK, METER, backtest_origins, holidays_between, readings, weeks_of


def test_a_slice_is_shifted_by_whole_weeks_to_end_at_the_clock() -> None:
    values = np.arange(12 * 336, dtype=float)
    part = weeks_of(values, first_week=0, weeks=12)
    assert part.original_start == datetime(2000, 6, 4, 23, 0, tzinfo=UTC)
    assert part.start == datetime(2026, 9, 6, 23, 0, tzinfo=UTC)  # Monday 7 September, 00:00 at UTC+1
    assert part.end == CLOCK
    assert (part.start - part.original_start) % timedelta(weeks=1) == timedelta(0)
    late = weeks_of(values, first_week=10, weeks=2)
    assert (late.half_hours_mw[0], late.start, late.end) == (3360.0, CLOCK - timedelta(weeks=2), CLOCK)


def test_each_half_hour_is_two_quarter_hour_readings_of_its_power() -> None:
    part = weeks_of(np.array([20_000.0, 21_000.0] + [0.0] * 334), first_week=0, weeks=1)
    sent = readings(part)
    assert len(sent) == 2 * 336
    start_ms = int(part.start.timestamp() * 1000)
    assert sent[:3] == [
        {"sensor_id": METER, "ts": start_ms, "metrics": {"power_w": 20_000_000.0}},
        {"sensor_id": METER, "ts": start_ms + 900_000, "metrics": {"power_w": 20_000_000.0}},
        {"sensor_id": METER, "ts": start_ms + 1_800_000, "metrics": {"power_w": 21_000_000.0}},
    ]
    assert part.quarter_hours_kw[:4].tolist() == [20_000.0, 20_000.0, 21_000.0, 21_000.0]


def test_the_holiday_check_finds_christmas_and_nothing_in_the_harness_windows() -> None:
    christmas = holidays_between(
        datetime(2026, 12, 20, 23, tzinfo=UTC), datetime(2026, 12, 27, 23, tzinfo=UTC)
    )
    assert christmas == [date(2026, 12, 25), date(2026, 12, 26)]
    part = weeks_of(np.zeros(12 * 336), first_week=0, weeks=12)
    assert holidays_between(part.start, part.end) == []
    assert holidays_between(part.original_start, part.original_start + timedelta(weeks=12)) == []
    # 28 August 2000, the day after the data, is the summer bank holiday.
    end = part.original_start + timedelta(weeks=12)
    assert holidays_between(end, end + timedelta(days=1)) == [date(2000, 8, 28)]


def test_28_backtest_days_with_a_48_h_horizon_give_27_origins() -> None:
    # 12 weeks of quarter hours; origins every 96 slots from 8,064 - 2,688 while 192 slots fit.
    assert backtest_origins(12 * 7 * 96, 28) == (27, 27 * 192)
    assert backtest_origins(14 * 96, 2) == (1, 192)
