"""The HTTP API's server: bytes on 127.0.0.1 in, HttpGateway, bytes out (stdlib only).

A WebSocket handshake for /ws is handed to the WebSocket API's own server (the original dashboard
looks for it there): see ems_local.websocket_api.relay_upgrade. GET and HEAD that no route takes are
the page's (web/, ems_local.static), served without the authorizer.
"""

from __future__ import annotations

import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from ems_local import apigw, console, websocket_api
from ems_local.gateway import HttpGateway
from ems_local.ports import HOST, ServedInThread, check_free
from ems_local.static import StaticSite

# API Gateway HTTP APIs refuse request bodies over 10 MB.
MAX_BODY_BYTES = 10 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients of API Gateway expect
    server: _Server

    def _serve(self) -> None:
        started = time.perf_counter()
        url = urlsplit(self.path)
        headers: dict[str, str] = {}
        for key, value in self.headers.items():
            # Payload 2.0 joins repeated headers with commas.
            key = key.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        if self.server.websocket_port and websocket_api.is_upgrade(self.path, headers):
            console.line("http", f"{self.command} {url.path} upgrade: relayed to the WebSocket API")
            websocket_api.relay_upgrade(self, self.server.websocket_port)
            return
        body = self._body(headers)
        if body is None:
            status, out, raw = apigw.gateway_error(413)
            self.close_connection = True
        elif (static := self._static(url.path or "/")) is not None:
            status, out, raw = static.get(url.path or "/")
        else:
            try:
                status, out, raw = self.server.gateway.handle(
                    self.command, url.path or "/", url.query, headers, body or None, self.client_address[0]
                )
            except Exception:  # a bug of the emulator itself: answer as API Gateway would, and say why
                console.notice("http", traceback.format_exc())
                status, out, raw = apigw.gateway_error(500)
        self.send_response(status)
        for key, value in out.items():
            if key not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(key, value)
        if status != 204:  # a 204 has no body, so no length either
            self.send_header("content-length", str(len(raw)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(raw)
        elapsed_ms = (time.perf_counter() - started) * 1000
        console.event("http", f"{self.command} {self.path} {status} {elapsed_ms:.0f} ms")

    def _static(self, path: str) -> StaticSite | None:
        """The page's files (web/), when they answer this request: what no route of the API takes,
        never through the authorizer."""
        static = self.server.static
        if static is None or not static.serves(self.command, path):
            return None
        return static if apigw.match(self.server.gateway.routes, self.command, path) is None else None

    def _body(self, headers: dict[str, str]) -> bytes | None:
        """The request body; None when it is over the limit."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks, size = [], 0
            while True:
                length = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if length == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                size += length
                if size > MAX_BODY_BYTES:
                    return None
                chunks.append(self.rfile.read(length))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(headers.get("content-length") or 0)
        if length > MAX_BODY_BYTES:
            return None
        return self.rfile.read(length) if length else b""

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request is written by _serve, prefixed like every other log line


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    gateway: HttpGateway
    websocket_port: int | None = None
    static: StaticSite | None = None


class HttpApiServer(ServedInThread):
    def __init__(
        self,
        gateway: HttpGateway,
        port: int = 8000,
        websocket_port: int | None = None,
        static: StaticSite | None = None,
    ) -> None:
        check_free("http", port)
        server = _Server((HOST, port), _Handler)
        server.gateway = gateway
        server.static = static  # the page at the root (web/), when there is one
        server.websocket_port = websocket_port  # where /ws upgrades go, when there is a WebSocket API
        super().__init__(server, "http", "HTTP API")
