"""Forecasting's stores: artifacts in S3 (FORECAST_BUCKET), models and stored forecasts in one
DynamoDB table (FORECAST_TABLE) through one PynamoDB model. Pure Python: other domains read stored
forecasts through `ForecastStore` (their `Forecasts` port) without numpy or scikit-learn.

Keys: pk = site id; sk = "MODEL#<series>" (the latest training run's record, ModelInfo as JSON) or
"FORECAST#<series>" (the scheduled run's latest forecast). One writer each: training writes models,
the 15-minute run writes forecasts; a retried write puts the same item again (idempotent).
"""

from __future__ import annotations

import math
import os
from datetime import datetime
from typing import Any

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist
from pynamodb.models import Model

from ems.core.aws import client, error_code
from ems.core.errors import NotFound
from ems.core.pagination import Page, decode_token, encode_token
from ems.core.tables import EnvRegion, EnvTableName
from ems.forecast.history import SLOT_MS, series_kw
from ems.forecast.models import SLOT_MINUTES, ModelInfo, StoredForecast, Target
from ems.forecast.naive import seasonal_naive, slots_per_week
from ems.forecast.ports import Rollups, SiteDirectory

MODEL = "MODEL#"
FORECAST = "FORECAST#"


class ForecastItem(Model):
    class Meta:
        table_name = EnvTableName("FORECAST_TABLE", "ems-dev-forecast")
        region = EnvRegion()

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    doc = JSONAttribute()
    at = NumberAttribute(null=True)  # epoch ms: trained or issued


class ArtifactBucket:
    """Artifacts' bytes in S3, by key; the bucket FORECAST_BUCKET's unless named."""

    def __init__(self, bucket: str | None = None) -> None:
        self._bucket = bucket

    @property
    def bucket(self) -> str:
        return self._bucket or os.environ.get("FORECAST_BUCKET", "ems-dev-forecast")

    def put(self, key: str, blob: bytes) -> None:
        client("s3").put_object(Bucket=self.bucket, Key=key, Body=blob)

    def get(self, key: str) -> bytes:
        try:
            body: bytes = client("s3").get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                raise NotFound(f"no artifact {key!r}", "artifact_key") from exc
            raise
        return body


class ForecastStore:
    """Models' records and stored forecasts. With `sites` and `rollups` it also serves the
    `Forecasts` port of other domains: stored values, and seasonal naive where none is stored."""

    def __init__(self, sites: SiteDirectory | None = None, rollups: Rollups | None = None) -> None:
        self.sites, self.rollups = sites, rollups

    # ------------------------------------------------------------ models

    def put_model(self, info: ModelInfo) -> None:
        at = int(datetime.fromisoformat(info.trained_at.replace("Z", "+00:00")).timestamp() * 1000)
        ForecastItem(info.site_id, MODEL + info.series, doc=info.model_dump(mode="json"), at=at).save()

    def get_model(self, site_id: str, series: str) -> ModelInfo | None:
        try:
            item = ForecastItem.get(site_id, MODEL + series, consistent_read=True)
        except DoesNotExist:
            return None
        return ModelInfo.model_validate(item.doc)

    def list_models(self, site_id: str, limit: int, next_token: str | None) -> Page[ModelInfo]:
        start: Any = decode_token(next_token, ("pk", "sk"))
        result = ForecastItem.query(
            site_id, ForecastItem.sk.startswith(MODEL), limit=limit, last_evaluated_key=start
        )
        items = [ModelInfo.model_validate(item.doc) for item in result]
        return Page(items=items, count=len(items), next_token=encode_token(result.last_evaluated_key))

    # ------------------------------------------------------------ forecasts

    def put_forecast(self, forecast: StoredForecast) -> None:
        doc = {
            "start_ms": forecast.start_ms, "slot_minutes": forecast.slot_minutes, "value_kw": forecast.value_kw,
            "lower_kw": forecast.lower_kw, "upper_kw": forecast.upper_kw, "model": forecast.model,
        }  # fmt: skip
        ForecastItem(forecast.site_id, FORECAST + forecast.series, doc=doc, at=forecast.issued_at_ms).save()

    def get_forecast(self, site_id: str, series: str) -> StoredForecast | None:
        try:
            item = ForecastItem.get(site_id, FORECAST + series)
        except DoesNotExist:
            return None
        d = item.doc
        return StoredForecast(
            site_id=site_id, series=series, issued_at_ms=int(item.at or 0), start_ms=int(d["start_ms"]),
            slot_minutes=int(d["slot_minutes"]), value_kw=d["value_kw"], lower_kw=d["lower_kw"],
            upper_kw=d["upper_kw"], model=d["model"],
        )  # fmt: skip

    # ------------------------------------------------------------ the Forecasts port

    def consumption_kw(self, site: str, start: datetime, slots: int) -> list[float]:
        return self._kw(site, "consumption", start, slots)

    def generation_kw(self, site: str, start: datetime, slots: int) -> list[float]:
        return self._kw(site, "generation", start, slots)

    def _kw(self, site_id: str, target: Target, start: datetime, slots: int) -> list[float]:
        return stored_or_naive(self.get_forecast(site_id, target), self._naive(site_id, target), start, slots)

    def _naive(self, site_id: str, target: Target) -> Any:
        def read(start_ms: int, slots: int) -> list[float]:
            if self.sites is None or self.rollups is None:
                return [math.nan] * slots
            week_ms = slots_per_week(SLOT_MINUTES) * SLOT_MS
            weeks = slots // slots_per_week(SLOT_MINUTES) + 2  # enough weeks for a missing slot's fallback
            history = series_kw(
                self.sites, self.rollups, site_id, target, None, start_ms - weeks * week_ms, start_ms
            )
            return seasonal_naive(history, SLOT_MINUTES, slots)

        return read


def stored_or_naive(stored: StoredForecast | None, naive: Any, start: datetime, slots: int) -> list[float]:
    """kW in each 15-minute slot from `start` (floored to its slot): the stored forecast's value where
    it has one, the seasonal-naive rule's (`naive(start_ms, slots)`) elsewhere; NaN where neither knows."""
    start_ms = int(start.timestamp() * 1000)
    start_ms -= start_ms % SLOT_MS
    values: list[float | None] = [None] * slots
    if stored is not None and stored.slot_minutes == SLOT_MINUTES:
        offset = (start_ms - stored.start_ms) // SLOT_MS
        for k in range(slots):
            if 0 <= offset + k < len(stored.value_kw):
                values[k] = stored.value_kw[offset + k]
    if any(v is None for v in values):
        fallback = naive(start_ms, slots)
        values = [fallback[k] if v is None else v for k, v in enumerate(values)]
    return [math.nan if v is None else float(v) for v in values]
