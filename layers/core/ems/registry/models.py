"""Requests and responses of sites, rooms and sensors (no I/O)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from ems.core.holidays import unknown_country
from ems.core.ids import USER_ID_PATTERN
from ems.core.models import Model

# Room names are the seed's free text ("Conference Room A"), but they sit in URL paths and keys.
ROOM_NAME_PATTERN = r"^[^/#?\x00-\x1f]{1,100}$"
METRIC_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
SENSOR_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


class Threshold(Model):
    """An alert rule on one metric of a sensor (ems.alerts): a value outside [min, max] for at least
    `for_minutes` (judged by the readings' times) raises an alert of `severity`; back inside clears it."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = None
    max: float | None = None
    for_minutes: int = Field(default=0, ge=0, le=7 * 24 * 60)
    severity: Literal["info", "warning", "critical"] = "warning"

    @model_validator(mode="after")
    def _ordered(self) -> Threshold:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not be greater than max")
        return self


def _check_timezone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{value!r} is not an IANA time zone (like Europe/Berlin)") from exc
    return value


def _check_country(value: str | None) -> str | None:
    """ISO 3166-1 alpha-2, optionally with a subdivision, one the `holidays` package knows
    (forecasting and demand response take the site's holidays from it)."""
    why = None if value is None else unknown_country(value)
    if why is not None:
        raise ValueError(why)
    return value


class SiteIn(Model):
    model_config = ConfigDict(extra="forbid")

    site_id: str = Field(pattern=USER_ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    timezone: str = "UTC"
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    country: str | None = None  # ISO 3166, for public holidays

    _tz = field_validator("timezone")(classmethod(lambda cls, v: _check_timezone(v)))
    _country = field_validator("country")(classmethod(lambda cls, v: _check_country(v)))


class SiteUpdate(Model):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: str | None = None
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    country: str | None = None  # null clears it

    _tz = field_validator("timezone")(classmethod(lambda cls, v: v if v is None else _check_timezone(v)))
    _country = field_validator("country")(classmethod(lambda cls, v: _check_country(v)))


class Site(SiteIn):
    created_at: datetime
    updated_at: datetime


class RoomIn(Model):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=ROOM_NAME_PATTERN)
    floor: str | None = Field(default=None, max_length=50)
    capacity: int | None = Field(default=None, ge=0, le=1_000_000)
    area_m2: float | None = Field(default=None, gt=0, le=10_000_000)
    description: str | None = Field(default=None, max_length=2000)

    @field_validator("name")
    @classmethod
    def _trimmed(cls, value: str) -> str:
        if value != value.strip():
            raise ValueError("must not start or end with spaces")
        return value


class RoomUpdate(Model):
    model_config = ConfigDict(extra="forbid")

    floor: str | None = Field(default=None, max_length=50)
    capacity: int | None = Field(default=None, ge=0, le=1_000_000)
    area_m2: float | None = Field(default=None, gt=0, le=10_000_000)
    description: str | None = Field(default=None, max_length=2000)


class Room(RoomIn):
    site_id: str
    sensor_count: int = 0
    created_at: datetime
    updated_at: datetime


def _check_thresholds(value: dict[str, Threshold] | None) -> dict[str, Threshold] | None:
    for metric in value or {}:
        if not re.match(METRIC_PATTERN, metric):
            raise ValueError(f"{metric!r} is not a metric name (lower case, digits, _)")
    return value


class SensorIn(Model):
    model_config = ConfigDict(extra="forbid")

    sensor_id: str = Field(pattern=USER_ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    sensor_type: str = Field(pattern=SENSOR_TYPE_PATTERN)
    room: str | None = Field(default=None, pattern=ROOM_NAME_PATTERN)
    unit: str | None = Field(default=None, max_length=32)
    device_id: str | None = Field(default=None, pattern=USER_ID_PATTERN)
    thresholds: dict[str, Threshold] | None = None
    metadata: dict[str, Any] | None = None
    # How often it reports; offline after 3 missed intervals (ems.registry.status; default 300 s).
    expected_interval_seconds: int | None = Field(default=None, ge=1, le=7 * 86_400)

    _metrics = field_validator("thresholds")(classmethod(lambda cls, v: _check_thresholds(v)))


class SensorUpdate(Model):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    sensor_type: str | None = Field(default=None, pattern=SENSOR_TYPE_PATTERN)
    room: str | None = Field(default=None, pattern=ROOM_NAME_PATTERN)
    unit: str | None = Field(default=None, max_length=32)
    device_id: str | None = Field(default=None, pattern=USER_ID_PATTERN)
    thresholds: dict[str, Threshold] | None = None
    metadata: dict[str, Any] | None = None
    # How often it reports; offline after 3 missed intervals (ems.registry.status; default 300 s).
    expected_interval_seconds: int | None = Field(default=None, ge=1, le=7 * 86_400)

    _metrics = field_validator("thresholds")(classmethod(lambda cls, v: _check_thresholds(v)))


class Sensor(SensorIn):
    site_id: str
    created_at: datetime
    updated_at: datetime


class LastReading(Model):
    ts: str
    metrics: dict[str, float]


class SensorWithStatus(Sensor):
    """GET /sensors and /sensors/{id}: the sensor, and what its telemetry says of it."""

    status: Literal["online", "offline", "unknown"] = "unknown"
    last_seen: str | None = None
    last_reading: LastReading | None = None


class Deleted(Model):
    deleted: bool = True
    cascaded: dict[str, int] = Field(default_factory=dict)
