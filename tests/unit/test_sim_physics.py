"""The demo building's physics and devices: energy balance at the meter, the sun, the battery's limits,
commands and shadow deltas, and a seed that repeats a run exactly."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ems_sim import physics
from ems_sim.building import BATTERY_ID, HVAC_ID, Building, CommandRefused
from ems_sim.devices import EV_KW_PER_A, BatteryInverter, EvCharger

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
    building.command(BATTERY_ID, "set_power", {"kw": 3})
    building.step(NOON + timedelta(minutes=10))
    balance = building.balance()
    assert balance.battery_kw == pytest.approx(3)
    assert balance.pv_kw > 0
    loads_w = sum(
        building.telemetry(d, 1)["readings"][0]["metrics"]["power_w"]
        for d, device in building.devices.items()
        if device.device_type not in ("meter", "pv_inverter", "battery_inverter", "environment")
    )
    pv_w = building.telemetry("demo-pv", 1)["readings"][0]["metrics"]["power_w"]
    battery_w = building.telemetry(BATTERY_ID, 1)["readings"][0]["metrics"]["power_w"]
    meter_w = building.telemetry("demo-meter", 1)["readings"][0]["metrics"]["power_w"]
    assert meter_w == pytest.approx(loads_w - pv_w + battery_w, abs=0.5)  # rounding of each to 0.1 W


def test_commands_and_deltas_change_the_reported_state() -> None:
    building = Building("demo", NOON)
    assert building.command(HVAC_ID, "set_setpoint", {"celsius": 19.5})["setpoint_c"] == 19.5
    reported = building.apply_delta("demo-lighting", {"power": "off"})
    assert reported["power"] == "off" and building.balance().loads_kw["demo-lighting"] == 0
    assert building.apply_delta("demo-ev-charger", {"power_kw": 3.7})["power_kw"] == pytest.approx(3.7)
    with pytest.raises(CommandRefused):
        building.command("demo-ev-charger", "set_power", {"kw": 50})  # over its 11 kW
    with pytest.raises(CommandRefused):
        building.command("demo-meter", "off")
    with pytest.raises(CommandRefused):
        building.command("nobody", "on")


def test_telemetry_has_the_api_shape_and_registered_sensors() -> None:
    building = Building("demo", NOON)
    sensor_ids = {s.sensor_id for s in building.sensors()}
    # 9 devices with one sensor each (meter, PV, battery, HVAC, water heater, heat pump, lighting,
    # plug, EV charger) and 4 rooms with 4 each.
    assert len(building.rooms) == 4 and len(sensor_ids) == 9 + 4 * 4
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


# --- first-order physics: numbers to check by hand ---------------------------------------------------


def test_relax_closes_the_gap_to_one_e_th_in_one_time_constant() -> None:
    assert physics.relax(20.0, 10.0, 3600, 3600) == pytest.approx(10 + 10 / math.e)
    assert physics.relax(20.0, 10.0, 7200, 3600) == pytest.approx(10 + 10 / math.e**2)
    assert physics.relax(20.0, 10.0, 0, 3600) == 20.0


def test_a_room_without_hvac_drifts_to_the_outside_temperature_with_its_time_constant() -> None:
    room = physics.Room("Office", volume_m3=180, window_m2=12)
    # C = 0.012 x 180 = 2.16 kWh/K; UA = 0.003 x 180 + 0.004 x 12 = 0.588 kW/K; tau = 3.673 h.
    assert room.heat_capacity_kwh_per_k == pytest.approx(2.16)
    assert room.loss_kw_per_k == pytest.approx(0.588)
    tau_s = 2.16 / 0.588 * 3600
    assert room.tau_s == pytest.approx(tau_s)
    room.temperature_c = 21.0
    room.step(tau_s, outdoor_c=5.0, hvac_heat_kw=0.0)  # nobody in, no sun
    assert room.temperature_c == pytest.approx(5 + 16 / math.e)  # 10.89 °C


def test_hvac_on_drives_the_room_to_its_setpoint_and_off_lets_it_drift() -> None:
    room = physics.Room("Office", volume_m3=180, window_m2=12, temperature_c=15.0)
    electric_kw, heat_kw = physics.hvac_heat_kw(room, 5.0, 0.0, 21.0, "heat", rated_kw=6.0)
    # Holding 21 °C against 5 °C outdoors takes UA x 16 K = 9.408 kW of heat, 3.136 kW at a COP of 3.
    assert heat_kw == pytest.approx(0.588 * 16) and electric_kw == pytest.approx(0.588 * 16 / 3)
    room.step(room.tau_s, 5.0, heat_kw)
    assert room.temperature_c == pytest.approx(21 - 6 / math.e)  # the 6 K gap to the setpoint: 1/e
    # In cool mode it adds no heat (the room would go to 5 °C): it stays off.
    assert physics.hvac_heat_kw(room, 5.0, 0.0, 21.0, "cool", rated_kw=6.0) == (0.0, 0.0)
    # At most its rated power x COP: 1 kW electric gives 3 kW of heat, less than the 9.4 needed.
    assert physics.hvac_heat_kw(room, 5.0, 0.0, 21.0, "auto", rated_kw=1.0) == (1.0, 3.0)


def test_a_water_tank_cools_by_standby_loss_and_heats_when_on() -> None:
    tank = physics.Tank(litres=200, loss_kw_per_k=0.003, temperature_c=60.0, ambient_c=20.0)
    # C = 200 x 4.186 / 3600 = 0.2326 kWh/K; tau = C / UA = 77.5 h.
    assert tank.tau_s == pytest.approx(200 * 4.186 / 3600 / 0.003 * 3600)
    tank.step(tank.tau_s, heat_kw=0.0)
    assert tank.temperature_c == pytest.approx(20 + 40 / math.e)
    tank = physics.Tank(litres=200, loss_kw_per_k=0.003, temperature_c=40.0, ambient_c=20.0)
    tank.step(3600, heat_kw=3.0)  # 3 kWh into 0.2326 kWh/K: about 12.9 K, less a little standby loss
    settles = 20 + 3 / 0.003
    assert tank.temperature_c == pytest.approx(settles + (40 - settles) * math.exp(-3600 / tank.tau_s))
    assert 52.5 < tank.temperature_c < 52.9


def test_rooms_differ_in_size_orientation_and_occupancy_so_their_readings_differ() -> None:
    monday = datetime(2026, 6, 22, 9, 0, tzinfo=UTC)
    building = Building("demo", monday, seed=3)
    for minute in range(1, 121):
        building.step(monday + timedelta(minutes=minute))
    rooms = building.room_state
    assert len({round(room.temperature_c, 2) for room in rooms.values()}) == 4
    assert len({round(room.co2_ppm) for room in rooms.values()}) == 4
    assert all(rooms[s.name].occupancy <= s.max_occupancy for s in building.room_specs)
    # Late morning the south-facing Office gets more sun a m3 than the north-facing Kitchen, and the
    # east-facing Meeting Room more than the Kitchen through the same glazing a m2 (6 vs 3 m2).
    assert building.solar_kw["Office"] / 180 > building.solar_kw["Kitchen"] / 60
    assert building.solar_kw["Meeting Room"] / 6 > building.solar_kw["Kitchen"] / 3


def test_hvac_off_lets_the_office_drift_toward_outside() -> None:
    night = datetime(2026, 1, 11, 1, 0, tzinfo=UTC)  # a January Sunday night: no sun, nobody in
    building = Building("demo", night)
    office = building.room_state["Office"]
    building.step(night + timedelta(minutes=30))
    assert office.temperature_c == pytest.approx(21.0, abs=0.05)  # HVAC holds the setpoint
    assert building.devices[HVAC_ID].draw_kw > 0
    building.command(HVAC_ID, "off")
    start_c, outside = office.temperature_c, building.outdoor_c
    building.step(night + timedelta(minutes=90))
    assert building.devices[HVAC_ID].draw_kw == 0
    assert outside < office.temperature_c < start_c  # cooling towards the outdoors, not past it


def test_pv_stays_under_its_curtailment_cap() -> None:
    building = Building("demo", NOON, seed=1)
    building.step(NOON + timedelta(minutes=5))
    available = building.pv.available_kw
    assert available > 3  # a June noon
    building.command("demo-pv", "curtail", {"kw": 2.5})
    assert building.balance().pv_kw == 2.5
    building.command("demo-pv", "curtail", {"percent": 10})  # 10 % of its 12 kW peak
    building.step(NOON + timedelta(minutes=10))
    assert building.balance().pv_kw == pytest.approx(min(1.2, building.pv.available_kw))
    assert (
        building.reported("demo-pv")["curtail_pct"] == 10
        and building.reported("demo-pv")["curtail_kw"] is None
    )


def test_the_ev_follows_its_setpoint_until_the_car_is_full() -> None:
    ev = EvCharger("ev", "ev_charger", "EV", rated_power_kw=11.0, car_capacity_kwh=60, car_kwh=50)
    ev.apply("charge", {"power_kw": 4.0}, NOON)
    assert ev.draw_kw == 4.0
    ev.step(3600, NOON)  # 4 kWh: 54 of 60
    assert (ev.car_kwh, ev.draw_kw) == (pytest.approx(54), 4.0)
    ev.step(2 * 3600, NOON)  # only 6 kWh of room: full, then 0
    assert (ev.car_kwh, ev.draw_kw) == (pytest.approx(60), 0.0)
    with pytest.raises(CommandRefused, match="already full"):
        ev.apply("charge", {"power_kw": 4.0}, NOON)
    ev = EvCharger("ev", "ev_charger", "EV", rated_power_kw=11.0, car_kwh=10)
    ev.apply("charge", {"current_a": 10, "target_kwh": 5}, NOON)  # 10 A x 3 x 230 V = 6.9 kW
    assert ev.draw_kw == pytest.approx(10 * EV_KW_PER_A) == pytest.approx(6.9)
    ev.step(3600, NOON)
    assert (ev.session_kwh, ev.car_kwh, ev.draw_kw) == (pytest.approx(5), pytest.approx(15), 0.0)


def test_the_battery_follows_its_signed_setpoint_for_its_duration() -> None:
    battery = BatteryInverter("b", "battery_inverter", "B", rated_power_kw=5.0)
    battery.apply("set_power", {"kw": -4.0, "duration_minutes": 30}, NOON)
    battery.step(15 * 60, NOON + timedelta(minutes=15))
    assert battery.draw_kw == pytest.approx(-4.0)
    battery.step(30 * 60, NOON + timedelta(minutes=45))  # 15 of its 30 minutes left, then idle
    assert battery.draw_kw == pytest.approx(-2.0) and battery.battery.setpoint_kw == 0
    # 30 minutes at 4 kW out of 20 kWh at 95 %: 2 kWh / 0.95 from the cells, 10.53 % of the SoC.
    assert battery.battery.soc_pct == pytest.approx(50 - 2 / 0.95 / 20 * 100)
    battery.step(600, NOON + timedelta(minutes=55))
    assert battery.draw_kw == 0


def test_the_meter_is_the_sum_and_moves_by_a_commanded_share() -> None:
    building = Building("demo", NOON, seed=4)
    building.step(NOON + timedelta(minutes=5))
    before = building.telemetry("demo-meter", 1)["readings"][0]["metrics"]["power_w"]
    building.command(BATTERY_ID, "set_power", {"kw": 2.0})
    building.step(NOON + timedelta(minutes=6))
    balance = building.balance()
    assert balance.battery_kw == pytest.approx(2.0)
    assert balance.meter_kw == pytest.approx(sum(balance.loads_kw.values()) - balance.pv_kw + 2.0)
    plug_kw = balance.loads_kw["demo-plug"]
    assert plug_kw == pytest.approx(0.8)  # 40 % of 2 kW
    meter_w = building.telemetry("demo-meter", 1)["readings"][0]["metrics"]["power_w"]
    building.command("demo-plug", "off")
    after_w = building.telemetry("demo-meter", 1)["readings"][0]["metrics"]["power_w"]
    assert after_w == pytest.approx(meter_w - 800, abs=0.2)
    assert before != meter_w


def test_the_car_charges_until_its_departure_then_leaves() -> None:
    ev = EvCharger("ev", "ev_charger", "EV", rated_power_kw=11.0, car_kwh=20)
    ev.apply("charge", {"power_kw": 6.0, "departure": "2026-06-21T11:30:00Z"}, NOON)
    ev.step(3600, NOON + timedelta(hours=1))  # 30 minutes at 6 kW before it leaves: 3 kWh
    assert (ev.car_kwh, ev.plugged_in, ev.draw_kw) == (pytest.approx(23), False, 0.0)
    with pytest.raises(CommandRefused, match="no car is plugged in"):
        ev.apply("charge", {"power_kw": 6.0}, NOON + timedelta(hours=1))
    tomorrow = datetime(2026, 6, 22, 7, 0, tzinfo=UTC)  # the next car comes at 07:00 UTC
    ev.step(600, tomorrow + timedelta(minutes=5))  # from 06:55: 5 minutes at 6 kW after it came
    assert (ev.plugged_in, ev.car_kwh, ev.draw_kw) == (True, pytest.approx(24.5), 6.0)
