"""Demand response's logic: invitations through their life cycle (ems.dr.models.TRANSITIONS), the
auto-response settings and the site's flexibility.

Every change of state is written on the condition that nobody changed the invitation meanwhile (its
`version`), and published as `InvitationChanged` for the realtime function to push on `dr`; a
declined or expired invitation also raises an alert (`SystemEvent`). Expiry is applied when an
invitation still pending at its start is next read or answered.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from ems.auth.models import Claims
from ems.core.clock import Clock, iso_ms, parse_time, to_iso, utc_now
from ems.core.errors import BadRequest, Conflict, DomainError, Invalid, NotFound
from ems.core.events import DomainEvent, EventPublisher
from ems.core.holidays import public_holidays
from ems.core.pagination import MAX_LIMIT, every
from ems.devices.commands import COMMAND_SETS
from ems.devices.models import Device
from ems.dr.baseline import LOOKBACK_DAYS, SLOT_HOURS, baseline, delivered_kwh, slot_starts
from ems.dr.flexibility import BatteryState, DeviceState, flexibility
from ems.dr.models import (
    DR_SOURCE,
    INVITATION_CHANGED,
    SYSTEM_EVENT,
    TRANSITIONS,
    Answer,
    AnswerIn,
    AutoResponse,
    BenefitMonth,
    Benefits,
    BenefitsQuery,
    ExecuteIn,
    Execution,
    Flexibility,
    FlexibilityForecast,
    FlexibilityHour,
    Invitation,
    InvitationIn,
    InvitationPage,
    ListQuery,
    Performance,
    Sent,
    Status,
    Step,
)
from ems.dr.ports import (
    BatteryFleet,
    CommandStates,
    DeviceCommands,
    DeviceShadows,
    Forecasts,
    InvitationStore,
    Ledger,
    Rollups,
    Schedules,
    SiteDevices,
    SiteDirectory,
)
from ems.ledger.models import LedgerEntry
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
    rollups: Rollups | None = None
    forecasts: Forecasts | None = None
    commands: DeviceCommands | None = None
    schedules: Schedules | None = None
    command_states: CommandStates | None = None
    shadows: DeviceShadows | None = None
    ledger: Ledger | None = None


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
    _follow_schedules(saved, s)
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


def visible(invitation: Invitation, caller: Claims | None, moment: datetime) -> Invitation:
    """The invitation as this token may read it: the plan's kW come from one device's reading at the
    start (raw readings), the performance from the site's 15-minute grid import up to the end."""
    if caller is None:
        return invitation
    why: list[str] = []
    changes: dict[str, Any] = {}
    execution = invitation.execution
    if execution is not None and not caller.may_see_reading(
        _ms(parse_time(execution.started_at, "started_at")), moment
    ):
        steps = [x.model_copy(update={"kw": None, "kw_from": "withheld"}) for x in execution.steps]
        changes["execution"] = execution.model_copy(
            update={"steps": steps, "planned_kw": None, "shortfall_kw": None}
        )
        why.append("the plan's kW are devices' raw readings beyond this token's limits")
    if invitation.performance is not None:
        cutoff = caller.embargo_cutoff_ms(moment)
        end_ms = _ms(parse_time(invitation.end, "end"))
        if caller.time_aggregation not in ("raw", "15m") or (cutoff is not None and cutoff < end_ms):
            changes["performance"] = None
            why.append("the performance comes from 15-minute readings beyond this token's limits")
    if not why:
        return invitation
    return invitation.model_copy(update={**changes, "withheld": "; ".join(why)})


def _check_iots(site: str, iots: list[str], s: Stores) -> None:
    known = {d.device_id for d in every(lambda t: s.devices.page(site, MAX_LIMIT, t))}
    unknown = [d for d in dict.fromkeys(iots) if d not in known]
    if unknown:
        raise Invalid(f"no such devices in this site: {', '.join(unknown)}", "iots")


def send(site: str, new: InvitationIn, s: Stores, now: Clock = utc_now) -> Sent:
    """A new pending invitation; auto-response, when enabled, answers it at once."""
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
        if s.schedules is not None:  # still pending at its start, this schedule expires it (and alerts)
            s.schedules.put_at(
                schedule_name(stored.invitation_id, START), start, schedule_payload(stored, START)
            )
        stored = auto_respond(stored, s, moment)
    return Sent(invitation_id=stored.invitation_id, status=stored.status, reason=stored.reason)


def get(
    site: str, invitation_id: str, s: Stores, caller: Claims | None = None, now: Clock = utc_now
) -> Invitation:
    moment = now()
    return visible(_current(s.invitations.get(site, invitation_id), s, moment), caller, moment)


def unanswered(
    site: str, q: ListQuery, s: Stores, caller: Claims | None = None, now: Clock = utc_now
) -> InvitationPage:
    """Pending invitations whose start is still ahead, soonest first."""
    moment = now()
    page = s.invitations.page(site, False, q.limit, q.next_token)
    items = [i for i in (_current(x, s, moment) for x in page.items) if i.status == "pending"]
    return InvitationPage(items=items, count=len(items), next_token=page.next_token)


def answered(
    site: str, q: ListQuery, s: Stores, caller: Claims | None = None, now: Clock = utc_now
) -> InvitationPage:
    """Invitations with an answer (or past answering), the most recent event first."""
    moment = now()
    page = s.invitations.page(site, True, q.limit, q.next_token)
    items = [
        visible(i, caller, moment)
        for i in (_current(x, s, moment) for x in page.items)
        if i.status != "pending"
    ]
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


def answer(
    site: str, a: AnswerIn, s: Stores, by: str = "user", now: Clock = utc_now, caller: Claims | None = None
) -> Invitation:
    """YES accepts, NO declines; the same answer again changes nothing; a change after the start
    is refused. The answer as `caller` may read it (`visible`)."""
    moment = now()
    return visible(_answer(site, a, s, by, moment), caller, moment)


def _answer(site: str, a: AnswerIn, s: Stores, by: str, moment: datetime) -> Invitation:
    response = a.response.strip().upper()
    if response not in ANSWERS:
        raise Invalid(f"must be YES or NO, not {a.response!r}", "response")
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


def cancel(
    site: str,
    invitation_id: str,
    reason: str | None,
    s: Stores,
    now: Clock = utc_now,
    caller: Claims | None = None,
) -> Invitation:
    """Cancelled until its end; cancelling twice is one cancellation (as `caller` may read it)."""
    moment = now()
    return visible(_cancel(site, invitation_id, reason, s, moment), caller, moment)


def _cancel(site: str, invitation_id: str, reason: str | None, s: Stores, moment: datetime) -> Invitation:
    invitation = _current(s.invitations.get(site, invitation_id), s, moment)
    if invitation.status == "cancelled":
        return invitation
    if moment >= parse_time(invitation.end, "end"):
        raise Conflict(f"the event ended at {invitation.end}: it can no longer be cancelled", "status")
    cancelled = move(invitation, "cancelled", moment, reason=reason or "cancelled")
    if invitation.status == "active":  # what the plan took is given back at once
        cancelled = cancelled.model_copy(update={"execution": _release(invitation, s, moment)})
    return _save(cancelled, s)


# ---------------------------------------------------------------- auto-response settings


def get_settings(site: str, s: Stores) -> AutoResponse:
    return s.invitations.get_settings(site)


def put_settings(site: str, settings: AutoResponse, s: Stores) -> AutoResponse:
    return s.invitations.put_settings(site, settings)


# ---------------------------------------------------------------- flexibility

POWER_METRIC = "power_w"
LIVE = timedelta(minutes=30)  # a window starting this soon is judged on the newest readings
WEEK = timedelta(days=7)  # a later one on the same window a week earlier (seasonal naive)
FIFTEEN_MINUTE_GRAINS = ("raw", "15m")


def _devices(site: str, s: Stores) -> list[Device]:
    return list(every(lambda t: s.devices.page(site, MAX_LIMIT, t)))


def _timezone(site: str, s: Stores) -> str:
    return s.sites.get_site(site).timezone if s.sites is not None else "UTC"


def _instructions(plan: dict[str, dict[str, str]], device_id: str, start: datetime, end: datetime,
                  timezone: str) -> tuple[str, ...]:  # fmt: skip
    """The device's instruction for each local hour that [start, end) touches."""
    zone, hours, moment = ZoneInfo(timezone), [], start
    while moment < end:
        hours.append(plan.get(device_id, {}).get(str(moment.astimezone(zone).hour), "participation"))
        moment = (moment + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    return tuple(hours)


def _sensors_of(site: str, devices: list[Device], s: Stores) -> dict[str, str]:
    """sensor -> device: a sensor names its device, or the device lists the sensor."""
    known, owner = {d.device_id for d in devices}, {}
    if s.sites is not None:
        for sensor in every(lambda t: s.sites.list_sensors(site, None, None, MAX_LIMIT, t)):  # type: ignore[union-attr]
            if sensor.device_id in known:
                owner[sensor.sensor_id] = sensor.device_id
    for device in devices:
        for sensor_id in device.sensors:
            owner.setdefault(sensor_id, device.device_id)
    return owner


def _live_kw(site: str, owner: dict[str, str], s: Stores) -> dict[str, tuple[float, str]]:
    power: dict[str, tuple[float, str]] = {}
    if s.latest is None:
        return power
    for sensor_id, heard in s.latest.get(site, list(owner)).items():
        if POWER_METRIC in heard.metrics:
            device_id = owner[sensor_id]
            kw = power.get(device_id, (0.0, ""))[0] + heard.metrics[POWER_METRIC] / 1000
            power[device_id] = (kw, f"newest reading ({iso_ms(heard.ts_ms)})")
    return power


def _week_ago_kw(site: str, owner: dict[str, str], start: datetime, end: datetime,
                 s: Stores) -> dict[str, tuple[float, str]]:  # fmt: skip
    """Each device's mean power over [start, end) a week earlier, from 15-minute rollups."""
    if s.rollups is None or not owner:
        return {}
    read = s.rollups.read_rollups(site, list(owner), POWER_METRIC, "15m", _ms(start - WEEK), _ms(end - WEEK))
    power: dict[str, tuple[float, str]] = {}
    for sensor_id, buckets in read.items():
        count = sum(b.count for b in buckets.values())
        if count:
            device_id = owner[sensor_id]
            kw = power.get(device_id, (0.0, ""))[0] + sum(b.sum for b in buckets.values()) / count / 1000
            power[device_id] = (kw, f"mean of the same window a week earlier ({to_iso(start - WEEK)})")
    return power


def _withheld(caller: Claims | None, live: bool, end: datetime, moment: datetime) -> str | None:
    """Why this token may not see the devices' power figures (they are one device's readings)."""
    if caller is None:
        return None
    if caller.data_aggregation != "raw":
        return f"per-device power is finer than this token's data_aggregation ({caller.data_aggregation})"
    if live and not caller.sees_live():
        return "the newest readings are beyond this token's limits (embargo or time aggregation)"
    if not live:
        cutoff = caller.embargo_cutoff_ms(moment)
        if caller.time_aggregation not in FIFTEEN_MINUTE_GRAINS or (
            cutoff is not None and cutoff < _ms(end - WEEK)
        ):
            return "last week's 15-minute readings are beyond this token's limits"
    return None


def _batteries(site: str, minutes: int, s: Stores) -> list[BatteryState]:
    if s.batteries is None:
        return []
    return [
        BatteryState(b.battery_id, b.device_id, b.soc_pct, b.available_kw, b.available_kwh)
        for b in s.batteries.dischargeable(site, minutes)
    ]


def current_flexibility(
    site: str,
    start: str | None,
    duration_minutes: int,
    caller: Claims | None,
    s: Stores,
    now: Clock = utc_now,
) -> Flexibility:
    """What the site can reduce from `start` (now when None) for `duration_minutes`."""
    moment = now()
    begin = moment if start is None else parse_time(start, "start")
    if begin < moment - LIVE:
        raise Invalid(f"{to_iso(begin)} is in the past: flexibility is for now or a future window", "start")
    begin = max(begin, moment)
    end = begin + timedelta(minutes=duration_minutes)
    live = begin - moment < LIVE
    devices = _devices(site, s)
    why = _withheld(caller, live, end, moment)
    owner = _sensors_of(site, devices, s)
    power = _live_kw(site, owner, s) if live else _week_ago_kw(site, owner, begin, end, s)
    timezone, plan = _timezone(site, s), s.devices.get_plan(site)
    states = [
        DeviceState(
            d.device_id,
            d.device_type,
            d.dr_eligible,
            d.comfort_priority,
            _instructions(plan, d.device_id, begin, end, timezone),
            power[d.device_id][0] if d.device_id in power else None,
            power[d.device_id][1] if d.device_id in power else "no power reading",
        )
        for d in devices
    ]
    result = flexibility(to_iso(begin), duration_minutes, states, _batteries(site, duration_minutes, s))
    return result if why is None else _blank(result, why)


def _blank(result: Flexibility, why: str) -> Flexibility:
    devices = [
        d if d.kind == "battery" else d.model_copy(update={"kw": None, "kwh": None}) for d in result.devices
    ]
    return result.model_copy(update={
        "devices": devices, "total_kw": None, "reducible_kw": None, "shiftable_kw": None, "shiftable_kwh": None,
        "withheld": why,
    })  # fmt: skip


def forecast_flexibility(
    site: str, horizon_hours: int, caller: Claims | None, s: Stores, now: Clock = utc_now
) -> FlexibilityForecast:
    """Each hour of the horizon: the rest of the current hour on the newest readings, later hours on
    the same hour a week earlier."""
    moment = now()
    first = moment.replace(minute=0, second=0, microsecond=0)
    hours = []
    withheld = None
    for h in range(horizon_hours):
        start = first + timedelta(hours=h)
        # The current hour is what is left of it (at least 15 minutes), so it keeps to its own instructions.
        minutes = 60 if h else max(15, 60 - moment.minute)
        one = current_flexibility(site, None if h == 0 else to_iso(start), minutes, caller, s, lambda: moment)
        withheld = withheld or one.withheld
        hours.append(FlexibilityHour(start=one.start, total_kw=one.total_kw, reducible_kw=one.reducible_kw,
                                     shiftable_kw=one.shiftable_kw, battery_kw=one.battery_kw))  # fmt: skip
    return FlexibilityForecast(
        horizon_hours=horizon_hours, hours=hours, withheld=withheld,
        basis="this hour: the newest readings; later hours: the same hour a week earlier (seasonal naive)",
    )  # fmt: skip


# ---------------------------------------------------------------- auto-response

SLOT = timedelta(minutes=15)


def baseline_forecast_kw(invitation: Invitation, s: Stores) -> float | None:
    """The site's forecast consumption over the window (mean kW), for a percentage reduction."""
    if s.forecasts is None:
        return None
    slots = -(-invitation.duration_minutes // 15)
    values = s.forecasts.consumption_kw(invitation.site_id, parse_time(invitation.start, "start"), slots)
    known = [v for v in values if v is not None and not math.isnan(v)]  # NaN: the forecasts do not know
    return sum(known) / len(known) if known and len(known) == len(values) else None


def refusals(invitation: Invitation, settings: AutoResponse, s: Stores, moment: datetime) -> list[str]:
    """Why auto-response declines the invitation (nothing: it accepts)."""
    start, end = parse_time(invitation.start, "start"), parse_time(invitation.end, "end")
    why = []
    notice_minutes = (start - moment).total_seconds() / 60
    if settings.min_notice_minutes is not None and notice_minutes < settings.min_notice_minutes:
        why.append(
            f"{notice_minutes:.0f} minutes' notice is less than min_notice_minutes {settings.min_notice_minutes}"
        )
    timezone = _timezone(invitation.site_id, s)
    touched = sorted({int(h) for h in _local_hours(start, end, timezone)} & set(settings.blackout_hours))
    if touched:
        why.append(f"the window touches blackout hours {touched} ({timezone})")
    target = invitation.target_kw(baseline_forecast_kw(invitation, s))
    if target is None:
        return [*why, "no consumption forecast to turn the percentage into kW"]
    if settings.max_kw is not None and target > settings.max_kw:
        why.append(f"{target:g} kW is more than max_kw {settings.max_kw:g}")
    flex = current_flexibility(invitation.site_id, invitation.start, invitation.duration_minutes, None, s,
                               lambda: moment)  # fmt: skip
    named = set(invitation.iots)
    offered = sum(
        d.kw or 0.0 for d in flex.devices
        if d.kind in ("reducible", "shiftable", "battery") and (not named or d.kind == "battery" or d.device_id in named)
    )  # fmt: skip
    if offered + 1e-9 < target:
        why.append(f"flexibility over the window is {offered:.3g} kW, less than the {target:.3g} kW asked")
    return why


def _local_hours(start: datetime, end: datetime, timezone: str) -> list[str]:
    zone, hours, moment = ZoneInfo(timezone), [], start
    while moment < end:
        hours.append(str(moment.astimezone(zone).hour))
        moment = (moment + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    return hours


def auto_respond(invitation: Invitation, s: Stores, moment: datetime) -> Invitation:
    """When auto-response is enabled: accept what the forecast flexibility covers within the limits,
    else decline with the reasons stored on the invitation."""
    settings = s.invitations.get_settings(invitation.site_id)
    if not settings.enabled or invitation.status != "pending":
        return invitation
    why = refusals(invitation, settings, s, moment)
    response: Answer = "NO" if why else "YES"
    to: Status = "declined" if why else "accepted"
    changed = move(invitation, to, moment, answer=response, answered_at=to_iso(moment), answered_by="auto",
                   reason="; ".join(why) or None)  # fmt: skip
    return _save(changed, s)


# ---------------------------------------------------------------- execution

DR: Any = "dr"  # the devices domain's control source for demand response (its highest priority)
START, END, MEASURE, CHECK = "start", "end", "measure", "check"
FAILED = ("failed", "rejected", "timed_out")  # a step whose device did not take its command
# The plan's commands are checked this long after the start: a device that rejected its command (or
# never answered) is replaced by the next one in order.
CHECK_AFTER = timedelta(minutes=2)
# The performance is measured this long after the end, once the last slot's readings are in (the
# device path batches readings through a queue).
MEASURE_AFTER = timedelta(minutes=5)
# The shed command of each device type that can be shed: off where the type takes it.
SHED_COMMAND = {t: "off" for t, commands in COMMAND_SETS.items() if "off" in commands}


def schedule_name(invitation_id: str, edge: str) -> str:
    """Scheduler names are at most 64 characters: 'ems-dr-' + the 22-character id + the edge."""
    return f"ems-dr-{invitation_id}-{edge}"


def schedule_payload(invitation: Invitation, edge: str) -> dict[str, Any]:
    return {"dr": edge, "site": invitation.site_id, "invitation_id": invitation.invitation_id}


def _follow_schedules(invitation: Invitation, s: Stores) -> None:
    """Accepted: one-time schedules at the start, the check after it, the end and the measurement (the same
    names each time, so a retry rewrites them); declined, cancelled, expired or measured: none left."""
    if s.schedules is None:
        return
    if invitation.status == "accepted":
        begin, end = parse_time(invitation.start, START), parse_time(invitation.end, END)
        edges = ((START, begin), (CHECK, begin + CHECK_AFTER), (END, end), (MEASURE, end + MEASURE_AFTER))
        for edge, at in edges:
            s.schedules.put_at(
                schedule_name(invitation.invitation_id, edge), at, schedule_payload(invitation, edge)
            )
    elif invitation.status in ("declined", "cancelled", "expired") or (
        invitation.status == "completed" and invitation.performance is not None
    ):
        for edge in (START, CHECK, END, MEASURE):
            s.schedules.delete(schedule_name(invitation.invitation_id, edge))


def command_id(invitation_id: str, edge: str, device_id: str) -> str:
    """One id per invitation, edge and device: a plan run twice sends each command once."""
    return f"dr-{invitation_id}-{edge}-{device_id}"


def plan_and_send(
    invitation: Invitation, target_kw: float | None, s: Stores, moment: datetime, done: Sequence[Step] = ()
) -> Execution:
    """The plan at the start: batteries first (no comfort cost), then the named devices (or every
    eligible one drawing power) by comfort priority, until the target is met. A device whose command is refused
    or rejected is replaced by the next one; what is still missing is the shortfall."""
    site = invitation.site_id
    flex = current_flexibility(site, None, invitation.duration_minutes, None, s, lambda: moment)
    devices = {d.device_id: d for d in _devices(site, s)}
    named = set(invitation.iots)
    steps: list[Step] = list(done)  # a re-plan keeps what was sent, and sends to none of those again
    remaining = (target_kw if target_kw is not None else 0.0) - sum(
        x.kw or 0.0 for x in steps if x.status not in FAILED
    )
    tried = {x.device_id for x in steps}
    for offer in flex.devices:
        if remaining <= 1e-9:
            break
        if offer.device_id in tried:
            continue
        if offer.kind == "battery":
            if not offer.kw or offer.battery_id is None or offer.device_id not in devices:
                continue
            kw = round(min(remaining, offer.kw), 3)
            command, params = "set_power", {"kw": -kw, "duration_minutes": invitation.duration_minutes}
            kind, kw_from = "battery", offer.source
        elif offer.kind in ("reducible", "shiftable") and (not named or offer.device_id in named):
            device = devices[offer.device_id]
            if device.device_type not in SHED_COMMAND:
                continue
            kw, kw_from = offer.kw or 0.0, offer.source
            if offer.source == "no power reading":
                kw, kw_from = device.rated_power_kw or 0.0, "rated power (no power reading)"
            if kw <= 0 and offer.device_id not in named:
                continue  # drawing nothing now: shedding it delivers nothing
            # A named device drawing nothing now is switched off all the same (at no kW): a
            # thermostat would otherwise start it during the event.
            command, params, kind = SHED_COMMAND[device.device_type], {}, "shed"
        else:
            continue
        step = _send(site, invitation.invitation_id, offer.device_id, kind, command, params, kw, kw_from, s)
        if kind == "shed" and _was_on(devices[offer.device_id], kw, s):
            step = step.model_copy(update={"restore": "on"})
        steps.append(step)
        if step.status not in FAILED:
            remaining -= kw
    planned = round(sum(x.kw or 0.0 for x in steps if x.status not in FAILED), 3)
    return Execution(
        invitation_id=invitation.invitation_id, status="active", target_kw=target_kw, planned_kw=planned,
        shortfall_kw=None if target_kw is None else round(max(target_kw - planned, 0.0), 3), steps=steps,
        started_at=to_iso(moment),
    )  # fmt: skip


def _was_on(device: Device, kw: float, s: Stores) -> bool:
    """Whether the load was on before the plan: its shadow's reported `power`, else drawing power."""
    if "on" not in COMMAND_SETS.get(device.device_type, ()):
        return False
    reported = s.shadows.shadow(device.thing_name).reported.get("power") if s.shadows is not None else None
    return reported == "on" if reported in ("on", "off") else kw > 0


def _send(site: str, invitation_id: str, device_id: str, kind: Any, command: str, params: dict[str, Any],
          kw: float, kw_from: str, s: Stores) -> Step:  # fmt: skip
    step = Step(device_id=device_id, kind=kind, command=command, params=params, kw=round(kw, 3), kw_from=kw_from,
                status="failed")  # fmt: skip
    if s.commands is None:
        return step.model_copy(update={"reason": "no device commands are wired"})
    the_id = command_id(invitation_id, START, device_id)
    try:
        sent = s.commands.send(site, device_id, command, params, DR, command_id=the_id)
    except DomainError as exc:
        return step.model_copy(update={"command_id": the_id, "reason": exc.message})
    if sent.status in ("rejected", "timed_out"):
        return step.model_copy(
            update={"command_id": sent.command_id, "reason": f"the device's command {sent.status}"}
        )
    return step.model_copy(update={"command_id": sent.command_id, "status": sent.status})


def _give_back(invitation: Invitation, step: Step, commands: DeviceCommands) -> None:
    """Release the device; when no other source holds it (so nobody's wish is sent again), a load
    that was drawing power is switched back on, in dr's name, and released again."""
    site = invitation.site_id
    try:
        released = commands.release(site, step.device_id, DR)
    except NotFound:
        return  # released already (a retried end)
    if step.restore is None or getattr(released, "controller", None) is not None:
        return
    with suppress(DomainError):  # gone or refused: left as it is, the next holder decides
        commands.send(site, step.device_id, step.restore, {}, DR,
                      command_id=command_id(invitation.invitation_id, END, step.device_id))  # fmt: skip
        commands.release(site, step.device_id, DR)


def _release(invitation: Invitation, s: Stores, moment: datetime) -> Execution | None:
    """Every device the plan commanded goes back to its next holder's wish (a battery to its plan,
    a load nobody else holds to on, when it was drawing power)."""
    execution = invitation.execution
    if execution is None:
        return None
    released = list(execution.released)
    for step in execution.steps:
        if step.status in FAILED or step.device_id in released or s.commands is None:
            continue
        _give_back(invitation, step, s.commands)
        released.append(step.device_id)
    return execution.model_copy(update={"released": released, "released_at": to_iso(moment)})


def start_event(site: str, invitation_id: str, s: Stores, now: Clock = utc_now) -> Invitation:
    """The start schedule: an accepted invitation's plan runs and it becomes active; a pending one
    expires; any other state is left as it is (a second run sends nothing)."""
    moment = now()
    invitation = _current(s.invitations.get(site, invitation_id), s, moment)
    if invitation.status != "accepted":
        return invitation
    execution = plan_and_send(
        invitation, invitation.target_kw(baseline_forecast_kw(invitation, s)), s, moment
    )
    return _save(move(invitation, "active", moment, execution=execution), s)


def check_event(site: str, invitation_id: str, s: Stores, now: Clock = utc_now) -> Invitation:
    """The check schedule (CHECK_AFTER the start): each command's state as its device answered;
    one rejected or timed out is replaced by the next device in order, the shortfall recomputed."""
    moment = now()
    invitation = s.invitations.get(site, invitation_id)
    execution = invitation.execution
    if invitation.status != "active" or execution is None or s.command_states is None:
        return invitation
    steps = []
    for step in execution.steps:
        if step.status == "pending" and step.command_id is not None:
            known = s.command_states.get(site, step.device_id, step.command_id)
            if known is not None and known.status != step.status:
                reason = getattr(known, "reason", None) or f"the device's command {known.status}"
                step = step.model_copy(
                    update={"status": known.status, "reason": reason if known.status in FAILED else None}
                )
        steps.append(step)
    if steps == execution.steps:
        return invitation
    replanned = execution
    if any(
        x.status in FAILED and y.status not in FAILED for x, y in zip(steps, execution.steps, strict=True)
    ):
        replanned = plan_and_send(invitation, execution.target_kw, s, moment, done=steps)
        replanned = replanned.model_copy(update={"started_at": execution.started_at})
    else:
        replanned = execution.model_copy(update={"steps": steps})
    return _save(invitation.model_copy(update={"execution": replanned, "version": invitation.version + 1}), s)


def end_event(site: str, invitation_id: str, s: Stores, now: Clock = utc_now) -> Invitation:
    """The end schedule: everything the plan took is released and the event is completed."""
    moment = now()
    invitation = _current(s.invitations.get(site, invitation_id), s, moment)
    if invitation.status != "active":
        return invitation
    return _save(move(invitation, "completed", moment, execution=_release(invitation, s, moment)), s)


def measure_event(site: str, invitation_id: str, s: Stores, now: Clock = utc_now) -> Invitation:
    """The measurement schedule (MEASURE_AFTER the end): the completed event's performance, once."""
    moment = now()
    invitation = s.invitations.get(site, invitation_id)
    if invitation.status != "completed" or invitation.performance is not None:
        return invitation
    measured = invitation.model_copy(update={"performance": measure(invitation, s, moment),
                                             "version": invitation.version + 1})  # fmt: skip
    return _save(measured, s)


def on_schedule(payload: dict[str, Any], s: Stores, now: Clock = utc_now) -> Invitation:
    edge, site, invitation_id = payload.get("dr"), str(payload.get("site")), str(payload.get("invitation_id"))
    if edge == START:
        return start_event(site, invitation_id, s, now)
    if edge == END:
        return end_event(site, invitation_id, s, now)
    if edge == MEASURE:
        return measure_event(site, invitation_id, s, now)
    if edge == CHECK:
        return check_event(site, invitation_id, s, now)
    raise Invalid(f"a DR schedule is for start, check, end or measure, not {edge!r}", "dr")


def execute(
    site: str,
    request: ExecuteIn,
    s: Stores,
    by: str = "user",
    now: Clock = utc_now,
    caller: Claims | None = None,
) -> Execution:
    """POST /load-reduction/execute: an accepted invitation's plan now, or an ad hoc target (an
    invitation of its own, accepted and active from now, released by its end schedule); its kW as
    `caller` may read them."""
    moment = now()
    plan = _execute(site, request, s, by, moment)
    shown = visible(s.invitations.get(site, plan.invitation_id), caller, moment).execution
    return shown if shown is not None else plan


def _execute(site: str, request: ExecuteIn, s: Stores, by: str, moment: datetime) -> Execution:
    if request.invitation_id is not None:
        invitation = _current(s.invitations.get(site, request.invitation_id), s, moment)
        if invitation.status == "active" and invitation.execution is not None:
            return invitation.execution  # ran already: nothing is sent twice
        if invitation.status != "accepted":
            raise Conflict(
                f"only an accepted invitation runs; this one is {invitation.status}", "invitation_id"
            )
        return _started(start_event(site, invitation.invitation_id, s, lambda: moment))
    if request.target_kw is None:
        raise Invalid("name an invitation_id, or a target_kw for an ad hoc reduction", "target_kw")
    _check_iots(site, request.iots, s)
    start = moment.replace(microsecond=0)
    stamp = to_iso(moment)
    invitation = Invitation(
        invitation_id=invitation_id(_ms(start), None, site), site_id=site, start=to_iso(start),
        end=to_iso(start + timedelta(minutes=request.duration_minutes)), duration_minutes=request.duration_minutes,
        load_kw=request.target_kw, iots=list(dict.fromkeys(request.iots)), received_at=stamp, answer="YES",
        answered_at=stamp, answered_by=by, status="accepted",
        history=[{"status": "pending", "at": stamp}, {"status": "accepted", "at": stamp}],
    )  # fmt: skip
    s.invitations.create(invitation)
    if s.schedules is not None:  # it starts now: its check, end and measurement are scheduled
        end = parse_time(invitation.end, END)
        for edge, at in ((CHECK, start + CHECK_AFTER), (END, end), (MEASURE, end + MEASURE_AFTER)):
            s.schedules.put_at(
                schedule_name(invitation.invitation_id, edge), at, schedule_payload(invitation, edge)
            )
    return _started(start_event(site, invitation.invitation_id, s, lambda: moment))


def _started(invitation: Invitation) -> Execution:
    assert invitation.execution is not None
    return invitation.execution


# ---------------------------------------------------------------- performance and benefits

GRID_METERS = ("meter", "main_meter")
HISTORY = timedelta(days=LOOKBACK_DAYS + 1)


def _grid_kw(site: str, start: datetime, end: datetime, s: Stores) -> dict[int, float]:
    """The site's grid import per 15-minute slot (mean kW, the sum over its grid meters) in
    [start, end); a slot is present only when every meter has readings in it."""
    if s.sites is None or s.rollups is None:
        return {}
    meters = [x.sensor_id for x in every(lambda t: s.sites.list_sensors(site, None, None, MAX_LIMIT, t))  # type: ignore[union-attr]
              if x.sensor_type in GRID_METERS]  # fmt: skip
    if not meters:
        return {}
    read = s.rollups.read_rollups(site, meters, POWER_METRIC, "15m", _ms(start), _ms(end))
    slots = set.intersection(*(set(read.get(m, {})) for m in meters))
    return {
        slot: sum(read[m][slot].sum / read[m][slot].count for m in meters) / 1000
        for slot in slots
        if all(read[m][slot].count for m in meters)
    }


@dataclass(frozen=True)
class _SiteFacts:
    """What a measurement needs of the site, read once: its zone, holiday country and currency."""

    timezone: str = "UTC"
    country: str | None = None
    currency: str = "EUR"


def _site_facts(site: str, s: Stores) -> _SiteFacts:
    if s.sites is None:
        return _SiteFacts()
    record = s.sites.get_site(site)
    return _SiteFacts(record.timezone, record.country, record.currency)


def _event_days(invitation: Invitation, timezone: str, s: Stores) -> set[date]:
    zone = ZoneInfo(timezone)
    return {
        parse_time(other.start, "start").astimezone(zone).date()
        for other in every(lambda t: s.invitations.page(invitation.site_id, True, MAX_LIMIT, t))
        if other.invitation_id != invitation.invitation_id and other.status in ("active", "completed")
    }


def measure(invitation: Invitation, s: Stores, moment: datetime) -> Performance:
    """Baseline, actual and delivered energy from the metered grid import; the benefit paid into the
    ledger keyed by the invitation (a retried completion writes it once)."""
    start, end = parse_time(invitation.start, "start"), parse_time(invitation.end, "end")
    notice = parse_time(invitation.received_at, "received_at")
    settings = s.invitations.get_settings(invitation.site_id)
    facts = _site_facts(invitation.site_id, s)
    timezone = facts.timezone
    slots = -(-invitation.duration_minutes // 15)
    history = _grid_kw(invitation.site_id, start - HISTORY, start + slots * SLOT, s)
    years = {start.year, (start - HISTORY).year}
    rule = baseline(start, slots, notice, timezone, history, _event_days(invitation, timezone, s),
                    public_holidays(facts.country or settings.country, years))  # fmt: skip
    actual = [history.get(ms) for ms in slot_starts(start, slots)]
    price = invitation.price_per_kwh if invitation.price_per_kwh is not None else settings.rate_per_kwh
    performance = Performance(baseline_days=[d.isoformat() for d in rule.days], adjustment=rule.adjustment,
                              note=rule.note, price_per_kwh=price, penalty_per_kwh=settings.penalty_per_kwh,
                              computed_at=to_iso(moment))  # fmt: skip
    if any(a is None for a in actual):
        return performance.model_copy(update={"note": "not every slot of the event was metered"})
    actual_kw = [a for a in actual if a is not None]
    performance = performance.model_copy(update={"actual_kw": [round(a, 4) for a in actual_kw],
                                                 "actual_kwh": round(sum(actual_kw) * SLOT_HOURS, 4)})  # fmt: skip
    if rule.slots_kw is None:
        return performance
    target_kw = invitation.target_kw(sum(rule.slots_kw) / len(rule.slots_kw))
    requested = None if target_kw is None else target_kw * invitation.duration_minutes / 60
    delivered = delivered_kwh(rule.slots_kw, actual_kw)
    benefit = _benefit(delivered, requested, price, settings.penalty_per_kwh)
    performance = performance.model_copy(update={
        "baseline_kw": [round(b, 4) for b in rule.slots_kw], "baseline_kwh": round(sum(rule.slots_kw) * SLOT_HOURS, 4),
        "delivered_kwh": round(delivered, 4), "requested_kwh": None if requested is None else round(requested, 4),
        "met": None if requested is None else delivered + 1e-9 >= requested,
        "benefit": None if benefit is None else float(benefit),
    })  # fmt: skip
    if benefit is not None and s.ledger is not None:
        s.ledger.post([LedgerEntry(
            site_id=invitation.site_id, source="dr", source_id=invitation.invitation_id, amount=benefit,
            currency=facts.currency, at=invitation.end, reading_ms=_ms(end),
            memo=f"demand response {invitation.start}: {delivered:.3f} kWh delivered",
        )])  # fmt: skip
    if performance.met is False:
        s.events.publish([DomainEvent(DR_SOURCE, SYSTEM_EVENT, {
            "site": invitation.site_id, "severity": "warning", "kind": "dr.under_delivered",
            "message": f"demand response event at {invitation.start} delivered {delivered:.2f} of {requested:.2f} kWh",
            "dedupe_key": invitation.invitation_id,
        })])  # fmt: skip
    return performance


def _benefit(
    delivered: float, requested: float | None, price: float | None, penalty: float | None
) -> Decimal | None:
    """price x delivered kWh (nothing for a negative delivery), less penalty x the kWh short of the
    request when a penalty is configured; exact to the cent's hundredth."""
    if price is None:
        return None
    amount = Decimal(str(price)) * Decimal(str(round(max(delivered, 0.0), 4)))
    if penalty is not None and requested is not None and delivered < requested:
        amount -= Decimal(str(penalty)) * Decimal(str(round(requested - delivered, 4)))
    return amount.quantize(Decimal("0.0001"))


def benefits(site: str, q: BenefitsQuery, caller: Claims, s: Stores, now: Clock = utc_now) -> Benefits:
    """The site's DR entries in the ledger: monthly sums, one page of entries, and the balance (the
    sum of every DR entry this token may see)."""
    moment = now()
    currency = s.sites.get_site(site).currency if s.sites is not None else "EUR"
    if s.ledger is None:
        return Benefits(currency=currency, balance=0.0, monthly=[], entries=[], count=0)
    cutoff = caller.embargo_cutoff_ms(moment)

    def seen(entry: LedgerEntry) -> bool:
        return entry.reading_ms is None or (
            caller.time_aggregation in FIFTEEN_MINUTE_GRAINS
            and (cutoff is None or entry.reading_ms <= cutoff)
        )

    mine = [e for e in every(lambda t: s.ledger.entries(site, MAX_LIMIT, t)) if e.source == "dr"]  # type: ignore[union-attr]
    shown = sorted((e for e in mine if seen(e) and e.currency == currency), key=lambda e: e.at, reverse=True)
    months: dict[str, list[Decimal]] = {}
    for entry in shown:
        months.setdefault(entry.at[:7], []).append(entry.amount)
    offset = int(q.next_token) if q.next_token and q.next_token.isdigit() else 0
    if q.next_token and not q.next_token.isdigit():
        raise BadRequest("not a token this API issued", "next_token")
    page = shown[offset : offset + q.limit]
    return Benefits(
        currency=currency, balance=float(sum((e.amount for e in shown), Decimal(0))),
        monthly=[BenefitMonth(month=m, amount=float(sum(v, Decimal(0))), events=len(v)) for m, v in sorted(months.items(), reverse=True)],
        entries=[e.model_dump(mode="json") for e in page], count=len(page),
        next_token=str(offset + q.limit) if offset + q.limit < len(shown) else None,
        withheld=sum(not seen(e) for e in mine),
    )  # fmt: skip
