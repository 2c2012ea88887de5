"""Site and room rollups: which groups a reading counts in, and a group's hour made from its sensors' hours
(pure, no I/O; ems.telemetry.store keeps them).

A reading counts in its site's group and, when its sensor was in a room when the reading was stored, in
that room's group (a sensor that moves later leaves its past where it was: the sensors' hours keep
readings by cell, room and type, ems.telemetry.hourly). A group's hour is kept by sensor type, so a
`sensor_types` filter on a room or site query reads the buckets of those types only, and a room's climate
metric its climate sensors' only (as the room's live metrics do, ems.telemetry.models).

Ingest does not write group items: every sensor of a site would then write the same few items. A
group's hour is made from its sensors' hours once the hour is over ("sealed", ems.telemetry.store
says how, and how a late reading reaches it); until then a read merges the sensors' hours itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ems.telemetry.hourly import Quarters, by_start, cell_room, cell_type, merge_exact
from ems.telemetry.rollup import Bucket

SITE_SCOPE = "site"


def room_scope(room: str) -> str:
    return f"room:{room}"


def group_pk(site_id: str, scope: str, metric: str) -> str:
    """Sensor ids start with a letter or digit and room names hold no '#': '*' keeps these apart."""
    return f"{site_id}#*{scope}#{metric}#hour"


def group_hours(sensor_hours: Iterable[Quarters]) -> dict[str, Quarters]:
    """One hour of a site's groups, by scope (the site and each room), each quarter's cells by sensor
    type, from the same hour of its sensors."""
    out: dict[str, Quarters] = {}
    for quarters in sensor_hours:
        for q, cells in quarters.items():
            for key, exact in cells.items():
                room = cell_room(key)
                scopes = (SITE_SCOPE,) if room is None else (SITE_SCOPE, room_scope(room))
                for scope in scopes:
                    merge_exact(out.setdefault(scope, {}).setdefault(q, {}), cell_type(key), exact)
    return out


def by_type(hours: Mapping[int, Quarters], resolution: str) -> dict[int, dict[str, Bucket]]:
    """A group's buckets of `resolution` by start, then by sensor type, from its hours by start."""
    out: dict[int, dict[str, Bucket]] = {}
    for start, cells in by_start(hours, resolution):
        held = out.setdefault(start, {})
        for kind, (bucket, _) in cells.items():
            held[kind] = bucket.copy() if kind not in held else held[kind].merged(bucket)
    return out


def by_types(buckets: Mapping[str, Bucket], types: frozenset[str] | None) -> Bucket | None:
    """One group bucket's types merged (those of `types`, or all); None when none of them is there."""
    out: Bucket | None = None
    for kind, bucket in buckets.items():
        if types is None or kind in types:
            out = bucket.copy() if out is None else out.merged(bucket)
    return out
