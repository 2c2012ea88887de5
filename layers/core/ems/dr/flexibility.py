"""Flexibility: how much load the site can take off the grid over a window, from the state of its
devices and batteries (pure; ems.dr.service gathers the state).

Per device, by its hourly instruction over the window's local hours:
- any hour `no-participation`: nothing (the owner keeps it);
- else any hour `shifting`: shiftable: its power can leave the window, and the energy it must
  still get later is kW x hours of the window;
- else (`participation` throughout): reducible: its power can be shed for the window.
A device counts only when it is DR-eligible and a load (batteries count through their inverter's
dischargeable power, meters and PV inverters never). Its power is what it draws: the newest reading
for a window starting now, the same window a week earlier (seasonal naive) for a future one.
Each battery adds its dischargeable kW over the window (ems.batteries: limited by SoC and bounds).
total_kw = reducible_kw + shiftable_kw + battery_kw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ems.dr.models import DeviceFlexibility, Flexibility

NOT_LOADS = frozenset({"battery_inverter", "meter", "pv_inverter"})


@dataclass(frozen=True)
class DeviceState:
    device_id: str
    device_type: str
    dr_eligible: bool
    comfort_priority: int
    instructions: tuple[str, ...]  # one per local hour the window touches
    power_kw: float | None  # None: no reading to go by
    power_from: str  # where power_kw comes from, in words


@dataclass(frozen=True)
class BatteryState:
    battery_id: str
    device_id: str | None
    soc_pct: float | None
    available_kw: float
    available_kwh: float


def window_instruction(instructions: Sequence[str]) -> str:
    if "no-participation" in instructions:
        return "no-participation"
    if "shifting" in instructions:
        return "shifting"
    return "participation"


def of_device(device: DeviceState, duration_minutes: int) -> DeviceFlexibility | None:
    """What one device offers over the window, or None when it is no DR-eligible load."""
    if not device.dr_eligible or device.device_type in NOT_LOADS:
        return None
    instruction = window_instruction(device.instructions)
    kw = max(device.power_kw or 0.0, 0.0)
    kind = {"participation": "reducible", "shifting": "shiftable"}.get(instruction, "none")
    if kind == "none":
        kw = 0.0
    return DeviceFlexibility(
        device_id=device.device_id, device_type=device.device_type, comfort_priority=device.comfort_priority,
        instruction=instruction, kind=kind, kw=round(kw, 3),
        kwh=round(kw * duration_minutes / 60, 3), source=device.power_from,
    )  # fmt: skip


def of_battery(battery: BatteryState) -> DeviceFlexibility:
    soc = "no SoC reading" if battery.soc_pct is None else f"SoC {battery.soc_pct:g} %"
    return DeviceFlexibility(
        device_id=battery.device_id or battery.battery_id, device_type="battery_inverter", battery_id=battery.battery_id,
        comfort_priority=0, instruction="participation", kind="battery", kw=round(max(battery.available_kw, 0.0), 3),
        kwh=round(max(battery.available_kwh, 0.0), 3), source=f"dischargeable over the window ({soc})",
    )  # fmt: skip


def flexibility(
    start: str, duration_minutes: int, devices: Sequence[DeviceState], batteries: Sequence[BatteryState]
) -> Flexibility:
    offered = [f for f in (of_device(d, duration_minutes) for d in devices) if f is not None]
    offered += [of_battery(b) for b in batteries]
    offered.sort(key=lambda f: (f.kind != "battery", f.comfort_priority, f.device_id))

    def kw(kind: str) -> float:
        return round(sum(f.kw or 0.0 for f in offered if f.kind == kind), 3)

    reducible, shiftable, battery = kw("reducible"), kw("shiftable"), kw("battery")
    return Flexibility(
        start=start, duration_minutes=duration_minutes, total_kw=round(reducible + shiftable + battery, 3),
        reducible_kw=reducible, shiftable_kw=shiftable,
        shiftable_kwh=round(sum(f.kwh or 0.0 for f in offered if f.kind == "shiftable"), 3),
        battery_kw=battery, devices=offered,
    )  # fmt: skip
