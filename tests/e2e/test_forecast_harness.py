"""Issue 14's accuracy harness through the HTTP API of the running local cloud, on a slice: the first
two weeks of England and Wales' demand of 2000 (bench/data/taylor.csv), shifted by whole weeks to end at
the stack's clock, ingested as a meter's power, trained with a 2-day backtest. Two weeks is the
shortest history that trains a model (ems.forecast.naive.MIN_HISTORY_DAYS), and on these two its skill
is above 0, so it is served. The API's figures must be the library's on the same 15-minute series
(`python -m bench forecast` does the same on all 12 weeks with 28 backtest days)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from bench.forecast_api import (
    CLOCK,
    COUNTRY,
    METER,
    METRICS,
    SITE,
    TIMEZONE,
    cloud_args,
    holidays_between,
    library_metrics,
    run_through_api,
    taylor,
    weeks_of,
)
from ems.forecast.models import MODEL_NAME
from tests.e2e.conftest import running_local_cloud

pytestmark = pytest.mark.e2e

BACKTEST_DAYS = 2


def test_the_api_backtest_equals_the_library_call_on_the_same_series(tmp_path: Path) -> None:
    part = weeks_of(taylor(), first_week=0, weeks=2)
    assert part.end == CLOCK and (part.start - part.original_start) % timedelta(weeks=1) == timedelta(0)
    # No bank holiday of England and Wales in either window, so the shift changes no calendar feature.
    assert holidays_between(part.original_start, part.original_start + (part.end - part.start)) == []
    assert holidays_between(part.start, part.end) == []

    with running_local_cloud(tmp_path, *cloud_args(), served=True) as stack:
        run = run_through_api(stack["http"], stack["admin_token"], part, BACKTEST_DAYS)
        headers = {"authorization": f"Bearer {stack['admin_token']}", "x-site": SITE}
        with httpx.Client(base_url=stack["http"], timeout=60) as http:
            served = http.get("/api/v1/forecast/consumption", headers=headers, params={"horizon_hours": 1})
            window = {"start_time": part.start_ms, "end_time": int(CLOCK.timestamp() * 1000)}
            back = http.get(f"/api/v1/sensors/{METER}/data", headers=headers,
                            params={**window, "resolution": "15m", "metric": "power_w"})  # fmt: skip
        assert served.status_code == 200, served.text
        assert back.status_code == 200, back.text

    assert (run.sent, run.accepted, run.duplicates) == (2 * 14 * 48, 2 * 14 * 48, 0)
    # The series the service reads: one reading in each 15-minute rollup, its power the half-hour's.
    points = back.json()["points"]
    assert [p["count"] for p in points] == [1] * (2 * 14 * 48)
    assert [p["value"] / 1000 for p in points] == part.quarter_hours_kw.tolist()
    assert (run.site.timezone, run.site.country) == (TIMEZONE, COUNTRY)
    trained = run.trained
    assert (trained["model"], trained["served"], trained["reason"]) == (MODEL_NAME, True, None)
    assert trained["history_days"] == 14.0
    library = library_metrics(part, run.site, trained["trained_at"], BACKTEST_DAYS)
    assert library["skill"] > 0
    assert {k: trained[k] for k in METRICS} == library
    assert {k: run.listed[k] for k in METRICS} == library
    assert run.listed["served"] is True
    assert served.json()["model"] == MODEL_NAME
