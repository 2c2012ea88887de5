"""Demand response's invitations and settings in their own DynamoDB table (DR_TABLE), one PynamoDB
model.

Keys: pk = "SITE#<site>"; sk = "INV#<invitation id>" (the id starts with the event's start in epoch
ms, so a Query lists invitations by their time, and those at one start share a prefix), and
"SETTINGS" for the auto-response settings. An invitation is its JSON document plus `version`: each
save is conditional on the version it was read at, so two writers never both win.
The start and end of an accepted event are one-time Scheduler schedules (EventBridgeSchedules).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, PutError
from pynamodb.models import Model

from ems.core.errors import Conflict, NotFound
from ems.core.pagination import Page, decode_token, encode_token
from ems.core.scheduler import delete_schedule, put_schedule
from ems.core.tables import EnvRegion, EnvTableName
from ems.dr.models import AutoResponse, Invitation

SITE, INVITATION, SETTINGS = "SITE#", "INV#", "SETTINGS"
LOST_CONDITION = "ConditionalCheckFailedException"


class DrItem(Model):
    class Meta:
        table_name = EnvTableName("DR_TABLE", "ems-dev-dr")
        region = EnvRegion()

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    doc = JSONAttribute()
    status = UnicodeAttribute(null=True)
    version = NumberAttribute(default=0)


def _item(invitation: Invitation) -> DrItem:
    return DrItem(
        SITE + invitation.site_id, INVITATION + invitation.invitation_id,
        doc=invitation.model_dump(mode="json"), status=invitation.status, version=invitation.version,
    )  # fmt: skip


def _invitation(item: DrItem) -> Invitation:
    return Invitation.model_validate({**item.doc, "version": int(item.version)})


class InvitationStore:
    def create(self, invitation: Invitation) -> tuple[Invitation, bool]:
        try:
            _item(invitation).save(condition=DrItem.pk.does_not_exist())
            return invitation, True
        except PutError as exc:
            if exc.cause_response_code != LOST_CONDITION:
                raise
        return self.get(invitation.site_id, invitation.invitation_id), False

    def get(self, site_id: str, invitation_id: str) -> Invitation:
        try:
            return _invitation(DrItem.get(SITE + site_id, INVITATION + invitation_id, consistent_read=True))
        except DoesNotExist as exc:
            raise NotFound(f"no invitation {invitation_id!r} in this site", "invitation_id") from exc

    def save(self, invitation: Invitation) -> Invitation:
        try:
            _item(invitation).save(condition=DrItem.version == invitation.version - 1)
        except PutError as exc:
            if exc.cause_response_code != LOST_CONDITION:
                raise
            raise Conflict(
                f"invitation {invitation.invitation_id} changed meanwhile: try again", "version"
            ) from exc
        return invitation

    def page(self, site_id: str, newest_first: bool, limit: int, next_token: str | None) -> Page[Invitation]:
        results = DrItem.query(
            SITE + site_id, DrItem.sk.startswith(INVITATION), scan_index_forward=not newest_first,
            page_size=limit, limit=limit, last_evaluated_key=decode_token(next_token, ("pk", "sk")),
        )  # fmt: skip
        items = [_invitation(item) for item in results]
        return Page(items=items, count=len(items), next_token=encode_token(results.last_evaluated_key))

    def at_start(self, site_id: str, start_ms: int) -> list[Invitation]:
        prefix = f"{INVITATION}{start_ms:013d}-"
        return [_invitation(item) for item in DrItem.query(SITE + site_id, DrItem.sk.startswith(prefix))]

    def get_settings(self, site_id: str) -> AutoResponse:
        try:
            return AutoResponse.model_validate(DrItem.get(SITE + site_id, SETTINGS).doc)
        except DoesNotExist:
            return AutoResponse()

    def put_settings(self, site_id: str, settings: AutoResponse) -> AutoResponse:
        DrItem(SITE + site_id, SETTINGS, doc=settings.model_dump(mode="json")).save()
        return settings


class EventBridgeSchedules:
    """Schedules of ems.dr.ports: one-time `at()` schedules in the default group whose target is the
    DR function (DR_FUNCTION_ARN) through the template's execution role (DR_SCHEDULER_ROLE_ARN).
    Putting a name again updates it; deleting a missing one is no error."""

    def put_at(self, name: str, at: datetime, payload: dict[str, Any]) -> None:
        put_schedule(name, f"at({at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S')})",
                     os.environ["DR_FUNCTION_ARN"], os.environ["DR_SCHEDULER_ROLE_ARN"], json.dumps(payload))  # fmt: skip

    def delete(self, name: str) -> None:
        delete_schedule(name)
