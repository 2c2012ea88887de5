"""In-memory fakes of forecasting's ports (ems.forecast.ports), for the unit tier, and synthetic
series: each fake keeps the contract of its adapter in ems.forecast.store (NotFound for a missing
artifact, the latest record per series, pages with an opaque next_token)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

from ems.core.errors import NotFound
from ems.core.pagination import Page
from ems.forecast.models import ModelInfo, StoredForecast
from ems.forecast.store import MODEL
from ems.telemetry.rollup import Bucket
from tests.support.fakes import _after, _page

SLOT_MS = 15 * 60_000
# A Monday, 00:00 UTC: a series starting here has its weekdays where one expects them.
MONDAY = datetime(2026, 1, 5, tzinfo=UTC)


def synthetic_kw(days: int, seed: int = 1, weekly_only: bool = False) -> list[float]:
    """15-minute consumption (kW) of an office-like building: a daily shape, weekends lower, and
    noise from a fixed-seed generator (none with `weekly_only`: then every week repeats exactly)."""
    import random

    rng = random.Random(seed)
    out = []
    for k in range(days * 96):
        slot, weekday = k % 96, (k // 96) % 7
        hour = slot / 4
        shape = 10 + 15 * math.exp(-(((hour - 13) / 4) ** 2))
        if weekday >= 5:
            shape = 10 + 4 * math.exp(-(((hour - 13) / 4) ** 2))
        out.append(shape if weekly_only else shape + rng.gauss(0, 1.0))
    return out


class SeriesRollups:
    """Rollups of `power_w` from kW series: one bucket per 15 minutes, each as one reading."""

    def __init__(self) -> None:
        self.kw: dict[tuple[str, str], dict[int, float]] = {}

    def put(self, site_id: str, sensor_id: str, start_ms: int, values_kw: Sequence[float]) -> None:
        series = self.kw.setdefault((site_id, sensor_id), {})
        for k, v in enumerate(values_kw):
            series[start_ms + k * SLOT_MS] = v

    def read_rollups(
        self,
        site_id: str,
        sensor_ids: Sequence[str],
        metric: str,
        resolution: str,
        start_ms: int,
        end_ms: int,
    ) -> dict[str, dict[int, Bucket]]:
        assert metric == "power_w" and resolution == "15m"
        out: dict[str, dict[int, Bucket]] = {}
        for sensor_id in sensor_ids:
            series = self.kw.get((site_id, sensor_id), {})
            out[sensor_id] = {
                at: Bucket.of(at, kw * 1000)
                for at, kw in sorted(series.items())
                if start_ms <= at < end_ms and not math.isnan(kw)
            }
        return out


class MemoryArtifacts:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def put(self, key: str, blob: bytes) -> None:
        self.blobs[key] = bytes(blob)

    def get(self, key: str) -> bytes:
        if key not in self.blobs:
            raise NotFound(f"no artifact {key!r}", "artifact_key")
        return self.blobs[key]


class MemoryForecasts:
    """ModelCatalog and ForecastArchive in memory (ForecastStore's item per site and series)."""

    def __init__(self) -> None:
        self.models: dict[tuple[str, str], ModelInfo] = {}
        self.forecasts: dict[tuple[str, str], StoredForecast] = {}

    def put_model(self, info: ModelInfo) -> None:
        self.models[(info.site_id, info.series)] = info.model_copy(deep=True)

    def get_model(self, site_id: str, series: str) -> ModelInfo | None:
        held = self.models.get((site_id, series))
        return None if held is None else held.model_copy(deep=True)

    def list_models(self, site_id: str, limit: int, next_token: str | None) -> Page[ModelInfo]:
        after = _after(next_token, ("pk", "sk"), "sk")
        keyed = [(MODEL + series, info) for (site, series), info in self.models.items() if site == site_id]
        return _page(keyed, limit, after, lambda sk: {"pk": site_id, "sk": sk})

    def put_forecast(self, forecast: StoredForecast) -> None:
        self.forecasts[(forecast.site_id, forecast.series)] = forecast

    def get_forecast(self, site_id: str, series: str) -> StoredForecast | None:
        return self.forecasts.get((site_id, series))
