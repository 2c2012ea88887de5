"""MarketCleared on the realtime `market` topic (ems.realtime.push_market): each participant site's
subscribers get the clearing once; other sites' and other topics' connections get nothing."""

from __future__ import annotations

import json
from pathlib import Path

from ems.realtime import service
from tests.unit.test_realtime import FakePoster, FakeStore, clock

SAMPLE = Path(__file__).parents[2] / "events" / "eventbridge" / "market-cleared.json"


def test_a_clearing_reaches_the_market_subscribers_of_its_sites() -> None:
    detail = json.loads(SAMPLE.read_text())["detail"]  # sites hq and school
    store = FakeStore()
    store.hold("hq-1", "hq", ["market"])
    store.hold("school-1", "school", ["market", "alerts"])
    store.hold("hq-alerts", "hq", ["alerts"])
    store.hold("elsewhere", "depot", ["market"])
    poster = FakePoster()
    report = service.push_market(detail, store, poster, now=clock)
    assert sorted(c for c, _ in poster.posts) == ["hq-1", "school-1"]
    message = poster.posts[0][1]
    assert (message["topic"], message["type"], message["data"]["price_per_kwh"]) == (
        "market",
        "market_cleared",
        0.17,
    )
    assert (report.connections, report.posts, report.failed) == (2, 2, 0)
