"""BatteryPlanChanged on the realtime `batteries/<id>` topic (ems.realtime.push_battery_plan): the
battery's subscribers that see single readings live get the plan once; a limited token's, another
battery's and another site's connections get nothing."""

from __future__ import annotations

import json
from pathlib import Path

from ems.realtime import service
from tests.unit.test_realtime import FakePoster, FakeStore, clock

SAMPLE = Path(__file__).parents[2] / "events" / "eventbridge" / "battery-plan-changed.json"


def test_a_plan_reaches_the_battery_s_live_subscribers_only() -> None:
    detail = json.loads(SAMPLE.read_text())["detail"]
    store = FakeStore()
    store.hold("live", "hq", ["batteries/BATT001"])
    store.hold("every-battery", "hq", ["batteries/*", "batteries/BATT001"])
    store.hold("embargoed", "hq", ["batteries/BATT001"], embargo_minutes=15)
    store.hold("site-level", "hq", ["batteries/BATT001"], data_aggregation="site")
    store.hold("other-battery", "hq", ["batteries/B2"])
    store.hold("elsewhere", "depot", ["batteries/BATT001"])
    poster = FakePoster()
    report = service.push_battery_plan(detail, store, poster, now=clock)
    assert sorted(c for c, _ in poster.posts) == ["every-battery", "live"]
    message = poster.posts[0][1]
    assert (message["topic"], message["type"], message["data"]["change"]) == (
        "batteries/BATT001",
        "plan",
        "replanned",
    )
    assert [r["start_soc_pct"] for r in message["data"]["plan"]["runs"]] == [0.0, 20.0]
    assert (report.connections, report.failed) == (2, 0)
