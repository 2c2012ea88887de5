"""Sites, rooms, sensors and each site's tariff in one DynamoDB table, written by this store only.

Keys: pk = site id; sk = "SITE", "TARIFF", "ROOM#<name>" or "SENSOR#<id>". Index gsi1 lists all sites
(gsi1pk "SITES") and a room's sensors (gsi1pk "<site>#ROOM#<name>"). A room keeps the count of its
sensors, moved in the same transaction as the sensor, so "delete a room that has sensors" is one
atomic condition rather than a query and a hope.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import cache
from typing import Any

from pynamodb.attributes import (
    JSONAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.connection import Connection
from pynamodb.exceptions import DeleteError, DoesNotExist, PutError, TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from ems.core.clock import to_iso
from ems.core.errors import Conflict, Invalid, NotFound
from ems.core.pagination import Page, decode_token, encode_token
from ems.core.settings import settings
from ems.core.tables import EnvRegion, EnvTableName
from ems.registry.models import Room, Sensor, Site, Threshold
from ems.tariffs.models import Tariff

SITE_SK = "SITE"
# The site's tariff (its pricing rules: ems.tariffs.models): configuration of the site, deleted with it.
TARIFF_SK = "TARIFF"
ROOM = "ROOM#"
SENSOR = "SENSOR#"
ALL_SITES = "SITES"
# What a page's next_token holds: the table's key, and the index's too for a page of gsi1.
PAGE_KEYS = ("pk", "sk")
GSI1_PAGE_KEYS = ("pk", "sk", "gsi1pk", "gsi1sk")
# DynamoDB allows 100 items in one transaction; keep one place for the room's counter.
TRANSACTION_CHUNK = 99


class Gsi1(GlobalSecondaryIndex["RegistryItem"]):
    class Meta:
        index_name = "gsi1"
        projection = AllProjection()

    gsi1pk = UnicodeAttribute(hash_key=True)
    gsi1sk = UnicodeAttribute(range_key=True)


class RegistryItem(Model):
    """Attributes common to every item; the kinds below add their own."""

    class Meta:
        table_name = EnvTableName("REGISTRY_TABLE", "ems-dev-registry")
        region = EnvRegion()

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    gsi1pk = UnicodeAttribute(null=True)
    gsi1sk = UnicodeAttribute(null=True)
    gsi1 = Gsi1()
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    # site
    name = UnicodeAttribute(null=True)
    timezone = UnicodeAttribute(null=True)
    latitude = NumberAttribute(null=True)
    longitude = NumberAttribute(null=True)
    currency = UnicodeAttribute(null=True)
    country = UnicodeAttribute(null=True)
    # room
    floor = UnicodeAttribute(null=True)
    capacity = NumberAttribute(null=True)
    area_m2 = NumberAttribute(null=True)
    description = UnicodeAttribute(null=True)
    sensor_count = NumberAttribute(null=True)
    # sensor
    sensor_type = UnicodeAttribute(null=True)
    room = UnicodeAttribute(null=True)
    unit = UnicodeAttribute(null=True)
    device_id = UnicodeAttribute(null=True)
    thresholds = MapAttribute(null=True)  # type: ignore[var-annotated]
    metadata = JSONAttribute(null=True)
    expected_interval_seconds = NumberAttribute(null=True)


@cache
def _connection() -> Connection:
    """One PynamoDB connection (and so one DynamoDB client) per process, for transactions."""
    return Connection(region=settings().region)


def _reasons(exc: TransactWriteError) -> list[str | None]:
    return [reason.code if reason else None for reason in exc.cancellation_reasons]


def _room_sensors_key(site_id: str, room: str) -> str:
    return f"{site_id}#{ROOM}{room}"


def _site(item: RegistryItem) -> Site:
    return Site(
        site_id=item.pk, name=item.name or "", timezone=item.timezone or "UTC", latitude=item.latitude,
        longitude=item.longitude, currency=item.currency or "EUR", country=item.country, created_at=item.created_at,
        updated_at=item.updated_at,
    )  # fmt: skip


def _room(item: RegistryItem) -> Room:
    return Room(
        site_id=item.pk, name=item.sk.removeprefix(ROOM), floor=item.floor,
        capacity=None if item.capacity is None else int(item.capacity), area_m2=item.area_m2,
        description=item.description, sensor_count=int(item.sensor_count or 0), created_at=item.created_at,
        updated_at=item.updated_at,
    )  # fmt: skip


def _sensor(item: RegistryItem) -> Sensor:
    thresholds = None
    if item.thresholds is not None:
        thresholds = {k: Threshold.model_validate(v) for k, v in item.thresholds.as_dict().items()}
    return Sensor(
        site_id=item.pk, sensor_id=item.sk.removeprefix(SENSOR), name=item.name or "",
        sensor_type=item.sensor_type or "", room=item.room, unit=item.unit, device_id=item.device_id,
        thresholds=thresholds, metadata=item.metadata, created_at=item.created_at, updated_at=item.updated_at,
        expected_interval_seconds=None if item.expected_interval_seconds is None
        else int(item.expected_interval_seconds),
    )  # fmt: skip


def _thresholds(value: dict[str, Threshold] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {metric: t.model_dump(exclude_none=True) for metric, t in value.items()}


class RegistryStore:
    """The repository of sites, rooms and sensors."""

    # ------------------------------------------------------------ sites

    def create_site(self, site: Site) -> Site:
        item = RegistryItem(
            pk=site.site_id, sk=SITE_SK, gsi1pk=ALL_SITES, gsi1sk=site.site_id, name=site.name,
            timezone=site.timezone, latitude=site.latitude, longitude=site.longitude, currency=site.currency,
            country=site.country, created_at=site.created_at, updated_at=site.updated_at,
        )  # fmt: skip
        try:
            item.save(condition=RegistryItem.pk.does_not_exist())
        except PutError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                raise Conflict(f"site {site.site_id!r} exists already", "site_id") from exc
            raise
        return site

    def get_site(self, site_id: str) -> Site:
        return _site(self._get(site_id, SITE_SK, f"no site {site_id!r}", "site_id"))

    def site_exists(self, site_id: str) -> bool:
        return self._exists(site_id, SITE_SK)

    def put_site(self, site: Site) -> Site:
        RegistryItem(
            pk=site.site_id, sk=SITE_SK, gsi1pk=ALL_SITES, gsi1sk=site.site_id, name=site.name,
            timezone=site.timezone, latitude=site.latitude, longitude=site.longitude, currency=site.currency,
            country=site.country, created_at=site.created_at, updated_at=site.updated_at,
        ).save(condition=RegistryItem.pk.exists())  # fmt: skip
        return site

    def list_sites(self, site_ids: list[str] | None, limit: int, next_token: str | None) -> Page[Site]:
        """All sites (`site_ids` None) or only those named, a page at a time."""
        if site_ids is not None:
            sites = [self.get_site(s) for s in sorted(site_ids) if self.site_exists(s)]
            return Page[Site](items=sites, count=len(sites))
        results = RegistryItem.gsi1.query(
            ALL_SITES, limit=limit, last_evaluated_key=decode_token(next_token, GSI1_PAGE_KEYS)
        )
        return self._page(results, _site)

    def site_item_counts(self, site_id: str) -> dict[str, int]:
        counts = {"rooms": 0, "sensors": 0, "other": 0}
        # A key condition cannot say "sk <> SITE" (DynamoDB has no <> on keys): skip it here.
        for item in RegistryItem.query(site_id, attributes_to_get=["sk"]):
            if item.sk in (SITE_SK, TARIFF_SK):
                continue
            kind = (
                "rooms" if item.sk.startswith(ROOM) else "sensors" if item.sk.startswith(SENSOR) else "other"
            )
            counts[kind] += 1
        return counts

    def delete_site(self, site_id: str, cascade: bool) -> None:
        """The site's item and its tariff; with `cascade`, every item of the site."""
        if cascade:
            with RegistryItem.batch_write() as batch:
                for item in RegistryItem.query(site_id, attributes_to_get=["pk", "sk"]):
                    if item.sk != SITE_SK:
                        batch.delete(item)
        else:
            RegistryItem(pk=site_id, sk=TARIFF_SK).delete()  # deleting what is not there is no error
        try:
            RegistryItem(pk=site_id, sk=SITE_SK).delete(condition=RegistryItem.pk.exists())
        except DeleteError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                raise NotFound(f"no site {site_id!r}", "site_id") from exc
            raise

    # ------------------------------------------------------------ rooms

    def create_room(self, room: Room) -> Room:
        item = RegistryItem(
            pk=room.site_id, sk=ROOM + room.name, floor=room.floor, capacity=room.capacity, area_m2=room.area_m2,
            description=room.description, sensor_count=0, created_at=room.created_at, updated_at=room.updated_at,
        )  # fmt: skip
        try:
            with TransactWrite(connection=_connection()) as tx:
                tx.condition_check(RegistryItem, room.site_id, SITE_SK, condition=RegistryItem.pk.exists())
                tx.save(item, condition=RegistryItem.pk.does_not_exist())
        except TransactWriteError as exc:
            site_missing, duplicate = (code == "ConditionalCheckFailed" for code in _reasons(exc))
            if site_missing:
                raise NotFound(f"no site {room.site_id!r}; create it first", "site") from exc
            if duplicate:
                raise Conflict(f"room {room.name!r} exists already", "name") from exc
            raise
        return room

    def get_room(self, site_id: str, name: str) -> Room:
        return _room(self._get(site_id, ROOM + name, f"no room {name!r}", "name"))

    def update_room(self, room: Room) -> Room:
        try:
            RegistryItem(pk=room.site_id, sk=ROOM + room.name).update(
                actions=[
                    RegistryItem.floor.set(room.floor)
                    if room.floor is not None
                    else RegistryItem.floor.remove(),
                    RegistryItem.capacity.set(room.capacity)
                    if room.capacity is not None
                    else RegistryItem.capacity.remove(),
                    RegistryItem.area_m2.set(room.area_m2)
                    if room.area_m2 is not None
                    else RegistryItem.area_m2.remove(),
                    RegistryItem.description.set(room.description)
                    if room.description is not None
                    else RegistryItem.description.remove(),
                    RegistryItem.updated_at.set(room.updated_at),
                ],
                condition=RegistryItem.pk.exists(),
            )
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                raise NotFound(f"no room {room.name!r}", "name") from exc
            raise
        return self.get_room(room.site_id, room.name)

    def list_rooms(self, site_id: str, limit: int, next_token: str | None) -> Page[Room]:
        results = RegistryItem.query(
            site_id,
            RegistryItem.sk.startswith(ROOM),
            limit=limit,
            last_evaluated_key=decode_token(next_token, PAGE_KEYS),
        )
        return self._page(results, _room)

    def delete_room(self, site_id: str, name: str, cascade: bool) -> dict[str, int]:
        """Delete a room; its sensors too with `cascade`, else 409 while it has any."""
        removed = 0
        if cascade:
            sensor_ids = [i.gsi1sk for i in RegistryItem.gsi1.query(_room_sensors_key(site_id, name))]
            for start in range(0, len(sensor_ids), TRANSACTION_CHUNK):
                chunk = sensor_ids[start : start + TRANSACTION_CHUNK]
                with TransactWrite(connection=_connection()) as tx:
                    for sensor_id in chunk:
                        tx.delete(RegistryItem(pk=site_id, sk=SENSOR + sensor_id))
                    tx.update(
                        RegistryItem(pk=site_id, sk=ROOM + name),
                        actions=[RegistryItem.sensor_count.add(-len(chunk))],
                        condition=RegistryItem.pk.exists(),
                    )
                removed += len(chunk)
        no_sensors: Condition = RegistryItem.sensor_count.does_not_exist() | (RegistryItem.sensor_count <= 0)
        try:
            RegistryItem(pk=site_id, sk=ROOM + name).delete(condition=RegistryItem.pk.exists() & no_sensors)
        except DeleteError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            room = self.get_room(site_id, name)  # NotFound when the room is not there at all
            raise Conflict(
                f"room {name!r} has {room.sensor_count} sensors; move or delete them, or pass ?cascade=true",
                "name",
            ) from exc
        return {"sensors": removed} if cascade else {}

    # ------------------------------------------------------------ sensors

    def create_sensor(self, sensor: Sensor) -> Sensor:
        item = self._sensor_item(sensor)
        try:
            with TransactWrite(connection=_connection()) as tx:
                tx.condition_check(RegistryItem, sensor.site_id, SITE_SK, condition=RegistryItem.pk.exists())
                if sensor.room is not None:
                    tx.update(
                        RegistryItem(pk=sensor.site_id, sk=ROOM + sensor.room),
                        actions=[RegistryItem.sensor_count.add(1)],
                        condition=RegistryItem.pk.exists(),
                    )
                tx.save(item, condition=RegistryItem.pk.does_not_exist())
        except TransactWriteError as exc:
            # PynamoDB sends condition checks, then deletes, puts and updates, whatever the order of
            # the calls above: [site check, sensor put, room update].
            failed = [code == "ConditionalCheckFailed" for code in _reasons(exc)] + [False] * 3
            site_missing, duplicate, room_missing = failed[:3]
            if site_missing:
                raise NotFound(f"no site {sensor.site_id!r}; create it first", "site") from exc
            if room_missing:
                raise Invalid(f"no room {sensor.room!r} in this site", "room") from exc
            if duplicate:
                raise Conflict(f"sensor {sensor.sensor_id!r} exists already", "sensor_id") from exc
            raise
        return sensor

    def get_sensor(self, site_id: str, sensor_id: str) -> Sensor:
        return _sensor(self._get(site_id, SENSOR + sensor_id, f"no sensor {sensor_id!r}", "sensor_id"))

    def get_sensors(self, site_id: str, sensor_ids: Iterable[str]) -> dict[str, Sensor]:
        """The site's sensors among `sensor_ids` (BatchGetItem, 100 a call); unknown ids are absent."""
        keys = [(site_id, SENSOR + sensor_id) for sensor_id in set(sensor_ids)]
        return {s.sensor_id: s for s in map(_sensor, RegistryItem.batch_get(keys, consistent_read=True))}

    def replace_sensor(self, before: Sensor, after: Sensor) -> Sensor:
        """Write `after` over `before`, moving the room counters in the same transaction."""
        try:
            with TransactWrite(connection=_connection()) as tx:
                if before.room != after.room:
                    if after.room is not None:
                        tx.update(
                            RegistryItem(pk=after.site_id, sk=ROOM + after.room),
                            actions=[RegistryItem.sensor_count.add(1)],
                            condition=RegistryItem.pk.exists(),
                        )
                    if before.room is not None:
                        tx.update(
                            RegistryItem(pk=before.site_id, sk=ROOM + before.room),
                            actions=[RegistryItem.sensor_count.add(-1)],
                            condition=RegistryItem.pk.exists(),
                        )
                tx.save(
                    self._sensor_item(after),
                    condition=RegistryItem.pk.exists() & (RegistryItem.updated_at == before.updated_at),
                )
        except TransactWriteError as exc:
            # PynamoDB sends puts before updates: [sensor put, new room's update?, old room's update?].
            failed = [code == "ConditionalCheckFailed" for code in _reasons(exc)] + [False] * 2
            changed, new_room_missing = failed[:2]
            if before.room != after.room and after.room is not None and new_room_missing:
                raise Invalid(f"no room {after.room!r} in this site", "room") from exc
            if changed:
                raise Conflict("the sensor changed while updating it; retry", "sensor_id") from exc
            raise
        return after

    def delete_sensor(self, site_id: str, sensor_id: str) -> None:
        sensor = self.get_sensor(site_id, sensor_id)
        try:
            with TransactWrite(connection=_connection()) as tx:
                tx.delete(RegistryItem(pk=site_id, sk=SENSOR + sensor_id), condition=RegistryItem.pk.exists())
                if sensor.room is not None:
                    tx.update(
                        RegistryItem(pk=site_id, sk=ROOM + sensor.room),
                        actions=[RegistryItem.sensor_count.add(-1)],
                        condition=RegistryItem.pk.exists(),
                    )
        except TransactWriteError as exc:
            if _reasons(exc)[:1] == ["ConditionalCheckFailed"]:
                raise NotFound(f"no sensor {sensor_id!r}", "sensor_id") from exc
            raise

    def list_sensors(
        self, site_id: str, room: str | None, sensor_type: str | None, limit: int, next_token: str | None
    ) -> Page[Sensor]:
        type_filter = RegistryItem.sensor_type == sensor_type if sensor_type else None
        start = decode_token(next_token, PAGE_KEYS if room is None else GSI1_PAGE_KEYS)
        if room is not None:
            results = RegistryItem.gsi1.query(
                _room_sensors_key(site_id, room),
                filter_condition=type_filter,
                limit=limit,
                last_evaluated_key=start,
            )
        else:
            results = RegistryItem.query(
                site_id, RegistryItem.sk.startswith(SENSOR), filter_condition=type_filter, limit=limit,
                last_evaluated_key=start,
            )  # fmt: skip
        return self._page(results, _sensor)

    # ------------------------------------------------------------ shared

    @staticmethod
    def _sensor_item(sensor: Sensor) -> RegistryItem:
        return RegistryItem(
            pk=sensor.site_id, sk=SENSOR + sensor.sensor_id,
            gsi1pk=_room_sensors_key(sensor.site_id, sensor.room) if sensor.room else None,
            gsi1sk=sensor.sensor_id if sensor.room else None, name=sensor.name, sensor_type=sensor.sensor_type,
            room=sensor.room, unit=sensor.unit, device_id=sensor.device_id,
            thresholds=_thresholds(sensor.thresholds), metadata=sensor.metadata, created_at=sensor.created_at,
            updated_at=sensor.updated_at, expected_interval_seconds=sensor.expected_interval_seconds,
        )  # fmt: skip

    def sensor_exists(self, site_id: str, sensor_id: str) -> bool:
        return self._exists(site_id, SENSOR + sensor_id)

    def room_exists(self, site_id: str, name: str) -> bool:
        return self._exists(site_id, ROOM + name)

    # ------------------------------------------------------------ the site's tariff

    def get_tariff(self, site_id: str) -> Tariff | None:
        try:
            item = RegistryItem.get(site_id, TARIFF_SK)
        except DoesNotExist:
            return None
        data: dict[str, Any] = dict(item.metadata or {})
        return Tariff.model_validate({**data, "site_id": site_id, "updated_at": to_iso(item.updated_at)})

    def put_tariff(self, tariff: Tariff, created_at: datetime) -> None:
        data = tariff.model_dump(exclude={"site_id", "updated_at", "is_default"})
        RegistryItem(
            pk=tariff.site_id, sk=TARIFF_SK, metadata=data, created_at=created_at, updated_at=created_at
        ).save()

    @staticmethod
    def _exists(pk: str, sk: str) -> bool:
        try:
            RegistryItem.get(pk, sk, attributes_to_get=["pk"])
        except DoesNotExist:
            return False
        return True

    @staticmethod
    def _get(pk: str, sk: str, message: str, field: str) -> RegistryItem:
        try:
            return RegistryItem.get(pk, sk, consistent_read=True)
        except DoesNotExist as exc:
            raise NotFound(message, field) from exc

    @staticmethod
    def _page(results: Any, convert: Any) -> Page[Any]:
        items = [convert(item) for item in results]
        return Page[Any](items=items, count=len(items), next_token=encode_token(results.last_evaluated_key))
