"""Connections and subscriptions in DynamoDB, and the poster that reaches a connection.

ConnectionsTable: pk connection_id; the site, the verified claims, the topics held, and a TTL.
SubscriptionsTable: pk site_topic ("<site>#<topic>"), sk connection_id; the token's data-sharing
limits, and the same TTL. Fan-out for a topic is one query per matching topic (the topic and its
kind's `*`), never a scan. Site ids cannot hold "#", so the key splits back without doubt.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime

from pynamodb.attributes import NumberAttribute, UnicodeAttribute, UnicodeSetAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import DoesNotExist, UpdateError
from pynamodb.models import Model

from ems.auth.models import Claims
from ems.core.aws import client, error_code
from ems.core.errors import NotFound
from ems.core.settings import settings
from ems.core.tables import EnvRegion, EnvTableName
from ems.realtime.models import Connection, ConnectionGone, Limits, Subscriber, Topic


def site_topic(site: str, topic: str) -> str:
    return f"{site}#{topic}"


class ConnectionRecord(Model):
    class Meta:
        table_name = EnvTableName("CONNECTIONS_TABLE", "ems-dev-connections")
        region = EnvRegion()

    connection_id = UnicodeAttribute(hash_key=True)
    site = UnicodeAttribute()
    claims = UnicodeAttribute()  # the verified claims, JSON
    topics = UnicodeSetAttribute(null=True)
    connected_at = UTCDateTimeAttribute()
    expires_at_epoch = NumberAttribute()  # the table's TTL attribute
    source_ip = UnicodeAttribute(null=True)

    def connection(self) -> Connection:
        return Connection(
            connection_id=self.connection_id, site=self.site, claims=Claims.model_validate_json(self.claims),
            connected_at=self.connected_at, expires_at_epoch=int(self.expires_at_epoch),
            topics=frozenset(self.topics or ()), source_ip=self.source_ip,
        )  # fmt: skip


class SubscriptionRecord(Model):
    class Meta:
        table_name = EnvTableName("SUBSCRIPTIONS_TABLE", "ems-dev-subscriptions")
        region = EnvRegion()

    site_topic = UnicodeAttribute(hash_key=True)
    connection_id = UnicodeAttribute(range_key=True)
    expires_at_epoch = NumberAttribute()  # the table's TTL attribute
    data_aggregation = UnicodeAttribute(default="raw")
    time_aggregation = UnicodeAttribute(default="raw")
    embargo_minutes = NumberAttribute(default=0)


class RealtimeStore:
    """The repository of connections and subscriptions."""

    def save_connection(self, connection: Connection) -> None:
        ConnectionRecord(
            connection_id=connection.connection_id, site=connection.site,
            claims=connection.claims.model_dump_json(), topics=set(connection.topics) or None,
            connected_at=connection.connected_at, expires_at_epoch=connection.expires_at_epoch,
            source_ip=connection.source_ip,
        ).save()  # fmt: skip

    def get_connection(self, connection_id: str) -> Connection | None:
        try:
            return ConnectionRecord.get(connection_id, consistent_read=True).connection()
        except DoesNotExist:
            return None

    def add_topics(self, connection: Connection, topics: list[str]) -> None:
        """Record the topics on the connection first, so removing it always finds them, then index them."""
        if not topics:
            return
        try:
            ConnectionRecord(connection_id=connection.connection_id).update(
                actions=[ConnectionRecord.topics.add(set(topics))],
                condition=ConnectionRecord.connection_id.exists(),
            )
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                raise NotFound("this connection is not known any more; reconnect", "connection") from exc
            raise
        limits = Limits.of(connection.claims)
        with SubscriptionRecord.batch_write() as batch:
            for topic in topics:
                batch.save(
                    SubscriptionRecord(
                        site_topic=site_topic(connection.site, topic), connection_id=connection.connection_id,
                        expires_at_epoch=connection.expires_at_epoch, data_aggregation=limits.data_aggregation,
                        time_aggregation=limits.time_aggregation, embargo_minutes=limits.embargo_minutes,
                    )
                )  # fmt: skip

    def remove_topics(self, connection: Connection, topics: list[str]) -> None:
        if not topics:
            return
        with SubscriptionRecord.batch_write() as batch:
            for topic in topics:
                batch.delete(
                    SubscriptionRecord(
                        site_topic=site_topic(connection.site, topic), connection_id=connection.connection_id
                    )
                )
        try:
            ConnectionRecord(connection_id=connection.connection_id).update(
                actions=[ConnectionRecord.topics.delete(set(topics))],
                condition=ConnectionRecord.connection_id.exists(),
            )
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise

    def remove(self, connection_id: str, known: Iterable[tuple[str, str]] = ()) -> None:
        """Forget a connection and every subscription of it; `known` adds (site, topic) pairs to drop
        when the connection record has gone already (its TTL passed). Removing twice is harmless."""
        pairs = set(known)
        record = self.get_connection(connection_id)
        if record is not None:
            pairs |= {(record.site, topic) for topic in record.topics}
        with SubscriptionRecord.batch_write() as batch:
            for site, topic in sorted(pairs):
                batch.delete(
                    SubscriptionRecord(site_topic=site_topic(site, topic), connection_id=connection_id)
                )
        ConnectionRecord(connection_id=connection_id).delete()

    def subscribers(self, site: str, topics: Iterable[Topic], now_epoch: int) -> list[Subscriber]:
        """Who holds any of `topics` in `site`, leaving out what has expired but TTL has not deleted yet."""
        found = []
        for topic in topics:
            for item in SubscriptionRecord.query(
                site_topic(site, str(topic)), filter_condition=SubscriptionRecord.expires_at_epoch > now_epoch
            ):
                found.append(
                    Subscriber(
                        connection_id=item.connection_id, topic=str(topic),
                        limits=Limits(item.data_aggregation, item.time_aggregation, int(item.embargo_minutes)),  # type: ignore[arg-type]
                    )
                )  # fmt: skip
        return found


class ManagementApiPoster:
    """Posts to a connection through the API Gateway management API (`@connections`).

    The endpoint is AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI when set (the local cloud), else
    WEBSOCKET_ENDPOINT (https://{api-id}.execute-api.{region}.amazonaws.com/{stage}, from the template).
    """

    def __init__(self, endpoint_url: str | None = None) -> None:
        self._endpoint_url = endpoint_url

    def endpoint(self) -> str:
        endpoint = (
            self._endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI")
            or settings().websocket_endpoint
        )
        if not endpoint:
            raise RuntimeError("WEBSOCKET_ENDPOINT is not set: no management endpoint to post to")
        return endpoint

    def post(self, connection_id: str, data: bytes) -> None:
        try:
            client("apigatewaymanagementapi", self.endpoint()).post_to_connection(
                ConnectionId=connection_id, Data=data
            )
        except Exception as exc:
            if error_code(exc) == "GoneException":
                raise ConnectionGone(connection_id) from exc
            raise


def epoch(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp())
