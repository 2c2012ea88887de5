"""GET /api/v1/overview against moto, with readings that went in through POST /api/v1/data/ingest
(the building and its numbers: tests/support/building.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ems.auth.models import Claims
from tests.support.building import ROOM, SITE, iso
from tests.support.events import replay
from tests.support.inprocess import InProcessApi, load_function
from tests.support.tokens import issue

POWER_NOW = {
    "consumption_kw": 2.0, "generation_kw": 4.0, "grid_kw": -1.5, "grid_import_kw": 0.0,
    "grid_export_kw": 1.5, "battery_kw": 0.5, "battery_charge_kw": 0.5, "battery_discharge_kw": 0.0,
    "battery_soc_pct": 62.0,
}  # fmt: skip
ENERGY = {
    "consumption_kwh": 2.5, "generation_kwh": 1.5, "grid_import_kwh": 1.25, "grid_export_kwh": 0.375,
    "battery_charge_kwh": 0.125, "battery_discharge_kwh": 0.25,
}  # fmt: skip


def test_overview_through_the_http_api(api: InProcessApi, building: int) -> None:
    t0 = building
    token = issue(["sensors"], sites=[SITE])  # any valid token: the route needs no resource of its own
    reply = api.request("GET", "/api/v1/overview", token=token)
    assert reply.status == 200, reply.json
    body = reply.json
    assert (body["site_id"], body["name"], body["timezone"]) == (SITE, "HQ", "UTC")
    assert {k: body["power"][k] for k in POWER_NOW} == POWER_NOW
    assert body["power"]["as_of"] == iso(t0 + 20 * 60_000)
    assert body["power"]["sensors"] == {"grid": ["main-meter"], "generation": ["pv"], "battery": ["battery"]}
    today = datetime.now(UTC).date()
    if datetime.fromtimestamp(t0 / 1000, UTC).date() == today:  # not when T0 had to go to yesterday
        assert {k: body["energy_today"][k] for k in ENERGY} == ENERGY
        assert body["energy_today"]["start"] == f"{today.isoformat()}T00:00:00.000Z"
    assert body["rooms"] == [
        {"name": ROOM, "floor": None, "temperature_c": 21.5, "humidity_pct": None, "co2_ppm": 650.0,
         "occupancy": 3.0, "sensor_count": 5, "updated_at": iso(t0 + 20 * 60_000)},
        {"name": "Store", "floor": None, "temperature_c": None, "humidity_pct": None, "co2_ppm": None,
         "occupancy": None, "sensor_count": 0, "updated_at": None},
    ]  # fmt: skip
    assert body["sensors"] == {"total": 8, "online": 7, "offline": 0, "unknown": 1}
    # Domains that do not exist yet are left out, not filled in.
    assert not {"alerts", "dr", "demand_response", "market", "forecast"} & set(body)


def test_energy_at_a_fixed_time_from_the_service(stack: object, building: int) -> None:
    """The same data read at T0 + 30 min, and at T0 + 10 min (the current quarter hour counts up to now)."""
    from ems.overview import service

    t0 = building
    stores = load_function("functions/overview/").stores()
    caller = Claims.model_validate(
        {"sub": "t", "name": "t", "jti": "j", "iat": 0, "exp": 2**31, "iss": "ems", "aud": "ems-api",
         "resources": ["*"]}
    )  # fmt: skip
    at = datetime.fromtimestamp(t0 / 1000, UTC)
    # At 00:30 UTC T0 + 30 min is the next day's first moment, a day with no energy yet: read 1 ms
    # before it (the second quarter hour then counts 899.999 of its 900 s, the same to 3 decimals).
    end_of_day = datetime.combine(at.date() + timedelta(days=1), datetime.min.time(), UTC)
    moment = min(at + timedelta(minutes=30), end_of_day - timedelta(milliseconds=1))
    later = service.site_overview(SITE, caller, stores, now=lambda: moment)
    assert later.energy_today.model_dump(include=set(ENERGY)) == ENERGY
    assert later.power.model_dump(include=set(POWER_NOW)) == POWER_NOW
    # At T0 + 10 min the first quarter hour's rollup already holds both of its readings (5 kW): 10 of
    # its 15 minutes have passed, and the second quarter hour is in the future of that clock.
    early = service.site_overview(SITE, caller, stores, now=lambda: at + timedelta(minutes=10))
    assert early.energy_today.grid_import_kwh == round(5 * 10 / 60, 3)
    assert early.energy_today.consumption_kwh == round(8 * 10 / 60, 3)


def test_limits_of_the_token(api: InProcessApi, building: int) -> None:
    """An embargo hides the live values and the quarter hours after its cut; a site-only token sees
    no room's values; a token of another site is refused."""
    embargoed = issue(["analytics"], sites=[SITE], embargo_minutes=24 * 60)
    body = api.request("GET", "/api/v1/overview", token=embargoed).json
    assert body["power"]["grid_kw"] is None and body["power"]["consumption_kw"] is None
    assert body["energy_today"]["grid_import_kwh"] is None  # a day's embargo: nothing today is visible
    assert body["rooms"][0]["temperature_c"] is None

    site_only = issue(["analytics"], sites=[SITE], data_aggregation="site")
    body = api.request("GET", "/api/v1/overview", token=site_only).json
    assert body["power"]["grid_kw"] == -1.5
    assert body["rooms"][0]["sensor_count"] == 5 and body["rooms"][0]["temperature_c"] is None

    other = issue(["*"], sites=["elsewhere"])
    assert api.request("GET", "/api/v1/overview", token=other, query={"site": SITE}).status == 403
    assert api.request("GET", "/api/v1/overview").status == 401


def test_overview_of_a_site_without_sensors(api: InProcessApi, admin_token: str) -> None:
    assert api.request("POST", "/api/v1/sites", token=admin_token, body={"site_id": "empty", "name": "E"}).status == 201  # fmt: skip
    body = api.request("GET", "/api/v1/overview", token=admin_token, query={"site": "empty"}).json
    assert body["power"] == {
        **dict.fromkeys(POWER_NOW), "as_of": None, "sensors": {}
    }  # fmt: skip
    assert body["rooms"] == [] and body["sensors"]["total"] == 0
    assert api.request("GET", "/api/v1/overview", token=admin_token, query={"site": "nowhere"}).status == 404


def test_sample_event(api: InProcessApi, admin_token: str, building: int) -> None:
    reply = replay(api, "overview-get", admin_token)
    assert reply.status == 200, reply.json
    assert reply.json["site_id"] == SITE and reply.json["power"]["generation_kw"] == 4.0
