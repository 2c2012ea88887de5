"""The authorizer under random input: it answers 401 (an exception "Unauthorized") to everything but
the one genuine token, never fails another way, and never allows a token it did not sign.

"The genuine token" is judged as a strict verifier reads a JWS: the same header and payload
segments, and a signature segment of base64url characters only (with at most the padding a
complete quad needs) that decodes to the same bytes: its last character may differ in the bits
base64 leaves unused, and it is still the same signature over the same claims.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.utils import base64url_decode

from ems_local.lambda_context import LambdaContext
from tests.support import tokens
from tests.support.events import load
from tests.support.inprocess import load_function

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
B64URL = string.ascii_letters + string.digits + "-_"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


class Authorizer:
    """The handler, the genuine token, and the oracle that says what the handler must answer."""

    def __init__(self) -> None:
        self.module = load_function("functions/authorizer")
        self.genuine = tokens.issue(["rooms"], ["hq"], name="fuzz")
        self.header, self.payload, signature = self.genuine.split(".")
        self.signature = base64url_decode(signature.encode())

    def answer(self, authorization: str) -> int:
        """200 allowed, 403 forbidden, 401 the exception "Unauthorized"; anything else fails the test."""
        event = load("authorizer-request")
        event["headers"]["authorization"] = authorization
        event["identitySource"] = [authorization, event["routeKey"]]
        try:
            result = self.module.handler(event, LambdaContext("ems-dev-authorizer", 1024, 5))
        except Exception as exc:
            assert type(exc) is Exception and exc.args == ("Unauthorized",), repr(exc)
            return 401
        assert set(result) <= {"isAuthorized", "context"}, result
        return 200 if result["isAuthorized"] is True else 403

    def is_genuine(self, token: str) -> bool:
        parts = token.strip().split(".")
        if len(parts) != 3 or parts[:2] != [self.header, self.payload]:
            return False
        signature = parts[2]
        unpadded = signature.rstrip("=")
        padding = len(signature) - len(unpadded)
        if padding > 2 or (padding and len(signature) % 4) or any(c not in B64URL for c in unpadded):
            return False
        try:
            return base64url_decode(unpadded.encode()) == self.signature
        except ValueError:
            return False

    def check(self, token: str) -> None:
        expected = 200 if self.is_genuine(token) else 401
        assert self.answer("Bearer " + token) == expected, token


@pytest.fixture
def authorizer(stack: object) -> Authorizer:
    subject = Authorizer()
    assert subject.answer("Bearer " + subject.genuine) == 200
    return subject


@FUZZ
@given(text=st.text(max_size=300))
def test_random_strings(authorizer: Authorizer, text: str) -> None:
    assert authorizer.answer(text) == 401  # as the whole header: no scheme, or a scheme and no token of ours
    authorizer.check(text)  # after "Bearer "


@FUZZ
@given(
    header=st.fixed_dictionaries(
        {},
        optional={
            "alg": st.sampled_from(["ES256", "none", "None", "HS256", "RS256", "ES512", ""]) | json_values,
            "kid": st.sampled_from(["real", "", "k2"]) | json_values,
            "typ": st.just("JWT") | json_values,
        },
    ),
    payload=st.one_of(json_values, st.dictionaries(st.text(max_size=8), json_values, max_size=6)),
    elevate=st.booleans(),
    signature=st.sampled_from(["genuine", "empty"]) | st.binary(max_size=80),
)
def test_json_ish_tokens(
    authorizer: Authorizer, header: dict[str, Any], payload: Any, elevate: bool, signature: Any
) -> None:
    from ems.core.settings import settings as ems_settings

    if header.get("kid") == "real":
        header["kid"] = ems_settings().signing_key_id
    if elevate:
        payload = tokens.claims(resources=["*"], sites=["*"])
    raw_signature = {"genuine": authorizer.signature, "empty": b""}.get(signature, signature)
    token = f"{tokens.b64url_json(header)}.{tokens.b64url(json.dumps(payload).encode())}.{tokens.b64url(raw_signature)}"
    authorizer.check(token)


def _flip(token: str, at: int, char: str) -> str:
    at %= len(token)
    return token[:at] + char + token[at + 1 :]


def _insert(token: str, at: int, char: str) -> str:
    at %= len(token) + 1
    return token[:at] + char + token[at:]


def _delete(token: str, at: int, _char: str) -> str:
    at %= len(token)
    return token[:at] + token[at + 1 :]


MUTATIONS: dict[str, Callable[[str, int, str], str]] = {"flip": _flip, "insert": _insert, "delete": _delete}


def _segment_swap(auth: Authorizer, order: tuple[int, ...]) -> str:
    segments = auth.genuine.split(".")
    return ".".join(segments[i] for i in order)


def _elevated(auth: Authorizer, changes: dict[str, Any]) -> str:
    """The genuine claims with more granted, re-encoded, the genuine header and signature kept."""
    claims = json.loads(base64url_decode(auth.payload.encode()))
    claims.update(changes)
    return f"{auth.header}.{tokens.b64url_json(claims)}.{auth.genuine.split('.')[2]}"


@FUZZ
@given(
    edits=st.lists(
        st.tuples(
            st.sampled_from(sorted(MUTATIONS)),
            st.integers(min_value=0, max_value=10_000),
            st.sampled_from(list(B64URL)) | st.sampled_from([".", "=", " ", "+", "/", "\n", "é", "\x00"]),
        ),
        min_size=1,
        max_size=4,
    ),
    segment=st.sampled_from([None, 0, 1, 2]),
)
def test_mutations_of_the_genuine_token(
    authorizer: Authorizer, edits: list[tuple[str, int, str]], segment: int | None
) -> None:
    parts = authorizer.genuine.split(".")
    if segment is None:
        token = authorizer.genuine
        for name, at, char in edits:
            token = MUTATIONS[name](token, at, char)
    else:  # aim every edit at one segment: header, payload or signature
        for name, at, char in edits:
            parts[segment] = MUTATIONS[name](parts[segment], at, char) if parts[segment] else char
        token = ".".join(parts)
    authorizer.check(token)


@pytest.mark.parametrize(
    "order", [(1, 0, 2), (0, 2, 1), (2, 1, 0), (0, 1), (0, 1, 2, 2), (0, 0, 2), (1, 1, 2), (0, 1, 1)]
)
def test_swapped_segments(authorizer: Authorizer, order: tuple[int, ...]) -> None:
    authorizer.check(_segment_swap(authorizer, order))


@pytest.mark.parametrize(
    "changes",
    [
        {"resources": ["*"]},
        {"resources": ["rooms", "tokens"]},
        {"sites": ["*"]},
        {"sites": ["hq", "b"]},
        {"exp": 4_102_444_800},
        {"jti": "tok_other"},
        {"name": "admin", "sub": "admin"},
    ],
)
def test_elevated_claims_under_the_old_signature(authorizer: Authorizer, changes: dict[str, Any]) -> None:
    token = _elevated(authorizer, changes)
    assert not authorizer.is_genuine(token)
    assert authorizer.answer("Bearer " + token) == 401


def test_alg_none_over_the_genuine_claims(authorizer: Authorizer) -> None:
    header = json.loads(base64url_decode(authorizer.header.encode()))
    for alg in ("none", "None", "NONE", "HS256"):
        forged = f"{tokens.b64url_json({**header, 'alg': alg})}.{authorizer.payload}."
        assert authorizer.answer("Bearer " + forged) == 401
        assert authorizer.answer("Bearer " + forged + authorizer.genuine.split(".")[2]) == 401
