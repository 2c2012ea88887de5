"""The model: a double-seasonal decomposition forecast (ems.forecast.seasonal) corrected by
gradient-boosted trees (scikit-learn's HistGradientBoostingRegressor): one for the median (absolute
error) and two quantile models for a 10-90% interval. The trees learn from forecasts made at many
origins of the history (ems.forecast.features), so one model serves every lead of the horizon.

Everything is chosen on the training data alone: the decomposition's settings and how much of the
trees' correction to apply by the last VALIDATION_DAYS of it (the trees fitted without those days),
then the trees refitted on all of it. Science layer only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ems.forecast.features import Columns, baseline_and_features, training_rows
from ems.forecast.naive import DAY_MINUTES, WEEK_MINUTES
from ems.forecast.seasonal import Decomposition, decomposition_forecast

if TYPE_CHECKING:
    # Imported where the trees are made: scikit-learn (and the SciPy it loads) is most of a second
    # of the forecast function's cold start, and a request served by seasonal naive needs neither;
    # a stored model's trees import it when they are unpickled.
    from sklearn.ensemble import HistGradientBoostingRegressor

QUANTILES = (0.1, 0.9)
# The decomposition's settings tried on the training data's last VALIDATION_DAYS (54).
DECOMPOSITIONS = tuple(
    Decomposition(day_window=d, week_window=w, alpha=a, passes=p)
    for d in (7, 9, 11)
    for w in (5, 9, 13)
    for a in (0.2, 0.5, 0.7)
    for p in (2, 3)
)
RESIDUAL_WEIGHTS = (0.0, 0.5, 1.0)
VALIDATION_DAYS = 14
# The trees learn from origins in the last TRAINING_WEEKS only (a site-year would make 1,460).
TRAINING_WEEKS = 8


@dataclass(frozen=True)
class Settings:
    horizon_slots: int
    slot_minutes: int
    origins_per_day: int = 4
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
    """Three regressors of the actual minus the baseline: median, 10% and 90%; the median's
    correction applied at `residual_weight`."""

    settings: Settings
    decomposition: Decomposition
    residual_weight: float
    median: HistGradientBoostingRegressor
    lower: HistGradientBoostingRegressor
    upper: HistGradientBoostingRegressor
    rows: int = 0
    # Features that had no value in any training row (a two-week lag with under two weeks of
    # history): scikit-learn cannot bin an all-NaN column, so they are 0 in training and serving.
    blank: tuple[int, ...] = ()

    def predict(self, history: np.ndarray, columns: Columns, slots: int | None = None) -> Forecast:
        """The next `slots` (default: the trained horizon) after `history`."""
        n = self.settings.horizon_slots if slots is None else slots
        baseline, x = baseline_and_features(
            history, n, self.settings.slot_minutes, columns, self.decomposition
        )
        mid = baseline + self.residual_weight * self.median.predict(x)
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
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(
        loss=loss, quantile=quantile, max_iter=s.max_iter, learning_rate=s.learning_rate,
        max_leaf_nodes=s.max_leaf_nodes, min_samples_leaf=s.min_samples_leaf,
        l2_regularization=s.l2_regularization, early_stopping=False, random_state=s.seed,
    )  # fmt: skip


def first_origin(slot_minutes: int) -> int:
    """The first origin with one week of lags behind it (and a day more for the level shift)."""
    return (WEEK_MINUTES + DAY_MINUTES) // slot_minutes


def _daily_origins(end: int, slots: int, day: int, days: int) -> list[int]:
    """Origins a day apart whose horizons end at or before `end`, the last one's exactly there."""
    return [end - slots - k * day for k in range(days) if end - slots - k * day >= first_origin_slots(day)][
        ::-1
    ]


def first_origin_slots(day: int) -> int:
    return 8 * day  # a week and a day


def choose_decomposition(values: np.ndarray, s: Settings, origins: list[int]) -> Decomposition:
    """The settings of DECOMPOSITIONS with the lowest MAE over `origins`' horizons."""
    day, week = DAY_MINUTES // s.slot_minutes, WEEK_MINUTES // s.slot_minutes

    def mae(d: Decomposition) -> float:
        errors = [
            np.abs(
                decomposition_forecast(values[:o], s.horizon_slots, day, week, d)
                - values[o : o + s.horizon_slots]
            )
            for o in origins
        ]
        joined = np.concatenate(errors)
        return float(np.nanmean(joined)) if np.isfinite(joined).any() else np.inf

    return min(DECOMPOSITIONS, key=mae)


def _fit(x: np.ndarray, residual: np.ndarray, s: Settings) -> tuple[HistGradientBoostingRegressor, ...]:
    return (
        _regressor(s, "absolute_error").fit(x, residual),
        _regressor(s, "quantile", QUANTILES[0]).fit(x, residual),
        _regressor(s, "quantile", QUANTILES[1]).fit(x, residual),
    )


def train(values: np.ndarray, columns: Columns, s: Settings) -> Model:
    """Fit on `values` (NaN where missing), one slot of s.slot_minutes each from columns' first."""
    day = DAY_MINUTES // s.slot_minutes
    every = max(day // s.origins_per_day, 1)
    n = len(values)
    available_days = (n - s.horizon_slots - first_origin_slots(day)) // day
    validation_days = max(min(VALIDATION_DAYS, available_days // 2), 1)
    validation = _daily_origins(n, s.horizon_slots, day, validation_days)
    if not validation:
        raise ValueError("no complete horizon to learn from")
    decomposition = choose_decomposition(values, s, validation)
    start = max(first_origin_slots(day), n - s.horizon_slots - TRAINING_WEEKS * 7 * day)
    learn_until = validation[0]  # the first validation horizon starts here
    # Trees without the validation days, to weigh their correction on those days.
    x, baseline, actual = training_rows(
        values, s.horizon_slots, s.slot_minutes, columns, decomposition,
        range(start, learn_until - s.horizon_slots + 1, every),
    )  # fmt: skip
    weight = 0.0
    if len(actual) >= 2 * s.min_samples_leaf:
        trial_blank = list(np.flatnonzero(~np.isfinite(x).any(axis=0)))
        x[:, trial_blank] = 0.0
        trial = _regressor(s, "absolute_error").fit(x, actual - baseline)
        vx, vbase, vactual = training_rows(
            values,
            s.horizon_slots,
            s.slot_minutes,
            columns,
            decomposition,
            range(validation[0], validation[-1] + 1, day),
        )
        vx[:, trial_blank] = 0.0
        correction = trial.predict(vx)
        weight = min(RESIDUAL_WEIGHTS, key=lambda w: float(np.abs(vbase + w * correction - vactual).mean()))
    x, baseline, actual = training_rows(
        values,
        s.horizon_slots,
        s.slot_minutes,
        columns,
        decomposition,
        range(start, n - s.horizon_slots + 1, every),
    )
    if len(actual) == 0:
        raise ValueError("no complete horizon to learn from")
    blank = tuple(int(i) for i in np.flatnonzero(~np.isfinite(x).any(axis=0)))
    x[:, list(blank)] = 0.0
    median, lower, upper = _fit(x, actual - baseline, s)
    return Model(s, decomposition, weight, median, lower, upper, rows=len(actual), blank=blank)
