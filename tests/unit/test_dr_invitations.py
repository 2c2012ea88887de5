"""ems.dr.service's invitations on fakes: the seed's send, its past event_time, unknown iots, every
transition of the life cycle (each illegal one refused), answers by id and by event time, idempotent
answers and cancels, expiry at the start, the lists and what is published."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ems.core.errors import Conflict, Invalid, NotFound
from ems.devices.models import Device
from ems.dr import service as dr
from ems.dr.models import TRANSITIONS, AnswerIn, Invitation, InvitationIn, ListQuery
from tests.support.fakes import ListPublisher, MemoryRegistry, MemoryStatus
from tests.support.fakes_devices import MemoryDevices
from tests.support.fakes_dr import MemoryInvitations

T0 = datetime(2030, 3, 4, 10, 0, tzinfo=UTC)  # a Monday
SITE = "demo"
EVENT = "2030-03-04T14:00:00Z"


def at(minutes: float = 0) -> Any:
    return lambda: T0 + timedelta(minutes=minutes)


def device(device_id: str, device_type: str = "hvac", **fields: Any) -> Device:
    return Device(device_id=device_id, name=device_id, device_type=device_type, site_id=SITE,  # type: ignore[arg-type]
                  thing_name=f"{SITE}--{device_id}", created_at="2030-01-01T00:00:00Z",
                  updated_at="2030-01-01T00:00:00Z", **fields)  # fmt: skip


@pytest.fixture
def s() -> dr.Stores:
    devices = MemoryDevices()
    devices.create(device("DEVICE_001", "hvac", rated_power_kw=3.0, dr_eligible=True, comfort_priority=5))
    devices.create(
        device("DEVICE_002", "water_heater", rated_power_kw=2.0, dr_eligible=True, comfort_priority=2)
    )
    return dr.Stores(invitations=MemoryInvitations(), devices=devices, events=ListPublisher(),
                     sites=MemoryRegistry(), latest=MemoryStatus())  # fmt: skip


def seed_send(s: dr.Stores, event_time: str = EVENT, minutes: float = 0, **extra: Any) -> str:
    body = {"event_time": event_time, "load_kwh": 100, "duration_minutes": 60,
            "iots": ["DEVICE_001", "DEVICE_002"], **extra}  # fmt: skip
    return dr.send(SITE, InvitationIn.model_validate(body), s, at(minutes)).invitation_id


def status(s: dr.Stores, invitation_id: str, minutes: float = 0) -> str:
    return dr.get(SITE, invitation_id, s, now=at(minutes)).status


def published(s: dr.Stores) -> list[str]:
    return s.events.kinds()  # type: ignore[attr-defined,no-any-return]


def yes(invitation_id: str) -> AnswerIn:
    return AnswerIn(invitation_id=invitation_id, response="YES")


def no(invitation_id: str) -> AnswerIn:
    return AnswerIn(invitation_id=invitation_id, response="NO")


def stored(s: dr.Stores, invitation_id: str) -> Invitation:
    return s.invitations.get(SITE, invitation_id)


def force(s: dr.Stores, invitation_id: str, status: str) -> None:
    """Put the invitation into `status` directly (active and completed come from execution)."""
    held = stored(s, invitation_id)
    s.invitations.save(held.model_copy(update={"status": status, "version": held.version + 1}))


# ---------------------------------------------------------------- send


def test_the_seeds_send_is_a_pending_invitation_with_its_window_and_target(s: dr.Stores) -> None:
    invitation_id = seed_send(s)
    invitation = stored(s, invitation_id)
    assert invitation_id.startswith(f"{int(datetime(2030, 3, 4, 14, tzinfo=UTC).timestamp() * 1000):013d}-")
    assert (invitation.status, invitation.start, invitation.end) == (
        "pending",
        "2030-03-04T14:00:00.000Z",
        "2030-03-04T15:00:00.000Z",
    )
    assert invitation.target_kw() == 100.0  # 100 kWh over 60 minutes
    assert invitation.iots == ["DEVICE_001", "DEVICE_002"]
    assert published(s) == ["InvitationChanged"]


def test_the_seeds_own_past_event_time_is_a_422_that_says_it_is_in_the_past(s: dr.Stores) -> None:
    with pytest.raises(Invalid) as err:
        seed_send(s, "2024-01-10T14:00:00Z")
    assert err.value.field == "event_time"
    assert "2024-01-10T14:00:00.000Z is in the past" in err.value.message
    assert s.invitations.page(SITE, False, 10, None).items == []


def test_unknown_iots_are_a_422_listing_them_and_nothing_is_stored(s: dr.Stores) -> None:
    with pytest.raises(Invalid) as err:
        seed_send(s, iots=["DEVICE_001", "DEVICE_404", "FRIDGE"])
    assert (err.value.field, err.value.message) == (
        "iots",
        "no such devices in this site: DEVICE_404, FRIDGE",
    )
    assert s.invitations.page(SITE, False, 10, None).items == []


def test_a_reduction_is_named_exactly_once(s: dr.Stores) -> None:
    with pytest.raises(Invalid) as err:
        seed_send(s, load_kw=20)
    assert err.value.field == "load_kwh"
    body = {"event_time": EVENT, "duration_minutes": 30}
    with pytest.raises(Invalid):
        dr.send(SITE, InvitationIn.model_validate(body), s, at())
    kw = dr.send(SITE, InvitationIn.model_validate({**body, "load_kw": 40}), s, at())
    pct = dr.send(SITE, InvitationIn.model_validate({**body, "load_percentage": 25}), s, at())
    assert stored(s, kw.invitation_id).target_kw() == 40
    assert stored(s, pct.invitation_id).target_kw(baseline_kw=80) == 20  # 25 % of an 80 kW baseline
    assert stored(s, pct.invitation_id).target_kw() is None


def test_a_retried_send_with_its_request_id_is_one_invitation(s: dr.Stores) -> None:
    first = seed_send(s, request_id="op-17")
    again = seed_send(s, request_id="op-17", minutes=1)
    assert first == again
    assert len(s.invitations.page(SITE, False, 10, None).items) == 1
    assert published(s) == ["InvitationChanged"]


# ---------------------------------------------------------------- transitions


def test_the_table_of_transitions_is_the_issues_life_cycle() -> None:
    assert {k: sorted(v) for k, v in TRANSITIONS.items()} == {
        "pending": ["accepted", "cancelled", "declined", "expired"],
        "accepted": ["active", "cancelled", "declined"],
        "declined": ["accepted", "cancelled"],
        "active": ["cancelled", "completed"],
        "completed": [], "cancelled": [], "expired": [],
    }  # fmt: skip


@pytest.mark.parametrize("source", list(TRANSITIONS))
def test_every_move_not_in_the_table_is_refused(source: str) -> None:
    invitation = Invitation(invitation_id="x", site_id=SITE, status=source, start=EVENT, end=EVENT,  # type: ignore[arg-type]
                            duration_minutes=60, load_kw=1, received_at=EVENT)  # fmt: skip
    for target in TRANSITIONS:
        if target in TRANSITIONS[source]:  # type: ignore[index]
            moved = dr.move(invitation, target, T0)  # type: ignore[arg-type]
            assert (moved.status, moved.version, moved.history[-1]["status"]) == (target, 1, target)
        else:
            with pytest.raises(Conflict) as err:
                dr.move(invitation, target, T0)  # type: ignore[arg-type]
            assert err.value.message == f"a {source} invitation cannot become {target}"


def test_pending_to_accepted_to_declined_and_back_before_the_start(s: dr.Stores) -> None:
    invitation_id = seed_send(s)
    assert dr.answer(SITE, yes(invitation_id), s, "ops", at(1)).status == "accepted"
    assert dr.answer(SITE, no(invitation_id), s, "ops", at(2)).status == "declined"
    back = dr.answer(SITE, yes(invitation_id), s, "ops", at(3))
    assert (back.status, back.answer, back.answered_by) == ("accepted", "YES", "ops")
    assert [h["status"] for h in back.history] == ["pending", "accepted", "declined", "accepted"]
    assert published(s) == ["InvitationChanged", "InvitationChanged", "InvitationChanged", "SystemEvent",
                            "InvitationChanged"]  # fmt: skip


def test_the_same_answer_twice_changes_nothing(s: dr.Stores) -> None:
    invitation_id = seed_send(s)
    first = dr.answer(SITE, yes(invitation_id), s, "ops", at(1))
    again = dr.answer(SITE, AnswerIn(invitation_id=invitation_id, response="yes"), s, "ops", at(2))
    assert again == first
    assert again.version == 1
    force(s, invitation_id, "active")
    assert dr.answer(SITE, yes(invitation_id), s, "ops", at(5 * 60)).status == "active"  # after the start too


def test_an_answer_other_than_yes_or_no_is_a_422_not_a_silent_no(s: dr.Stores) -> None:
    invitation_id = seed_send(s)
    for response in ("MAYBE", "", "N", "true"):
        with pytest.raises(Invalid) as err:
            dr.answer(SITE, AnswerIn(invitation_id=invitation_id, response=response), s, "ops", at(1))
        assert err.value.field == "response"
    assert stored(s, invitation_id).status == "pending"


def test_changing_the_answer_after_the_start_is_a_409(s: dr.Stores) -> None:
    invitation_id = seed_send(s)
    dr.answer(SITE, yes(invitation_id), s, "ops", at(1))
    force(s, invitation_id, "active")
    with pytest.raises(Conflict) as err:
        dr.answer(SITE, no(invitation_id), s, "ops", at(4 * 60 + 1))
    assert err.value.field == "response"
    assert "the event started at 2030-03-04T14:00:00.000Z" in err.value.message
    assert stored(s, invitation_id).status == "active"


def test_a_pending_invitation_expires_at_its_start_and_cannot_be_answered(s: dr.Stores) -> None:
    invitation_id = seed_send(s)
    assert status(s, invitation_id, 4 * 60 - 1) == "pending"
    assert status(s, invitation_id, 4 * 60) == "expired"
    assert stored(s, invitation_id).reason == "not answered by its start"
    with pytest.raises(Conflict):
        dr.answer(SITE, yes(invitation_id), s, "ops", at(4 * 60 + 1))
    with pytest.raises(Conflict):
        dr.cancel(SITE, invitation_id, None, s, at(4 * 60 + 1))
    assert published(s)[-2:] == ["InvitationChanged", "SystemEvent"]  # the expiry, and its alert


@pytest.mark.parametrize("before", ["pending", "accepted", "declined", "active"])
def test_cancelled_from_every_live_state_until_the_end_and_twice_is_once(s: dr.Stores, before: str) -> None:
    invitation_id = seed_send(s)
    if before != "pending":
        force(s, invitation_id, before)
    minutes = 4 * 60 + 30 if before == "active" else 1
    cancelled = dr.cancel(SITE, invitation_id, "grid restored", s, at(minutes))
    assert (cancelled.status, cancelled.reason) == ("cancelled", "grid restored")
    assert dr.cancel(SITE, invitation_id, None, s, at(minutes + 1)) == cancelled


def test_no_cancel_after_the_end_or_of_a_completed_event(s: dr.Stores) -> None:
    invitation_id = seed_send(s)
    force(s, invitation_id, "active")
    with pytest.raises(Conflict) as err:
        dr.cancel(SITE, invitation_id, None, s, at(5 * 60))
    assert "ended at 2030-03-04T15:00:00.000Z" in err.value.message
    force(s, invitation_id, "completed")
    with pytest.raises(Conflict):
        dr.cancel(SITE, invitation_id, None, s, at(4 * 60 + 10))


def test_a_stale_writer_loses_to_the_first(s: dr.Stores) -> None:
    invitation_id = seed_send(s)
    read = stored(s, invitation_id)
    dr.answer(SITE, yes(invitation_id), s, "ops", at(1))
    with pytest.raises(Conflict):
        s.invitations.save(dr.move(read, "declined", T0))
    assert stored(s, invitation_id).status == "accepted"


# ---------------------------------------------------------------- answers by event time, the lists


def test_an_answer_by_event_time_finds_the_one_invitation_there(s: dr.Stores) -> None:
    invitation_id = seed_send(s)
    seed_send(s, "2030-03-04T16:00:00Z")
    answered = dr.answer(SITE, AnswerIn(event_time="2030-03-04T14:00:00Z", response="NO"), s, "ops", at(1))
    assert (answered.invitation_id, answered.status) == (invitation_id, "declined")
    with pytest.raises(NotFound):
        dr.answer(SITE, AnswerIn(event_time="2030-03-04T15:00:00Z", response="NO"), s, "ops", at(1))


def test_an_ambiguous_event_time_is_a_409_listing_the_ids(s: dr.Stores) -> None:
    first, second = seed_send(s), seed_send(s)
    with pytest.raises(Conflict) as err:
        dr.answer(SITE, AnswerIn(event_time=EVENT, response="YES"), s, "ops", at(1))
    assert err.value.field == "event_time"
    assert first in err.value.message and second in err.value.message
    assert {stored(s, first).status, stored(s, second).status} == {"pending"}


def test_an_answer_names_its_invitation_one_way(s: dr.Stores) -> None:
    invitation_id = seed_send(s)
    with pytest.raises(Invalid):
        dr.answer(
            SITE, AnswerIn(invitation_id=invitation_id, event_time=EVENT, response="YES"), s, "ops", at()
        )
    with pytest.raises(Invalid):
        dr.answer(SITE, AnswerIn(response="YES"), s, "ops", at())


def test_unanswered_soonest_first_and_answered_most_recent_first(s: dr.Stores) -> None:
    late = seed_send(s, "2030-03-05T09:00:00Z")
    early = seed_send(s, "2030-03-04T12:00:00Z")
    middle = seed_send(s, "2030-03-04T18:00:00Z")
    assert [i.invitation_id for i in dr.unanswered(SITE, ListQuery(), s, now=at(1)).items] == [
        early,
        middle,
        late,
    ]
    dr.answer(SITE, yes(late), s, "ops", at(2))
    dr.answer(SITE, no(middle), s, "ops", at(3))
    # At 12:00 the early one expires: it leaves the unanswered list and joins the answered one.
    assert [i.invitation_id for i in dr.unanswered(SITE, ListQuery(), s, now=at(2 * 60)).items] == []
    answered = dr.answered(SITE, ListQuery(), s, now=at(2 * 60))
    assert [(i.invitation_id, i.status) for i in answered.items] == [
        (late, "accepted"), (middle, "declined"), (early, "expired")
    ]  # fmt: skip


def test_lists_are_paged(s: dr.Stores) -> None:
    ids = [seed_send(s, f"2030-03-04T{h}:00:00Z") for h in (11, 12, 13)]
    first = dr.unanswered(SITE, ListQuery(limit=2), s, now=at())
    rest = dr.unanswered(SITE, ListQuery(limit=2, next_token=first.next_token), s, now=at())
    assert [i.invitation_id for i in first.items + rest.items] == ids
