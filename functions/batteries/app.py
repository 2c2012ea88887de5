"""Batteries: the routes of API.md "Batteries" but the optimiser's (its own function, with the science
layer): the records with their state and health, manual charge and discharge, the fleet summary."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

from ems.auth.http import claims, request_site
from ems.batteries import service as batteries
from ems.batteries.models import (
    BatteriesSummary,
    Battery,
    BatteryHealth,
    BatteryIn,
    BatteryUpdate,
    BatteryView,
    CommandAccepted,
    HealthQuery,
    PowerCommand,
    SummaryQuery,
)
from ems.batteries.store import BatteryStore, PlanStore
from ems.core.events import EventBridgePublisher
from ems.core.http import body, http_app, lambda_handler, query_model
from ems.core.pagination import Page
from ems.devices import service as devices
from ems.devices.models import ListQuery
from ems.devices.store import CommandStore, DeviceStore, IotCoreCloud
from ems.registry.store import RegistryStore
from ems.telemetry.backends import latest_readings, telemetry_store

app = http_app("batteries")


@cache
def device_stores() -> devices.Stores:
    """The devices domain's stores, as functions/devices/app.py wires them, for its DeviceCommands."""
    return devices.Stores(
        devices=DeviceStore(), commands=CommandStore(), iot=IotCoreCloud(), events=EventBridgePublisher()
    )


@cache
def stores() -> batteries.Stores:
    return batteries.Stores(
        batteries=BatteryStore(), sites=RegistryStore(), latest=latest_readings(), rollups=telemetry_store(),
        devices=devices.DeviceCommands(device_stores()), plans=PlanStore(),
    )  # fmt: skip


def commanding() -> batteries.Stores:
    """The stores with device commands sent in the caller's name (the command records say who)."""
    return replace(stores(), devices=devices.DeviceCommands(device_stores(), sent_by=claims(app).sub))


@app.get("/api/v1/batteries")
def list_batteries() -> Page[BatteryView]:
    q = query_model(app, ListQuery)
    return batteries.list_batteries(request_site(app), q.limit, q.next_token, claims(app), stores())


@app.post("/api/v1/batteries")
def create_battery() -> tuple[Battery, int]:
    return batteries.create_battery(request_site(app), body(app, BatteryIn), stores()), 201


@app.get("/api/v1/batteries/analytics/summary")
def summary() -> BatteriesSummary:
    return batteries.summary(request_site(app), query_model(app, SummaryQuery).days, claims(app), stores())


@app.get("/api/v1/batteries/<battery_id>")
def get_battery(battery_id: str) -> BatteryView:
    return batteries.get_battery(request_site(app), battery_id, claims(app), stores())


@app.put("/api/v1/batteries/<battery_id>")
def update_battery(battery_id: str) -> Battery:
    return batteries.update_battery(request_site(app), battery_id, body(app, BatteryUpdate), stores())


@app.delete("/api/v1/batteries/<battery_id>")
def delete_battery(battery_id: str) -> dict[str, bool]:
    return batteries.delete_battery(request_site(app), battery_id, stores())


@app.get("/api/v1/batteries/<battery_id>/health")
def health(battery_id: str) -> BatteryHealth:
    days = query_model(app, HealthQuery).days
    return batteries.battery_health(request_site(app), battery_id, days, claims(app), stores())


@app.post("/api/v1/batteries/<battery_id>/charge")
def charge(battery_id: str) -> CommandAccepted:
    return batteries.command(
        request_site(app), battery_id, "charge", body(app, PowerCommand), commanding(), claims(app)
    )


@app.post("/api/v1/batteries/<battery_id>/discharge")
def discharge(battery_id: str) -> CommandAccepted:
    return batteries.command(
        request_site(app), battery_id, "discharge", body(app, PowerCommand), commanding(), claims(app)
    )


handler = lambda_handler(app)
