"""Ports on 127.0.0.1: the only interface anything of the local cloud ever listens on."""

from __future__ import annotations

import socket

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
