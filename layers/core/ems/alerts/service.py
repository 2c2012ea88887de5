"""Raising and clearing alerts, and reading them.

Three paths raise alerts, each a consumer of its own (never in the ingest's way):
- `evaluate_readings`: a `TelemetryReceived` event against the sensors' thresholds. A value outside
  [min, max] starts a breach; the breach becomes an alert once it has lasted `for_minutes` by the
  readings' own times (a late batch is judged as it happened, not as it arrived); a value back inside
  ends the breach and clears the alert.
- `check_offline`: every minute, each site's sensors' status (ems.registry.status: offline after 3
  missed intervals). Going offline raises a `sensor_offline` alert, coming back clears it; each change
  is also a `SensorStatusChanged` event. Sensors that never reported are left alone.
- `system_event`: another domain's `SystemEvent` (a battery fault, a DR event that failed, ...).
Every alert raised or cleared is published (`AlertRaised`, `AlertCleared`) for the realtime function
to push on the `alerts` topic.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import partial

from ems.alerts.models import (
    ALERT_CLEARED,
    ALERT_RAISED,
    ALERTS_SOURCE,
    SENSOR_STATUS_CHANGED,
    Alert,
    AlertPage,
    EvaluationReport,
    EventsQuery,
    SystemEvent,
)
from ems.alerts.ports import SensorDirectory
from ems.alerts.store import AlertStore, RuleState
from ems.auth.models import Claims
from ems.core.clock import Clock, iso_ms, parse_time, to_iso, utc_now
from ems.core.events import DomainEvent, EventPublisher
from ems.core.observability import logger
from ems.core.pagination import MAX_LIMIT, every
from ems.registry.models import Sensor, Threshold
from ems.registry.status import LatestReadings, status_of
from ems.telemetry.models import TelemetryReceived


@dataclass(frozen=True)
class Stores:
    alerts: AlertStore
    registry: SensorDirectory
    events: EventPublisher
    latest: LatestReadings | None = None  # for the offline check


def threshold_rule(sensor_id: str, metric: str) -> str:
    return f"threshold#{sensor_id}#{metric}"


def offline_rule(sensor_id: str) -> str:
    return f"offline#{sensor_id}"


def breach(threshold: Threshold, value: float) -> str | None:
    """Why `value` breaks `threshold`, or None when it keeps it."""
    if threshold.max is not None and value > threshold.max:
        return f"above its maximum {threshold.max:g}"
    if threshold.min is not None and value < threshold.min:
        return f"below its minimum {threshold.min:g}"
    return None


def new_alert_id(at_ms: int) -> str:
    return f"{at_ms:013d}-{uuid.uuid4().hex[:8]}"


def _event(kind: str, alert: Alert) -> DomainEvent:
    return DomainEvent(ALERTS_SOURCE, kind, {"site": alert.site_id, "alert": alert.model_dump(mode="json")})


# ---------------------------------------------------------------- thresholds


def evaluate_readings(event: TelemetryReceived, s: Stores, now: Clock = utc_now) -> EvaluationReport:
    site = event.site
    sensors = s.registry.get_sensors(site, {r.sensor_id for r in event.readings})
    watched = [
        (reading, metric, value, sensors[reading.sensor_id].thresholds[metric])  # type: ignore[index]
        for reading in sorted(event.readings, key=lambda r: r.ts)
        if reading.sensor_id in sensors and sensors[reading.sensor_id].thresholds
        for metric, value in reading.metrics.items()
        if metric in (sensors[reading.sensor_id].thresholds or {})
    ]
    report = EvaluationReport()
    if not watched:
        return report
    states = s.alerts.rules(site, [threshold_rule(r.sensor_id, m) for r, m, _, _ in watched])
    published: list[DomainEvent] = []
    for reading, metric, value, threshold in watched:
        rule = threshold_rule(reading.sensor_id, metric)
        state = states.get(rule, RuleState())
        why = breach(threshold, value)
        if why is None:
            if state.open_alert and s.alerts.clear(site, rule, state.open_alert, iso_ms(reading.ts)):
                cleared = s.alerts.get(site, state.open_alert)
                published.append(_event(ALERT_CLEARED, cleared))
                report.cleared += 1
            elif state.since_ms is not None:
                s.alerts.end_breach(site, rule)
            states[rule] = RuleState()
            continue
        if state.open_alert:
            continue  # one open alert per rule
        since = reading.ts if state.since_ms is None else min(state.since_ms, reading.ts)
        if reading.ts - since < threshold.for_minutes * 60_000:
            if state.since_ms is None or since < state.since_ms:  # a late reading can move it back
                s.alerts.start_breach(site, rule, since)
            states[rule] = RuleState(since_ms=since)
            report.pending += 1
            continue
        lasting = f" for {threshold.for_minutes} min" if threshold.for_minutes else ""
        alert = Alert(
            alert_id=new_alert_id(reading.ts), site_id=site, rule=rule, kind="threshold",
            severity=threshold.severity, sensor_id=reading.sensor_id, metric=metric, value=value,
            min=threshold.min, max=threshold.max, raised_at=iso_ms(reading.ts),
            message=f"{reading.sensor_id} {metric} {value:g} {why}{lasting}",
        )  # fmt: skip
        if s.alerts.open(alert):
            published.append(_event(ALERT_RAISED, alert))
            report.raised += 1
            states[rule] = RuleState(open_alert=alert.alert_id)
        else:  # another evaluation opened it first
            states[rule] = s.alerts.rules(site, [rule]).get(rule, RuleState())
    s.events.publish(published)
    if published:
        logger.info("alerts evaluated", extra={"site": site, **report.model_dump()})
    return report


# ---------------------------------------------------------------- offline sensors


def check_offline(s: Stores, now: Clock = utc_now) -> EvaluationReport:
    """Every site's sensors: offline ones get an open `sensor_offline` alert, online ones none."""
    report = EvaluationReport()
    moment = now()
    for site in [x.site_id for x in every(partial(s.registry.list_sites, None, MAX_LIMIT))]:
        sensors = list(every(partial(s.registry.list_sensors, site, None, None, MAX_LIMIT)))
        if not sensors or s.latest is None:
            continue
        newest = s.latest.get(site, [x.sensor_id for x in sensors])
        states = s.alerts.rules(site, [offline_rule(x.sensor_id) for x in sensors])
        published: list[DomainEvent] = []
        for sensor in sensors:
            heard = newest.get(sensor.sensor_id)
            status = status_of(heard, sensor.expected_interval_seconds, moment)
            rule = offline_rule(sensor.sensor_id)
            state = states.get(rule, RuleState())
            last_seen = iso_ms(heard.ts_ms) if heard else None
            if status == "offline" and not state.open_alert:
                alert = Alert(
                    alert_id=new_alert_id(int(moment.timestamp() * 1000)), site_id=site, rule=rule,
                    kind="sensor_offline", severity="warning", sensor_id=sensor.sensor_id,
                    raised_at=to_iso(moment), message=f"{sensor.sensor_id} has not reported since {last_seen}",
                )  # fmt: skip
                if s.alerts.open(alert):
                    report.raised += 1
                    published += [
                        _event(ALERT_RAISED, alert),
                        _status_changed(site, sensor, "offline", last_seen),
                    ]
            elif (
                status == "online"
                and state.open_alert
                and s.alerts.clear(site, rule, state.open_alert, to_iso(moment))
            ):
                report.cleared += 1
                published += [
                    _event(ALERT_CLEARED, s.alerts.get(site, state.open_alert)),
                    _status_changed(site, sensor, "online", last_seen),
                ]
        s.events.publish(published)
    logger.info("offline check", extra=report.model_dump())
    return report


def _status_changed(site: str, sensor: Sensor, status: str, last_seen: str | None) -> DomainEvent:
    detail = {
        "site": site,
        "sensor_id": sensor.sensor_id,
        "room": sensor.room,
        "status": status,
        "last_seen": last_seen,
    }
    return DomainEvent(ALERTS_SOURCE, SENSOR_STATUS_CHANGED, detail)


# ---------------------------------------------------------------- other domains


def system_event(source: str, event: SystemEvent, s: Stores, now: Clock = utc_now) -> EvaluationReport:
    """Another domain's event: raised once per (source, dedupe_key or kind) until it clears."""
    moment = now()
    rule = f"system#{source}#{event.dedupe_key or event.kind}"
    state = s.alerts.rules(event.site, [rule]).get(rule, RuleState())
    report = EvaluationReport()
    if event.clear:
        if state.open_alert and s.alerts.clear(event.site, rule, state.open_alert, to_iso(moment)):
            s.events.publish([_event(ALERT_CLEARED, s.alerts.get(event.site, state.open_alert))])
            report.cleared += 1
        return report
    alert = Alert(
        alert_id=new_alert_id(int(moment.timestamp() * 1000)), site_id=event.site, rule=rule, kind="system",
        severity=event.severity, message=event.message, raised_at=to_iso(moment), source=source,
    )  # fmt: skip
    if not state.open_alert and s.alerts.open(alert):
        s.events.publish([_event(ALERT_RAISED, alert)])
        report.raised += 1
    return report


# ---------------------------------------------------------------- the routes


def list_events(site_id: str, q: EventsQuery, alerts: AlertStore) -> AlertPage:
    since_ms = int(parse_time(q.since, "since").timestamp() * 1000) if q.since is not None else None
    return alerts.list(site_id, q, since_ms)


def acknowledge(
    site_id: str, alert_id: str, caller: Claims, alerts: AlertStore, now: Clock = utc_now
) -> Alert:
    return alerts.acknowledge(site_id, alert_id, caller.sub, to_iso(now()))
