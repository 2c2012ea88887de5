"""Site configuration routes: sites, rooms, sensors and the site's tariff."""

from ems.core.http import body, claims, flag, http_app, lambda_handler, query, request_site
from ems.core.pagination import parse_limit
from ems.registry import service as registry
from ems.registry.models import RoomIn, RoomUpdate, SensorIn, SensorUpdate, SiteIn, SiteUpdate
from ems.registry.store import RegistryStore
from ems.tariffs import service as tariffs
from ems.tariffs.models import TariffIn
from ems.tariffs.store import TariffStore
from ems.telemetry.store import SensorStatusStore

app = http_app("registry")
store = RegistryStore()
statuses = SensorStatusStore()
tariff_store = TariffStore()


def _page() -> tuple[int, str | None]:
    return parse_limit(query(app, "limit")), query(app, "next_token")


@app.get("/api/v1/sites")
def list_sites():  # type: ignore[no-untyped-def]
    return registry.list_sites(claims(app), store, *_page())


@app.post("/api/v1/sites")
def create_site():  # type: ignore[no-untyped-def]
    return registry.create_site(body(app, SiteIn), claims(app), store), 201


@app.get("/api/v1/sites/<site_id>")
def get_site(site_id: str):  # type: ignore[no-untyped-def]
    return registry.get_site(request_site(app, site_id), store)


@app.put("/api/v1/sites/<site_id>")
def update_site(site_id: str):  # type: ignore[no-untyped-def]
    return registry.update_site(request_site(app, site_id), body(app, SiteUpdate), store)


@app.delete("/api/v1/sites/<site_id>")
def delete_site(site_id: str):  # type: ignore[no-untyped-def]
    return registry.delete_site(request_site(app, site_id), flag(app, "cascade"), store)


@app.get("/api/v1/rooms")
def list_rooms():  # type: ignore[no-untyped-def]
    return registry.list_rooms(request_site(app), store, *_page())


@app.post("/api/v1/rooms")
def create_room():  # type: ignore[no-untyped-def]
    return registry.create_room(request_site(app), body(app, RoomIn), store), 201


@app.put("/api/v1/rooms/<name>")
def update_room(name: str):  # type: ignore[no-untyped-def]
    return registry.update_room(request_site(app), name, body(app, RoomUpdate), store)


@app.delete("/api/v1/rooms/<name>")
def delete_room(name: str):  # type: ignore[no-untyped-def]
    return registry.delete_room(request_site(app), name, flag(app, "cascade"), store)


@app.get("/api/v1/sensors")
def list_sensors():  # type: ignore[no-untyped-def]
    site = request_site(app)
    status = registry.status_filter(query(app, "status"))
    return registry.list_sensors(
        site, query(app, "room"), query(app, "sensor_type"), status, store, statuses, *_page()
    )


@app.post("/api/v1/sensors")
def create_sensor():  # type: ignore[no-untyped-def]
    return registry.create_sensor(request_site(app), body(app, SensorIn), store), 201


@app.get("/api/v1/sensors/<sensor_id>")
def get_sensor(sensor_id: str):  # type: ignore[no-untyped-def]
    return registry.get_sensor(request_site(app), sensor_id, store, statuses)


@app.put("/api/v1/sensors/<sensor_id>")
def update_sensor(sensor_id: str):  # type: ignore[no-untyped-def]
    return registry.update_sensor(request_site(app), sensor_id, body(app, SensorUpdate), store)


@app.delete("/api/v1/sensors/<sensor_id>")
def delete_sensor(sensor_id: str):  # type: ignore[no-untyped-def]
    return registry.delete_sensor(request_site(app), sensor_id, store)


@app.get("/api/v1/tariffs")
def get_tariff():  # type: ignore[no-untyped-def]
    return tariffs.get_tariff(request_site(app), tariff_store, store)


@app.put("/api/v1/tariffs")
def put_tariff():  # type: ignore[no-untyped-def]
    return tariffs.put_tariff(request_site(app), body(app, TariffIn), tariff_store, store)


handler = lambda_handler(app)
