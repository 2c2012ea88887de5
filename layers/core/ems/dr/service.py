"""Demand response's logic: invitations through their life cycle (ems.dr.models.TRANSITIONS), the
auto-response settings and the site's flexibility.

Every change of state is written on the condition that nobody changed the invitation meanwhile (its
`version`), and published as `InvitationChanged` for the realtime function to push on `dr`; a
declined or expired invitation also raises an alert (`SystemEvent`). Expiry is applied when an
invitation still pending at its start is next read or answered.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ems.core.clock import Clock, parse_time, to_iso, utc_now
from ems.core.errors import Conflict, Invalid, NotFound
from ems.core.events import DomainEvent, EventPublisher
from ems.core.pagination import MAX_LIMIT, every
from ems.dr.models import (
    DR_SOURCE,
    INVITATION_CHANGED,
    SYSTEM_EVENT,
    TRANSITIONS,
    AnswerIn,
    AutoResponse,
    Invitation,
    InvitationIn,
    InvitationPage,
    ListQuery,
    Sent,
    Status,
)
from ems.dr.ports import BatteryFleet, InvitationStore, SiteDevices, SiteDirectory
from ems.registry.status import LatestReadings

ANSWERS = ("YES", "NO")


@dataclass(frozen=True)
class Stores:
    invitations: InvitationStore
    devices: SiteDevices
    events: EventPublisher
    sites: SiteDirectory | None = None
    latest: LatestReadings | None = None
    batteries: BatteryFleet | None = None


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def invitation_id(start_ms: int, request_id: str | None, site: str) -> str:
    """Sorts by the event's start; a sender's `request_id` gives the same id on every retry."""
    if request_id is None:
        return f"{start_ms:013d}-{secrets.token_hex(4)}"
    return f"{start_ms:013d}-{hashlib.sha256(f'{site}#{request_id}'.encode()).hexdigest()[:8]}"


# ---------------------------------------------------------------- the life cycle (pure)


def move(invitation: Invitation, to: Status, at: datetime, **changes: Any) -> Invitation:
    """The invitation in state `to`; Conflict for a move TRANSITIONS does not allow."""
    if to not in TRANSITIONS[invitation.status]:
        raise Conflict(f"a {invitation.status} invitation cannot become {to}", "status")
    history = [*invitation.history, {"status": to, "at": to_iso(at)}]
    return invitation.model_copy(
        update={"status": to, "history": history, "version": invitation.version + 1, **changes}
    )


def _changed(invitation: Invitation) -> list[DomainEvent]:
    detail = {"site": invitation.site_id, "invitation": invitation.model_dump(mode="json")}
    events = [DomainEvent(DR_SOURCE, INVITATION_CHANGED, detail)]
    if invitation.status in ("declined", "expired"):
        why = f": {invitation.reason}" if invitation.reason else ""
        events.append(
            DomainEvent(DR_SOURCE, SYSTEM_EVENT, {
                "site": invitation.site_id, "severity": "warning", "kind": f"dr.{invitation.status}",
                "message": f"demand response event at {invitation.start} {invitation.status}{why}",
                "dedupe_key": invitation.invitation_id,
            })
        )  # fmt: skip
    return events


def _save(invitation: Invitation, s: Stores) -> Invitation:
    saved = s.invitations.save(invitation)
    s.events.publish(_changed(saved))
    return saved


def _current(invitation: Invitation, s: Stores, moment: datetime) -> Invitation:
    """The invitation as it stands at `moment`: one still pending at its start has expired."""
    if invitation.status == "pending" and _ms(moment) >= _ms(parse_time(invitation.start, "start")):
        expired = move(invitation, "expired", moment, reason="not answered by its start")
        try:
            return _save(expired, s)
        except Conflict:  # another reader expired (or answered) it first
            return s.invitations.get(invitation.site_id, invitation.invitation_id)
    return invitation


# ---------------------------------------------------------------- invitations


def _check_iots(site: str, iots: list[str], s: Stores) -> None:
    known = {d.device_id for d in every(lambda t: s.devices.page(site, MAX_LIMIT, t))}
    unknown = [d for d in dict.fromkeys(iots) if d not in known]
    if unknown:
        raise Invalid(f"no such devices in this site: {', '.join(unknown)}", "iots")


def send(
    site: str, new: InvitationIn, s: Stores, now: Clock = utc_now,
    decide: Callable[[Invitation, Stores, datetime], Invitation] | None = None,
) -> Sent:  # fmt: skip
    """A new pending invitation (auto-response may answer it at once: `decide`)."""
    moment = now()
    reductions = new.reductions()
    if len(reductions) != 1:
        raise Invalid("name exactly one reduction: load_kwh, load_kw or load_percentage", "load_kwh")
    start = parse_time(new.event_time, "event_time")
    if start <= moment:
        raise Invalid(f"{to_iso(start)} is in the past (now is {to_iso(moment)}); an event must be in the future",
                      "event_time")  # fmt: skip
    _check_iots(site, new.iots, s)
    start_ms = _ms(start)
    invitation = Invitation(
        invitation_id=invitation_id(start_ms, new.request_id, site), site_id=site, start=to_iso(start),
        end=to_iso(start + timedelta(minutes=new.duration_minutes)), duration_minutes=new.duration_minutes,
        load_kwh=new.load_kwh, load_kw=new.load_kw, load_percentage=new.load_percentage,
        price_per_kwh=new.price_per_kwh, iots=list(dict.fromkeys(new.iots)), received_at=to_iso(moment),
        history=[{"status": "pending", "at": to_iso(moment)}],
    )  # fmt: skip
    stored, created = s.invitations.create(invitation)
    if created:
        s.events.publish(_changed(stored))
        if decide is not None:
            stored = decide(stored, s, moment)
    return Sent(invitation_id=stored.invitation_id, status=stored.status, reason=stored.reason)


def get(site: str, invitation_id: str, s: Stores, now: Clock = utc_now) -> Invitation:
    return _current(s.invitations.get(site, invitation_id), s, now())


def unanswered(site: str, q: ListQuery, s: Stores, now: Clock = utc_now) -> InvitationPage:
    """Pending invitations whose start is still ahead, soonest first."""
    moment = now()
    page = s.invitations.page(site, False, q.limit, q.next_token)
    items = [i for i in (_current(x, s, moment) for x in page.items) if i.status == "pending"]
    return InvitationPage(items=items, count=len(items), next_token=page.next_token)


def answered(site: str, q: ListQuery, s: Stores, now: Clock = utc_now) -> InvitationPage:
    """Invitations with an answer (or past answering), the most recent event first."""
    moment = now()
    page = s.invitations.page(site, True, q.limit, q.next_token)
    items = [i for i in (_current(x, s, moment) for x in page.items) if i.status != "pending"]
    return InvitationPage(items=items, count=len(items), next_token=page.next_token)


def find(site: str, a: AnswerIn, s: Stores) -> Invitation:
    """The invitation an answer names: by id, or by its event time (the original's way)."""
    if (a.invitation_id is None) == (a.event_time is None):
        raise Invalid("name the invitation by invitation_id or by event_time (one of them)", "invitation_id")
    if a.invitation_id is not None:
        return s.invitations.get(site, a.invitation_id)
    assert a.event_time is not None
    start = parse_time(a.event_time, "event_time")
    matches = s.invitations.at_start(site, _ms(start))
    if not matches:
        raise NotFound(f"no invitation starts at {to_iso(start)}", "event_time")
    if len(matches) > 1:
        ids = ", ".join(m.invitation_id for m in matches)
        raise Conflict(f"{len(matches)} invitations start at {to_iso(start)}: answer by invitation_id ({ids})",
                       "event_time")  # fmt: skip
    return matches[0]


def answer(site: str, a: AnswerIn, s: Stores, by: str = "user", now: Clock = utc_now) -> Invitation:
    """YES accepts, NO declines; the same answer again changes nothing; a change after the start
    is refused."""
    response = a.response.strip().upper()
    if response not in ANSWERS:
        raise Invalid(f"must be YES or NO, not {a.response!r}", "response")
    moment = now()
    invitation = _current(find(site, a, s), s, moment)
    if invitation.answer == response and invitation.status in ("accepted", "declined", "active", "completed"):
        return invitation
    if moment >= parse_time(invitation.start, "start"):
        raise Conflict(f"the event started at {invitation.start}: its answer can no longer change "
                       f"(it is {invitation.status})", "response")  # fmt: skip
    to: Status = "accepted" if response == "YES" else "declined"
    return _save(
        move(
            invitation, to, moment, answer=response, answered_at=to_iso(moment), answered_by=by, reason=None
        ),
        s,
    )


def cancel(site: str, invitation_id: str, reason: str | None, s: Stores, now: Clock = utc_now) -> Invitation:
    """Cancelled until its end; cancelling twice is one cancellation."""
    moment = now()
    invitation = _current(s.invitations.get(site, invitation_id), s, moment)
    if invitation.status == "cancelled":
        return invitation
    if moment >= parse_time(invitation.end, "end"):
        raise Conflict(f"the event ended at {invitation.end}: it can no longer be cancelled", "status")
    return _save(move(invitation, "cancelled", moment, reason=reason or "cancelled"), s)


# ---------------------------------------------------------------- auto-response settings


def get_settings(site: str, s: Stores) -> AutoResponse:
    return s.invitations.get_settings(site)


def put_settings(site: str, settings: AutoResponse, s: Stores) -> AutoResponse:
    return s.invitations.put_settings(site, settings)
