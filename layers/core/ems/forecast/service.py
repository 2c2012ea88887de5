"""Training, backtesting and serving forecasts (the forecast function's logic; science layer).

- `train`: a series' history from the rollups (ems.forecast.history); under two weeks, seasonal
  naive with its reason. Otherwise a model trained on all but the last BACKTEST_DAYS is backtested
  on them against seasonal naive (MAE, MAPE, skill, 10-90% coverage), and that model is the one
  served; skill <= 0: naive is served and the record says so. The artifact goes to S3 with its SHA-256 in
  the models table (ems.forecast.artifacts).
- `forecast`: the route's answer, from the served model (loaded once per container and hash) or
  naive, within the token's data-sharing limits: an embargoed token's forecast is made from what it
  may see (history up to its cut), a coarser time_aggregation gets no finer resolution, one sensor's
  series needs per-sensor access.
- `store_forecasts`: the scheduled run, each site's next 48 h of each target, for other domains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import numpy as np

from ems.auth.models import Claims
from ems.core.clock import Clock, iso_ms, to_iso, utc_now
from ems.core.errors import Forbidden, NotFound
from ems.core.holidays import public_holidays
from ems.core.observability import logger
from ems.core.pagination import MAX_LIMIT, every
from ems.forecast import artifacts
from ems.forecast.features import Calendar, calendar_columns
from ems.forecast.history import SLOT_MS, sensors_of, series_kw
from ems.forecast.model import Model, Settings, accuracy
from ems.forecast.model import train as fit
from ems.forecast.models import (
    MODEL_NAME,
    RESOLUTION_MINUTES,
    SEASONAL_NAIVE,
    SLOT_MINUTES,
    STORED_HORIZON_HOURS,
    TARGETS,
    ForecastOut,
    ForecastQuery,
    ForecastValue,
    ModelInfo,
    ModelPage,
    Resolution,
    StoredForecast,
    StoreReport,
    Target,
    TrainReport,
    TrainRequest,
    series_of,
)
from ems.forecast.naive import DAY_MINUTES, naive_interval, naive_reason, seasonal_naive
from ems.forecast.ports import ArtifactStore, ForecastArchive, ModelCatalog, Rollups, SiteDirectory
from ems.registry.models import Site
from ems.telemetry import sharing

HISTORY_DAYS = 16 * 7  # read for training: the decomposition's 13 weeks and the backtest's week
SERVE_HISTORY_DAYS = 15 * 7  # read for a forecast: the features' longest reach
BACKTEST_DAYS = 7
TRAIN_HORIZON_HOURS = 48
DIGITS = 3


@dataclass
class ModelCache:
    """Models loaded in this container, by artifact hash (a new training run has a new hash)."""

    models: dict[str, Model] = field(default_factory=dict)


@dataclass(frozen=True)
class Stores:
    sites: SiteDirectory
    rollups: Rollups
    artifacts: ArtifactStore
    catalog: ModelCatalog
    archive: ForecastArchive
    cache: ModelCache = field(default_factory=ModelCache)
    holiday_country: str | None = None  # for sites that name no country
    tuning: dict[str, Any] = field(default_factory=dict)  # Settings' fields other than the defaults


def _slot_floor(ms: int) -> int:
    return ms - ms % SLOT_MS


def calendar_of(site: Site, years: list[int], holiday_country: str | None) -> Calendar:
    country = site.country or holiday_country  # the site's own wins; the deployment's default
    return Calendar(
        timezone=site.timezone, holidays=public_holidays(country, years),
        latitude=site.latitude, longitude=site.longitude,
    )  # fmt: skip


def _columns(site: Site, start_ms: int, count: int, s: Stores) -> Any:
    years = sorted({datetime.fromtimestamp(ms / 1000).year for ms in (start_ms, start_ms + count * SLOT_MS)})
    return calendar_columns(start_ms, count, SLOT_MINUTES, calendar_of(site, years, s.holiday_country))


def _history(
    site_id: str, target: Target, sensor_id: str | None, end_ms: int, days: int, s: Stores
) -> tuple[int, np.ndarray]:
    start_ms = end_ms - days * 86_400_000
    values = series_kw(s.sites, s.rollups, site_id, target, sensor_id, start_ms, end_ms)
    return start_ms, np.asarray(values, dtype=float)


def _trim_leading_gap(start_ms: int, values: np.ndarray) -> tuple[int, np.ndarray]:
    """The history from its first observed slot (a site younger than the window has none before)."""
    seen = np.flatnonzero(np.isfinite(values))
    if not len(seen):
        return start_ms, values[:0]
    return start_ms + int(seen[0]) * SLOT_MS, values[int(seen[0]) :]


# ---------------------------------------------------------------- training


def train(site_id: str, req: TrainRequest, s: Stores, now: Clock = utc_now) -> ModelInfo:
    site = s.sites.get_site(site_id)
    series = series_of(req.target, req.sensor_id)
    moment = now()
    end_ms = _slot_floor(int(moment.timestamp() * 1000))
    start_ms, values = _trim_leading_gap(
        *_history(
            site_id, req.target, req.sensor_id, end_ms, HISTORY_DAYS - BACKTEST_DAYS + req.backtest_days, s
        )
    )
    history_days = round(float(np.isfinite(values).sum()) * SLOT_MINUTES / DAY_MINUTES, 2)
    base = dict(site_id=site_id, series=series, target=req.target, sensor_id=req.sensor_id,
                trained_at=to_iso(moment), history_days=history_days)  # fmt: skip
    if not sensors_of(s.sites, site_id, req.target, req.sensor_id):
        info = ModelInfo(
            **base,
            model=SEASONAL_NAIVE,
            served=False,
            reason=f"the site has no sensor of {req.target}: seasonal naive is served",
        )
        s.catalog.put_model(info)
        return info
    why = naive_reason(values.tolist(), SLOT_MINUTES)
    if why is not None:
        info = ModelInfo(
            **base, model=SEASONAL_NAIVE, served=False, reason=f"{why}: seasonal naive is served"
        )
        s.catalog.put_model(info)
        return info
    columns = _columns(site, start_ms, len(values) + TRAIN_HORIZON_HOURS * 4, s)
    settings = Settings(
        horizon_slots=TRAIN_HORIZON_HOURS * 60 // SLOT_MINUTES, slot_minutes=SLOT_MINUTES, **s.tuning
    )
    try:
        model, metrics = backtest(values, columns, settings, req.backtest_days)
    except ValueError:  # too little complete history for a horizon to learn from
        why = (f"{history_days:g} days of history: too few to train on and then backtest on the last "
               f"{req.backtest_days}: seasonal naive is served")  # fmt: skip
        info = ModelInfo(**base, model=SEASONAL_NAIVE, served=False, reason=why)
        s.catalog.put_model(info)
        return info
    skill = metrics["skill"]
    served = skill is not None and skill > 0
    reason = (
        None
        if served
        else f"skill {_fmt(skill)} <= 0 against seasonal naive on the backtest: seasonal naive is served"
    )
    blob, digest = artifacts.dump(model)
    key = f"models/{site_id}/{series}/{end_ms}-{digest[:12]}.pkl"
    s.artifacts.put(key, blob)
    info = ModelInfo(**base, model=MODEL_NAME, served=served, reason=reason, artifact_key=key,
                     artifact_sha256=digest, **metrics)  # fmt: skip
    s.catalog.put_model(info)
    logger.info(
        "forecast model trained", extra={"site": site_id, "series": series, "skill": skill, "served": served}
    )
    return info


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def backtest(
    values: np.ndarray, columns: Any, settings: Settings, days: int = BACKTEST_DAYS
) -> tuple[Model, dict[str, Any]]:
    """Train on all but the last `days` (BACKTEST_DAYS unless POST /forecast/train asks), forecast at each day's origin of them (the horizons
    inside the data), against seasonal naive on the same slots. The model measured is the model
    served: its forecasts still see the newest history; only its trees and settings have not
    learned from the last `days` (one training instead of two: POST /forecast/train answers
    within the HTTP API's 30 s)."""
    day = DAY_MINUTES // SLOT_MINUTES
    holdout = days * day
    n = len(values)
    model = fit(values[: n - holdout], columns, settings)
    origins = [o for o in range(n - holdout, n - settings.horizon_slots + 1, day)] or [n - holdout]
    actual, value, lower, upper, naive = [], [], [], [], []
    for o in origins:
        slots = min(settings.horizon_slots, n - o)
        f = model.predict(values[:o], columns, slots)
        actual.append(values[o : o + slots])
        value.append(f.value)
        lower.append(f.lower)
        upper.append(f.upper)
        naive.append(np.asarray(seasonal_naive(values[:o].tolist(), SLOT_MINUTES, slots)))
    from ems.forecast.model import Forecast

    a = accuracy(
        np.concatenate(actual),
        Forecast(np.concatenate(value), np.concatenate(lower), np.concatenate(upper)),
        np.concatenate(naive),
    )
    return model, {
        "backtest_days": float(days), "mae_kw": _r(a.mae), "mape_pct": _r(a.mape_pct),
        "naive_mae_kw": _r(a.naive_mae), "skill": _r(a.skill), "interval_coverage_pct": _r(a.coverage_pct),
    }  # fmt: skip


def _r(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, DIGITS) + 0.0


def train_all(s: Stores, now: Clock = utc_now) -> TrainReport:
    """The nightly run: every site's consumption and generation."""
    report = TrainReport()
    for site in every(partial(s.sites.list_sites, None, MAX_LIMIT)):
        for target in TARGETS:
            if not sensors_of(s.sites, site.site_id, target, None):
                report.skipped += 1
                continue
            info = train(site.site_id, TrainRequest(target=target), s, now)
            if info.served:
                report.trained += 1
            else:
                report.naive += 1
    logger.info("forecast training run", extra=report.model_dump())
    return report


def list_models(site_id: str, limit: int, next_token: str | None, catalog: ModelCatalog) -> ModelPage:
    return catalog.list_models(site_id, limit, next_token)


# ---------------------------------------------------------------- serving


@dataclass(frozen=True)
class Made:
    start_ms: int
    value: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    model: str
    reason: str | None


def _served_model(info: ModelInfo | None, s: Stores) -> tuple[Model | None, str | None]:
    """The served model, or None with the reason naive is served instead."""
    if info is None:
        return None, "no model trained yet: seasonal naive is served"
    if not info.served or not info.artifact_key or not info.artifact_sha256:
        return None, info.reason or "no model is served: seasonal naive is served"
    cached = s.cache.models.get(info.artifact_sha256)
    if cached is not None:
        return cached, None
    try:
        model = artifacts.load(s.artifacts.get(info.artifact_key), info.artifact_sha256)
    except artifacts.TamperedArtifact as exc:
        logger.error("forecast artifact refused", extra={"key": info.artifact_key, "error": str(exc)})
        return None, f"the model's artifact was refused ({exc}): seasonal naive is served"
    except NotFound:
        return None, "the model's artifact is missing: seasonal naive is served"
    s.cache.models[info.artifact_sha256] = model
    return model, None


def make(site_id: str, target: Target, sensor_id: str | None, origin_ms: int, slots: int, s: Stores) -> Made:
    """Forecast `slots` 15-minute slots from `origin_ms` (a slot start), from history before it."""
    site = s.sites.get_site(site_id)
    start_ms, history = _history(site_id, target, sensor_id, origin_ms, SERVE_HISTORY_DAYS, s)
    model, reason = _served_model(s.catalog.get_model(site_id, series_of(target, sensor_id)), s)
    if model is not None:
        columns = _columns(site, start_ms, len(history) + slots, s)
        f = model.predict(history, columns, slots)
        return Made(origin_ms, f.value, f.lower, f.upper, MODEL_NAME, None)
    naive = np.asarray(seasonal_naive(history.tolist(), SLOT_MINUTES, slots))
    low, high = naive_interval(history.tolist(), SLOT_MINUTES)
    return Made(origin_ms, naive, naive + low, naive + high, SEASONAL_NAIVE, reason)


def _resolution(q: ForecastQuery, caller: Claims) -> Resolution:
    allowed: Resolution = "15m" if caller.time_aggregation == "raw" else caller.time_aggregation
    if q.resolution is None:
        return allowed
    if RESOLUTION_MINUTES[q.resolution] < RESOLUTION_MINUTES[allowed]:
        raise Forbidden(
            f"this token may read resolution {allowed} or coarser, not {q.resolution}", "resolution"
        )
    return q.resolution


def forecast(
    site_id: str, target: Target, q: ForecastQuery, caller: Claims, s: Stores, now: Clock = utc_now
) -> ForecastOut:
    if q.sensor_id is not None:
        sharing.check_sensor_series(caller)
    resolution = _resolution(q, caller)
    moment = now()
    now_ms = int(moment.timestamp() * 1000)
    cutoff = caller.embargo_cutoff_ms(moment)
    origin_ms = _slot_floor(now_ms if cutoff is None else cutoff)  # history the token may see, no newer
    width = RESOLUTION_MINUTES[resolution] * 60_000
    first_ms = now_ms - now_ms % width  # the buckets from the current one on
    end_ms = first_ms + q.horizon_hours * 3_600_000
    made = make(site_id, target, q.sensor_id, origin_ms, (end_ms - origin_ms) // SLOT_MS, s)
    values = _buckets(made, first_ms, end_ms, width)
    return ForecastOut(
        site_id=site_id, target=target, sensor_id=q.sensor_id, resolution=resolution,
        horizon_hours=q.horizon_hours, issued_at=to_iso(moment), history_until=iso_ms(origin_ms),
        model=made.model, reason=made.reason, values=values,
    )  # fmt: skip


def _mean(x: np.ndarray) -> float | None:
    finite = x[np.isfinite(x)]
    return round(float(finite.mean()), DIGITS) + 0.0 if len(finite) == len(x) and len(x) else None


def _buckets(made: Made, first_ms: int, end_ms: int, width: int) -> list[ForecastValue]:
    """Mean kW of each bucket of `width` (the 15-minute values in it; the bounds' means too, which
    is an interval for the bucket's mean as wide as its slots' on average)."""
    per = width // SLOT_MS
    out = []
    for start in range(first_ms, end_ms, width):
        i = (start - made.start_ms) // SLOT_MS
        sl = slice(max(i, 0), i + per)
        out.append(ForecastValue(start=iso_ms(start), value_kw=_mean(made.value[sl]), lower_kw=_mean(made.lower[sl]),
                                 upper_kw=_mean(made.upper[sl]), model=made.model))  # fmt: skip
    return out


def store_forecasts(s: Stores, now: Clock = utc_now) -> StoreReport:
    """The 15-minute run: each site's next STORED_HORIZON_HOURS of each target it has sensors for."""
    report = StoreReport()
    moment = now()
    origin_ms = _slot_floor(int(moment.timestamp() * 1000))
    slots = STORED_HORIZON_HOURS * 60 // SLOT_MINUTES
    for site in every(partial(s.sites.list_sites, None, MAX_LIMIT)):
        for target in TARGETS:
            if not sensors_of(s.sites, site.site_id, target, None):
                report.skipped += 1
                continue
            made = make(site.site_id, target, None, origin_ms, slots, s)
            s.archive.put_forecast(
                StoredForecast(
                    site_id=site.site_id,
                    series=target,
                    issued_at_ms=int(moment.timestamp() * 1000),
                    start_ms=origin_ms,
                    slot_minutes=SLOT_MINUTES,
                    value_kw=_list(made.value),
                    lower_kw=_list(made.lower),
                    upper_kw=_list(made.upper),
                    model=made.model,
                )
            )
            report.stored += 1
    logger.info("forecasts stored", extra=report.model_dump())
    return report


def _list(x: np.ndarray) -> list[float | None]:
    return [round(float(v), DIGITS) + 0.0 if math.isfinite(v) else None for v in x]
