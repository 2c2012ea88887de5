"""Features of a forecast: the calendar, lags no shorter than the horizon, levels, clear-sky sun.

Pure numpy (science layer). A forecast made at `origin` (the index of the first slot to forecast)
sees only `history[:origin]`: every lag of lead h (0-based slots after the origin) reaches back to
the most recent observed day or week of its slot (`lag = period * (h // period + 1)`), so no lag is
shorter than the lead it serves, for any horizon (direct multi-horizon features). The baseline the
model corrects is the double-seasonal decomposition forecast (ems.forecast.seasonal), made from the
same history; the lags enter as differences from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import numpy as np

from ems.forecast.naive import DAY_MINUTES, WEEK_MINUTES
from ems.forecast.seasonal import Decomposition, decomposition_forecast

# How long the last slot's departure from last week is taken to persist (a feature, `fade`).
DEVIATION_HALF_LIFE_HOURS = 6.75
# The decomposition sees at most this much history (its longest window is 13 weeks; this bounds the
# cost of a forecast on a long series).
DECOMPOSITION_HISTORY_WEEKS = 14

# Lags enter as differences from the baseline (trees split on a difference, they cannot take one).
NAMES: tuple[str, ...] = (
    "lead", "slot_of_day", "weekday", "holiday", "month", "baseline", "week_lag_diff", "two_week_lag_diff",
    "day_lag_diff", "day_lag_change", "level_day_vs_week", "level_shift", "last_diff", "last_change",
    "same_slot_mean_4w_diff", "fade", "clear_sky_w_m2", "holiday_week_ago", "clearness_day",
)  # fmt: skip


@dataclass(frozen=True)
class Calendar:
    """Where the site is: its timezone (slot of day, weekday, month), public holidays, and position
    (clear-sky irradiance; None where the site gave none)."""

    timezone: str = "UTC"
    holidays: frozenset[date] = frozenset()
    latitude: float | None = None
    longitude: float | None = None


def clear_sky_w_m2(ts_ms: np.ndarray, latitude: float, longitude: float) -> np.ndarray:
    """Clear-sky global horizontal irradiance (W/m2) at each instant (mid-slot is the caller's to
    choose). Haurwitz (1945): GHI = 1098 cos(z) exp(-0.059 / cos(z)) for the zenith angle z, 0 with
    the sun below the horizon; the sun's position by Spencer's (1971) declination and equation of time."""
    seconds = ts_ms / 1000.0
    day_of_year = (seconds / 86_400.0) % 365.2425  # days since 1 Jan 1970, a year's cycle
    gamma = 2 * math.pi * (day_of_year - 1) / 365.0
    declination = (
        0.006918 - 0.399912 * np.cos(gamma) + 0.070257 * np.sin(gamma) - 0.006758 * np.cos(2 * gamma)
        + 0.000907 * np.sin(2 * gamma) - 0.002697 * np.cos(3 * gamma) + 0.00148 * np.sin(3 * gamma)
    )  # fmt: skip
    equation_of_time_min = 229.18 * (
        0.000075 + 0.001868 * np.cos(gamma) - 0.032077 * np.sin(gamma)
        - 0.014615 * np.cos(2 * gamma) - 0.040849 * np.sin(2 * gamma)
    )  # fmt: skip
    utc_minutes = (seconds % 86_400.0) / 60.0
    solar_minutes = utc_minutes + equation_of_time_min + 4 * longitude
    hour_angle = np.radians(solar_minutes / 4.0 - 180.0)
    lat = math.radians(latitude)
    cos_zenith = math.sin(lat) * np.sin(declination) + math.cos(lat) * np.cos(declination) * np.cos(
        hour_angle
    )
    ghi = np.zeros_like(cos_zenith)
    up = cos_zenith > 0.01
    ghi[up] = 1098.0 * cos_zenith[up] * np.exp(-0.059 / cos_zenith[up])
    return ghi


@dataclass(frozen=True)
class Columns:
    """The calendar of every slot from the series' start to the end of the last horizon."""

    slot_of_day: np.ndarray
    weekday: np.ndarray
    holiday: np.ndarray
    month: np.ndarray
    clear_sky: np.ndarray


def _utc_offset_ms(zone: ZoneInfo, epoch_s: int) -> int:
    offset = datetime.fromtimestamp(epoch_s, UTC).astimezone(zone).utcoffset()
    return int(offset.total_seconds() * 1000) if offset is not None else 0


def calendar_columns(start_ms: int, count: int, slot_minutes: int, calendar: Calendar) -> Columns:
    slot_ms = slot_minutes * 60_000
    ts = start_ms + slot_ms * np.arange(count, dtype=np.int64)
    zone = ZoneInfo(calendar.timezone)
    # Local calendar by the day: the offset of each UTC day's noon (DST moves within a day are a
    # slot of error at most, on two days a year).
    days = np.unique(ts // 86_400_000)
    offset_ms = {int(d): _utc_offset_ms(zone, int(d) * 86_400 + 43_200) for d in days}
    local = ts + np.array([offset_ms[int(d)] for d in ts // 86_400_000], dtype=np.int64)
    local_day = local // 86_400_000
    dates = {int(d): date.fromordinal(719_163 + int(d)) for d in np.unique(local_day)}  # 719163: 1970-01-01
    slot_of_day = (local % 86_400_000) // slot_ms
    weekday = (local_day + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    holiday = np.array([dates[int(d)] in calendar.holidays for d in local_day], dtype=float)
    month = np.array([dates[int(d)].month for d in local_day], dtype=float)
    if calendar.latitude is not None and calendar.longitude is not None:
        clear = clear_sky_w_m2(ts + slot_ms // 2, calendar.latitude, calendar.longitude)
    else:
        clear = np.zeros(count)  # a constant column (an all-NaN one trips scikit-learn's binning)
    return Columns(slot_of_day.astype(float), weekday.astype(float), holiday, month, clear)


def _at(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """values[index], NaN where index < 0 (before the series' start)."""
    out = np.full(index.shape, np.nan)
    ok = index >= 0
    out[ok] = values[index[ok]]
    return out


def _nanmean(x: np.ndarray) -> float:
    finite = x[np.isfinite(x)]
    return float(finite.mean()) if finite.size else math.nan


def baseline_and_features(
    history: np.ndarray, slots: int, slot_minutes: int, columns: Columns, decomposition: Decomposition
) -> tuple[np.ndarray, np.ndarray]:
    """For the `slots` after `history` (its length is the origin): the baseline (the decomposition
    forecast) and the feature matrix (one row a slot, NAMES' columns). `columns` covers at least
    len(history) + slots slots from the history's first."""
    day, week = DAY_MINUTES // slot_minutes, WEEK_MINUTES // slot_minutes
    origin = len(history)
    lead = np.arange(slots)
    t = origin + lead
    week_back = week * (lead // week + 1)
    day_back = day * (lead // day + 1)
    week_lag = _at(history, t - week_back)
    two_week_lag = _at(history, t - week_back - week)
    day_lag = _at(history, t - day_back)
    day_lag_change = day_lag - _at(history, t - day_back - week)
    same_slot_mean = np.nanmean(
        np.vstack([_at(history, t - week_back - k * week) for k in range(4)]), axis=0
    ) if origin else np.full(slots, np.nan)  # fmt: skip
    last_day, day_a_week_earlier = (
        history[max(origin - day, 0) :],
        history[max(origin - day - week, 0) : max(origin - week, 0)],
    )
    level_day = _nanmean(last_day)
    level_shift = level_day - _nanmean(day_a_week_earlier) if origin >= day + week else math.nan
    last = history[-1] if origin else math.nan
    last_change = last - (history[origin - 1 - week] if origin > week else math.nan)
    level_week = _nanmean(history[max(origin - week, 0) :])
    clear = columns.clear_sky[t]
    clear_day = columns.clear_sky[max(origin - day, 0) : origin]
    clearness = _nanmean(last_day) / _nanmean(clear_day) if np.nansum(clear_day) > 0 else 0.0
    holiday_week_ago = _at(columns.holiday, t - week_back)
    fade = 0.5 ** ((lead + 1) * slot_minutes / 60 / DEVIATION_HALF_LIFE_HOURS)
    recent = history[max(origin - DECOMPOSITION_HISTORY_WEEKS * week, 0) :]
    baseline = decomposition_forecast(recent, slots, day, week, decomposition)
    rows = np.column_stack(
        [
            lead, columns.slot_of_day[t], columns.weekday[t], columns.holiday[t], columns.month[t],
            baseline, week_lag - baseline, two_week_lag - baseline, day_lag - baseline, day_lag_change,
            np.full(slots, level_day - level_week), np.full(slots, level_shift), np.full(slots, last - baseline[0]),
            np.full(slots, last_change), same_slot_mean - baseline, fade, clear, holiday_week_ago,
            np.full(slots, clearness),
        ]
    )  # fmt: skip
    return baseline, rows


def training_rows(
    values: np.ndarray,
    slots: int,
    slot_minutes: int,
    columns: Columns,
    decomposition: Decomposition,
    origins: range,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of forecasts made at `origins` (each with a whole horizon of `values` after it):
    (features, baseline, actual), rows with no actual or no baseline left out."""
    blocks_x, blocks_b, blocks_y = [], [], []
    for origin in origins:
        baseline, x = baseline_and_features(values[:origin], slots, slot_minutes, columns, decomposition)
        actual = values[origin : origin + slots]
        keep = np.isfinite(actual) & np.isfinite(baseline)
        blocks_x.append(x[keep])
        blocks_b.append(baseline[keep])
        blocks_y.append(actual[keep])
    if not blocks_x:
        return np.empty((0, len(NAMES))), np.empty(0), np.empty(0)
    return np.vstack(blocks_x), np.concatenate(blocks_b), np.concatenate(blocks_y)
