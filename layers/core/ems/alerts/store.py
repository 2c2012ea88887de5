"""Alerts and their rules' state in one DynamoDB table (ALERTS_TABLE), through one PynamoDB model.

Keys: pk = site id; sk = "ALERT#<alert_id>" for an alert (alert ids sort by time, so a site's alerts
read newest first with one Query) or "RULE#<rule>" for what a rule is in: `since` (epoch ms a breach
began, while it waits for its for_minutes) and `open` (the id of its open alert). Opening an alert
writes the rule's `open` on the condition that it has none, in the same transaction as the alert: two
evaluations at once cannot open two. Clearing removes `open` on the condition that it is that alert.
A lost condition is told by its error code (ConditionalCheckFailed), never by the message.
"""

from __future__ import annotations

from dataclasses import dataclass

from pynamodb.attributes import BooleanAttribute, JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from ems.alerts.models import Alert, AlertPage, EventsQuery
from ems.core.errors import NotFound
from ems.core.pagination import decode_token, encode_token
from ems.core.tables import EnvRegion, EnvTableName

ALERT = "ALERT#"
RULE = "RULE#"
# Fields that change after an alert is raised; the rest is kept as one JSON document.
MUTABLE = ("status", "cleared_at", "acknowledged", "acknowledged_at", "acknowledged_by")
LOST_CONDITION = "ConditionalCheckFailedException"


@dataclass(frozen=True)
class RuleState:
    since_ms: int | None = None
    open_alert: str | None = None


class AlertItem(Model):
    """An alert (sk "ALERT#...") or a rule's state (sk "RULE#..."): one model, so one client."""

    class Meta:
        table_name = EnvTableName("ALERTS_TABLE", "ems-dev-alerts")
        region = EnvRegion()

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    # rule
    since = NumberAttribute(null=True)
    open_alert = UnicodeAttribute(attr_name="open", null=True)
    # alert
    doc = JSONAttribute(null=True)
    status = UnicodeAttribute(null=True)
    severity = UnicodeAttribute(null=True)
    acknowledged = BooleanAttribute(null=True)
    cleared_at = UnicodeAttribute(null=True)
    acknowledged_at = UnicodeAttribute(null=True)
    acknowledged_by = UnicodeAttribute(null=True)


def _lost_condition(exc: TransactWriteError) -> bool:
    return exc.cause_response_code == "TransactionCanceledException" and any(
        reason is not None and reason.code == "ConditionalCheckFailed" for reason in exc.cancellation_reasons
    )


def _transaction() -> TransactWrite:
    """A transaction on the model's own connection (no second DynamoDB client)."""
    return TransactWrite(connection=AlertItem._get_connection().connection)


def _alert(item: AlertItem) -> Alert:
    doc = dict(item.doc)
    doc["status"] = item.status or "open"
    doc["acknowledged"] = bool(item.acknowledged)
    doc.update(
        cleared_at=item.cleared_at, acknowledged_at=item.acknowledged_at, acknowledged_by=item.acknowledged_by
    )
    return Alert.model_validate(doc)


class AlertStore:
    # ------------------------------------------------------------ rules

    def rules(self, site_id: str, rules: list[str]) -> dict[str, RuleState]:
        """BatchGetItem, 100 keys a call, unprocessed keys asked again (PynamoDB's batch_get)."""
        keys = [(site_id, RULE + r) for r in sorted(set(rules))]
        return {
            item.sk.removeprefix(RULE): RuleState(
                None if item.since is None else int(item.since), item.open_alert
            )
            for item in AlertItem.batch_get(keys)
        }

    def start_breach(self, site_id: str, rule: str, since_ms: int) -> None:
        """Remember when a breach began, unless an earlier beginning is remembered already."""
        try:
            AlertItem(site_id, RULE + rule).update(
                actions=[AlertItem.since.set(since_ms)],
                condition=AlertItem.since.does_not_exist() | (AlertItem.since > since_ms),
            )
        except UpdateError as exc:
            if exc.cause_response_code != LOST_CONDITION:
                raise

    def end_breach(self, site_id: str, rule: str) -> None:
        AlertItem(site_id, RULE + rule).update(actions=[AlertItem.since.remove()])

    def open(self, alert: Alert) -> bool:
        """Store `alert` as its rule's open alert; False when the rule has one already."""
        doc = alert.model_dump(mode="json", exclude=set(MUTABLE))
        item = AlertItem(
            alert.site_id, ALERT + alert.alert_id, doc=doc, status="open", severity=alert.severity,
            acknowledged=False,
        )  # fmt: skip
        try:
            with _transaction() as tx:
                tx.update(
                    AlertItem(alert.site_id, RULE + alert.rule),
                    actions=[AlertItem.open_alert.set(alert.alert_id), AlertItem.since.remove()],
                    condition=AlertItem.open_alert.does_not_exist(),
                )
                tx.save(item, condition=AlertItem.pk.does_not_exist())
        except TransactWriteError as exc:
            if _lost_condition(exc):
                return False
            raise
        return True

    def clear(self, site_id: str, rule: str, alert_id: str, cleared_at: str) -> bool:
        """Clear the rule's open alert `alert_id`; False when it is not (any longer) the open one."""
        try:
            with _transaction() as tx:
                tx.update(
                    AlertItem(site_id, RULE + rule),
                    actions=[AlertItem.open_alert.remove(), AlertItem.since.remove()],
                    condition=AlertItem.open_alert == alert_id,
                )
                tx.update(
                    AlertItem(site_id, ALERT + alert_id),
                    actions=[AlertItem.status.set("cleared"), AlertItem.cleared_at.set(cleared_at)],
                )
        except TransactWriteError as exc:
            if _lost_condition(exc):
                return False
            raise
        return True

    # ------------------------------------------------------------ alerts

    def get(self, site_id: str, alert_id: str) -> Alert:
        try:
            return _alert(AlertItem.get(site_id, ALERT + alert_id))
        except DoesNotExist as exc:
            raise NotFound(f"no event {alert_id!r} in this site", "id") from exc

    def acknowledge(self, site_id: str, alert_id: str, by: str, at: str) -> Alert:
        """Idempotent: a second acknowledgement keeps the first one's time and author."""
        item = AlertItem(site_id, ALERT + alert_id)
        try:
            item.update(
                actions=[
                    AlertItem.acknowledged.set(True),
                    AlertItem.acknowledged_at.set(AlertItem.acknowledged_at | at),
                    AlertItem.acknowledged_by.set(AlertItem.acknowledged_by | by),
                ],
                condition=AlertItem.pk.exists(),
            )
        except UpdateError as exc:
            if exc.cause_response_code == LOST_CONDITION:
                raise NotFound(f"no event {alert_id!r} in this site", "id") from exc
            raise
        return _alert(item)  # update() loaded the item's new attributes (ReturnValues ALL_NEW)

    def list(self, site_id: str, q: EventsQuery, since_ms: int | None) -> AlertPage:
        """Newest first; one Query a page, filters run in DynamoDB (a page may hold fewer than
        `limit` then)."""
        filters: Condition | None = None
        if q.severity is not None:
            filters &= AlertItem.severity == q.severity
        if q.acknowledged is not None:
            filters &= AlertItem.acknowledged == (q.acknowledged == "true")
        if q.status is not None:
            filters &= AlertItem.status == q.status
        results = AlertItem.query(
            site_id, AlertItem.sk.between(f"{ALERT}{since_ms or 0:013d}", ALERT + "~"), filter_condition=filters,
            scan_index_forward=False, page_size=q.limit, last_evaluated_key=decode_token(q.next_token, ("pk", "sk")),
        )  # fmt: skip
        page = next(results.page_iter)  # one page: a PynamoDB `limit` would query on to fill it
        items = [_alert(AlertItem.from_raw_data(raw)) for raw in page.get("Items", [])]
        return AlertPage(
            items=items, count=len(items), next_token=encode_token(results.page_iter.last_evaluated_key)
        )

    def count_open(self, site_id: str) -> int:
        """The site's open alerts (a count query: no item leaves DynamoDB)."""
        return AlertItem.count(
            site_id, AlertItem.sk.startswith(ALERT), filter_condition=AlertItem.status == "open"
        )
