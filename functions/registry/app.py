"""Site configuration routes: sites, rooms, sensors and the site's tariff."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from ems.auth.http import claims, request_site
from ems.core.http import body, flag, http_app, lambda_handler, query
from ems.core.pagination import Page, parse_limit
from ems.registry import service as registry
from ems.registry.models import (
    Deleted,
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
from ems.registry.store import RegistryStore
from ems.tariffs.models import Tariff, TariffIn

if TYPE_CHECKING:
    from ems.registry.status import LatestReadings

app = http_app("registry")


@cache
def store() -> RegistryStore:
    return RegistryStore()


@cache
def latest() -> LatestReadings:
    # Only the sensor routes read readings: the telemetry store (and its models) is imported by them.
    from ems.telemetry.backends import latest_readings

    return latest_readings()


def _page() -> tuple[int, str | None]:
    return parse_limit(query(app, "limit")), query(app, "next_token")


@app.get("/api/v1/sites")
def list_sites() -> Page[Site]:
    return registry.list_sites(claims(app), store(), *_page())


@app.post("/api/v1/sites")
def create_site() -> tuple[Site, int]:
    return registry.create_site(body(app, SiteIn), claims(app), store()), 201


@app.get("/api/v1/sites/<site_id>")
def get_site(site_id: str) -> Site:
    return registry.get_site(request_site(app, site_id), store())


@app.put("/api/v1/sites/<site_id>")
def update_site(site_id: str) -> Site:
    return registry.update_site(request_site(app, site_id), body(app, SiteUpdate), store())


@app.delete("/api/v1/sites/<site_id>")
def delete_site(site_id: str) -> Deleted:
    return registry.delete_site(request_site(app, site_id), flag(app, "cascade"), store())


@app.get("/api/v1/rooms")
def list_rooms() -> Page[Room]:
    return registry.list_rooms(request_site(app), store(), *_page())


@app.post("/api/v1/rooms")
def create_room() -> tuple[Room, int]:
    return registry.create_room(request_site(app), body(app, RoomIn), store()), 201


@app.put("/api/v1/rooms/<name>")
def update_room(name: str) -> Room:
    return registry.update_room(request_site(app), name, body(app, RoomUpdate), store())


@app.delete("/api/v1/rooms/<name>")
def delete_room(name: str) -> Deleted:
    return registry.delete_room(request_site(app), name, flag(app, "cascade"), store())


@app.get("/api/v1/sensors")
def list_sensors() -> Page[SensorWithStatus]:
    site = request_site(app)
    status = registry.status_filter(query(app, "status"))
    return registry.list_sensors(
        site, query(app, "room"), query(app, "sensor_type"), status, claims(app), store(), latest(), *_page()
    )


@app.post("/api/v1/sensors")
def create_sensor() -> tuple[Sensor, int]:
    return registry.create_sensor(request_site(app), body(app, SensorIn), store()), 201


@app.get("/api/v1/sensors/<sensor_id>")
def get_sensor(sensor_id: str) -> SensorWithStatus:
    return registry.get_sensor(request_site(app), sensor_id, claims(app), store(), latest())


@app.put("/api/v1/sensors/<sensor_id>")
def update_sensor(sensor_id: str) -> Sensor:
    return registry.update_sensor(request_site(app), sensor_id, body(app, SensorUpdate), store())


@app.delete("/api/v1/sensors/<sensor_id>")
def delete_sensor(sensor_id: str) -> Deleted:
    return registry.delete_sensor(request_site(app), sensor_id, store())


@app.get("/api/v1/tariffs")
def get_tariff() -> Tariff:
    return registry.get_tariff(request_site(app), store())


@app.put("/api/v1/tariffs")
def put_tariff() -> Tariff:
    return registry.put_tariff(request_site(app), body(app, TariffIn), store())


handler = lambda_handler(app)
