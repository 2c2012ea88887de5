"""Pagination tokens: what we issue comes back as the key it was, anything else is 400 next_token."""

from __future__ import annotations

import base64
import json

import pytest

from ems.core.errors import BadRequest
from ems.core.pagination import decode_token, encode_token, parse_limit

KEY = {"pk": {"S": "hq"}, "sk": {"S": "ROOM#Conference Room A"}}


def _b64(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def test_a_token_we_issued_decodes_to_its_key() -> None:
    token = encode_token(KEY)
    assert token is not None
    assert decode_token(token) == KEY
    assert decode_token(token, ("pk", "sk")) == KEY
    assert decode_token(encode_token({"jti": {"S": "tok_1"}}), ("jti",)) == {"jti": {"S": "tok_1"}}


def test_no_key_no_token() -> None:
    assert encode_token(None) is None
    assert encode_token({}) is None
    assert decode_token(None) is None
    assert decode_token("") is None


@pytest.mark.parametrize(
    "token",
    [
        "garbage!",
        _b64("not a dict"),
        _b64([1, 2]),
        _b64({}),
        _b64({"pk": "hq"}),  # botocore would fail to serialise it: a 500
        _b64({"pk": {"S": 1}}),
        _b64({"pk": {"M": {}}}),
        _b64({"pk": {"S": "hq", "N": "1"}}),
    ],
)
def test_anything_else_is_400_next_token(token: str) -> None:
    with pytest.raises(BadRequest) as refused:
        decode_token(token)
    assert refused.value.field == "next_token"


def test_a_key_of_another_table_or_index_is_400() -> None:
    with pytest.raises(BadRequest):
        decode_token(encode_token({"foo": {"S": "bar"}}), ("pk", "sk"))
    with pytest.raises(BadRequest):
        decode_token(encode_token(KEY), ("pk", "sk", "gsi1pk", "gsi1sk"))


@pytest.mark.parametrize(("raw", "limit"), [(None, 50), ("", 50), ("1", 1), ("200", 200)])
def test_limit(raw: str | None, limit: int) -> None:
    assert parse_limit(raw) == limit


@pytest.mark.parametrize("raw", ["0", "201", "-1", "ten", "1.5"])
def test_limit_out_of_range(raw: str) -> None:
    with pytest.raises(BadRequest) as refused:
        parse_limit(raw)
    assert refused.value.field == "limit"
