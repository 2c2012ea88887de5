"""In-memory fakes of the ports and stores the services are given, for the unit tier (no AWS, no sockets).

Each keeps the contract of the adapter it stands for (ems.registry.store.RegistryStore,
ems.telemetry.store's DynamoTelemetryStore and SensorStatusStore, ems.alerts.store.AlertStore): the same
errors with the same messages and fields, idempotent writes, conditions that refuse what the real
condition refuses, and lists that come a page at a time with an opaque next_token (made and read by
ems.core.pagination, so a forged token is a 400 here too). Models are copied in and out, so a caller
that changes what it was given changes nothing stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from ems.alerts.models import Alert, AlertPage, EventsQuery
from ems.alerts.store import ALERT, MUTABLE, RuleState
from ems.auth.models import Claims
from ems.core.errors import Conflict, Invalid, NotFound
from ems.core.events import DomainEvent, PublishOutcome
from ems.core.pagination import Page, decode_token, encode_token
from ems.registry.models import Room, Sensor, Site
from ems.registry.status import Heard
from ems.registry.store import GSI1_PAGE_KEYS, PAGE_KEYS, ROOM, SENSOR
from ems.tariffs.models import Tariff
from ems.telemetry.models import Reading
from ems.telemetry.ports import WriteOutcome
from ems.telemetry.rollup import ROLLUP_RESOLUTIONS, Bucket, bucket_start

T = TypeVar("T")
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


def caller(**fields: Any) -> Claims:
    """The claims of a verified token (all resources, all sites, no data-sharing limits), with `fields`
    changed: `sites=["hq"]`, `data_aggregation="site"`, `embargo_minutes=30`, ..."""
    base: dict[str, Any] = {
        "sub": "tester", "name": "tester", "jti": "tok_test", "iat": 0, "exp": 2**31, "iss": "ems",
        "aud": "ems-api", "resources": ["*"], "sites": ["*"],
    }  # fmt: skip
    return Claims.model_validate({**base, **fields})


class ListPublisher:
    """An EventPublisher that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[DomainEvent] = []

    def publish(self, events: Any) -> PublishOutcome:
        self.events.extend(events)
        return PublishOutcome(sent=len(events))

    def kinds(self) -> list[str]:
        return [e.detail_type for e in self.events]


# ---------------------------------------------------------------- paging as DynamoDB pages


def _token(values: dict[str, str]) -> str | None:
    return encode_token({k: {"S": v} for k, v in values.items()})


def _after(token: str | None, keys: tuple[str, ...], sort_key: str) -> str | None:
    """The sort key a page starts after (None: from the start); 400 for a token of another shape."""
    start = decode_token(token, keys)
    return None if start is None else str(start[sort_key]["S"])


def _page(
    keyed: Iterable[tuple[str, T]],
    limit: int,
    after: str | None,
    token_of: Callable[[str], dict[str, str]],
    keep: Callable[[T], bool] = lambda _: True,
    newest_first: bool = False,
) -> Page[T]:
    """A Query's page: `limit` items read from after `after` in key order, *then* filtered by `keep`
    (as a FilterExpression: a page may hold fewer than `limit`), and a next_token whenever the page
    stopped at `limit`, even when nothing follows (DynamoDB's LastEvaluatedKey does the same)."""
    ordered = sorted(keyed, key=lambda kv: kv[0], reverse=newest_first)
    if after is not None:
        ordered = [kv for kv in ordered if (kv[0] < after if newest_first else kv[0] > after)]
    read = ordered[:limit]
    items = [item for _, item in read if keep(item)]
    next_token = _token(token_of(read[-1][0])) if len(read) == limit else None
    return Page[T](items=items, count=len(items), next_token=next_token)


# ---------------------------------------------------------------- the registry


class MemoryRegistry:
    """RegistryStore in memory: sites, rooms (with their sensor counters), sensors and tariffs.

    The public methods of RegistryStore, so it stands for it where a service is typed against the store
    itself (ems.registry.service), and for SiteDirectory, SensorDirectory and TariffSource elsewhere.
    The room's counter and the cascades are done in plain steps here, where the real store does them in
    one transaction: the outcome is the same, the atomicity is not exercised."""

    def __init__(self) -> None:
        self.sites: dict[str, Site] = {}
        self.rooms: dict[tuple[str, str], Room] = {}
        self.sensors: dict[tuple[str, str], Sensor] = {}
        self.tariffs: dict[str, tuple[dict[str, Any], datetime]] = {}

    # ------------------------------------------------------------ arranging a test (through create_*)

    def add_site(self, site_id: str, at: datetime = EPOCH, **fields: Any) -> Site:
        fields.setdefault("name", site_id)
        return self.create_site(Site(site_id=site_id, created_at=at, updated_at=at, **fields))

    def add_room(self, site_id: str, name: str, at: datetime = EPOCH, **fields: Any) -> Room:
        return self.create_room(Room(site_id=site_id, name=name, created_at=at, updated_at=at, **fields))

    def add_sensor(
        self, site_id: str, sensor_id: str, sensor_type: str, at: datetime = EPOCH, **fields: Any
    ) -> Sensor:
        fields.setdefault("name", sensor_id)
        return self.create_sensor(
            Sensor(site_id=site_id, sensor_id=sensor_id, sensor_type=sensor_type, created_at=at, updated_at=at,
                   **fields)
        )  # fmt: skip

    # ------------------------------------------------------------ sites

    def create_site(self, site: Site) -> Site:
        if site.site_id in self.sites:
            raise Conflict(f"site {site.site_id!r} exists already", "site_id")
        self.sites[site.site_id] = site.model_copy(deep=True)
        return site

    def get_site(self, site_id: str) -> Site:
        if site_id not in self.sites:
            raise NotFound(f"no site {site_id!r}", "site_id")
        return self.sites[site_id].model_copy(deep=True)

    def site_exists(self, site_id: str) -> bool:
        return site_id in self.sites

    def put_site(self, site: Site) -> Site:
        if site.site_id not in self.sites:  # the real put is conditioned on the item existing
            raise LookupError(f"put_site of {site.site_id!r}, which does not exist")
        self.sites[site.site_id] = site.model_copy(deep=True)
        return site

    def list_sites(self, site_ids: list[str] | None, limit: int, next_token: str | None) -> Page[Site]:
        if site_ids is not None:
            sites = [self.get_site(s) for s in sorted(site_ids) if self.site_exists(s)]
            return Page[Site](items=sites, count=len(sites))
        after = _after(next_token, GSI1_PAGE_KEYS, "gsi1sk")
        return _page(
            ((site_id, site.model_copy(deep=True)) for site_id, site in self.sites.items()),
            limit,
            after,
            lambda site_id: {"pk": site_id, "sk": "SITE", "gsi1pk": "SITES", "gsi1sk": site_id},
        )

    def site_item_counts(self, site_id: str) -> dict[str, int]:
        return {
            "rooms": sum(1 for s, _ in self.rooms if s == site_id),
            "sensors": sum(1 for s, _ in self.sensors if s == site_id),
            "other": 0,
        }

    def delete_site(self, site_id: str, cascade: bool) -> None:
        for key in [k for k in self.rooms if k[0] == site_id]:
            del self.rooms[key]
        for key in [k for k in self.sensors if k[0] == site_id]:
            del self.sensors[key]
        self.tariffs.pop(site_id, None)
        if self.sites.pop(site_id, None) is None:
            raise NotFound(f"no site {site_id!r}", "site_id")

    # ------------------------------------------------------------ rooms

    def create_room(self, room: Room) -> Room:
        if room.site_id not in self.sites:
            raise NotFound(f"no site {room.site_id!r}; create it first", "site")
        if (room.site_id, room.name) in self.rooms:
            raise Conflict(f"room {room.name!r} exists already", "name")
        self.rooms[(room.site_id, room.name)] = room.model_copy(update={"sensor_count": 0}, deep=True)
        return room

    def get_room(self, site_id: str, name: str) -> Room:
        if (site_id, name) not in self.rooms:
            raise NotFound(f"no room {name!r}", "name")
        return self.rooms[(site_id, name)].model_copy(deep=True)

    def update_room(self, room: Room) -> Room:
        held = self.rooms.get((room.site_id, room.name))
        if held is None:
            raise NotFound(f"no room {room.name!r}", "name")
        fields = ("floor", "capacity", "area_m2", "description", "updated_at")
        self.rooms[(room.site_id, room.name)] = held.model_copy(update={f: getattr(room, f) for f in fields})
        return self.get_room(room.site_id, room.name)

    def list_rooms(self, site_id: str, limit: int, next_token: str | None) -> Page[Room]:
        after = _after(next_token, PAGE_KEYS, "sk")
        return _page(
            (
                (ROOM + name, room.model_copy(deep=True))
                for (s, name), room in self.rooms.items()
                if s == site_id
            ),
            limit,
            after,
            lambda sk: {"pk": site_id, "sk": sk},
        )

    def delete_room(self, site_id: str, name: str, cascade: bool) -> dict[str, int]:
        removed = 0
        if cascade:
            for key in [k for k, x in self.sensors.items() if k[0] == site_id and x.room == name]:
                del self.sensors[key]
                self._count(site_id, name, -1)
                removed += 1
        room = self.get_room(site_id, name)  # NotFound when the room is not there at all
        if room.sensor_count > 0:
            raise Conflict(
                f"room {name!r} has {room.sensor_count} sensors; move or delete them, or pass ?cascade=true",
                "name",
            )
        del self.rooms[(site_id, name)]
        return {"sensors": removed} if cascade else {}

    def room_exists(self, site_id: str, name: str) -> bool:
        return (site_id, name) in self.rooms

    def _count(self, site_id: str, room: str, by: int) -> None:
        held = self.rooms[(site_id, room)]
        self.rooms[(site_id, room)] = held.model_copy(update={"sensor_count": held.sensor_count + by})

    # ------------------------------------------------------------ sensors

    def create_sensor(self, sensor: Sensor) -> Sensor:
        # The real transaction's order of reasons: the site, then the room, then a duplicate.
        if sensor.site_id not in self.sites:
            raise NotFound(f"no site {sensor.site_id!r}; create it first", "site")
        if sensor.room is not None and (sensor.site_id, sensor.room) not in self.rooms:
            raise Invalid(f"no room {sensor.room!r} in this site", "room")
        if (sensor.site_id, sensor.sensor_id) in self.sensors:
            raise Conflict(f"sensor {sensor.sensor_id!r} exists already", "sensor_id")
        if sensor.room is not None:
            self._count(sensor.site_id, sensor.room, +1)
        self.sensors[(sensor.site_id, sensor.sensor_id)] = sensor.model_copy(deep=True)
        return sensor

    def get_sensor(self, site_id: str, sensor_id: str) -> Sensor:
        if (site_id, sensor_id) not in self.sensors:
            raise NotFound(f"no sensor {sensor_id!r}", "sensor_id")
        return self.sensors[(site_id, sensor_id)].model_copy(deep=True)

    def get_sensors(self, site_id: str, sensor_ids: Iterable[str]) -> dict[str, Sensor]:
        """The site's sensors among `sensor_ids`; unknown ids are absent."""
        return {i: self.get_sensor(site_id, i) for i in set(sensor_ids) if (site_id, i) in self.sensors}

    def sensor_exists(self, site_id: str, sensor_id: str) -> bool:
        return (site_id, sensor_id) in self.sensors

    def replace_sensor(self, before: Sensor, after: Sensor) -> Sensor:
        if (
            before.room != after.room
            and after.room is not None
            and not self.room_exists(after.site_id, after.room)
        ):
            raise Invalid(f"no room {after.room!r} in this site", "room")
        held = self.sensors.get((after.site_id, after.sensor_id))
        if held is None or held.updated_at != before.updated_at:
            raise Conflict("the sensor changed while updating it; retry", "sensor_id")
        if before.room != after.room:
            if after.room is not None:
                self._count(after.site_id, after.room, +1)
            if before.room is not None and self.room_exists(before.site_id, before.room):
                self._count(before.site_id, before.room, -1)
        self.sensors[(after.site_id, after.sensor_id)] = after.model_copy(deep=True)
        return after

    def delete_sensor(self, site_id: str, sensor_id: str) -> None:
        sensor = self.get_sensor(site_id, sensor_id)
        del self.sensors[(site_id, sensor_id)]
        if sensor.room is not None and self.room_exists(site_id, sensor.room):
            self._count(site_id, sensor.room, -1)

    def list_sensors(
        self, site_id: str, room: str | None, sensor_type: str | None, limit: int, next_token: str | None
    ) -> Page[Sensor]:
        """The site's sensors (or a room's: the real store's index, gsi1) by id; `sensor_type` filters
        each page after `limit` is taken, as the real FilterExpression does."""
        in_site = [
            (i, x) for (s, i), x in self.sensors.items() if s == site_id and (room is None or x.room == room)
        ]
        if room is None:
            after = _after(next_token, PAGE_KEYS, "sk")
            keyed = [(SENSOR + i, x.model_copy(deep=True)) for i, x in in_site]

            def token_of(sk: str) -> dict[str, str]:
                return {"pk": site_id, "sk": sk}
        else:
            after = _after(next_token, GSI1_PAGE_KEYS, "gsi1sk")
            keyed = [(i, x.model_copy(deep=True)) for i, x in in_site]

            def token_of(sk: str) -> dict[str, str]:
                return {"pk": site_id, "sk": SENSOR + sk, "gsi1pk": f"{site_id}#{ROOM}{room}", "gsi1sk": sk}

        return _page(keyed, limit, after, token_of, lambda x: not sensor_type or x.sensor_type == sensor_type)

    # ------------------------------------------------------------ the site's tariff

    def get_tariff(self, site_id: str) -> Tariff | None:
        stored = self.tariffs.get(site_id)
        if stored is None:
            return None
        data, at = stored
        # As the real store reads it back: updated_at from the item's UTCDateTimeAttribute.
        return Tariff.model_validate({**data, "site_id": site_id, "updated_at": at.isoformat()})

    def put_tariff(self, tariff: Tariff, created_at: datetime) -> None:
        self.tariffs[tariff.site_id] = (
            tariff.model_dump(exclude={"site_id", "updated_at", "is_default"}),
            created_at,
        )


# ---------------------------------------------------------------- telemetry


class MemoryTelemetry:
    """A TelemetryStore in memory: raw readings, distinct by (site, sensor, metric, ts), and their 15m,
    1h and 1d rollups kept as the DynamoDB adapter keeps them (ems.telemetry.rollup's buckets, the sum
    exact as a decimal), moved only by the write that created the raw reading."""

    def __init__(self) -> None:
        self.raw: dict[tuple[str, str, str, int], float] = {}
        self.rollups: dict[tuple[str, str, str, str], dict[int, tuple[Bucket, Decimal]]] = {}

    def write(self, readings: Sequence[Reading]) -> WriteOutcome:
        outcome = WriteOutcome()
        for r in readings:
            key = (r.site_id, r.sensor_id, r.metric, r.ts_ms)
            if key in self.raw:
                outcome.duplicates.add((r.sensor_id, r.metric, r.ts_ms))
                continue
            self.raw[key] = r.value
            outcome.created += 1
            for resolution in ROLLUP_RESOLUTIONS:
                series = self.rollups.setdefault((r.site_id, r.sensor_id, r.metric, resolution), {})
                start = bucket_start(r.ts_ms, resolution)
                held = series.get(start)
                if held is None:
                    series[start] = (Bucket.of(r.ts_ms, r.value), Decimal(repr(r.value)))
                else:
                    held[0].add(r.ts_ms, r.value)
                    series[start] = (held[0], held[1] + Decimal(repr(r.value)))
        return outcome

    def read_raw(
        self, site_id: str, sensor_ids: Sequence[str], metric: str, start_ms: int, end_ms: int, limit: int
    ) -> dict[str, list[tuple[int, float]]]:
        """Each sensor's (ts_ms, value) in [start_ms, end_ms) in time order; each stops once it has
        more than `limit`, as the real reads do, so the caller can tell "too many"."""
        out: dict[str, list[tuple[int, float]]] = {}
        for sensor_id in sensor_ids:
            points = sorted(
                (ts, v) for (s, i, m, ts), v in self.raw.items()
                if s == site_id and i == sensor_id and m == metric and start_ms <= ts < end_ms
            )  # fmt: skip
            out[sensor_id] = points[: limit + 1]
        return out

    def read_rollups(
        self,
        site_id: str,
        sensor_ids: Sequence[str],
        metric: str,
        resolution: str,
        start_ms: int,
        end_ms: int,
    ) -> dict[str, dict[int, Bucket]]:
        out: dict[str, dict[int, Bucket]] = {}
        for sensor_id in sensor_ids:
            series = self.rollups.get((site_id, sensor_id, metric, resolution), {})
            out[sensor_id] = {
                start: Bucket(b.count, float(exact), b.min, b.max, b.last, b.last_ts)
                for start, (b, exact) in sorted(series.items())
                if start_ms <= start < end_ms
            }
        return out


class MemoryStatus:
    """SensorStatus (and so LatestReadings) in memory: each sensor's newest reading, moved only forward
    (a reading at the same ts moves it too: the real condition is `ts <= :ts`)."""

    def __init__(self) -> None:
        self.heard: dict[tuple[str, str], Heard] = {}

    def record(self, site_id: str, heard: Sequence[Heard]) -> int:
        moved = 0
        for h in heard:
            held = self.heard.get((site_id, h.sensor_id))
            if held is None or held.ts_ms <= h.ts_ms:
                self.heard[(site_id, h.sensor_id)] = Heard(h.sensor_id, h.ts_ms, dict(h.metrics))
                moved += 1
        return moved

    def get(self, site_id: str, sensor_ids: Iterable[str]) -> dict[str, Heard]:
        found = {i: self.heard.get((site_id, i)) for i in set(sensor_ids)}
        return {i: Heard(h.sensor_id, h.ts_ms, dict(h.metrics)) for i, h in found.items() if h is not None}


# ---------------------------------------------------------------- alerts


class MemoryAlerts:
    """AlertStore in memory: alerts, and per rule when its breach began (`since`) and its open alert.

    Opening succeeds only while the rule has no open alert (the real transaction's condition), clearing
    only when the alert named is the rule's open one; `start_breach` keeps the earliest beginning."""

    def __init__(self) -> None:
        self.rule_items: dict[tuple[str, str], dict[str, Any]] = {}
        self.alerts: dict[tuple[str, str], Alert] = {}

    def rules(self, site_id: str, rules: list[str]) -> dict[str, RuleState]:
        return {
            rule: RuleState(item.get("since"), item.get("open"))
            for rule in set(rules)
            if (item := self.rule_items.get((site_id, rule))) is not None
        }

    def start_breach(self, site_id: str, rule: str, since_ms: int) -> None:
        item = self.rule_items.setdefault((site_id, rule), {})
        if item.get("since") is None or item["since"] > since_ms:
            item["since"] = since_ms

    def end_breach(self, site_id: str, rule: str) -> None:
        self.rule_items.setdefault((site_id, rule), {}).pop("since", None)

    def open(self, alert: Alert) -> bool:
        item = self.rule_items.setdefault((alert.site_id, alert.rule), {})
        if item.get("open") is not None or (alert.site_id, alert.alert_id) in self.alerts:
            return False
        item["open"] = alert.alert_id
        item.pop("since", None)
        fresh = Alert.model_fields  # the mutable fields start as a new alert's, as the real put writes them
        self.alerts[(alert.site_id, alert.alert_id)] = alert.model_copy(
            update={name: fresh[name].default for name in MUTABLE}, deep=True
        )
        return True

    def clear(self, site_id: str, rule: str, alert_id: str, cleared_at: str) -> bool:
        item = self.rule_items.get((site_id, rule))
        if item is None or item.get("open") != alert_id:
            return False
        item.pop("open")
        item.pop("since", None)
        held = self.alerts[(site_id, alert_id)]
        self.alerts[(site_id, alert_id)] = held.model_copy(
            update={"status": "cleared", "cleared_at": cleared_at}
        )
        return True

    def get(self, site_id: str, alert_id: str) -> Alert:
        if (site_id, alert_id) not in self.alerts:
            raise NotFound(f"no event {alert_id!r} in this site", "id")
        return self.alerts[(site_id, alert_id)].model_copy(deep=True)

    def acknowledge(self, site_id: str, alert_id: str, by: str, at: str) -> Alert:
        held = self.get(site_id, alert_id)
        self.alerts[(site_id, alert_id)] = held.model_copy(
            update={"acknowledged": True, "acknowledged_at": held.acknowledged_at or at,
                    "acknowledged_by": held.acknowledged_by or by}
        )  # fmt: skip
        return self.get(site_id, alert_id)

    def opened(self, site_id: str) -> list[Alert]:
        """The site's alerts, oldest first (for tests)."""
        return [a for (s, _), a in sorted(self.alerts.items()) if s == site_id]

    def list(self, site_id: str, q: EventsQuery, since_ms: int | None) -> AlertPage:
        """Newest first from `since_ms`; filters apply to each page after `limit` is taken."""
        low = f"{ALERT}{since_ms or 0:013d}"
        keyed = [(ALERT + i, a.model_copy(deep=True)) for (s, i), a in self.alerts.items() if s == site_id]
        keyed = [(sk, a) for sk, a in keyed if sk >= low]

        def keep(a: Alert) -> bool:
            return (
                (q.severity is None or a.severity == q.severity)
                and (q.acknowledged is None or a.acknowledged == (q.acknowledged == "true"))
                and (q.status is None or a.status == q.status)
            )

        after = _after(q.next_token, ("pk", "sk"), "sk")
        page = _page(keyed, q.limit, after, lambda sk: {"pk": site_id, "sk": sk}, keep, newest_first=True)
        return AlertPage(items=page.items, count=page.count, next_token=page.next_token)

    def count_open(self, site_id: str) -> int:
        return sum(1 for (s, _), a in self.alerts.items() if s == site_id and a.status == "open")
