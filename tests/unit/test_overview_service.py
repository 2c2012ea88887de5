"""The overview through fakes (ems.overview.service): a small site, today's 15-minute rollups written
through MemoryTelemetry, and the token's data-sharing limits as the service applies them.

The site (UTC), now 01:00, today = four quarter hours since midnight; one reading per sensor in the
middle of each (the meter two in the first, 4 and 6 kW: its mean is 5 kW):

    quarter hour   meter (grid)   pv      battery            consumption = grid + pv - battery
    00:00-00:15    +5 kW          0       0                  5 kW
    00:15-00:30    +3 kW          2 kW    0                  5 kW
    00:30-00:45    -1 kW          4 kW    +1 kW (charging)   2 kW
    00:45-01:00    +2 kW          2 kW    -1 kW (discharge)  5 kW

kWh = kW x 0.25 h: import (5 + 3 + 2) x 0.25 = 2.5, export 0.25, generation 2.0, charge 0.25,
discharge 0.25, consumption 17 x 0.25 = 4.25 (= 2.5 - 0.25 + 2.0 - 0.25 + 0.25).
Power now is the last quarter's: grid 2, pv 2, battery -1, consumption 5 kW. Yesterday's 23:45
readings (10 kW import) must count nowhere.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ems.alerts.models import Alert
from ems.core.errors import BadRequest, Invalid, NotFound
from ems.overview import service as overview
from ems.overview.models import EnergyQuery
from ems.tariffs.models import Tariff
from ems.telemetry.models import Reading
from ems.telemetry.status import newest
from tests.support.fakes import MemoryAlerts, MemoryRegistry, MemoryStatus, MemoryTelemetry, caller

MIDNIGHT = datetime(2025, 6, 2, 0, 0, tzinfo=UTC)
NOW = datetime(2025, 6, 2, 1, 0, tzinfo=UTC)
M0 = int(MIDNIGHT.timestamp() * 1000)
Q = 15 * 60_000
HALF_Q = Q // 2

GRID_W = [5000, 3000, -1000, 2000]
PV_W = [0, 2000, 4000, 2000]
BATTERY_W = [0, 0, 1000, -1000]
HVAC_W = [1000, 1000, 2000, 2000]  # a load in the Office: inside the meter's power


def clock() -> datetime:
    return NOW


class Site:
    def __init__(self) -> None:
        self.registry = MemoryRegistry()
        r = self.registry
        r.add_site("hq", name="HQ", timezone="UTC")
        r.add_room("hq", "Office", floor="1")
        r.add_room("hq", "Lab")
        r.add_sensor("hq", "m", "meter")
        r.add_sensor("hq", "pv", "pv_inverter")
        r.add_sensor("hq", "bat", "battery_inverter")
        r.add_sensor("hq", "t1", "temperature", room="Office", device_id="env-1")
        r.add_sensor("hq", "c1", "co2", room="Office", device_id="env-1")
        r.add_sensor("hq", "h1", "humidity", room="Office")  # never reports
        r.add_sensor("hq", "hvac", "hvac", room="Office", device_id="hvac-1")
        r.add_sensor(
            "hq", "t2", "temperature", room="Lab", expected_interval_seconds=60
        )  # silent since 00:30
        self.telemetry = MemoryTelemetry()
        self.latest = MemoryStatus()
        self.alerts = MemoryAlerts()
        readings = [self.reading("m", -60_000, "power_w", 10_000)]  # yesterday, 23:59
        for q in range(4):
            mid = M0 + q * Q + HALF_Q
            readings += [
                self.reading("pv", mid, "power_w", PV_W[q]),
                self.reading("bat", mid, "power_w", BATTERY_W[q]),
                self.reading("bat", mid, "soc_pct", 50 + q),
                self.reading("hvac", mid, "power_w", HVAC_W[q]),
                self.reading("t1", mid, "temperature_c", 21.5),
                self.reading("c1", mid, "co2_ppm", 600),
            ]
            if q == 0:
                readings += [
                    self.reading("m", mid - 60_000, "power_w", 4000),
                    self.reading("m", mid, "power_w", 6000),
                ]
            else:
                readings.append(self.reading("m", mid, "power_w", GRID_W[q]))
        readings.append(self.reading("t2", M0 + 30 * 60_000, "temperature_c", 18.0))
        self.telemetry.write(readings)
        self.latest.record("hq", list(newest(readings).values()))

    @staticmethod
    def reading(sensor_id: str, ts_ms: int, metric: str, value: float) -> Reading:
        return Reading("hq", sensor_id, metric, ts_ms, float(value))

    def stores(self, tariff: bool = False) -> overview.Stores:
        return overview.Stores(
            registry=self.registry, telemetry=self.telemetry, latest=self.latest,
            tariffs=self.registry if tariff else None, alerts=self.alerts,
        )  # fmt: skip


# ---------------------------------------------------------------- the overview


def test_power_now_and_energy_today_by_hand() -> None:
    site = Site()
    answer = overview.site_overview("hq", caller(), site.stores(), clock)
    power = answer.power
    assert (power.grid_kw, power.generation_kw, power.battery_kw, power.consumption_kw) == (
        2.0,
        2.0,
        -1.0,
        5.0,
    )
    assert (power.grid_import_kw, power.grid_export_kw, power.battery_discharge_kw) == (2.0, 0.0, 1.0)
    assert power.battery_soc_pct == 53.0 and power.as_of == "2025-06-02T00:52:30.000Z"
    energy = answer.energy_today
    assert (energy.start, energy.end) == ("2025-06-02T00:00:00.000Z", "2025-06-02T01:00:00.000Z")
    assert (energy.grid_import_kwh, energy.grid_export_kwh, energy.generation_kwh) == (2.5, 0.25, 2.0)
    assert (energy.battery_charge_kwh, energy.battery_discharge_kwh, energy.consumption_kwh) == (
        0.25,
        0.25,
        4.25,
    )


def test_the_current_quarter_hour_counts_up_to_now() -> None:
    """At 00:52:30 the last quarter holds half its 15 minutes: import 2.0 + 2 x 0.125 = 2.25 kWh."""
    site = Site()
    at = datetime(2025, 6, 2, 0, 52, 30, tzinfo=UTC)
    assert (
        overview.site_overview("hq", caller(), site.stores(), lambda: at).energy_today.grid_import_kwh == 2.25
    )


def test_rooms_and_sensor_counts() -> None:
    site = Site()
    answer = overview.site_overview("hq", caller(), site.stores(), clock)
    lab, office = answer.rooms
    assert (office.name, office.sensor_count, office.temperature_c, office.co2_ppm, office.humidity_pct) == (
        "Office", 4, 21.5, 600.0, None
    )  # fmt: skip
    assert office.updated_at == "2025-06-02T00:52:30.000Z"
    assert (lab.name, lab.sensor_count, lab.temperature_c) == ("Lab", 1, None)  # t2 is offline
    counts = answer.sensors
    assert (counts.total, counts.online, counts.offline, counts.unknown) == (8, 6, 1, 1)


def test_a_token_of_the_whole_site_sees_no_rooms_values() -> None:
    site = Site()
    answer = overview.site_overview("hq", caller(data_aggregation="site"), site.stores(), clock)
    assert [(r.name, r.sensor_count, r.temperature_c) for r in answer.rooms] == [
        ("Lab", 1, None),
        ("Office", 4, None),
    ]
    assert answer.power.consumption_kw == 5.0 and answer.energy_today.consumption_kwh == 4.25


def test_a_token_of_15_minute_data_sees_no_live_values() -> None:
    site = Site()
    answer = overview.site_overview("hq", caller(time_aggregation="15m"), site.stores(), clock)
    assert (answer.power.grid_kw, answer.power.consumption_kw, answer.power.as_of) == (None, None, None)
    assert answer.power.sensors == {"grid": ["m"], "generation": ["pv"], "battery": ["bat"]}
    assert answer.rooms[1].temperature_c is None
    assert answer.energy_today.grid_import_kwh == 2.5  # whole quarter hours it may see


def test_an_embargo_ends_energy_today_at_the_last_whole_quarter_before_its_cut() -> None:
    """20 minutes of embargo at 01:00: the cut is 00:40, so energy ends at 00:30 (two quarters):
    import (5 + 3) x 0.25 = 2.0, generation 0.5, consumption (5 + 5) x 0.25 = 2.5."""
    site = Site()
    answer = overview.site_overview("hq", caller(embargo_minutes=20), site.stores(), clock)
    energy = answer.energy_today
    assert energy.end == "2025-06-02T00:30:00.000Z"
    assert (energy.grid_import_kwh, energy.generation_kwh, energy.consumption_kwh) == (2.0, 0.5, 2.5)
    assert answer.power.consumption_kw is None


def test_an_unknown_site_is_not_found() -> None:
    with pytest.raises(NotFound) as missing:
        overview.site_overview("nowhere", caller(), Site().stores(), clock)
    assert missing.value.field == "site_id"


# ---------------------------------------------------------------- a room


def test_room_detail_by_hand() -> None:
    """The Office: hvac's power now 2 kW; its energy today (1 + 1 + 2 + 2) x 0.25 = 1.5 kWh."""
    site = Site()
    room = overview.room_detail("hq", "Office", caller(), site.stores(), clock)
    assert (room.temperature_c, room.co2_ppm, room.power_kw, room.energy_today_kwh) == (21.5, 600.0, 2.0, 1.5)
    assert (room.sensor_count, room.device_count, room.floor) == (4, 2, "1")
    assert room.live_at == "2025-06-02T00:52:30.000Z"


def test_room_detail_within_the_tokens_limits() -> None:
    site = Site()
    whole_site = overview.room_detail("hq", "Office", caller(data_aggregation="site"), site.stores(), clock)
    assert (whole_site.temperature_c, whole_site.power_kw, whole_site.energy_today_kwh) == (None, None, None)
    assert whole_site.sensor_count == 4
    embargoed = overview.room_detail("hq", "Office", caller(embargo_minutes=20), site.stores(), clock)
    assert (embargoed.temperature_c, embargoed.power_kw, embargoed.energy_today_kwh) == (None, None, 0.5)
    with pytest.raises(NotFound) as missing:
        overview.room_detail("hq", "Attic", caller(), site.stores(), clock)
    assert missing.value.field == "name"


# ---------------------------------------------------------------- the summary


def test_summary_with_open_alerts() -> None:
    site = Site()
    site.alerts.open(
        Alert(alert_id="0000000000001-aaaaaaaa", site_id="hq", rule="offline#t2", kind="sensor_offline",
              severity="warning", message="t2 has not reported", raised_at="2025-06-02T00:40:00.000Z")
    )  # fmt: skip
    answer = overview.summary("hq", caller(), site.stores(), clock)
    assert (answer.room_count, answer.open_alerts) == (2, 1)
    assert answer.sensors_by_type == {
        "battery_inverter": 1, "co2": 1, "humidity": 1, "hvac": 1, "meter": 1, "pv_inverter": 1, "temperature": 2
    }  # fmt: skip
    assert answer.latest_by_type is not None
    assert (answer.latest_by_type["temperature"].sensor_id, answer.latest_by_type["temperature"].metrics) == (
        "t1", {"temperature_c": 21.5}
    )  # fmt: skip
    assert "humidity" not in answer.latest_by_type


def test_summary_for_a_token_of_rooms_has_no_per_sensor_readings() -> None:
    site = Site()
    answer = overview.summary("hq", caller(data_aggregation="room"), site.stores(), clock)
    assert answer.latest_by_type is None
    assert answer.rooms[1].temperature_c == 21.5


# ---------------------------------------------------------------- the energy report


def test_energy_report_with_the_sites_tariff() -> None:
    """Import 0.30 and export 0.10 per kWh, 10 per kW of peak, 0.4 kg CO2 per kWh imported:
    energy cost 2.5 x 0.30 - 0.25 x 0.10 = 0.725; peak 5 kW (00:00, the first of the two 5 kW
    quarters) costs 50; self-consumption (2.0 - 0.25) / 2.0 = 87.5 %; self-sufficiency
    (4.25 - 2.5) / 4.25 = 41.176 %; CO2 2.5 x 0.4 = 1.0 kg."""
    site = Site()
    site.registry.put_tariff(
        Tariff(
            site_id="hq", import_price=0.30, export_price=0.10, demand_charge_per_kw=10, co2_kg_per_kwh=0.4
        ),
        NOW,
    )
    report = overview.energy_report("hq", EnergyQuery(), caller(), site.stores(tariff=True), clock)
    assert (report.energy_cost, report.demand_cost, report.cost, report.currency) == (
        0.725,
        50.0,
        50.725,
        "EUR",
    )
    assert (report.peak_demand_kw, report.peak_demand_at) == (5.0, "2025-06-02T00:00:00.000Z")
    assert (report.self_consumption_pct, report.self_sufficiency_pct, report.co2_kg) == (87.5, 41.176, 1.0)
    assert (report.consumption_kwh, report.tariff_is_default) == (4.25, False)


def test_energy_report_without_a_tariff_costs_nothing() -> None:
    site = Site()
    report = overview.energy_report("hq", EnergyQuery(), caller(), site.stores(tariff=True), clock)
    assert (report.energy_cost, report.cost, report.co2_kg, report.tariff_is_default) == (
        0.0,
        0.0,
        None,
        True,
    )


def test_energy_report_of_a_period_and_its_limits() -> None:
    """00:15 to 00:45: the second and third quarters, import 3 x 0.25 = 0.75, export 0.25 kWh."""
    site = Site()
    q = EnergyQuery(start_time="2025-06-02T00:15:00Z", end_time="2025-06-02T00:45:00Z")
    report = overview.energy_report("hq", q, caller(), site.stores(), clock)
    assert (report.grid_import_kwh, report.grid_export_kwh, report.peak_demand_kw) == (0.75, 0.25, 3.0)

    backwards = EnergyQuery(start_time="2025-06-02T00:45:00Z", end_time="2025-06-02T00:15:00Z")
    with pytest.raises(Invalid) as bad:
        overview.energy_report("hq", backwards, caller(), site.stores(), clock)
    assert bad.value.field == "end_time"
    too_long = EnergyQuery(start_time="2024-01-01T00:00:00Z", end_time="2025-06-02T00:00:00Z")
    with pytest.raises(BadRequest) as long:
        overview.energy_report("hq", too_long, caller(), site.stores(), clock)
    assert (long.value.field, long.value.message) == ("end_time", "at most 366 days at a time")
