"""The sample events of events/http and variations of them, replayed through the in-process API.

A variation changes what a client would change (path parameters, query, body, headers) and keeps
the rest of the event as API Gateway shaped it, so every call still starts from a committed file.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote

from ems_local import apigw
from ems_local.template import Stack
from tests.support.inprocess import EVENTS, InProcessApi, Reply

KEEP: Any = object()


def load(name: str) -> dict[str, Any]:
    """events/http/<name>.json as a dict."""
    return json.loads((EVENTS / "http" / f"{name}.json").read_text())


def replay(
    api: InProcessApi,
    name: str,
    token: str | None = None,
    *,
    path: dict[str, str] | None = None,
    query: dict[str, str] | None = KEEP,
    body: Any = KEEP,
    headers: Mapping[str, str | None] | None = None,
) -> Reply:
    """Replay events/http/<name>.json with `token`, changed as asked.

    `path` fills the route's path parameters, `query` replaces the query string ({} or None: none),
    `body` replaces the body (a str is sent as it is, anything else as JSON, None: no body),
    `headers` sets headers (a None value removes that header, `authorization` included).
    """
    event = load(name)
    overrides: dict[str, Any] = {}
    if path is not None:
        raw_path = apigw.path_of(event["routeKey"].split(" ", 1)[1], **path)
        context = copy.deepcopy(event["requestContext"])
        context["http"]["path"] = raw_path
        overrides.update(rawPath=raw_path, pathParameters=dict(path), requestContext=context)
    if query is not KEEP:
        params = dict(query or {})
        overrides["rawQueryString"] = "&".join(
            f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items()
        )
        overrides["queryStringParameters"] = params or None
    new_headers = dict(event["headers"])
    if body is not KEEP:
        if body is None:
            overrides["body"] = None
            new_headers.pop("content-length", None)
            new_headers.pop("content-type", None)
        else:
            text = body if isinstance(body, str) else json.dumps(body)
            overrides["body"] = text
            new_headers["content-length"] = str(len(text.encode()))
            new_headers["content-type"] = "application/json"
    for key, value in (headers or {}).items():
        if value is None:
            new_headers.pop(key.lower(), None)
        else:
            new_headers[key.lower()] = value
    overrides["headers"] = new_headers
    return api.replay(f"http/{name}.json", token=token, **overrides)


def assert_shaped_as_api_gateway_sends_it(event: dict[str, Any], functions: tuple[str, ...]) -> None:
    """An events/http sample as API Gateway sends it: its route key matches a route of one of
    `functions` (path parameters included), the request context repeats route key, method and path,
    the query string is the parameters, a body comes with its content-length (none without one, on
    a GET or DELETE), and the token and site are placeholders (`Bearer REPLACE_ME`, x-site hq)."""
    routes = [apigw.Route(**r) for r in Stack.from_file().http_routes()]
    method, _, _ = event["routeKey"].partition(" ")
    found = apigw.match(routes, method, event["rawPath"])
    assert found is not None and found[0].key == event["routeKey"] and found[0].function in functions
    assert found[1] == event.get("pathParameters", {})
    context = event["requestContext"]
    assert (context["routeKey"], context["http"]["method"], context["http"]["path"]) == (
        event["routeKey"], method, event["rawPath"],
    )  # fmt: skip
    assert dict(parse_qsl(event["rawQueryString"])) == event.get("queryStringParameters", {})
    if "body" in event:
        assert event["headers"]["content-length"] == str(len(event["body"].encode()))
    else:
        assert method in ("GET", "DELETE") and "content-length" not in event["headers"]
    assert event["headers"]["authorization"] == "Bearer REPLACE_ME"
    assert event["headers"]["x-site"] == "hq"
