"""Opaque pagination tokens over DynamoDB's LastEvaluatedKey, and the page shape of every list."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Collection, Iterator
from typing import Any, Generic, TypeVar

from ems.core.errors import BadRequest
from ems.core.models import Model

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class Page(Model, Generic[T]):
    items: list[T]
    count: int
    next_token: str | None = None


def every(read: Callable[[str | None], Page[T]]) -> Iterator[T]:
    """Every item of a paged list: `read(next_token)` page after page until a page has no next_token."""
    token: str | None = None
    while True:
        page = read(token)
        yield from page.items
        token = page.next_token
        if not token:
            return


def encode_token(last_key: dict[str, Any] | None) -> str | None:
    if not last_key:
        return None
    raw = json.dumps(last_key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _is_key_value(value: Any) -> bool:
    """A DynamoDB key attribute as LastEvaluatedKey writes it: {"S": "..."} or {"N": "..."}."""
    return (
        isinstance(value, dict)
        and len(value) == 1
        and next(iter(value)) in ("S", "N")
        and isinstance(next(iter(value.values())), str)
    )


def decode_token(token: str | None, keys: Collection[str] | None = None) -> dict[str, Any] | None:
    """The start key of the next page; 400 unless it is shaped like a key of `keys` (the table's or
    index's key attributes), since DynamoDB and botocore answer anything else with a 500."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("not a token this API issued", "next_token") from exc
    if not isinstance(value, dict) or not value or not all(_is_key_value(v) for v in value.values()):
        raise BadRequest("not a token this API issued", "next_token")
    if keys is not None and set(value) != set(keys):
        raise BadRequest("not a token this API issued", "next_token")
    return value


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError as exc:
        raise BadRequest(f"must be a whole number from 1 to {MAX_LIMIT}", "limit") from exc
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"must be a whole number from 1 to {MAX_LIMIT}", "limit")
    return limit
