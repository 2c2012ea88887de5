"""What forecasting needs from other domains and from its own stores, in its own words.

Implemented by ems.registry.store.RegistryStore (SiteDirectory), ems.telemetry's rollup store
(Rollups) and ems.forecast.store (ArtifactStore, ModelCatalog, ForecastArchive);
functions/forecast/app.py wires them. Other domains read stored forecasts through their own
`Forecasts` port, which ems.forecast.store.ForecastStore implements.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ems.core.pagination import Page
from ems.forecast.models import ModelInfo, StoredForecast
from ems.registry.models import Sensor, Site
from ems.telemetry.rollup import Bucket


class SiteDirectory(Protocol):
    """The sites and their sensors. `get_site` raises NotFound."""

    def get_site(self, site_id: str) -> Site: ...
    def list_sites(self, site_ids: list[str] | None, limit: int, next_token: str | None) -> Page[Site]: ...
    def list_sensors(
        self, site_id: str, room: str | None, sensor_type: str | None, limit: int, next_token: str | None
    ) -> Page[Sensor]: ...


class Rollups(Protocol):
    """Buckets of each sensor's metric whose start is in [start_ms, end_ms), by bucket start."""

    def read_rollups(
        self,
        site_id: str,
        sensor_ids: Sequence[str],
        metric: str,
        resolution: str,
        start_ms: int,
        end_ms: int,
    ) -> dict[str, dict[int, Bucket]]: ...


class ArtifactStore(Protocol):
    """Trained models' bytes by key. `get` raises NotFound."""

    def put(self, key: str, blob: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...


class ModelCatalog(Protocol):
    """The latest training run of each of a site's series."""

    def put_model(self, info: ModelInfo) -> None: ...
    def get_model(self, site_id: str, series: str) -> ModelInfo | None: ...
    def list_models(self, site_id: str, limit: int, next_token: str | None) -> Page[ModelInfo]: ...


class ForecastArchive(Protocol):
    """The scheduled run's latest forecast of each of a site's series."""

    def put_forecast(self, forecast: StoredForecast) -> None: ...
    def get_forecast(self, site_id: str, series: str) -> StoredForecast | None: ...
