"""The authorizer's every refusal and its allowed cases.

The route table (`required_resource`) is pure and tested without AWS. The rest drives
functions/authorizer/app.py with events/http/authorizer-request.json; verifying a signature needs
the KMS key and revocation needs the tokens table, so those tests take the `stack` fixture (moto).
Each refusal is checked twice: the handler's answer as API Gateway reads it (an exception
"Unauthorized" is a 401, isAuthorized false a 403), and the reason `authorize` gives, so a test
cannot pass because the token failed for some other reason.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import pytest

from ems.auth.policy import ANY_TOKEN, required_resource, route_path
from ems.core.settings import settings
from ems_local import apigw
from ems_local.lambda_context import LambdaContext
from tests.support import tokens
from tests.support.events import load
from tests.support.inprocess import load_function

# ---------------------------------------------------------------- the route table (pure)


@pytest.mark.parametrize(
    ("path", "resource"),
    [
        ("/api/v1/tokens", "tokens"),
        ("/api/v1/tokens/generate", "tokens"),
        ("/api/v1/sites/{site_id}", "sites"),
        ("/api/v1/rooms/{name}", "rooms"),
        ("/api/v1/rooms/{name}/data", "rooms"),
        ("/api/v1/sensors", "sensors"),
        ("/api/v1/data/ingest", "ingest"),
        ("/api/v1/data/query", "analytics"),
        ("/api/v1/analytics/energy", "analytics"),
        ("/api/v1/demand-response/invitations/send", "demand-response"),
        ("/api/v1/p2p/orders/{id}", "p2p"),
        ("/api/v1/iot/devices", "iot"),
        ("/api/v1/overview", ANY_TOKEN),
    ],
)
def test_each_route_needs_the_resource_of_its_prefix(path: str, resource: str) -> None:
    assert required_resource(path) == resource


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/data",
        "/api/v1/roomsx",
        "/api/v1/tokensfoo/x",
        "/api/v1/overviews",
        "/api/v2/rooms",
        "/admin",
        "",
    ],
)
def test_a_path_no_prefix_covers_needs_what_no_token_grants(path: str) -> None:
    # A prefix matches whole segments only: /api/v1/roomsx is not under /api/v1/rooms.
    assert required_resource(path) is None


def test_route_path_is_the_path_of_a_route_key() -> None:
    assert route_path("GET /api/v1/rooms/{name}") == "/api/v1/rooms/{name}"
    assert route_path("/api/v1/rooms") == "/api/v1/rooms"


# ---------------------------------------------------------------- the handler against moto

Call = Callable[..., tuple[int, dict[str, Any]]]


@pytest.fixture
def call(stack: object) -> Call:
    """Run the authorizer on the sample event with another Authorization, route or site."""
    module = load_function("functions/authorizer")

    def run(
        authorization: str | None, route_key: str | None = None, site: str | None = "hq"
    ) -> tuple[int, dict[str, Any]]:
        event = load("authorizer-request")
        if authorization is None:
            del event["headers"]["authorization"]
        else:
            event["headers"]["authorization"] = authorization
        if route_key is not None:
            event["routeKey"] = event["requestContext"]["routeKey"] = route_key
            event.pop("pathParameters", None)
        if site is None:
            del event["headers"]["x-site"]
        else:
            event["headers"]["x-site"] = site
        event["identitySource"] = [authorization or "", event["routeKey"]]
        context = LambdaContext("ems-dev-authorizer", 1024, 5)
        verdict = apigw.verdict(lambda: module.handler(event, context))
        return verdict.status, verdict.context

    return run


def reason(
    authorization: str | None, route_key: str = "GET /api/v1/rooms/{name}", site: str | None = "hq"
) -> str:
    from ems.auth.service import authorize
    from ems.auth.store import TokenStore

    decision = authorize(authorization, route_key, site, TokenStore())
    assert not decision.allowed
    return decision.reason


def _now() -> int:
    return int(time.time())


def _public_key_bytes(kind: str) -> bytes:
    from cryptography.hazmat.primitives import serialization

    from ems.auth import signing

    key = signing.public_key(settings().signing_key_id)
    if kind == "pem":
        return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _hs256_with_public_key(kind: str) -> str:
    """Algorithm confusion: HMAC-SHA256 keyed with our public key, which anyone can fetch (JWKS)."""
    header = {"alg": "HS256", "typ": "JWT", "kid": settings().signing_key_id}
    signing_input = f"{tokens.b64url_json(header)}.{tokens.b64url_json(tokens.claims())}"
    mac = hmac.new(_public_key_bytes(kind), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{tokens.b64url(mac)}"


def _tampered() -> str:
    """A genuine token whose payload was swapped for one with more resources; signature kept."""
    genuine = tokens.issue(["sensors"], ["hq"])
    header, _, signature = genuine.split(".")
    elevated = tokens.b64url_json(tokens.claims(resources=["*"], sites=["*"]))
    return f"{header}.{elevated}.{signature}"


def _revoked() -> str:
    from ems.auth.models import Claims, RevokeRequest
    from ems.auth.service import revoke
    from ems.auth.store import TokenStore

    token = tokens.issue(["*"], ["*"])
    revoke(RevokeRequest(token=token), Claims.model_validate(tokens.claims()), TokenStore())
    return token


def _other_kms_key() -> str:
    """Signed by a real KMS key of this account that is not one of our signing keys."""
    import boto3

    key_id = boto3.client("kms", region_name="us-east-1").create_key(
        KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY"
    )["KeyMetadata"]["KeyId"]
    return tokens.kms_signed(tokens.claims(), key_id)


# (case, how to make the Authorization header, what the reason says)
UNAUTHORIZED: list[tuple[str, Callable[[], str | None], str]] = [
    ("no token", lambda: None, "no token"),
    ("empty header", lambda: "", "no token"),
    ("bearer without token", lambda: "Bearer ", "Bearer <token>"),
    ("not bearer: basic", lambda: "Basic dXNlcjpwYXNzd29yZA==", "Bearer <token>"),
    ("not bearer: bare token", lambda: tokens.issue(["*"], ["*"]), "Bearer <token>"),
    ("not bearer: other scheme", lambda: "Token " + tokens.issue(["*"], ["*"]), "Bearer <token>"),
    ("malformed: not a jwt", lambda: "Bearer not-a-jwt", "malformed token"),
    ("malformed: two segments", lambda: "Bearer abc.def", "malformed token"),
    (
        "malformed: kid not a string",
        lambda: "Bearer " + tokens.unsigned(tokens.claims(), {"alg": "ES256", "kid": None}),
        "malformed token",
    ),
    (
        "malformed: header a list",
        lambda: (
            "Bearer " + tokens.b64url_json(["ES256"]) + "." + tokens.b64url_json(tokens.claims()) + ".c2ln"
        ),
        "malformed token",
    ),
    (
        "malformed: header not json",
        lambda: "Bearer " + tokens.b64url(b"{oops") + ".e30.sig",
        "malformed token",
    ),
    ("bad signature", lambda: "Bearer " + tokens.forged(tokens.claims()), "bad signature"),
    ("payload swapped", lambda: "Bearer " + _tampered(), "bad signature"),
    (
        "alg none",
        lambda: "Bearer " + tokens.unsigned(tokens.claims(), {"alg": "none", "typ": "JWT"}),
        "algorithm 'none'",
    ),
    (
        "alg None with our kid",
        lambda: (
            "Bearer " + tokens.unsigned(tokens.claims(), {"alg": "None", "kid": settings().signing_key_id})
        ),
        "algorithm 'None'",
    ),
    (
        "HS256 keyed with the public key PEM",
        lambda: "Bearer " + _hs256_with_public_key("pem"),
        "algorithm 'HS256'",
    ),
    (
        "HS256 keyed with the public key DER",
        lambda: "Bearer " + _hs256_with_public_key("der"),
        "algorithm 'HS256'",
    ),
    (
        "expired",
        lambda: "Bearer " + tokens.kms_signed(tokens.claims(iat=_now() - 7200, exp=_now() - 3600)),
        "expired",
    ),
    (
        "nbf in the future",
        lambda: "Bearer " + tokens.kms_signed(tokens.claims(nbf=_now() + 3600)),
        "not valid yet",
    ),
    (
        "iat in the future",
        lambda: "Bearer " + tokens.kms_signed(tokens.claims(iat=_now() + 3600, exp=_now() + 7200)),
        "not valid yet",
    ),
    ("wrong iss", lambda: "Bearer " + tokens.kms_signed(tokens.claims(iss="someone-else")), "another issuer"),
    ("wrong aud", lambda: "Bearer " + tokens.kms_signed(tokens.claims(aud="other-api")), "another audience"),
    ("no exp", lambda: "Bearer " + tokens.kms_signed(tokens.claims(exp=None)), "invalid token"),
    ("no jti", lambda: "Bearer " + tokens.kms_signed(tokens.claims(jti=None)), "invalid token"),
    (
        "unknown resource in claims",
        lambda: "Bearer " + tokens.kms_signed(tokens.claims(resources=["root"])),
        "claims are malformed",
    ),
    (
        "unknown kid",
        lambda: "Bearer " + tokens.forged(tokens.claims(), kid="k-unknown"),
        "not signed by a key of ours",
    ),
    ("no kid", lambda: "Bearer " + _without_kid(), "not signed by a key of ours"),
    ("another KMS key", lambda: "Bearer " + _other_kms_key(), "not signed by a key of ours"),
    ("revoked jti", lambda: "Bearer " + _revoked(), "revoked"),
]


def _without_kid() -> str:
    import jwt

    return jwt.encode(tokens.claims(), tokens.foreign_key(), algorithm="ES256")


@pytest.mark.parametrize(("case", "make", "why"), UNAUTHORIZED, ids=[c[0] for c in UNAUTHORIZED])
def test_who_the_caller_is_refused_is_401(
    call: Call, case: str, make: Callable[[], str | None], why: str
) -> None:
    authorization = make()
    status, context = call(authorization)
    assert (status, context) == (401, {})
    assert why in reason(authorization)


def test_what_a_token_may_not_do_is_403(call: Call) -> None:
    rooms_elsewhere = "Bearer " + tokens.issue(["rooms"], ["a"])
    sensors_here = "Bearer " + tokens.issue(["sensors"], ["hq"])
    admin = "Bearer " + tokens.issue(["*"], ["*"])

    assert call(sensors_here) == (403, {})
    assert reason(sensors_here) == "token lacks resource 'rooms'"
    assert call(rooms_elsewhere) == (403, {})
    assert reason(rooms_elsewhere) == "token is not granted site 'hq'"
    assert call(admin, route_key="GET /api/v1/not-a-domain") == (403, {})
    assert reason(admin, "GET /api/v1/not-a-domain") == "no token grants route GET /api/v1/not-a-domain"


def test_a_site_in_the_path_is_the_site_checked(call: Call) -> None:
    from ems.auth.service import authorize
    from ems.auth.store import TokenStore

    token = "Bearer " + tokens.issue(["sites"], ["a"])
    # What the handler reads from pathParameters: /api/v1/sites/b by a token of site a.
    assert authorize(token, "GET /api/v1/sites/{site_id}", "b", TokenStore()).status == 403
    assert authorize(token, "GET /api/v1/sites/{site_id}", "a", TokenStore()).allowed


def test_admin_token_is_allowed_and_its_claims_passed_on(call: Call) -> None:
    import json

    token = tokens.issue(["*"], ["*"], name="root")
    status, context = call("Bearer " + token)
    assert status == 200
    assert context["sub"] == "root"
    assert context["site"] == "hq"
    passed = json.loads(context["claims"])
    assert (passed["resources"], passed["sites"], passed["jti"]) == (["*"], ["*"], context["jti"])


def test_exact_resource_and_site_are_allowed(call: Call) -> None:
    status, context = call("Bearer " + tokens.issue(["rooms"], ["hq"]))
    assert (status, context["site"]) == (200, "hq")


def test_single_site_token_needs_no_site(call: Call) -> None:
    status, context = call("Bearer " + tokens.issue(["rooms"], ["hq"]), site=None)
    assert (status, context["site"]) == (200, "hq")


def test_overview_is_open_to_any_token(call: Call) -> None:
    token = "Bearer " + tokens.issue(["sensors"], ["hq"])
    status, _ = call(token, route_key="GET /api/v1/overview")
    assert status == 200
    # ... but still only on its sites.
    assert call(token, route_key="GET /api/v1/overview", site="b") == (403, {})


def test_bearer_scheme_is_case_insensitive(call: Call) -> None:
    token = tokens.issue(["rooms"], ["hq"])
    assert call("bearer " + token)[0] == 200
    assert call("BEARER  " + token + " ")[0] == 200
