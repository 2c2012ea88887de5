"""The registry's rules through a fake store (ems.registry.service): sites, rooms, sensors, their status
and the site's tariff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from ems.core.errors import BadRequest, Conflict, DomainError, Forbidden, Invalid, NotFound
from ems.core.pagination import Page, every
from ems.registry import service as registry
from ems.registry.models import (
    RoomIn,
    RoomUpdate,
    SensorIn,
    SensorUpdate,
    SensorWithStatus,
    SiteIn,
    SiteUpdate,
)
from ems.registry.status import Heard
from ems.tariffs.models import TariffIn
from tests.support.fakes import MemoryRegistry, MemoryStatus, caller

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)
T0 = int(NOW.timestamp() * 1000)


def clock() -> datetime:
    return NOW


def later() -> datetime:
    return LATER


def refused(error: DomainError) -> tuple[str, str, str | None]:
    return type(error).__name__, error.message, error.field


def hq() -> MemoryRegistry:
    """Site hq with rooms Office (t1, c1) and Lab (empty)."""
    store = MemoryRegistry()
    registry.create_site(SiteIn(site_id="hq", name="HQ"), caller(), store, clock)
    registry.create_room("hq", RoomIn(name="Office", floor="1"), store, clock)
    registry.create_room("hq", RoomIn(name="Lab"), store, clock)
    for sensor_id, kind in (("t1", "temperature"), ("c1", "co2")):
        registry.create_sensor(
            "hq", SensorIn(sensor_id=sensor_id, name=sensor_id, sensor_type=kind, room="Office"), store, clock
        )
    return store


# ---------------------------------------------------------------- sites


def test_a_site_only_for_a_token_that_holds_it() -> None:
    store = MemoryRegistry()
    with pytest.raises(Forbidden) as no:
        registry.create_site(SiteIn(site_id="other", name="O"), caller(sites=["hq"]), store, clock)
    assert refused(no.value) == ("Forbidden", "this token is not granted site 'other'", "site_id")
    assert store.sites == {}

    site = registry.create_site(SiteIn(site_id="hq", name="HQ"), caller(sites=["hq"]), store, clock)
    assert (site.site_id, site.created_at, site.timezone, site.currency) == ("hq", NOW, "UTC", "EUR")
    with pytest.raises(Conflict) as twice:
        registry.create_site(SiteIn(site_id="hq", name="HQ"), caller(), store, clock)
    assert refused(twice.value) == ("Conflict", "site 'hq' exists already", "site_id")


def test_get_and_update_a_site() -> None:
    store = hq()
    updated = registry.update_site(
        "hq", SiteUpdate(name="Head office", timezone="Europe/Berlin"), store, later
    )
    assert (updated.name, updated.timezone, updated.created_at, updated.updated_at) == (
        "Head office", "Europe/Berlin", NOW, LATER
    )  # fmt: skip
    assert registry.get_site("hq", store) == updated
    with pytest.raises(NotFound) as missing:
        registry.get_site("nowhere", store)
    assert refused(missing.value) == ("NotFound", "no site 'nowhere'", "site_id")
    with pytest.raises(NotFound):
        registry.update_site("nowhere", SiteUpdate(name="x"), store, later)


@pytest.mark.parametrize("country", ["DE", "GB-ENG", "US-CA", "DE-BY", None])
def test_a_site_s_country_is_one_whose_holidays_are_known(country: str | None) -> None:
    assert SiteIn(site_id="hq", name="HQ", country=country).country == country


@pytest.mark.parametrize(
    ("country", "reason"),
    [
        ("de", "'de' is not an ISO 3166 code: two capital letters, optionally a subdivision"),
        ("DEU", "'DEU' is not an ISO 3166 code"),
        ("GB_ENG", "'GB_ENG' is not an ISO 3166 code"),
        ("XX", "'XX' is not a country whose public holidays are known"),
        ("US-ZZ", "'ZZ' is not a subdivision of US whose public holidays are known"),
    ],
)
def test_a_bad_country_is_refused_naming_it_and_the_reason(country: str, reason: str) -> None:
    for model, fields in ((SiteIn, {"site_id": "hq", "name": "HQ"}), (SiteUpdate, {})):
        with pytest.raises(ValidationError) as bad:
            model.model_validate({**fields, "country": country})
        [error] = bad.value.errors()
        assert error["loc"] == ("country",) and reason in error["msg"]


def test_a_site_s_country_is_updated_and_cleared() -> None:
    store = hq()
    assert registry.update_site("hq", SiteUpdate(country="GB-ENG"), store, later).country == "GB-ENG"
    assert registry.get_site("hq", store).country == "GB-ENG"
    assert registry.update_site("hq", SiteUpdate(timezone="Europe/London"), store, later).country == "GB-ENG"
    assert registry.update_site("hq", SiteUpdate(country=None), store, later).country is None


def test_list_sites_is_the_tokens_sites_or_every_site_page_by_page() -> None:
    store = hq()
    for site_id in ("b-site", "c-site"):
        registry.create_site(SiteIn(site_id=site_id, name=site_id), caller(), store, clock)
    mine = registry.list_sites(caller(sites=["hq", "ghost"]), store, 50, None)
    assert [s.site_id for s in mine.items] == ["hq"]

    first = registry.list_sites(caller(), store, 2, None)
    assert [s.site_id for s in first.items] == ["b-site", "c-site"] and first.next_token
    pages = every(lambda token: registry.list_sites(caller(), store, 2, token))
    assert [s.site_id for s in pages] == ["b-site", "c-site", "hq"]
    with pytest.raises(BadRequest) as forged:
        registry.list_sites(caller(), store, 2, "bm90IGEgdG9rZW4")
    assert forged.value.field == "next_token"


def test_delete_a_site_that_still_has_rooms_only_with_cascade() -> None:
    store = hq()
    registry.put_tariff("hq", TariffIn(import_price=0.3, export_price=0.1), store, clock)
    with pytest.raises(Conflict) as busy:
        registry.delete_site("hq", False, store)
    assert busy.value.message == (
        "site 'hq' still has 2 rooms and 2 sensors; delete them first or pass ?cascade=true"
    )
    assert registry.delete_site("hq", True, store).cascaded == {"rooms": 2, "sensors": 2}
    with pytest.raises(NotFound):
        registry.get_site("hq", store)
    with pytest.raises(NotFound):
        registry.delete_site("hq", True, store)
    assert store.tariffs == {} and store.rooms == {} and store.sensors == {}


# ---------------------------------------------------------------- rooms


def test_rooms_create_get_update_list() -> None:
    store = hq()
    with pytest.raises(NotFound) as no_site:
        registry.create_room("nowhere", RoomIn(name="X"), store, clock)
    assert refused(no_site.value) == ("NotFound", "no site 'nowhere'; create it first", "site")
    with pytest.raises(Conflict) as twice:
        registry.create_room("hq", RoomIn(name="Lab"), store, clock)
    assert refused(twice.value) == ("Conflict", "room 'Lab' exists already", "name")

    office = registry.get_room("hq", "Office", store)
    assert (office.floor, office.sensor_count) == ("1", 2)
    changed = registry.update_room("hq", "Office", RoomUpdate(capacity=12), store, later)
    assert (changed.floor, changed.capacity, changed.sensor_count, changed.updated_at) == ("1", 12, 2, LATER)
    with pytest.raises(NotFound) as missing:
        registry.get_room("hq", "Attic", store)
    assert refused(missing.value) == ("NotFound", "no room 'Attic'", "name")

    first = registry.list_rooms("hq", store, 1, None)
    second = registry.list_rooms("hq", store, 1, first.next_token)
    assert [r.name for r in first.items + second.items] == ["Lab", "Office"]


def test_a_room_with_sensors_is_deleted_only_with_cascade() -> None:
    store = hq()
    with pytest.raises(Conflict) as busy:
        registry.delete_room("hq", "Office", False, store)
    assert busy.value.message == "room 'Office' has 2 sensors; move or delete them, or pass ?cascade=true"
    assert registry.delete_room("hq", "Lab", False, store).cascaded == {}
    assert registry.delete_room("hq", "Office", True, store).cascaded == {"sensors": 2}
    assert registry.list_rooms("hq", store, 50, None).items == []
    assert store.sensors == {}
    with pytest.raises(NotFound):
        registry.delete_room("hq", "Office", False, store)


# ---------------------------------------------------------------- sensors


def test_a_sensor_in_a_room_that_does_not_exist_is_invalid() -> None:
    store = hq()
    with pytest.raises(Invalid) as no_room:
        registry.create_sensor(
            "hq", SensorIn(sensor_id="x", name="x", sensor_type="co2", room="Attic"), store
        )
    assert refused(no_room.value) == ("Invalid", "no room 'Attic' in this site", "room")
    with pytest.raises(Conflict) as twice:
        registry.create_sensor("hq", SensorIn(sensor_id="t1", name="t", sensor_type="temperature"), store)
    assert refused(twice.value) == ("Conflict", "sensor 't1' exists already", "sensor_id")


def test_moving_a_sensor_moves_the_rooms_counts() -> None:
    store = hq()
    moved = registry.update_sensor("hq", "t1", SensorUpdate(room="Lab", unit="C"), store, later)
    assert (moved.room, moved.unit, moved.name, moved.updated_at) == ("Lab", "C", "t1", LATER)
    counts = {r.name: r.sensor_count for r in registry.list_rooms("hq", store, 50, None).items}
    assert counts == {"Lab": 1, "Office": 1}
    with pytest.raises(Invalid) as no_room:
        registry.update_sensor("hq", "t1", SensorUpdate(room="Attic"), store, later)
    assert no_room.value.field == "room"

    registry.delete_sensor("hq", "t1", store)
    assert registry.get_room("hq", "Lab", store).sensor_count == 0
    with pytest.raises(NotFound) as gone:
        registry.delete_sensor("hq", "t1", store)
    assert refused(gone.value) == ("NotFound", "no sensor 't1'", "sensor_id")


def test_a_sensor_changed_meanwhile_is_a_conflict() -> None:
    store = hq()
    before = store.get_sensor("hq", "t1")
    registry.update_sensor("hq", "t1", SensorUpdate(name="first"), store, later)
    with pytest.raises(Conflict) as raced:
        store.replace_sensor(before, before.model_copy(update={"name": "second"}))
    assert raced.value.message == "the sensor changed while updating it; retry"
    assert store.get_sensor("hq", "t1").name == "first"


def status_site() -> tuple[MemoryRegistry, MemoryStatus]:
    """a and b report every 60 s (offline after 180 s), d has no interval (300 s: offline after 900 s);
    a spoke 100 s ago, b 200 s ago, d 899 s ago, c never."""
    store = MemoryRegistry()
    store.add_site("hq")
    for sensor_id, interval in (("a", 60), ("b", 60), ("c", 60), ("d", None)):
        store.add_sensor("hq", sensor_id, "power", expected_interval_seconds=interval)
    latest = MemoryStatus()
    latest.record("hq", [Heard("a", T0 - 100_000, {"power_w": 10}), Heard("b", T0 - 200_000, {"power_w": 20}),
                         Heard("d", T0 - 899_000, {"power_w": 40})])  # fmt: skip
    return store, latest


@pytest.mark.parametrize(
    ("status", "expected"),
    [("online", ["a", "d"]), ("offline", ["b"]), ("unknown", ["c"]), (None, list("abcd"))],
)
def test_list_sensors_by_status(status: str | None, expected: list[str]) -> None:
    store, latest = status_site()
    page = registry.list_sensors(
        "hq", None, None, registry.status_filter(status), caller(), store, latest, 50, None, clock
    )
    assert [s.sensor_id for s in page.items] == expected


def test_a_sensors_status_last_seen_and_last_reading() -> None:
    store, latest = status_site()
    a = registry.get_sensor("hq", "a", caller(), store, latest, clock)
    assert (a.status, a.last_seen) == ("online", "2025-06-02T11:58:20.000Z")
    assert a.last_reading is not None and a.last_reading.metrics == {"power_w": 10.0}
    c = registry.get_sensor("hq", "c", caller(), store, latest, clock)
    assert (c.status, c.last_seen, c.last_reading) == ("unknown", None, None)
    # d goes offline once 900 s have passed: 2 s later it has been silent 901 s.
    d = registry.get_sensor("hq", "d", caller(), store, latest, lambda: NOW + timedelta(seconds=2))
    assert d.status == "offline"


def test_a_status_filter_pages_as_dynamodb_filters_do() -> None:
    """Pages of 2 filtered to offline: the first page holds none, the second b; following next_token
    finds every match."""
    store, latest = status_site()

    def read(token: str | None) -> Page[SensorWithStatus]:
        return registry.list_sensors("hq", None, None, "offline", caller(), store, latest, 2, token, clock)

    first = registry.list_sensors("hq", None, None, "online", caller(), store, latest, 2, None, clock)
    assert [s.sensor_id for s in first.items] == ["a"] and first.next_token is not None
    assert [s.sensor_id for s in every(read)] == ["b"]  # type: ignore[arg-type]


def test_an_unknown_status_is_refused() -> None:
    with pytest.raises(Invalid) as bad:
        registry.status_filter("asleep")
    assert refused(bad.value) == ("Invalid", "must be one of online, offline, unknown", "status")


def test_list_a_rooms_sensors_of_one_type() -> None:
    store = hq()
    registry.create_sensor(
        "hq", SensorIn(sensor_id="t2", name="t2", sensor_type="temperature", room="Office"), store
    )
    page = registry.list_sensors(
        "hq", "Office", "temperature", None, caller(), store, MemoryStatus(), 50, None, clock
    )
    assert [s.sensor_id for s in page.items] == ["t1", "t2"]
    assert (
        registry.list_sensors("hq", "Lab", None, None, caller(), store, MemoryStatus(), 50, None, clock).items
        == []
    )


# ---------------------------------------------------------------- tariffs


def test_a_site_without_a_tariff_gets_the_default() -> None:
    store = hq()
    tariff = registry.get_tariff("hq", store)
    assert (tariff.is_default, tariff.import_price, tariff.export_price, tariff.updated_at) == (
        True,
        0.0,
        0.0,
        None,
    )
    with pytest.raises(NotFound) as missing:
        registry.get_tariff("nowhere", store)
    assert refused(missing.value) == ("NotFound", "no site 'nowhere'", "site_id")


def test_a_stored_tariff_is_read_back() -> None:
    store = hq()
    body = TariffIn(import_price=0.3, export_price=0.08, demand_charge_per_kw=9.5, currency="CHF")
    put = registry.put_tariff("hq", body, store, clock)
    assert (put.is_default, put.updated_at) == (False, "2025-06-02T12:00:00.000Z")
    got = registry.get_tariff("hq", store)
    assert (got.is_default, got.import_price, got.export_price, got.demand_charge_per_kw, got.currency) == (
        False, 0.3, 0.08, 9.5, "CHF"
    )  # fmt: skip
    # The same instant, though written as the store reads its attribute back (+00:00, not .000Z).
    assert got.updated_at is not None and datetime.fromisoformat(got.updated_at) == NOW
    with pytest.raises(NotFound):
        registry.put_tariff("nowhere", body, store, clock)
