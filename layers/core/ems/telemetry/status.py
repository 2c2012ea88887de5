"""Each sensor's newest reading out of a batch (what the sensor status store keeps).

What status means (online, offline, unknown) is the registry's rule: ems.registry.status.
"""

from __future__ import annotations

from collections.abc import Iterable

from ems.registry.status import Heard
from ems.telemetry.models import Reading


def newest(readings: Iterable[Reading]) -> dict[str, Heard]:
    """Per sensor, its newest time in `readings` and the metrics it gave at that time."""
    found: dict[str, Heard] = {}
    for reading in readings:
        held = found.get(reading.sensor_id)
        if held is None or reading.ts_ms > held.ts_ms:
            found[reading.sensor_id] = Heard(
                reading.sensor_id, reading.ts_ms, {reading.metric: reading.value}
            )
        elif reading.ts_ms == held.ts_ms:
            held.metrics[reading.metric] = reading.value
    return found
