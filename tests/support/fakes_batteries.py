"""In-memory fakes of ems.batteries.ports (BatteryRecords, PlanRecords, Scheduler), and the batteries' stores on fakes for the
unit tier: the registry, status and telemetry fakes of tests/support/fakes.py, and the devices
domain's own DeviceCommands over its fakes (so a command goes through the real control priority and
reaches the fake IoT Core), and the seasonal-naive Forecasts over the telemetry fake."""

from __future__ import annotations

from dataclasses import dataclass, field

from ems.batteries import service as batteries
from ems.batteries.models import AppliedPlan, Battery, PlanResult, PlanRun
from ems.core.errors import Conflict, NotFound
from ems.core.pagination import Page
from ems.devices import service as devices
from ems.forecast.store import ForecastStore
from tests.support.fakes import ListPublisher, MemoryRegistry, MemoryStatus, MemoryTelemetry, _after, _page
from tests.support.fakes_devices import memory_stores as device_stores


class NaiveForecasts(ForecastStore):
    """ems.forecast's Forecasts with nothing stored: its seasonal-naive rule over the telemetry fake."""

    def get_forecast(self, site_id: str, series: str) -> None:
        return None


class MemoryBatteries:
    def __init__(self) -> None:
        self.batteries: dict[tuple[str, str], Battery] = {}

    def create(self, battery: Battery) -> Battery:
        key = (battery.site_id, battery.battery_id)
        if key in self.batteries:
            raise Conflict(f"battery {battery.battery_id!r} exists in this site", "battery_id")
        self.batteries[key] = battery.model_copy(deep=True)
        return battery

    def get(self, site_id: str, battery_id: str) -> Battery:
        found = self.batteries.get((site_id, battery_id))
        if found is None:
            raise NotFound(f"no battery {battery_id!r} in this site", "battery_id")
        return found.model_copy(deep=True)

    def replace(self, battery: Battery) -> Battery:
        self.get(battery.site_id, battery.battery_id)
        self.batteries[(battery.site_id, battery.battery_id)] = battery.model_copy(deep=True)
        return battery

    def delete(self, site_id: str, battery_id: str) -> None:
        self.get(site_id, battery_id)
        del self.batteries[(site_id, battery_id)]

    def page(self, site_id: str, limit: int, next_token: str | None) -> Page[Battery]:
        keyed = [(f"BATTERY#{b}", v) for (s, b), v in self.batteries.items() if s == site_id]
        after = _after(next_token, ("pk", "sk"), "sk")
        return _page(keyed, limit, after, lambda sk: {"pk": site_id, "sk": sk})


class MemoryPlans:
    def __init__(self) -> None:
        self.held: dict[tuple[str, str], AppliedPlan] = {}

    def put_plan(self, plan: AppliedPlan) -> None:
        self.held[(plan.site_id, plan.battery_id)] = plan.model_copy(deep=True)

    def get_plan(self, site_id: str, battery_id: str) -> AppliedPlan:
        found = self.held.get((site_id, battery_id))
        if found is None:
            raise NotFound(f"battery {battery_id!r} has no applied plan", "battery_id")
        return found.model_copy(deep=True)

    def add_run(self, site_id: str, battery_id: str, run: PlanRun, latest: PlanResult) -> bool:
        held = self.held.get((site_id, battery_id))
        if held is None:
            return False
        self.held[(site_id, battery_id)] = held.model_copy(
            update={"latest": latest, "runs": [*held.runs, run]}
        )
        return True

    def delete_plan(self, site_id: str, battery_id: str) -> None:
        self.get_plan(site_id, battery_id)
        del self.held[(site_id, battery_id)]

    def plans(self, site_id: str) -> list[AppliedPlan]:
        return [p.model_copy(deep=True) for (s, _), p in self.held.items() if s == site_id]


@dataclass
class MemoryPlanScheduler:
    """The Scheduler of ems.batteries.ports: each schedule's expression and input, by name."""

    schedules: dict[str, dict[str, str]] = field(default_factory=dict)

    def put(self, name: str, expression: str, payload: str) -> None:
        self.schedules[name] = {"expression": expression, "input": payload}

    def delete(self, name: str) -> None:
        self.schedules.pop(name, None)


@dataclass
class World:
    """The batteries' stores and the fakes behind them, for a test to arrange and inspect."""

    stores: batteries.Stores
    registry: MemoryRegistry
    status: MemoryStatus
    telemetry: MemoryTelemetry
    devices: devices.Stores
    plans: MemoryPlans
    scheduler: MemoryPlanScheduler
    events: ListPublisher


def memory_world() -> World:
    """Site "hq" in the registry fake, in both domains' stores."""
    device_side = device_stores()
    registry = device_side.sites
    assert isinstance(registry, MemoryRegistry)
    status, telemetry = MemoryStatus(), MemoryTelemetry()
    plans, scheduler, events = MemoryPlans(), MemoryPlanScheduler(), ListPublisher()
    stores = batteries.Stores(
        batteries=MemoryBatteries(), sites=registry, latest=status, rollups=telemetry,
        devices=devices.DeviceCommands(device_side), plans=plans,
        forecasts=NaiveForecasts(registry, telemetry), tariffs=registry, scheduler=scheduler, events=events,
    )  # fmt: skip
    return World(stores, registry, status, telemetry, device_side, plans, scheduler, events)
