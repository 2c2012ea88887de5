"""The local HTTP API's server with the page at its root: web/ beside the API, on one port.

Raw requests (http.client sends the path exactly as written, `..` included): the page's files with
their types, traversal refused, and the API still answering its own paths through the authorizer.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest

from ems_local.http_api import HttpApiServer
from ems_local.static import StaticSite
from ems_local.template import ROOT
from tests.support.inprocess import InProcessApi


@pytest.fixture
def server(api: InProcessApi) -> Iterator[tuple[str, int]]:
    running = HttpApiServer(api.gateway, 0, None, StaticSite(ROOT / "web"))
    running.start()
    try:
        host, port = running.url.removeprefix("http://").split(":")
        yield host, int(port)
    finally:
        running.stop()


def get(
    server: tuple[str, int], path: str, method: str = "GET", token: str | None = None
) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection(*server, timeout=30)
    try:
        connection.request(method, path, headers={"authorization": f"Bearer {token}"} if token else {})
        response = connection.getresponse()
        return response.status, response.getheader("content-type") or "", response.read()
    finally:
        connection.close()


def test_the_page_and_its_files(server: tuple[str, int]) -> None:
    status, content_type, body = get(server, "/")
    assert (status, content_type) == (200, "text/html; charset=utf-8")
    assert b'<script src="app.js"' in body
    assert get(server, "/app.js")[:2] == (200, "text/javascript; charset=utf-8")
    assert get(server, "/style.css")[:2] == (200, "text/css; charset=utf-8")
    status, content_type, body = get(server, "/", method="HEAD")
    assert (status, body) == (200, b"")


@pytest.mark.parametrize(
    "path",
    [
        "/../pyproject.toml",
        "/%2e%2e/pyproject.toml",
        "/..%2f..%2fetc%2fpasswd",
        "/missing.js",
        "/web/index.html",
    ],
)
def test_nothing_else(server: tuple[str, int], path: str) -> None:
    status, _, body = get(server, path)
    assert (status, body) == (404, b"Not Found\n")


def test_the_api_is_still_the_apis(server: tuple[str, int], admin_token: str) -> None:
    """The page bypasses the authorizer; the API does not: its paths answer as API Gateway does."""
    status, _, body = get(server, "/api/v1/overview")
    assert status == 401
    status, _, body = get(server, "/api/v1/no-such-route")
    assert (status, json.loads(body)) == (404, {"message": "Not Found"})
    assert get(server, "/health")[0] == 200
    assert get(server, "/", method="POST")[0] == 404  # no route takes POST /, and the page only GET
    assert api_site_missing(server, admin_token) == 404


def api_site_missing(server: tuple[str, int], token: str) -> int:
    """The overview through the real server: the default site does not exist in this stack."""
    return get(server, "/api/v1/overview", token=token)[0]
