"""Ingest of readings and reads of series: the rules above the telemetry store.

Every path in ends in `_ingest`: the HTTP route (`ingest_readings`), a batch of the telemetry queue
(`ingest_device_messages`, one site's messages of the batch at once) and a template whose IoT rule
invokes the function directly (`ingest_device_message`). It checks each reading on its own, stores the
good ones idempotently, reports every bad one, then moves the sensors' status and emits one
`TelemetryReceived` event with what was newly stored (the realtime function fans it out).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from ems.auth.models import Claims
from ems.core.clock import Clock, parse_time, to_iso, utc_now
from ems.core.errors import BadRequest, Invalid, NotFound, PayloadTooLarge
from ems.core.events import DomainEvent, EventPublisher, split_detail
from ems.core.ids import USER_ID
from ems.core.observability import logger, metrics
from ems.core.pagination import every
from ems.core.settings import settings
from ems.registry.models import Sensor
from ems.registry.status import LatestReadings
from ems.telemetry import sharing
from ems.telemetry.groups import SITE_SCOPE, by_types, room_scope
from ems.telemetry.hourly import hours_between
from ems.telemetry.models import (
    MAX_READINGS_PER_BATCH,
    ROOM_METRIC_OF_SENSOR_TYPE,
    TELEMETRY_RECEIVED,
    TELEMETRY_SOURCE,
    Aggregate,
    DataQuery,
    GroupBy,
    IngestRequest,
    IngestResult,
    KeyedPoints,
    Point,
    Reading,
    ReceivedReading,
    Rejection,
    Resolution,
    SensorDataQuery,
    Series,
    SeriesSet,
    TimeInput,
)
from ems.telemetry.ports import GroupRollups, SensorDirectory, SensorStatus, TelemetryStore
from ems.telemetry.rollup import WIDTH_MS, Bucket, bucket_start, buckets_between, merge_series, rollup
from ems.telemetry.status import newest
from ems.telemetry.validation import Rejected, parse_reading

MAX_FUTURE = timedelta(minutes=5)
# A raw read past this many readings is refused (400) rather than paged: the client should ask a
# coarser resolution or a shorter range. Rollup reads are bounded before reading, by arithmetic.
MAX_RAW_POINTS = 10_000
MAX_POINTS = 50_000
MAX_ROLLUP_ITEMS = 300_000
DEFAULT_RANGE = timedelta(hours=24)
LIST_PAGE = 200


@dataclass(frozen=True)
class Stores:
    registry: SensorDirectory
    telemetry: TelemetryStore
    status: SensorStatus | None = None  # moved after a write (ems.telemetry.backends.sensor_status)
    latest: LatestReadings | None = None  # each sensor's newest reading, where a read needs it
    events: EventPublisher | None = None  # None: no TelemetryReceived is emitted


# ---------------------------------------------------------------- ingest


def ingest(site_id: str, request: IngestRequest, s: Stores, now: Clock = utc_now) -> IngestResult:
    return ingest_readings(site_id, request.readings, s, now)


def ingest_readings(
    site_id: str,
    raw_readings: Sequence[Any],
    s: Stores,
    now: Clock = utc_now,
    device_id: str | None = None,
    source: str = "http",
) -> IngestResult:
    """One batch of readings (an HTTP request, or one device's message when `device_id` names the
    device: its sensors only)."""
    if len(raw_readings) > MAX_READINGS_PER_BATCH:
        raise PayloadTooLarge(
            f"at most {MAX_READINGS_PER_BATCH} readings per request, got {len(raw_readings)}", "readings"
        )
    return _ingest(site_id, [(device_id, raw_readings)], s, now, source)[0]


def _after_store(site_id: str, new: list[Reading], sensors: dict[str, Sensor], s: Stores) -> None:
    """What follows a stored batch: the sensors' status, then the event. The readings are stored
    already, so neither may fail the batch: failures are logged and counted."""
    if s.status is not None:
        try:
            s.status.record(site_id, list(newest(new).values()))
        except Exception:
            logger.exception("sensor status not updated", extra={"site": site_id})
            metrics.add_metric(name="StatusUpdatesFailed", unit="Count", value=1)
    if s.events is not None:
        try:
            s.events.publish(telemetry_received(site_id, new, sensors))
        except Exception:  # a publisher never raises; a bug in building the event must not either
            logger.exception("TelemetryReceived not published", extra={"site": site_id})
            metrics.add_metric(name="EventsFailed", unit="Count", value=1)


def telemetry_received(site_id: str, new: Sequence[Reading], sensors: dict[str, Sensor]) -> list[DomainEvent]:
    """`TelemetryReceived` for readings newly stored: one entry per sensor and time with its metrics,
    in time order, split into events that each fit EventBridge's 256 KB."""
    grouped: dict[tuple[str, int], dict[str, float]] = {}
    for reading in new:
        grouped.setdefault((reading.sensor_id, reading.ts_ms), {})[reading.metric] = reading.value
    items = []
    for (sensor_id, ts_ms), values in sorted(grouped.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        sensor = sensors.get(sensor_id)
        items.append(
            ReceivedReading(
                sensor_id=sensor_id, room=sensor.room if sensor else None,
                sensor_type=sensor.sensor_type if sensor else None, ts=ts_ms, metrics=values,
            ).model_dump()
        )  # fmt: skip
    return [
        DomainEvent(TELEMETRY_SOURCE, TELEMETRY_RECEIVED, detail)
        for detail in split_detail({"site": site_id}, "readings", items)
    ]


MESSAGE_FIELDS = frozenset({"ts", "readings", "site", "device_id", "received_ms"})


def device_readings(message: Any) -> tuple[str, str, list[Any]]:
    """(site, device, readings) of what the IoT rule selected: the device's payload (API.md, MQTT:
    `{"ts", "readings": [{"sensor_id", "metrics"}]}` or one `{"sensor_id", "ts", "value"}`) with the
    rule's `site` and `device_id` from the topic. A reading of the batch form without a ts of its own
    takes the message's. Rejected when the message as a whole is unusable."""
    if not isinstance(message, dict):
        raise Rejected("the message is not a JSON object")
    site, device = message.get("site"), message.get("device_id")
    if not isinstance(site, str) or not USER_ID.match(site):
        raise Rejected(f"the topic's site {site!r} is not a site id")
    if not isinstance(device, str) or not USER_ID.match(device):
        raise Rejected(f"the topic's device {device!r} is not a device id")
    if "readings" not in message:  # the single form: the payload is one reading
        return (
            site,
            device,
            [{k: v for k, v in message.items() if k not in ("site", "device_id", "received_ms")}],
        )
    unknown = sorted(set(message) - MESSAGE_FIELDS)
    if unknown:
        raise Rejected(f"unknown field {unknown[0]!r} in a message of readings")
    readings = message["readings"]
    if not isinstance(readings, list):
        raise Rejected("readings must be a list")
    top_ts = message.get("ts")
    return (
        site,
        device,
        [
            {**r, "ts": top_ts} if isinstance(r, dict) and "ts" not in r and top_ts is not None else r
            for r in readings
        ],
    )


def ingest_device_message(message: Any, s: Stores, now: Clock = utc_now) -> IngestResult:
    """A device's message from the IoT rule: every reading is ingested or rejected with its reason;
    a message that is unusable as a whole is rejected as index -1. Never raises for what is in the
    message (a poison message is logged and counted, and blocks nothing); storage errors do raise,
    so the asynchronous invocation is retried (ingest is idempotent)."""
    try:
        site, device, readings = device_readings(message)
        if not s.registry.site_exists(site):
            raise Rejected(f"no site {site!r}")
        if len(readings) > MAX_READINGS_PER_BATCH:
            raise Rejected(f"at most {MAX_READINGS_PER_BATCH} readings per message, got {len(readings)}")
    except Rejected as exc:
        keys = sorted(message)[:10] if isinstance(message, dict) else type(message).__name__
        logger.warning(
            "ingest: message rejected",
            extra={"source": "mqtt", "reason": str(exc), "message_keys": keys},
        )
        metrics.add_metric(name="MessagesRejected", unit="Count", value=1)
        return IngestResult(accepted=0, rejected=[Rejection(index=-1, reason=str(exc))])
    return ingest_readings(site, readings, s, now, device_id=device, source="mqtt")


def ingest_device_messages(
    site_id: str, messages: Sequence[tuple[str, Sequence[Any]]], s: Stores, now: Clock = utc_now
) -> list[IngestResult]:
    """Devices' messages of one site, (device, its readings) each, from one batch of the telemetry
    queue, ingested as one batch. One result per message. Storage errors raise: the caller has these
    messages delivered again, which is safe."""
    return _ingest(site_id, messages, s, now, "mqtt")


def _ingest(
    site_id: str,
    messages: Sequence[tuple[str | None, Sequence[Any]]],
    s: Stores,
    now: Clock,
    source: str,
) -> list[IngestResult]:
    """Every path in: one registry read for the sensors the messages name, each reading checked
    against its own message's device (None: any sensor of the site), one write of them all (the first
    of two equal keys in the batch wins, as the first of two requests does), one log line, one status
    update and one `TelemetryReceived` for the batch. One result per message."""
    named = {
        r["sensor_id"] for _, readings in messages for r in readings
        if isinstance(r, dict) and isinstance(r.get("sensor_id"), str) and USER_ID.match(r["sensor_id"])
    }  # fmt: skip
    sensors = s.registry.get_sensors(site_id, named) if named else {}
    moment = now()
    earliest = moment - timedelta(days=settings().raw_retention_days)
    latest = moment + MAX_FUTURE

    rejected: list[list[Rejection]] = []
    accepted: list[list[list[Reading]]] = []
    to_write: dict[tuple[str, str, int], Reading] = {}
    for device_id, raw_readings in messages:
        rejected.append([])
        accepted.append([])
        for index, raw in enumerate(raw_readings):
            try:
                parsed = parse_reading(raw, site_id, sensors, earliest, latest, device_id=device_id)
            except Rejected as exc:
                rejected[-1].append(Rejection(index=index, reason=str(exc)))
                continue
            accepted[-1].append(parsed)
            for reading in parsed:
                to_write.setdefault((reading.sensor_id, reading.metric, reading.ts_ms), reading)

    outcome = s.telemetry.write(list(to_write.values())) if to_write else None
    stored_before = outcome.duplicates if outcome else set()
    results, firsts = [], set()
    for mine, refused in zip(accepted, rejected, strict=True):
        duplicates = 0
        for parsed in mine:
            keys = [(r.sensor_id, r.metric, r.ts_ms) for r in parsed]
            if all(k in stored_before or k in firsts for k in keys):
                duplicates += 1
            firsts.update(keys)
        results.append(IngestResult(accepted=len(mine), duplicates=duplicates, rejected=refused))

    total_rejected = sum(len(r.rejected) for r in results)
    logger.info(
        "ingest",
        extra={"site": site_id, "source": source, "messages": len(messages),
               "received": sum(len(readings) for _, readings in messages),
               "accepted": sum(r.accepted for r in results), "duplicates": sum(r.duplicates for r in results),
               "rejected": total_rejected, "stored_new": outcome.created if outcome else 0,
               # Every rejection with its device and index in that device's message (at most 1,000 a
               # message): over MQTT the device gets no answer, so this line is where a rejected
               # reading is reported.
               "rejections": [{"device_id": device_id, **x.model_dump()}
                              for (device_id, _), result in zip(messages, results, strict=True)
                              for x in result.rejected]},
    )  # fmt: skip
    metrics.add_metric(name="ReadingsAccepted", unit="Count", value=sum(r.accepted for r in results))
    metrics.add_metric(name="ReadingsRejected", unit="Count", value=total_rejected)
    metrics.add_metric(name="ReadingsDuplicate", unit="Count", value=sum(r.duplicates for r in results))
    new = [r for key, r in to_write.items() if key not in stored_before]
    if new:
        _after_store(site_id, new, sensors, s)
    return results


# ---------------------------------------------------------------- reads


@dataclass(frozen=True)
class Window:
    """What to read: [start_ms, end_ms) at a resolution, and the embargo's cut (newest visible ts)."""

    start_ms: int
    end_ms: int
    resolution: Resolution
    cut_ms: int | None


def _window(
    start: TimeInput | None, end: TimeInput | None, resolution: Resolution, caller: Claims, moment: datetime
) -> Window:
    end_at = moment if end is None else parse_time(end, "end_time")
    start_at = end_at - DEFAULT_RANGE if start is None else parse_time(start, "start_time")
    if end_at <= start_at:
        raise Invalid("must be after start_time", "end_time")
    start_ms, end_ms = int(start_at.timestamp() * 1000), int(end_at.timestamp() * 1000)
    if resolution != "raw":
        start_ms = bucket_start(start_ms, resolution)  # the buckets that overlap the range
    cut = sharing.cutoff_ms(caller, moment)
    if cut is not None:
        end_ms = min(end_ms, cut + 1)
    return Window(start_ms, max(start_ms, end_ms), resolution, cut)


def _points(buckets: dict[int, Bucket], aggregate: Aggregate, window: Window) -> list[Point]:
    width = WIDTH_MS.get(window.resolution, 1)
    return [
        Point(ts=to_iso(datetime.fromtimestamp(start / 1000, UTC)), value=buckets[start].value(aggregate),
              count=buckets[start].count)
        for start in sorted(buckets)
        # Under an embargo a bucket is shown only once it is complete before the cut.
        if window.cut_ms is None or start + width - 1 <= window.cut_ms
    ]  # fmt: skip


def _read(
    site_id: str,
    groups: dict[str, list[str]],
    metric: str,
    aggregate: Aggregate,
    window: Window,
    store: TelemetryStore,
    max_raw_points: int = MAX_RAW_POINTS,
) -> dict[str, list[Point]]:
    """Points of each group (key -> its sensors), the sensors' buckets merged per group."""
    sensor_ids = sorted({sensor for members in groups.values() for sensor in members})
    if not sensor_ids or window.end_ms <= window.start_ms:
        return {key: [] for key in groups}
    if window.resolution == "raw":
        raw = store.read_raw(site_id, sensor_ids, metric, window.start_ms, window.end_ms, max_raw_points)
        if sum(len(points) for points in raw.values()) > max_raw_points:
            raise BadRequest(
                f"more than {max_raw_points} raw readings in this range; narrow start_time..end_time "
                "or choose a coarser resolution",
                "end_time",
            )
        buckets = {sensor: rollup(points, "raw") for sensor, points in raw.items()}
    else:
        _check_size(window, len(sensor_ids), len(groups), "sensors")
        buckets = store.read_rollups(
            site_id, sensor_ids, metric, window.resolution, window.start_ms, window.end_ms
        )
    out: dict[str, list[Point]] = {}
    for key, members in groups.items():
        merged = merge_series(buckets.get(sensor, {}) for sensor in members)
        out[key] = _points(merged, aggregate, window)
    if window.resolution == "raw" and sum(len(p) for p in out.values()) > max(MAX_POINTS, max_raw_points):
        raise BadRequest(f"more than {MAX_POINTS} points; narrow the range", "end_time")
    return out


def _check_size(window: Window, series: int, keys: int, of: str) -> None:
    """Rollup reads are bounded before reading: items read (an hour a series, ems.telemetry.hourly) and
    points answered."""
    points = buckets_between(window.start_ms, window.end_ms, window.resolution)
    first, last = hours_between(window.start_ms, window.end_ms, window.resolution)
    items = (last - first) // WIDTH_MS["1h"]
    if items * series > MAX_ROLLUP_ITEMS or points * keys > MAX_POINTS:
        raise BadRequest(
            f"this asks for up to {points * keys} points of {series} {of} ({items * series} hours read); "
            "narrow start_time..end_time, choose a coarser resolution or group_by",
            "start_time",
        )


def _group_store(store: TelemetryStore, window: Window) -> GroupRollups | None:
    """The store's site and room rollups, when it keeps them and the window is not raw; None: merge the
    sensors' rollups."""
    if window.resolution == "raw":
        return None
    return store if isinstance(store, GroupRollups) else None


def _read_groups(
    site_id: str,
    scopes: dict[str, list[str]],
    types: frozenset[str] | None,
    metric: str,
    aggregate: Aggregate,
    window: Window,
    store: GroupRollups,
) -> dict[str, list[Point]]:
    """Points of each key (key -> its scopes, merged), from the site and room rollups of the sensor
    types `types` (None: every type)."""
    wanted = sorted({scope for members in scopes.values() for scope in members})
    if not wanted or window.end_ms <= window.start_ms:
        return {key: [] for key in scopes}
    _check_size(window, len(wanted), len(scopes), "rooms or sites")
    found = store.read_groups(site_id, wanted, metric, window.resolution, window.start_ms, window.end_ms)
    out: dict[str, list[Point]] = {}
    for key, members in scopes.items():
        per_scope = (
            {
                start: b
                for start, by_type in found[scope].items()
                if (b := by_types(by_type, types)) is not None
            }
            for scope in members
        )
        out[key] = _points(merge_series(per_scope), aggregate, window)
    return out


def sensor_data(
    site_id: str, sensor_id: str, q: SensorDataQuery, caller: Claims, s: Stores, now: Clock = utc_now
) -> Series:
    sharing.check_sensor_series(caller)
    resolution = sharing.resolution(q.resolution, caller)
    s.registry.get_sensor(site_id, sensor_id)
    window = _window(q.start_time, q.end_time, resolution, caller, now())
    points = _read(site_id, {sensor_id: [sensor_id]}, q.metric, q.aggregate, window, s.telemetry)
    return Series(
        metric=q.metric, resolution=resolution, aggregate=q.aggregate, key=sensor_id, points=points[sensor_id]
    )


def room_data(
    site_id: str, name: str, q: SensorDataQuery, caller: Claims, s: Stores, now: Clock = utc_now
) -> Series:
    """API.md's GET /api/v1/rooms/{name}/data: the room's sensors' buckets merged into one series."""
    sharing.group_by("room", caller)  # 403 for a token that sees only the whole site
    resolution = sharing.resolution(q.resolution, caller)
    s.registry.get_room(site_id, name)
    window = _window(q.start_time, q.end_time, resolution, caller, now())
    # A climate metric is the room's from its climate sensors only, as in the room's live metrics
    # (ROOM_METRIC_OF_SENSOR_TYPE); any other metric (power_w, ...) from every sensor of the room.
    climate = {kind for kind, metric in ROOM_METRIC_OF_SENSOR_TYPE.items() if metric == q.metric}
    groups = _group_store(s.telemetry, window)
    if groups is not None:  # the room's rollups: the readings of the sensors that were in it
        types = frozenset(climate) if climate else None
        points = _read_groups(
            site_id, {name: [room_scope(name)]}, types, q.metric, q.aggregate, window, groups
        )
        return Series(
            metric=q.metric, resolution=resolution, aggregate=q.aggregate, key=name, points=points[name]
        )
    members = [
        x.sensor_id
        for x in every(partial(s.registry.list_sensors, site_id, name, None, LIST_PAGE))
        if not climate or x.sensor_type in climate
    ]
    points = _read(site_id, {name: members}, q.metric, q.aggregate, window, s.telemetry)
    return Series(
        metric=q.metric, resolution=resolution, aggregate=q.aggregate, key=name, points=points[name]
    )


def query(
    site_id: str,
    q: DataQuery,
    caller: Claims,
    s: Stores,
    now: Clock = utc_now,
    max_raw_points: int = MAX_RAW_POINTS,
) -> SeriesSet:
    """`max_raw_points`: the export reads more raw readings than a response may carry."""
    resolution = sharing.resolution(q.resolution, caller)
    grouping = sharing.group_by(q.group_by, caller)
    sharing.check_filters(caller, q.sensor_ids, q.rooms)
    window = _window(q.start_time, q.end_time, resolution, caller, now())
    groups = _groups(site_id, select_sensors(site_id, q, s.registry), grouping)
    store = _group_store(s.telemetry, window) if grouping != "sensor" and not q.sensor_ids else None
    if store is None:
        points = _read(site_id, groups, q.metric, q.aggregate, window, s.telemetry, max_raw_points)
    else:
        # The series are those of the sensors the filters select, as above; each is read from the
        # room's or site's rollups, so it holds what the room's sensors read while they were in it.
        rooms = [room_scope(room) for room in dict.fromkeys(q.rooms)] if q.rooms else [SITE_SCOPE]
        scopes = {key: [room_scope(key)] if grouping == "room" else rooms for key in groups}
        types = frozenset(q.sensor_types) if q.sensor_types else None
        points = _read_groups(site_id, scopes, types, q.metric, q.aggregate, window, store)
    return SeriesSet(
        metric=q.metric, resolution=resolution, aggregate=q.aggregate, group_by=grouping,
        series=[KeyedPoints(key=key, points=points[key]) for key in sorted(points)],
    )  # fmt: skip


def select_sensors(site_id: str, q: DataQuery, registry: SensorDirectory) -> list[Sensor]:
    """The sensors a query's filters name (all filters must hold)."""
    if q.sensor_ids:
        found = registry.get_sensors(site_id, q.sensor_ids)
        for index, sensor_id in enumerate(q.sensor_ids):
            if sensor_id not in found:
                raise Invalid(f"no sensor {sensor_id!r} in this site", f"sensor_ids.{index}")
        sensors = list(found.values())
    elif q.rooms:
        sensors = []
        for index, room in enumerate(dict.fromkeys(q.rooms)):
            try:
                registry.get_room(site_id, room)
            except NotFound as exc:
                raise Invalid(f"no room {room!r} in this site", f"rooms.{index}") from exc
            sensors.extend(every(partial(registry.list_sensors, site_id, room, None, LIST_PAGE)))
    else:
        sensors = list(every(partial(registry.list_sensors, site_id, None, None, LIST_PAGE)))
    if q.rooms:
        rooms = set(q.rooms)
        sensors = [x for x in sensors if x.room in rooms]
    if q.sensor_types:
        types = set(q.sensor_types)
        sensors = [x for x in sensors if x.sensor_type in types]
    return sensors


def _groups(site_id: str, sensors: list[Sensor], grouping: GroupBy) -> dict[str, list[str]]:
    """Series key -> its sensors. Sensors in no room are in no room's series (they are in the site's)."""
    groups: dict[str, list[str]] = {}
    for sensor in sensors:
        if grouping == "sensor":
            key: str | None = sensor.sensor_id
        elif grouping == "room":
            key = sensor.room
        else:
            key = site_id
        if key is not None:
            groups.setdefault(key, []).append(sensor.sensor_id)
    return groups
