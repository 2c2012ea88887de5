"""Flexibility and auto-response: the pure arithmetic of ems.dr.flexibility on hand-made devices and batteries, and
ems.dr.service gathering it from real state on fakes (the hourly plan in the site's time zone, the
newest power readings now, the same window a week earlier later, the batteries' dischargeable kW),
with tokens whose data-sharing limits withhold the devices' figures; auto-response's decisions
against that flexibility and its limits, with the reasons it stores."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ems.core.errors import Invalid
from ems.devices.models import Device
from ems.dr import service as dr
from ems.dr.flexibility import BatteryState, DeviceState, flexibility, window_instruction
from ems.dr.models import AutoResponse, InvitationIn
from ems.registry.status import Heard
from ems.telemetry.models import Reading
from tests.support.fakes import ListPublisher, MemoryRegistry, MemoryStatus, MemoryTelemetry, caller
from tests.support.fakes_devices import MemoryDevices
from tests.support.fakes_dr import Battery, FixedFleet, MemoryInvitations

T0 = datetime(2030, 3, 4, 13, 0, tzinfo=UTC)  # 14:00 in Berlin (CET)
SITE = "demo"


def state(device_id: str, kw: float | None, *instructions: str, kind: str = "hvac", priority: int = 5,
          eligible: bool = True) -> DeviceState:  # fmt: skip
    return DeviceState(device_id, kind, eligible, priority, instructions or ("participation",), kw, "reading")


# ---------------------------------------------------------------- the pure arithmetic


def test_instructions_over_a_window() -> None:
    assert window_instruction(["participation", "participation"]) == "participation"
    assert window_instruction(["participation", "shifting"]) == "shifting"
    assert window_instruction(["shifting", "no-participation"]) == "no-participation"


def test_reducible_shiftable_and_battery_add_up_by_hand() -> None:
    devices = [
        state("HVAC", 3.2, "participation", "participation", priority=6),
        state("WH", 2.0, "participation", "shifting", kind="water_heater", priority=2),
        state("LIGHTS", 1.5, "no-participation", kind="lighting", priority=1),
        state("PLUG", 0.4, eligible=False, kind="plug"),
        state("METER", 40.0, kind="meter"),
        state("SILENT", None, kind="plug", priority=3),
    ]
    batteries = [BatteryState("B1", "BATT_INV", 80.0, 4.5, 9.0)]
    flex = flexibility("2030-03-04T13:00:00.000Z", 90, devices, batteries)
    # reducible: HVAC 3.2 (+ SILENT 0: no reading); shiftable: WH 2.0 kW, owed 2.0 x 1.5 h = 3 kWh; battery 4.5
    assert (flex.reducible_kw, flex.shiftable_kw, flex.shiftable_kwh, flex.battery_kw) == (3.2, 2.0, 3.0, 4.5)
    assert flex.total_kw == 9.7
    # The battery first (no comfort cost), then by comfort priority; ineligible loads and meters absent.
    assert [(d.device_id, d.kind, d.kw) for d in flex.devices] == [
        ("BATT_INV", "battery", 4.5), ("LIGHTS", "none", 0.0), ("WH", "shiftable", 2.0),
        ("SILENT", "reducible", 0.0), ("HVAC", "reducible", 3.2),
    ]  # fmt: skip
    assert flex.devices[0].source == "dischargeable over the window (SoC 80 %)"
    assert next(d for d in flex.devices if d.device_id == "HVAC").kwh == 4.8  # 3.2 kW x 1.5 h


# ---------------------------------------------------------------- from real state


def device(device_id: str, device_type: str, **fields: Any) -> Device:
    return Device(device_id=device_id, name=device_id, device_type=device_type, site_id=SITE,  # type: ignore[arg-type]
                  thing_name=f"{SITE}--{device_id}", created_at="2030-01-01T00:00:00Z",
                  updated_at="2030-01-01T00:00:00Z", **fields)  # fmt: skip


@pytest.fixture
def s() -> dr.Stores:
    registry = MemoryRegistry()
    registry.add_site(SITE, timezone="Europe/Berlin")
    registry.add_sensor(SITE, "P_HVAC", "power", device_id="DEVICE_001")
    registry.add_sensor(SITE, "P_WH", "power", device_id="DEVICE_002")
    devices = MemoryDevices()
    devices.create(device("DEVICE_001", "hvac", rated_power_kw=3.0, dr_eligible=True, comfort_priority=6))
    devices.create(
        device("DEVICE_002", "water_heater", rated_power_kw=2.0, dr_eligible=True, comfort_priority=2)
    )
    # Berlin's 15:00 (14:00 UTC): the water heater shifts.
    devices.put_plan(SITE, {"DEVICE_002": {"15": "shifting"}})
    latest = MemoryStatus()
    now_ms = int(T0.timestamp() * 1000)
    latest.record(SITE, [Heard("P_HVAC", now_ms - 30_000, {"power_w": 2800.0}),
                         Heard("P_WH", now_ms - 20_000, {"power_w": 1800.0})])  # fmt: skip
    telemetry = MemoryTelemetry()
    # A week before 2030-03-05 09:00 UTC: the HVAC drew 1000, 1400, 1200, 1600 W (mean 1300 W).
    week_ago = int((datetime(2030, 2, 26, 9, 0, tzinfo=UTC)).timestamp() * 1000)
    telemetry.write([Reading(SITE, "P_HVAC", "power_w", week_ago + i * 900_000 + 60_000, w)
                     for i, w in enumerate((1000.0, 1400.0, 1200.0, 1600.0))])  # fmt: skip
    return dr.Stores(invitations=MemoryInvitations(), devices=devices, events=ListPublisher(), sites=registry,
                     latest=latest, batteries=FixedFleet([Battery("B1", "BATT_INV", 60.0, 5.0, 5.0)]),
                     rollups=telemetry)  # fmt: skip


def now(minutes: float = 0) -> Any:
    return lambda: T0 + timedelta(minutes=minutes)


def test_now_from_the_newest_readings_and_the_plan_in_local_hours(s: dr.Stores) -> None:
    flex = dr.current_flexibility(SITE, None, 60, caller(), s, now())
    # 13:00-14:00 UTC is 14:00-15:00 in Berlin: both participate.
    assert (flex.reducible_kw, flex.shiftable_kw, flex.battery_kw, flex.total_kw) == (4.6, 0.0, 5.0, 9.6)
    hvac = next(d for d in flex.devices if d.device_id == "DEVICE_001")
    assert (hvac.kw, hvac.source) == (2.8, "newest reading (2030-03-04T12:59:30.000Z)")
    assert s.batteries.asked == [(SITE, 60)]  # type: ignore[union-attr]
    # 90 minutes reach into Berlin's 15:00, when the water heater shifts: 1.8 kW, owed 2.7 kWh.
    longer = dr.current_flexibility(SITE, None, 90, caller(), s, now())
    assert (longer.reducible_kw, longer.shiftable_kw, longer.shiftable_kwh) == (2.8, 1.8, 2.7)


def test_a_future_window_from_the_same_window_a_week_earlier(s: dr.Stores) -> None:
    flex = dr.current_flexibility(SITE, "2030-03-05T09:00:00Z", 60, caller(), s, now())
    hvac = next(d for d in flex.devices if d.device_id == "DEVICE_001")
    assert (hvac.kw, hvac.source) == (
        1.3,
        "mean of the same window a week earlier (2030-02-26T09:00:00.000Z)",
    )
    water = next(d for d in flex.devices if d.device_id == "DEVICE_002")
    assert (water.kw, water.source) == (0.0, "no power reading")
    assert flex.total_kw == 6.3  # 1.3 + the battery's 5.0


def test_a_past_start_is_a_422(s: dr.Stores) -> None:
    with pytest.raises(Invalid) as err:
        dr.current_flexibility(SITE, "2030-03-04T12:00:00Z", 60, caller(), s, now())
    assert err.value.field == "start"


@pytest.mark.parametrize(
    ("limits", "why"),
    [
        ({"embargo_minutes": 30}, "the newest readings are beyond this token's limits"),
        ({"time_aggregation": "15m"}, "the newest readings are beyond this token's limits"),
        ({"data_aggregation": "site"}, "per-device power is finer than this token's data_aggregation"),
    ],
)
def test_a_limited_token_gets_no_device_figures_now(s: dr.Stores, limits: dict[str, Any], why: str) -> None:
    flex = dr.current_flexibility(SITE, None, 60, caller(**limits), s, now())
    assert flex.withheld is not None and flex.withheld.startswith(why)
    assert (flex.total_kw, flex.reducible_kw, flex.shiftable_kw) == (None, None, None)
    assert [d.kw for d in flex.devices if d.kind != "battery"] == [None, None]
    assert flex.battery_kw == 5.0


def test_a_week_old_window_is_within_a_short_embargo_but_not_a_long_one(s: dr.Stores) -> None:
    seen = dr.current_flexibility(SITE, "2030-03-05T09:00:00Z", 60, caller(embargo_minutes=60), s, now())
    assert (seen.withheld, seen.reducible_kw) == (None, 1.3)
    hidden = dr.current_flexibility(
        SITE, "2030-03-05T09:00:00Z", 60, caller(embargo_minutes=8 * 24 * 60), s, now()
    )
    assert hidden.withheld == "last week's 15-minute readings are beyond this token's limits"
    assert hidden.reducible_kw is None


def test_the_forecast_over_the_horizon(s: dr.Stores) -> None:
    forecast = dr.forecast_flexibility(SITE, 3, caller(), s, now(10))
    assert [h.start for h in forecast.hours] == [
        "2030-03-04T13:10:00.000Z", "2030-03-04T14:00:00.000Z", "2030-03-04T15:00:00.000Z"
    ]  # fmt: skip
    assert forecast.hours[0].reducible_kw == 4.6  # now: the newest readings
    assert forecast.hours[1].reducible_kw == 0.0  # a week ago nothing was read then
    assert [h.battery_kw for h in forecast.hours] == [5.0, 5.0, 5.0]


# ---------------------------------------------------------------- auto-response

TOMORROW = "2030-03-05T09:00:00Z"  # 10:00 in Berlin; a week earlier the HVAC drew 1.3 kW


class FlatForecast:
    def __init__(self, kw: float) -> None:
        self.kw = kw

    def consumption_kw(self, site: str, start: datetime, slots: int) -> list[float | None]:
        return [self.kw] * slots

    def generation_kw(self, site: str, start: datetime, slots: int) -> list[float | None]:
        return [0.0] * slots


def auto(s: dr.Stores, event_time: str = TOMORROW, **body: Any) -> Any:
    body.setdefault("load_kw", 6)
    sent = dr.send(SITE, InvitationIn.model_validate({"event_time": event_time, **body}), s, now())
    return s.invitations.get(SITE, sent.invitation_id)


def enable(s: dr.Stores, **settings: Any) -> None:
    s.invitations.put_settings(SITE, AutoResponse(enabled=True, **settings))


def test_accepted_when_the_forecast_flexibility_covers_it(s: dr.Stores) -> None:
    enable(s)
    accepted = auto(s)  # 6 kW asked; 1.3 (HVAC) + 5.0 (battery) = 6.3 kW offered
    assert (accepted.status, accepted.answer, accepted.answered_by, accepted.reason) == (
        "accepted",
        "YES",
        "auto",
        None,
    )


def test_declined_with_the_reason_when_it_does_not(s: dr.Stores) -> None:
    enable(s)
    declined = auto(s, load_kw=7)
    assert (declined.status, declined.answer) == ("declined", "NO")
    assert declined.reason == "flexibility over the window is 6.3 kW, less than the 7 kW asked"
    assert s.events.kinds()[-2:] == ["InvitationChanged", "SystemEvent"]  # type: ignore[attr-defined]


def test_only_the_named_devices_and_the_battery_count(s: dr.Stores) -> None:
    enable(s)
    declined = auto(s, iots=["DEVICE_002"])  # the water heater drew nothing a week ago: 5.0 kW
    assert declined.reason == "flexibility over the window is 5 kW, less than the 6 kW asked"


def test_each_limit_declines_and_says_which(s: dr.Stores) -> None:
    enable(s, max_kw=5, min_notice_minutes=24 * 60, blackout_hours=[10])
    declined = auto(s)
    assert declined.reason == (
        "1200 minutes' notice is less than min_notice_minutes 1440; "
        "the window touches blackout hours [10] (Europe/Berlin); 6 kW is more than max_kw 5"
    )
    enable(s, max_kw=6, min_notice_minutes=20 * 60, blackout_hours=[9, 11])
    assert auto(s).status == "accepted"


def test_a_percentage_needs_the_consumption_forecast(s: dr.Stores) -> None:
    enable(s)
    without = auto(s, load_kw=None, load_percentage=10)
    assert without.reason == "no consumption forecast to turn the percentage into kW"
    with_forecast = replace(s, forecasts=FlatForecast(40.0))
    assert auto(with_forecast, load_kw=None, load_percentage=10).status == "accepted"  # 4 kW of 40
    assert auto(with_forecast, load_kw=None, load_percentage=20).status == "declined"  # 8 kW


def test_disabled_leaves_it_pending(s: dr.Stores) -> None:
    assert auto(s).status == "pending"
