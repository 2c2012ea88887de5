"""Devices (API.md "IoT control"): the device, its shadow and connectivity, commands, the hourly
plan and the devices summary (no I/O)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, RootModel

from ems.core.ids import USER_ID_PATTERN
from ems.core.models import Model
from ems.devices.commands import CommandName, CommandStatus, DeviceType, Source
from ems.registry.models import METRIC_PATTERN, ROOM_NAME_PATTERN

DEVICES_SOURCE = "ems.devices"
# A command was created or changed state: the realtime function pushes it on `devices/<id>`.
DEVICE_COMMAND_CHANGED = "DeviceCommandChanged"
# What the alerts function consumes (ems.alerts.models.SYSTEM_EVENT).
SYSTEM_EVENT = "SystemEvent"

Connectivity = Literal["online", "offline", "unknown"]
Instruction = Literal["participation", "no-participation", "shifting"]
INSTRUCTIONS: tuple[Instruction, ...] = ("participation", "no-participation", "shifting")


class DeviceIn(Model):
    model_config = ConfigDict(extra="forbid")

    device_id: str = Field(pattern=USER_ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    device_type: DeviceType
    room: str | None = Field(default=None, pattern=ROOM_NAME_PATTERN)
    rated_power_kw: float | None = Field(default=None, gt=0, le=10_000)
    dr_eligible: bool = False
    # 1 is shed first, 10 last.
    comfort_priority: int = Field(default=5, ge=1, le=10)
    sensors: list[str] = Field(default_factory=list, max_length=50)  # the sensors it reports for


class DeviceUpdate(Model):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    room: str | None = Field(default=None, pattern=ROOM_NAME_PATTERN)
    rated_power_kw: float | None = Field(default=None, gt=0, le=10_000)
    dr_eligible: bool | None = None
    comfort_priority: int | None = Field(default=None, ge=1, le=10)
    sensors: list[str] | None = Field(default=None, max_length=50)


class Device(DeviceIn):
    site_id: str
    thing_name: str
    created_at: str
    updated_at: str
    connected: bool | None = None  # None until a presence event said
    connectivity_at: str | None = None  # the presence event's time
    last_command_id: str | None = None


class Shadow(Model):
    desired: dict[str, Any] = Field(default_factory=dict)
    reported: dict[str, Any] = Field(default_factory=dict)
    delta: dict[str, Any] = Field(default_factory=dict)
    version: int | None = None
    # Why `reported` (and so `delta`) is left out for this token, when it is.
    withheld: str | None = None


class CommandRequest(Model):
    model_config = ConfigDict(extra="forbid")

    command: CommandName
    params: dict[str, Any] = Field(default_factory=dict)
    command_id: str | None = Field(default=None, pattern=USER_ID_PATTERN)


class Command(Model):
    command_id: str
    site_id: str
    device_id: str
    command: CommandName
    params: dict[str, Any]
    status: CommandStatus = "pending"
    source: Source
    sent_by: str
    issued_at: str
    expires_at: str  # timed_out if still pending then
    closed_at: str | None = None
    reason: str | None = None


class DeviceView(Device):
    """GET /iot/devices/{id}: the device, its classic shadow, connectivity and last command."""

    shadow: Shadow
    connectivity: Connectivity
    last_command: Command | None = None
    controller: Source | None = None


class Released(Model):
    released: Source
    controller: Source | None = None  # who holds the device now
    restored: Command | None = None  # what the next holder wanted, sent again


class Deleted(Model):
    deleted: bool = True
    commands_closed: int = 0


class Control(Model):
    """A source's standing wish for a device: the last command it sent."""

    source: Source
    command: CommandName
    params: dict[str, Any]
    command_id: str
    at: str


class LastCommand(Model):
    """`last_command` of a device's reported state (API.md, MQTT)."""

    model_config = ConfigDict(extra="ignore")

    command_id: str = Field(min_length=1, max_length=200)
    status: Literal["applied", "rejected"]
    reason: str | None = Field(default=None, max_length=1000)


class ListQuery(Model):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=200)
    next_token: str | None = None


class DevicesSummary(Model):
    """GET /iot/devices/summary (the seed's route)."""

    total: int
    by_type: dict[str, int]
    by_state: dict[str, int]  # online, offline, commanded (a command pending)
    rated_power_kw: float
    current_power_kw: float | None  # None where the token may not see live readings
    dr_eligible_count: int
    dr_eligible_rated_kw: float
    dr_eligible_now_kw: float | None  # current power of DR-eligible devices online that participate now
    hour: int  # the site's local hour the plan was read for
    timezone: str


class PlanIn(RootModel[dict[str, dict[str, Any]]]):
    """PUT /iot/instructions: `{device_id: {"0".."23": instruction}}` (the hours given are merged)."""

    model_config = ConfigDict(defer_build=True)  # built on first use, as ems.core.models.Model


# ---------------------------------------------------------------- automation rules

Op = Literal[">", ">=", "<", "<=", "=="]


class Condition(Model):
    model_config = ConfigDict(extra="forbid")

    sensor_id: str = Field(pattern=USER_ID_PATTERN)
    metric: str = Field(pattern=METRIC_PATTERN)
    op: Op
    threshold: float = Field(allow_inf_nan=False)
    for_minutes: int = Field(default=0, ge=0, le=1440)


class Action(Model):
    model_config = ConfigDict(extra="forbid")

    device_id: str = Field(pattern=USER_ID_PATTERN)
    command: CommandName
    params: dict[str, Any] = Field(default_factory=dict)


class RuleIn(Model):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    condition: Condition
    action: Action
    enabled: bool = True


class RuleUpdate(Model):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    condition: Condition | None = None
    action: Action | None = None
    enabled: bool | None = None


class Firing(Model):
    rule_id: str
    at: str  # the time of the reading that completed the hold
    value: float
    command_id: str
    outcome: str = "sending"  # "sent", or why not: "skipped: ..." (a higher controller), "refused: ..."


class Rule(RuleIn):
    rule_id: str
    site_id: str
    created_at: str
    updated_at: str
    # Edge state (ems.devices.automation.EdgeState), kept with a version for conditional writes.
    since_ms: int | None = None
    fired: bool = False
    last_ms: int | None = None
    version: int = 0


class RuleView(Rule):
    last_firings: list[Firing] = Field(default_factory=list)


# ---------------------------------------------------------------- schedules


class ScheduleIn(Model):
    """`cron` (EventBridge Scheduler's six fields), `rate` ("15 minutes") or `at` (a local wall time,
    yyyy-mm-ddThh:mm:ss), in `timezone` (the site's when absent); `action` one command or a scene."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    cron: str | None = Field(default=None, max_length=256)
    rate: str | None = Field(default=None, max_length=64)
    at: str | None = Field(default=None, max_length=32)
    timezone: str | None = Field(default=None, max_length=64)
    action: Action | list[Action]
    enabled: bool = True


class Schedule(Model):
    schedule_id: str
    site_id: str
    name: str
    expression: str  # as the Scheduler has it: cron(...), rate(...) or at(...)
    timezone: str
    actions: list[Action]
    enabled: bool
    created_at: str
    updated_at: str


class ScheduleRun(Model):
    schedule_id: str
    scheduled_time: str
    commands: list[str]  # the command ids sent, or why an action was not: "skipped: ..."
