"""WebSocket routes: $connect (token check), $disconnect, subscribe, unsubscribe, ping, $default."""

from ems.auth.store import TokenStore
from ems.core.websocket import WebSocketRequest, websocket_app
from ems.realtime import service as realtime
from ems.realtime.models import TopicsRequest
from ems.realtime.store import RealtimeStore, RegistryLookup

app = websocket_app("realtime")
store = RealtimeStore()
tokens = TokenStore()
registry = RegistryLookup()


@app.route("$connect")
def connect(request: WebSocketRequest) -> None:
    realtime.connect(request.connection_id, request.query, request.headers, request.source_ip, tokens, store)


@app.route("$disconnect")
def disconnect(request: WebSocketRequest) -> None:
    realtime.disconnect(request.connection_id, store)


@app.route("subscribe")
def subscribe(request: WebSocketRequest):  # type: ignore[no-untyped-def]
    return realtime.subscribe(request.connection_id, request.parse(TopicsRequest).topics, store, registry)


@app.route("unsubscribe")
def unsubscribe(request: WebSocketRequest):  # type: ignore[no-untyped-def]
    return realtime.unsubscribe(request.connection_id, request.parse(TopicsRequest).topics, store)


@app.route("ping")
def ping(request: WebSocketRequest):  # type: ignore[no-untyped-def]
    return realtime.pong()


@app.route("$default")
def unknown(request: WebSocketRequest):  # type: ignore[no-untyped-def]
    return realtime.unknown_action(request.body)


handler = app.handler
