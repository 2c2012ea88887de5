"""Batteries in one DynamoDB table (BATTERIES_TABLE), through one PynamoDB model.

Keys: pk = site id; sk = "BATTERY#<battery_id>" (the record, one JSON document). Creating is
conditional on the key being new, replacing on it existing; a lost condition is told by its error
code (ConditionalCheckFailed), never by the message.
"""

from __future__ import annotations

from pynamodb.attributes import JSONAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, PutError
from pynamodb.models import Model

from ems.batteries.models import Battery
from ems.core.errors import Conflict, NotFound
from ems.core.pagination import Page, decode_token, encode_token
from ems.core.tables import EnvRegion, EnvTableName

BATTERY = "BATTERY#"
LOST_CONDITION = "ConditionalCheckFailedException"
PAGE_KEYS = ("pk", "sk")


class BatteryItem(Model):
    class Meta:
        table_name = EnvTableName("BATTERIES_TABLE", "ems-dev-batteries")
        region = EnvRegion()

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    doc = JSONAttribute(null=True)


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
