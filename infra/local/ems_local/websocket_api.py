"""The template's WebSocket API on 127.0.0.1, as API Gateway runs it, and its @connections endpoint.

Read from template.yaml: the AWS::ApiGatewayV2::Api with ProtocolType WEBSOCKET, its
RouteSelectionExpression, its routes, the integration (hence the function) of each, which routes
have a route response (two-way: the function's `body` goes back to the client), and the stage.

- `$connect` runs during the handshake with API Gateway's event (headers, query string); a non-2xx
  `statusCode` refuses the handshake with that HTTP status, a failed invocation with 500.
- A message picks its route by the selection expression (`$request.body.action`), else `$default`;
  with no route at all the client gets `{"message": "Forbidden", ...}`, and when the function
  fails `{"message": "Internal server error", ...}`, as from API Gateway. Messages of one connection
  are handled concurrently, as API Gateway does.
- `$disconnect` runs after the socket closed, for whatever reason, with its status code.
- AWS limits: idle 10 minutes (data either way counts as activity), at most 2 hours, frames over
  32 KB and messages over 128 KB close the connection with 1009.
- `@connections` (POST, GET, DELETE on /[stage/]@connections/{id}) is served through
  ems_local.aws_services under `execute-api`, delivering to the real socket and answering
  410 GoneException for a closed or unknown connection.

Served on its own port (default 8001, any path: `/`, `/<stage>`), and on the HTTP API's port at
`/ws`, where the HTTP server relays the upgrade here byte for byte (`relay_upgrade`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import selectors
import socket
import string
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, PayloadTooBig
from websockets.extensions.base import Extension
from websockets.frames import Frame
from websockets.http11 import Request, Response
from websockets.protocol import State

from ems_local import console
from ems_local.aws_services import ServiceRequest, ServiceResponse, aws_error
from ems_local.invocation import InvocationError
from ems_local.ports import HOST, check_free
from ems_local.template import Stack

IDLE_SECONDS = 10 * 60
MAX_CONNECTION_SECONDS = 2 * 3600
MAX_FRAME_BYTES = 32 * 1024
MAX_MESSAGE_BYTES = 128 * 1024
API_ID = "localws"
# How long a post through @connections may wait for the socket to take the data.
POST_SECONDS = 10.0

Invoke = Callable[[str, dict[str, Any]], Any]


# ---------------------------------------------------------------- the template's WebSocket API


@dataclass(frozen=True)
class WsRoute:
    key: str
    function: str  # logical id
    two_way: bool  # has a route response: the function's body goes back to the client


@dataclass(frozen=True)
class WebSocketSpec:
    name: str
    stage: str
    selection_expression: str
    routes: dict[str, WsRoute]

    @classmethod
    def from_stack(cls, stack: Stack) -> WebSocketSpec | None:
        """The template's WebSocket API, or None when it has none."""
        apis = {
            name: r for name, r in stack.of_type("AWS::ApiGatewayV2::Api").items()
            if r.get("Properties", {}).get("ProtocolType") == "WEBSOCKET"
        }  # fmt: skip
        if not apis:
            return None
        ((api_name, api),) = apis.items()

        def of_api(kind: str) -> dict[str, dict[str, Any]]:
            return {
                name: stack.resolve(r.get("Properties", {})) for name, r in stack.of_type(kind).items()
                if r.get("Properties", {}).get("ApiId") == {"Ref": api_name}
            }  # fmt: skip

        functions = {stack.get_att(name, "Arn"): name for name in stack.of_type("AWS::Serverless::Function")}
        integrations = {}
        for name, props in of_api("AWS::ApiGatewayV2::Integration").items():
            uri = str(props.get("IntegrationUri", ""))
            target = next((fn for arn, fn in functions.items() if arn in uri), None)
            if target is not None:
                integrations[name] = target
        two_way = {str(p.get("RouteId")) for p in of_api("AWS::ApiGatewayV2::RouteResponse").values()}
        routes = {}
        for name, props in of_api("AWS::ApiGatewayV2::Route").items():
            integration = str(props.get("Target", "")).removeprefix("integrations/")
            if integration in integrations:
                key = str(props["RouteKey"])
                routes[key] = WsRoute(key, integrations[integration], name in two_way)
        stages = [p.get("StageName") for p in of_api("AWS::ApiGatewayV2::Stage").values()]
        props = stack.resolve(api.get("Properties", {}))
        return cls(
            name=str(props.get("Name", api_name)), stage=str(stages[0] if stages else "$default"),
            selection_expression=str(props.get("RouteSelectionExpression", "$request.body.action")),
            routes=routes,
        )  # fmt: skip


def select_route(expression: str, data: str | bytes, routes: dict[str, Any]) -> str | None:
    """The route key a message goes to: the value the selection expression picks from its JSON body
    when a route has that key, else `$default` when there is one, else None."""
    match = re.fullmatch(r"\$request\.body\.([\w.]+)", expression.strip())
    value: Any = None
    if match:
        try:
            value = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            value = None
        for part in match.group(1).split("."):
            value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, str) and value in routes and not value.startswith("$"):
        return value
    return "$default" if "$default" in routes else None


# ---------------------------------------------------------------- events, as API Gateway shapes them


def new_connection_id() -> str:
    """Like API Gateway's (`L0SM9cOFvHcCIhw=`): 15 characters and a `=`, safe in a URL path."""
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(15)) + "="


@dataclass
class Session:
    """One connection as the gateway knows it."""

    connection_id: str
    connected_at: float  # epoch seconds
    source_ip: str
    user_agent: str
    domain: str
    last_active: float = 0.0
    socket: ServerConnection | None = None
    closing_reason: str | None = None  # set when the gateway closes it (idle, duration, DELETE)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.last_active = self.last_active or self.connected_at


def _request_context(
    spec: WebSocketSpec, session: Session, route_key: str, event_type: str, **extra: Any
) -> dict[str, Any]:
    now = time.time()
    return {
        "routeKey": route_key, "eventType": event_type, "extendedRequestId": _request_id(),
        "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)), "messageDirection": "IN",
        "stage": spec.stage, "connectedAt": int(session.connected_at * 1000), "requestTimeEpoch": int(now * 1000),
        "identity": {"sourceIp": session.source_ip, "userAgent": session.user_agent}, "requestId": _request_id(),
        "domainName": session.domain, "connectionId": session.connection_id, "apiId": API_ID, **extra,
    }  # fmt: skip


def _request_id() -> str:
    return base64.b64encode(uuid.uuid4().bytes[:12]).decode().rstrip("=")


def _described(route_key: str, data: str | bytes) -> str:
    """A client's message in a few words for the terminal: its route, and how many topics it names."""
    try:
        message = json.loads(data)
    except ValueError:
        return route_key
    topics = message.get("topics") if isinstance(message, dict) else None
    return f"{route_key} {len(topics)} topics" if isinstance(topics, list) else route_key


def _multi(pairs: list[tuple[str, str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for key, value in pairs:
        single[key] = value  # API Gateway keeps the last value in the single-value map
        multi.setdefault(key, []).append(value)
    return single, multi


def connect_event(
    spec: WebSocketSpec, session: Session, raw_query: str, headers: list[tuple[str, str]]
) -> dict[str, Any]:
    header_map, multi_headers = _multi(headers)
    event: dict[str, Any] = {
        "headers": header_map,
        "multiValueHeaders": multi_headers,
        "requestContext": _request_context(spec, session, "$connect", "CONNECT"),
        "isBase64Encoded": False,
    }
    query = parse_qsl(raw_query, keep_blank_values=True)
    if query:
        event["queryStringParameters"], event["multiValueQueryStringParameters"] = _multi(query)
    return event


def message_event(spec: WebSocketSpec, session: Session, route_key: str, data: str | bytes) -> dict[str, Any]:
    binary = isinstance(data, bytes)
    return {
        "requestContext": _request_context(spec, session, route_key, "MESSAGE", messageId=_request_id()),
        "body": base64.b64encode(data).decode() if isinstance(data, bytes) else data,
        "isBase64Encoded": binary,
    }


def disconnect_event(spec: WebSocketSpec, session: Session, code: int, reason: str) -> dict[str, Any]:
    headers = {"Host": session.domain, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    return {
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "requestContext": _request_context(
            spec, session, "$disconnect", "DISCONNECT", disconnectStatusCode=code, disconnectReason=reason
        ),
        "isBase64Encoded": False,
    }


class _FrameLimit(Extension):
    """API Gateway's 32 KB frame limit. websockets limits whole messages only (max_size, set to the
    128 KB message limit); this filter sees every incoming frame and fails the connection with 1009,
    as API Gateway does. Not negotiated with the client: it only inspects frames."""

    name = "x-ems-local-frame-limit"  # type: ignore[assignment]

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        if len(frame.data) > MAX_FRAME_BYTES:
            raise PayloadTooBig(len(frame.data), MAX_FRAME_BYTES)
        return frame

    def encode(self, frame: Frame) -> Frame:
        return frame


class Gone(Exception):
    pass


# ---------------------------------------------------------------- the server


class WebSocketApi:
    def __init__(
        self,
        stack: Stack,
        invoke: Invoke,
        port: int = 8001,
        idle_seconds: float = IDLE_SECONDS,
        max_seconds: float = MAX_CONNECTION_SECONDS,
    ) -> None:
        spec = WebSocketSpec.from_stack(stack)
        if spec is None:
            raise ValueError(
                "the template has no WebSocket API (AWS::ApiGatewayV2::Api, ProtocolType WEBSOCKET)"
            )
        check_free("ws", port)
        self.spec = spec
        self.invoke = invoke
        self.requested_port = port
        self.idle_seconds, self.max_seconds = idle_seconds, max_seconds
        self.port = 0
        self.sessions: dict[str, Session] = {}
        self._handshaking: dict[ServerConnection, Session] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}"

    def management_path(self) -> str:
        """The path of the @connections endpoint under the AWS services URL: the stage, as in AWS."""
        return f"/{self.spec.stage}"

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="websocket-api", daemon=True)
        self._thread.start()
        self._started.wait(30)
        if self._failure is not None:
            raise self._failure
        console.line(
            "ws", f"WebSocket API {self.spec.name} listening on {self.url} (stage {self.spec.stage})"
        )

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._failure = exc
            self._started.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with serve(
            self._session, HOST, self.requested_port, process_request=self._handshake,
            process_response=self._accepted, max_size=MAX_MESSAGE_BYTES, compression=None,
            ping_interval=None,  # API Gateway answers pings but never sends them
            close_timeout=5,
        ) as server:  # fmt: skip
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._started.set()
            await self._stop.wait()
            server.close(close_connections=True)  # 1001 going away; $disconnect runs for each
            await self._wait_closed(server)

    @staticmethod
    async def _wait_closed(server: Server) -> None:
        try:
            await asyncio.wait_for(server.wait_closed(), timeout=30)
        except TimeoutError:
            console.line("ws", "some connections did not close in time")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=60)
        self._thread = None

    # ------------------------------------------------------------ the handshake: $connect

    async def _handshake(self, ws: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path.rstrip("/") not in ("", "/ws", f"/{self.spec.stage}"):
            return ws.respond(403, json.dumps({"message": "Forbidden"}) + "\n")
        host, _ = ws.remote_address[:2] if ws.remote_address else ("127.0.0.1", 0)
        forwarded = request.headers.get("X-Forwarded-For")
        session = Session(
            connection_id=new_connection_id(), connected_at=time.time(),
            source_ip=(forwarded.split(",")[0].strip() if forwarded else host),
            user_agent=request.headers.get("User-Agent", ""), domain=request.headers.get("Host", f"{HOST}:{self.port}"),
        )  # fmt: skip
        route = self.spec.routes.get("$connect")
        if route is not None:
            event = connect_event(self.spec, session, url.query, list(request.headers.raw_items()))
            try:
                result = await asyncio.to_thread(self.invoke, route.function, event)
            except InvocationError as exc:
                console.event("ws", f"ws $connect failed: {exc}")
                return ws.respond(500, json.dumps({"message": "Internal server error"}) + "\n")
            status = int(result.get("statusCode", 200)) if isinstance(result, dict) else 200
            if not 200 <= status < 300:
                body = result.get("body") if isinstance(result, dict) else None
                console.event("ws", f"ws $connect refused {session.connection_id}: {status}")
                return ws.respond(status, (body or "") + "\n")
        self._handshaking[ws] = session
        return None

    def _accepted(self, ws: ServerConnection, request: Request, response: Response) -> None:
        if response.status_code == 101:
            ws.protocol.extensions.append(_FrameLimit())
        else:
            self._handshaking.pop(ws, None)

    # ------------------------------------------------------------ a connection's life

    async def _session(self, ws: ServerConnection) -> None:
        session = self._handshaking.pop(ws)
        session.socket = ws
        self.sessions[session.connection_id] = session
        console.event("ws", f"ws connected {session.connection_id} from {session.source_ip}")
        try:
            while True:
                now = time.time()
                idle_at = session.last_active + self.idle_seconds
                end_at = session.connected_at + self.max_seconds
                if now >= min(idle_at, end_at):
                    session.closing_reason = (
                        "Idle timeout" if idle_at <= end_at else "Connection duration exceeded"
                    )
                    await ws.close(1001, "Going away")
                    break
                try:
                    data = await asyncio.wait_for(ws.recv(), timeout=min(idle_at, end_at) - now)
                except TimeoutError:
                    continue  # recv is safe to cancel: nothing is lost; the loop checks the limits
                except ConnectionClosed:
                    break
                session.last_active = time.time()
                task = asyncio.create_task(self._message(session, data))
                session.tasks.add(task)
                task.add_done_callback(session.tasks.discard)
        finally:
            self.sessions.pop(session.connection_id, None)
            # Messages already handed to functions finish first, as in-flight invocations do in AWS.
            await asyncio.gather(*session.tasks, return_exceptions=True)
            await self._disconnected(session, ws)

    async def _disconnected(self, session: Session, ws: ServerConnection) -> None:
        received, sent = ws.protocol.close_rcvd, ws.protocol.close_sent
        if session.closing_reason is None and received is not None:
            code, reason = received.code, "Client-side close frame status code"
        elif sent is not None:
            code, reason = sent.code, session.closing_reason or sent.reason or "Server-side close"
        else:
            code, reason = 1006, "Connection lost"
        console.event("ws", f"ws disconnected {session.connection_id} ({code} {reason})")
        route = self.spec.routes.get("$disconnect")
        if route is None:
            return
        try:
            await asyncio.to_thread(
                self.invoke, route.function, disconnect_event(self.spec, session, code, reason)
            )
        except InvocationError as exc:
            console.event("ws", f"ws $disconnect failed: {exc}")

    async def _message(self, session: Session, data: str | bytes) -> None:
        started = time.perf_counter()
        route_key = select_route(self.spec.selection_expression, data, self.spec.routes)
        request_id = _request_id()
        if route_key is None:
            console.event("ws", f"ws message of {len(data)} B: no route, Forbidden")
            await self._send(session, self._gateway_message("Forbidden", session, request_id))
            return
        route = self.spec.routes[route_key]
        try:
            result = await asyncio.to_thread(
                self.invoke, route.function, message_event(self.spec, session, route_key, data)
            )
        except InvocationError as exc:
            console.event("ws", f"ws {route_key} failed: {exc}")
            await self._send(session, self._gateway_message("Internal server error", session, request_id))
            return
        console.event(
            "ws", f"ws {_described(route_key, data)} {(time.perf_counter() - started) * 1000:.0f} ms"
        )
        if route.two_way:
            body = result.get("body") if isinstance(result, dict) and "statusCode" in result else result
            if body is not None:
                await self._send(session, body if isinstance(body, str) else json.dumps(body))

    @staticmethod
    def _gateway_message(message: str, session: Session, request_id: str) -> str:
        return json.dumps(
            {"message": message, "connectionId": session.connection_id, "requestId": request_id}
        )

    async def _send(self, session: Session, data: str | bytes) -> bool:
        ws = session.socket
        if ws is None or ws.state is not State.OPEN:
            return False
        try:
            await ws.send(data)
        except ConnectionClosed:
            return False
        session.last_active = time.time()
        return True

    # ------------------------------------------------------------ @connections (any thread)

    def _call(self, coroutine: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(POST_SECONDS)

    def post(self, connection_id: str, data: bytes) -> None:
        """Send `data` to the connection (text when it is UTF-8, as API Gateway sends it); Gone if closed."""
        session = self.sessions.get(connection_id)
        if session is None:
            raise Gone(connection_id)
        try:
            payload: str | bytes = data.decode()
        except UnicodeDecodeError:
            payload = data
        if not self._call(self._send(session, payload)):
            raise Gone(connection_id)

    def disconnect(self, connection_id: str) -> None:
        session = self.sessions.get(connection_id)
        if session is None or session.socket is None:
            raise Gone(connection_id)
        session.closing_reason = "Connection deleted through @connections"
        self._call(session.socket.close(1000, "Going away"))

    def management(self, request: ServiceRequest) -> ServiceResponse:
        """The execute-api management API: /[stage/]@connections/{connectionId}."""
        found = re.fullmatch(r"(?:/[^/@]+)?/@connections/(?P<id>[^/]+)/?", request.path)
        if found is None:
            return aws_error(404, "NotFoundException", f"no such resource {request.path}")
        connection_id = unquote(found.group("id"))
        gone = aws_error(410, "GoneException", f"connection {connection_id} is gone")
        session = self.sessions.get(connection_id)
        try:
            if request.method == "POST":
                if len(request.body) > MAX_MESSAGE_BYTES:
                    return aws_error(413, "PayloadTooLargeException", "Data is over 128 KB")
                self.post(connection_id, request.body)
                return 200, {"content-type": "application/json"}, b""
            if request.method == "GET":
                if session is None:
                    return gone
                info = {
                    "connectedAt": _iso(session.connected_at), "lastActiveAt": _iso(session.last_active),
                    "identity": {"sourceIp": session.source_ip, "userAgent": session.user_agent},
                }  # fmt: skip
                return 200, {"content-type": "application/json"}, json.dumps(info).encode()
            if request.method == "DELETE":
                self.disconnect(connection_id)
                return 204, {}, b""
        except Gone:
            return gone
        return aws_error(
            405, "MethodNotAllowedException", f"{request.method} is not supported on @connections"
        )


def _iso(epoch_seconds: float) -> str:
    return (
        datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


# ---------------------------------------------------------------- /ws on the HTTP API's port


def is_upgrade(path: str, headers: dict[str, str]) -> bool:
    """A WebSocket handshake for the HTTP API's /ws (headers with lower-case names)."""
    return urlsplit(path).path.rstrip("/") == "/ws" and headers.get("upgrade", "").lower() == "websocket"


def relay_upgrade(handler: BaseHTTPRequestHandler, port: int) -> None:
    """Hand a /ws upgrade that reached the HTTP server to the WebSocket server on `port`: the request
    goes on unchanged (plus X-Forwarded-For), then bytes flow both ways until either side closes.
    The HTTP server's thread for this request carries the connection."""
    upstream = socket.create_connection((HOST, port), timeout=10)
    upstream.settimeout(None)
    lines = [handler.requestline]
    lines += [f"{k}: {v}" for k, v in handler.headers.items() if k.lower() != "x-forwarded-for"]
    lines.append(f"X-Forwarded-For: {handler.client_address[0]}")
    upstream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    client = handler.connection
    handler.close_connection = True
    with selectors.DefaultSelector() as selector:
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        open_ = True
        while open_:
            for key, _ in selector.select():
                source: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    chunk = source.recv(65536)
                    if chunk:
                        key.data.sendall(chunk)
                        continue
                except OSError:
                    pass
                open_ = False
                break
    upstream.close()
