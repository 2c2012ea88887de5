"""A double-seasonal decomposition forecast (the model's baseline): MSTL-like, in numpy.

The series is split into a daily and a weekly seasonal component and a level, as MSTL does
(Bandara, Hyndman & Bergmeir 2021; STL: Cleveland et al. 1990), simplified: each season's component
is a tricube-weighted mean of its cycle-subseries (the same slot over the `window` nearest cycles,
one-sided at the ends) of the series less its moving-average trend and less the other season, in
`passes` rounds; the level is simple exponential smoothing (weight `alpha`) of the series less both
seasons. The forecast is the level plus each season's last cycle. Its settings are chosen on the
training data (ems.forecast.model), never on what it forecasts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class Decomposition:
    day_window: int = 9  # days each slot-of-day's component is smoothed over
    week_window: int = 13  # weeks each slot-of-week's component is smoothed over
    alpha: float = 0.2  # the level's exponential-smoothing weight, per slot
    passes: int = 2


def moving_trend(x: np.ndarray, period: int) -> np.ndarray:
    """Mean over one whole period around each slot (the first or last whole period at the ends)."""
    n = len(x)
    if n < period:
        return np.full(n, float(np.mean(x)) if n else 0.0)
    total = np.concatenate([[0.0], np.cumsum(x)])
    start = np.clip(np.arange(n) - period // 2, 0, n - period)
    return (total[start + period] - total[start]) / period


@lru_cache(maxsize=64)
def _tricube_weights(cycles: int, window: int) -> np.ndarray:
    """Row j: the weight of each cycle in cycle j's smoothed value (the `window` nearest, one-sided
    at the ends, tricube in the distance over the window's reach)."""
    weights = np.zeros((cycles, cycles))
    width = min(window, cycles)
    for j in range(cycles):
        lo = min(max(j - width // 2, 0), cycles - width)
        k = np.arange(lo, lo + width)
        reach = max(j - lo, lo + width - 1 - j) + 1
        weights[j, lo : lo + width] = (1 - (np.abs(k - j) / reach) ** 3) ** 3
    return weights


def cycle_smooth(x: np.ndarray, period: int, window: int) -> np.ndarray:
    """Each slot's value replaced by the tricube-weighted mean of the same slot in the `window`
    nearest cycles (one-sided at the ends, so the last cycle is a mean of the most recent ones)."""
    n = len(x)
    cycles = -(-n // period)
    flat = np.full(cycles * period, np.nan)
    flat[:n] = x
    grid = flat.reshape(cycles, period)
    known = np.isfinite(grid).astype(float)
    weights = _tricube_weights(cycles, window)
    total = weights @ known
    smoothed = (weights @ np.where(known > 0, grid, 0.0)) / np.where(total > 0, total, 1.0)
    return np.where(total > 0, smoothed, 0.0).reshape(-1)[:n]


def _filled(history: np.ndarray, week: int) -> np.ndarray:
    """Missing slots filled with the same slot a week away (else the series' mean)."""
    y = history.astype(float).copy()
    gaps = ~np.isfinite(y)
    if not gaps.any():
        return y
    for i in np.flatnonzero(gaps):
        for j in (i - week, i + week, i - 2 * week):
            if 0 <= j < len(y) and np.isfinite(history[j]):
                y[i] = history[j]
                break
    rest = ~np.isfinite(y)
    y[rest] = np.nanmean(history) if np.isfinite(history).any() else 0.0
    return y


def decomposition_forecast(
    history: np.ndarray, slots: int, day: int, week: int, d: Decomposition
) -> np.ndarray:
    """The next `slots` after `history` (slots of `day` a day and `week` a week)."""
    y = _filled(history, week)
    n = len(y)
    if n < week:
        return np.full(slots, np.nan)
    weekly = np.zeros(n)
    daily = np.zeros(n)
    for _ in range(d.passes):
        x = y - weekly
        daily = cycle_smooth(x - moving_trend(x, day), day, d.day_window)
        x = y - daily
        weekly = cycle_smooth(x - moving_trend(x, week), week, d.week_window)
    rest = y - daily - weekly
    # Simple exponential smoothing's last level, in closed form: (1-a)^(n-1) rest[0] plus
    # a (1-a)^(n-1-i) rest[i] for i >= 1 (the weights of a long past underflow to 0, as they should).
    decay = (1 - d.alpha) ** np.arange(n - 1, -1, -1, dtype=float)
    level = float(decay[0] * rest[0] + d.alpha * np.dot(decay[1:], rest[1:]))
    lead = np.arange(slots)
    t = n + lead
    return level + daily[t - day * (lead // day + 1)] + weekly[t - week * (lead // week + 1)]
