"""Topics, connections, subscriptions and the messages clients send and receive (no I/O)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from ems.auth.models import (
    DATA_AGGREGATION_ORDER,
    TIME_AGGREGATION_ORDER,
    Claims,
    DataAggregation,
    TimeAggregation,
)
from ems.core.ids import USER_ID
from ems.core.models import Model

# Kinds whose topics name one thing (`sensors/<id>`, or `sensors/*` for all of them), and kinds
# that are one topic per site.
KEYED_KINDS = ("sensors", "rooms", "batteries", "devices")
SITE_KINDS = ("site", "alerts", "dr", "market")
WILDCARD = "*"
# Room names are free text but for these (ems.registry.models.ROOM_NAME_PATTERN).
_ROOM_NAME = re.compile(r"^[^/#?\x00-\x1f]{1,100}$")

MAX_TOPICS_PER_REQUEST = 50
MAX_TOPICS_PER_CONNECTION = 100


class InvalidTopic(ValueError):
    pass


@dataclass(frozen=True)
class Topic:
    """`kind` or `kind/key` of API.md; `key` is "*" for every thing of the kind."""

    kind: str
    key: str | None = None

    @classmethod
    def parse(cls, text: str) -> Topic:
        kind, slash, key = text.partition("/")
        if kind in SITE_KINDS:
            if slash:
                raise InvalidTopic(f"{kind!r} is one topic per site: subscribe to {kind!r} itself")
            return cls(kind)
        if kind not in KEYED_KINDS:
            known = ", ".join([f"{k}/<id>" for k in KEYED_KINDS] + list(SITE_KINDS))
            raise InvalidTopic(f"unknown topic kind {kind!r}; topics are {known}")
        if not key:
            raise InvalidTopic(f"name one of the {kind}: {kind}/<id>, or {kind}/* for all of them")
        if key != WILDCARD and not (_ROOM_NAME if kind == "rooms" else USER_ID).match(key):
            raise InvalidTopic(f"{key!r} is not a {kind[:-1]} id")
        return cls(kind, key)

    def __str__(self) -> str:
        return self.kind if self.key is None else f"{self.kind}/{self.key}"

    @property
    def is_wildcard(self) -> bool:
        return self.key == WILDCARD

    def matching(self) -> tuple[Topic, ...]:
        """The subscriptions a message on this topic reaches: itself and its kind's wildcard."""
        if self.key is None or self.is_wildcard:
            return (self,)
        return (self, Topic(self.kind, WILDCARD))


# ---------------------------------------------------------------- what clients send


class TopicsRequest(Model):
    """`{"action": "subscribe" | "unsubscribe", "topics": [...]}`."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["subscribe", "unsubscribe"]
    topics: list[str] = Field(min_length=1, max_length=MAX_TOPICS_PER_REQUEST)


# ---------------------------------------------------------------- what clients receive


class ServerMessage(Model):
    """Every message a client receives: `{"topic", "type", "ts", "data"}` (API.md). Replies to the
    client's own requests (subscribed, pong, error) have no topic."""

    topic: str | None = None
    type: str
    ts: str
    data: Any = None


class Refusal(Model):
    topic: str
    reason: str


class SubscriptionChange(Model):
    """The `data` of a `subscribed` or `unsubscribed` reply."""

    accepted: list[str]
    refused: list[Refusal]
    subscriptions: list[str]  # every topic the connection holds now


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class Limits:
    """A token's data-sharing limits, kept with each subscription so fan-out needs no other read."""

    data_aggregation: DataAggregation = "raw"
    time_aggregation: TimeAggregation = "raw"
    embargo_minutes: int = 0

    @classmethod
    def of(cls, claims: Claims) -> Limits:
        return cls(claims.data_aggregation, claims.time_aggregation, claims.embargo_minutes)


@dataclass(frozen=True)
class Connection:
    connection_id: str
    site: str
    claims: Claims
    connected_at: datetime
    expires_at_epoch: int  # DynamoDB TTL: API Gateway does not promise $disconnect
    topics: frozenset[str] = field(default_factory=frozenset)
    source_ip: str | None = None


@dataclass(frozen=True)
class Subscriber:
    """One subscription as fan-out reads it."""

    connection_id: str
    topic: str
    limits: Limits


@dataclass(frozen=True)
class Grain:
    """How fine the data of a message is, checked against each subscriber's limits.

    `observed_at` is when the newest data in the message was measured (the embargo counts from it).
    """

    aggregation: DataAggregation = "raw"
    resolution: TimeAggregation = "raw"
    observed_at: datetime | None = None

    def visible_to(self, limits: Limits, now: datetime) -> bool:
        from datetime import timedelta

        if DATA_AGGREGATION_ORDER.index(self.aggregation) < DATA_AGGREGATION_ORDER.index(
            limits.data_aggregation
        ):
            return False
        if TIME_AGGREGATION_ORDER.index(self.resolution) < TIME_AGGREGATION_ORDER.index(
            limits.time_aggregation
        ):
            return False
        observed = self.observed_at or now
        return observed <= now - timedelta(minutes=limits.embargo_minutes)


# Readings pushed live are raw and current unless the publisher says otherwise.
READING_GRAINS: dict[str, Grain] = {
    "sensors": Grain("raw"),
    "rooms": Grain("room"),
    "site": Grain("site"),
}


@dataclass(frozen=True)
class Outgoing:
    """A message to publish: its topic, type and data, and the grain of its data (None: not readings,
    so no data-sharing limit applies; by default the grain of the topic's kind)."""

    topic: str
    type: str
    data: Any
    grain: Grain | None = None


@dataclass
class PublishReport:
    """What one publish did: messages delivered per connection, connections found gone and removed,
    posts that failed otherwise (logged)."""

    connections: int = 0
    posts: int = 0
    delivered: int = 0
    gone: list[str] = field(default_factory=list)
    failed: int = 0


class ConnectionGone(Exception):
    """The WebSocket connection is closed (API Gateway answered 410 Gone)."""

    def __init__(self, connection_id: str) -> None:
        super().__init__(f"connection {connection_id} is gone")
        self.connection_id = connection_id
