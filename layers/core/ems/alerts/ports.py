"""What alerts need from other domains, in their own words.

Implemented by ems.registry.store.RegistryStore (SensorDirectory) and ems.telemetry's sensor status
store (LatestReadings, declared once in ems.registry.status); functions/alerts/app.py wires them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from ems.core.pagination import Page
from ems.registry.models import Sensor, Site


class SensorDirectory(Protocol):
    """The sites, and each site's sensors with their thresholds."""

    def get_sensors(self, site_id: str, sensor_ids: Iterable[str]) -> dict[str, Sensor]: ...
    def list_sensors(
        self, site_id: str, room: str | None, sensor_type: str | None, limit: int, next_token: str | None
    ) -> Page[Sensor]: ...
    def list_sites(self, site_ids: list[str] | None, limit: int, next_token: str | None) -> Page[Site]: ...
