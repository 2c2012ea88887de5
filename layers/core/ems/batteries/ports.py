"""What the batteries domain needs, in its own words: its records, and of other domains the site's
sensors (which report for the battery's inverter), their newest readings and 15-minute history, and
device commands.

Implemented by ems.batteries.store (BatteryStore), ems.registry.store.RegistryStore (SiteDirectory),
ems.telemetry's status store (LatestReadings, declared once in ems.registry.status), the telemetry
store (Rollups) and ems.devices.service.DeviceCommands; functions/batteries/app.py wires them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ems.batteries.models import Battery
from ems.core.pagination import Page
from ems.devices.commands import Source
from ems.devices.models import Command, Released
from ems.registry.models import Sensor, Site
from ems.registry.status import LatestReadings
from ems.telemetry.rollup import Bucket

__all__ = ["BatteryRecords", "DeviceCommands", "LatestReadings", "Rollups", "SiteDirectory", "Stores"]


class BatteryRecords(Protocol):
    """`get` raises NotFound; `create` raises Conflict when the battery exists."""

    def create(self, battery: Battery) -> Battery: ...
    def get(self, site_id: str, battery_id: str) -> Battery: ...
    def replace(self, battery: Battery) -> Battery: ...
    def delete(self, site_id: str, battery_id: str) -> None: ...
    def page(self, site_id: str, limit: int, next_token: str | None) -> Page[Battery]: ...


class SiteDirectory(Protocol):
    """The site (`get_site` raises NotFound) and its sensors (which device each reports for)."""

    def get_site(self, site_id: str) -> Site: ...
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


class DeviceCommands(Protocol):
    """Commands to the battery's inverter under the devices domain's control priority (a refusal by a
    higher controller is a Conflict naming it)."""

    def send(
        self,
        site: str,
        device_id: str,
        command: str,
        params: dict[str, Any],
        source: Source,
        command_id: str | None = None,
    ) -> Command: ...

    def release(self, site: str, device_id: str, source: Source) -> Released: ...


@dataclass(frozen=True)
class Stores:
    batteries: BatteryRecords
    sites: SiteDirectory
    latest: LatestReadings
    rollups: Rollups
    devices: DeviceCommands | None = None
