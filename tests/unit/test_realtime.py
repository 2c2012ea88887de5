"""Topics, batching, data-sharing limits and fan-out of ems.realtime, with in-memory fakes (no network)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from botocore.stub import Stubber

from ems.auth.models import Claims
from ems.core import aws
from ems.realtime import service
from ems.realtime.models import (
    Connection,
    ConnectionGone,
    Grain,
    InvalidTopic,
    Limits,
    Outgoing,
    Subscriber,
    Topic,
)
from ems.realtime.store import ManagementApiPoster

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


def clock() -> datetime:
    return NOW


def claims(**limits: object) -> Claims:
    return Claims.model_validate(
        {"sub": "u", "name": "u", "jti": "j", "iat": 0, "exp": 2**31, "iss": "ems", "aud": "ems-api",
         "resources": ["*"], "sites": ["*"], **limits}
    )  # fmt: skip


class FakeStore:
    """ConnectionStore in memory: connections and (site, topic) -> connection ids."""

    def __init__(self) -> None:
        self.connections: dict[str, Connection] = {}
        self.topics: dict[tuple[str, str], set[str]] = {}
        self.removed: list[str] = []

    def hold(self, connection_id: str, site: str, topics: list[str], **limits: object) -> None:
        self.connections[connection_id] = Connection(
            connection_id, site, claims(**limits), NOW, int(NOW.timestamp()) + 3600, frozenset(topics)
        )
        for topic in topics:
            self.topics.setdefault((site, topic), set()).add(connection_id)

    def save_connection(self, connection: Connection) -> None:
        self.connections[connection.connection_id] = connection

    def get_connection(self, connection_id: str) -> Connection | None:
        return self.connections.get(connection_id)

    def add_topics(self, connection: Connection, topics: list[str]) -> None:
        raise AssertionError("not used here")

    def remove_topics(self, connection: Connection, topics: list[str]) -> None:
        raise AssertionError("not used here")

    def remove(self, connection_id: str, known: Iterable[tuple[str, str]] = ()) -> None:
        self.removed.append(connection_id)
        self.connections.pop(connection_id, None)
        for holders in self.topics.values():
            holders.discard(connection_id)

    def subscribers(self, site: str, topics: Iterable[Topic], now_epoch: int) -> list[Subscriber]:
        found = []
        for topic in topics:
            for connection_id in sorted(self.topics.get((site, str(topic)), ())):
                found.append(
                    Subscriber(connection_id, str(topic), Limits.of(self.connections[connection_id].claims))
                )
        return found


class FakePoster:
    def __init__(self, gone: Iterable[str] = (), failing: Iterable[str] = ()) -> None:
        self.posts: list[tuple[str, object]] = []
        self.gone, self.failing = set(gone), set(failing)

    def post(self, connection_id: str, data: bytes) -> None:
        if connection_id in self.gone:
            raise ConnectionGone(connection_id)
        if connection_id in self.failing:
            raise TimeoutError("read timed out")
        self.posts.append((connection_id, json.loads(data)))


# ---------------------------------------------------------------- topics


@pytest.mark.parametrize(
    ("text", "kind", "key"),
    [("sensors/TEMP_001", "sensors", "TEMP_001"), ("rooms/Conference Room A", "rooms", "Conference Room A"),
     ("sensors/*", "sensors", "*"), ("site", "site", None), ("alerts", "alerts", None), ("dr", "dr", None),
     ("market", "market", None), ("batteries/BAT_1", "batteries", "BAT_1"), ("devices/hvac-1", "devices", "hvac-1")],
)  # fmt: skip
def test_topics_of_api_md_parse(text: str, kind: str, key: str | None) -> None:
    topic = Topic.parse(text)
    assert (topic.kind, topic.key, str(topic)) == (kind, key, text)


@pytest.mark.parametrize("text", ["weather", "sensors", "sensors/", "site/x", "sensors/a b", "rooms/a#b", ""])
def test_what_is_not_a_topic_is_refused(text: str) -> None:
    with pytest.raises(InvalidTopic):
        Topic.parse(text)


def test_a_message_reaches_its_topic_and_its_kinds_wildcard() -> None:
    assert [str(t) for t in Topic.parse("sensors/T1").matching()] == ["sensors/T1", "sensors/*"]
    assert [str(t) for t in Topic.parse("alerts").matching()] == ["alerts"]


# ---------------------------------------------------------------- limits and batches


def test_grain_against_data_sharing_limits() -> None:
    room_hourly = Limits("room", "1h", 60)
    assert not Grain("raw").visible_to(room_hourly, NOW)
    assert not Grain("room", "15m", NOW - timedelta(hours=2)).visible_to(room_hourly, NOW)
    assert not Grain("room", "1h", NOW - timedelta(minutes=59)).visible_to(room_hourly, NOW)
    assert Grain("room", "1h", NOW - timedelta(minutes=60)).visible_to(room_hourly, NOW)
    assert Grain("site", "1d", NOW - timedelta(days=1)).visible_to(room_hourly, NOW)
    assert Grain("raw").visible_to(Limits(), NOW)


def test_batches_stay_under_the_post_limit_and_keep_every_message() -> None:
    encoded = [json.dumps({"topic": "sensors/T", "n": i, "pad": "x" * 100}) for i in range(10)]
    posts = service.batches(encoded, limit_bytes=500)
    assert all(len(p) <= 500 for p, _ in posts)
    unpacked = [m for p, _ in posts for m in (json.loads(p) if p.startswith(b"[") else [json.loads(p)])]
    assert [m["n"] for m in unpacked] == list(range(10))
    assert sum(count for _, count in posts) == 10
    assert service.batches(encoded[:1]) == [(encoded[0].encode(), 1)]


# ---------------------------------------------------------------- fan-out


def test_publish_posts_once_per_connection_with_the_envelope_of_api_md() -> None:
    store = FakeStore()
    store.hold("c1", "hq", ["sensors/T1"])
    store.hold("c2", "hq", ["sensors/*", "sensors/T1"])  # both: still once
    store.hold("c3", "hq", ["sensors/T2"])
    store.hold("c4", "other", ["sensors/T1"])
    poster = FakePoster()
    report = service.publish("hq", "sensors/T1", "reading", {"value": 21.5}, store, poster, now=clock)
    assert sorted(c for c, _ in poster.posts) == ["c1", "c2"]
    assert poster.posts[0][1] == {
        "topic": "sensors/T1",
        "type": "reading",
        "ts": "2026-11-23T09:30:00.000Z",
        "data": {"value": 21.5},
    }
    assert (report.connections, report.posts, report.delivered, report.gone, report.failed) == (
        2,
        2,
        2,
        [],
        0,
    )


def test_several_messages_due_to_one_connection_go_in_one_post() -> None:
    store = FakeStore()
    store.hold("c1", "hq", ["sensors/*", "alerts"])
    messages = [Outgoing("sensors/T1", "reading", {"value": 1}), Outgoing("sensors/T2", "reading", {"value": 2}),
                Outgoing("alerts", "alert", {"severity": "high"}), Outgoing("market", "cleared", {})]  # fmt: skip
    poster = FakePoster()
    report = service.publish_many("hq", messages, store, poster, now=clock)
    assert len(poster.posts) == 1
    connection_id, batch = poster.posts[0]
    assert connection_id == "c1" and isinstance(batch, list)
    assert [(m["topic"], m["type"]) for m in batch] == [
        ("sensors/T1", "reading"),
        ("sensors/T2", "reading"),
        ("alerts", "alert"),
    ]
    assert (report.posts, report.delivered) == (1, 3)


class CountingStore(FakeStore):
    """FakeStore noting each subscription topic it is asked about."""

    def __init__(self) -> None:
        super().__init__()
        self.looked_up: list[str] = []

    def subscribers(self, site: str, topics: Iterable[Topic], now_epoch: int) -> list[Subscriber]:
        topics = list(topics)
        self.looked_up += [str(t) for t in topics]
        return super().subscribers(site, topics, now_epoch)


def test_a_batch_of_sensors_looks_up_each_subscription_topic_once() -> None:
    store = CountingStore()
    store.hold("c1", "hq", ["sensors/*"])
    store.hold("c2", "hq", ["sensors/T3"])
    messages = [Outgoing(f"sensors/T{n}", "reading", {"value": n}) for n in range(10)]
    poster = FakePoster()
    report = service.publish_many("hq", messages, store, poster, now=clock)
    # 10 sensor topics and their one wildcard: 11 lookups (two a message would be 20).
    assert sorted(store.looked_up) == sorted([f"sensors/T{n}" for n in range(10)] + ["sensors/*"])
    posts = dict(poster.posts)
    assert [m["data"]["value"] for m in posts["c1"]] == list(range(10))  # type: ignore[union-attr]
    assert posts["c2"]["data"] == {"value": 3}  # type: ignore[index]
    assert (report.connections, report.posts, report.delivered) == (2, 2, 11)


def test_a_gone_connection_is_removed_and_the_others_still_get_theirs() -> None:
    store = FakeStore()
    for connection_id in ("c1", "c2", "c3"):
        store.hold(connection_id, "hq", ["site"])
    poster = FakePoster(gone=["c2"], failing=["c3"])
    report = service.publish("hq", "site", "power", {"grid_kw": 3.2}, store, poster, now=clock)
    assert [c for c, _ in poster.posts] == ["c1"]
    assert report.gone == ["c2"] and report.failed == 1
    assert store.removed == ["c2"]
    assert "c3" in store.connections  # a timeout is not a 410: the connection stays


def test_data_sharing_limits_hold_for_pushes() -> None:
    store = FakeStore()
    store.hold("raw", "hq", ["rooms/A", "site"])
    store.hold("room_hourly", "hq", ["rooms/A", "site"], data_aggregation="room", time_aggregation="1h")
    poster = FakePoster()
    service.publish("hq", "rooms/A", "reading", {"temperature_c": 21}, store, poster, now=clock)
    assert [c for c, _ in poster.posts] == ["raw"]  # live room data is raw in time
    poster.posts.clear()
    hourly = Outgoing("rooms/A", "rollup", {"mean": 21}, Grain("room", "1h"))
    service.publish_many("hq", [hourly], store, poster, now=clock)
    assert sorted(c for c, _ in poster.posts) == ["raw", "room_hourly"]


def test_publish_never_raises_into_its_caller() -> None:
    class BrokenStore(FakeStore):
        def subscribers(self, site: str, topics: Iterable[Topic], now_epoch: int) -> list[Subscriber]:
            raise ConnectionError("DynamoDB is unreachable")

    report = service.publish("hq", "site", "power", {}, BrokenStore(), FakePoster(), now=clock)
    assert report.posts == 0
    assert service.publish("hq", "not a topic", "x", {}, FakeStore(), FakePoster(), now=clock).posts == 0


# ---------------------------------------------------------------- the poster adapter


ENDPOINT = "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/dev"


@pytest.fixture
def fresh_clients() -> Iterator[None]:
    """The process's botocore session and clients, made here and dropped after: made before moto is
    imported, they would bypass the `mock_aws` of tests that run later in this process."""
    aws.client.cache_clear()
    aws.session.cache_clear()
    yield
    aws.client.cache_clear()
    aws.session.cache_clear()


@pytest.mark.usefixtures("fresh_clients")
def test_the_poster_turns_410_gone_into_connection_gone_and_publish_removes_it() -> None:
    poster = ManagementApiPoster(ENDPOINT)
    management = aws.client("apigatewaymanagementapi", ENDPOINT)
    with Stubber(management) as stub:
        stub.add_response("post_to_connection", {}, {"ConnectionId": "c1", "Data": b'{"n":1}'})
        stub.add_client_error("post_to_connection", "GoneException", "gone", 410)
        poster.post("c1", b'{"n":1}')
        with pytest.raises(ConnectionGone):
            poster.post("c1", b'{"n":2}')

        stub.add_client_error("post_to_connection", "GoneException", "gone", 410)
        store = FakeStore()
        store.hold("c1", "hq", ["alerts"])
        report = service.publish("hq", "alerts", "alert", {}, store, poster, now=clock)
        assert report.gone == ["c1"] and store.removed == ["c1"]
        stub.assert_no_pending_responses()


def test_the_poster_prefers_the_local_cloud_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBSOCKET_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI", "http://127.0.0.1:4567/dev")
    assert ManagementApiPoster().endpoint() == "http://127.0.0.1:4567/dev"
    monkeypatch.delenv("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI")
    from ems.core import settings

    settings.settings.cache_clear()
    assert ManagementApiPoster().endpoint() == ENDPOINT
    settings.settings.cache_clear()
