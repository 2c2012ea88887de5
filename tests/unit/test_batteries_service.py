"""ems.batteries.service on fakes: the records, state and health from telemetry (with limited
tokens), manual commands checked against power, taper, SoC bounds and duration, the fleet summary
and what demand response may draw (`dischargeable`). Every expected figure is worked out by hand
in the test's comment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ems.batteries import service as batteries
from ems.batteries.models import BatteryIn, BatteryUpdate, PowerCommand
from ems.core.errors import Conflict, Invalid, NotFound
from ems.devices import service as devices
from ems.devices.models import CommandRequest, DeviceIn
from ems.registry.status import Heard
from ems.telemetry.models import Reading
from tests.support.fakes import caller
from tests.support.fakes_batteries import World, memory_world
from tests.support.fakes_devices import MemoryIot

T0 = datetime(2030, 3, 30, 12, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)
SITE = "hq"
QUARTER_MS = 15 * 60_000


def at(minutes: float = 0) -> Any:
    return lambda: T0 + timedelta(minutes=minutes)


def big(**fields: Any) -> BatteryIn:
    """250 kWh, 60 kW each way, lossless: the seed's 50 kW for 120 minutes fits from 40 %."""
    base: dict[str, Any] = {
        "battery_id": "BIG", "name": "Big battery", "capacity_kwh": 250, "max_charge_kw": 60,
        "max_discharge_kw": 60, "charge_efficiency": 1.0, "discharge_efficiency": 1.0, "soc_min_pct": 10,
        "soc_max_pct": 100, "device_id": "BIG_INV",
    }  # fmt: skip
    return BatteryIn.model_validate({**base, **fields})


@pytest.fixture
def w() -> World:
    world = memory_world()
    devices.register(SITE, DeviceIn(device_id="BIG_INV", name="Big inverter", device_type="battery_inverter",
                                    rated_power_kw=100.0), world.devices, at())  # fmt: skip
    world.registry.add_sensor(SITE, "BIG_INV", "battery_inverter", device_id="BIG_INV")
    return world


def soc(w: World, pct: float, power_w: float = 0.0, minutes: float = -1) -> None:
    """The inverter's newest reading, `minutes` from T0."""
    ts = T0_MS + int(minutes * 60_000)
    w.status.record(SITE, [Heard("BIG_INV", ts, {"soc_pct": pct, "power_w": power_w})])


def iot(w: World) -> MemoryIot:
    assert isinstance(w.devices.iot, MemoryIot)
    return w.devices.iot


# ---------------------------------------------------------------- records


def test_a_battery_is_created_read_changed_and_deleted(w: World) -> None:
    created = batteries.create_battery(SITE, big(), w.stores, at())
    assert (created.site_id, created.capacity_kwh, created.device_id) == (SITE, 250, "BIG_INV")
    with pytest.raises(Conflict) as exc:
        batteries.create_battery(SITE, big(), w.stores, at())
    assert exc.value.field == "battery_id"
    changed = batteries.update_battery(SITE, "BIG", BatteryUpdate(max_charge_kw=40), w.stores, at(5))
    assert (changed.max_charge_kw, changed.max_discharge_kw, changed.updated_at) == (
        40,
        60,
        "2030-03-30T12:05:00.000Z",
    )
    page = batteries.list_batteries(SITE, 50, None, caller(), w.stores, at(5))
    assert [b.battery_id for b in page.items] == ["BIG"]
    batteries.delete_battery(SITE, "BIG", w.stores)
    with pytest.raises(NotFound):
        batteries.get_battery(SITE, "BIG", caller(), w.stores, at(5))


def test_an_unknown_site_is_a_404(w: World) -> None:
    with pytest.raises(NotFound):
        batteries.create_battery("nowhere", big(), w.stores, at())


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"soc_min_pct": 90, "soc_max_pct": 80}, "soc_min_pct"),
        ({"taper_start_soc_pct": 5}, "taper_start_soc_pct"),
        ({"taper_start_soc_pct": 80, "taper_end_kw": 70}, "taper_end_kw"),
    ],
)
def test_inconsistent_limits_are_refused_naming_the_field(
    w: World, fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(Invalid) as exc:
        batteries.create_battery(SITE, big(**fields), w.stores, at())
    assert exc.value.field == field
    batteries.create_battery(SITE, big(), w.stores, at())
    with pytest.raises(Invalid) as exc:
        batteries.update_battery(SITE, "BIG", BatteryUpdate.model_validate(fields), w.stores, at())
    assert exc.value.field == field
    assert batteries.get_battery(SITE, "BIG", caller(), w.stores, at()).soc_min_pct == 10  # nothing written


def test_an_update_out_of_range_names_the_field(w: World) -> None:
    batteries.create_battery(SITE, big(), w.stores, at())
    with pytest.raises(Invalid) as exc:
        batteries.update_battery(SITE, "BIG", BatteryUpdate(charge_efficiency=1.5), w.stores, at())
    assert exc.value.field == "charge_efficiency"


# ---------------------------------------------------------------- state, within the token's limits


def test_get_adds_soc_power_and_stored_energy(w: World) -> None:
    batteries.create_battery(SITE, big(), w.stores, at())
    soc(w, 40.0, power_w=-12_000)
    view = batteries.get_battery(SITE, "BIG", caller(), w.stores, at())
    # 40 % of 250 kWh is 100 kWh; -12,000 W is 12 kW discharging.
    assert (view.state.soc_pct, view.state.power_kw, view.state.stored_kwh) == (40.0, -12.0, 100.0)
    assert view.state.reading_at == "2030-03-30T11:59:00.000Z"


@pytest.mark.parametrize(
    ("limits", "shown"),
    [
        ({}, True),
        ({"data_aggregation": "site"}, False),
        ({"data_aggregation": "room"}, False),
        ({"time_aggregation": "15m"}, False),
        ({"embargo_minutes": 60}, False),
    ],
)
def test_a_limited_token_does_not_see_the_battery_s_live_state(
    w: World, limits: dict[str, Any], shown: bool
) -> None:
    batteries.create_battery(SITE, big(), w.stores, at())
    soc(w, 40.0)
    for view in (
        batteries.get_battery(SITE, "BIG", caller(**limits), w.stores, at()),
        batteries.list_batteries(SITE, 50, None, caller(**limits), w.stores, at()).items[0],
    ):
        assert (view.state.soc_pct == 40.0) is shown
        assert (view.state.withheld is None) is shown
        assert (view.state.stored_kwh is None) is not shown


# ---------------------------------------------------------------- health


def history(w: World, quarters: list[tuple[float, float]]) -> None:
    """One reading in each quarter from T0: (power kW, SoC % at the quarter's end)."""
    readings = []
    for i, (kw, pct) in enumerate(quarters):
        ts = T0_MS + i * QUARTER_MS + 14 * 60_000
        readings += [
            Reading(SITE, "BIG_INV", "power_w", ts, kw * 1000),
            Reading(SITE, "BIG_INV", "soc_pct", ts, pct),
        ]
    w.telemetry.write(readings)


def small(**fields: Any) -> BatteryIn:
    return big(battery_id="SMALL", capacity_kwh=20, max_charge_kw=10, max_discharge_kw=10, charge_efficiency=0.9,
               **fields)  # fmt: skip


# Idle at 20 %, then 4 quarters at 10 kW: 10 kWh in, 9 kWh stored (90 % efficiency), SoC 20 -> 70 %
# (12.5 points a quarter): 9 kWh over 50 points is 18 kWh, 90 % of the rated 20 kWh. Then two
# quarters at -5 kW: 2.5 kWh out. Throughput 12.5 kWh, 12.5 / (2 x 20) = 0.3125 full cycles.
SWING = [(0.0, 20.0), (10.0, 32.5), (10.0, 45.0), (10.0, 57.5), (10.0, 70.0), (-5.0, 64.0), (-5.0, 58.0)]


def test_health_measures_the_capacity_over_a_soc_swing(w: World) -> None:
    batteries.create_battery(SITE, small(), w.stores, at())
    history(w, SWING)
    health = batteries.battery_health(SITE, "SMALL", 30, caller(), w.stores, at(120))
    assert health.charged_kwh == pytest.approx(10.0)
    assert health.discharged_kwh == pytest.approx(2.5)
    assert health.throughput_kwh == pytest.approx(12.5)
    assert health.equivalent_full_cycles == pytest.approx(0.3125)
    assert health.swing_pct == pytest.approx(50.0)
    assert health.measured_capacity_kwh == pytest.approx(18.0)
    assert health.state_of_health_pct == pytest.approx(90.0)
    assert batteries.get_battery(SITE, "SMALL", caller(), w.stores, at(120)).health == health


def test_a_swing_too_small_measures_nothing(w: World) -> None:
    batteries.create_battery(SITE, small(), w.stores, at())
    history(w, SWING[:2])  # one quarter: 12.5 points, below MIN_SWING_PCT
    health = batteries.battery_health(SITE, "SMALL", 30, caller(), w.stores, at(120))
    assert (health.charged_kwh, health.measured_capacity_kwh, health.state_of_health_pct) == (2.5, None, None)


def test_health_honours_the_token_s_embargo_and_aggregation(w: World) -> None:
    batteries.create_battery(SITE, small(), w.stores, at())
    history(w, SWING)
    # At T0 + 120 min with a 90-minute embargo only quarters before T0 + 30 min count: the idle one
    # and one at 10 kW (2.5 kWh, a 12.5-point rise: no measurement).
    embargoed = batteries.battery_health(SITE, "SMALL", 30, caller(embargo_minutes=90), w.stores, at(120))
    assert (embargoed.charged_kwh, embargoed.discharged_kwh, embargoed.state_of_health_pct) == (
        2.5,
        0.0,
        None,
    )
    site_level = batteries.battery_health(
        SITE, "SMALL", 30, caller(data_aggregation="site"), w.stores, at(120)
    )
    assert (site_level.throughput_kwh, site_level.withheld) == (
        0.0,
        "this token sees no single device's readings",
    )


# ---------------------------------------------------------------- commands


def test_the_seed_s_charge_call_goes_to_the_inverter(w: World) -> None:
    batteries.create_battery(SITE, big(), w.stores, at())
    soc(w, 40.0)  # 150 kWh of room up to 100 %: 50 kW for 2 h (100 kWh) fits
    answer = batteries.command(
        SITE, "BIG", "charge", PowerCommand(power_kw=50, duration_minutes=120), w.stores
    )
    assert (answer.power_kw, answer.energy_kwh, answer.status, answer.device_id) == (
        50,
        100,
        "pending",
        "BIG_INV",
    )
    assert answer.command["source"] == "manual"
    assert answer.command["params"] == {"kw": 50.0, "duration_minutes": 120}
    desired = iot(w).shadow("hq:BIG_INV").desired
    assert (desired["power_kw"], desired["duration_minutes"], desired["command_id"]) == (
        50.0,
        120,
        answer.command_id,
    )
    topic, message = iot(w).published[-1]
    assert (topic, message["command_id"]) == ("ems/hq/devices/BIG_INV/commands", answer.command_id)


def test_a_discharge_is_sent_negative(w: World) -> None:
    batteries.create_battery(SITE, big(), w.stores, at())
    soc(w, 40.0)
    answer = batteries.command(
        SITE, "BIG", "discharge", PowerCommand(power_kw=30, duration_minutes=60), w.stores
    )
    assert answer.power_kw == -30
    assert iot(w).shadow("hq:BIG_INV").desired["power_kw"] == -30.0


@pytest.mark.parametrize(
    ("direction", "battery", "soc_pct", "power_kw", "minutes", "limit", "largest"),
    [
        # 70 kW is beyond 60 kW of charge power, whatever the room.
        ("charge", {}, 40.0, 70, 60, "max_charge_kw", "60.000"),
        # From 40 % there are 150 kWh of room: for 4 h at most 37.5 kW.
        ("charge", {}, 40.0, 50, 240, "soc_max_pct", "37.500"),
        # Taper from 80 % to 10 kW at 100 %: from 70 % for 1 h the end SoC is 70 + 0.4 p and the limit
        # 60 - 2.5 (end - 80); p = 60 - 2.5 (0.4 p - 10) gives p = 42.5 (ends at 87 %, limit 42.5 kW).
        (
            "charge",
            {"taper_start_soc_pct": 80, "taper_end_kw": 10},
            70.0,
            50,
            60,
            "taper_start_soc_pct",
            "42.500",
        ),
        # From 40 % down to 10 % there are 75 kWh: for 2 h at most 37.5 kW.
        ("discharge", {}, 40.0, 60, 120, "soc_min_pct", "37.500"),
        # With 90 % discharge efficiency the 75 kWh give 67.5 kWh on the grid side: 33.75 kW for 2 h.
        ("discharge", {"discharge_efficiency": 0.9}, 40.0, 40, 120, "soc_min_pct", "33.750"),
        ("discharge", {}, 90.0, 61, 10, "max_discharge_kw", "60.000"),
    ],
)
def test_a_command_beyond_a_limit_is_a_422_naming_it_and_the_largest_that_passes(
    w: World, direction: Any, battery: dict[str, Any], soc_pct: float, power_kw: float, minutes: int, limit: str,
    largest: str,
) -> None:  # fmt: skip
    batteries.create_battery(SITE, big(**battery), w.stores, at())
    soc(w, soc_pct)
    with pytest.raises(Invalid) as exc:
        batteries.command(
            SITE, "BIG", direction, PowerCommand(power_kw=power_kw, duration_minutes=minutes), w.stores
        )
    assert exc.value.field == limit
    assert f"{largest} kW" in str(exc.value)
    assert iot(w).shadow("hq:BIG_INV").desired == {}  # nothing sent
    passing = float(largest)
    sent = batteries.command(
        SITE, "BIG", direction, PowerCommand(power_kw=passing, duration_minutes=minutes), w.stores
    )
    assert abs(sent.power_kw) == passing


@pytest.mark.parametrize(
    ("limits", "shown"),
    [({}, True), ({"embargo_minutes": 15}, False), ({"time_aggregation": "15m"}, False)],
)
def test_a_token_that_does_not_see_live_readings_gets_the_limit_without_the_soc_derived_power(
    w: World, limits: dict[str, Any], shown: bool
) -> None:
    # From 40 % up to 100 % there are 150 kWh (lossless): for 4 h at most 37.5 kW.
    batteries.create_battery(SITE, big(), w.stores, at())
    soc(w, 40.0)
    with pytest.raises(Invalid) as exc:
        batteries.command(
            SITE, "BIG", "charge", PowerCommand(power_kw=50, duration_minutes=240), w.stores, caller(**limits)
        )
    assert exc.value.field == "soc_max_pct"
    assert ("37.500 kW" in str(exc.value)) is shown
    assert ("power_kw exceeds what the battery's state of charge allows" in str(exc.value)) is not shown
    assert iot(w).shadow("hq:BIG_INV").desired == {}  # nothing sent
    # The power limit is the battery's record, not a reading: every token sees it.
    with pytest.raises(Invalid) as power:
        batteries.command(
            SITE, "BIG", "charge", PowerCommand(power_kw=61, duration_minutes=1), w.stores, caller(**limits)
        )
    assert (power.value.field, "60.000 kW" in str(power.value)) == ("max_charge_kw", True)


def test_a_command_needs_a_device_and_a_soc_reading(w: World) -> None:
    batteries.create_battery(SITE, big(battery_id="NODEV", device_id=None), w.stores, at())
    with pytest.raises(Invalid) as exc:
        batteries.command(SITE, "NODEV", "charge", PowerCommand(power_kw=5, duration_minutes=10), w.stores)
    assert exc.value.field == "device_id"
    batteries.create_battery(SITE, big(), w.stores, at())
    with pytest.raises(Conflict) as conflict:
        batteries.command(SITE, "BIG", "charge", PowerCommand(power_kw=5, duration_minutes=10), w.stores)
    assert conflict.value.field == "soc_pct"


def test_a_retried_command_is_the_same_command(w: World) -> None:
    batteries.create_battery(SITE, big(), w.stores, at())
    soc(w, 40.0)
    cmd = PowerCommand(power_kw=20, duration_minutes=30, command_id="retry-1")
    first = batteries.command(SITE, "BIG", "charge", cmd, w.stores)
    again = batteries.command(SITE, "BIG", "charge", cmd, w.stores)
    assert (first.command_id, again.command_id) == ("retry-1", "retry-1")
    assert len([c for c in w.devices.commands.open_for(SITE, "BIG_INV")]) == 1


def test_a_device_held_by_demand_response_refuses_a_manual_command(w: World) -> None:
    batteries.create_battery(SITE, big(), w.stores, at())
    soc(w, 40.0)
    devices.send(SITE, "BIG_INV", CommandRequest(command="set_power", params={"kw": -10}), "dr", w.devices)
    with pytest.raises(Conflict) as exc:
        batteries.command(SITE, "BIG", "charge", PowerCommand(power_kw=20, duration_minutes=30), w.stores)
    assert exc.value.field == "source"


# ---------------------------------------------------------------- the fleet and demand response


def test_the_summary_adds_up_the_fleet(w: World) -> None:
    batteries.create_battery(SITE, big(), w.stores, at())
    batteries.create_battery(SITE, small(device_id=None), w.stores, at())
    soc(w, 40.0, power_w=5_000)
    summary = batteries.summary(SITE, 30, caller(), w.stores, at())
    # 250 + 20 kWh; only BIG reports: 40 % of 250 = 100 kWh stored, 5 kW charging.
    assert (summary.count, summary.capacity_kwh, summary.max_charge_kw) == (2, 270, 70)
    assert (summary.stored_kwh, summary.power_kw, summary.batteries_reporting) == (100.0, 5.0, 1)
    limited = batteries.summary(SITE, 30, caller(embargo_minutes=15), w.stores, at())
    assert (limited.count, limited.capacity_kwh, limited.stored_kwh, limited.power_kw) == (2, 270, None, None)
    assert limited.withheld is not None


def test_the_summary_counts_throughput_from_history(w: World) -> None:
    batteries.create_battery(SITE, big(), w.stores, at())
    history(w, SWING)  # 10 kWh in, 2.5 kWh out
    assert batteries.summary(SITE, 30, caller(), w.stores, at(120)).throughput_kwh == pytest.approx(12.5)


def test_dischargeable_is_limited_by_power_and_by_the_energy_above_soc_min(w: World) -> None:
    batteries.create_battery(SITE, big(), w.stores, at())
    batteries.create_battery(SITE, small(device_id=None), w.stores, at())
    soc(w, 40.0)
    # 75 kWh above 10 %: over 1 h the 60 kW limit binds; over 2 h the energy does (37.5 kW).
    one_hour = {b.battery_id: b for b in batteries.dischargeable(SITE, w.stores, 60)}
    assert (one_hour["BIG"].available_kw, one_hour["BIG"].available_kwh, one_hour["BIG"].soc_pct) == (
        60,
        75,
        40,
    )
    assert (one_hour["SMALL"].available_kw, one_hour["SMALL"].soc_pct) == (0.0, None)
    two_hours = {b.battery_id: b for b in batteries.dischargeable(SITE, w.stores, 120)}
    assert two_hours["BIG"].available_kw == pytest.approx(37.5)
    limited = {
        b.battery_id: b for b in batteries.dischargeable(SITE, w.stores, 60, caller(embargo_minutes=5))
    }
    assert (limited["BIG"].soc_pct, limited["BIG"].available_kw) == (None, 0.0)
