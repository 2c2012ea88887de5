"""Demand response (API.md "Demand response"): invitations and their life cycle, auto-response
settings and flexibility (no I/O).

An invitation asks the site to reduce load from `start` for `duration_minutes`, by kWh over the
duration, by kW, or by a percentage of the baseline. Its life cycle (`TRANSITIONS`):
pending -> accepted | declined (an answer, changeable until the start) -> active (at the start)
-> completed (at the end); cancelled from pending, accepted, declined or active (until the end);
expired when still pending at its start.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from ems.core.ids import USER_ID_PATTERN
from ems.core.models import Model

DR_SOURCE = "ems.dr"
# An invitation was created or changed state: the realtime function pushes it on `dr`.
INVITATION_CHANGED = "InvitationChanged"
SYSTEM_EVENT = "SystemEvent"  # what the alerts function consumes (ems.alerts.models.SYSTEM_EVENT)

Status = Literal["pending", "accepted", "declined", "active", "completed", "cancelled", "expired"]
Answer = Literal["YES", "NO"]
TERMINAL: frozenset[Status] = frozenset({"completed", "cancelled", "expired"})
# Each state and the states it may move to.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    "pending": frozenset({"accepted", "declined", "cancelled", "expired"}),
    "accepted": frozenset({"declined", "active", "cancelled"}),
    "declined": frozenset({"accepted", "cancelled"}),
    "active": frozenset({"completed", "cancelled"}),
    "completed": frozenset(),
    "cancelled": frozenset(),
    "expired": frozenset(),
}
MAX_DURATION_MINUTES = 24 * 60
REDUCTIONS = ("load_kwh", "load_kw", "load_percentage")


class InvitationIn(Model):
    """POST /demand-response/invitations/send: the seed's body, and API.md's other reductions."""

    model_config = ConfigDict(extra="forbid")

    event_time: str | int | float
    duration_minutes: int = Field(default=60, ge=15, le=MAX_DURATION_MINUTES)
    load_kwh: float | None = Field(default=None, gt=0, le=1_000_000)
    load_kw: float | None = Field(default=None, gt=0, le=1_000_000)
    load_percentage: float | None = Field(default=None, gt=0, le=100)
    price_per_kwh: float | None = Field(default=None, ge=0, le=100)
    iots: list[str] = Field(default_factory=list, max_length=200)
    request_id: str | None = Field(default=None, pattern=USER_ID_PATTERN)  # the sender's own id: retries

    def reductions(self) -> list[str]:
        return [n for n in REDUCTIONS if getattr(self, n) is not None]


class Performance(Model):
    """What was delivered, against the baseline, once the event completed."""

    baseline_kwh: float | None = None  # None: fewer than 3 comparable days
    actual_kwh: float | None = None
    delivered_kwh: float | None = None
    requested_kwh: float | None = None
    met: bool | None = None
    baseline_days: list[str] = Field(default_factory=list)
    adjustment: float | None = None  # the day-of factor applied, within [0.8, 1.2]
    note: str | None = None
    benefit: float | None = None
    price_per_kwh: float | None = None
    penalty_per_kwh: float | None = None
    baseline_kw: list[float] = Field(default_factory=list)  # per 15-minute slot
    actual_kw: list[float] = Field(default_factory=list)
    computed_at: str | None = None


class Step(Model):
    """One command of an event's plan: a battery's discharge or a device shed."""

    device_id: str
    kind: Literal["battery", "shed"]
    command: str
    params: dict[str, Any]
    kw: float | None  # what it is expected to take off the grid (None: withheld for this token)
    kw_from: str  # the reading (or rated power) kw comes from
    command_id: str | None = None
    status: str  # the command's state when sent, or "failed"
    reason: str | None = None
    # What the device is told at the end when nobody else holds it: "on" for a load that was on
    # (its shadow's reported power, else drawing power by its reading or rated power); None: left.
    restore: str | None = None


class Execution(Model):
    """POST /load-reduction/execute, and the plan an event ran at its start."""

    invitation_id: str
    status: Status
    target_kw: float | None
    planned_kw: float | None
    shortfall_kw: float | None
    steps: list[Step]
    started_at: str
    released_at: str | None = None
    released: list[str] = Field(default_factory=list)


class ExecuteIn(Model):
    model_config = ConfigDict(extra="forbid")

    invitation_id: str | None = None
    target_kw: float | None = Field(default=None, gt=0, le=1_000_000)
    duration_minutes: int = Field(default=60, ge=15, le=MAX_DURATION_MINUTES)
    iots: list[str] = Field(default_factory=list, max_length=200)


class Invitation(Model):
    invitation_id: str  # "<start epoch ms, 13 digits>-<8 hex>": sorts by the event's time
    site_id: str
    status: Status = "pending"
    start: str
    end: str
    duration_minutes: int
    load_kwh: float | None = None
    load_kw: float | None = None
    load_percentage: float | None = None
    price_per_kwh: float | None = None
    iots: list[str] = Field(default_factory=list)
    received_at: str
    answer: Answer | None = None
    answered_at: str | None = None
    answered_by: str | None = None  # "auto" or the token's subject
    reason: str | None = None  # why it was declined or cancelled
    history: list[dict[str, Any]] = Field(default_factory=list)  # [{status, at}]
    execution: Execution | None = None
    performance: Performance | None = None
    withheld: str | None = None  # why execution's kW or the performance are left out for this token
    version: int = 0

    def target_kw(self, baseline_kw: float | None = None) -> float | None:
        """The reduction as a mean kW over the duration (a percentage needs the baseline)."""
        if self.load_kw is not None:
            return self.load_kw
        if self.load_kwh is not None:
            return self.load_kwh * 60 / self.duration_minutes
        if self.load_percentage is not None and baseline_kw is not None:
            return baseline_kw * self.load_percentage / 100
        return None


class Sent(Model):
    invitation_id: str
    status: Status
    reason: str | None = None


class AnswerIn(Model):
    model_config = ConfigDict(extra="forbid")

    invitation_id: str | None = None
    event_time: str | int | float | None = None
    response: str


class CancelIn(Model):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=500)


class ListQuery(Model):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=200)
    next_token: str | None = None


class InvitationPage(Model):
    items: list[Invitation]
    count: int
    next_token: str | None = None


class AutoResponse(Model):
    """GET, PUT /demand-response/auto-response."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    max_kw: float | None = Field(default=None, gt=0, le=1_000_000)
    min_notice_minutes: int | None = Field(default=None, ge=0, le=7 * 24 * 60)
    blackout_hours: list[Annotated[int, Field(ge=0, le=23)]] = Field(
        default_factory=list, max_length=24
    )  # local hours
    rate_per_kwh: float | None = Field(default=None, ge=0, le=100)
    penalty_per_kwh: float | None = Field(default=None, ge=0, le=100)
    # ISO 3166 alpha-2: whose public holidays the baseline leaves out when the site names no
    # `country` of its own (the site's wins; kept for settings stored before sites carried one).
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")


class DeviceFlexibility(Model):
    device_id: str
    device_type: str
    comfort_priority: int  # 1 is shed first; batteries 0 (no comfort cost)
    instruction: str  # over the window: participation, shifting or no-participation
    kind: Literal["reducible", "shiftable", "battery", "none"]
    kw: float | None
    kwh: float | None  # kW over the window (a shiftable load's energy still owed to it)
    source: str  # what the figure came from
    battery_id: str | None = None


class Flexibility(Model):
    """GET /demand-response/flexibility/current (now, or over a future window)."""

    start: str
    duration_minutes: int
    total_kw: float | None
    reducible_kw: float | None
    shiftable_kw: float | None
    shiftable_kwh: float | None
    battery_kw: float
    devices: list[DeviceFlexibility]
    withheld: str | None = None  # why the devices' figures are left out for this token


class FlexibilityQuery(Model):
    model_config = ConfigDict(extra="forbid")

    start: str | None = None
    duration_minutes: int = Field(default=60, ge=15, le=MAX_DURATION_MINUTES)


class HorizonQuery(Model):
    model_config = ConfigDict(extra="forbid")

    horizon_hours: int = Field(default=24, ge=1, le=48)


class FlexibilityHour(Model):
    start: str
    total_kw: float | None
    reducible_kw: float | None
    shiftable_kw: float | None
    battery_kw: float


class FlexibilityForecast(Model):
    """GET /forecast/flexibility: each hour of the horizon."""

    horizon_hours: int
    basis: str
    hours: list[FlexibilityHour]
    withheld: str | None = None


class BenefitMonth(Model):
    month: str  # YYYY-MM of the event's end
    amount: float
    events: int


class BenefitsQuery(Model):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=200)
    next_token: str | None = None


class Benefits(Model):
    """GET /demand-response/benefits: monthly sums, the detailed entries and the balance (the sum of
    every DR entry of the site)."""

    currency: str
    balance: float
    monthly: list[BenefitMonth]
    entries: list[dict[str, Any]]
    count: int
    next_token: str | None = None
    withheld: int = 0  # entries derived from readings beyond this token's limits
