"""`python -m ems_local.moto_server PORT`: the local cloud's moto, in a process of its own.

moto's server answers every AWS call of the functions; in the local cloud's own process it shared one
interpreter (one core) with the MQTT broker, the gateways, EventBridge and the pollers. Here it has
its own. `MotoServer` is moto's threaded server with the emulator's patches (ems_local.moto_dynamodb)
on 127.0.0.1; `main` runs one and takes commands from its parent (ems_local.aws_endpoint):

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

import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from moto.server import ThreadedMotoServer

from ems_local import moto_dynamodb, state
from ems_local.aws_endpoint import REGION, client
from ems_local.ports import HOST


class MotoServer:
    """moto's threaded server in this process, patched as the local cloud runs it, on 127.0.0.1."""

    def __init__(self, port: int = 0) -> None:
        moto_dynamodb.install()  # the server runs in this process: its DynamoDB is the patched one
        self._server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
        self.url = ""

    def start(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per AWS call
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"

    def client(self, service: str) -> Any:
        return client(self.url, service)

    def stop(self) -> None:
        if self.url:
            self._server.stop()
            # ThreadedMotoServer.stop() ends serving but leaves the listening socket open.
            server = getattr(self._server, "_server", None)
            if server is not None:
                server.server_close()
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
