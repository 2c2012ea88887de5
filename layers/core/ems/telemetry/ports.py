"""The ports of telemetry: where readings are stored (`TelemetryStore`, with two adapters, DynamoDB in
ems.telemetry.store and Timestream in ems.telemetry.timestream), where each sensor's newest reading is
kept (`SensorStatus`), and what ingest and queries need of the registry (`SensorDirectory`,
implemented by ems.registry.store.RegistryStore, wired in functions/telemetry/app.py)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ems.core.pagination import Page
from ems.registry.models import Room, Sensor
from ems.registry.status import Heard, LatestReadings
from ems.telemetry.models import Reading
from ems.telemetry.rollup import Bucket


@dataclass
class WriteOutcome:
    """What a write did: how many readings it created, and which were stored already."""

    created: int = 0
    duplicates: set[tuple[str, str, int]] = field(default_factory=set)  # (sensor, metric, ts_ms)


class TelemetryStore(Protocol):
    """Storage of readings and their rollups."""

    def write(self, readings: Sequence[Reading]) -> WriteOutcome:
        """Store readings (distinct by sensor, metric, ts) idempotently, with their rollups."""
        ...

    def read_raw(
        self, site_id: str, sensor_ids: Sequence[str], metric: str, start_ms: int, end_ms: int, limit: int
    ) -> dict[str, list[tuple[int, float]]]:
        """(ts_ms, value) of each sensor in [start_ms, end_ms), in time order; stops past `limit` in all."""
        ...

    def read_rollups(
        self,
        site_id: str,
        sensor_ids: Sequence[str],
        metric: str,
        resolution: str,
        start_ms: int,
        end_ms: int,
    ) -> dict[str, dict[int, Bucket]]:
        """Buckets of each sensor whose start is in [start_ms, end_ms), by bucket start."""
        ...


@runtime_checkable
class GroupRollups(Protocol):
    """A store that keeps site and room rollups (ems.telemetry.groups); the DynamoDB one does. Without
    it, a room or site series is its sensors' rollups merged at read time."""

    def read_groups(
        self, site_id: str, scopes: Sequence[str], metric: str, resolution: str, start_ms: int, end_ms: int
    ) -> dict[str, dict[int, dict[str, Bucket]]]:
        """Each scope's buckets whose start is in [start_ms, end_ms), by start, then by sensor type."""
        ...


class SensorStatus(LatestReadings, Protocol):
    """Keeps each sensor's newest reading (`record` moves it forward only and returns how many moved)
    and reads it (`get`)."""

    def record(self, site_id: str, heard: Sequence[Heard]) -> int: ...


class DeadLetters(Protocol):
    """Where a message that can never be ingested goes, as it came, with the reason."""

    def send(self, body: str, reason: str, message_id: str) -> None: ...


class SensorDirectory(Protocol):
    """The site's sensors (what ingest validates against) and rooms. `get_*` raise NotFound."""

    def site_exists(self, site_id: str) -> bool: ...
    def get_sensor(self, site_id: str, sensor_id: str) -> Sensor: ...
    def get_sensors(self, site_id: str, sensor_ids: Iterable[str]) -> dict[str, Sensor]: ...
    def get_room(self, site_id: str, name: str) -> Room: ...
    def list_sensors(
        self, site_id: str, room: str | None, sensor_type: str | None, limit: int, next_token: str | None
    ) -> Page[Sensor]: ...
