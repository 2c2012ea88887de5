"""The forecast routes' requests and answers, the models' records and stored forecasts (no I/O,
no numpy: other domains import these)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import ConfigDict, Field

from ems.core.ids import USER_ID_PATTERN
from ems.core.models import Model
from ems.core.pagination import Page

Target = Literal["consumption", "generation"]
TARGETS: tuple[Target, ...] = ("consumption", "generation")
Resolution = Literal["15m", "1h", "1d"]
RESOLUTION_MINUTES: dict[str, int] = {"15m": 15, "1h": 60, "1d": 1440}
SLOT_MINUTES = 15  # models learn and forecast at the 15-minute rollups
STORED_HORIZON_HOURS = 48  # the scheduled run's forecast, read by other domains
MAX_HORIZON_HOURS = 168
SEASONAL_NAIVE = "seasonal_naive"
MODEL_NAME = "hgb_decomposition"


class ForecastQuery(Model):
    """GET /forecast/consumption|generation: its query string."""

    model_config = ConfigDict(extra="forbid")

    horizon_hours: int = Field(default=24, ge=1, le=MAX_HORIZON_HOURS)
    resolution: Resolution | None = None  # default: 15m, or the token's coarser time_aggregation
    sensor_id: str | None = Field(default=None, pattern=USER_ID_PATTERN)


class TrainRequest(Model):
    """POST /forecast/train."""

    model_config = ConfigDict(extra="forbid")

    target: Target
    sensor_id: str | None = Field(default=None, pattern=USER_ID_PATTERN)
    # the last backtest_days (whole days) are held out and forecast at each local midnight
    backtest_days: int = Field(default=7, ge=1, le=28, strict=True)


class ForecastValue(Model):
    start: str
    value_kw: float | None
    lower_kw: float | None
    upper_kw: float | None
    model: str


class ForecastOut(Model):
    site_id: str
    target: Target
    sensor_id: str | None = None
    resolution: Resolution
    horizon_hours: int
    issued_at: str
    history_until: str  # the newest data the forecast saw (an embargoed token's cut)
    model: str
    reason: str | None = None  # why seasonal naive is served, when it is
    values: list[ForecastValue]


class ModelInfo(Model):
    """A training run: what it made, how good it was on the weeks it did not train on, and
    whether it is served (and why not)."""

    site_id: str
    series: str  # "consumption", "generation" or "sensor#<id>"
    target: Target
    sensor_id: str | None = None
    model: str
    trained_at: str
    history_days: float
    backtest_days: float = 0.0
    mae_kw: float | None = None
    mape_pct: float | None = None
    naive_mae_kw: float | None = None
    skill: float | None = None  # 1 - MAE_model / MAE_naive on the backtest
    interval_coverage_pct: float | None = None  # actuals inside the 10-90% interval
    served: bool
    reason: str | None = None
    artifact_key: str | None = None
    artifact_sha256: str | None = None


ModelPage = Page[ModelInfo]


class TrainReport(Model):
    trained: int = 0
    naive: int = 0
    skipped: int = 0


class StoreReport(Model):
    stored: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class StoredForecast:
    """A site's forecast of one series as the scheduled run stored it: kW per slot from start_ms."""

    site_id: str
    series: str
    issued_at_ms: int
    start_ms: int
    slot_minutes: int
    value_kw: list[float | None]
    lower_kw: list[float | None]
    upper_kw: list[float | None]
    model: str


def series_of(target: Target, sensor_id: str | None) -> str:
    return f"sensor#{sensor_id}" if sensor_id else target
