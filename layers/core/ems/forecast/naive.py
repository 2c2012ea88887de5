"""The seasonal-naive rule (same slot last week), in one place: the fallback that is served when no
model may be, and the baseline of every model's skill. Pure Python: other domains import it without
numpy or pandas."""

from __future__ import annotations

import math
from collections.abc import Sequence

WEEK_MINUTES = 7 * 24 * 60
DAY_MINUTES = 24 * 60
# A model needs two weeks: one for its week-lag features, one to learn from (DESIGN "Forecasting").
MIN_HISTORY_DAYS = 14


def slots_per_week(slot_minutes: int) -> int:
    return WEEK_MINUTES // slot_minutes


def seasonal_naive(history: Sequence[float], slot_minutes: int, slots: int) -> list[float]:
    """The next `slots` values after `history` (one value a slot, NaN where missing): each the value
    of the same slot one week earlier; past one week ahead, the last observed week again. A slot
    whose week-old value is missing takes the one a week before that, else NaN."""
    week = slots_per_week(slot_minutes)
    n = len(history)
    out: list[float] = []
    for h in range(slots):
        value = math.nan
        back = week * (h // week + 1)  # the most recent observed week of that slot
        while n + h - back >= 0:
            candidate = history[n + h - back]
            if not math.isnan(candidate):
                value = candidate
                break
            back += week
        out.append(value)
    return out


def naive_reason(history: Sequence[float], slot_minutes: int) -> str | None:
    """Why a model cannot be trained on `history`, or None when it can."""
    have_days = sum(1 for v in history if not math.isnan(v)) * slot_minutes / DAY_MINUTES
    if have_days < MIN_HISTORY_DAYS:
        return f"{have_days:.1f} days of history; a model needs {MIN_HISTORY_DAYS}"
    return None


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default), on a sorted list."""
    position = q * (len(sorted_values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def naive_interval(
    history: Sequence[float], slot_minutes: int, q_low: float = 0.1, q_high: float = 0.9
) -> tuple[float, float]:
    """Offsets (lower, upper) of the 10-90% interval around a seasonal-naive value: the quantiles of
    the week-over-week changes of the last week of `history`; (0, 0) without two weeks."""
    week = slots_per_week(slot_minutes)
    changes = sorted(
        history[i] - history[i - week]
        for i in range(max(len(history) - week, week), len(history))
        if not math.isnan(history[i]) and not math.isnan(history[i - week])
    )
    if not changes:
        return 0.0, 0.0
    return _quantile(changes, q_low), _quantile(changes, q_high)
