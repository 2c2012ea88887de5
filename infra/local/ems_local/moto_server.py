"""`python -m ems_local.moto_server PORT`: the local cloud's moto, in a process of its own.

moto's server answers every AWS call of the functions; in the local cloud's own process it shared one
interpreter (one core) with the MQTT broker, the gateways, EventBridge and the pollers. Here it has
its own. `MotoServer` is moto's application in a threaded werkzeug server with the emulator's patches
(ems_local.moto_dynamodb) and keep-alive connections (`KeepAliveHandler`) on 127.0.0.1; `main` runs one and takes commands from its parent (ems_local.aws_endpoint):

- stdout carries the replies only, one JSON object a line: first `{"port": N}` once listening, then one
  reply a command (`{"error": ..., "message": ...}` when it failed); anything else this process writes
  goes to stderr, which it shares with its parent.
- stdin carries the commands, one JSON object a line: `snapshot` (write the `--state-dir` snapshot to
  a file), `restore_keys` and `restore_data` (from one), see `_Commands`. They run here because the
  snapshot reaches into moto's KMS backend (ems_local.state).
- stdin's end (the parent stopped, or died: its end of the pipe closes with it) stops the server and
  the process.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from ems_local import moto_dynamodb, state
from ems_local.aws_endpoint import REGION, client
from ems_local.ports import HOST


class KeepAliveHandler(MotoRequestHandler):
    """moto's request handler, keeping HTTP/1.1 connections open.

    werkzeug's development server answers every request with `Connection: close` (it cannot tell
    how much of a body the application left unread), then waits 10 ms for stray bytes: each AWS call
    of a function cost a TCP connection on both sides and a new thread here. This handler reads the
    whole body before moto sees the request and sends the whole answer with its length, so the SDKs'
    pooled connections are reused. Without Nagle's algorithm: the body, written after the headers,
    would otherwise wait for the client's delayed ACK of them (up to 40 ms on Linux).
    """

    disable_nagle_algorithm = True

    def run_wsgi(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            super().run_wsgi()  # a body of unknown length: werkzeug's way, closing the connection
            return
        environ = self.make_environ()
        length = int(self.headers.get("Content-Length") or 0)
        environ["wsgi.input"] = io.BytesIO(self.rfile.read(length) if length else b"")
        started: list[Any] = []
        written: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            started[:] = [status, headers]
            return written.append

        try:
            answer = self.server.app(environ, start_response)
            try:
                written.extend(answer)
            finally:
                getattr(answer, "close", lambda: None)()
        except Exception:  # a bug in moto: answer 500 as werkzeug would, and drop this connection
            traceback.print_exc()
            self.send_error(500)
            self.close_connection = True
            return
        status, headers = started
        code, _, reason = status.partition(" ")
        body = b"".join(written)
        head = self.command == "HEAD"  # its answer keeps the length of the body it does not send
        self.send_response(int(code), reason)
        for name, value in headers:
            lower = name.lower()
            if lower in ("connection", "transfer-encoding") or (lower == "content-length" and not head):
                continue
            self.send_header(name, value)
        if not head:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and not head:
            self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # no access log line per AWS call


class MotoServer:
    """moto's application in a threaded server of this process, patched as the local cloud runs it,
    on 127.0.0.1."""

    def __init__(self, port: int = 0) -> None:
        moto_dynamodb.install()  # the server runs in this process: its DynamoDB is the patched one
        self._port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(HOST, self._port, app, threaded=True, request_handler=KeepAliveHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto", daemon=True)
        self._thread.start()
        self.url = f"http://{HOST}:{self._server.server_port}"

    def client(self, service: str) -> Any:
        return client(self.url, service)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()  # shutdown() ends serving but leaves the listening socket open
            self._thread.join()
            self._server = self._thread = None
            self.url = ""


class _Commands:
    """What the parent asks of the moto process; each takes the command's fields, gives the reply."""

    def __init__(self, server: MotoServer) -> None:
        self._server = server
        self._saved: dict[str, Any] | None = None  # read by restore_keys, written back by restore_data

    def snapshot(self, path: str, inventory: dict[str, Any]) -> dict[str, Any]:
        saved = state.snapshot(state.Inventory.from_json(inventory), self._server.client)
        state.write(Path(path), saved)
        return {"items": sum(len(items) for items in saved["dynamodb"].values())}

    def restore_keys(self, path: str) -> dict[str, Any]:
        """Reads the snapshot at `path` (if any) and makes its KMS keys; their ids by logical id."""
        self._saved = state.load_file(Path(path))
        if self._saved is None:
            return {"found": False, "keys": {}}
        return {"found": True, "keys": state.restore_keys(self._saved, REGION)}

    def restore_data(self) -> dict[str, Any]:
        saved, self._saved = self._saved, None
        if not saved:
            return {"items": 0, "objects": 0, "things": 0, "schedules": 0}
        return state.restore_data(saved, self._server.client, REGION)


def serve(server: MotoServer, commands: TextIO, replies: TextIO) -> None:
    """Answer `commands` until they end."""
    ours = _Commands(server)
    handlers: dict[str, Callable[..., dict[str, Any]]] = {
        name: getattr(ours, name) for name in ("snapshot", "restore_keys", "restore_data")
    }
    for line in commands:
        try:
            command = json.loads(line)
            reply = handlers[command.pop("command")](**command)
        except state.IncompatibleState as exc:
            reply = {"error": "IncompatibleState", "message": str(exc)}
        except Exception as exc:  # the parent raises it; this process serves on
            reply = {"error": type(exc).__name__, "message": str(exc)}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def main(argv: list[str] | None = None) -> int:
    port = int((argv if argv is not None else sys.argv[1:])[0])
    # Ctrl-C reaches the parent alone (this runs in a process group of its own, and ignores it here
    # too): the parent saves the state through this process before it stops it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Nothing but replies on stdout: the replies get their own copy of it, fd 1 becomes stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    server = MotoServer(port)
    server.start()
    replies.write(json.dumps({"port": int(server.url.rsplit(":", 1)[1])}) + "\n")
    replies.flush()
    try:
        serve(server, sys.stdin, replies)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
