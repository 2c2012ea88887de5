"""A room with its live metrics, a room's history, the analytics summary, energy and cost with the
site's tariff, all through the HTTP API against moto, on the building of tests/support/building.py (its docstring
has the numbers: import 1.25 kWh, export 0.375, generation 1.5, consumption 2.5 over [T0, T0+30m),
the first quarter hour at 5 kW of import).

With import at 0.40/kWh, export at 0.20, a demand charge of 10/kW and 0.2 kg CO2/kWh:
energy cost 1.25 x 0.40 - 0.375 x 0.20 = 0.425; peak demand 5 kW -> demand cost 50; cost 50.425;
CO2 1.25 x 0.2 = 0.25 kg; self-consumption (1.5 - 0.375) / 1.5 = 75 %; self-sufficiency
(2.5 - 1.25) / 2.5 = 50 %.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from tests.support.building import ROOM, SITE, iso
from tests.support.events import replay
from tests.support.inprocess import InProcessApi, ok, refused
from tests.support.tokens import issue

TARIFF = {"import_price": 0.40, "export_price": 0.20, "demand_charge_per_kw": 10, "co2_kg_per_kwh": 0.2}
HQ = {"x-site": SITE}


def test_a_room_with_its_live_metrics(api: InProcessApi, admin_token: str, building: int) -> None:
    t0 = building
    body = ok(api.request("GET", f"/api/v1/rooms/{ROOM}", token=admin_token, headers=HQ))
    live = {k: body[k] for k in ("temperature_c", "humidity_pct", "co2_ppm", "occupancy", "power_kw")}
    # The water heater's 3,000 W is the room's only power reading; humidity never reported.
    assert live == {
        "temperature_c": 21.5,
        "humidity_pct": None,
        "co2_ppm": 650.0,
        "occupancy": 3.0,
        "power_kw": 3.0,
    }
    assert (body["sensor_count"], body["device_count"], body["flexibility_kw"]) == (5, 0, None)
    assert body["live_at"] == iso(t0 + 20 * 60_000)
    if datetime.fromtimestamp(t0 / 1000, UTC).date() == datetime.now(UTC).date():
        assert body["energy_today_kwh"] == 0.75  # 3 kW for the quarter hour [T0+15m, T0+30m)

    site_only = issue(["rooms"], sites=[SITE], data_aggregation="site")
    hidden = ok(api.request("GET", f"/api/v1/rooms/{ROOM}", token=site_only))
    assert (hidden["name"], hidden["sensor_count"], hidden["temperature_c"], hidden["energy_today_kwh"]) == (
        ROOM, 5, None, None,
    )  # fmt: skip
    refused(api.request("GET", "/api/v1/rooms/Attic", token=admin_token, headers=HQ), 404, "name")


def test_a_rooms_history_within_the_tokens_limits(api: InProcessApi, admin_token: str, building: int) -> None:
    t0 = building
    window = {"metric": "temperature_c", "start_time": str(t0 // 1000), "end_time": str(t0 // 1000 + 3600)}
    body = ok(api.request("GET", f"/api/v1/rooms/{ROOM}/data", token=admin_token, headers=HQ,
                          query={**window, "resolution": "15m"}))  # fmt: skip
    assert (body["key"], body["resolution"], body["aggregate"]) == (ROOM, "15m", "mean")
    assert body["points"] == [{"ts": iso(t0 + 15 * 60_000), "value": 21.5, "count": 1}]
    # The water heater's 55 °C is not the room's temperature; its power is in the room's power.
    power = ok(api.request("GET", f"/api/v1/rooms/{ROOM}/data", token=admin_token, headers=HQ,
                           query={**window, "metric": "power_w", "aggregate": "sum"}))  # fmt: skip
    assert [p["value"] for p in power["points"]] == [3000.0]

    site_only = issue(["rooms"], sites=[SITE], data_aggregation="site")
    refused(api.request("GET", f"/api/v1/rooms/{ROOM}/data", token=site_only, query=window), 403, "group_by")
    hourly = issue(["rooms"], sites=[SITE], time_aggregation="1h")
    refused(api.request("GET", f"/api/v1/rooms/{ROOM}/data", token=hourly, query={**window, "resolution": "15m"}),
            403, "resolution")  # fmt: skip
    assert (
        ok(api.request("GET", f"/api/v1/rooms/{ROOM}/data", token=hourly, query=window))["resolution"] == "1h"
    )
    refused(api.request("GET", "/api/v1/rooms/Attic/data", token=admin_token, headers=HQ), 404, "name")


def test_the_summary(api: InProcessApi, admin_token: str, building: int) -> None:
    body = ok(api.request("GET", "/api/v1/analytics/summary", token=admin_token, headers=HQ))
    assert (body["room_count"], body["open_alerts"]) == (2, 0)
    assert body["sensors"] == {"total": 8, "online": 7, "offline": 0, "unknown": 1}
    assert body["sensors_by_type"] == {
        "battery_inverter": 1, "co2": 1, "humidity": 1, "meter": 1, "occupancy": 1, "pv_inverter": 1,
        "temperature": 1, "water_heater": 1,
    }  # fmt: skip
    assert body["latest_by_type"]["meter"]["metrics"] == {"power_w": -1500.0}
    assert body["latest_by_type"]["battery_inverter"]["metrics"] == {"power_w": 500.0, "soc_pct": 62.0}
    assert "humidity" not in body["latest_by_type"]
    assert [r["name"] for r in body["rooms"]] == [ROOM, "Store"] and body["rooms"][0]["co2_ppm"] == 650.0
    rooms_only = issue(["analytics"], sites=[SITE], data_aggregation="room")
    limited = ok(api.request("GET", "/api/v1/analytics/summary", token=rooms_only))
    assert limited["latest_by_type"] is None and limited["rooms"][0]["co2_ppm"] == 650.0


def test_energy_and_cost_of_a_period_with_the_sites_tariff(
    api: InProcessApi,
    admin_token: str,
    building: int,
) -> None:
    t0 = building
    period = {"start_time": str(t0 // 1000), "end_time": str(t0 // 1000 + 1800)}
    default = ok(api.request("GET", "/api/v1/analytics/energy", token=admin_token, headers=HQ, query=period))
    assert (
        default["tariff_is_default"] is True and default["energy_cost"] == 0.0 and default["co2_kg"] is None
    )

    assert (
        ok(api.request("PUT", "/api/v1/tariffs", token=admin_token, headers=HQ, body=TARIFF))["site_id"]
        == SITE
    )
    body = ok(api.request("GET", "/api/v1/analytics/energy", token=admin_token, headers=HQ, query=period))
    expected: dict[str, Any] = {
        "consumption_kwh": 2.5, "generation_kwh": 1.5, "grid_import_kwh": 1.25, "grid_export_kwh": 0.375,
        "battery_charge_kwh": 0.125, "battery_discharge_kwh": 0.25, "self_consumption_pct": 75.0,
        "self_sufficiency_pct": 50.0, "co2_kg": 0.25, "energy_cost": 0.425, "demand_cost": 50.0,
        "cost": 50.425, "peak_demand_kw": 5.0, "peak_demand_at": iso(t0), "tariff_is_default": False,
    }  # fmt: skip
    assert {k: body[k] for k in expected} == expected

    refused(api.request("GET", "/api/v1/analytics/energy", token=admin_token, headers=HQ,
                        query={"start_time": period["end_time"], "end_time": period["start_time"]}), 422, "end_time")  # fmt: skip
    year = {"start_time": "2020-01-01T00:00:00Z", "end_time": "2021-06-01T00:00:00Z"}
    refused(
        api.request("GET", "/api/v1/analytics/energy", token=admin_token, headers=HQ, query=year),
        400,
        "end_time",
    )


def test_a_time_of_use_tariff_prices_each_quarter_hour_at_its_hour(
    api: InProcessApi,
    admin_token: str,
    building: int,
) -> None:
    """Import costs 1.00 in T0's hour and 0 in every other: only the first quarter hour's import,
    5 kW for 15 min = 1.25 kWh, is paid (T0's quarter hours share their hour: see test_overview)."""
    t0 = building
    hour = datetime.fromtimestamp(t0 / 1000, UTC).hour
    bands = [{"hour_from": h, "hour_to": h + 1, "price": 1.0 if h == hour else 0.0} for h in range(24)]
    ok(api.request("PUT", "/api/v1/tariffs", token=admin_token, headers=HQ,
                   body={"import_price": bands, "export_price": 0, "currency": "EUR"}))  # fmt: skip
    stored = ok(api.request("GET", "/api/v1/tariffs", token=admin_token, headers=HQ))["import_price"]
    assert stored == [{**band, "weekdays": None} for band in bands]
    period = {"start_time": str(t0 // 1000), "end_time": str(t0 // 1000 + 1800)}
    body = ok(api.request("GET", "/api/v1/analytics/energy", token=admin_token, headers=HQ, query=period))
    same_hour = (t0 + 15 * 60_000) // 3_600_000 == t0 // 3_600_000
    assert body["energy_cost"] == 1.25 if same_hour else body["energy_cost"] >= 1.25
    assert body["currency"] == "EUR"


def test_a_bad_tariff_is_refused_naming_the_field(api: InProcessApi, admin_token: str, building: int) -> None:
    gap = [{"hour_from": 0, "hour_to": 7, "price": 0.1}, {"hour_from": 8, "hour_to": 24, "price": 0.3}]
    message = refused(api.request("PUT", "/api/v1/tariffs", token=admin_token, headers=HQ,
                                  body={"import_price": gap, "export_price": 0}), 422, "import_price")  # fmt: skip
    assert "hour 7" in message
    overlap = [{"hour_from": 0, "hour_to": 12, "price": 0.1}, {"hour_from": 11, "hour_to": 24, "price": 0.3}]
    refused(api.request("PUT", "/api/v1/tariffs", token=admin_token, headers=HQ,
                        body={"import_price": 0.3, "export_price": overlap}), 422, "export_price")  # fmt: skip
    refused(api.request("PUT", "/api/v1/tariffs", token=admin_token, headers=HQ,
                        body={"import_price": 0.3}), 422, "export_price")  # fmt: skip
    # Nothing was stored by the refusals.
    assert ok(api.request("GET", "/api/v1/tariffs", token=admin_token, headers=HQ))["is_default"] is True
    refused(
        api.request("GET", "/api/v1/tariffs", token=admin_token, query={"site": "nowhere"}), 404, "site_id"
    )


def test_samples(api: InProcessApi, admin_token: str, building: int) -> None:
    assert replay(api, "tariffs-put", admin_token).status == 200
    assert replay(api, "tariffs-get", admin_token).json["demand_charge_per_kw"] == 9.5
    assert replay(api, "analytics-summary", admin_token).json["room_count"] == 2
    assert replay(api, "analytics-energy", admin_token).status == 200
    # The samples' room is not in this building.
    assert replay(api, "rooms-get", admin_token).json["error"]["field"] == "name"
    assert replay(api, "rooms-data", admin_token).json["error"]["field"] == "name"


def test_a_room_hourly_token_with_an_embargo_on_the_room_paths(
    api: InProcessApi, admin_token: str, building: int
) -> None:
    """data_aggregation room, time_aggregation 1h, 60-minute embargo: the room's history holds only
    whole hours that ended before the cut; its live numbers and the summary's are hidden."""
    old_hour = int(time.time() // 3600 - 3) * 3600
    older = [{"sensor_id": "office-temperature", "ts": old_hour + m * 60, "metrics": {"temperature_c": v}}
             for m, v in ((5, 20.0), (35, 22.0))]  # fmt: skip
    assert ok(api.request("POST", "/api/v1/data/ingest", token=admin_token, headers=HQ, body={"readings": older}))["accepted"] == 2  # fmt: skip
    limited = issue(["rooms", "analytics"], sites=[SITE], data_aggregation="room", time_aggregation="1h", embargo_minutes=60)  # fmt: skip
    period = {
        "metric": "temperature_c",
        "start_time": str(old_hour - 3600),
        "end_time": str(int(time.time())),
    }

    history = ok(api.request("GET", f"/api/v1/rooms/{ROOM}/data", token=limited, query=period))
    assert history["resolution"] == "1h"
    assert history["points"] == [
        {"ts": iso(old_hour * 1000), "value": 21.0, "count": 2}
    ]  # the building's hour is embargoed
    room = ok(api.request("GET", f"/api/v1/rooms/{ROOM}", token=limited))
    assert (room["temperature_c"], room["power_kw"], room["sensor_count"]) == (None, None, 5)
    summary = ok(api.request("GET", "/api/v1/analytics/summary", token=limited))
    assert summary["latest_by_type"] is None and summary["rooms"][0]["temperature_c"] is None
