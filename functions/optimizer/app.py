"""The battery optimiser: POST /api/v1/batteries/optimize and /batteries/{id}/optimize, the applied
plan (GET, DELETE /batteries/{id}/plan) and the Scheduler's re-plan every 15 minutes. Its own function
with the science layer: numpy and HiGHS stay off every other function's import path. `handler` tells
the invocations apart by the event's shape."""

from __future__ import annotations

from functools import cache
from typing import Any

from ems.auth.http import claims, request_site
from ems.batteries import planning
from ems.batteries import service as batteries
from ems.batteries.models import AppliedPlan, OptimizeRequest, PlanResult
from ems.batteries.store import BatteryStore, OptimizerScheduler, PlanStore
from ems.core.events import EventBridgePublisher
from ems.core.http import body, http_app, lambda_handler
from ems.core.observability import instrumented
from ems.devices import service as devices
from ems.devices.store import CommandStore, DeviceStore, IotCoreCloud
from ems.forecast.store import ForecastStore
from ems.registry.store import RegistryStore
from ems.telemetry.backends import latest_readings, telemetry_store

app = http_app("optimizer")


@cache
def stores() -> batteries.Stores:
    registry, rollups, events = RegistryStore(), telemetry_store(), EventBridgePublisher()
    commands = devices.DeviceCommands(
        devices.Stores(devices=DeviceStore(), commands=CommandStore(), iot=IotCoreCloud(), events=events)
    )
    return batteries.Stores(
        batteries=BatteryStore(), sites=registry, latest=latest_readings(), rollups=rollups, devices=commands,
        plans=PlanStore(), forecasts=ForecastStore(registry, rollups),
        tariffs=registry, scheduler=OptimizerScheduler(), events=events,
    )  # fmt: skip


@app.post("/api/v1/batteries/optimize")
def optimize_site() -> PlanResult:
    return planning.optimize_site(request_site(app), body(app, OptimizeRequest), claims(app), stores())


@app.post("/api/v1/batteries/<battery_id>/optimize")
def optimize_battery(battery_id: str) -> PlanResult:
    return planning.optimize_battery(
        request_site(app), battery_id, body(app, OptimizeRequest), claims(app), stores()
    )


@app.get("/api/v1/batteries/<battery_id>/plan")
def get_plan(battery_id: str) -> AppliedPlan:
    return planning.get_plan(request_site(app), battery_id, claims(app), stores())


@app.delete("/api/v1/batteries/<battery_id>/plan")
def stop_plan(battery_id: str) -> dict[str, bool]:
    return planning.stop_plan(request_site(app), battery_id, stores())


http_handler = lambda_handler(app)


@instrumented("optimizer")
def replan_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    target = event["replan"]
    run = planning.replan(str(target["site"]), str(target["battery_id"]), stores())
    return {"replanned": run is not None, "setpoint_kw": None if run is None else run.setpoint_kw}


def handler(event: dict[str, Any], context: Any) -> Any:
    if isinstance(event.get("replan"), dict):
        return replan_handler(event, context)
    return http_handler(event, context)
