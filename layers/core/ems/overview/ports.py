"""What the overview needs from other domains, in its own words. It has no store of its own.

Implemented by ems.registry.store.RegistryStore (SiteDirectory, TariffSource), ems.telemetry's stores
(Rollups; LatestReadings, declared once in ems.registry.status) and ems.alerts.store (OpenAlerts);
functions/overview/app.py wires them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ems.core.pagination import Page
from ems.registry.models import Room, Sensor, Site
from ems.tariffs.models import Tariff
from ems.telemetry.rollup import Bucket


class SiteDirectory(Protocol):
    """The site, its rooms and its sensors. `get_*` raise NotFound."""

    def get_site(self, site_id: str) -> Site: ...
    def get_room(self, site_id: str, name: str) -> Room: ...
    def list_rooms(self, site_id: str, limit: int, next_token: str | None) -> Page[Room]: ...
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


class TariffSource(Protocol):
    """The site's own tariff, or None when it has set none."""

    def get_tariff(self, site_id: str) -> Tariff | None: ...


class OpenAlerts(Protocol):
    """How many alerts a site has open."""

    def count_open(self, site_id: str) -> int: ...
