"""The local cloud's endpoint for AWS APIs that moto does not serve (or serves without delivering).

One HTTP server on 127.0.0.1 (default port 4567), dispatching each request by the service name of
its SigV4 credential scope (`Credential=AKID/20250101/us-east-1/<service>/aws4_request`), which
every SDK sends whatever the endpoint. A service plugs in with `register(signing_name, handler,
variables)`: `variables` are the AWS_ENDPOINT_URL_<SERVICE> settings that lead functions to it
(a value is a path under this endpoint's URL). Today: `execute-api` (the WebSocket API's
@connections). EventBridge (`events`), IoT data (`iotdata`) and Scheduler (`scheduler`) plug in the
same way. Signatures are not checked: nothing here is reachable from outside this machine.
"""

from __future__ import annotations

import json
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from ems_local import console
from ems_local.ports import HOST, ServedInThread, check_free

_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/]+/(?P<service>[^/]+)/aws4_request")


@dataclass(frozen=True)
class ServiceRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes


ServiceResponse = tuple[int, dict[str, str], bytes]
Handler = Callable[[ServiceRequest], ServiceResponse]


def signing_service(authorization: str | None) -> str | None:
    """The service of a SigV4 Authorization header's credential scope."""
    found = _SCOPE.search(authorization or "")
    return found.group("service") if found else None


def aws_error(status: int, code: str, message: str) -> ServiceResponse:
    """An error as rest-json services send it: botocore reads the code from x-amzn-ErrorType."""
    body = json.dumps({"message": message}).encode()
    return status, {"content-type": "application/json", "x-amzn-errortype": code}, body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The body goes in a write after the headers': with Nagle's algorithm on a kept-alive connection
    # it waits for the client's delayed ACK of them (up to 40 ms on Linux) on every call.
    disable_nagle_algorithm = True
    server: _Server

    def _serve(self) -> None:
        url = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        length = int(headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        service = signing_service(headers.get("authorization"))
        handler = self.server.handlers.get(service or "")
        if handler is None:
            known = ", ".join(sorted(self.server.handlers)) or "none yet"
            status, out, raw = aws_error(
                400, "UnknownServiceException",
                f"service {service!r} is not served here (this endpoint serves: {known}); "
                "requests must be SigV4-signed",
            )  # fmt: skip
        else:
            try:
                status, out, raw = handler(ServiceRequest(self.command, url.path, url.query, headers, body))
            except Exception:  # a bug of the emulator: answer as AWS would, and say why
                console.line("aws-services", traceback.format_exc())
                status, out, raw = aws_error(500, "InternalServerErrorException", "internal error")
        self.send_response(status)
        for key, value in out.items():
            self.send_header(key, value)
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        if raw:
            self.wfile.write(raw)
        console.line("aws-services", f"{service} {self.command} {url.path} {status}")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    handlers: dict[str, Handler]


class AwsServices(ServedInThread):
    def __init__(self, port: int = 4567) -> None:
        check_free("aws-services", port)
        server = _Server((HOST, port), _Handler)
        server.handlers = {}
        super().__init__(server, "aws-services", "AWS service endpoints")
        self._server: _Server = server
        self._variables: dict[str, str] = {}

    def register(self, signing_name: str, handler: Handler, variables: dict[str, str] | None = None) -> None:
        """Serve `signing_name` with `handler`; `variables` maps AWS_ENDPOINT_URL_<SERVICE> names to a
        path under this endpoint (often "")."""
        self._server.handlers[signing_name] = handler
        for name, path in (variables or {}).items():
            self._variables[name] = self.url + path

    def environment(self) -> dict[str, str]:
        """The AWS_ENDPOINT_URL_<SERVICE> variables that lead a process's SDK to the services here."""
        return dict(self._variables)
