"""In-memory fakes of ems.dr.ports (InvitationStore, BatteryFleet), for the unit tier, with the rules
of ems.dr.store: an id written once (a second create returns the first), a save only over the
version it was read at (else Conflict), lists in key order a page at a time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ems.core.errors import Conflict, NotFound
from ems.core.pagination import Page
from ems.dr.models import AutoResponse, Invitation
from tests.support.fakes import _after, _page


class MemoryInvitations:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], Invitation] = {}
        self.settings: dict[str, AutoResponse] = {}

    def create(self, invitation: Invitation) -> tuple[Invitation, bool]:
        key = (invitation.site_id, invitation.invitation_id)
        if key in self.items:
            return self.items[key].model_copy(deep=True), False
        self.items[key] = invitation.model_copy(deep=True)
        return invitation, True

    def get(self, site_id: str, invitation_id: str) -> Invitation:
        found = self.items.get((site_id, invitation_id))
        if found is None:
            raise NotFound(f"no invitation {invitation_id!r} in this site", "invitation_id")
        return found.model_copy(deep=True)

    def save(self, invitation: Invitation) -> Invitation:
        held = self.get(invitation.site_id, invitation.invitation_id)
        if held.version != invitation.version - 1:
            raise Conflict(f"invitation {invitation.invitation_id} changed meanwhile: try again", "version")
        self.items[(invitation.site_id, invitation.invitation_id)] = invitation.model_copy(deep=True)
        return invitation

    def page(self, site_id: str, newest_first: bool, limit: int, next_token: str | None) -> Page[Invitation]:
        keyed = [
            (f"INV#{i}", inv.model_copy(deep=True)) for (s, i), inv in self.items.items() if s == site_id
        ]
        return _page(
            keyed, limit, _after(next_token, ("pk", "sk"), "sk"), lambda sk: {"pk": f"SITE#{site_id}", "sk": sk},
            newest_first=newest_first,
        )  # fmt: skip

    def at_start(self, site_id: str, start_ms: int) -> list[Invitation]:
        prefix = f"{start_ms:013d}-"
        return [inv for (s, i), inv in sorted(self.items.items()) if s == site_id and i.startswith(prefix)]

    def get_settings(self, site_id: str) -> AutoResponse:
        return self.settings.get(site_id, AutoResponse())

    def put_settings(self, site_id: str, settings: AutoResponse) -> AutoResponse:
        self.settings[site_id] = settings
        return settings


@dataclass(frozen=True)
class Battery:
    """ems.batteries.models.DischargeableBattery's shape."""

    battery_id: str
    device_id: str | None
    soc_pct: float | None
    available_kw: float
    available_kwh: float


class FixedFleet:
    def __init__(self, batteries: Sequence[Battery] = ()) -> None:
        self.batteries = list(batteries)
        self.asked: list[tuple[str, int]] = []

    def dischargeable(self, site: str, window_minutes: int) -> Sequence[Battery]:
        self.asked.append((site, window_minutes))
        return self.batteries


class MemorySchedules:
    """Schedules of ems.dr.ports: name -> (at, payload); a put again replaces, a delete of a missing one is quiet."""

    def __init__(self) -> None:
        self.schedules: dict[str, tuple[datetime, dict[str, Any]]] = {}

    def put_at(self, name: str, at: datetime, payload: dict[str, Any]) -> None:
        self.schedules[name] = (at, dict(payload))

    def delete(self, name: str) -> None:
        self.schedules.pop(name, None)
