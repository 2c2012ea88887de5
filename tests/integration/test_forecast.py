"""Forecasting against moto, through ForecastFunction's handler: weeks of a main meter's and a PV
inverter's 15-minute power go in through the telemetry store's own write (raw and rollups, as ingest
writes them); training puts the artifact in the template's bucket and its record in the forecast
table; the routes answer from it, or from seasonal naive with the reason; the 15-minute schedule
stores each site's next 48 h, which another domain reads through ForecastStore (its Forecasts port)."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ems.forecast.store import ArtifactBucket, ForecastStore
from ems.telemetry.models import Reading
from tests.support.events import replay
from tests.support.fakes_forecast import synthetic_kw
from tests.support.inprocess import InProcessApi, Reply, load_function, ok, refused
from tests.support.tokens import issue

SITE = "hq"
HQ = {"x-site": SITE}
SLOT_MS = 15 * 60_000
DAYS = 18  # 7 to backtest on, 8 before the first origin with a week of lags, 2 for a horizon, 1 more
FAST = {"max_iter": 10, "min_samples_leaf": 50, "origins_per_day": 2}  # small trees: seconds in moto


def pv_kw(slot: int) -> float:
    """PV power in quarter hour `slot` since the epoch: 5 kW at noon UTC, 0 at night."""
    return max(0.0, 5 * math.cos(math.pi * ((slot % 96) / 4 - 12) / 12))


def now_slot_ms() -> int:
    now = int(time.time() * 1000)
    return now - now % SLOT_MS


def seed(api: InProcessApi, admin_token: str, monkeypatch: pytest.MonkeyPatch, days: int) -> int:
    """The site (Europe/London, a position), its main meter, PV inverter and a plug that never
    reported, `days` of the meter's and the inverter's readings ending at the current quarter hour;
    returns that quarter hour's start (epoch ms)."""
    from ems.telemetry.backends import telemetry_store

    site = {"site_id": SITE, "name": "HQ", "timezone": "Europe/London", "latitude": 51.5, "longitude": -0.1}
    ok(api.request("POST", "/api/v1/sites", token=admin_token, body=site), 201)
    for sensor_id, kind in (("MAIN", "main_meter"), ("PV", "pv_inverter"), ("PLUG", "plug")):
        body = {"sensor_id": sensor_id, "name": sensor_id, "sensor_type": kind}
        ok(api.request("POST", "/api/v1/sensors", token=admin_token, headers=HQ, body=body), 201)
    end = now_slot_ms()
    start = end - days * 96 * SLOT_MS
    main = synthetic_kw(days)
    readings = [
        Reading(SITE, "MAIN", "power_w", start + k * SLOT_MS, round(main[k] * 1000, 1))
        for k in range(len(main))
    ]
    # PV too: consumption needs every flow's bucket, as the overview's does
    readings += [
        Reading(SITE, "PV", "power_w", start + k * SLOT_MS, round(pv_kw(start // SLOT_MS + k) * 1000, 1))
        for k in range(len(main))
    ]
    telemetry_store().write(readings)
    module = load_function("functions/forecast/")
    module.stores.cache_clear()
    real = module.stores()
    monkeypatch.setattr(module, "stores", lambda: replace(real, tuning=FAST))
    return end


@pytest.fixture
def site(api: InProcessApi, admin_token: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """DAYS of readings: enough to train and backtest."""
    return seed(api, admin_token, monkeypatch, DAYS)


@pytest.fixture
def young_site(api: InProcessApi, admin_token: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """Two days of readings: seasonal naive only."""
    return seed(api, admin_token, monkeypatch, 2)


def _forecast(api: InProcessApi, token: str, target: str = "consumption", **query: str) -> Reply:
    return api.request("GET", f"/api/v1/forecast/{target}", token=token, headers=HQ, query=query)


def _train(api: InProcessApi, token: str, **body: object) -> Reply:
    return api.request("POST", "/api/v1/forecast/train", token=token, headers=HQ, body=body)


def _models(api: InProcessApi, token: str, **query: str) -> Any:
    return ok(api.request("GET", "/api/v1/forecast/models", token=token, headers=HQ, query=query))


def test_train_then_serve_with_bounds_and_the_model_and_list_it(
    api: InProcessApi, admin_token: str, site: int
) -> None:
    info = ok(_train(api, admin_token, target="consumption"))
    assert (info["model"], info["served"], info["reason"]) == ("hgb_decomposition", True, None), info[
        "reason"
    ]
    assert info["history_days"] == DAYS and info["backtest_days"] == 7
    assert info["skill"] == pytest.approx(1 - info["mae_kw"] / info["naive_mae_kw"], abs=2e-3)
    assert info["artifact_key"].startswith(f"models/{SITE}/consumption/")
    out = ok(_forecast(api, admin_token, horizon_hours="6", resolution="1h"))
    assert (out["model"], out["reason"], out["resolution"], len(out["values"])) == (
        "hgb_decomposition",
        None,
        "1h",
        6,
    )
    assert all(v["lower_kw"] <= v["value_kw"] <= v["upper_kw"] for v in out["values"])
    assert {v["model"] for v in out["values"]} == {"hgb_decomposition"}
    # the office's consumption (10 to 25 kW) plus what its PV covers (0 to 5 kW)
    assert all(5 < v["value_kw"] < 35 for v in out["values"])
    # generation is not trained, so naive: last week's same quarter hours (every day the same here)
    gen = ok(_forecast(api, admin_token, "generation", horizon_hours="24"))
    assert (gen["model"], gen["reason"]) == (
        "seasonal_naive",
        "no model trained yet: seasonal naive is served",
    )
    expected = [round(pv_kw(site // SLOT_MS + k), 3) for k in range(96)]
    assert [v["value_kw"] for v in gen["values"]] == pytest.approx(
        expected, abs=2e-3
    )  # W to 0.1, kW to 3 places
    assert max(expected) == pytest.approx(5.0)
    generation = ok(_train(api, admin_token, target="generation"))
    page = _models(api, admin_token, limit="1")
    assert [(m["series"], m["skill"]) for m in page["items"]] == [("consumption", info["skill"])]
    rest = _models(api, admin_token, limit="1", next_token=page["next_token"])
    assert [(m["series"], m["trained_at"]) for m in rest["items"]] == [
        ("generation", generation["trained_at"])
    ]


def test_a_tampered_artifact_in_s3_is_refused_and_naive_served(
    api: InProcessApi, admin_token: str, site: int
) -> None:
    info = ok(_train(api, admin_token, target="consumption"))
    bucket = ArtifactBucket()
    bucket.put(info["artifact_key"], bucket.get(info["artifact_key"]) + b"tampered")
    load_function("functions/forecast/").stores().cache.models.clear()  # a new container
    out = ok(_forecast(api, admin_token, horizon_hours="1"))
    assert out["model"] == "seasonal_naive" and "refused" in out["reason"]


def test_the_schedule_stores_48_hours_that_the_forecasts_port_reads(
    api: InProcessApi, admin_token: str, site: int
) -> None:
    assert api.invoke("ForecastFunction", {"run": "train"}) == {"trained": 1, "naive": 1, "skipped": 0}
    assert api.invoke("ForecastFunction", {"run": "forecast"}) == {"stored": 2, "skipped": 0}
    port = ForecastStore()
    stored = port.get_forecast(SITE, "consumption")
    assert stored is not None and stored.model == "hgb_decomposition" and len(stored.value_kw) == 192
    start = datetime.fromtimestamp(stored.start_ms / 1000, UTC)
    assert port.consumption_kw(SITE, start + timedelta(hours=1), 4) == stored.value_kw[4:8]
    generation = port.get_forecast(SITE, "generation")
    assert generation is not None and generation.model == "seasonal_naive"  # its training: skill <= 0
    assert [m["series"] for m in _models(api, admin_token)["items"]] == ["consumption", "generation"]


def test_too_little_history_is_naive_with_its_reason_not_an_error(
    api: InProcessApi, admin_token: str, young_site: int
) -> None:
    info = ok(_train(api, admin_token, target="consumption"))
    assert (info["model"], info["served"]) == ("seasonal_naive", False)
    assert info["reason"] == "2 days of history; a model needs 14: seasonal naive is served".replace(
        "2 days", "2.0 days"
    )
    plug = ok(_train(api, admin_token, target="consumption", sensor_id="PLUG"))
    assert (plug["series"], plug["reason"]) == (
        "sensor#PLUG",
        "0.0 days of history; a model needs 14: seasonal naive is served",
    )


def test_bad_input_is_a_422_naming_the_field(api: InProcessApi, admin_token: str, young_site: int) -> None:
    assert (
        refused(_forecast(api, admin_token, horizon_hours="0"), 422, "horizon_hours")
        == "Input should be greater than or equal to 1"
    )
    refused(_forecast(api, admin_token, resolution="5m"), 422, "resolution")
    refused(_forecast(api, admin_token, weather="sunny"), 422, "weather")
    refused(_train(api, admin_token, target="wind"), 422, "target")
    refused(_train(api, admin_token, target="consumption", backtest_days=29), 422, "backtest_days")
    refused(_train(api, admin_token, target="consumption", sensor_id="NOPE"), 404, "sensor_id")
    refused(
        api.request("GET", "/api/v1/forecast/models", token=admin_token, headers=HQ, query={"limit": "0"}),
        400,
        "limit",
    )


def test_a_limited_token_gets_a_forecast_within_its_limits(
    api: InProcessApi, admin_token: str, young_site: int
) -> None:
    embargoed = issue(["forecast"], [SITE], embargo_minutes=60)
    out = ok(_forecast(api, embargoed, horizon_hours="1"))
    cut = datetime.fromisoformat(out["history_until"].replace("Z", "+00:00"))
    assert cut <= datetime.now(UTC) - timedelta(minutes=60) and cut.minute % 15 == 0
    assert datetime.fromisoformat(out["values"][0]["start"].replace("Z", "+00:00")) > cut
    hourly = issue(["forecast"], [SITE], time_aggregation="1h")
    refused(_forecast(api, hourly, resolution="15m"), 403, "resolution")
    assert ok(_forecast(api, hourly, horizon_hours="2"))["resolution"] == "1h"
    site_only = issue(["forecast"], [SITE], data_aggregation="site")
    refused(_forecast(api, site_only, sensor_id="MAIN"), 403, "sensor_id")
    assert ok(_forecast(api, site_only))["model"] == "seasonal_naive"  # the site's own total is within it
    assert _forecast(api, issue(["sensors"], [SITE])).status == 403  # the authorizer: no forecast resource


def test_the_sample_events_replay(api: InProcessApi, admin_token: str, young_site: int) -> None:
    for name in ("forecast-consumption", "forecast-generation", "forecast-models", "forecast-train"):
        reply = replay(api, f"forecast/{name}", admin_token)
        assert reply.status == 200, (name, reply.json)
