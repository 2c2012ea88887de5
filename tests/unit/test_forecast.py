"""Forecasting without AWS: the seasonal-naive rule, features that never see the future, ordered
quantiles, accuracy and interval coverage by hand, the integrity check, and the service through fakes
(naive with its reason, the skill gate, a tampered artifact, the token's limits, the Forecasts port)."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
from datetime import timedelta

import numpy as np
import pytest

from ems.core.errors import Forbidden
from ems.core.holidays import public_holidays
from ems.forecast import artifacts
from ems.forecast import service as forecasting
from ems.forecast.features import NAMES, Calendar, baseline_and_features, calendar_columns
from ems.forecast.model import Forecast, Settings, accuracy, interval_coverage_pct, train
from ems.forecast.models import ForecastQuery, StoredForecast, TrainRequest
from ems.forecast.naive import naive_interval, naive_reason, seasonal_naive
from ems.forecast.seasonal import Decomposition
from ems.forecast.store import stored_or_naive
from tests.support.fakes import MemoryRegistry, caller
from tests.support.fakes_forecast import (
    MONDAY,
    SLOT_MS,
    MemoryArtifacts,
    MemoryForecasts,
    SeriesRollups,
    synthetic_kw,
)

DAY = 96  # 15-minute slots
START_MS = int(MONDAY.timestamp() * 1000)
SMALL = Settings(horizon_slots=DAY, slot_minutes=15, max_iter=10, min_samples_leaf=50)
FAST = {"max_iter": 10, "min_samples_leaf": 50, "origins_per_day": 2}  # small trees: seconds, not minutes


# ---------------------------------------------------------------- the seasonal-naive rule


def test_seasonal_naive_is_the_same_slot_last_week_then_the_last_week_again() -> None:
    history = [float(i) for i in range(14)]  # one slot a day: a week is 7 slots
    assert seasonal_naive(history, 1440, 10) == [7, 8, 9, 10, 11, 12, 13, 7, 8, 9]


def test_seasonal_naive_takes_the_week_before_where_last_week_is_missing() -> None:
    history = [float(i) for i in range(14)]
    history[7] = math.nan
    assert seasonal_naive(history, 1440, 1) == [0.0]
    assert math.isnan(seasonal_naive([math.nan] * 7, 1440, 1)[0])


def test_under_two_weeks_of_history_gives_the_reason() -> None:
    assert naive_reason([1.0] * (13 * DAY), 15) == "13.0 days of history; a model needs 14"
    assert naive_reason([1.0] * (14 * DAY), 15) is None
    assert naive_reason([1.0] * (14 * DAY) + [math.nan] * DAY, 15) is None


def test_naive_interval_is_the_spread_of_week_over_week_changes() -> None:
    week = 7
    history = [0.0] * week + [float(i) for i in range(11)]
    # the last week, indices 11..17, less a week before: 4-0, 5-0, 6-0, 7-0, 8-1, 9-2, 10-3
    assert naive_interval(history, 1440, 0.0, 1.0) == (4.0, 7.0)
    assert naive_interval(history, 1440, 0.5, 0.5) == (7.0, 7.0)  # the median of 4 5 6 7 7 7 7


def test_the_naive_rule_imports_without_numpy() -> None:
    code = (
        "import sys, ems.forecast.naive, ems.forecast.models, ems.forecast.store, ems.forecast.history;"
        "print(sorted(m for m in ('numpy', 'pandas', 'sklearn', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- accuracy by hand


def test_interval_coverage_on_a_hand_made_case() -> None:
    actual = np.array([1.0, 2.0, 3.0, 4.0])
    lower = np.array([0.0, 2.5, 3.0, 0.0])
    upper = np.array([2.0, 3.0, 3.0, 3.0])
    # 1 in [0, 2] yes; 2 in [2.5, 3] no; 3 in [3, 3] yes (bounds count); 4 in [0, 3] no
    assert interval_coverage_pct(actual, lower, upper) == 50.0


def test_mae_mape_and_skill_by_hand() -> None:
    actual = np.array([10.0, 10.0, 20.0])
    model = Forecast(np.array([11.0, 9.0, 20.0]), np.array([9.0, 9.0, 19.0]), np.array([12.0, 12.0, 21.0]))
    naive = np.array([12.0, 8.0, 22.0])
    a = accuracy(actual, model, naive)
    assert a.mae == pytest.approx(2 / 3)  # (1 + 1 + 0) / 3
    assert a.naive_mae == pytest.approx(2.0)
    assert a.skill == pytest.approx(1 - (2 / 3) / 2)
    assert a.mape_pct == pytest.approx(100 * (0.1 + 0.1 + 0) / 3)
    assert a.coverage_pct == pytest.approx(100.0)


# ---------------------------------------------------------------- features and the model


def _columns(count: int) -> object:
    return calendar_columns(START_MS, count, 15, Calendar())


def test_every_lag_of_every_lead_reaches_back_before_the_origin() -> None:
    origin = 15 * DAY
    history = np.arange(origin, dtype=float)  # value = index: a lag's value is the index it read
    slots = 2 * DAY
    baseline, x = baseline_and_features(history, slots, 15, _columns(origin + slots), Decomposition())
    day_lag = x[:, NAMES.index("day_lag_diff")] + baseline
    week_lag = x[:, NAMES.index("week_lag_diff")] + baseline
    lead = np.arange(slots)
    # same slot on the most recent observed day: 1 day back for the first day, 2 for the second
    assert day_lag.tolist() == (origin + lead - DAY * (lead // DAY + 1)).astype(float).tolist()
    assert week_lag.tolist() == (origin + lead - 7 * DAY).astype(float).tolist()
    assert (day_lag < origin).all() and (week_lag < origin).all()


def test_a_changed_future_leaves_the_forecast_unchanged() -> None:
    values = np.asarray(synthetic_kw(24))
    origin = 21 * DAY
    columns = _columns(len(values) + DAY)
    model = train(values[:origin], columns, SMALL)
    before = model.predict(values[:origin], columns)
    changed = values.copy()
    changed[origin:] += 50.0
    after = model.predict(changed[:origin], columns)
    assert np.array_equal(before.value, after.value) and np.array_equal(before.upper, after.upper)
    # and the past does matter: the same model on a changed last day forecasts otherwise
    changed[origin - DAY : origin] += 50.0
    assert not np.array_equal(model.predict(changed[:origin], columns).value, before.value)


def test_quantiles_are_ordered_and_the_model_beats_naive_on_a_noisy_week() -> None:
    values = np.asarray(synthetic_kw(28))
    origin = 21 * DAY
    columns = _columns(len(values) + DAY)
    model = train(values[:origin], columns, SMALL)
    f = model.predict(values[:origin], columns)
    assert (f.lower <= f.value).all() and (f.value <= f.upper).all()
    naive = np.asarray(seasonal_naive(values[:origin].tolist(), 15, DAY))
    a = accuracy(values[origin : origin + DAY], f, naive)
    # naive carries two draws of noise (sd 1 kW each), a smoothed profile about one: MAE ~0.8 vs ~1.1
    assert a.skill is not None and a.skill > 0.1


def test_public_holidays_of_england_and_wales() -> None:
    found = public_holidays("GB-ENG", [2000])
    assert {d.isoformat() for d in found} >= {"2000-08-28", "2000-12-25", "2000-05-29"}
    assert public_holidays(None, [2000]) == frozenset()


# ---------------------------------------------------------------- artifacts


class _Flag:
    hits: list[int] = []

    def __reduce__(self) -> tuple[object, tuple[int]]:
        return (_Flag.hits.append, (1,))


def test_a_tampered_artifact_is_refused_before_unpickling() -> None:
    blob, digest = artifacts.dump({"weights": [1, 2, 3]})
    assert artifacts.load(blob, digest) == {"weights": [1, 2, 3]}
    evil = pickle.dumps(_Flag())
    with pytest.raises(artifacts.TamperedArtifact):
        artifacts.load(evil, digest)
    assert _Flag.hits == []  # never unpickled


# ---------------------------------------------------------------- the service through fakes


def _stores(days: int, weekly_only: bool = False, **site: object) -> tuple[forecasting.Stores, SeriesRollups]:
    registry = MemoryRegistry()
    registry.add_site("hq", **site)
    registry.add_sensor("hq", "MAIN", "main_meter")
    registry.add_sensor("hq", "PV", "pv_inverter")
    rollups = SeriesRollups()
    rollups.put("hq", "MAIN", START_MS, synthetic_kw(days, weekly_only=weekly_only))
    rollups.put("hq", "PV", START_MS, [0.0] * days * DAY)
    catalog = MemoryForecasts()
    s = forecasting.Stores(
        sites=registry, rollups=rollups, artifacts=MemoryArtifacts(), catalog=catalog, archive=catalog
    )
    return s, rollups


def _at(days: float) -> forecasting.Clock:
    return lambda: MONDAY + timedelta(days=days)


def test_ten_days_of_history_trains_nothing_and_says_why() -> None:
    s, _ = _stores(10)
    info = forecasting.train("hq", TrainRequest(target="consumption"), s, _at(10))
    assert (info.model, info.served) == ("seasonal_naive", False)
    assert info.reason == "10.0 days of history; a model needs 14: seasonal naive is served"
    out = forecasting.forecast("hq", "consumption", ForecastQuery(horizon_hours=2), caller(), s, _at(10))
    assert out.model == "seasonal_naive" and out.reason == info.reason
    assert len(out.values) == 8 and all(v.model == "seasonal_naive" for v in out.values)
    history = synthetic_kw(10)
    assert out.values[0].value_kw == pytest.approx(history[3 * DAY], abs=1e-3)  # 10 days - 7 = day 3, 00:00


@pytest.fixture(scope="module")
def trained() -> tuple[forecasting.Stores, object]:
    s, _ = _stores(22)
    info = forecasting.train("hq", TrainRequest(target="consumption"), s, _at(22))
    return s, info


def test_training_backtests_against_naive_and_serves_a_model_with_skill(trained: tuple) -> None:
    s, info = trained
    assert info.model == "hgb_decomposition" and info.backtest_days == 7
    assert info.skill is not None and info.skill > 0 and info.served and info.reason is None
    assert info.skill == pytest.approx(1 - info.mae_kw / info.naive_mae_kw, abs=2e-3)
    assert 0 <= info.interval_coverage_pct <= 100
    assert s.artifacts.get(info.artifact_key)  # stored, with its hash in the record
    out = forecasting.forecast(
        "hq", "consumption", ForecastQuery(horizon_hours=24, resolution="1h"), caller(), s, _at(22)
    )
    assert (out.model, out.reason, len(out.values)) == ("hgb_decomposition", None, 24)
    assert all(v.lower_kw <= v.value_kw <= v.upper_kw for v in out.values)


def test_a_tampered_artifact_serves_naive_with_the_reason(trained: tuple) -> None:
    s, info = trained
    fresh = forecasting.Stores(
        sites=s.sites, rollups=s.rollups, artifacts=MemoryArtifacts(), catalog=s.catalog, archive=s.archive
    )
    fresh.artifacts.put(info.artifact_key, s.artifacts.get(info.artifact_key)[:-1] + b"\x00")
    out = forecasting.forecast("hq", "consumption", ForecastQuery(horizon_hours=1), caller(), fresh, _at(22))
    assert out.model == "seasonal_naive"
    assert out.reason is not None and "refused" in out.reason and "seasonal naive is served" in out.reason


def test_a_model_that_cannot_beat_naive_is_not_served() -> None:
    s, _ = _stores(22, weekly_only=True)  # every week the same: naive is exact, its MAE 0
    info = forecasting.train("hq", TrainRequest(target="consumption"), s, _at(22))
    assert info.model == "hgb_decomposition" and info.naive_mae_kw == 0 and not info.served
    assert info.reason == "skill n/a <= 0 against seasonal naive on the backtest: seasonal naive is served"
    out = forecasting.forecast("hq", "consumption", ForecastQuery(horizon_hours=1), caller(), s, _at(22))
    assert out.model == "seasonal_naive" and out.reason == info.reason


def test_an_embargoed_token_gets_a_forecast_made_before_its_cut() -> None:
    s, rollups = _stores(10)
    limited = caller(embargo_minutes=120)
    q = ForecastQuery(horizon_hours=2)
    before = forecasting.forecast("hq", "consumption", q, limited, s, _at(10))
    assert before.history_until == (MONDAY + timedelta(days=10, hours=-2)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert before.values[0].start == (MONDAY + timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    last_two_hours = START_MS + 10 * DAY * SLOT_MS - 8 * SLOT_MS
    rollups.put("hq", "MAIN", last_two_hours, [500.0] * 8)  # what the token may not see yet
    assert forecasting.forecast("hq", "consumption", q, limited, s, _at(10)) == before
    # a token without the embargo sees the change (the naive interval spans the new week-over-week jump)
    assert forecasting.forecast("hq", "consumption", q, caller(), s, _at(10)).values != before.values


def test_a_token_limited_by_resolution_or_to_the_site_is_refused_finer_data() -> None:
    s, _ = _stores(10)
    with pytest.raises(Forbidden) as hourly:
        forecasting.forecast(
            "hq", "consumption", ForecastQuery(resolution="15m"), caller(time_aggregation="1h"), s, _at(10)
        )
    assert hourly.value.field == "resolution"
    out = forecasting.forecast(
        "hq", "consumption", ForecastQuery(horizon_hours=3), caller(time_aggregation="1h"), s, _at(10)
    )
    assert out.resolution == "1h" and len(out.values) == 3
    with pytest.raises(Forbidden) as one_sensor:
        forecasting.forecast(
            "hq", "consumption", ForecastQuery(sensor_id="MAIN"), caller(data_aggregation="site"), s, _at(10)
        )
    assert one_sensor.value.field == "sensor_id"


def test_the_scheduled_run_stores_each_target_and_the_port_reads_it_then_naive() -> None:
    s, _ = _stores(10)
    report = forecasting.store_forecasts(s, _at(10))
    assert (report.stored, report.skipped) == (2, 0)
    stored = s.archive.get_forecast("hq", "consumption")
    assert stored is not None and len(stored.value_kw) == 192 and stored.model == "seasonal_naive"
    assert stored.start_ms == START_MS + 10 * DAY * SLOT_MS
    naive_calls: list[tuple[int, int]] = []

    def naive(start_ms: int, slots: int) -> list[float]:
        naive_calls.append((start_ms, slots))
        return [-1.0] * slots

    # 47 h 30 min in: the last two stored slots, then two from the naive rule
    start = MONDAY + timedelta(days=10, hours=47, minutes=30)
    got = stored_or_naive(stored, naive, start, 4)
    assert got == [*stored.value_kw[190:192], -1.0, -1.0]
    assert naive_calls == [(int(start.timestamp() * 1000), 4)]
    assert stored_or_naive(None, naive, start, 2) == [-1.0, -1.0]


def test_stored_values_missing_in_the_middle_come_from_naive() -> None:
    stored = StoredForecast(
        "hq", "consumption", 0, 0, 15, [1.0, None, 3.0], [1.0, None, 3.0], [1.0, None, 3.0], "x"
    )
    assert stored_or_naive(
        stored, lambda start, n: [9.0] * n, MONDAY.replace(year=1970, month=1, day=1), 3
    ) == [1.0, 9.0, 3.0]


@pytest.mark.parametrize("days", [0, 29, 1.5, "7", True])
def test_backtest_days_must_be_a_whole_number_of_days_from_1_to_28(days: object) -> None:
    with pytest.raises(ValueError, match="backtest_days"):
        TrainRequest.model_validate({"target": "consumption", "backtest_days": days})
    assert TrainRequest(target="consumption").backtest_days == 7


def test_training_backtests_on_the_days_asked_for() -> None:
    s, _ = _stores(29)
    info = forecasting.train("hq", TrainRequest(target="consumption", backtest_days=14), s, _at(29))
    assert info.model == "hgb_decomposition" and info.backtest_days == 14
    assert info.mae_kw is not None and info.naive_mae_kw is not None
    assert info.skill == pytest.approx(1 - info.mae_kw / info.naive_mae_kw, abs=2e-3)
