"""Ports on 127.0.0.1: the only interface anything of the local cloud ever listens on."""

from __future__ import annotations

import socket
import socketserver
import threading

from ems_local import console

HOST = "127.0.0.1"


class PortTaken(Exception):
    def __init__(self, what: str, port: int) -> None:
        super().__init__(
            f"port {port} on {HOST} ({what}) is already in use: stop whatever holds it "
            f"(another `ems local up`?) or choose another port (--{what}-port)"
        )
        self.what, self.port = what, port


def check_free(what: str, port: int) -> None:
    """Raise PortTaken unless `port` can be bound now (0 always can: the system picks one)."""
    if port == 0:
        return
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # The servers set SO_REUSEADDR too, so a port in TIME_WAIT after our own restart counts as free.
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((HOST, port))
    except OSError:
        raise PortTaken(what, port) from None
    finally:
        probe.close()


class ServedInThread:
    """An HTTP server on HOST, served from a daemon thread until `stop` (shut down, then closed)."""

    def __init__(self, server: socketserver.TCPServer, name: str, listening: str) -> None:
        self._server, self._name, self._listening = server, name, listening
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._server.server_address[1]}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name=self._name, daemon=True)
        self._thread.start()
        console.line(self._name, f"{self._listening} listening on {self.url}")

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
