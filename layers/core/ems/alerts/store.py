"""Alerts and their rules' state in one DynamoDB table (ALERTS_TABLE).

Keys: pk = site id; sk = "ALERT#<alert_id>" for an alert (alert ids sort by time, so a site's alerts
read newest first with one Query) or "RULE#<rule>" for what a rule is in: `since` (epoch ms a breach
began, while it waits for its for_minutes) and `open` (the id of its open alert). Opening an alert
writes the rule's `open` on the condition that it has none, in the same transaction as the alert: two
evaluations at once cannot open two. Clearing removes `open` on the condition that it is that alert.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from ems.alerts.models import Alert, AlertPage, EventsQuery
from ems.core.aws import client, error_code
from ems.core.errors import NotFound
from ems.core.pagination import decode_token, encode_token
from ems.core.settings import settings

ALERT = "ALERT#"
RULE = "RULE#"
BATCH_GET_KEYS = 100
# Fields that change after an alert is raised; the rest is kept as one JSON document.
MUTABLE = ("status", "cleared_at", "acknowledged", "acknowledged_at", "acknowledged_by")


@dataclass(frozen=True)
class RuleState:
    since_ms: int | None = None
    open_alert: str | None = None


def _lost_condition(exc: BaseException) -> bool:
    if error_code(exc) == "ConditionalCheckFailedException":
        return True
    reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
    return error_code(exc) == "TransactionCanceledException" and any(
        r.get("Code") == "ConditionalCheckFailed" for r in reasons
    )


def _key(site_id: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": site_id}, "sk": {"S": sk}}


def _alert(item: dict[str, Any]) -> Alert:
    doc = json.loads(item["doc"]["S"])
    doc["status"] = item.get("status", {}).get("S", "open")
    doc["acknowledged"] = item.get("acknowledged", {}).get("BOOL", False)
    for name in ("cleared_at", "acknowledged_at", "acknowledged_by"):
        doc[name] = item[name]["S"] if name in item else None
    return Alert.model_validate(doc)


class AlertStore:
    @property
    def _table(self) -> str:
        return settings().alerts_table

    # ------------------------------------------------------------ rules

    def rules(self, site_id: str, rules: list[str]) -> dict[str, RuleState]:
        keys = [_key(site_id, RULE + r) for r in sorted(set(rules))]
        found: dict[str, RuleState] = {}
        for start in range(0, len(keys), BATCH_GET_KEYS):
            request: dict[str, Any] = {self._table: {"Keys": keys[start : start + BATCH_GET_KEYS]}}
            while request:
                answer = client("dynamodb").batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self._table, []):
                    found[item["sk"]["S"].removeprefix(RULE)] = RuleState(
                        int(item["since"]["N"]) if "since" in item else None,
                        item["open"]["S"] if "open" in item else None,
                    )
                request = answer.get("UnprocessedKeys") or {}
                if request:
                    time.sleep(0.05)
        return found

    def start_breach(self, site_id: str, rule: str, since_ms: int) -> None:
        """Remember when a breach began, unless an earlier beginning is remembered already."""
        try:
            client("dynamodb").update_item(
                TableName=self._table, Key=_key(site_id, RULE + rule), UpdateExpression="SET since = :s",
                ConditionExpression="attribute_not_exists(since) OR since > :s",
                ExpressionAttributeValues={":s": {"N": str(since_ms)}},
            )  # fmt: skip
        except Exception as exc:
            if not _lost_condition(exc):
                raise

    def end_breach(self, site_id: str, rule: str) -> None:
        client("dynamodb").update_item(
            TableName=self._table, Key=_key(site_id, RULE + rule), UpdateExpression="REMOVE since"
        )

    def open(self, alert: Alert) -> bool:
        """Store `alert` as its rule's open alert; False when the rule has one already."""
        doc = alert.model_dump(mode="json", exclude=set(MUTABLE))
        try:
            client("dynamodb").transact_write_items(
                TransactItems=[
                    {"Update": {
                        "TableName": self._table, "Key": _key(alert.site_id, RULE + alert.rule),
                        "UpdateExpression": "SET #open = :id REMOVE since",
                        "ConditionExpression": "attribute_not_exists(#open)",
                        "ExpressionAttributeNames": {"#open": "open"},
                        "ExpressionAttributeValues": {":id": {"S": alert.alert_id}},
                    }},
                    {"Put": {
                        "TableName": self._table,
                        "Item": {**_key(alert.site_id, ALERT + alert.alert_id), "doc": {"S": json.dumps(doc)},
                                 "status": {"S": "open"}, "severity": {"S": alert.severity},
                                 "acknowledged": {"BOOL": False}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }},
                ]
            )  # fmt: skip
        except Exception as exc:
            if _lost_condition(exc):
                return False
            raise
        return True

    def clear(self, site_id: str, rule: str, alert_id: str, cleared_at: str) -> bool:
        """Clear the rule's open alert `alert_id`; False when it is not (any longer) the open one."""
        try:
            client("dynamodb").transact_write_items(
                TransactItems=[
                    {"Update": {
                        "TableName": self._table, "Key": _key(site_id, RULE + rule),
                        "UpdateExpression": "REMOVE #open, since", "ConditionExpression": "#open = :id",
                        "ExpressionAttributeNames": {"#open": "open"},
                        "ExpressionAttributeValues": {":id": {"S": alert_id}},
                    }},
                    {"Update": {
                        "TableName": self._table, "Key": _key(site_id, ALERT + alert_id),
                        "UpdateExpression": "SET #status = :cleared, cleared_at = :at",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": {":cleared": {"S": "cleared"}, ":at": {"S": cleared_at}},
                    }},
                ]
            )  # fmt: skip
        except Exception as exc:
            if _lost_condition(exc):
                return False
            raise
        return True

    # ------------------------------------------------------------ alerts

    def get(self, site_id: str, alert_id: str) -> Alert:
        item = (
            client("dynamodb")
            .get_item(TableName=self._table, Key=_key(site_id, ALERT + alert_id))
            .get("Item")
        )
        if item is None:
            raise NotFound(f"no event {alert_id!r} in this site", "id")
        return _alert(item)

    def acknowledge(self, site_id: str, alert_id: str, by: str, at: str) -> Alert:
        """Idempotent: a second acknowledgement keeps the first one's time and author."""
        try:
            answer = client("dynamodb").update_item(
                TableName=self._table, Key=_key(site_id, ALERT + alert_id),
                UpdateExpression="SET acknowledged = :yes, acknowledged_at = if_not_exists(acknowledged_at, :at), "
                "acknowledged_by = if_not_exists(acknowledged_by, :by)",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":yes": {"BOOL": True}, ":at": {"S": at}, ":by": {"S": by}},
                ReturnValues="ALL_NEW",
            )  # fmt: skip
        except Exception as exc:
            if _lost_condition(exc):
                raise NotFound(f"no event {alert_id!r} in this site", "id") from exc
            raise
        return _alert(answer["Attributes"])

    def list(self, site_id: str, q: EventsQuery, since_ms: int | None) -> AlertPage:
        """Newest first; filters run in DynamoDB (a page may hold fewer than `limit` then)."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {":pk": {"S": site_id}, ":from": {"S": f"{ALERT}{since_ms or 0:013d}"},
                                  ":to": {"S": ALERT + "~"}}  # fmt: skip
        filters = []
        if q.severity is not None:
            filters.append("severity = :severity")
            values[":severity"] = {"S": q.severity}
        if q.acknowledged is not None:
            filters.append("acknowledged = :ack")
            values[":ack"] = {"BOOL": q.acknowledged == "true"}
        if q.status is not None:
            filters.append("#status = :status")
            names["#status"] = "status"
            values[":status"] = {"S": q.status}
        request: dict[str, Any] = {
            "TableName": self._table, "KeyConditionExpression": "pk = :pk AND sk BETWEEN :from AND :to",
            "ExpressionAttributeValues": values, "ScanIndexForward": False, "Limit": q.limit,
        }  # fmt: skip
        if filters:
            request["FilterExpression"] = " AND ".join(filters)
        if names:
            request["ExpressionAttributeNames"] = names
        start = decode_token(q.next_token, ("pk", "sk"))
        if start is not None:
            request["ExclusiveStartKey"] = start
        answer = client("dynamodb").query(**request)
        items = [_alert(item) for item in answer.get("Items", [])]
        return AlertPage(
            items=items, count=len(items), next_token=encode_token(answer.get("LastEvaluatedKey"))
        )

    def count_open(self, site_id: str) -> int:
        """The site's open alerts (a count query: no item leaves DynamoDB)."""
        request: dict[str, Any] = {
            "TableName": self._table, "KeyConditionExpression": "pk = :pk AND begins_with(sk, :alert)",
            "FilterExpression": "#status = :open", "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":pk": {"S": site_id}, ":alert": {"S": ALERT}, ":open": {"S": "open"}},
            "Select": "COUNT",
        }  # fmt: skip
        total = 0
        while True:
            answer = client("dynamodb").query(**request)
            total += int(answer.get("Count", 0))
            if not answer.get("LastEvaluatedKey"):
                return total
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
