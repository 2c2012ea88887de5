"""Connecting, subscribing and fan-out. Stores and the poster come in as arguments (ports)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Protocol

from ems.auth.policy import TOPIC_RESOURCES, topic_resources
from ems.core.clock import Clock, to_iso, utc_now
from ems.core.errors import BadRequest, Forbidden, NotFound, Unauthorized
from ems.core.observability import logger, metrics
from ems.core.settings import settings
from ems.realtime.models import (
    MAX_TOPICS_PER_CONNECTION,
    READING_GRAINS,
    Connection,
    ConnectionGone,
    Grain,
    InvalidTopic,
    Outgoing,
    PublishReport,
    Refusal,
    ServerMessage,
    Subscriber,
    SubscriptionChange,
    Topic,
)
from ems.realtime.ports import SiteDirectory, TokenVerifier
from ems.telemetry.models import ReceivedReading, TelemetryReceived

# API Gateway closes a WebSocket after 2 hours; the record outlives that by a margin, then TTL
# deletes it (whether or not $disconnect ran: API Gateway does not promise it).
MAX_CONNECTION_SECONDS = 2 * 3600
TTL_MARGIN_SECONDS = 15 * 60
# API Gateway's limit on one post to a connection (and on one WebSocket message).
MAX_POST_BYTES = 128 * 1024
# Posts to different connections run side by side; one slow client never holds up the others.
POST_THREADS = 16


class ConnectionStore(Protocol):
    def save_connection(self, connection: Connection) -> None: ...
    def get_connection(self, connection_id: str) -> Connection | None: ...
    def add_topics(self, connection: Connection, topics: list[str]) -> None: ...
    def remove_topics(self, connection: Connection, topics: list[str]) -> None: ...
    def remove(self, connection_id: str, known: Iterable[tuple[str, str]] = ()) -> None: ...
    def subscribers(self, site: str, topics: Iterable[Topic], now_epoch: int) -> list[Subscriber]: ...


class Poster(Protocol):
    """Sends bytes to one connection; raises ConnectionGone when it is closed (410)."""

    def post(self, connection_id: str, data: bytes) -> None: ...


def message(type_: str, data: Any, now: Clock = utc_now, topic: str | None = None) -> ServerMessage:
    return ServerMessage(topic=topic, type=type_, ts=to_iso(now()), data=data)


# ---------------------------------------------------------------- connecting


def connect(
    connection_id: str,
    query: dict[str, str],
    headers: dict[str, str],
    source_ip: str | None,
    tokens: TokenVerifier,
    store: ConnectionStore,
    now: Clock = utc_now,
) -> Connection:
    """$connect: the same checks as the HTTP authorizer (signature, claims, revocation, site), then the
    connection is recorded. Unauthorized (401) for who the caller is, Forbidden (403) for what it may do."""
    token = query.get("token")
    if not token:
        raise Unauthorized("no token: connect with ?token=<jwt>")
    claims = tokens.verify(token)
    if not any(claims.has_resource(r) for kinds in TOPIC_RESOURCES.values() for r in kinds):
        raise Forbidden("this token may read no topic")
    site = claims.site_for(query.get("site") or headers.get("x-site"), settings().default_site_id)
    connected = now()
    connection = Connection(
        connection_id=connection_id, site=site, claims=claims, connected_at=connected,
        expires_at_epoch=int(connected.timestamp()) + MAX_CONNECTION_SECONDS + TTL_MARGIN_SECONDS,
        source_ip=source_ip,
    )  # fmt: skip
    store.save_connection(connection)
    return connection


def disconnect(connection_id: str, store: ConnectionStore) -> None:
    store.remove(connection_id)


# ---------------------------------------------------------------- subscribing


def _known(connection_id: str, store: ConnectionStore) -> Connection:
    connection = store.get_connection(connection_id)
    if connection is None:
        raise NotFound("this connection is not known any more; reconnect", "connection")
    return connection


def _refusal(connection: Connection, topic: Topic, registry: SiteDirectory) -> str | None:
    """Why `connection` may not hold `topic`, or None when it may."""
    claims = connection.claims
    needed = topic_resources(topic.kind) or ()
    if not any(claims.has_resource(r) for r in needed):
        return f"this token lacks resource {' or '.join(repr(r) for r in needed)}"
    if topic.kind == "sensors" and claims.data_aggregation != "raw":
        return f"this token sees data no finer than {claims.data_aggregation!r}, never single sensors"
    if topic.kind == "rooms" and claims.data_aggregation == "site":
        return "this token sees data no finer than 'site', never single rooms"
    if topic.key is not None and not topic.is_wildcard and not _exists(registry, connection.site, topic):
        return f"no {topic.kind[:-1]} {topic.key!r} in site {connection.site!r}"
    return None


def _exists(registry: SiteDirectory, site: str, topic: Topic) -> bool:
    """Whether the sensor or room a topic names exists; for other kinds only the topic's form is checked."""
    if topic.kind == "sensors":
        return registry.sensor_exists(site, str(topic.key))
    if topic.kind == "rooms":
        return registry.room_exists(site, str(topic.key))
    return True


def subscribe(
    connection_id: str,
    topics: list[str],
    store: ConnectionStore,
    registry: SiteDirectory,
    now: Clock = utc_now,
) -> ServerMessage:
    """Hold every topic the token may read; the reply names the accepted and the refused, with reasons."""
    connection = _known(connection_id, store)
    accepted: list[str] = []
    refused: list[Refusal] = []
    held = set(connection.topics)
    for text in dict.fromkeys(topics):  # each once, in the order given
        try:
            topic = Topic.parse(text)
        except InvalidTopic as exc:
            refused.append(Refusal(topic=text, reason=str(exc)))
            continue
        reason = _refusal(connection, topic, registry)
        if reason is None and str(topic) not in held and len(held) >= MAX_TOPICS_PER_CONNECTION:
            reason = f"a connection holds at most {MAX_TOPICS_PER_CONNECTION} topics"
        if reason is not None:
            refused.append(Refusal(topic=text, reason=reason))
            continue
        accepted.append(str(topic))
        held.add(str(topic))
    store.add_topics(connection, [t for t in accepted if t not in connection.topics])
    change = SubscriptionChange(accepted=accepted, refused=refused, subscriptions=sorted(held))
    return message("subscribed", change.model_dump(), now)


def unsubscribe(
    connection_id: str, topics: list[str], store: ConnectionStore, now: Clock = utc_now
) -> ServerMessage:
    connection = _known(connection_id, store)
    dropped = [t for t in dict.fromkeys(topics) if t in connection.topics]
    refused = [
        Refusal(topic=t, reason="not subscribed") for t in dict.fromkeys(topics) if t not in connection.topics
    ]
    store.remove_topics(connection, dropped)
    change = SubscriptionChange(
        accepted=dropped, refused=refused, subscriptions=sorted(connection.topics - set(dropped))
    )
    return message("unsubscribed", change.model_dump(), now)


def pong(now: Clock = utc_now) -> ServerMessage:
    return message("pong", {}, now)


def unknown_action(body: str | None) -> ServerMessage:
    """$default: what the client sent matched no route; say what would have."""
    action = None
    try:
        parsed = json.loads(body or "")
        action = parsed.get("action") if isinstance(parsed, dict) else None
    except ValueError:
        pass
    routes = "subscribe, unsubscribe or ping"
    if action is None:
        raise BadRequest(f'messages are JSON objects with an "action": {routes}', "action")
    raise BadRequest(f"unknown action {action!r}: send {routes}", "action")


# ---------------------------------------------------------------- fan-out


def publish(
    site: str,
    topic: str,
    message_type: str,
    data: Any,
    store: ConnectionStore,
    poster: Poster,
    now: Clock = utc_now,
) -> PublishReport:
    """Post `{"topic","type","ts","data"}` to every connection subscribed to `topic` or its kind's `*`."""
    return publish_many(site, [Outgoing(topic, message_type, data)], store, poster, now)


def publish_many(
    site: str, messages: list[Outgoing], store: ConnectionStore, poster: Poster, now: Clock = utc_now
) -> PublishReport:
    """Post each message once to each connection that holds its topic (or its kind's `*`) and may see
    its data (the token's data-sharing limits). Several messages due to one connection go in one post,
    a JSON array, split only to stay under 128 KB. Connections that answer 410 Gone are removed; any
    other failure is logged and the rest go on. Never raises: fan-out must not fail its caller."""
    report = PublishReport()
    try:
        moment = now()
        due: dict[str, list[str]] = defaultdict(list)
        seen: dict[str, set[str]] = defaultdict(set)  # topics found per connection, to clean up if gone
        # One lookup per subscription topic: a batch of readings has many messages for few topics,
        # and every `sensors/<id>` of it reaches the same `sensors/*`.
        holders: dict[str, list[Subscriber]] = {}
        by_subscription: dict[str, list[Subscriber]] = {}

        def holders_of(topic: Topic) -> list[Subscriber]:
            found: list[Subscriber] = []
            for subscription in topic.matching():
                if str(subscription) not in by_subscription:
                    by_subscription[str(subscription)] = store.subscribers(
                        site, [subscription], int(moment.timestamp())
                    )
                found += by_subscription[str(subscription)]
            return found

        for outgoing in messages:
            try:
                topic = Topic.parse(outgoing.topic)
            except InvalidTopic as exc:
                logger.warning("publish: not a topic", extra={"topic": outgoing.topic, "reason": str(exc)})
                continue
            grain = outgoing.grain or READING_GRAINS.get(topic.kind)
            encoded = ServerMessage(
                topic=str(topic), type=outgoing.type, ts=to_iso(moment), data=outgoing.data
            ).model_dump_json()
            delivered_to: set[str] = set()
            if str(topic) not in holders:
                holders[str(topic)] = holders_of(topic)
            for subscriber in holders[str(topic)]:
                seen[subscriber.connection_id].add(subscriber.topic)
                if subscriber.connection_id in delivered_to:
                    continue  # subscribed to the topic and to its kind's `*`: once is enough
                if grain is not None and not grain.visible_to(subscriber.limits, moment):
                    continue
                delivered_to.add(subscriber.connection_id)
                due[subscriber.connection_id].append(encoded)
        report.connections = len(due)
        if len(due) <= 1:
            outcomes = [_deliver(site, c, due[c], seen[c], store, poster) for c in due]
        else:
            with ThreadPoolExecutor(max_workers=min(POST_THREADS, len(due))) as pool:
                outcomes = list(
                    pool.map(lambda c: _deliver(site, c, due[c], seen[c], store, poster), list(due))
                )
        for outcome in outcomes:
            report.posts += outcome.posts
            report.delivered += outcome.delivered
            report.failed += outcome.failed
            report.gone.extend(outcome.gone)
    except Exception:
        logger.exception("publish failed", extra={"site": site})
    return report


def batches(encoded: list[str], limit_bytes: int = MAX_POST_BYTES) -> list[tuple[bytes, int]]:
    """The posts for one connection, each with how many messages it holds: one message as itself,
    several as JSON arrays of at most `limit_bytes` each."""
    if len(encoded) == 1:
        return [(encoded[0].encode(), 1)]
    out: list[tuple[bytes, int]] = []
    current: list[bytes] = []

    def close() -> None:
        out.append((b"[" + b",".join(current) + b"]", len(current)) if len(current) > 1 else (current[0], 1))

    size = 2
    for item in (e.encode() for e in encoded):
        if current and size + len(item) + 1 > limit_bytes:
            close()
            current, size = [], 2
        current.append(item)
        size += len(item) + 1
    close()
    return out


def _deliver(
    site: str,
    connection_id: str,
    encoded: list[str],
    topics: set[str],
    store: ConnectionStore,
    poster: Poster,
) -> PublishReport:
    """The posts due to one connection, in order; stops at the first 410 and removes the connection."""
    outcome = PublishReport(connections=1)
    for payload, count in batches(encoded):
        if len(payload) > MAX_POST_BYTES:
            outcome.failed += 1
            logger.warning("publish: message over 128 KB", extra={"connection_id": connection_id})
            continue
        try:
            poster.post(connection_id, payload)
        except ConnectionGone:
            outcome.gone.append(connection_id)
            try:
                store.remove(connection_id, [(site, t) for t in topics])
            except Exception:
                logger.exception(
                    "publish: removing a gone connection", extra={"connection_id": connection_id}
                )
            return outcome
        except Exception:
            outcome.failed += 1
            logger.exception("publish: post failed", extra={"connection_id": connection_id})
            continue
        outcome.posts += 1
        outcome.delivered += count
    return outcome


# ---------------------------------------------------------------- telemetry pushes

# Room messages aggregate their sensors, so a token limited to rooms never sees one sensor: metrics
# of power and energy add up over the room's sensors, the others (temperature, humidity, CO2, ...)
# are the mean of the room's sensors.
ADDITIVE_SUFFIXES = ("_w", "_kw", "_wh", "_kwh")
# The sensors whose power is the site's: the meters at the grid connection (sensor_type "meter").
SITE_METER_TYPES = frozenset({"meter"})


def _additive(metric: str) -> bool:
    return metric.endswith(ADDITIVE_SUFFIXES)


def _at(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, UTC)


def reading_messages(event: TelemetryReceived) -> list[Outgoing]:
    """What one `TelemetryReceived` pushes (API.md topics):

    - `sensors/<id>`, type `reading`: `{sensor_id, room, ts, metrics}` for every reading, in time order;
    - `rooms/<room>`, type `room`: `{room, ts, metrics, sensors}`: per metric, the newest value of each
      of the room's sensors in this batch, summed (power, energy) or averaged (the rest); `sensors`
      counts the sensors in it;
    - `site`, type `power`: `{ts, power_w, meters}`: the newest `power_w` of each meter (sensor type
      `meter`) in this batch and their sum. A site has one meter at its grid connection as a rule, and
      then `power_w` is the site's power; with several meters reporting apart, each message carries
      the meters it has and a client keeps the newest per meter.

    Each message's grain (ems.realtime.models.Grain) is observed at its newest reading, so embargoed
    tokens get nothing live."""
    out: list[Outgoing] = []
    latest: dict[str, ReceivedReading] = {}
    for reading in sorted(event.readings, key=lambda r: r.ts):
        ts = to_iso(_at(reading.ts))
        data: dict[str, Any] = {
            "sensor_id": reading.sensor_id, "room": reading.room, "ts": ts, "metrics": reading.metrics
        }  # fmt: skip
        out.append(
            Outgoing(f"sensors/{reading.sensor_id}", "reading", data, Grain("raw", "raw", _at(reading.ts)))
        )
        held = latest.get(reading.sensor_id)
        if held is None:
            latest[reading.sensor_id] = reading
        else:  # a later reading of the sensor: its metrics over the earlier ones'
            latest[reading.sensor_id] = reading.model_copy(
                update={"metrics": {**held.metrics, **reading.metrics}}
            )

    rooms: dict[str, list[ReceivedReading]] = defaultdict(list)
    for reading in latest.values():
        if reading.room is not None:
            rooms[reading.room].append(reading)
    for room, members in sorted(rooms.items()):
        values: dict[str, list[float]] = defaultdict(list)
        for member in members:
            for metric, value in member.metrics.items():
                values[metric].append(value)
        metrics = {
            m: round(sum(v) if _additive(m) else sum(v) / len(v), 6) for m, v in sorted(values.items())
        }
        newest_ms = max(m.ts for m in members)
        data = {"room": room, "ts": to_iso(_at(newest_ms)), "metrics": metrics, "sensors": len(members)}
        out.append(Outgoing(f"rooms/{room}", "room", data, Grain("room", "raw", _at(newest_ms))))

    meters = {
        r.sensor_id: r
        for r in latest.values()
        if r.sensor_type in SITE_METER_TYPES and "power_w" in r.metrics
    }
    if meters:
        newest_ms = max(r.ts for r in meters.values())
        power = {sensor_id: r.metrics["power_w"] for sensor_id, r in sorted(meters.items())}
        data = {"ts": to_iso(_at(newest_ms)), "power_w": round(sum(power.values()), 6), "meters": power}
        out.append(Outgoing("site", "power", data, Grain("site", "raw", _at(newest_ms))))
    return out


def push_telemetry(
    event: TelemetryReceived, store: ConnectionStore, poster: Poster, now: Clock = utc_now
) -> PublishReport:
    """Fan one `TelemetryReceived` out to the site's subscribers (see `reading_messages`)."""
    report = publish_many(event.site, reading_messages(event), store, poster, now)
    logger.info(
        "telemetry pushed",
        extra={"site": event.site, "readings": len(event.readings), "connections": report.connections,
               "posts": report.posts, "gone": len(report.gone), "failed": report.failed},
    )  # fmt: skip
    metrics.add_metric(name="PushPosts", unit="Count", value=report.posts)
    if report.failed:
        metrics.add_metric(name="PushFailures", unit="Count", value=report.failed)
    return report


# What an alert event becomes on the `alerts` topic (ems.alerts: AlertRaised, AlertCleared).
ALERT_MESSAGE_TYPES = {"AlertRaised": "alert_raised", "AlertCleared": "alert_cleared"}


def push_alert(
    detail_type: str, detail: dict[str, Any], store: ConnectionStore, poster: Poster, now: Clock = utc_now
) -> PublishReport:
    """An alert raised or cleared, to the site's `alerts` subscribers: `data` is the alert as
    GET /api/v1/events lists it. Alerts are events, not readings: no data-sharing grain applies."""
    site = str(detail.get("site", ""))
    report = publish(
        site, "alerts", ALERT_MESSAGE_TYPES[detail_type], detail.get("alert"), store, poster, now
    )
    logger.info("alert pushed", extra={"site": site, "type": detail_type, "connections": report.connections})
    return report


def push_market(
    detail: dict[str, Any], store: ConnectionStore, poster: Poster, now: Clock = utc_now
) -> PublishReport:
    """A slot's clearing (ems.market's MarketCleared), to the `market` subscribers of each site that had
    orders in it: `data` is the clearing as the status shows it (price, volume; no site's identity)."""
    report = PublishReport()
    for site in detail.get("sites") or []:
        one = publish(str(site), "market", "market_cleared", detail.get("clearing"), store, poster, now)
        report.connections += one.connections
        report.posts += one.posts
        report.delivered += one.delivered
        report.gone += one.gone
        report.failed += one.failed
    logger.info(
        "market pushed", extra={"sites": len(detail.get("sites") or []), "connections": report.connections}
    )
    return report


# What a device's command event becomes on `devices/<id>` (ems.devices: DeviceCommandChanged).
DEVICE_COMMAND_CHANGED = "DeviceCommandChanged"


def push_device_command(
    detail: dict[str, Any], store: ConnectionStore, poster: Poster, now: Clock = utc_now
) -> PublishReport:
    """A command created or closed, to the site's `devices/<id>` subscribers (type `command`, `data`
    the command as GET /iot/devices/{id}/commands lists it). A command is no reading: no grain applies."""
    site, device_id = str(detail.get("site", "")), str(detail.get("device_id", ""))
    report = publish(site, f"devices/{device_id}", "command", detail.get("command"), store, poster, now)
    logger.info(
        "command pushed", extra={"site": site, "device_id": device_id, "connections": report.connections}
    )
    return report


# What a battery plan's event becomes on `batteries/<id>` (ems.batteries: BatteryPlanChanged).
BATTERY_PLAN_CHANGED = "BatteryPlanChanged"


def push_battery_plan(
    detail: dict[str, Any], store: ConnectionStore, poster: Poster, now: Clock = utc_now
) -> PublishReport:
    """An applied plan, a re-plan or a stop, to the site's `batteries/<id>` subscribers (type `plan`,
    `data` the event's detail: change, plan). The plan starts from one device's SoC measured now: only
    tokens that see single readings live get it."""
    site, battery_id = str(detail.get("site", "")), str(detail.get("battery_id", ""))
    outgoing = Outgoing(f"batteries/{battery_id}", "plan", detail, Grain("raw", "raw", now()))
    report = publish_many(site, [outgoing], store, poster, now)
    logger.info(
        "plan pushed", extra={"site": site, "battery_id": battery_id, "connections": report.connections}
    )
    return report


# What an invitation's change becomes on `dr` (ems.dr: InvitationChanged).
INVITATION_CHANGED = "InvitationChanged"
# Derived from readings (the plan's kW, the performance): read through GET, which applies the
# token's data-sharing limits; the push carries the life cycle only.
INVITATION_WITHHELD = ("execution", "performance")


def push_invitation(
    detail: dict[str, Any], store: ConnectionStore, poster: Poster, now: Clock = utc_now
) -> PublishReport:
    """An invitation created or changed state, to the site's `dr` subscribers (type `invitation`)."""
    site = str(detail.get("site", ""))
    invitation = {k: v for k, v in (detail.get("invitation") or {}).items() if k not in INVITATION_WITHHELD}
    report = publish(site, "dr", "invitation", invitation, store, poster, now)
    logger.info("invitation pushed", extra={"site": site, "status": invitation.get("status"),
                                            "connections": report.connections})  # fmt: skip
    return report
