"""Batteries against moto through BatteriesFunction and OptimizerFunction: the routes replayed from
events/http/batteries, the battery's SoC from a reading ingested over HTTP, the seed's charge call
reaching the inverter's classic shadow and command topic (moto's IoT) through the devices domain, a
command beyond the battery's limits refused with nothing sent, a limited token that does not see the
live state, and an applied plan: its first setpoint, its Scheduler schedule in moto, a re-plan from
the schedule's event starting at the SoC measured then, and DELETE."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from ems_local.template import Stack
from tests.support.events import assert_shaped_as_api_gateway_sends_it, replay
from tests.support.inprocess import EVENTS, InProcessApi, ok, refused
from tests.support.tokens import issue

SITE = "hq"
HQ = {"x-site": SITE}
SAMPLES = EVENTS / "http" / "batteries"


def sample(name: str) -> str:
    return f"batteries/{name}"


FUNCTIONS = ("BatteriesFunction", "OptimizerFunction")


def test_every_batteries_route_has_exactly_one_sample() -> None:
    routes = [r for r in Stack.from_file().http_routes() if r["function"] in FUNCTIONS]
    keys = [json.loads(p.read_text())["routeKey"] for p in sorted(SAMPLES.glob("*.json"))]
    assert sorted(keys) == sorted(f"{r['method']} {r['path']}" for r in routes)
    assert len(keys) == 13


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*.json")), ids=lambda p: p.stem)
def test_each_batteries_sample_is_shaped_as_api_gateway_sends_it(path: Path) -> None:
    assert_shaped_as_api_gateway_sends_it(json.loads(path.read_text()), FUNCTIONS)


@pytest.fixture
def site(api: InProcessApi, admin_token: str) -> None:
    """Site hq with the inverter BATT001 (100 kW, so the seed's 50 kW passes the device's own check),
    its sensor, and the battery of the create sample (250 kWh, 60 kW, 95 % each way, 10-95 %)."""
    ok(api.request("POST", "/api/v1/sites", token=admin_token,
                   body={"site_id": SITE, "name": "HQ", "timezone": "Europe/Berlin"}), 201)  # fmt: skip
    device = {
        "device_id": "BATT001",
        "name": "Inverter",
        "device_type": "battery_inverter",
        "rated_power_kw": 100,
    }
    ok(api.request("POST", "/api/v1/iot/devices", token=admin_token, headers=HQ, body=device), 201)
    sensor = {
        "sensor_id": "BATT001",
        "name": "Inverter",
        "sensor_type": "battery_inverter",
        "device_id": "BATT001",
    }
    ok(api.request("POST", "/api/v1/sensors", token=admin_token, headers=HQ, body=sensor), 201)
    ok(replay(api, sample("batteries-create"), admin_token), 201)


def reading(api: InProcessApi, token: str, soc_pct: float, power_w: float = 0.0) -> None:
    body = {"readings": [{"sensor_id": "BATT001", "ts": int(time.time() * 1000) - 1000,
                          "metrics": {"soc_pct": soc_pct, "power_w": power_w}}]}  # fmt: skip
    answer = ok(api.request("POST", "/api/v1/data/ingest", token=token, headers=HQ, body=body))
    assert answer["accepted"] == 1


def test_crud_from_the_samples(api: InProcessApi, admin_token: str, site: None) -> None:
    refused(replay(api, sample("batteries-create"), admin_token), 409, "battery_id")
    listed = ok(replay(api, sample("batteries-list"), admin_token))
    assert [(b["battery_id"], b["capacity_kwh"], b["taper_start_soc_pct"]) for b in listed["items"]] == [
        ("BATT001", 250, 85)
    ]
    assert ok(replay(api, sample("batteries-put"), admin_token))["wear_cost_per_kwh"] == 0.03
    refused(replay(api, sample("batteries-put"), admin_token, body={"soc_min_pct": 99}), 422, "soc_min_pct")
    refused(replay(api, sample("batteries-put"), admin_token, body={"volts": 1}), 422, "volts")
    assert ok(replay(api, sample("batteries-delete"), admin_token)) == {"deleted": True}
    refused(replay(api, sample("batteries-get"), admin_token), 404, "battery_id")


def test_get_adds_the_state_within_the_token_s_limits(
    api: InProcessApi, admin_token: str, site: None
) -> None:
    reading(api, admin_token, 40.0, power_w=-3000)
    view = ok(replay(api, sample("batteries-get"), admin_token))
    # 40 % of 250 kWh is 100 kWh stored; -3000 W is 3 kW discharging.
    assert (view["state"]["soc_pct"], view["state"]["power_kw"], view["state"]["stored_kwh"]) == (
        40.0,
        -3.0,
        100.0,
    )
    assert view["health"]["battery_id"] == "BATT001"
    limited = issue(["batteries"], [SITE], embargo_minutes=60)
    hidden = ok(replay(api, sample("batteries-get"), limited))
    assert (hidden["state"]["soc_pct"], hidden["state"]["withheld"]) == (
        None, "this token does not see one device's live readings",
    )  # fmt: skip
    summary = ok(replay(api, sample("batteries-summary"), limited))
    assert (summary["count"], summary["capacity_kwh"], summary["stored_kwh"]) == (1, 250, None)
    assert ok(replay(api, sample("batteries-summary"), admin_token))["stored_kwh"] == 100.0


def test_the_seed_s_charge_reaches_the_inverter_and_one_beyond_the_limits_is_a_422(
    api: InProcessApi, admin_token: str, site: None
) -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.iotdata.models import iotdata_backends

    reading(api, admin_token, 40.0)
    # 50 kW for 2 h stores 95 kWh: 40 % -> 78 %, below the taper's 85 %, so it passes. For 3 h the
    # charge would end at 40 + 1.14 p % for p kW, above 85 % where the limit is 60 - 4.5 (SoC - 85) kW;
    # p = 60 - 4.5 (1.14 p - 45) gives p = 262.5 / 6.13 = 42.822 kW (the room up to 95 % would allow
    # 137.5 / 0.95 / 3 = 48.25 kW: the taper binds first).
    answer = ok(replay(api, sample("batteries-charge"), admin_token))
    assert (answer["power_kw"], answer["duration_minutes"], answer["status"]) == (50, 120, "pending")
    shadow = boto3.client("iot-data", region_name="us-east-1").get_thing_shadow(thingName="hq:BATT001")
    desired = json.loads(shadow["payload"].read())["state"]["desired"]
    assert desired == {"power_kw": 50.0, "duration_minutes": 120, "command_id": answer["command_id"]}
    messages = iotdata_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].published_payloads
    assert messages[-1][0] == "ems/hq/devices/BATT001/commands"
    sent = len(messages)
    message = refused(
        replay(api, sample("batteries-charge"), admin_token, body={"power_kw": 50, "duration_minutes": 180}),
        422, "taper_start_soc_pct",
    )  # fmt: skip
    assert "42.822 kW" in message
    assert len(messages) == sent  # nothing sent
    discharge = ok(replay(api, sample("batteries-discharge"), admin_token))
    assert discharge["power_kw"] == -20


def test_a_limited_token_s_422_names_the_limit_without_the_soc_derived_power(
    api: InProcessApi, admin_token: str, site: None
) -> None:
    reading(api, admin_token, 40.0)
    too_long = {"power_kw": 50, "duration_minutes": 180}  # the taper allows 42.822 kW (the test above)
    limited = issue(["batteries"], [SITE], embargo_minutes=60)
    message = refused(
        replay(api, sample("batteries-charge"), limited, body=too_long), 422, "taper_start_soc_pct"
    )
    assert "42.822" not in message
    assert "power_kw exceeds what the battery's state of charge allows" in message
    # Discharging 60 kW for 4 h needs 240 kWh; 40 % down to 10 % holds 75 kWh, 71.25 kWh on the grid
    # side at 95 %: 17.8125 kW for 4 h.
    deep = {"power_kw": 60, "duration_minutes": 240}
    message = refused(replay(api, sample("batteries-discharge"), limited, body=deep), 422, "soc_min_pct")
    assert "17.81" not in message and "state of charge allows" in message
    seen = refused(replay(api, sample("batteries-discharge"), admin_token, body=deep), 422, "soc_min_pct")
    assert "17.812 kW" in seen


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"power_kw": 0, "duration_minutes": 60}, "power_kw"),
        ({"power_kw": 10, "duration_minutes": 0}, "duration_minutes"),
        ({"power_kw": 10}, "duration_minutes"),
        ({"power_kw": 61, "duration_minutes": 1}, "max_charge_kw"),
    ],
)
def test_a_bad_command_is_a_422_naming_the_field(
    api: InProcessApi, admin_token: str, site: None, body: dict[str, Any], field: str
) -> None:
    reading(api, admin_token, 40.0)
    refused(replay(api, sample("batteries-charge"), admin_token, body=body), 422, field)


def shadow_desired(thing: str) -> dict[str, Any]:
    shadow = boto3.client("iot-data", region_name="us-east-1").get_thing_shadow(thingName=thing)
    return json.loads(shadow["payload"].read())["state"]["desired"]  # type: ignore[no-any-return]


def test_an_applied_plan_sets_the_inverter_re_plans_from_the_measured_soc_and_stops(
    api: InProcessApi, admin_token: str, site: None
) -> None:
    plan = ok(replay(api, sample("batteries-optimize"), admin_token))
    assert (plan["applied"], plan["status"], plan["slots"], plan["start_soc_pct"]) == (
        True,
        "optimal",
        24,
        {"BATT001": 20},
    )
    first_kw = plan["schedule"][0]["batteries"]["BATT001"]["battery_kw"]
    assert first_kw > 0  # the first hour is the cheapest: it charges there
    desired = shadow_desired("hq:BATT001")
    assert (desired["power_kw"], desired["duration_minutes"]) == (round(first_kw, 3), 60)
    name = "ems-battery-plan-hq-BATT001"
    schedule = boto3.client("scheduler", region_name="us-east-1").get_schedule(Name=name)
    assert schedule["ScheduleExpression"] == "rate(15 minutes)"
    assert json.loads(schedule["Target"]["Input"]) == json.loads(
        (EVENTS / "schedule" / "battery-replan.json").read_text()
    )

    reading(api, admin_token, 35.0)
    event = json.loads((EVENTS / "schedule" / "battery-replan.json").read_text())
    outcome = api.invoke("OptimizerFunction", event)
    assert outcome["replanned"] is True
    stored = ok(replay(api, sample("batteries-plan-get"), admin_token))
    assert [r["start_soc_pct"] for r in stored["runs"]] == [20, 35.0]
    assert (
        stored["latest"]["sources"]["load_kw"] == "forecast"
    )  # a re-plan reads the forecasts, not the what-if
    limited = issue(["batteries"], [SITE], embargo_minutes=15)
    refused(replay(api, sample("batteries-plan-get"), limited), 403, "token")

    assert ok(replay(api, sample("batteries-plan-delete"), admin_token)) == {"stopped": True, "idle": True}
    assert shadow_desired("hq:BATT001")["power_kw"] == 0.0
    with pytest.raises(Exception, match="ResourceNotFound"):
        boto3.client("scheduler", region_name="us-east-1").get_schedule(Name=name)
    refused(replay(api, sample("batteries-plan-get"), admin_token), 404, "battery_id")
    assert api.invoke("OptimizerFunction", event) == {"replanned": False, "setpoint_kw": None}


def test_the_site_plan_and_a_bad_request(api: InProcessApi, admin_token: str, site: None) -> None:
    plan = ok(replay(api, sample("batteries-optimize-site"), admin_token))
    assert (plan["battery_ids"], plan["applied"]) == (["BATT001"], False)
    assert plan["saving"] == pytest.approx(plan["cost_without_battery"] - plan["cost"])
    refused(replay(api, sample("batteries-optimize-site"), admin_token, body={"horizon_hours": 12}), 422,
            "horizon_hours")  # fmt: skip
    refused(
        replay(api, sample("batteries-optimize-site"), admin_token, body={"load_kw": [1.0]}), 422, "load_kw"
    )
    refused(replay(api, sample("batteries-optimize"), admin_token, body={"start_soc_pct": 20, "end_soc_pct": 99}),
            422, "batteries[0].end_soc_pct")  # fmt: skip
