"""Sites, rooms and sensors: every route replayed from events/http through the authorizer, against moto.

The samples act on site "hq" (X-Site) and its room "Conference Room A" and sensor "TEMP_001".
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import tokens
from tests.support.events import replay
from tests.support.inprocess import InProcessApi, Reply, ok, refused


@pytest.fixture
def hq(api: InProcessApi, admin_token: str) -> str:
    """Site hq, created from the sample event."""
    ok(replay(api, "sites-create", admin_token), 201)
    return "hq"


def room(api: InProcessApi, token: str, name: str, site: str = "hq", **fields: Any) -> Reply:
    return replay(api, "rooms-create", token, body={"name": name, **fields}, headers={"x-site": site})


def sensor(api: InProcessApi, token: str, sensor_id: str, room_name: str | None, **fields: Any) -> Reply:
    body = {
        "sensor_id": sensor_id,
        "name": sensor_id,
        "sensor_type": fields.pop("sensor_type", "temperature"),
    }
    if room_name is not None:
        body["room"] = room_name
    return replay(api, "sensors-create", token, body={**body, **fields})


def sensor_count(api: InProcessApi, token: str, room_name: str) -> int:
    return int(ok(replay(api, "rooms-get", token, path={"name": room_name}))["sensor_count"])


def sensor_ids(api: InProcessApi, token: str, **filters: str) -> list[str]:
    page = ok(replay(api, "sensors-list", token, query=filters))
    assert page["count"] == len(page["items"])
    return sorted(s["sensor_id"] for s in page["items"])


# ---------------------------------------------------------------- sites


def test_site_lifecycle_from_the_samples(api: InProcessApi, admin_token: str) -> None:
    created = ok(replay(api, "sites-create", admin_token), 201)
    assert (created["site_id"], created["name"], created["timezone"]) == (
        "hq",
        "Headquarters",
        "Europe/Berlin",
    )
    assert (created["latitude"], created["longitude"], created["currency"]) == (52.52, 13.405, "EUR")
    assert created["country"] == "DE"

    assert "exists already" in refused(replay(api, "sites-create", admin_token), 409, "site_id")

    got = ok(replay(api, "sites-get", admin_token))
    assert (got["site_id"], got["name"]) == ("hq", "Headquarters")

    put = ok(replay(api, "sites-put", admin_token))
    assert (put["name"], put["timezone"], put["latitude"]) == ("Headquarters Berlin", "Europe/Berlin", 52.52)
    assert (put["country"], ok(replay(api, "sites-get", admin_token))["country"]) == ("DE-BE", "DE-BE")
    assert ok(replay(api, "sites-get", admin_token))["name"] == "Headquarters Berlin"

    listed = ok(replay(api, "sites-list", admin_token))
    assert [s["site_id"] for s in listed["items"]] == ["hq"]

    assert ok(replay(api, "sites-delete", admin_token)) == {"deleted": True, "cascaded": {}}
    refused(replay(api, "sites-get", admin_token), 404, "site_id")
    refused(replay(api, "sites-delete", admin_token), 404, "site_id")
    refused(replay(api, "sites-put", admin_token), 404, "site_id")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"timezone": ""}, "timezone"),
        ({"latitude": 91}, "latitude"),
        ({"longitude": -180.5}, "longitude"),
        ({"currency": "euro"}, "currency"),
        ({"country": "Germany"}, "country"),
        ({"country": "XX"}, "country"),
        ({"site_id": "has space"}, "site_id"),
        ({"site_id": "a/b"}, "site_id"),
        ({"name": ""}, "name"),
        ({"owner": "me"}, "owner"),
    ],
)
def test_site_validation_names_the_field(
    api: InProcessApi, admin_token: str, change: dict[str, Any], field: str
) -> None:
    body = {"site_id": "hq", "name": "Headquarters", "timezone": "Europe/Berlin", **change}
    refused(replay(api, "sites-create", admin_token, body=body), 422, field)
    assert ok(replay(api, "sites-list", admin_token))["items"] == []


def test_site_update_validation(api: InProcessApi, admin_token: str, hq: str) -> None:
    refused(replay(api, "sites-put", admin_token, body={"timezone": "Nowhere/Land"}), 422, "timezone")
    refused(replay(api, "sites-put", admin_token, body={"site_id": "x"}), 422, "site_id")
    message = refused(replay(api, "sites-put", admin_token, body={"country": "US-ZZ"}), 422, "country")
    assert "'ZZ' is not a subdivision of US whose public holidays are known" in message
    assert ok(replay(api, "sites-get", admin_token))["timezone"] == "Europe/Berlin"


@pytest.mark.parametrize("raw", ["{not json", "", "[1, 2]", '"text"', '{"name": '])
def test_a_body_that_is_not_a_json_object_is_400_body(api: InProcessApi, admin_token: str, raw: str) -> None:
    refused(replay(api, "sites-create", admin_token, body=raw), 400, "body")
    refused(replay(api, "rooms-create", admin_token, body=raw), 400, "body")


def test_site_delete_refused_while_it_holds_anything_then_cascades(
    api: InProcessApi, admin_token: str, hq: str
) -> None:
    ok(replay(api, "rooms-create", admin_token), 201)
    ok(room(api, admin_token, "Open Office"), 201)
    ok(replay(api, "sensors-create", admin_token), 201)
    ok(sensor(api, admin_token, "CO2_001", None, sensor_type="co2"), 201)

    message = refused(replay(api, "sites-delete", admin_token), 409, "site_id")
    assert "2 rooms and 2 sensors" in message
    assert ok(replay(api, "sites-get", admin_token))["site_id"] == "hq"

    deleted = ok(replay(api, "sites-delete", admin_token, query={"cascade": "true"}))
    assert deleted == {"deleted": True, "cascaded": {"rooms": 2, "sensors": 2}}
    refused(replay(api, "sites-get", admin_token), 404, "site_id")
    # A new site of the same id starts empty: nothing was left behind.
    ok(replay(api, "sites-create", admin_token), 201)
    assert ok(replay(api, "rooms-list", admin_token))["count"] == 0
    assert sensor_ids(api, admin_token) == []


def test_cascade_must_be_a_boolean(api: InProcessApi, admin_token: str, hq: str) -> None:
    refused(replay(api, "sites-delete", admin_token, query={"cascade": "yes"}), 400, "cascade")


# ---------------------------------------------------------------- rooms


def test_room_lifecycle_from_the_samples(api: InProcessApi, admin_token: str, hq: str) -> None:
    created = ok(replay(api, "rooms-create", admin_token), 201)
    assert (created["name"], created["site_id"], created["sensor_count"]) == ("Conference Room A", "hq", 0)
    assert (created["floor"], created["capacity"], created["area_m2"]) == ("2nd", 20, 42.5)

    assert "exists already" in refused(replay(api, "rooms-create", admin_token), 409, "name")

    got = ok(replay(api, "rooms-get", admin_token))
    assert (got["name"], got["floor"], got["capacity"]) == ("Conference Room A", "2nd", 20)

    put = ok(replay(api, "rooms-put", admin_token))
    assert (put["floor"], put["capacity"], put["area_m2"]) == ("3rd", 24, 42.5)

    listed = ok(replay(api, "rooms-list", admin_token))
    assert [(r["name"], r["floor"]) for r in listed["items"]] == [("Conference Room A", "3rd")]

    assert ok(replay(api, "rooms-delete", admin_token)) == {"deleted": True, "cascaded": {}}
    refused(replay(api, "rooms-get", admin_token), 404, "name")
    refused(replay(api, "rooms-delete", admin_token), 404, "name")
    refused(replay(api, "rooms-put", admin_token), 404, "name")
    assert ok(replay(api, "rooms-list", admin_token))["count"] == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"capacity": -1}, "capacity"),
        ({"capacity": "many"}, "capacity"),
        ({"area_m2": 0}, "area_m2"),
        ({"name": "a/b"}, "name"),
        ({"name": " padded "}, "name"),
        ({"name": ""}, "name"),
        ({"floor": "x" * 51}, "floor"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_room_validation_names_the_field(
    api: InProcessApi, admin_token: str, hq: str, change: dict[str, Any], field: str
) -> None:
    body = {"name": "Conference Room A", "capacity": 20, **change}
    refused(replay(api, "rooms-create", admin_token, body=body), 422, field)
    assert ok(replay(api, "rooms-list", admin_token))["count"] == 0


def test_room_update_validation(api: InProcessApi, admin_token: str, hq: str) -> None:
    ok(replay(api, "rooms-create", admin_token), 201)
    refused(replay(api, "rooms-put", admin_token, body={"capacity": -1}), 422, "capacity")
    refused(replay(api, "rooms-put", admin_token, body={"name": "Renamed"}), 422, "name")
    assert ok(replay(api, "rooms-get", admin_token))["capacity"] == 20


def test_rooms_page_by_three(api: InProcessApi, admin_token: str, hq: str) -> None:
    names = [f"Room {n}" for n in range(1, 8)]
    for name in names:
        ok(room(api, admin_token, name), 201)

    pages: list[list[str]] = []
    next_token: str | None = None
    while True:
        query = {"limit": "3"} if next_token is None else {"limit": "3", "next_token": next_token}
        page = ok(replay(api, "rooms-list", admin_token, query=query))
        pages.append([r["name"] for r in page["items"]])
        next_token = page["next_token"]
        if next_token is None:
            break
        assert len(pages) < 5, pages

    assert [len(p) for p in pages] == [3, 3, 1]
    seen = [name for page in pages for name in page]
    assert sorted(seen) == names  # each room once


@pytest.mark.parametrize(
    "next_token",
    [
        "garbage!",
        "bm90IGpzb24",  # base64 of "not json"
        "WzEsMl0",  # base64 of [1,2]
        "eyJwayI6ImhxIn0",  # base64 of {"pk":"hq"}: a dict, but not a key this API issued
        "eyJmb28iOnsiUyI6ImJhciJ9fQ",  # base64 of {"foo":{"S":"bar"}}
    ],
)
def test_a_next_token_we_did_not_issue_is_400(
    api: InProcessApi, admin_token: str, hq: str, next_token: str
) -> None:
    ok(room(api, admin_token, "Room 1"), 201)
    refused(replay(api, "rooms-list", admin_token, query={"next_token": next_token}), 400, "next_token")
    refused(replay(api, "sensors-list", admin_token, query={"next_token": next_token}), 400, "next_token")
    refused(replay(api, "tokens-list", admin_token, query={"next_token": next_token}), 400, "next_token")


@pytest.mark.parametrize("limit", ["0", "201", "-3", "three"])
def test_limit_out_of_range_is_400(api: InProcessApi, admin_token: str, hq: str, limit: str) -> None:
    refused(replay(api, "rooms-list", admin_token, query={"limit": limit}), 400, "limit")


def test_room_with_sensors_is_deleted_only_with_cascade(api: InProcessApi, admin_token: str, hq: str) -> None:
    ok(replay(api, "rooms-create", admin_token), 201)
    ok(replay(api, "sensors-create", admin_token), 201)
    ok(sensor(api, admin_token, "HUM_001", "Conference Room A", sensor_type="humidity"), 201)
    ok(sensor(api, admin_token, "CO2_001", None, sensor_type="co2"), 201)
    assert sensor_count(api, admin_token, "Conference Room A") == 2

    assert "has 2 sensors" in refused(replay(api, "rooms-delete", admin_token), 409, "name")
    assert sensor_ids(api, admin_token) == ["CO2_001", "HUM_001", "TEMP_001"]

    deleted = ok(replay(api, "rooms-delete", admin_token, query={"cascade": "true"}))
    assert deleted == {"deleted": True, "cascaded": {"sensors": 2}}
    refused(replay(api, "rooms-get", admin_token), 404, "name")
    # The room's two sensors are gone; the one in no room stays.
    assert sensor_ids(api, admin_token) == ["CO2_001"]
    refused(replay(api, "sensors-get", admin_token), 404, "sensor_id")


def test_nothing_is_stored_under_a_site_that_does_not_exist(api: InProcessApi, admin_token: str) -> None:
    nowhere = {"x-site": "nowhere"}
    assert "create it first" in refused(
        replay(api, "rooms-create", admin_token, headers=nowhere), 404, "site"
    )
    body = {"sensor_id": "TEMP_001", "name": "t", "sensor_type": "temperature"}
    refused(replay(api, "sensors-create", admin_token, body=body, headers=nowhere), 404, "site")
    refused(replay(api, "sensors-create", admin_token, headers=nowhere), 404, "site")
    refused(replay(api, "rooms-get", admin_token, headers=nowhere), 404, "name")
    refused(replay(api, "sensors-get", admin_token, headers=nowhere), 404, "sensor_id")
    # Creating the site afterwards shows nothing was written before.
    ok(replay(api, "sites-create", admin_token, body={"site_id": "nowhere", "name": "N"}), 201)
    assert ok(replay(api, "rooms-list", admin_token, headers=nowhere))["count"] == 0
    assert ok(replay(api, "sensors-list", admin_token, query={}, headers=nowhere))["count"] == 0


# ---------------------------------------------------------------- sensors


def test_sensor_lifecycle_from_the_samples(api: InProcessApi, admin_token: str, hq: str) -> None:
    ok(replay(api, "rooms-create", admin_token), 201)
    created = ok(replay(api, "sensors-create", admin_token), 201)
    assert (created["sensor_id"], created["room"], created["site_id"]) == (
        "TEMP_001",
        "Conference Room A",
        "hq",
    )
    # The sample names min and max; a threshold also says how long and how severe (defaults shown).
    assert created["thresholds"] == {
        "temperature_c": {"min": 18.0, "max": 26.0, "for_minutes": 0, "severity": "warning"}
    }
    assert sensor_count(api, admin_token, "Conference Room A") == 1

    assert "exists already" in refused(replay(api, "sensors-create", admin_token), 409, "sensor_id")
    assert sensor_count(api, admin_token, "Conference Room A") == 1  # a refused create counts nothing

    got = ok(replay(api, "sensors-get", admin_token))
    assert (got["name"], got["unit"], got["device_id"]) == (
        "Conference Room Temperature",
        "°C",
        "thermostat-2a",
    )
    assert got["metadata"] == {"vendor": "Acme", "model": "T-100"}
    assert got["thresholds"] == created["thresholds"]

    listed = ok(replay(api, "sensors-list", admin_token))  # the sample filters on room and type
    assert [s["sensor_id"] for s in listed["items"]] == ["TEMP_001"]

    assert ok(replay(api, "sensors-delete", admin_token)) == {"deleted": True, "cascaded": {}}
    assert sensor_count(api, admin_token, "Conference Room A") == 0
    refused(replay(api, "sensors-get", admin_token), 404, "sensor_id")
    refused(replay(api, "sensors-delete", admin_token), 404, "sensor_id")
    refused(replay(api, "sensors-put", admin_token), 404, "sensor_id")


def test_a_sensor_in_an_unknown_room_is_422_room(api: InProcessApi, admin_token: str, hq: str) -> None:
    assert "no room 'Conference Room A'" in refused(replay(api, "sensors-create", admin_token), 422, "room")
    refused(replay(api, "sensors-get", admin_token), 404, "sensor_id")  # nothing half-written


def test_a_duplicate_sensor_in_no_room_is_409(api: InProcessApi, admin_token: str, hq: str) -> None:
    ok(sensor(api, admin_token, "M1", None, sensor_type="power"), 201)
    refused(sensor(api, admin_token, "M1", None, sensor_type="power"), 409, "sensor_id")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"sensor_type": "Temperature"}, "sensor_type"),
        ({"sensor_id": "bad id"}, "sensor_id"),
        ({"thresholds": {"temperature_c": {"min": 30, "max": 20}}}, "thresholds.temperature_c"),
        ({"thresholds": {"temperature_c": {}}}, "thresholds.temperature_c"),
        ({"thresholds": {"Bad-Metric": {"min": 1}}}, "thresholds"),
        ({"room": "a/b"}, "room"),
        ({"name": ""}, "name"),
        ({"device_id": "no spaces allowed"}, "device_id"),
    ],
)
def test_sensor_validation_names_the_field(
    api: InProcessApi, admin_token: str, hq: str, change: dict[str, Any], field: str
) -> None:
    body = {"sensor_id": "TEMP_001", "name": "t", "sensor_type": "temperature", **change}
    refused(replay(api, "sensors-create", admin_token, body=body), 422, field)
    assert sensor_ids(api, admin_token) == []


def test_sensors_filter_by_room_and_type(api: InProcessApi, admin_token: str, hq: str) -> None:
    ok(replay(api, "rooms-create", admin_token), 201)
    ok(room(api, admin_token, "Open Office"), 201)
    ok(replay(api, "sensors-create", admin_token), 201)  # TEMP_001, temperature, Conference Room A
    ok(sensor(api, admin_token, "HUM_001", "Conference Room A", sensor_type="humidity"), 201)
    ok(sensor(api, admin_token, "TEMP_002", "Open Office"), 201)
    ok(sensor(api, admin_token, "PV_001", None, sensor_type="power"), 201)

    assert sensor_ids(api, admin_token) == ["HUM_001", "PV_001", "TEMP_001", "TEMP_002"]
    assert sensor_ids(api, admin_token, room="Conference Room A") == ["HUM_001", "TEMP_001"]
    assert sensor_ids(api, admin_token, room="Open Office") == ["TEMP_002"]
    assert sensor_ids(api, admin_token, sensor_type="temperature") == ["TEMP_001", "TEMP_002"]
    assert sensor_ids(api, admin_token, room="Conference Room A", sensor_type="temperature") == ["TEMP_001"]
    assert sensor_ids(api, admin_token, sensor_type="co2") == []
    assert sensor_ids(api, admin_token, room="No Such Room") == []


def test_put_moves_a_sensor_and_both_rooms_count_it(api: InProcessApi, admin_token: str, hq: str) -> None:
    ok(replay(api, "rooms-create", admin_token), 201)
    ok(room(api, admin_token, "Open Office"), 201)
    ok(replay(api, "sensors-create", admin_token), 201)
    assert (
        sensor_count(api, admin_token, "Conference Room A"),
        sensor_count(api, admin_token, "Open Office"),
    ) == (1, 0)

    moved = ok(replay(api, "sensors-put", admin_token))  # the sample moves TEMP_001 to Open Office
    assert (moved["room"], moved["name"], moved["unit"]) == ("Open Office", "Open Office Temperature", "°C")
    assert (
        sensor_count(api, admin_token, "Conference Room A"),
        sensor_count(api, admin_token, "Open Office"),
    ) == (0, 1)
    assert sensor_ids(api, admin_token, room="Open Office") == ["TEMP_001"]
    assert sensor_ids(api, admin_token, room="Conference Room A") == []

    # Into a room that does not exist: 422, and neither count moves.
    refused(replay(api, "sensors-put", admin_token, body={"room": "Nowhere"}), 422, "room")
    assert (
        sensor_count(api, admin_token, "Conference Room A"),
        sensor_count(api, admin_token, "Open Office"),
    ) == (0, 1)
    assert ok(replay(api, "sensors-get", admin_token))["room"] == "Open Office"

    # Out of every room.
    assert ok(replay(api, "sensors-put", admin_token, body={"room": None}))["room"] is None
    assert sensor_count(api, admin_token, "Open Office") == 0
    assert sensor_ids(api, admin_token, room="Open Office") == []
    # A sensor in no room does not hold its old room back.
    assert ok(replay(api, "rooms-delete", admin_token, path={"name": "Open Office"}))["deleted"] is True


def test_sensor_update_validation(api: InProcessApi, admin_token: str, hq: str) -> None:
    ok(sensor(api, admin_token, "TEMP_001", None), 201)
    refused(replay(api, "sensors-put", admin_token, body={"sensor_type": "Bad Type"}), 422, "sensor_type")
    refused(replay(api, "sensors-put", admin_token, body={"sensor_id": "OTHER"}), 422, "sensor_id")
    refused(
        replay(api, "sensors-put", admin_token, body={"thresholds": {"temperature_c": {"min": 5, "max": 1}}}),
        422,
        "thresholds.temperature_c",
    )
    assert ok(replay(api, "sensors-get", admin_token))["sensor_type"] == "temperature"


# ---------------------------------------------------------------- site scoping


def test_a_token_of_site_a_is_refused_on_site_b(api: InProcessApi, admin_token: str) -> None:
    for site_id in ("a", "b"):
        ok(replay(api, "sites-create", admin_token, body={"site_id": site_id, "name": site_id.upper()}), 201)
    token_a = tokens.issue(["rooms", "sensors", "sites"], ["a"])

    assert replay(api, "rooms-list", token_a, headers={"x-site": "b"}).status == 403
    assert replay(api, "rooms-list", token_a, query={"site": "b"}, headers={"x-site": None}).status == 403
    assert room(api, token_a, "Lobby", site="b").status == 403
    assert replay(api, "sites-get", token_a, path={"site_id": "b"}).status == 403
    assert replay(api, "sites-delete", token_a, path={"site_id": "b"}).status == 403
    # Creating a site it was not granted: the authorizer cannot see the body, the service refuses.
    refused(replay(api, "sites-create", token_a, body={"site_id": "c", "name": "C"}), 403, "site_id")

    # Its own site it needs not name at all.
    ok(room(api, token_a, "Lobby", site="a"), 201)
    listed = ok(replay(api, "rooms-list", token_a, headers={"x-site": None}))
    assert [(r["name"], r["site_id"]) for r in listed["items"]] == [("Lobby", "a")]
    assert [s["site_id"] for s in ok(replay(api, "sites-list", token_a))["items"]] == ["a"]
    # Site b saw none of it.
    assert ok(replay(api, "rooms-list", admin_token, headers={"x-site": "b"}))["count"] == 0


def test_a_token_without_the_resource_is_403(api: InProcessApi, admin_token: str, hq: str) -> None:
    sensors_only = tokens.issue(["sensors"], ["hq"])
    assert replay(api, "rooms-list", sensors_only).status == 403
    assert replay(api, "rooms-create", sensors_only).status == 403
    assert replay(api, "sites-list", sensors_only).status == 403
    assert ok(replay(api, "sensors-list", sensors_only))["count"] == 0


def test_no_token_or_a_bad_one_is_401(api: InProcessApi, hq: str) -> None:
    assert replay(api, "rooms-list", headers={"authorization": None}).status == 401
    assert replay(api, "rooms-list").status == 401  # the sample's "Bearer REPLACE_ME"
    assert replay(api, "rooms-list", "not-a-token").status == 401
