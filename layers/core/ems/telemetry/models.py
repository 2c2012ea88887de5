"""Readings, ingest results and series: the telemetry routes' requests and responses (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints

from ems.core.ids import USER_ID_PATTERN
from ems.core.models import Model
from ems.registry.models import METRIC_PATTERN, ROOM_NAME_PATTERN, SENSOR_TYPE_PATTERN

Resolution = Literal["raw", "15m", "1h", "1d"]
Aggregate = Literal["mean", "sum", "min", "max", "last"]
GroupBy = Literal["sensor", "room", "site"]
TimeInput = str | int | float

# A room's climate and occupancy by sensor_type, and the metric each gives. A sensor of the type
# that reports one `value` (the original dashboard's sensors) counts too. Several sensors of one
# type in a room are averaged. By type, not metric: a water heater in the lobby has a
# temperature_c too, and it is not the lobby's.
ROOM_METRIC_OF_SENSOR_TYPE: dict[str, str] = {
    "temperature": "temperature_c",
    "humidity": "humidity_pct",
    "co2": "co2_ppm",
    "occupancy": "occupancy",
}
SensorId = Annotated[str, StringConstraints(pattern=USER_ID_PATTERN)]
RoomName = Annotated[str, StringConstraints(pattern=ROOM_NAME_PATTERN)]
SensorType = Annotated[str, StringConstraints(pattern=SENSOR_TYPE_PATTERN)]

MAX_READINGS_PER_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Reading:
    """One metric of one sensor at one time: the unit of storage and of idempotency."""

    site_id: str
    sensor_id: str
    metric: str
    ts_ms: int
    value: float
    # Where it counts in the site's and room's rollups (ems.telemetry.groups): the sensor's room and
    # type when the reading was stored.
    room: str | None = None
    sensor_type: str | None = None


class IngestRequest(Model):
    """POST /data/ingest. Readings stay raw here: each is checked on its own, so one bad reading
    is rejected with its index instead of failing the batch."""

    model_config = ConfigDict(extra="forbid")

    readings: list[Any]


class Rejection(Model):
    index: int
    reason: str


class IngestResult(Model):
    """`accepted` counts readings now stored, whether this request or an earlier one stored them
    (a retried batch answers the same); `duplicates` says how many of those were stored already."""

    accepted: int
    duplicates: int = 0
    rejected: list[Rejection] = Field(default_factory=list)


class SensorDataQuery(Model):
    """GET /sensors/{sensor_id}/data: its query string."""

    model_config = ConfigDict(extra="forbid")

    start_time: TimeInput | None = None
    end_time: TimeInput | None = None
    resolution: Resolution | None = None
    metric: str = Field(default="value", pattern=METRIC_PATTERN)
    aggregate: Aggregate = "mean"


class DataQuery(Model):
    """POST /data/query. Omitted `resolution` and `group_by` mean the finest the token may see."""

    model_config = ConfigDict(extra="forbid")

    sensor_ids: list[SensorId] | None = Field(default=None, min_length=1, max_length=500)
    rooms: list[RoomName] | None = Field(default=None, min_length=1, max_length=200)
    sensor_types: list[SensorType] | None = Field(default=None, min_length=1, max_length=50)
    metric: str = Field(pattern=METRIC_PATTERN)
    start_time: TimeInput
    end_time: TimeInput
    resolution: Resolution | None = None
    aggregate: Aggregate = "mean"
    group_by: GroupBy | None = None


class Point(Model):
    ts: str
    value: float
    count: int


class Series(Model):
    """One series: what /sensors/{id}/data answers."""

    metric: str
    resolution: Resolution
    aggregate: Aggregate
    key: str
    points: list[Point]


class KeyedPoints(Model):
    key: str
    points: list[Point]


class SeriesSet(Model):
    """What /data/query answers: one series per sensor, room or site by `group_by`."""

    metric: str
    resolution: Resolution
    aggregate: Aggregate
    group_by: GroupBy
    series: list[KeyedPoints]


# ---------------------------------------------------------------- the domain event


TELEMETRY_SOURCE = "ems.telemetry"
TELEMETRY_RECEIVED = "TelemetryReceived"


class ReceivedReading(Model):
    """One sensor's metrics at one time, as `TelemetryReceived` carries it (ts in epoch ms)."""

    sensor_id: str
    room: str | None = None
    sensor_type: str | None = None
    ts: int
    metrics: dict[str, float]


class TelemetryReceived(Model):
    """The detail of a `TelemetryReceived` event: readings newly stored for one site, after a batch."""

    site: str
    readings: list[ReceivedReading]
