"""Performance after an event on fakes: the grid meter's 15-minute rollups of a hand-made history
(Easter 2030's Good Friday and Easter Monday excluded as German public holidays, another event's
day excluded), delivered energy, the benefit with and without a penalty, the ledger entry keyed by
the invitation (a retried completion pays once, the balance is the sum of the entries) and the
under-delivery alert."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from ems.dr import service as dr
from ems.dr.models import AnswerIn, AutoResponse, BenefitsQuery, InvitationIn, ListQuery
from ems.telemetry.models import Reading
from tests.support.fakes import ListPublisher, MemoryRegistry, MemoryStatus, MemoryTelemetry, caller
from tests.support.fakes_devices import MemoryDevices
from tests.support.fakes_dr import MemoryInvitations
from tests.support.fakes_market import MemoryLedger

SITE = "demo"
T0 = datetime(2030, 4, 24, 10, 0, tzinfo=UTC)  # Wednesday after Easter: the notice
START = datetime(2030, 4, 24, 14, 0, tzinfo=UTC)
END = START + timedelta(hours=1)
HOLIDAYS = {date(2030, 4, 19), date(2030, 4, 22)}  # Good Friday, Easter Monday (DE)
OTHER_EVENT = date(2030, 4, 17)


def reading(at: datetime, kw: float) -> Reading:
    return Reading(SITE, "GRID", "power_w", int((at + timedelta(minutes=1)).timestamp() * 1000), kw * 1000)


def history() -> list[Reading]:
    """Weekdays: 20 kW from 14:00 to 15:00 and 10 kW from 08:00 to 10:00; weekends, holidays and the
    other event's day draw 100 kW then (they must not count); the event day 10 kW before the notice
    and 14, 14, 16, 16 kW during the event."""
    out = []
    for back in range(1, 45):
        day = START - timedelta(days=back)
        odd = day.weekday() >= 5 or day.date() in HOLIDAYS or day.date() == OTHER_EVENT
        out += [reading(day + i * timedelta(minutes=15), 100.0 if odd else 20.0) for i in range(4)]
        out += [reading(day.replace(hour=8) + i * timedelta(minutes=15), 10.0) for i in range(8)]
    out += [reading(START.replace(hour=8) + i * timedelta(minutes=15), 10.0) for i in range(8)]
    out += [reading(START + i * timedelta(minutes=15), kw) for i, kw in enumerate((14.0, 14.0, 16.0, 16.0))]
    return out


@pytest.fixture
def s() -> dr.Stores:
    registry = MemoryRegistry()
    registry.add_site(SITE, currency="EUR")
    registry.add_sensor(SITE, "GRID", "meter")
    telemetry = MemoryTelemetry()
    telemetry.write(history())
    stores = dr.Stores(invitations=MemoryInvitations(), devices=MemoryDevices(), events=ListPublisher(),
                       sites=registry, latest=MemoryStatus(), rollups=telemetry, ledger=MemoryLedger())  # fmt: skip
    stores.invitations.put_settings(SITE, AutoResponse(country="DE", rate_per_kwh=0.3))
    other = dr.send(
        SITE,
        InvitationIn(event_time="2030-04-17T14:00:00Z", load_kw=1),
        stores,
        lambda: T0 - timedelta(days=8),
    )
    dr.answer(
        SITE,
        AnswerIn(invitation_id=other.invitation_id, response="YES"),
        stores,
        "ops",
        lambda: T0 - timedelta(days=8),
    )
    dr.start_event(SITE, other.invitation_id, stores, lambda: T0 - timedelta(days=7, hours=-4))
    return stores


def run(s: dr.Stores, **body: Any) -> Any:
    sent = dr.send(
        SITE, InvitationIn.model_validate({"event_time": "2030-04-24T14:00:00Z", **body}), s, lambda: T0
    )
    dr.answer(SITE, AnswerIn(invitation_id=sent.invitation_id, response="YES"), s, "ops", lambda: T0)
    dr.start_event(SITE, sent.invitation_id, s, lambda: START)
    completed = dr.end_event(SITE, sent.invitation_id, s, lambda: END)
    assert (completed.status, completed.performance) == ("completed", None)  # measured 5 minutes later
    return dr.measure_event(SITE, sent.invitation_id, s, lambda: END + timedelta(minutes=5))


def test_the_german_holidays_are_the_packages() -> None:
    assert dr.public_holidays("DE", {2030}) >= HOLIDAYS


def test_baseline_actual_delivered_and_the_benefit_by_hand(s: dr.Stores) -> None:
    done = run(s, load_kwh=4, price_per_kwh=0.5)
    p = done.performance
    assert p is not None
    # The 10 weekdays before 24 April without 22 and 19 April (holidays) and 17 April (an event).
    assert p.baseline_days == [f"2030-04-{d:02d}" for d in (23, 18, 16, 15, 12, 11, 10, 9, 8, 5)]
    assert (p.adjustment, p.baseline_kw, p.baseline_kwh) == (1.0, [20.0] * 4, 20.0)
    assert (p.actual_kw, p.actual_kwh) == ([14.0, 14.0, 16.0, 16.0], 15.0)
    assert (p.delivered_kwh, p.requested_kwh, p.met) == (5.0, 4.0, True)
    assert p.benefit == 2.5  # 5 kWh x 0.5 (the invitation's own price)
    [entry] = s.ledger.items.values()  # type: ignore[union-attr]
    assert (entry.source, entry.source_id, entry.amount, entry.currency) == (
        "dr",
        done.invitation_id,
        2.5,
        "EUR",
    )


def test_the_site_s_country_is_where_the_holidays_come_from(s: dr.Stores) -> None:
    """The same by-hand baseline with the country on the site and none in the settings."""
    registry = s.sites
    assert isinstance(registry, MemoryRegistry)
    s.invitations.put_settings(SITE, AutoResponse(rate_per_kwh=0.3))
    registry.put_site(registry.get_site(SITE).model_copy(update={"country": "DE"}))
    p = run(s, load_kwh=4).performance
    assert p is not None
    assert p.baseline_days == [f"2030-04-{d:02d}" for d in (23, 18, 16, 15, 12, 11, 10, 9, 8, 5)]
    assert p.baseline_kw == [20.0] * 4


def test_a_site_in_another_country_overrides_the_settings_country(s: dr.Stores) -> None:
    registry = s.sites
    assert isinstance(registry, MemoryRegistry)
    registry.put_site(registry.get_site(SITE).model_copy(update={"country": "FR"}))
    p = run(s, load_kwh=4).performance
    assert p is not None
    # France: Easter Monday a holiday, Good Friday (19 April) a working day: it joins the ten and
    # 5 April drops out.
    assert p.baseline_days == [f"2030-04-{d:02d}" for d in (23, 19, 18, 16, 15, 12, 11, 10, 9, 8)]


def test_the_configured_rate_and_the_penalty_for_under_delivery(s: dr.Stores) -> None:
    s.invitations.put_settings(SITE, AutoResponse(country="DE", rate_per_kwh=0.3, penalty_per_kwh=0.2))
    done = run(s, load_kwh=6)
    assert done.performance is not None
    assert (done.performance.met, done.performance.benefit) == (False, 1.3)  # 0.3 x 5 - 0.2 x (6 - 5)
    alerts = [e.detail for e in s.events.events if e.detail_type == "SystemEvent"]  # type: ignore[attr-defined]
    assert alerts[-1]["kind"] == "dr.under_delivered"
    assert (
        alerts[-1]["message"]
        == "demand response event at 2030-04-24T14:00:00.000Z delivered 5.00 of 6.00 kWh"
    )


def test_a_retried_completion_pays_once_and_the_balance_is_the_sum(s: dr.Stores) -> None:
    done = run(s, load_kwh=4)
    for _ in range(3):  # the completion measured again (a retry after its write was lost)
        dr.measure(done, s, END + timedelta(minutes=6))
    assert dr.measure_event(SITE, done.invitation_id, s, lambda: END + timedelta(minutes=7)) == done
    assert len(s.ledger.items) == 1  # type: ignore[union-attr]
    got = dr.benefits(SITE, BenefitsQuery(), caller(), s, lambda: END + timedelta(hours=1))
    assert (got.balance, got.count, [(m.month, m.amount, m.events) for m in got.monthly]) == (
        1.5,
        1,
        [("2030-04", 1.5, 1)],
    )  # 5 kWh x the configured 0.3
    limited = dr.benefits(
        SITE, BenefitsQuery(), caller(time_aggregation="1h"), s, lambda: END + timedelta(hours=1)
    )
    assert (limited.balance, limited.count, limited.withheld) == (0.0, 0, 1)


def test_too_few_comparable_days_leave_the_baseline_unknown() -> None:
    registry = MemoryRegistry()
    registry.add_site(SITE)
    registry.add_sensor(SITE, "GRID", "meter")
    telemetry = MemoryTelemetry()
    telemetry.write([r for r in history() if r.ts_ms >= int((START - timedelta(days=2)).timestamp() * 1000)])
    s = dr.Stores(invitations=MemoryInvitations(), devices=MemoryDevices(), events=ListPublisher(), sites=registry,
                  rollups=telemetry, ledger=MemoryLedger())  # fmt: skip
    done = run(s, load_kwh=4)
    assert done.performance is not None
    assert (done.performance.baseline_kwh, done.performance.actual_kwh) == (None, 15.0)
    assert done.performance.note == "baseline unknown: 2 comparable weekdays (at least 3)"
    assert s.ledger.items == {}  # type: ignore[union-attr]


def test_a_limited_token_sees_the_life_cycle_but_not_what_comes_from_readings(s: dr.Stores) -> None:
    done = run(s, load_kwh=4)
    later = lambda: END + timedelta(hours=2)  # noqa: E731
    full = dr.get(SITE, done.invitation_id, s, caller(), later)
    assert (full.performance is not None, full.withheld) == (True, None)
    hourly = dr.get(SITE, done.invitation_id, s, caller(time_aggregation="1h"), later)
    assert (hourly.status, hourly.performance) == ("completed", None)
    assert hourly.withheld is not None and "15-minute readings" in hourly.withheld
    embargoed = dr.answered(SITE, ListQuery(), s, caller(embargo_minutes=3 * 60), later).items
    assert [(i.invitation_id, i.performance) for i in embargoed if i.invitation_id == done.invitation_id] == [
        (done.invitation_id, None)
    ]
    assert (
        dr.get(SITE, done.invitation_id, s, caller(embargo_minutes=60), later).performance == full.performance
    )


def test_a_measurement_reads_the_site_once(s: dr.Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    """Zone, holiday country and currency come from one read of the site record."""
    registry = s.sites
    assert isinstance(registry, MemoryRegistry)
    sent = dr.send(SITE, InvitationIn(event_time="2030-04-24T14:00:00Z", load_kwh=4, price_per_kwh=0.5), s,
                   lambda: T0)  # fmt: skip
    dr.answer(SITE, AnswerIn(invitation_id=sent.invitation_id, response="YES"), s, "ops", lambda: T0)
    dr.start_event(SITE, sent.invitation_id, s, lambda: START)
    ended = dr.end_event(SITE, sent.invitation_id, s, lambda: END)
    reads: list[str] = []
    get_site = registry.get_site
    monkeypatch.setattr(registry, "get_site", lambda site_id: reads.append(site_id) or get_site(site_id))
    p = dr.measure(ended, s, END + timedelta(minutes=5))
    assert (reads, p.benefit) == ([SITE], 2.5)
