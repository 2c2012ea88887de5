"""The model: gradient-boosted trees (scikit-learn's HistGradientBoostingRegressor) that correct the
seasonal-naive baseline, one for the median (absolute error) and two quantile models for a 10-90%
interval. Trained on forecasts made at many origins of the history (ems.forecast.features), so one
model serves every lead of the horizon. Science layer only."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor

from ems.forecast.features import Columns, baseline_and_features, training_rows
from ems.forecast.naive import DAY_MINUTES, WEEK_MINUTES

QUANTILES = (0.1, 0.9)


@dataclass(frozen=True)
class Settings:
    horizon_slots: int
    slot_minutes: int
    origins_per_day: int = 8
    # Few, shallow, well-populated trees: on England and Wales' demand (bench/forecast.py) deeper
    # ones learned June's residuals and lost to their own baseline in August.
    max_iter: int = 30
    learning_rate: float = 0.05
    max_leaf_nodes: int = 4
    min_samples_leaf: int = 1000
    l2_regularization: float = 1.0
    seed: int = 0


@dataclass
class Model:
    """Three regressors of the actual minus the baseline: median, 10% and 90%."""

    settings: Settings
    median: HistGradientBoostingRegressor
    lower: HistGradientBoostingRegressor
    upper: HistGradientBoostingRegressor
    rows: int = 0
    meta: dict[str, float] = field(default_factory=dict)

    def predict(self, history: np.ndarray, columns: Columns, slots: int | None = None) -> Forecast:
        """The next `slots` (default: the trained horizon) after `history`."""
        n = self.settings.horizon_slots if slots is None else slots
        baseline, x = baseline_and_features(history, n, self.settings.slot_minutes, columns)
        mid = baseline + self.median.predict(x)
        low = baseline + self.lower.predict(x)
        high = baseline + self.upper.predict(x)
        # Three separate models can cross; sorting restores lower <= median <= upper.
        ordered = np.sort(np.vstack([low, mid, high]), axis=0)
        return Forecast(ordered[1], ordered[0], ordered[2])


@dataclass(frozen=True)
class Forecast:
    value: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


@dataclass(frozen=True)
class Accuracy:
    """A backtest: the model's and seasonal naive's errors on the same slots, and the share of
    actuals inside the 10-90% interval."""

    mae: float
    mape_pct: float | None
    naive_mae: float
    skill: float | None  # 1 - MAE_model / MAE_naive; None when naive made no error
    coverage_pct: float
    slots: int


def interval_coverage_pct(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share (%) of actuals inside [lower, upper], bounds included."""
    inside = (actual >= lower) & (actual <= upper)
    return 100.0 * float(inside.mean()) if len(actual) else 0.0


def accuracy(actual: np.ndarray, forecast: Forecast, naive: np.ndarray) -> Accuracy:
    """Over the slots where the actual and both forecasts exist. MAPE over nonzero actuals only
    (a PV night would divide by zero); None when there are none."""
    ok = np.isfinite(actual) & np.isfinite(forecast.value) & np.isfinite(naive)
    a, f, n = actual[ok], forecast.value[ok], naive[ok]
    mae, naive_mae = float(np.abs(f - a).mean()), float(np.abs(n - a).mean())
    nonzero = np.abs(a) > 1e-9
    mape = 100.0 * float((np.abs(f - a)[nonzero] / np.abs(a[nonzero])).mean()) if nonzero.any() else None
    skill = 1.0 - mae / naive_mae if naive_mae > 0 else None
    cover = interval_coverage_pct(a, forecast.lower[ok], forecast.upper[ok])
    return Accuracy(mae, mape, naive_mae, skill, cover, int(ok.sum()))


def _regressor(s: Settings, loss: str, quantile: float | None = None) -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(
        loss=loss, quantile=quantile, max_iter=s.max_iter, learning_rate=s.learning_rate,
        max_leaf_nodes=s.max_leaf_nodes, min_samples_leaf=s.min_samples_leaf,
        l2_regularization=s.l2_regularization, early_stopping=False, random_state=s.seed,
    )  # fmt: skip


def first_origin(slot_minutes: int) -> int:
    """The first origin with one week of lags behind it (and a day more for the level shift)."""
    return (WEEK_MINUTES + DAY_MINUTES) // slot_minutes


def train(values: np.ndarray, columns: Columns, s: Settings) -> Model:
    """Fit on forecasts made at `origins_per_day` origins a day of `values` (NaN where missing)."""
    every = max(DAY_MINUTES // s.slot_minutes // s.origins_per_day, 1)
    x, baseline, actual = training_rows(
        values, s.horizon_slots, s.slot_minutes, columns, every, first_origin(s.slot_minutes)
    )
    if len(actual) == 0:
        raise ValueError("no complete horizon to learn from")
    residual = actual - baseline
    median = _regressor(s, "absolute_error").fit(x, residual)
    lower = _regressor(s, "quantile", QUANTILES[0]).fit(x, residual)
    upper = _regressor(s, "quantile", QUANTILES[1]).fit(x, residual)
    return Model(s, median, lower, upper, rows=len(actual))
