"""Sensor status: when a sensor was last heard from, what it said then, and whether it is online.

Pure. A sensor is online while its newest reading is at most OFFLINE_AFTER_MISSED expected intervals
old (its `expected_interval_seconds`, DEFAULT_EXPECTED_INTERVAL_SECONDS when it has none), offline
after that, and `unknown` until it has reported once. Status is computed when read, from the time of
the newest reading, so going offline needs no writer and no schedule.

Telemetry keeps each sensor's newest reading (ems.telemetry.store.SensorStatusStore implements
`LatestReadings`); the registry, alerts and the overview read it through that port.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

OFFLINE_AFTER_MISSED = 3
# Building sensors and meters report every few seconds to a few minutes; five minutes keeps a
# sensor that reports every minute or every five online, and says offline within 15 minutes.
DEFAULT_EXPECTED_INTERVAL_SECONDS = 300

Status = Literal["online", "offline", "unknown"]
STATUSES: tuple[Status, ...] = ("online", "offline", "unknown")


@dataclass
class Heard:
    """A sensor's newest reading: its time and every metric it gave at that time."""

    sensor_id: str
    ts_ms: int
    metrics: dict[str, float] = field(default_factory=dict)


class LatestReadings(Protocol):
    """Each sensor's newest reading; sensors that never reported are absent."""

    def get(self, site_id: str, sensor_ids: Iterable[str]) -> dict[str, Heard]: ...


def status_of(heard: Heard | None, expected_interval_seconds: int | None, now: datetime) -> Status:
    if heard is None:
        return "unknown"
    interval_s = expected_interval_seconds or DEFAULT_EXPECTED_INTERVAL_SECONDS
    silent_ms = now.timestamp() * 1000 - heard.ts_ms
    return "online" if silent_ms <= OFFLINE_AFTER_MISSED * interval_s * 1000 else "offline"
