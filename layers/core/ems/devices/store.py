"""Devices, their commands, controllers and hourly plan in one DynamoDB table (DEVICES_TABLE), and
IoT Core's thing registry, shadows and publishing (`iot`, `iot-data`).

Keys: pk = site id; sk = "DEVICE#<id>" (the device), "CMD#<device>#<command_id>" (a command),
"CTRL#<device>#<source>" (a controller's wish), "PLAN" (the hourly plan). pk "THING#<thing name>",
sk "THING" maps a thing name (and MQTT client id) back to its site and device.
Index gsi1 (gsi1pk "<site>#<device>", gsi1sk "<issued ms>#<command_id>") lists a device's commands
newest first; index open (open_pk "PENDING", open_sk "<expires ms>#...") holds pending commands only
(sparse: closing removes the attribute), so the stale check reads what expired and nothing else.
A command is created on the condition that its key is new (the caller's command_id is idempotent)
and closed on the condition that it is still pending; presence moves only forward in time.
"""

from __future__ import annotations

import json
import os
from typing import Any

from pynamodb.attributes import BooleanAttribute, JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DeleteError, DoesNotExist, PutError, UpdateError
from pynamodb.expressions.update import Action
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from ems.core.aws import client, error_code
from ems.core.clock import iso_ms, parse_time
from ems.core.errors import Conflict, NotFound
from ems.core.pagination import Page, decode_token, encode_token
from ems.core.scheduler import delete_schedule, put_schedule
from ems.core.tables import EnvRegion, EnvTableName
from ems.devices.automation import EdgeState
from ems.devices.models import Command, Control, Device, Firing, Rule, Schedule, Shadow

DEVICE = "DEVICE#"
COMMAND = "CMD#"
CONTROL = "CTRL#"
PLAN = "PLAN"
THING = "THING#"
RULE = "RULE#"
FIRING = "FIRE#"
SCHEDULE = "SCHED#"
PENDING = "PENDING"
LOST_CONDITION = "ConditionalCheckFailedException"
PAGE_KEYS = ("pk", "sk")
GSI1_PAGE_KEYS = ("pk", "sk", "gsi1pk", "gsi1sk")
# Fields of a device that change after it is created; the rest is one JSON document.
MUTABLE_DEVICE = ("connected", "connectivity_at", "last_command_id")


class ByTime(GlobalSecondaryIndex["DeviceItem"]):
    class Meta:
        index_name = "gsi1"
        projection = AllProjection()

    gsi1pk = UnicodeAttribute(hash_key=True)
    gsi1sk = UnicodeAttribute(range_key=True)


class Pending(GlobalSecondaryIndex["DeviceItem"]):
    class Meta:
        index_name = "open"
        projection = KeysOnlyProjection()

    open_pk = UnicodeAttribute(hash_key=True)
    open_sk = UnicodeAttribute(range_key=True)


class DeviceItem(Model):
    class Meta:
        table_name = EnvTableName("DEVICES_TABLE", "ems-dev-devices")
        region = EnvRegion()

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    doc = JSONAttribute(null=True)
    # device
    connected = BooleanAttribute(null=True)
    presence_ms = NumberAttribute(null=True)
    last_command_id = UnicodeAttribute(null=True)
    # thing
    site = UnicodeAttribute(null=True)
    device_id = UnicodeAttribute(null=True)
    # command
    status = UnicodeAttribute(null=True)
    closed_at = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    gsi1pk = UnicodeAttribute(null=True)
    gsi1sk = UnicodeAttribute(null=True)
    by_time = ByTime()
    open_pk = UnicodeAttribute(null=True)
    open_sk = UnicodeAttribute(null=True)
    pending = Pending()
    # rule: its edge state and the version that conditions every write of it
    since_ms = NumberAttribute(null=True)
    fired = BooleanAttribute(null=True)
    last_ms = NumberAttribute(null=True)
    version = NumberAttribute(null=True)


def _device(item: DeviceItem) -> Device:
    connected = item.connected
    at = None if item.presence_ms is None else iso_ms(int(item.presence_ms))
    return Device.model_validate(
        {**item.doc, "connected": connected, "connectivity_at": at, "last_command_id": item.last_command_id}
    )


def _command(item: DeviceItem) -> Command:
    return Command.model_validate(
        {**item.doc, "status": item.status, "closed_at": item.closed_at, "reason": item.reason}
    )


def _command_key(site_id: str, device_id: str, command_id: str) -> tuple[str, str]:
    return site_id, f"{COMMAND}{device_id}#{command_id}"


def _ms_of(iso: str) -> int:
    return int(parse_time(iso, "time").timestamp() * 1000)


class DeviceStore:
    """DeviceRecords and Commands of ems.devices.ports."""

    # ------------------------------------------------------------ devices

    def create(self, device: Device) -> Device:
        doc = device.model_dump(mode="json", exclude=set(MUTABLE_DEVICE))
        try:
            DeviceItem(device.site_id, DEVICE + device.device_id, doc=doc).save(
                condition=DeviceItem.pk.does_not_exist()
            )
        except PutError as exc:
            if exc.cause_response_code == LOST_CONDITION:
                raise Conflict(f"device {device.device_id!r} exists in this site", "device_id") from exc
            raise
        DeviceItem(THING + device.thing_name, "THING", site=device.site_id, device_id=device.device_id).save()
        return device

    def get(self, site_id: str, device_id: str) -> Device:
        try:
            return _device(DeviceItem.get(site_id, DEVICE + device_id, consistent_read=True))
        except DoesNotExist as exc:
            raise NotFound(f"no device {device_id!r} in this site", "device_id") from exc

    def replace(self, device: Device) -> Device:
        doc = device.model_dump(mode="json", exclude=set(MUTABLE_DEVICE))
        actions: list[Action] = [DeviceItem.doc.set(doc)]
        if device.last_command_id is not None:
            actions.append(DeviceItem.last_command_id.set(device.last_command_id))
        try:
            DeviceItem(device.site_id, DEVICE + device.device_id).update(
                actions=actions, condition=DeviceItem.pk.exists()
            )
        except UpdateError as exc:
            if exc.cause_response_code == LOST_CONDITION:
                raise NotFound(f"no device {device.device_id!r} in this site", "device_id") from exc
            raise
        return self.get(device.site_id, device.device_id)

    def page(self, site_id: str, limit: int, next_token: str | None) -> Page[Device]:
        results = DeviceItem.query(
            site_id, DeviceItem.sk.startswith(DEVICE), limit=limit,
            last_evaluated_key=decode_token(next_token, PAGE_KEYS),
        )  # fmt: skip
        items = [_device(item) for item in results]
        return Page[Device](
            items=items, count=len(items), next_token=encode_token(results.last_evaluated_key)
        )

    def delete(self, site_id: str, device_id: str) -> None:
        device = self.get(site_id, device_id)
        with DeviceItem.batch_write() as batch:
            for item in DeviceItem.query(site_id, DeviceItem.sk.startswith(f"{CONTROL}{device_id}#")):
                batch.delete(item)
            batch.delete(DeviceItem(site_id, DEVICE + device_id))
            batch.delete(DeviceItem(THING + device.thing_name, "THING"))

    def by_thing(self, thing: str) -> tuple[str, str] | None:
        try:
            item = DeviceItem.get(THING + thing, "THING")
        except DoesNotExist:
            return None
        return str(item.site), str(item.device_id)

    def set_presence(self, site_id: str, device_id: str, connected: bool, at_ms: int) -> bool:
        try:
            DeviceItem(site_id, DEVICE + device_id).update(
                actions=[DeviceItem.connected.set(connected), DeviceItem.presence_ms.set(at_ms)],
                condition=DeviceItem.pk.exists()
                & (DeviceItem.presence_ms.does_not_exist() | (DeviceItem.presence_ms < at_ms)),
            )
        except UpdateError as exc:
            if exc.cause_response_code == LOST_CONDITION:
                return False
            raise
        return True

    def set_last_command(self, site_id: str, device_id: str, command_id: str) -> None:
        DeviceItem(site_id, DEVICE + device_id).update(
            actions=[DeviceItem.last_command_id.set(command_id)], condition=DeviceItem.pk.exists()
        )

    # ------------------------------------------------------------ controllers and the plan

    def controls(self, site_id: str, device_id: str) -> dict[str, Control]:
        prefix = f"{CONTROL}{device_id}#"
        return {
            item.sk.removeprefix(prefix): Control.model_validate(item.doc)
            for item in DeviceItem.query(site_id, DeviceItem.sk.startswith(prefix), consistent_read=True)
        }

    def put_control(self, site_id: str, device_id: str, control: Control) -> None:
        DeviceItem(
            site_id, f"{CONTROL}{device_id}#{control.source}", doc=control.model_dump(mode="json")
        ).save()

    def remove_control(self, site_id: str, device_id: str, source: str) -> bool:
        try:
            DeviceItem(site_id, f"{CONTROL}{device_id}#{source}").delete(condition=DeviceItem.pk.exists())
        except DeleteError as exc:
            if exc.cause_response_code == LOST_CONDITION:
                return False
            raise
        return True

    def get_plan(self, site_id: str) -> dict[str, dict[str, str]]:
        try:
            return dict(DeviceItem.get(site_id, PLAN, consistent_read=True).doc or {})
        except DoesNotExist:
            return {}

    def put_plan(self, site_id: str, plan: dict[str, dict[str, str]]) -> None:
        DeviceItem(site_id, PLAN, doc=plan).save()


class CommandStore:
    """Commands of ems.devices.ports."""

    def create(self, command: Command) -> tuple[Command, bool]:
        pk, sk = _command_key(command.site_id, command.device_id, command.command_id)
        item = DeviceItem(
            pk, sk, doc=command.model_dump(mode="json", exclude={"status", "closed_at", "reason"}),
            status=command.status, gsi1pk=f"{command.site_id}#{command.device_id}",
            gsi1sk=f"{_ms_of(command.issued_at):013d}#{command.command_id}", open_pk=PENDING,
            open_sk=f"{_ms_of(command.expires_at):013d}#{pk}#{sk}",
        )  # fmt: skip
        try:
            item.save(condition=DeviceItem.pk.does_not_exist())
        except PutError as exc:
            if exc.cause_response_code == LOST_CONDITION:
                known = self.get(command.site_id, command.device_id, command.command_id)
                if known is not None:
                    return known, False
            raise
        return command, True

    def get(self, site_id: str, device_id: str, command_id: str) -> Command | None:
        try:
            return _command(
                DeviceItem.get(*_command_key(site_id, device_id, command_id), consistent_read=True)
            )
        except DoesNotExist:
            return None

    def transition(self, command: Command, expected: str, status: str, at: str, reason: str | None) -> bool:
        actions: list[Action] = [
            DeviceItem.status.set(status), DeviceItem.closed_at.set(at), DeviceItem.open_pk.remove(),
            DeviceItem.open_sk.remove(),
        ]  # fmt: skip
        if reason is not None:
            actions.append(DeviceItem.reason.set(reason))
        try:
            DeviceItem(*_command_key(command.site_id, command.device_id, command.command_id)).update(
                actions=actions, condition=DeviceItem.status == expected
            )
        except UpdateError as exc:
            if exc.cause_response_code == LOST_CONDITION:
                return False
            raise
        return True

    def page(self, site_id: str, device_id: str, limit: int, next_token: str | None) -> Page[Command]:
        results = DeviceItem.by_time.query(
            f"{site_id}#{device_id}", scan_index_forward=False, limit=limit,
            last_evaluated_key=decode_token(next_token, GSI1_PAGE_KEYS),
        )  # fmt: skip
        items = [_command(item) for item in results]
        return Page[Command](
            items=items, count=len(items), next_token=encode_token(results.last_evaluated_key)
        )

    def open_for(self, site_id: str, device_id: str) -> list[Command]:
        return [
            _command(item)
            for item in DeviceItem.query(
                site_id, DeviceItem.sk.startswith(f"{COMMAND}{device_id}#"),
                filter_condition=DeviceItem.status == "pending", consistent_read=True,
            )
        ]  # fmt: skip

    def commanded(self, site_id: str) -> set[str]:
        """The site's devices with a pending command: one Query over the site's commands (keys and
        status only), not one a device."""
        found = DeviceItem.query(
            site_id, DeviceItem.sk.startswith(COMMAND), filter_condition=DeviceItem.status == "pending",
            attributes_to_get=["sk"],
        )  # fmt: skip
        return {item.sk.removeprefix(COMMAND).split("#", 1)[0] for item in found}

    def stale(self, before_ms: int, limit: int) -> list[Command]:
        keys = [
            (item.pk, item.sk)
            for item in DeviceItem.pending.query(
                PENDING, DeviceItem.open_sk < f"{before_ms:013d}", limit=limit
            )
        ]
        found = [_command(item) for item in DeviceItem.batch_get(keys, consistent_read=True)]
        return [c for c in found if c.status == "pending"]

    def delete_all(self, site_id: str, device_id: str) -> int:
        count = 0
        with DeviceItem.batch_write() as batch:
            for item in DeviceItem.query(
                site_id, DeviceItem.sk.startswith(f"{COMMAND}{device_id}#"), attributes_to_get=["pk", "sk"]
            ):
                batch.delete(item)
                count += 1
        return count


def _rule(item: DeviceItem) -> Rule:
    return Rule.model_validate({
        **item.doc, "since_ms": None if item.since_ms is None else int(item.since_ms),
        "fired": bool(item.fired), "last_ms": None if item.last_ms is None else int(item.last_ms),
        "version": int(item.version or 0),
    })  # fmt: skip


class RuleStore:
    """RuleRecords of ems.devices.ports: sk "RULE#<id>" (the rule and its edge state), and
    "FIRE#<rule>#<reading ms>" (a firing; the key makes a second write of it the same item)."""

    _STATE = ("since_ms", "fired", "last_ms", "version")

    def create(self, rule: Rule) -> Rule:
        DeviceItem(
            rule.site_id, RULE + rule.rule_id, doc=rule.model_dump(mode="json", exclude=set(self._STATE)),
            fired=False, version=0,
        ).save(condition=DeviceItem.pk.does_not_exist())  # fmt: skip
        return rule

    def get(self, site_id: str, rule_id: str) -> Rule:
        try:
            return _rule(DeviceItem.get(site_id, RULE + rule_id, consistent_read=True))
        except DoesNotExist as exc:
            raise NotFound(f"no rule {rule_id!r} in this site", "rule_id") from exc

    def replace(self, rule: Rule) -> Rule:
        """The definition, and the edge state as `rule` has it (a new condition starts unarmed)."""
        actions: list[Action] = [
            DeviceItem.doc.set(rule.model_dump(mode="json", exclude=set(self._STATE))),
            DeviceItem.fired.set(rule.fired), DeviceItem.version.add(1),
        ]  # fmt: skip
        for attribute, value in ((DeviceItem.since_ms, rule.since_ms), (DeviceItem.last_ms, rule.last_ms)):
            actions.append(attribute.remove() if value is None else attribute.set(value))
        try:
            DeviceItem(rule.site_id, RULE + rule.rule_id).update(
                actions=actions, condition=DeviceItem.pk.exists()
            )
        except UpdateError as exc:
            if exc.cause_response_code == LOST_CONDITION:
                raise NotFound(f"no rule {rule.rule_id!r} in this site", "rule_id") from exc
            raise
        return self.get(rule.site_id, rule.rule_id)

    def delete(self, site_id: str, rule_id: str) -> None:
        self.get(site_id, rule_id)
        with DeviceItem.batch_write() as batch:
            for item in DeviceItem.query(site_id, DeviceItem.sk.startswith(f"{FIRING}{rule_id}#")):
                batch.delete(item)
            batch.delete(DeviceItem(site_id, RULE + rule_id))

    def page(self, site_id: str, limit: int, next_token: str | None) -> Page[Rule]:
        results = DeviceItem.query(
            site_id, DeviceItem.sk.startswith(RULE), limit=limit,
            last_evaluated_key=decode_token(next_token, PAGE_KEYS),
        )  # fmt: skip
        items = [_rule(item) for item in results]
        return Page[Rule](items=items, count=len(items), next_token=encode_token(results.last_evaluated_key))

    def save_state(self, site_id: str, rule_id: str, version: int, state: EdgeState) -> bool:
        actions: list[Action] = [DeviceItem.fired.set(state.fired), DeviceItem.version.set(version + 1)]
        for attribute, value in ((DeviceItem.since_ms, state.since_ms), (DeviceItem.last_ms, state.last_ms)):
            actions.append(attribute.remove() if value is None else attribute.set(value))
        try:
            DeviceItem(site_id, RULE + rule_id).update(
                actions=actions, condition=DeviceItem.version == version
            )
        except UpdateError as exc:
            if exc.cause_response_code == LOST_CONDITION:
                return False
            raise
        return True

    def add_firing(self, site_id: str, firing: Firing) -> None:
        ms = _ms_of(firing.at)
        DeviceItem(site_id, f"{FIRING}{firing.rule_id}#{ms:013d}", doc=firing.model_dump(mode="json")).save()

    def firings(self, site_id: str, rule_id: str, limit: int) -> list[Firing]:
        results = DeviceItem.query(
            site_id, DeviceItem.sk.startswith(f"{FIRING}{rule_id}#"), scan_index_forward=False, limit=limit
        )
        return [Firing.model_validate(item.doc) for item in results]


class ScheduleStore:
    """ScheduleRecords of ems.devices.ports: sk "SCHED#<id>"."""

    def put(self, schedule: Schedule) -> Schedule:
        DeviceItem(
            schedule.site_id, SCHEDULE + schedule.schedule_id, doc=schedule.model_dump(mode="json")
        ).save()
        return schedule

    def get(self, site_id: str, schedule_id: str) -> Schedule:
        try:
            return Schedule.model_validate(
                DeviceItem.get(site_id, SCHEDULE + schedule_id, consistent_read=True).doc
            )
        except DoesNotExist as exc:
            raise NotFound(f"no schedule {schedule_id!r} in this site", "schedule_id") from exc

    def delete(self, site_id: str, schedule_id: str) -> None:
        DeviceItem(site_id, SCHEDULE + schedule_id).delete()

    def page(self, site_id: str, limit: int, next_token: str | None) -> Page[Schedule]:
        results = DeviceItem.query(
            site_id, DeviceItem.sk.startswith(SCHEDULE), limit=limit,
            last_evaluated_key=decode_token(next_token, PAGE_KEYS),
        )  # fmt: skip
        items = [Schedule.model_validate(item.doc) for item in results]
        return Page[Schedule](
            items=items, count=len(items), next_token=encode_token(results.last_evaluated_key)
        )


class EventBridgeScheduler:
    """Scheduler of ems.devices.ports: schedules in the default group whose target is this function
    (DEVICES_FUNCTION_ARN) through the template's execution role (SCHEDULER_ROLE_ARN)."""

    def put(self, name: str, expression: str, timezone: str, enabled: bool, payload: str) -> None:
        put_schedule(name, expression, os.environ["DEVICES_FUNCTION_ARN"], os.environ["SCHEDULER_ROLE_ARN"],
                     payload, timezone, enabled)  # fmt: skip

    def delete(self, name: str) -> None:
        delete_schedule(name)


class IotCoreCloud:
    """IotCloud of ems.devices.ports: the thing registry (`iot`) and the data plane (`iot-data`)."""

    def create_thing(self, thing: str, thing_type: str, attributes: dict[str, str]) -> None:
        iot = client("iot")
        args = {
            "thingName": thing,
            "thingTypeName": thing_type,
            "attributePayload": {"attributes": attributes},
        }
        try:
            iot.create_thing(**args)
        except Exception as exc:
            if error_code(exc) == "ResourceAlreadyExistsException":  # the same name, other attributes
                raise Conflict(f"IoT thing {thing} exists with other attributes", "device_id") from exc
            if error_code(exc) != "ResourceNotFoundException":  # the thing type is new
                raise
            iot.create_thing_type(thingTypeName=thing_type)
            iot.create_thing(**args)

    def delete_thing(self, thing: str) -> None:
        try:
            client("iot").delete_thing(thingName=thing)
        except Exception as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise

    def shadow(self, thing: str) -> Shadow:
        try:
            answer = client("iot-data").get_thing_shadow(thingName=thing)
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":  # no shadow yet
                return Shadow()
            raise
        document = json.loads(answer["payload"].read())
        state = document.get("state") or {}
        return Shadow(
            desired=state.get("desired") or {}, reported=state.get("reported") or {},
            delta=state.get("delta") or {}, version=document.get("version"),
        )  # fmt: skip

    def update_desired(self, thing: str, desired: dict[str, Any]) -> None:
        payload = json.dumps({"state": {"desired": desired}}).encode()
        client("iot-data").update_thing_shadow(thingName=thing, payload=payload)

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        client("iot-data").publish(topic=topic, qos=1, payload=json.dumps(payload).encode())
