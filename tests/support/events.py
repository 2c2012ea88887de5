"""The sample events of events/http and variations of them, replayed through the in-process API.

A variation changes what a client would change (path parameters, query, body, headers) and keeps
the rest of the event as API Gateway shaped it, so every call still starts from a committed file.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from ems_local import apigw
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
