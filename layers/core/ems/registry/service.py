"""Sites, rooms, sensors and each site's tariff: the rules above the store (what may change, what must
exist). The tariff is site configuration, so it lives here and in the registry's table; its pricing
rules are ems.tariffs.models."""

from __future__ import annotations

from datetime import datetime

from ems.auth.models import Claims
from ems.core.clock import Clock, iso_ms, to_iso, utc_now
from ems.core.errors import Conflict, Forbidden, Invalid
from ems.core.pagination import Page
from ems.registry.models import (
    Deleted,
    LastReading,
    Room,
    RoomIn,
    RoomUpdate,
    Sensor,
    SensorIn,
    SensorUpdate,
    SensorWithStatus,
    Site,
    SiteIn,
    SiteUpdate,
)
from ems.registry.status import STATUSES, Heard, LatestReadings, Status, status_of
from ems.registry.store import RegistryStore
from ems.tariffs.models import Tariff, TariffIn, default_tariff

# ---------------------------------------------------------------- sites


def create_site(request: SiteIn, caller: Claims, store: RegistryStore, now: Clock = utc_now) -> Site:
    if not caller.may_access_site(request.site_id):
        raise Forbidden(f"this token is not granted site {request.site_id!r}", "site_id")
    moment = now()
    return store.create_site(Site(**request.model_dump(), created_at=moment, updated_at=moment))


def get_site(site_id: str, store: RegistryStore) -> Site:
    return store.get_site(site_id)


def update_site(site_id: str, change: SiteUpdate, store: RegistryStore, now: Clock = utc_now) -> Site:
    site = store.get_site(site_id)
    updated = site.model_copy(update={**change.model_dump(exclude_unset=True), "updated_at": now()})
    return store.put_site(Site.model_validate(updated.model_dump()))


def list_sites(caller: Claims, store: RegistryStore, limit: int, next_token: str | None) -> Page[Site]:
    """Every site for a token of all sites; the token's own sites otherwise."""
    return store.list_sites(None if "*" in caller.sites else list(caller.sites), limit, next_token)


def delete_site(site_id: str, cascade: bool, store: RegistryStore) -> Deleted:
    """Only an empty site, unless `cascade` (then everything in it goes, and the answer counts it)."""
    store.get_site(site_id)
    counts = store.site_item_counts(site_id)
    if not cascade and any(counts.values()):
        raise Conflict(
            f"site {site_id!r} still has {counts['rooms']} rooms and {counts['sensors']} sensors; "
            "delete them first or pass ?cascade=true",
            "site_id",
        )
    store.delete_site(site_id, cascade)
    return Deleted(cascaded={k: v for k, v in counts.items() if v} if cascade else {})


# ---------------------------------------------------------------- rooms


def create_room(site_id: str, request: RoomIn, store: RegistryStore, now: Clock = utc_now) -> Room:
    moment = now()
    return store.create_room(
        Room(**request.model_dump(), site_id=site_id, created_at=moment, updated_at=moment)
    )


def get_room(site_id: str, name: str, store: RegistryStore) -> Room:
    return store.get_room(site_id, name)


def update_room(
    site_id: str, name: str, change: RoomUpdate, store: RegistryStore, now: Clock = utc_now
) -> Room:
    room = store.get_room(site_id, name)
    return store.update_room(
        room.model_copy(update={**change.model_dump(exclude_unset=True), "updated_at": now()})
    )


def list_rooms(site_id: str, store: RegistryStore, limit: int, next_token: str | None) -> Page[Room]:
    return store.list_rooms(site_id, limit, next_token)


def delete_room(site_id: str, name: str, cascade: bool, store: RegistryStore) -> Deleted:
    return Deleted(cascaded=store.delete_room(site_id, name, cascade))


# ---------------------------------------------------------------- sensors


def create_sensor(site_id: str, request: SensorIn, store: RegistryStore, now: Clock = utc_now) -> Sensor:
    moment = now()
    return store.create_sensor(
        Sensor(**request.model_dump(), site_id=site_id, created_at=moment, updated_at=moment)
    )


def get_sensor(
    site_id: str,
    sensor_id: str,
    caller: Claims,
    store: RegistryStore,
    statuses: LatestReadings,
    now: Clock = utc_now,
) -> SensorWithStatus:
    sensor = store.get_sensor(site_id, sensor_id)
    return _with_status(sensor, statuses.get(site_id, [sensor_id]).get(sensor_id), caller, now())


def _with_status(sensor: Sensor, heard: Heard | None, caller: Claims, moment: datetime) -> SensorWithStatus:
    """The sensor with its status; its newest reading's values only where the token's data-sharing
    limits allow one sensor's raw reading of that time (status and last_seen are the sensor's own)."""
    shown = heard is not None and caller.may_see_reading(heard.ts_ms, moment)
    return SensorWithStatus(
        **sensor.model_dump(), status=status_of(heard, sensor.expected_interval_seconds, moment),
        last_seen=iso_ms(heard.ts_ms) if heard else None,
        last_reading=LastReading(ts=iso_ms(heard.ts_ms), metrics=heard.metrics) if heard and shown else None,
    )  # fmt: skip


def update_sensor(
    site_id: str, sensor_id: str, change: SensorUpdate, store: RegistryStore, now: Clock = utc_now
) -> Sensor:
    before = store.get_sensor(site_id, sensor_id)
    fields = change.model_dump(exclude_unset=True)
    after = Sensor.model_validate({**before.model_dump(), **fields, "updated_at": now()})
    return store.replace_sensor(before, after)


def status_filter(value: str | None) -> Status | None:
    """?status= of GET /sensors."""
    if value is None:
        return None
    for status in STATUSES:
        if value == status:
            return status
    raise Invalid(f"must be one of {', '.join(STATUSES)}", "status")


def list_sensors(
    site_id: str,
    room: str | None,
    sensor_type: str | None,
    status: Status | None,
    caller: Claims,
    store: RegistryStore,
    statuses: LatestReadings,
    limit: int,
    next_token: str | None,
    now: Clock = utc_now,
) -> Page[SensorWithStatus]:
    """A page of sensors with their status; `status` filters the page as a DynamoDB filter does (a
    page may hold fewer than `limit`; follow next_token)."""
    page = store.list_sensors(site_id, room, sensor_type, limit, next_token)
    heard = statuses.get(site_id, [s.sensor_id for s in page.items]) if page.items else {}
    moment = now()
    items = [_with_status(s, heard.get(s.sensor_id), caller, moment) for s in page.items]
    if status is not None:
        items = [s for s in items if s.status == status]
    return Page[SensorWithStatus](items=items, count=len(items), next_token=page.next_token)


def delete_sensor(site_id: str, sensor_id: str, store: RegistryStore) -> Deleted:
    store.delete_sensor(site_id, sensor_id)
    return Deleted()


# ---------------------------------------------------------------- tariffs


def get_tariff(site_id: str, store: RegistryStore) -> Tariff:
    """The site's tariff, or the default tariff (marked `is_default`) when it has set none."""
    store.get_site(site_id)  # 404 for a site that does not exist
    found = store.get_tariff(site_id)
    if found is not None:
        return found
    return Tariff(**default_tariff().model_dump(), site_id=site_id, is_default=True)


def put_tariff(site_id: str, tariff: TariffIn, store: RegistryStore, now: Clock = utc_now) -> Tariff:
    """Replace the site's tariff (a PUT: the same body twice is the same tariff)."""
    store.get_site(site_id)
    moment = now()
    stored = Tariff(**tariff.model_dump(), site_id=site_id, updated_at=to_iso(moment))
    store.put_tariff(stored, moment)
    return stored
