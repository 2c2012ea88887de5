"""Forecasting in the running local cloud: ForecastFunction's worker (the science layer's imports)
answers over HTTP. The stack runs without the demo building (no meter), so training records seasonal
naive with its reason, and the forecast says the same."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e


def test_the_demo_site_gets_a_naive_forecast_with_its_reason(local_stack: RunningStack) -> None:
    headers = {"authorization": f"Bearer {local_stack.admin_token}", "x-site": "demo"}
    with httpx.Client(base_url=local_stack.http, timeout=60) as http:
        trained = http.post("/api/v1/forecast/train", headers=headers, json={"target": "consumption"})
        assert trained.status_code == 200, trained.text
        info = trained.json()
        assert (info["model"], info["served"]) == ("seasonal_naive", False)
        assert info["reason"] == "the site has no sensor of consumption: seasonal naive is served"
        answer = http.get(
            "/api/v1/forecast/consumption", headers=headers, params={"horizon_hours": 2, "resolution": "1h"}
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["model"], body["reason"], len(body["values"])) == ("seasonal_naive", info["reason"], 2)
        refused = http.get("/api/v1/forecast/consumption", headers=headers, params={"horizon_hours": 999})
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "horizon_hours"
