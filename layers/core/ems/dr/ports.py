"""What demand response needs: its own store (ems.dr.store.InvitationStore) and, in its own words,
what it needs of other domains: the site's devices and hourly plan (ems.devices.store.DeviceStore),
the site and its sensors (ems.registry.store.RegistryStore), each sensor's newest reading
(ems.telemetry.store.SensorStatusStore) and the batteries' dischargeable power (ems.batteries).
functions/dr/app.py wires them; tests pass in-memory fakes (tests/support/fakes_dr.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from ems.core.pagination import Page
from ems.devices.models import Device, Shadow
from ems.dr.models import AutoResponse, Invitation
from ems.ledger.models import LedgerEntry
from ems.registry.models import Sensor, Site
from ems.telemetry.rollup import Bucket


class InvitationStore(Protocol):
    def create(self, invitation: Invitation) -> tuple[Invitation, bool]:
        """Store a new invitation; when its id is taken, the stored one and False (a retried send)."""
        ...

    def get(self, site_id: str, invitation_id: str) -> Invitation: ...  # NotFound
    def save(self, invitation: Invitation) -> Invitation:
        """Write a changed invitation on the condition that its stored version is `version - 1`;
        Conflict when another writer changed it first."""
        ...

    def page(
        self, site_id: str, newest_first: bool, limit: int, next_token: str | None
    ) -> Page[Invitation]: ...
    def at_start(self, site_id: str, start_ms: int) -> list[Invitation]: ...
    def get_settings(self, site_id: str) -> AutoResponse: ...
    def put_settings(self, site_id: str, settings: AutoResponse) -> AutoResponse: ...


class SiteDevices(Protocol):
    """The site's devices and its hourly plan (device -> local hour -> instruction)."""

    def page(self, site_id: str, limit: int, next_token: str | None) -> Page[Device]: ...
    def get_plan(self, site_id: str) -> dict[str, dict[str, str]]: ...


class SiteDirectory(Protocol):
    def get_site(self, site_id: str) -> Site: ...  # NotFound
    def list_sensors(
        self, site_id: str, room: str | None, sensor_type: str | None, limit: int, next_token: str | None
    ) -> Page[Sensor]: ...


class Dischargeable(Protocol):
    """What one battery can give now (ems.batteries.models.DischargeableBattery)."""

    @property
    def battery_id(self) -> str: ...
    @property
    def device_id(self) -> str | None: ...
    @property
    def soc_pct(self) -> float | None: ...
    @property
    def available_kw(self) -> float: ...
    @property
    def available_kwh(self) -> float: ...


class BatteryFleet(Protocol):
    def dischargeable(self, site: str, window_minutes: int) -> Sequence[Dischargeable]: ...


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


class Forecasts(Protocol):
    """The site's consumption and generation (kW) per 15-minute slot from `start` (ems.forecast)."""

    def consumption_kw(self, site: str, start: datetime, slots: int) -> Sequence[float | None]: ...
    def generation_kw(self, site: str, start: datetime, slots: int) -> Sequence[float | None]: ...


class CommandSent(Protocol):
    """What demand response reads of a command it sent (ems.devices.models.Command)."""

    @property
    def command_id(self) -> str: ...
    @property
    def status(self) -> str: ...


class DeviceShadows(Protocol):
    """A device's classic shadow (ems.devices.store.IotCoreCloud): its reported state tells whether
    a load was on before the event."""

    def shadow(self, thing: str) -> Shadow: ...


class CommandStates(Protocol):
    """A command's state as its device answered (ems.devices.store.CommandStore); None: unknown."""

    def get(self, site_id: str, device_id: str, command_id: str) -> CommandSent | None: ...


class DeviceCommands(Protocol):
    """Commands through the devices domain (ems.devices.service.DeviceCommands): DR is its highest
    control priority; a command_id sent twice is one command; release hands the device back to its
    next holder's wish. Raises Conflict, Invalid or NotFound as that domain does."""

    def send(
        self, site: str, device_id: str, command: str, params: dict[str, Any], source: Any,
        command_id: str | None = None,
    ) -> CommandSent: ...  # fmt: skip
    def release(self, site: str, device_id: str, source: Any) -> Any: ...


class Schedules(Protocol):
    """One-time EventBridge Scheduler schedules that invoke the DR function with `payload`."""

    def put_at(self, name: str, at: datetime, payload: dict[str, Any]) -> None: ...
    def delete(self, name: str) -> None: ...


class Ledger(Protocol):
    """ems.ledger.store.LedgerStore: entries keyed by (source, source id, site), written once."""

    def post(self, entries: Sequence[LedgerEntry]) -> int: ...
    def entries(self, site_id: str, limit: int, next_token: str | None) -> Page[LedgerEntry]: ...
