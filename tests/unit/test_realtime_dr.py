"""InvitationChanged on the realtime `dr` topic (ems.realtime.push_invitation): the site's `dr`
subscribers get the invitation's life cycle once, without what derives from readings (the plan's
kW, the performance); other sites and topics get nothing."""

from __future__ import annotations

import json
from pathlib import Path

from ems.realtime import service
from tests.unit.test_realtime import FakePoster, FakeStore, clock

SAMPLE = Path(__file__).parents[2] / "events" / "eventbridge" / "invitation-changed.json"


def test_an_invitation_reaches_the_dr_subscribers_of_its_site() -> None:
    detail = json.loads(SAMPLE.read_text())["detail"]
    store = FakeStore()
    store.hold("hq-1", "hq", ["dr"])
    store.hold("hq-alerts", "hq", ["alerts"])
    store.hold("elsewhere", "depot", ["dr"])
    poster = FakePoster()
    report = service.push_invitation(detail, store, poster, now=clock)
    assert [c for c, _ in poster.posts] == ["hq-1"]
    message = poster.posts[0][1]
    assert (message["topic"], message["type"], message["data"]["status"]) == ("dr", "invitation", "active")
    assert "execution" not in message["data"] and "performance" not in message["data"]
    assert (report.connections, report.posts, report.failed) == (1, 1, 0)
