"""Real-time: the WebSocket routes ($connect with the token check, $disconnect, subscribe,
unsubscribe, ping, $default) and the fan-out of domain events (`TelemetryReceived`, `AlertRaised`, `AlertCleared`,
`MarketCleared`, `DeviceCommandChanged`, `InvitationChanged`) to subscribers.

One function serves both, as the template's EventBridgeRule and the WebSocket integration invoke it:
they share its tables and its @connections permission. `handler` tells them apart by the event's shape.
"""

from typing import Any

from ems.auth.service import TokenVerifier
from ems.auth.store import TokenStore
from ems.core.events import event_handler, is_eventbridge_event
from ems.core.websocket import WebSocketRequest, websocket_app
from ems.market.models import MARKET_CLEARED
from ems.realtime import service as realtime
from ems.realtime.models import ServerMessage, TopicsRequest
from ems.realtime.store import ManagementApiPoster, RealtimeStore
from ems.registry.store import RegistryStore
from ems.telemetry.models import TELEMETRY_RECEIVED, TelemetryReceived

app = websocket_app("realtime")
store = RealtimeStore()
tokens = TokenVerifier(TokenStore())
registry = RegistryStore()
poster = ManagementApiPoster()


@app.route("$connect")
def connect(request: WebSocketRequest) -> None:
    realtime.connect(request.connection_id, request.query, request.headers, request.source_ip, tokens, store)


@app.route("$disconnect")
def disconnect(request: WebSocketRequest) -> None:
    realtime.disconnect(request.connection_id, store)


@app.route("subscribe")
def subscribe(request: WebSocketRequest) -> ServerMessage:
    return realtime.subscribe(request.connection_id, request.parse(TopicsRequest).topics, store, registry)


@app.route("unsubscribe")
def unsubscribe(request: WebSocketRequest) -> ServerMessage:
    return realtime.unsubscribe(request.connection_id, request.parse(TopicsRequest).topics, store)


@app.route("ping")
def ping(request: WebSocketRequest) -> ServerMessage:
    return realtime.pong()


@app.route("$default")
def unknown(request: WebSocketRequest) -> ServerMessage:
    return realtime.unknown_action(request.body)


def on_event(detail_type: str, detail: dict[str, Any], source: str) -> dict[str, Any]:
    if detail_type in realtime.ALERT_MESSAGE_TYPES:
        report = realtime.push_alert(detail_type, detail, store, poster)
    elif detail_type == MARKET_CLEARED:
        report = realtime.push_market(detail, store, poster)
    elif detail_type == TELEMETRY_RECEIVED:
        report = realtime.push_telemetry(TelemetryReceived.model_validate(detail), store, poster)
    elif detail_type == realtime.DEVICE_COMMAND_CHANGED:
        report = realtime.push_device_command(detail, store, poster)
    elif detail_type == realtime.BATTERY_PLAN_CHANGED:
        report = realtime.push_battery_plan(detail, store, poster)
    elif detail_type == realtime.INVITATION_CHANGED:
        report = realtime.push_invitation(detail, store, poster)
    else:  # the rules' patterns let no other through
        raise ValueError(f"no fan-out for {detail_type!r}")
    return {"connections": report.connections, "posts": report.posts, "failed": report.failed}


events_handler = event_handler("realtime", on_event)
sockets_handler = app.handler


def handler(event: dict[str, Any], context: Any) -> Any:
    if is_eventbridge_event(event):
        return events_handler(event, context)
    return sockets_handler(event, context)
