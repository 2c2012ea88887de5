"""Alerts (API.md `GET /api/v1/events`, `POST /api/v1/events/{id}/acknowledge`) and their rules (no I/O).

Every alert comes from a rule, named by its key: `threshold#<sensor>#<metric>` (the sensor's
thresholds), `offline#<sensor>` (ems.registry.status), `system#<source>#<key>` (another domain's
`SystemEvent`). A rule has at most one open alert: a breach that goes on raises nothing more, and the
alert clears when the rule is satisfied again; the next breach opens a new one.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from ems.core.models import Model

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")
AlertKind = Literal["threshold", "sensor_offline", "system"]

ALERTS_SOURCE = "ems.alerts"
ALERT_RAISED = "AlertRaised"
ALERT_CLEARED = "AlertCleared"
SENSOR_STATUS_CHANGED = "SensorStatusChanged"
# What other domains send to raise (or, with "clear": true, clear) an alert of their own.
SYSTEM_EVENT = "SystemEvent"


class Alert(Model):
    alert_id: str  # "<raised epoch ms, 13 digits>-<8 hex>": sorts by time
    site_id: str
    rule: str
    kind: AlertKind
    severity: Severity
    message: str
    status: Literal["open", "cleared"] = "open"
    raised_at: str
    cleared_at: str | None = None
    acknowledged: bool = False
    acknowledged_at: str | None = None
    acknowledged_by: str | None = None
    sensor_id: str | None = None
    metric: str | None = None
    value: float | None = None  # the reading that raised it
    min: float | None = None
    max: float | None = None
    source: str | None = None  # the domain of a system event


class SystemEvent(Model):
    """The detail of a `SystemEvent` another domain puts on the bus."""

    model_config = ConfigDict(extra="ignore")

    site: str = Field(min_length=1)
    severity: Severity = "warning"
    kind: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.-]*$")
    message: str = Field(min_length=1, max_length=1000)
    dedupe_key: str | None = Field(default=None, max_length=200)
    clear: bool = False


class EventsQuery(Model):
    model_config = ConfigDict(extra="forbid")

    severity: Severity | None = None
    since: str | int | float | None = None
    acknowledged: Literal["true", "false"] | None = None
    status: Literal["open", "cleared"] | None = None
    limit: int = Field(default=50, ge=1, le=200)
    next_token: str | None = None


class AlertPage(Model):
    items: list[Alert]
    count: int
    next_token: str | None = None


class EvaluationReport(Model):
    raised: int = 0
    cleared: int = 0
    pending: int = 0
