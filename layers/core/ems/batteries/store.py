"""Batteries in one DynamoDB table (BATTERIES_TABLE), through one PynamoDB model.

Keys: pk = site id; sk = "BATTERY#<battery_id>" (the record, one JSON document) or "PLAN#<battery_id>"
(its applied plan: the latest result and its runs, the last MAX_RUNS of them, with a `version` that
conditions every write of a run, so two ticks at once cannot lose one). Creating is conditional on
the key being new, replacing on it existing; a lost condition is told by its error code
(ConditionalCheckFailed), never by the message.

The re-plan schedules are EventBridge Scheduler schedules whose target is the optimiser's function
(OPTIMIZER_FUNCTION_ARN) through the template's role (OPTIMIZER_SCHEDULER_ROLE_ARN).
"""

from __future__ import annotations

import os

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DeleteError, DoesNotExist, PutError
from pynamodb.models import Model

from ems.batteries.models import AppliedPlan, Battery, PlanResult, PlanRun
from ems.core.errors import Conflict, NotFound
from ems.core.pagination import Page, decode_token, encode_token
from ems.core.scheduler import delete_schedule, put_schedule
from ems.core.tables import EnvRegion, EnvTableName

BATTERY = "BATTERY#"
PLAN = "PLAN#"
# A run is about 400 bytes: a day of 15-minute runs stays far below DynamoDB's 400 KB an item.
MAX_RUNS = 96
LOST_CONDITION = "ConditionalCheckFailedException"
PAGE_KEYS = ("pk", "sk")


class BatteryItem(Model):
    class Meta:
        table_name = EnvTableName("BATTERIES_TABLE", "ems-dev-batteries")
        region = EnvRegion()

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    doc = JSONAttribute(null=True)
    version = NumberAttribute(null=True)


def _battery(item: BatteryItem) -> Battery:
    return Battery.model_validate(item.doc)


def _missing(battery_id: str) -> NotFound:
    return NotFound(f"no battery {battery_id!r} in this site", "battery_id")


class BatteryStore:
    def create(self, battery: Battery) -> Battery:
        try:
            BatteryItem(
                battery.site_id, BATTERY + battery.battery_id, doc=battery.model_dump(mode="json")
            ).save(condition=BatteryItem.pk.does_not_exist())
        except PutError as exc:
            if exc.cause_response_code == LOST_CONDITION:
                raise Conflict(f"battery {battery.battery_id!r} exists in this site", "battery_id") from exc
            raise
        return battery

    def get(self, site_id: str, battery_id: str) -> Battery:
        try:
            return _battery(BatteryItem.get(site_id, BATTERY + battery_id, consistent_read=True))
        except DoesNotExist as exc:
            raise _missing(battery_id) from exc

    def replace(self, battery: Battery) -> Battery:
        try:
            BatteryItem(
                battery.site_id, BATTERY + battery.battery_id, doc=battery.model_dump(mode="json")
            ).save(condition=BatteryItem.pk.exists())
        except PutError as exc:
            if exc.cause_response_code == LOST_CONDITION:
                raise _missing(battery.battery_id) from exc
            raise
        return battery

    def delete(self, site_id: str, battery_id: str) -> None:
        self.get(site_id, battery_id)
        BatteryItem(site_id, BATTERY + battery_id).delete()

    def page(self, site_id: str, limit: int, next_token: str | None) -> Page[Battery]:
        results = BatteryItem.query(
            site_id, BatteryItem.sk.startswith(BATTERY), limit=limit,
            last_evaluated_key=decode_token(next_token, PAGE_KEYS),
        )  # fmt: skip
        items = [_battery(item) for item in results]
        return Page[Battery](
            items=items, count=len(items), next_token=encode_token(results.last_evaluated_key)
        )


class PlanStore:
    """PlanRecords of ems.batteries.ports."""

    def put_plan(self, plan: AppliedPlan) -> None:
        BatteryItem(plan.site_id, PLAN + plan.battery_id, doc=plan.model_dump(mode="json"), version=1).save()

    def _item(self, site_id: str, battery_id: str) -> BatteryItem:
        try:
            return BatteryItem.get(site_id, PLAN + battery_id, consistent_read=True)
        except DoesNotExist as exc:
            raise NotFound(f"battery {battery_id!r} has no applied plan", "battery_id") from exc

    def get_plan(self, site_id: str, battery_id: str) -> AppliedPlan:
        return AppliedPlan.model_validate(self._item(site_id, battery_id).doc)

    def add_run(self, site_id: str, battery_id: str, run: PlanRun, latest: PlanResult) -> bool:
        for _ in range(5):  # lost to a concurrent run: read again
            try:
                item = self._item(site_id, battery_id)
            except NotFound:
                return False
            plan = AppliedPlan.model_validate(item.doc)
            plan = plan.model_copy(update={"latest": latest, "runs": [*plan.runs, run][-MAX_RUNS:]})
            version = int(item.version or 1)
            try:
                BatteryItem(
                    site_id, PLAN + battery_id, doc=plan.model_dump(mode="json"), version=version + 1
                ).save(condition=BatteryItem.version == version)
                return True
            except PutError as exc:
                if exc.cause_response_code != LOST_CONDITION:
                    raise
        return False

    def delete_plan(self, site_id: str, battery_id: str) -> None:
        try:
            BatteryItem(site_id, PLAN + battery_id).delete(condition=BatteryItem.pk.exists())
        except DeleteError as exc:
            if exc.cause_response_code == LOST_CONDITION:
                raise NotFound(f"battery {battery_id!r} has no applied plan", "battery_id") from exc
            raise

    def plans(self, site_id: str) -> list[AppliedPlan]:
        return [
            AppliedPlan.model_validate(i.doc)
            for i in BatteryItem.query(site_id, BatteryItem.sk.startswith(PLAN))
        ]


class OptimizerScheduler:
    """Scheduler of ems.batteries.ports: schedules in the default group invoking the optimiser's function."""

    def put(self, name: str, expression: str, payload: str) -> None:
        put_schedule(name, expression, os.environ["OPTIMIZER_FUNCTION_ARN"],
                     os.environ["OPTIMIZER_SCHEDULER_ROLE_ARN"], payload)  # fmt: skip

    def delete(self, name: str) -> None:
        delete_schedule(name)
