"""The data-sharing limits of a token (data_aggregation, time_aggregation, embargo_minutes) on reads.

An explicit request finer than the token allows is refused (403 naming the field): a silently
coarser answer would look like data, and a client could not tell it from what it asked for.
What the request leaves out defaults to the finest the token allows. The embargo is a filter,
not a refusal: nothing newer than now minus the embargo is returned, and a bucket is returned only
when it ends at or before that cut, so no bucket's count or sum carries an embargoed reading.
"""

from __future__ import annotations

from datetime import datetime

from ems.auth.models import TIME_AGGREGATION_ORDER, Claims
from ems.core.errors import Forbidden
from ems.telemetry.models import GroupBy, Resolution

GROUP_ORDER: tuple[GroupBy, ...] = ("sensor", "room", "site")
# data_aggregation "raw" means per-sensor series.
FINEST_GROUP: dict[str, GroupBy] = {"raw": "sensor", "room": "room", "site": "site"}


def resolution(requested: Resolution | None, caller: Claims) -> Resolution:
    allowed = caller.time_aggregation
    if requested is None:
        return allowed
    if TIME_AGGREGATION_ORDER.index(requested) < TIME_AGGREGATION_ORDER.index(allowed):
        raise Forbidden(f"this token may read resolution {allowed} or coarser, not {requested}", "resolution")
    return requested


def group_by(requested: GroupBy | None, caller: Claims) -> GroupBy:
    allowed = FINEST_GROUP[caller.data_aggregation]
    if requested is None:
        return allowed
    if GROUP_ORDER.index(requested) < GROUP_ORDER.index(allowed):
        raise Forbidden(
            f"this token may read data grouped by {allowed} or coarser, not {requested}", "group_by"
        )
    return requested


def check_filters(caller: Claims, sensor_ids: object, rooms: object) -> None:
    """A filter must not narrow a group below what the token may see: a room series filtered to one
    sensor is that sensor's series, and a site series filtered to one room is that room's."""
    allowed = FINEST_GROUP[caller.data_aggregation]
    if sensor_ids and allowed != "sensor":
        raise Forbidden(
            f"this token sees data grouped by {allowed}; it may not filter by sensor", "sensor_ids"
        )
    if rooms and allowed == "site":
        raise Forbidden("this token sees data of the whole site; it may not filter by room", "rooms")


def check_sensor_series(caller: Claims) -> None:
    """One sensor's series needs a token that may see per-sensor data."""
    allowed = FINEST_GROUP[caller.data_aggregation]
    if allowed != "sensor":
        raise Forbidden(
            f"this token sees data grouped by {allowed}; ask POST /api/v1/data/query with group_by={allowed}",
            "sensor_id",
        )


def cutoff_ms(caller: Claims, now: datetime) -> int | None:
    """The newest ts (epoch ms) the caller may see, or None without an embargo."""
    return caller.embargo_cutoff_ms(now)
