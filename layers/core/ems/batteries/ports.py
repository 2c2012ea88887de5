"""What the batteries domain needs, in its own words: its records, and of other domains the site's
sensors (which report for the battery's inverter), their newest readings and 15-minute history, and
device commands; for the optimiser also forecasts, the tariff, applied plans, the Scheduler and
events.

Implemented by ems.batteries.store (BatteryStore), ems.registry.store.RegistryStore (SiteDirectory),
ems.telemetry's status store (LatestReadings, declared once in ems.registry.status), the telemetry
store (Rollups) and ems.devices.service.DeviceCommands; functions/batteries/app.py wires them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ems.batteries.models import AppliedPlan, Battery, PlanResult, PlanRun
from ems.core.events import EventPublisher
from ems.core.pagination import Page
from ems.devices.commands import Source
from ems.devices.models import Command, Released
from ems.registry.models import Sensor, Site
from ems.registry.status import LatestReadings
from ems.tariffs.models import Tariff
from ems.telemetry.rollup import Bucket

__all__ = [
    "BatteryRecords", "DeviceCommands", "Forecasts", "LatestReadings", "PlanRecords", "Rollups", "Scheduler",
    "SiteDirectory", "Stores", "TariffSource",
]  # fmt: skip


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


class Forecasts(Protocol):
    """The site's load (consumption without the batteries) and PV generation, kW per 15-minute slot
    from `start`."""

    def consumption_kw(self, site: str, start: datetime, slots: int) -> list[float]: ...
    def generation_kw(self, site: str, start: datetime, slots: int) -> list[float]: ...


class TariffSource(Protocol):
    """The site's own tariff, or None when it has set none."""

    def get_tariff(self, site_id: str) -> Tariff | None: ...


class PlanRecords(Protocol):
    """Applied plans, one per battery. `get_plan` raises NotFound; `add_run` appends a re-plan and
    replaces the latest result, on the condition that the plan is still there (False when stopped)."""

    def put_plan(self, plan: AppliedPlan) -> None: ...
    def get_plan(self, site_id: str, battery_id: str) -> AppliedPlan: ...
    def add_run(self, site_id: str, battery_id: str, run: PlanRun, latest: PlanResult) -> bool: ...
    def delete_plan(self, site_id: str, battery_id: str) -> None: ...
    def plans(self, site_id: str) -> list[AppliedPlan]: ...


class Scheduler(Protocol):
    """EventBridge Scheduler: a schedule invoking the optimiser's function with `payload`."""

    def put(self, name: str, expression: str, payload: str) -> None: ...
    def delete(self, name: str) -> None: ...


@dataclass(frozen=True)
class Stores:
    batteries: BatteryRecords
    sites: SiteDirectory
    latest: LatestReadings
    rollups: Rollups
    devices: DeviceCommands | None = None
    # The optimiser's function's, and the summary's plans:
    plans: PlanRecords | None = None
    forecasts: Forecasts | None = None
    tariffs: TariffSource | None = None
    scheduler: Scheduler | None = None
    events: EventPublisher | None = None
