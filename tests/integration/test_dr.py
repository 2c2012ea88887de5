"""Demand response against moto through DemandResponseFunction: the seed's two calls in its shape,
the routes replayed from events/http/dr, the invitation's life cycle in the template's table, and
the 4xx of bad input (nothing written). Site hq has the seed's DEVICE_001 (HVAC) and DEVICE_002
(water heater), registered through the devices function."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from ems.core import clock
from ems_local import apigw
from ems_local.template import Stack
from tests.support.events import assert_shaped_as_api_gateway_sends_it
from tests.support.fakes import ListPublisher
from tests.support.inprocess import EVENTS, InProcessApi, load_function, ok, refused
from tests.support.tokens import issue

SITE = "hq"
HQ = {"x-site": SITE}
DR = EVENTS / "http" / "dr"
EVENT = "2030-12-20T14:00:00Z"  # the samples' event time


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch, api: InProcessApi, admin_token: str) -> ListPublisher:
    ok(api.request("POST", "/api/v1/sites", token=admin_token,
                   body={"site_id": SITE, "name": "HQ", "timezone": "Europe/Berlin"}), 201)  # fmt: skip
    for device_id, kind, kw, priority in (
        ("DEVICE_001", "hvac", 3.0, 6),
        ("DEVICE_002", "water_heater", 2.0, 2),
    ):
        body = {"device_id": device_id, "name": device_id, "device_type": kind, "rated_power_kw": kw,
                "dr_eligible": True, "comfort_priority": priority}  # fmt: skip
        ok(api.request("POST", "/api/v1/iot/devices", token=admin_token, headers=HQ, body=body), 201)
    module = load_function("functions/dr/")
    module.stores.cache_clear()
    real, fake = module.stores(), ListPublisher()
    monkeypatch.setattr(module, "stores", lambda: replace(real, events=fake))
    return fake


def dr(api: InProcessApi, token: str, method: str, path: str, body: Any = None, **query: Any) -> Any:
    return api.request(
        method, f"/api/v1/demand-response/{path}", token=token, headers=HQ, body=body, query=query
    )


def seed_body(event_time: str = EVENT, **extra: Any) -> dict[str, Any]:
    return {"event_time": event_time, "load_kwh": 100, "duration_minutes": 60,
            "iots": ["DEVICE_001", "DEVICE_002"], **extra}  # fmt: skip


def test_every_dr_route_has_exactly_one_sample_shaped_as_api_gateway_sends_it() -> None:
    routes = [apigw.Route(**r) for r in Stack.from_file().http_routes()]
    mine = sorted(r.key for r in routes if r.function == "DemandResponseFunction")
    samples = [json.loads(p.read_text()) for p in sorted(DR.glob("*.json"))]
    assert sorted(e["routeKey"] for e in samples) == mine
    for event in samples:
        assert_shaped_as_api_gateway_sends_it(event, ("DemandResponseFunction",))


def test_the_seeds_send_and_its_past_event_time(api: InProcessApi, admin_token: str, published: Any) -> None:
    sent = ok(dr(api, admin_token, "POST", "invitations/send", seed_body()), 201)
    assert sent["status"] == "pending"
    message = refused(dr(api, admin_token, "POST", "invitations/send", seed_body("2024-01-10T14:00:00Z")),
                      422, "event_time")  # fmt: skip
    assert "2024-01-10T14:00:00.000Z is in the past" in message
    message = refused(dr(api, admin_token, "POST", "invitations/send", seed_body(iots=["DEVICE_001", "GHOST"])),
                      422, "iots")  # fmt: skip
    assert message == "no such devices in this site: GHOST"
    refused(dr(api, admin_token, "POST", "invitations/send", seed_body(load_kw=5)), 422, "load_kwh")
    refused(
        dr(api, admin_token, "POST", "invitations/send", seed_body(duration_minutes=0)),
        422,
        "duration_minutes",
    )
    pending = ok(dr(api, admin_token, "GET", "invitations/unanswered"))
    assert [i["invitation_id"] for i in pending["items"]] == [sent["invitation_id"]]  # nothing else written
    assert published.kinds() == ["InvitationChanged"]


def test_the_life_cycle_from_the_samples(api: InProcessApi, admin_token: str, published: Any) -> None:
    sent = ok(api.replay("http/dr/invitations-send.json", admin_token), 201)
    invitation_id = sent["invitation_id"]
    accepted = ok(api.replay("http/dr/invitations-answer.json", admin_token))  # by event_time, YES
    assert (accepted["invitation_id"], accepted["status"], accepted["answer"]) == (
        invitation_id,
        "accepted",
        "YES",
    )
    again = ok(api.replay("http/dr/invitations-answer.json", admin_token))
    assert again["version"] == accepted["version"] == 1  # the same answer twice is one answer
    refused(dr(api, admin_token, "POST", "invitations/answer", {"invitation_id": invitation_id, "response": "maybe"}),
            422, "response")  # fmt: skip
    assert ok(api.replay("http/dr/invitations-unanswered.json", admin_token))["items"] == []
    answered = ok(api.replay("http/dr/invitations-answered.json", admin_token))
    assert [(i["invitation_id"], i["status"]) for i in answered["items"]] == [(invitation_id, "accepted")]
    one = ok(dr(api, admin_token, "GET", f"invitations/{invitation_id}"))
    assert (one["start"], one["end"], one["load_kwh"]) == (
        "2030-12-20T14:00:00.000Z",
        "2030-12-20T15:00:00.000Z",
        100,
    )
    refused(api.replay("http/dr/invitations-get.json", admin_token), 404, "invitation_id")  # the sample's id
    cancelled = ok(
        dr(api, admin_token, "POST", f"invitations/{invitation_id}/cancel", {"reason": "withdrawn"})
    )
    assert (cancelled["status"], cancelled["reason"]) == ("cancelled", "withdrawn")
    refused(dr(api, admin_token, "POST", "invitations/answer", {"invitation_id": invitation_id, "response": "NO"}),
            409, "status")  # fmt: skip
    assert published.kinds() == ["InvitationChanged"] * 3


def test_an_ambiguous_event_time_is_a_409_listing_both(
    api: InProcessApi, admin_token: str, published: Any
) -> None:
    first = ok(dr(api, admin_token, "POST", "invitations/send", seed_body()), 201)["invitation_id"]
    second = ok(dr(api, admin_token, "POST", "invitations/send", seed_body()), 201)["invitation_id"]
    message = refused(dr(api, admin_token, "POST", "invitations/answer", {"event_time": EVENT, "response": "YES"}),
                      409, "event_time")  # fmt: skip
    assert first in message and second in message


def test_auto_response_settings_from_the_samples(api: InProcessApi, admin_token: str, published: Any) -> None:
    assert ok(api.replay("http/dr/auto-response-get.json", admin_token))["enabled"] is False
    put = ok(api.replay("http/dr/auto-response-put.json", admin_token))
    assert (put["enabled"], put["max_kw"], put["blackout_hours"]) == (True, 50, [7, 8])
    assert ok(api.replay("http/dr/auto-response-get.json", admin_token)) == put
    refused(dr(api, admin_token, "PUT", "auto-response", {"enabled": True, "blackout_hours": [24]}),
            422, "blackout_hours.0")  # fmt: skip


def test_flexibility_from_the_samples_and_for_a_limited_token(
    api: InProcessApi, admin_token: str, published: Any
) -> None:
    now = ok(api.replay("http/dr/flexibility-current.json", admin_token))
    # No power readings yet: both devices are reducible at 0 kW; no battery until batteries are wired.
    assert [(d["device_id"], d["kind"], d["kw"], d["source"]) for d in now["devices"]] == [
        ("DEVICE_002", "reducible", 0.0, "no power reading"), ("DEVICE_001", "reducible", 0.0, "no power reading"),
    ]  # fmt: skip
    assert (now["total_kw"], now["battery_kw"], now["withheld"]) == (0.0, 0.0, None)
    forecast = ok(api.replay("http/dr/forecast-flexibility.json", admin_token))
    assert (forecast["horizon_hours"], len(forecast["hours"])) == (6, 6)
    embargoed = issue(["demand-response"], sites=[SITE], embargo_minutes=60)
    limited = ok(dr(api, embargoed, "GET", "flexibility/current"))
    assert (limited["total_kw"], limited["withheld"]) == (
        None, "the newest readings are beyond this token's limits (embargo or time aggregation)"
    )  # fmt: skip
    refused(dr(api, admin_token, "GET", "flexibility/current", start="2024-01-10T14:00:00Z"), 422, "start")


def test_auto_response_declines_what_flexibility_does_not_cover(
    api: InProcessApi, admin_token: str, published: Any
) -> None:
    ok(dr(api, admin_token, "PUT", "auto-response", {"enabled": True, "max_kw": 500}))
    sent = ok(dr(api, admin_token, "POST", "invitations/send", seed_body()), 201)
    assert sent == {
        "invitation_id": sent["invitation_id"], "status": "declined",
        "reason": "flexibility over the window is 0 kW, less than the 100 kW asked",
    }  # fmt: skip
    assert published.kinds() == ["InvitationChanged", "InvitationChanged", "SystemEvent"]


def test_acceptance_schedules_and_the_schedules_run_the_plan_through_the_devices_domain(
    api: InProcessApi, admin_token: str, published: Any
) -> None:
    """The schedules are in moto's Scheduler with the template's role; their events (the samples
    with this invitation's id) shed both devices as `dr` (no readings: by rated power) and release them."""
    sent = ok(dr(api, admin_token, "POST", "invitations/send", seed_body(load_kwh=4)), 201)
    invitation_id = sent["invitation_id"]
    ok(
        dr(
            api,
            admin_token,
            "POST",
            "invitations/answer",
            {"invitation_id": invitation_id, "response": "YES"},
        )
    )
    scheduler = boto3.client("scheduler", region_name="us-east-1")
    start = scheduler.get_schedule(Name=f"ems-dr-{invitation_id}-start")
    assert start["ScheduleExpression"] == "at(2030-12-20T14:00:00)"
    assert json.loads(start["Target"]["Input"]) == {
        "dr": "start",
        "site": SITE,
        "invitation_id": invitation_id,
    }
    assert start["Target"]["Arn"].endswith(":function:ems-dev-dr")
    event = {
        **json.loads((EVENTS / "schedule" / "dr-start.json").read_text()),
        "invitation_id": invitation_id,
    }
    assert api.invoke("DemandResponseFunction", event) == {"invitation_id": invitation_id, "status": "active"}
    active = ok(dr(api, admin_token, "GET", f"invitations/{invitation_id}"))
    # 4 kW: the water heater (priority 2, rated 2 kW) and then the HVAC (priority 6, rated 3 kW).
    assert [(x["device_id"], x["command"], x["kw"], x["kw_from"]) for x in active["execution"]["steps"]] == [
        ("DEVICE_002", "off", 2.0, "rated power (no power reading)"),
        ("DEVICE_001", "off", 3.0, "rated power (no power reading)"),
    ]  # fmt: skip
    listed = ok(api.request("GET", "/api/v1/iot/devices/DEVICE_001/commands", token=admin_token, headers=HQ))
    assert [(c["command"], c["source"], c["command_id"]) for c in listed["items"]] == [
        ("off", "dr", f"dr-{invitation_id}-start-DEVICE_001")
    ]
    assert api.invoke("DemandResponseFunction", event)["status"] == "active"  # a retry sends nothing more
    check = {
        **json.loads((EVENTS / "schedule" / "dr-check.json").read_text()),
        "invitation_id": invitation_id,
    }
    assert api.invoke("DemandResponseFunction", check)["status"] == "active"  # nobody answered yet: as it was
    assert (
        len(
            ok(api.request("GET", "/api/v1/iot/devices/DEVICE_001/commands", token=admin_token, headers=HQ))[
                "items"
            ]
        )
        == 1
    )
    end = {**json.loads((EVENTS / "schedule" / "dr-end.json").read_text()), "invitation_id": invitation_id}
    assert api.invoke("DemandResponseFunction", end) == {
        "invitation_id": invitation_id,
        "status": "completed",
    }
    device = ok(api.request("GET", "/api/v1/iot/devices/DEVICE_001", token=admin_token, headers=HQ))
    assert device["controller"] is None
    # Nobody held it before: assumed drawing its rated power, it is switched back on, then released.
    after = ok(api.request("GET", "/api/v1/iot/devices/DEVICE_001/commands", token=admin_token, headers=HQ))
    assert [(c["command"], c["source"]) for c in after["items"]] == [("on", "dr"), ("off", "dr")]
    assert device["shadow"]["desired"]["power"] == "on"
    measure = {"dr": "measure", "site": SITE, "invitation_id": invitation_id}
    assert api.invoke("DemandResponseFunction", measure)["status"] == "completed"
    with pytest.raises(scheduler.exceptions.ResourceNotFoundException):
        scheduler.get_schedule(Name=f"ems-dr-{invitation_id}-start")


def test_an_ad_hoc_load_reduction_from_the_sample(
    api: InProcessApi, admin_token: str, published: Any
) -> None:
    plan = ok(api.replay("http/dr/load-reduction-execute.json", admin_token))
    assert [(x["device_id"], x["kw"]) for x in plan["steps"]] == [("DEVICE_002", 2.0), ("DEVICE_001", 3.0)]
    assert (plan["target_kw"], plan["planned_kw"], plan["shortfall_kw"], plan["status"]) == (
        2.5,
        5.0,
        0.0,
        "active",
    )
    refused(
        dr(api, admin_token, "POST", "load-reduction/execute", {"duration_minutes": 30}), 422, "target_kw"
    )


def test_the_realtime_function_takes_the_invitation_sample_through_its_rule(api: InProcessApi) -> None:
    event = json.loads((EVENTS / "eventbridge" / "invitation-changed.json").read_text())
    rule = Stack.from_file().functions()["RealtimeFunction"]["Events"]["Invitations"]["Properties"]["Pattern"]
    assert (rule["source"], rule["detail-type"]) == ([event["source"]], [event["detail-type"]])
    assert api.invoke("RealtimeFunction", event) == {"connections": 0, "posts": 0, "failed": 0}


def at_clock(moment: datetime) -> None:
    clock.run_on(clock.ScaledClock(moment, time.time()))


def meter(at: datetime, kw: float) -> dict[str, Any]:
    return {
        "sensor_id": "grid",
        "ts": (at + timedelta(minutes=1)).timestamp(),
        "metrics": {"power_w": kw * 1000},
    }


# With the site in Berlin (DE-BE), Friday 8 March is International Women's Day, a public holiday there
# only: Tuesday 26 February takes its place, (22 + 21 + 17 + 16 + 15 + 14 + 11 + 38 + 37 + 36) / 10 =
# 22.7 kW, x 1.1 = 24.97 kW a slot, 12.485 kWh; delivered 12.485 - 6.25 = 6.235 kWh; 0.4 x 6.235 = 2.494.
MARCH_DAYS = [f"2030-03-{d:02d}" for d in (12, 11, 8, 7, 6, 5, 4, 1)] + ["2030-02-28", "2030-02-27"]
BERLIN_DAYS = [f"2030-03-{d:02d}" for d in (12, 11, 7, 6, 5, 4, 1)] + [
    "2030-02-28",
    "2030-02-27",
    "2030-02-26",
]


@pytest.mark.parametrize(
    ("country", "days", "baseline_kw", "delivered_kwh", "benefit"),
    [(None, MARCH_DAYS, 22.99, 5.245, 2.098), ("DE-BE", BERLIN_DAYS, 24.97, 6.235, 2.494)],
)
def test_an_event_measured_from_ingested_meter_readings_pays_into_the_ledger(
    api: InProcessApi,
    admin_token: str,
    published: Any,
    country: str | None,
    days: list[str],
    baseline_kw: float,
    delivered_kwh: float,
    benefit: float,
) -> None:
    """Wednesday 2030-03-13 (Berlin is UTC+1 all along): notice at 10:00Z, event 14:00-14:30Z (2 slots).
    History, one reading a quarter hour: each weekday's 14:00 and 14:15 at (day of month + 10) kW,
    weekends at 100 kW, and 10 kW from 08:00 to 10:00; the event day 11 kW from 08:00 to 10:00.
    By hand: the 10 weekdays 12, 11, 8, 7, 6, 5, 4, 1 March and 28, 27 February give
    (22 + 21 + 18 + 17 + 16 + 15 + 14 + 11 + 38 + 37) / 10 = 20.9 kW; adjustment 11 / 10 = 1.1 ->
    22.99 kW a slot, 11.495 kWh; actual (12 + 13) x 0.25 = 6.25 kWh; delivered 5.245 kWh; 3 asked: met;
    benefit 0.4 x 5.245 = 2.098."""
    created = {
        "sensor_id": "grid",
        "name": "Grid meter",
        "sensor_type": "meter",
        "expected_interval_seconds": 900,
    }
    ok(api.request("POST", "/api/v1/sensors", token=admin_token, headers=HQ, body=created), 201)
    if country is not None:  # the site's own country: no auto-response setting names one
        assert (
            ok(api.request("PUT", f"/api/v1/sites/{SITE}", token=admin_token, body={"country": country}))[
                "country"
            ]
            == country
        )
    notice = datetime(2030, 3, 13, 10, 0, tzinfo=UTC)
    start = datetime(2030, 3, 13, 14, 0, tzinfo=UTC)
    quarter = timedelta(minutes=15)
    history = []
    for back in range(1, 16):
        day = start - timedelta(days=back)
        kw = 100.0 if day.weekday() >= 5 else day.day + 10.0
        history += [meter(day + i * quarter, kw) for i in range(2)]
        history += [meter(day.replace(hour=8) + i * quarter, 10.0) for i in range(8)]
    history += [meter(notice.replace(hour=8) + i * quarter, 11.0) for i in range(8)]
    try:
        at_clock(notice)
        token = issue(["*"])  # minted on the 2030 clock, so that it is valid then
        load_function("functions/telemetry/").stores.cache_clear()
        ingested = ok(api.request("POST", "/api/v1/data/ingest", token=token, headers=HQ,
                                  body={"readings": history}))  # fmt: skip
        assert (ingested["accepted"], ingested["rejected"]) == (len(history), [])
        body = seed_body("2030-03-13T14:00:00Z", load_kwh=3, duration_minutes=30, price_per_kwh=0.4)
        invitation_id = ok(dr(api, token, "POST", "invitations/send", body), 201)["invitation_id"]
        ok(
            dr(
                api,
                token,
                "POST",
                "invitations/answer",
                {"invitation_id": invitation_id, "response": "YES"},
            )
        )
        at_clock(start + timedelta(seconds=30))
        edge = {"site": SITE, "invitation_id": invitation_id}
        assert api.invoke("DemandResponseFunction", {"dr": "start", **edge})["status"] == "active"
        at_clock(start + timedelta(minutes=31))
        during = [meter(start, 12.0), meter(start + quarter, 13.0)]
        ok(api.request("POST", "/api/v1/data/ingest", token=token, headers=HQ, body={"readings": during}))
        assert api.invoke("DemandResponseFunction", {"dr": "end", **edge})["status"] == "completed"
        assert api.invoke("DemandResponseFunction", {"dr": "end", **edge})["status"] == "completed"  # a retry
        at_clock(start + timedelta(minutes=35))
        assert api.invoke("DemandResponseFunction", {"dr": "measure", **edge})["status"] == "completed"
        done = ok(dr(api, token, "GET", f"invitations/{invitation_id}"))
        p = done["performance"]
        assert p["baseline_days"] == days
        assert p["adjustment"] == pytest.approx(1.1)
        assert p["baseline_kw"] == pytest.approx([baseline_kw, baseline_kw])
        assert (p["baseline_kwh"], p["actual_kwh"], p["delivered_kwh"]) == pytest.approx(
            (baseline_kw / 2, 6.25, delivered_kwh)
        )
        assert (p["requested_kwh"], p["met"], p["benefit"]) == (3.0, True, pytest.approx(benefit))
        got = ok(api.replay("http/dr/benefits-get.json", token))
        assert (got["balance"], got["count"], got["monthly"]) == (
            benefit,
            1,
            [{"month": "2030-03", "amount": benefit, "events": 1}],
        )
        assert got["entries"][0]["source_id"] == invitation_id
        p2p = ok(api.request("GET", "/api/v1/p2p/balance", token=token, headers=HQ))
        assert p2p["balance"] == benefit  # the same ledger
    finally:
        clock.run_on(None)
