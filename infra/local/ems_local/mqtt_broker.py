"""The MQTT broker of the local cloud (amqtt), on 127.0.0.1 only, in a thread with its own event loop.

The listening socket is ours (`asyncio.start_server` on HOST), handed to amqtt as an `external`
listener: so the bind address is never amqtt's default 0.0.0.0, and port 0 gives a port the system
picks, read back from our own socket. Every message the broker routes (from a client, from a will,
or published here) is reported to `observe(topic, payload, client_id)` from the broker's loop:
the observer must not block (IoT Core queues it for its own thread).

Two departures from amqtt's MQTT 3.1.1 strictness, because IoT Core departs from it too: clients
may publish to `$aws/...` topics (the shadow service's `$aws/things/<thing>/shadow/update` and
`get`); amqtt would close the connection of any client that publishes to a topic starting with `$`.

IoT Core's lifecycle events: on every connection the broker publishes
`$aws/events/presence/connected/<clientId>`, and when it ends
`$aws/events/presence/disconnected/<clientId>`, with AWS's fields (`presence_event`): a clean
DISCONNECT is `CLIENT_INITIATED_DISCONNECT`, a connection that drops without one `CONNECTION_LOST`,
one ended by a newer connection of its client id `DUPLICATE_CLIENTID` (IoT Core allows one).
Like every routed message they go through the observer, so topic rules see them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker
from amqtt.mqtt.disconnect import DisconnectPacket

from ems.core.clock import utc_now
from ems_local import console
from ems_local.ports import HOST, check_free

Observer = Callable[[str, bytes, str], None]  # (topic, payload, client id: "" when published here)
_LISTENER = "default"  # amqtt requires a listener of that name
# Topics IoT Core lets clients publish to although they start with '$' (reserved in MQTT).
AWS_RESERVED_PREFIX = "$aws/"
PRESENCE_TOPIC = "$aws/events/presence/{event}/{client_id}"
# IoT Core's principal for a connection without a certificate (none are emulated here).
LOCAL_PRINCIPAL = "local-anonymous"


def presence_event(
    event: str, client_id: str, timestamp_ms: int, session_id: str, version: int, ip_address: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A lifecycle event's payload as IoT Core publishes it (its developer guide, "Connect/Disconnect
    events"): `ipAddress` on connected, `clientInitiatedDisconnect` and `disconnectReason` on
    disconnected; `versionNumber` grows with each connection of a client id."""
    document: dict[str, Any] = {
        "clientId": client_id, "timestamp": timestamp_ms, "eventType": event, "sessionIdentifier": session_id,
        "principalIdentifier": LOCAL_PRINCIPAL,
    }  # fmt: skip
    if event == "connected":
        document["ipAddress"] = ip_address
    else:
        document["clientInitiatedDisconnect"] = reason == CLIENT_INITIATED
        document["disconnectReason"] = reason
    document["versionNumber"] = version
    return document


# disconnectReason values of IoT Core that the broker gives.
CLIENT_INITIATED, CONNECTION_LOST, DUPLICATE_CLIENTID = (
    "CLIENT_INITIATED_DISCONNECT", "CONNECTION_LOST", "DUPLICATE_CLIENTID",
)  # fmt: skip


class _IotCoreBroker(Broker):
    """amqtt's broker with IoT Core's topic rules for '$aws/', its presence events, its one connection
    a client id (a second one ends the first: DUPLICATE_CLIENTID) and an observer of every routed
    message."""

    def __init__(self, config: dict[str, Any], loop: asyncio.AbstractEventLoop, observe: Observer) -> None:
        super().__init__(config, loop)
        self._observe = observe
        self._versions: dict[str, int] = {}  # client id: connections so far
        # Per connection (its protocol handler): session identifier and version; and the live one of
        # each client id.
        self._presence: dict[int, tuple[str, int]] = {}
        self._live: dict[str, Any] = {}
        self._duplicates: set[int] = set()

    async def _presence_event(self, event: str, client_id: str, handler: Any, **fields: Any) -> None:
        if event == "connected":
            version = self._versions[client_id] = self._versions.get(client_id, -1) + 1
            session_id = uuid.uuid4().hex
            self._presence[id(handler)] = (session_id, version)
        elif id(handler) in self._presence:
            session_id, version = self._presence.pop(id(handler))
        else:
            return  # never announced (refused before it was connected)
        document = presence_event(
            event, client_id, int(utc_now().timestamp() * 1000), session_id, version, **fields
        )
        topic = PRESENCE_TOPIC.format(event=event, client_id=client_id)
        await self._broadcast_message(None, topic, json.dumps(document).encode())

    async def _client_message_loop(self, client_session: Any, handler: Any) -> None:
        # Called once the client is connected and acknowledged (amqtt's CLIENT_CONNECTED point).
        client_id = str(client_session.client_id or "")
        older = self._live.get(client_id)
        if older is not None and older is not handler:
            # IoT Core keeps one connection a client id: the new one ends the old (amqtt keeps both
            # where the session is clean).
            self._duplicates.add(id(older))
            await older.handle_connection_closed()
        self._live[client_id] = handler
        await self._presence_event("connected", client_id, handler, ip_address=client_session.remote_address)
        await super()._client_message_loop(client_session, handler)

    async def _handle_disconnect(self, client_session: Any, handler: Any, disconnect_waiter: Any) -> None:
        result = disconnect_waiter.result() if disconnect_waiter.done() else None
        await super()._handle_disconnect(client_session, handler, disconnect_waiter)
        client_id = str(client_session.client_id or "")
        if self._live.get(client_id) is handler:
            del self._live[client_id]
        if id(handler) in self._duplicates:
            self._duplicates.discard(id(handler))
            reason = DUPLICATE_CLIENTID
        else:
            reason = CLIENT_INITIATED if isinstance(result, DisconnectPacket) else CONNECTION_LOST
        await self._presence_event("disconnected", client_id, handler, reason=reason)

    async def _handle_message_delivery(self, client_session: Any, handler: Any, wait_deliver: Any) -> bool:
        message = wait_deliver.result()
        if message is not None and str(message.topic or "").startswith(AWS_RESERVED_PREFIX):
            # amqtt refuses (and disconnects) any client publishing to a '$' topic; IoT Core serves these.
            await self._broadcast_message(client_session, message.topic, message.data)
            return True
        return bool(await super()._handle_message_delivery(client_session, handler, wait_deliver))

    async def _broadcast_message(
        self, session: Any, topic: str | None, data: bytes | bytearray | None, force_qos: int | None = None
    ) -> None:
        # The one door every routed message goes through: client publishes, wills, internal publishes.
        if topic:
            try:
                self._observe(topic, bytes(data or b""), str(getattr(session, "client_id", "") or ""))
            except Exception as exc:  # an observer's bug never stops the broker
                console.line("mqtt", f"observer failed on {topic}: {exc!r}")
        await super()._broadcast_message(session, topic, data, force_qos)


class MqttBroker:
    def __init__(self, port: int = 1883, observe: Observer | None = None) -> None:
        check_free("mqtt", port)
        self._requested_port = port
        self._observe: Observer = observe or (lambda topic, payload, client_id: None)
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._broker: _IotCoreBroker | None = None
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    def start(self) -> None:
        logging.getLogger("amqtt").setLevel(logging.WARNING)  # not a line per connection and packet
        self._thread = threading.Thread(target=self._loop.run_forever, name="mqtt-broker", daemon=True)
        self._thread.start()
        self._run(self._start()).result(timeout=30)
        console.line("mqtt", f"MQTT broker (IoT Core) listening on {self.url}")

    async def _start(self) -> None:
        config = {
            "listeners": {_LISTENER: {"type": "external", "bind": f"{HOST}:{self._requested_port}"}},
            # Anonymous clients, as IoT Core's certificates are not emulated; no $SYS topics.
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        self._broker = _IotCoreBroker(config, self._loop, self._observe)
        await self._broker.start()
        self._server = await asyncio.start_server(
            self._connected, HOST, self._requested_port, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._broker is not None
        await self._broker.external_connected(
            StreamReaderAdapter(reader), StreamWriterAdapter(writer), _LISTENER
        )

    def _run(self, coroutine: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        """Publish as the service side (IoT data plane, shadows); waits until the broker has queued it.
        Not to be called from the broker's own loop (an observer hands work to another thread)."""
        self._run(self._publish(topic, payload, qos, retain)).result(timeout=10)

    async def _publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        assert self._broker is not None
        await self._broker.internal_message_broadcast(topic, payload, qos)
        if retain:
            await self._broker.retain_message(None, topic, payload, qos)

    def stop(self) -> None:
        if self._thread is None:
            return
        try:
            self._run(self._stop()).result(timeout=15)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._thread = None
            self._loop.close()

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()  # no new connections; those open are ended by the broker's shutdown
        if self._broker is not None:
            await self._broker.shutdown()
        if self._server is not None:
            await self._server.wait_closed()
