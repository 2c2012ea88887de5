"""The local cloud's seed against a real HTTP server on 127.0.0.1: a 504 (a first init past the
emulated 10 s on a loaded machine, nothing done) is retried; an existing site (409) is kept; any
other answer stops the start with its status."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ems_local.seed import ATTEMPTS, DEMO_SITE, create_demo_site


class Answers(ThreadingHTTPServer):
    def __init__(self, statuses: list[int]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.statuses = statuses
        self.bodies: list[dict[str, Any]] = []


class Handler(BaseHTTPRequestHandler):
    server: Answers

    def do_POST(self) -> None:
        self.server.bodies.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
        status = self.server.statuses.pop(0)
        self.send_response(status)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[Callable[[list[int]], Answers]]:
    started: list[Answers] = []

    def start(statuses: list[int]) -> Answers:
        server = Answers(statuses)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def url(server: Answers) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_a_504_is_retried_until_the_site_is_created(serve: Callable[[list[int]], Answers]) -> None:
    server = serve([504, 504, 201])
    assert create_demo_site(url(server), "token", pause_seconds=0) == DEMO_SITE
    assert server.bodies == [DEMO_SITE] * 3


def test_an_existing_site_is_kept(serve: Callable[[list[int]], Answers]) -> None:
    server = serve([409])
    assert create_demo_site(url(server), "token", pause_seconds=0) == DEMO_SITE
    assert len(server.bodies) == 1


def test_a_client_error_is_not_retried_and_retries_are_bounded(serve: Callable[[list[int]], Answers]) -> None:
    refused = serve([422])
    with pytest.raises(RuntimeError, match="creating the demo site: 422"):
        create_demo_site(url(refused), "token", pause_seconds=0)
    assert len(refused.bodies) == 1
    unavailable = serve([504] * ATTEMPTS)
    with pytest.raises(RuntimeError, match="creating the demo site: 504"):
        create_demo_site(url(unavailable), "token", pause_seconds=0)
    assert len(unavailable.bodies) == ATTEMPTS
