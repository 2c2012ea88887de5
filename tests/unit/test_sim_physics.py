"""The demo building's physics and devices: energy balance at the meter, the sun, the battery's limits,
commands and shadow deltas, and a seed that repeats a run exactly."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ems_sim import physics
from ems_sim.building import Building, CommandRefused

NOON = datetime(2026, 6, 21, 11, 0, tzinfo=UTC)  # about solar noon in Berlin (13.4 E)
MIDNIGHT = datetime(2026, 6, 21, 23, 0, tzinfo=UTC)

power = st.floats(min_value=0, max_value=100, allow_nan=False)


@given(st.lists(power, max_size=10), power, st.floats(min_value=-50, max_value=50, allow_nan=False))
def test_the_meter_is_loads_minus_pv_plus_charge_minus_discharge(
    loads: list[float], pv: float, battery: float
) -> None:
    charge, discharge = max(battery, 0), max(-battery, 0)
    assert physics.meter_kw(loads, pv, battery) == pytest.approx(sum(loads) - pv + charge - discharge)


def test_a_hand_checked_balance() -> None:
    # 3 kW of loads, 5 kW of sun, the battery charging at 1.5 kW: 0.5 kW exported.
    assert physics.meter_kw([1.0, 2.0], 5.0, 1.5) == pytest.approx(-0.5)
    assert physics.meter_kw([1.0, 2.0], 0.0, -2.0) == pytest.approx(1.0)  # discharging covers 2 of 3 kW


def test_the_sun_is_up_at_noon_in_june_and_down_at_midnight() -> None:
    noon = physics.solar_elevation_deg(NOON, 52.52, 13.40)
    assert 58 < noon < 62  # 90 - 52.5 + 23.4 = 60.9 at the solstice
    assert physics.solar_elevation_deg(MIDNIGHT, 52.52, 13.40) < 0
    assert physics.clear_sky_ghi_w_m2(-5) == 0.0
    # Haurwitz at a 90 degree sun: 1098 * exp(-0.059) = 1035 W/m2.
    assert physics.clear_sky_ghi_w_m2(90) == pytest.approx(1035.1, abs=0.1)


def test_pv_follows_irradiance_and_clouds_and_never_passes_its_peak() -> None:
    assert physics.pv_kw(1000, 100, 10) == pytest.approx(8.5)
    assert physics.pv_kw(1000, 50, 10) == pytest.approx(4.25)
    assert physics.pv_kw(5000, 100, 10) == 10
    assert physics.pv_kw(0, 100, 10) == 0


@given(st.integers(min_value=0, max_value=10_000))
def test_clouds_stay_within_their_bounds(seed: int) -> None:
    rng, clouds = random.Random(seed), physics.Clouds()
    for _ in range(200):
        assert 15 <= clouds.step(rng, 60) <= 100


def test_the_battery_stops_at_full_and_at_its_minimum() -> None:
    battery = physics.Battery(capacity_kwh=10, max_power_kw=5, soc_pct=95, setpoint_kw=8, efficiency=1.0)
    assert battery.step(3600) == pytest.approx(0.5)  # only 0.5 kWh of room left, and 5 kW at most
    assert battery.soc_pct == pytest.approx(100)
    assert battery.step(3600) == 0
    battery.setpoint_kw = -5
    assert battery.step(3600) == pytest.approx(-5)
    assert battery.step(3600) == pytest.approx(-4)  # 50 % left, 10 % minimum: 4 kWh more
    assert battery.soc_pct == pytest.approx(10)


def test_switching_a_load_off_lowers_the_meter_by_its_power() -> None:
    building = Building("demo", NOON, seed=1)
    building.step(NOON + timedelta(minutes=5))
    before = building.balance()
    ev = before.loads_kw["demo-ev-charger"]
    assert ev == pytest.approx(7.4)
    building.command("demo-ev-charger", "off")
    after = building.balance()
    assert after.meter_kw == pytest.approx(before.meter_kw - ev)
    message = building.telemetry("demo-meter", 1)
    assert message["readings"][0]["metrics"]["power_w"] == pytest.approx(round(after.meter_kw * 1000, 1))


def test_the_meter_reads_the_balance_of_every_device() -> None:
    building = Building("demo", NOON, seed=2)
    building.command("demo-battery", "set_power", {"power_kw": 3})
    building.step(NOON + timedelta(minutes=10))
    balance = building.balance()
    assert balance.battery_kw == pytest.approx(3)
    assert balance.pv_kw > 0
    loads_w = sum(
        building.telemetry(d, 1)["readings"][0]["metrics"]["power_w"]
        for d, device in building.devices.items()
        if device.load is not None
    )
    pv_w = building.telemetry("demo-pv", 1)["readings"][0]["metrics"]["power_w"]
    battery_w = building.telemetry("demo-battery", 1)["readings"][0]["metrics"]["power_w"]
    meter_w = building.telemetry("demo-meter", 1)["readings"][0]["metrics"]["power_w"]
    assert meter_w == pytest.approx(loads_w - pv_w + battery_w, abs=0.5)  # rounding of each to 0.1 W


def test_commands_and_deltas_change_the_reported_state() -> None:
    building = Building("demo", NOON)
    assert building.command("demo-hvac", "set_setpoint", {"setpoint_c": 19.5})["setpoint_c"] == 19.5
    reported = building.apply_delta("demo-lighting", {"power": "off"})
    assert (reported["power"], reported["power_kw"]) == ("off", 0)
    assert building.apply_delta("demo-ev-charger", {"power_kw": 3.7})["power_kw"] == pytest.approx(3.7)
    with pytest.raises(CommandRefused):
        building.command("demo-ev-charger", "set_power", {"power_kw": 50})  # over its 11 kW
    with pytest.raises(CommandRefused):
        building.command("demo-meter", "off")
    with pytest.raises(CommandRefused):
        building.command("nobody", "on")


def test_telemetry_has_the_api_shape_and_registered_sensors() -> None:
    building = Building("demo", NOON)
    sensor_ids = {s.sensor_id for s in building.sensors()}
    assert len(building.rooms) == 4 and len(sensor_ids) == 7 + 4 * 4
    for device_id in building.devices:
        message = building.telemetry(device_id, 1_700_000_000_000)
        assert message["ts"] == 1_700_000_000_000
        for reading in message["readings"]:
            assert reading["sensor_id"] in sensor_ids and reading["metrics"]


def test_a_seed_repeats_a_run_exactly() -> None:
    def run(seed: int) -> list[dict[str, object]]:
        building = Building("demo", NOON, seed=seed)
        out = []
        for minute in range(1, 30):
            building.step(NOON + timedelta(minutes=minute))
            out += [building.telemetry(d, minute) for d in building.devices]
        return out

    assert run(7) == run(7)
    assert run(7) != run(8)
