"""Opaque pagination tokens over DynamoDB's LastEvaluatedKey, and the page shape of every list."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from ems.core.errors import BadRequest

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class Page(BaseModel, Generic[T]):
    items: list[T]
    count: int
    next_token: str | None = None


def encode_token(last_key: dict[str, Any] | None) -> str | None:
    if not last_key:
        return None
    raw = json.dumps(last_key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str | None) -> dict[str, Any] | None:
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("not a token this API issued", "next_token") from exc
    if not isinstance(value, dict):
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
