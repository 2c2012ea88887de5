"""`--state-dir`: the local cloud's AWS state kept across restarts (`--reset` starts clean).

moto keeps everything in memory, so this module keeps a snapshot in `<state dir>/aws-state.json`:
every item of the template's DynamoDB tables, every object of its S3 buckets, the private half of its
KMS keys with their ids (so a token signed before a restart still verifies after it, and
`SIGNING_KEY_ID` stays the same), the IoT registry's things (type, attributes) and thing types, their
shadows (classic and named: desired, reported, version), and the Scheduler's groups and schedules,
those created at run time included (the local Scheduler arms them again from moto). It is written
whole and renamed into place, on a clean stop and every SAVE_EVERY_S while running, so a crash loses
at most that much. Not kept: WebSocket connections (clients reconnect), the shadows' metadata
timestamps (moto stamps the restore's time), certificates and policies.

The snapshot is taken and restored where moto runs (ems_local.moto_server, its own process: the KMS
keys' private halves are only in its backend); `Inventory` says which of moto's resources are the
template's, and StateKeeper, in the local cloud's process, says when to save.

A snapshot names its format and moto's version; one written by another is refused with a clear
message rather than half-restored (`--reset` starts over).
"""

from __future__ import annotations

import base64
import contextlib
import importlib.metadata
import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ems_local import console
from ems_local.template import Stack

STATE_FILE = "aws-state.json"
FORMAT = 1
SAVE_EVERY_S = 60.0
# moto's version without importing it: the local cloud's own process never does (moto runs in its own).
MOTO_VERSION = importlib.metadata.version("moto")
ACCOUNT = "123456789012"  # moto's default account: the one the local cloud's requests land in


class IncompatibleState(Exception):
    pass


def _kms_backend(region: str) -> Any:
    from moto.kms.models import kms_backends

    return kms_backends[ACCOUNT][region]


@dataclass(frozen=True)
class Inventory:
    """The template's resources a snapshot keeps, by their names in moto (JSON-ready, for the moto
    process)."""

    region: str
    keys: dict[str, str]  # KMS keys' ids by logical id
    tables: list[str]
    buckets: list[str]

    @classmethod
    def of(cls, stack: Stack) -> Inventory:
        """After the stack's resources are made (the keys' ids are known then)."""
        return cls(
            region=stack.region,
            keys={k: stack.physical[k] for k in stack.of_type("AWS::KMS::Key") if k in stack.physical},
            tables=[str(stack.resolve(r["Properties"]["TableName"])) for r in stack.of_type("AWS::DynamoDB::Table").values()],
            buckets=[str(stack.ref(logical_id)) for logical_id in stack.of_type("AWS::S3::Bucket")],
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Inventory:
        return cls(**data)


def snapshot(inventory: Inventory, client: Callable[[str], Any]) -> dict[str, Any]:
    """The state worth keeping, as JSON-ready data; in the process moto runs in."""
    from cryptography.hazmat.primitives import serialization

    keys = {}
    backend = _kms_backend(inventory.region)
    for logical_id, key_id in inventory.keys.items():
        key = backend.keys.get(key_id) if key_id else None
        material = getattr(getattr(key, "private_key", None), "private_key", None)
        if key is None or material is None:
            continue
        pem = material.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        keys[logical_id] = {
            "id": key_id,
            "key_spec": key.key_spec,
            "key_usage": key.key_usage,
            "pem": pem.decode(),
        }
    tables: dict[str, list[Any]] = {}
    dynamodb = client("dynamodb")
    for name in inventory.tables:
        items: list[Any] = []
        for page in dynamodb.get_paginator("scan").paginate(TableName=name):
            items.extend(page["Items"])
        tables[name] = items
    buckets: dict[str, list[Any]] = {}
    s3 = client("s3")
    for bucket in inventory.buckets:
        objects = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for entry in page.get("Contents", []):
                got = s3.get_object(Bucket=bucket, Key=entry["Key"])
                objects.append({"key": entry["Key"], "content_type": got.get("ContentType", ""),
                                "body": base64.b64encode(got["Body"].read()).decode()})  # fmt: skip
        buckets[bucket] = objects
    return {
        "format": FORMAT, "moto": MOTO_VERSION, "kms": keys, "dynamodb": tables, "s3": buckets,
        "iot": _iot_snapshot(client), "scheduler": _scheduler_snapshot(client),
    }  # fmt: skip


def _iot_snapshot(client: Callable[[str], Any]) -> dict[str, Any]:
    """Thing types, things and their shadows (every one in the account's region, as IoT has no stack)."""
    iot, iot_data = client("iot"), client("iot-data")
    types = []
    for page in iot.get_paginator("list_thing_types").paginate():
        for found in page["thingTypes"]:
            types.append({"name": found["thingTypeName"], "properties": found.get("thingTypeProperties", {})})
    things = []
    for page in iot.get_paginator("list_things").paginate():
        for found in page["things"]:
            name = found["thingName"]
            shadows = {}
            named = iot_data.list_named_shadows_for_thing(thingName=name).get("results", [])
            for shadow in [None, *named]:
                args = {"thingName": name, **({"shadowName": shadow} if shadow else {})}
                try:
                    document = json.loads(iot_data.get_thing_shadow(**args)["payload"].read())
                except iot_data.exceptions.ResourceNotFoundException:
                    continue
                state = document.get("state") or {}
                shadows[shadow or ""] = {
                    "desired": state.get("desired"), "reported": state.get("reported"),
                    "version": document.get("version"),
                }  # fmt: skip
            things.append({
                "name": name, "type": found.get("thingTypeName"), "attributes": found.get("attributes", {}),
                "shadows": shadows,
            })  # fmt: skip
    return {"thing_types": types, "things": things}


# What GetSchedule answers that CreateSchedule takes again.
_SCHEDULE_FIELDS = (
    "Name", "GroupName", "ScheduleExpression", "ScheduleExpressionTimezone", "StartDate", "EndDate",
    "Description", "State", "KmsKeyArn", "Target", "FlexibleTimeWindow", "ActionAfterCompletion",
)  # fmt: skip


def _scheduler_snapshot(client: Callable[[str], Any]) -> dict[str, Any]:
    scheduler = client("scheduler")
    groups = [
        group["Name"]
        for page in scheduler.get_paginator("list_schedule_groups").paginate()
        for group in page["ScheduleGroups"]
        if group["Name"] != "default"
    ]
    saved = []
    for group in ["default", *groups]:
        for page in scheduler.get_paginator("list_schedules").paginate(GroupName=group):
            for listed in page["Schedules"]:
                detail = scheduler.get_schedule(Name=listed["Name"], GroupName=group)
                saved.append({
                    k: (detail[k].isoformat() if hasattr(detail[k], "isoformat") else detail[k])
                    for k in _SCHEDULE_FIELDS if detail.get(k) is not None
                })  # fmt: skip
    return {"groups": groups, "schedules": saved}


def write(path: Path, state: dict[str, Any]) -> None:
    """Written whole, then renamed: a crash while writing leaves the previous snapshot."""
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(state))
    partial.replace(path)


def load(state_dir: Path) -> dict[str, Any] | None:
    return load_file(state_dir / STATE_FILE)


def load_file(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    state: dict[str, Any] = json.loads(path.read_text())
    if state.get("format") != FORMAT or state.get("moto") != MOTO_VERSION:
        raise IncompatibleState(
            f"{path} was written by another version of the local cloud (format {state.get('format')}, "
            f"moto {state.get('moto')}; this one: {FORMAT}, moto {MOTO_VERSION}): start with --reset"
        )
    return state


def restore_keys(state: dict[str, Any], region: str) -> dict[str, str]:
    """Before the template's resources are made: its KMS keys as they were (same ids, same material);
    their ids by logical id (the stack's physical ids). In the process moto runs in."""
    from cryptography.hazmat.primitives import serialization

    backend = _kms_backend(region)
    restored = {}
    for logical_id, saved in state.get("kms", {}).items():
        key = backend.create_key(
            policy=None, key_usage=saved["key_usage"], key_spec=saved["key_spec"],
            description=f"{logical_id} (restored)", tags=None,
        )  # fmt: skip
        del backend.keys[key.id]
        key.id = saved["id"]
        key.arn = key.arn.rsplit("/", 1)[0] + "/" + saved["id"]
        key.private_key.private_key = serialization.load_pem_private_key(saved["pem"].encode(), password=None)
        backend.keys[key.id] = key
        restored[logical_id] = key.id
    return restored


def restore_data(state: dict[str, Any], client: Callable[[str], Any], region: str) -> dict[str, int]:
    """After the resources are made, before the Scheduler starts: the tables' items, the buckets'
    objects, the IoT things with their shadows, the schedules."""
    dynamodb, s3 = client("dynamodb"), client("s3")
    counts = {"items": 0, "objects": 0}
    for table, items in state.get("dynamodb", {}).items():
        for start in range(0, len(items), 25):
            request: dict[str, Any] = {
                table: [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]
            }
            while request:
                request = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
        counts["items"] += len(items)
    for bucket, objects in state.get("s3", {}).items():
        for entry in objects:
            s3.put_object(Bucket=bucket, Key=entry["key"], Body=base64.b64decode(entry["body"]),
                          ContentType=entry["content_type"] or "binary/octet-stream")  # fmt: skip
        counts["objects"] += len(objects)
    counts["things"] = _restore_iot(state.get("iot") or {}, client, region)
    counts["schedules"] = _restore_schedules(state.get("scheduler") or {}, client)
    return counts


def _restore_iot(saved: dict[str, Any], client: Callable[[str], Any], region: str) -> int:
    iot, iot_data = client("iot"), client("iot-data")
    for thing_type in saved.get("thing_types", []):
        with contextlib.suppress(iot.exceptions.ResourceAlreadyExistsException):
            iot.create_thing_type(
                thingTypeName=thing_type["name"], thingTypeProperties=thing_type["properties"]
            )
    for thing in saved.get("things", []):
        with contextlib.suppress(iot.exceptions.ResourceAlreadyExistsException):
            iot.create_thing(
                thingName=thing["name"], attributePayload={"attributes": thing["attributes"]},
                **({"thingTypeName": thing["type"]} if thing.get("type") else {}),
            )  # fmt: skip
        for shadow, document in thing.get("shadows", {}).items():
            body = {k: document[k] for k in ("desired", "reported") if document.get(k) is not None}
            args = {"thingName": thing["name"], **({"shadowName": shadow} if shadow else {})}
            iot_data.update_thing_shadow(**args, payload=json.dumps({"state": body}).encode())
            if document.get("version"):
                _set_shadow_version(region, thing["name"], shadow or None, int(document["version"]))
    return len(saved.get("things", []))


def _set_shadow_version(region: str, thing: str, shadow: str | None, version: int) -> None:
    """The shadow's version as it was (a device or EMS may order documents by it): moto's API has no
    way to set it, so its backend's shadow is changed in place (moto 5.2's FakeThing.thing_shadows,
    checked by tests/integration/test_pinned_moto_internals.py)."""
    from moto.iot.models import iot_backends

    backend = iot_backends[ACCOUNT][region]
    backend.describe_thing(thing).thing_shadows[shadow].version = version


def _restore_schedules(saved: dict[str, Any], client: Callable[[str], Any]) -> int:
    """Before the local Scheduler starts: it then arms them from moto, and makes the template's again
    over them (an update where one exists)."""
    scheduler = client("scheduler")
    for group in saved.get("groups", []):
        with contextlib.suppress(scheduler.exceptions.ConflictException):
            scheduler.create_schedule_group(Name=group)
    for request in saved.get("schedules", []):
        with contextlib.suppress(scheduler.exceptions.ConflictException):
            scheduler.create_schedule(**request)
    return len(saved.get("schedules", []))


class StateKeeper:
    """Saves the snapshot every SAVE_EVERY_S and once more when stopped (before moto stops), through
    `save(path)` (ems_local.aws_endpoint's, which has the moto process write it)."""

    def __init__(self, state_dir: Path, save: Callable[[Path], None], every_s: float = SAVE_EVERY_S):
        self.path = state_dir / STATE_FILE
        self._save, self._every_s = save, every_s
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="state", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def save(self) -> None:
        with self._lock:
            self._save(self.path)

    def _run(self) -> None:
        while not self._stopping.wait(self._every_s):
            try:
                self.save()
            except Exception as exc:  # the next round tries again; the stop saves for sure
                console.line("state", f"saving the state failed: {exc!r}")

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        self.save()
        console.line("state", f"saved to {self.path}")
