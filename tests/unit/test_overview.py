"""The overview's mapping of sensors to power flows and rooms, and its arithmetic (no AWS)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from ems.overview.service import (
    FLOW_OF_SENSOR_TYPE,
    energy_today,
    flows_of,
    local_midnight,
    power_now,
    room_now,
)
from ems.registry.models import Room, Sensor
from ems.registry.status import Heard
from ems.telemetry.rollup import Bucket

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
Q = 15 * 60_000


def sensor(sensor_id: str, sensor_type: str, room: str | None = None) -> Sensor:
    return Sensor(
        sensor_id=sensor_id, name=sensor_id, sensor_type=sensor_type, room=room, site_id="s",
        created_at=NOW, updated_at=NOW,
    )  # fmt: skip


def heard(sensor_id: str, **metrics: float) -> Heard:
    return Heard(sensor_id, 1_000, dict(metrics))


def test_the_demo_buildings_sensor_types_map_to_flows() -> None:
    """The simulator's types (infra/simulator) and the plain names; loads and rooms map to nothing."""
    sensors = [
        sensor("m", "meter"), sensor("pv1", "pv_inverter"), sensor("pv2", "pv"), sensor("b", "battery_inverter"),
        sensor("hvac", "hvac"), sensor("ev", "ev_charger"), sensor("t", "temperature", "Office"),
    ]  # fmt: skip
    assert flows_of(sensors) == {"grid": ["m"], "generation": ["pv1", "pv2"], "battery": ["b"]}
    assert set(FLOW_OF_SENSOR_TYPE.values()) == {"grid", "generation", "battery"}


def test_power_now_by_hand() -> None:
    """meter 5 kW import, PV 2 kW: consumption 7 kW; a battery discharging 1 kW adds 1 kW to it."""
    flows = flows_of([sensor("m", "meter"), sensor("pv", "pv_inverter")])
    now = power_now(flows, {"m": heard("m", power_w=5000), "pv": heard("pv", power_w=2000)})
    assert (now.consumption_kw, now.generation_kw, now.grid_import_kw, now.grid_export_kw) == (
        7.0,
        2.0,
        5.0,
        0.0,
    )
    assert now.battery_kw is None and now.as_of == "1970-01-01T00:00:01.000Z"

    flows = flows_of([sensor("m", "meter"), sensor("pv", "pv_inverter"), sensor("b", "battery")])
    now = power_now(
        flows,
        {"m": heard("m", power_w=-500), "pv": heard("pv", power_w=2000), "b": heard("b", power_w=-1000, soc_pct=40)},
    )  # fmt: skip
    assert (now.grid_import_kw, now.grid_export_kw, now.battery_discharge_kw) == (0.0, 0.5, 1.0)
    assert (now.consumption_kw, now.battery_soc_pct) == (2.5, 40.0)


def test_power_now_is_unknown_rather_than_partial() -> None:
    """One of two meters silent: the grid (and so consumption) is unknown, not half of it; a PV
    inverter's negative standby draw is no negative generation."""
    flows = flows_of([sensor("m1", "meter"), sensor("m2", "meter"), sensor("pv", "pv")])
    now = power_now(flows, {"m1": heard("m1", power_w=3000), "pv": heard("pv", power_w=-4)})
    assert (now.grid_kw, now.consumption_kw, now.generation_kw) == (None, None, 0.0)


def test_energy_by_hand() -> None:
    """Two quarter hours: +5 kW then -1.5 kW at the meter, 2 then 4 kW of PV; the window ends 5
    minutes into the second quarter hour, so it counts a third of it."""
    flows = flows_of([sensor("m", "meter"), sensor("pv", "pv")])
    start = 1_700_000_100_000 - 1_700_000_100_000 % Q
    rollups = {
        "m": {start: Bucket(2, 10_000, 5000, 5000, 5000, start), start + Q: Bucket(1, -1500, -1500, -1500, -1500, start + Q)},
        "pv": {start: Bucket(1, 2000, 2000, 2000, 2000, start), start + Q: Bucket(1, 4000, 4000, 4000, 4000, start + Q)},
    }  # fmt: skip
    energy = energy_today(flows, rollups, start, start + Q + 5 * 60_000)
    assert (energy.grid_import_kwh, energy.grid_export_kwh) == (1.25, 0.125)
    assert energy.generation_kwh == round(0.5 + 4 / 12, 3)
    assert energy.consumption_kwh == round((5 + 2) / 4 + (-1.5 + 4) / 12, 3)
    assert energy.battery_charge_kwh is None  # no battery: unknown, not zero


@given(
    st.lists(
        st.tuples(st.floats(-50_000, 50_000), st.floats(0, 20_000), st.floats(-10_000, 10_000)),
        min_size=1, max_size=96,
    )
)  # fmt: skip
def test_energy_balances(quarters: list[tuple[float, float, float]]) -> None:
    """consumption = import - export + generation - charge + discharge, whatever the quarter hours hold."""
    flows = flows_of([sensor("m", "meter"), sensor("pv", "pv"), sensor("b", "battery")])
    rollups: dict[str, dict[int, Bucket]] = {"m": {}, "pv": {}, "b": {}}
    for i, values in enumerate(quarters):
        for sensor_id, w in zip(("m", "pv", "b"), values, strict=True):
            rollups[sensor_id][i * Q] = Bucket(1, w, w, w, w, i * Q)
    e = energy_today(flows, rollups, 0, len(quarters) * Q)
    assert e.consumption_kwh is not None and e.grid_import_kwh is not None and e.generation_kwh is not None
    balance = (
        e.grid_import_kwh - (e.grid_export_kwh or 0) + e.generation_kwh - (e.battery_charge_kwh or 0)
        + (e.battery_discharge_kwh or 0)
    )  # fmt: skip
    assert abs(e.consumption_kwh - balance) <= 0.003 * 4  # each figure is rounded to the Wh


def test_rooms_by_sensor_type_not_metric() -> None:
    """The water heater in the lobby has a temperature_c: it is not the lobby's temperature."""
    room = Room(name="Lobby", site_id="s", created_at=NOW, updated_at=NOW)
    sensors = [sensor("t1", "temperature", "Lobby"), sensor("t2", "temperature", "Lobby"),
               sensor("wh", "water_heater", "Lobby"), sensor("c", "co2", "Lobby")]  # fmt: skip
    newest = {
        "t1": heard("t1", temperature_c=20),
        "t2": heard("t2", value=22),
        "wh": heard("wh", temperature_c=55),
    }
    now = room_now(room, sensors, newest)
    assert (now.temperature_c, now.co2_ppm, now.sensor_count) == (21.0, None, 4)
    assert room_now(room, sensors, None).temperature_c is None  # the caller may not see rooms' values


def test_today_starts_at_the_sites_midnight() -> None:
    assert local_midnight(NOW, "Europe/Berlin") == datetime(2025, 6, 1, 22, 0, tzinfo=UTC)
    assert local_midnight(NOW, "Asia/Kathmandu") == datetime(2025, 6, 1, 18, 15, tzinfo=UTC)  # UTC+5:45
    assert local_midnight(NOW, "UTC") == datetime(2025, 6, 2, tzinfo=UTC)
