"""Alert evaluation through fakes (ems.alerts.service): thresholds held for_minutes by the readings' own
times, one open alert per rule, offline sensors, other domains' events, and what is published."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ems.alerts import service as alerts
from ems.alerts.models import EventsQuery, SystemEvent
from ems.registry.models import Threshold
from ems.registry.status import Heard
from ems.telemetry.models import ReceivedReading, TelemetryReceived
from tests.support.fakes import ListPublisher, MemoryAlerts, MemoryRegistry, MemoryStatus, caller

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
T0 = int(NOW.timestamp() * 1000)
MINUTE = 60_000
RULE = "threshold#t1#temperature_c"


def clock() -> datetime:
    return NOW


class World:
    """Site hq; t1 alerts above 26 °C held for 10 minutes, co2 below 400 ppm at once."""

    def __init__(self) -> None:
        self.registry = MemoryRegistry()
        self.registry.add_site("hq")
        self.registry.add_sensor(
            "hq", "t1", "temperature",
            thresholds={"temperature_c": Threshold(max=26, for_minutes=10, severity="critical")},
        )  # fmt: skip
        self.registry.add_sensor("hq", "c1", "co2", thresholds={"co2_ppm": Threshold(min=400)})
        self.registry.add_sensor("hq", "plain", "temperature")
        self.alerts = MemoryAlerts()
        self.latest = MemoryStatus()
        self.events = ListPublisher()
        self.stores = alerts.Stores(
            alerts=self.alerts, registry=self.registry, events=self.events, latest=self.latest
        )

    def temperatures(self, *at_minutes_and_values: tuple[int, float]) -> alerts.EvaluationReport:
        """One TelemetryReceived of t1's temperature_c at T0 + minutes, in the order given."""
        event = TelemetryReceived(
            site="hq",
            readings=[
                ReceivedReading(sensor_id="t1", ts=T0 + m * MINUTE, metrics={"temperature_c": v})
                for m, v in at_minutes_and_values
            ],
        )
        return alerts.evaluate_readings(event, self.stores, clock)


def counts(report: alerts.EvaluationReport) -> tuple[int, int, int]:
    return report.raised, report.cleared, report.pending


# ---------------------------------------------------------------- thresholds


def test_a_breach_shorter_than_for_minutes_raises_nothing() -> None:
    w = World()
    assert counts(w.temperatures((0, 27.0), (9, 28.0))) == (0, 0, 2)
    assert w.alerts.opened("hq") == [] and w.events.events == []
    assert w.alerts.rules("hq", [RULE])[RULE].since_ms == T0


def test_a_breach_that_lasts_for_minutes_raises_one_alert() -> None:
    w = World()
    assert counts(w.temperatures((0, 27.0), (5, 28.0), (10, 27.5))) == (1, 0, 2)
    [alert] = w.alerts.opened("hq")
    assert (alert.kind, alert.severity, alert.rule, alert.value, alert.max) == (
        "threshold", "critical", RULE, 27.5, 26.0
    )  # fmt: skip
    assert alert.message == "t1 temperature_c 27.5 above its maximum 26 for 10 min"
    assert alert.raised_at == "2025-06-02T12:10:00.000Z"  # the reading's time, not the clock's
    assert w.events.kinds() == ["AlertRaised"]
    assert w.events.events[0].detail["alert"]["alert_id"] == alert.alert_id


def test_a_breach_across_two_events_raises_once_it_has_lasted() -> None:
    w = World()
    assert counts(w.temperatures((0, 27.0))) == (0, 0, 1)
    assert counts(w.temperatures((10, 27.0))) == (1, 0, 0)
    assert len(w.alerts.opened("hq")) == 1 and w.events.kinds() == ["AlertRaised"]


def test_readings_out_of_order_in_one_event_are_judged_by_their_times() -> None:
    w = World()
    assert counts(w.temperatures((10, 27.0), (0, 27.0))) == (1, 0, 1)
    assert w.alerts.opened("hq")[0].raised_at == "2025-06-02T12:10:00.000Z"


def test_a_late_event_with_the_breachs_earlier_reading_counts_from_that_reading() -> None:
    w = World()
    w.temperatures((10, 27.0))  # the breach as first heard: from 12:10
    w.temperatures((0, 27.0))  # a late batch: it was already above at 12:00
    assert w.alerts.rules("hq", [RULE])[RULE].since_ms == T0
    assert counts(w.temperatures((11, 27.0))) == (1, 0, 0)


def test_back_inside_clears_the_alert() -> None:
    w = World()
    w.temperatures((0, 27.0), (10, 27.0))
    assert counts(w.temperatures((12, 25.0))) == (0, 1, 0)
    [alert] = w.alerts.opened("hq")
    assert (alert.status, alert.cleared_at) == ("cleared", "2025-06-02T12:12:00.000Z")
    assert w.events.kinds() == ["AlertRaised", "AlertCleared"]
    assert w.events.events[1].detail["alert"]["status"] == "cleared"
    assert w.alerts.count_open("hq") == 0


def test_one_open_alert_per_rule_and_a_new_one_after_it_cleared() -> None:
    w = World()
    w.temperatures((0, 27.0), (10, 27.0))
    assert counts(w.temperatures((11, 29.0), (30, 30.0))) == (0, 0, 0)  # still the same alert
    assert len(w.alerts.opened("hq")) == 1

    w.temperatures((31, 25.0))  # cleared
    assert counts(w.temperatures((40, 27.0))) == (0, 0, 1)  # a new breach waits its 10 minutes again
    assert counts(w.temperatures((50, 27.0))) == (1, 0, 0)
    assert [a.status for a in w.alerts.opened("hq")] == ["cleared", "open"]
    assert w.events.kinds() == ["AlertRaised", "AlertCleared", "AlertRaised"]


def test_a_short_breach_that_ends_is_forgotten() -> None:
    w = World()
    w.temperatures((0, 27.0), (5, 25.0))  # 5 minutes above, then back
    assert w.alerts.rules("hq", [RULE])[RULE].since_ms is None
    assert counts(w.temperatures((20, 27.0))) == (0, 0, 1)  # a new breach starts at 12:20
    assert counts(w.temperatures((29, 27.0))) == (0, 0, 1)
    assert counts(w.temperatures((30, 27.0))) == (1, 0, 0)


def test_below_the_minimum_with_no_for_minutes_raises_at_once() -> None:
    w = World()
    event = TelemetryReceived(
        site="hq", readings=[ReceivedReading(sensor_id="c1", ts=T0, metrics={"co2_ppm": 350})]
    )
    assert counts(alerts.evaluate_readings(event, w.stores, clock)) == (1, 0, 0)
    assert w.alerts.opened("hq")[0].message == "c1 co2_ppm 350 below its minimum 400"


def test_sensors_without_thresholds_and_unknown_sensors_are_not_evaluated() -> None:
    w = World()
    event = TelemetryReceived(
        site="hq",
        readings=[
            ReceivedReading(sensor_id="plain", ts=T0, metrics={"temperature_c": 99}),
            ReceivedReading(sensor_id="ghost", ts=T0, metrics={"temperature_c": 99}),
            ReceivedReading(sensor_id="t1", ts=T0, metrics={"humidity_pct": 99}),  # no rule on that metric
        ],
    )
    assert counts(alerts.evaluate_readings(event, w.stores, clock)) == (0, 0, 0)
    assert w.alerts.rule_items == {} and w.events.events == []


# ---------------------------------------------------------------- offline sensors


def offline_world(sensors: int = 3) -> World:
    """s0 .. s<n-1> report every 60 s, so each is offline after 180 s of silence."""
    w = World()
    w.registry = MemoryRegistry()
    w.registry.add_site("hq")
    for i in range(sensors):
        w.registry.add_sensor("hq", f"s{i}", "temperature", room=None, expected_interval_seconds=60)
    w.stores = alerts.Stores(alerts=w.alerts, registry=w.registry, events=w.events, latest=w.latest)
    return w


def heard(w: World, sensor_id: str, seconds_before_now: int) -> None:
    w.latest.record("hq", [Heard(sensor_id, T0 - seconds_before_now * 1000, {"temperature_c": 20})])


def test_offline_after_three_missed_intervals_raises_and_announces_it() -> None:
    w = offline_world()
    heard(w, "s0", 181)  # offline: more than 3 x 60 s
    heard(w, "s1", 180)  # online: exactly 3 intervals
    # s2 never reported: unknown, left alone
    assert counts(alerts.check_offline(w.stores, clock)) == (1, 0, 0)

    [alert] = w.alerts.opened("hq")
    assert (alert.kind, alert.rule, alert.sensor_id) == ("sensor_offline", "offline#s0", "s0")
    assert alert.message == "s0 has not reported since 2025-06-02T11:56:59.000Z"
    assert w.events.kinds() == ["AlertRaised", "SensorStatusChanged"]
    assert w.events.events[1].detail == {
        "site": "hq", "sensor_id": "s0", "room": None, "status": "offline",
        "last_seen": "2025-06-02T11:56:59.000Z",
    }  # fmt: skip


def test_offline_is_raised_once_and_cleared_when_the_sensor_is_back() -> None:
    w = offline_world()
    heard(w, "s0", 600)
    alerts.check_offline(w.stores, clock)
    assert counts(alerts.check_offline(w.stores, clock)) == (0, 0, 0)
    assert len(w.alerts.opened("hq")) == 1

    later = NOW + timedelta(minutes=1)
    w.latest.record("hq", [Heard("s0", T0 + 30_000, {"temperature_c": 21})])
    assert counts(alerts.check_offline(w.stores, lambda: later)) == (0, 1, 0)
    [alert] = w.alerts.opened("hq")
    assert (alert.status, alert.cleared_at) == ("cleared", "2025-06-02T12:01:00.000Z")
    assert w.events.kinds() == ["AlertRaised", "SensorStatusChanged", "AlertCleared", "SensorStatusChanged"]
    assert w.events.events[3].detail["status"] == "online"


def test_more_sensors_than_one_page() -> None:
    """205 silent sensors, read 200 a page: every one is raised."""
    w = offline_world(205)
    for i in range(205):
        heard(w, f"s{i}", 3600)
    assert counts(alerts.check_offline(w.stores, clock)) == (205, 0, 0)
    assert w.events.kinds().count("SensorStatusChanged") == 205
    assert {a.sensor_id for a in w.alerts.opened("hq")} == {f"s{i}" for i in range(205)}


def test_more_sites_than_one_page() -> None:
    """201 sites with one silent sensor each, read 200 sites a page: the last site is checked too."""
    w = World()
    w.registry = MemoryRegistry()
    for i in range(201):
        site = f"site-{i:03d}"
        w.registry.add_site(site)
        w.registry.add_sensor(site, "s", "meter", expected_interval_seconds=60)
        w.latest.record(site, [Heard("s", T0 - 3_600_000, {"power_w": 0})])
    w.stores = alerts.Stores(alerts=w.alerts, registry=w.registry, events=w.events, latest=w.latest)
    assert counts(alerts.check_offline(w.stores, clock)) == (201, 0, 0)
    assert w.alerts.count_open("site-200") == 1


# ---------------------------------------------------------------- other domains' events


def test_a_system_event_raises_once_until_it_clears() -> None:
    w = World()
    fault = SystemEvent(site="hq", kind="battery_fault", message="inverter fault 17", severity="critical")
    assert counts(alerts.system_event("ems.batteries", fault, w.stores, clock)) == (1, 0, 0)
    assert counts(alerts.system_event("ems.batteries", fault, w.stores, clock)) == (0, 0, 0)
    [alert] = w.alerts.opened("hq")
    assert (alert.rule, alert.kind, alert.source, alert.raised_at) == (
        "system#ems.batteries#battery_fault", "system", "ems.batteries", "2025-06-02T12:00:00.000Z"
    )  # fmt: skip

    cleared = fault.model_copy(update={"clear": True})
    assert counts(alerts.system_event("ems.batteries", cleared, w.stores, clock)) == (0, 1, 0)
    assert counts(alerts.system_event("ems.batteries", cleared, w.stores, clock)) == (0, 0, 0)
    assert w.events.kinds() == ["AlertRaised", "AlertCleared"]


def test_system_events_with_their_own_dedupe_keys_are_separate_alerts() -> None:
    w = World()
    for key in ("inverter-1", "inverter-2", "inverter-1"):
        event = SystemEvent(site="hq", kind="battery_fault", message="fault", dedupe_key=key)
        alerts.system_event("ems.batteries", event, w.stores, clock)
    assert sorted(a.rule for a in w.alerts.opened("hq")) == [
        "system#ems.batteries#inverter-1", "system#ems.batteries#inverter-2"
    ]  # fmt: skip


# ---------------------------------------------------------------- the routes


def test_listing_and_acknowledging_alerts() -> None:
    w = World()
    w.temperatures((0, 27.0), (10, 27.0))
    alerts.system_event("ems.dr", SystemEvent(site="hq", kind="dr_failed", message="m"), w.stores, clock)
    page = alerts.list_events("hq", EventsQuery(), w.alerts)
    # newest first: the system event (12:00 by the clock) is older than the threshold alert (12:10)
    assert [a.kind for a in page.items] == ["threshold", "system"]
    assert [a.kind for a in alerts.list_events("hq", EventsQuery(severity="critical"), w.alerts).items] == [
        "threshold"
    ]
    one = alerts.list_events("hq", EventsQuery(limit=1), w.alerts)
    rest = alerts.list_events("hq", EventsQuery(limit=1, next_token=one.next_token), w.alerts)
    assert [a.kind for a in one.items + rest.items] == ["threshold", "system"]

    alert_id = page.items[0].alert_id
    first = alerts.acknowledge("hq", alert_id, caller(sub="ann"), w.alerts, clock)
    again = alerts.acknowledge("hq", alert_id, caller(sub="bob"), w.alerts, lambda: NOW + timedelta(hours=1))
    assert (again.acknowledged, again.acknowledged_by, again.acknowledged_at) == (
        True, "ann", "2025-06-02T12:00:00.000Z"
    )  # fmt: skip
    assert first == again
