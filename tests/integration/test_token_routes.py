"""Token routes replayed from events/http through the authorizer, against moto: generate, validate,
save, revoke, list; delegation limits, key rotation, and the JWKS that verifies what we mint."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from ems.core.settings import settings
from tests.support import tokens
from tests.support.events import replay
from tests.support.inprocess import InProcessApi, ok, refused


def unverified(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def can_list_rooms(api: InProcessApi, token: str) -> int:
    return replay(api, "rooms-list", token).status


@pytest.fixture
def hq(api: InProcessApi, admin_token: str) -> str:
    assert replay(api, "sites-create", admin_token).status == 201
    return "hq"


# ---------------------------------------------------------------- generate


def test_generate_from_the_sample(api: InProcessApi, admin_token: str, hq: str) -> None:
    issued = ok(replay(api, "tokens-generate", admin_token), 201)
    claims = unverified(issued["token"])
    assert jwt.get_unverified_header(issued["token"])["kid"] == settings().signing_key_id
    assert claims["jti"] == issued["jti"]
    assert (claims["name"], claims["sub"]) == ("dashboard_user", "dashboard_user")
    assert claims["resources"] == ["sensors", "rooms", "analytics"]
    assert claims["sites"] == ["hq"]
    assert (claims["data_aggregation"], claims["time_aggregation"], claims["embargo_minutes"]) == (
        "raw",
        "15m",
        0,
    )
    assert (claims["iss"], claims["aud"]) == ("ems", "ems-api")
    assert claims["exp"] - claims["iat"] == 1440 * 60
    # It works where it was granted, and only there.
    assert can_list_rooms(api, issued["token"]) == 200
    assert replay(api, "sites-list", issued["token"]).status == 403


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"list_of_resources": []}, "list_of_resources"),
        ({"list_of_resources": ["root"]}, "list_of_resources.0"),
        ({"sites": []}, "sites"),
        ({"sites": ["bad site"]}, "sites"),
        ({"exp_minutes": 0}, "exp_minutes"),
        ({"data_aggregation": "hour"}, "data_aggregation"),
        ({"time_aggregation": "5m"}, "time_aggregation"),
        ({"embargo_minutes": -1}, "embargo_minutes"),
        ({"name": ""}, "name"),
        ({"admin": True}, "admin"),
    ],
)
def test_generate_validation_names_the_field(
    api: InProcessApi, admin_token: str, change: dict[str, Any], field: str
) -> None:
    body = {"name": "x", "list_of_resources": ["rooms"], **change}
    refused(replay(api, "tokens-generate", admin_token, body=body), 422, field)


def test_only_a_tokens_holder_may_mint_or_manage_tokens(api: InProcessApi, admin_token: str) -> None:
    rooms_only = tokens.issue(["rooms", "sensors", "sites"], ["*"])
    for sample in ("tokens-generate", "tokens-save", "tokens-revoke", "tokens-list"):
        assert replay(api, sample, rooms_only).status == 403, sample
    assert replay(api, "tokens-generate", admin_token).status == 201


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"list_of_resources": ["rooms", "analytics"]}, "list_of_resources"),
        ({"list_of_resources": ["*"]}, "list_of_resources"),
        ({"sites": ["b"]}, "sites"),
        ({"sites": ["a", "b"]}, "sites"),
        ({"sites": ["*"]}, "sites"),
        ({"data_aggregation": "raw"}, "data_aggregation"),
        ({"time_aggregation": "15m"}, "time_aggregation"),
        ({"time_aggregation": "raw"}, "time_aggregation"),
        ({"embargo_minutes": 59}, "embargo_minutes"),
    ],
)
def test_a_token_hands_on_no_more_than_it_holds(
    api: InProcessApi, change: dict[str, Any], field: str
) -> None:
    issuer = tokens.issue(
        ["rooms", "sensors", "tokens"],
        ["a"],
        data_aggregation="room",
        time_aggregation="1h",
        embargo_minutes=60,
    )
    body = {"name": "delegate", "list_of_resources": ["rooms"], "data_aggregation": "room",
            "time_aggregation": "1h", "embargo_minutes": 60, **change}  # fmt: skip
    refused(replay(api, "tokens-generate", issuer, body=body), 403, field)


def test_a_delegated_token_inherits_sites_and_may_be_stricter(api: InProcessApi) -> None:
    issuer = tokens.issue(
        ["rooms", "sensors", "tokens"],
        ["a"],
        data_aggregation="room",
        time_aggregation="1h",
        embargo_minutes=60,
    )
    body = {"name": "delegate", "list_of_resources": ["rooms"], "data_aggregation": "site",
            "time_aggregation": "1d", "embargo_minutes": 120}  # fmt: skip
    issued = ok(replay(api, "tokens-generate", issuer, body=body), 201)
    claims = unverified(issued["token"])
    assert (claims["resources"], claims["sites"]) == (["rooms"], ["a"])
    assert (claims["data_aggregation"], claims["time_aggregation"], claims["embargo_minutes"]) == (
        "site",
        "1d",
        120,
    )


# ---------------------------------------------------------------- validate


def test_validate_needs_no_token_and_says_why(api: InProcessApi, admin_token: str) -> None:
    good = tokens.issue(["rooms"], ["hq"], name="checker")
    # The sample carries no Authorization: the route is open.
    answer = ok(replay(api, "tokens-validate", body={"token": good}))
    assert answer["valid"] is True
    assert (answer["claims"]["name"], answer["claims"]["resources"], answer["claims"]["sites"]) == (
        "checker", ["rooms"], ["hq"],
    )  # fmt: skip

    as_sent = ok(replay(api, "tokens-validate"))  # the sample's own "REPLACE_ME"
    assert as_sent["valid"] is False
    assert as_sent["reason"].startswith("malformed token")
    assert as_sent["claims"] is None

    forged = ok(replay(api, "tokens-validate", body={"token": tokens.forged(tokens.claims())}))
    assert (forged["valid"], forged["reason"]) == (False, "bad signature")

    ok(replay(api, "tokens-revoke", admin_token, body={"token": good}))
    revoked = ok(replay(api, "tokens-validate", body={"token": good}))
    assert (revoked["valid"], revoked["reason"]) == (False, "token has been revoked")

    refused(replay(api, "tokens-validate", body={}), 422, "token")
    refused(replay(api, "tokens-validate", body="{"), 400, "body")


# ---------------------------------------------------------------- save and list


def test_save_registers_an_externally_minted_token_and_list_never_shows_a_token(
    api: InProcessApi, admin_token: str
) -> None:
    external = tokens.kms_signed(tokens.claims(name="meter-gateway", sub="meter-gateway", jti="tok_external1",
                                               resources=["ingest"], sites=["hq"]))  # fmt: skip
    saved = ok(replay(api, "tokens-save", admin_token, body={"token": external}), 201)
    assert (saved["jti"], saved["name"], saved["origin"], saved["revoked"]) == (
        "tok_external1", "meter-gateway", "saved", False,
    )  # fmt: skip
    assert (saved["resources"], saved["sites"]) == (["ingest"], ["hq"])
    # Saving again answers the same record.
    assert (
        ok(replay(api, "tokens-save", admin_token, body={"token": external}), 201)["jti"] == "tok_external1"
    )

    minted = ok(replay(api, "tokens-generate", admin_token), 201)
    listing = replay(api, "tokens-list", admin_token)
    page = ok(listing)
    by_jti = {t["jti"]: t for t in page["items"]}
    admin_jti = unverified(admin_token)["jti"]
    assert set(by_jti) == {"tok_external1", minted["jti"], admin_jti}
    assert page["count"] == 3
    assert (by_jti["tok_external1"]["origin"], by_jti[minted["jti"]]["origin"]) == ("saved", "minted")
    assert by_jti[minted["jti"]]["name"] == "dashboard_user"
    # Metadata only: no token string, nor any of its signatures, anywhere in the answer.
    body = listing.raw.decode()
    for token in (external, minted["token"], admin_token):
        assert token not in body
        assert token.rsplit(".", 1)[1] not in body
    assert all("token" not in item for item in page["items"])


def test_save_refuses_what_is_not_a_live_token_of_ours(api: InProcessApi, admin_token: str) -> None:
    forged = tokens.forged(tokens.claims())
    expired = tokens.kms_signed(tokens.claims(iat=1_600_000_000, exp=1_600_003_600))
    for token, why in ((forged, "bad signature"), (expired, "expired"), ("garbage", "malformed")):
        assert why in refused(replay(api, "tokens-save", admin_token, body={"token": token}), 422, "token")
    # The caller's own token is fine: the 422 is about the token in the body.
    assert [t["origin"] for t in ok(replay(api, "tokens-list", admin_token))["items"]] == ["minted"]


def test_a_site_admin_cannot_save_or_revoke_another_sites_token(api: InProcessApi) -> None:
    site_admin = tokens.issue(["tokens"], ["a"])
    other = tokens.kms_signed(tokens.claims(resources=["rooms"], sites=["b"]))
    refused(replay(api, "tokens-save", site_admin, body={"token": other}), 403, "token")
    refused(replay(api, "tokens-revoke", site_admin, body={"token": other}), 403, "token")
    assert can_list_rooms(api, other) == 403  # still in force (a revoked token is 401): not granted hq


def test_list_pages(api: InProcessApi, admin_token: str) -> None:
    for n in range(4):
        tokens.issue(["rooms"], ["hq"], name=f"user{n}")
    seen: list[str] = []
    next_token: str | None = None
    for _ in range(10):
        query = {"limit": "2"} if next_token is None else {"limit": "2", "next_token": next_token}
        page = ok(replay(api, "tokens-list", admin_token, query=query))
        assert len(page["items"]) <= 2
        seen += [t["name"] for t in page["items"]]
        next_token = page["next_token"]
        if next_token is None:
            break
    assert sorted(seen) == ["admin", "user0", "user1", "user2", "user3"]


def test_a_site_admin_lists_only_its_sites_tokens(api: InProcessApi, admin_token: str) -> None:
    tokens.issue(["rooms"], ["a"], name="in-a")
    tokens.issue(["rooms"], ["b"], name="in-b")
    site_admin = tokens.issue(["tokens"], ["a"], name="admin-a")
    names = sorted(t["name"] for t in ok(replay(api, "tokens-list", site_admin))["items"])
    assert names == ["admin-a", "in-a"]


# ---------------------------------------------------------------- revoke


def test_revoke_by_token_is_idempotent_and_stops_the_token(
    api: InProcessApi, admin_token: str, hq: str
) -> None:
    issued = ok(replay(api, "tokens-generate", admin_token), 201)
    assert can_list_rooms(api, issued["token"]) == 200

    first = ok(replay(api, "tokens-revoke", admin_token, body={"token": issued["token"]}))
    assert first == {"revoked": True, "jti": issued["jti"]}
    assert can_list_rooms(api, issued["token"]) == 401
    again = ok(replay(api, "tokens-revoke", admin_token, body={"token": issued["token"]}))
    assert again == first

    listed = {t["jti"]: t for t in ok(replay(api, "tokens-list", admin_token))["items"]}
    assert listed[issued["jti"]]["revoked"] is True
    assert listed[issued["jti"]]["revoked_at"] is not None
    assert listed[issued["jti"]]["origin"] == "minted"


def test_revoke_by_jti_from_the_sample_is_idempotent(api: InProcessApi, admin_token: str) -> None:
    # The sample revokes tok_8d2e..., a jti this stack never saw: it is recorded as revoked.
    first = ok(replay(api, "tokens-revoke", admin_token))
    assert first == {"revoked": True, "jti": "tok_8d2e4f6a0b1c3d5e7f9a2b4c6d8e0f13"}
    assert ok(replay(api, "tokens-revoke", admin_token)) == first
    listed = {t["jti"]: t for t in ok(replay(api, "tokens-list", admin_token))["items"]}
    assert (listed[first["jti"]]["revoked"], listed[first["jti"]]["origin"]) == (True, "revoked-only")

    # A token later signed with that jti is refused from the start.
    late = tokens.kms_signed(tokens.claims(jti=first["jti"], sites=["hq"]))
    assert can_list_rooms(api, late) == 401


def test_revoke_a_known_token_by_jti(api: InProcessApi, admin_token: str, hq: str) -> None:
    issued = ok(replay(api, "tokens-generate", admin_token), 201)
    assert ok(replay(api, "tokens-revoke", admin_token, body={"jti": issued["jti"]}))["revoked"] is True
    assert can_list_rooms(api, issued["token"]) == 401


def test_revoke_an_expired_token_of_ours(api: InProcessApi, admin_token: str) -> None:
    expired = tokens.kms_signed(tokens.claims(jti="tok_old", iat=1_600_000_000, exp=1_600_003_600))
    assert ok(replay(api, "tokens-revoke", admin_token, body={"token": expired})) == {
        "revoked": True, "jti": "tok_old",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({}, 400, "token"),
        ({"token": "x.y.z", "jti": "tok_1"}, 400, "token"),
        ({"token": "garbage"}, 422, "token"),
        ({"jti": ""}, 422, "jti"),
        ({"reason": "lost"}, 422, "reason"),
    ],
)
def test_revoke_refuses_a_bad_request(
    api: InProcessApi, admin_token: str, body: dict[str, Any], status: int, field: str
) -> None:
    refused(replay(api, "tokens-revoke", admin_token, body=body), status, field)


def test_a_forged_token_cannot_be_revoked_in_its_victims_name(
    api: InProcessApi, admin_token: str, hq: str
) -> None:
    victim = ok(replay(api, "tokens-generate", admin_token), 201)
    forged = tokens.forged(tokens.claims(jti=victim["jti"]))
    refused(replay(api, "tokens-revoke", admin_token, body={"token": forged}), 422, "token")
    assert can_list_rooms(api, victim["token"]) == 200


# ---------------------------------------------------------------- keys: JWKS and rotation


def test_jwks_verifies_a_minted_token(api: InProcessApi, admin_token: str) -> None:
    reply = replay(api, "jwks")
    keys = ok(reply)["keys"]
    assert [(k["kid"], k["kty"], k["crv"], k["alg"], k["use"]) for k in keys] == [
        (settings().signing_key_id, "EC", "P-256", "ES256", "sig"),
    ]
    assert not any("d" in k for k in keys)  # never the private half
    issued = ok(replay(api, "tokens-generate", admin_token), 201)
    kid = jwt.get_unverified_header(issued["token"])["kid"]
    key = jwt.PyJWK(keys[0]).key
    assert kid == keys[0]["kid"]
    claims = jwt.decode(issued["token"], key, algorithms=["ES256"], audience="ems-api", issuer="ems")
    assert claims["jti"] == issued["jti"]
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(tokens.forged(tokens.claims()), key, algorithms=["ES256"], audience="ems-api")


def _rotate(monkeypatch: pytest.MonkeyPatch, current: str, previous: str) -> None:
    from ems.auth import signing
    from ems.core import settings as settings_module

    monkeypatch.setenv("SIGNING_KEY_ID", current)
    monkeypatch.setenv("PREVIOUS_SIGNING_KEY_IDS", previous)
    settings_module.settings.cache_clear()
    signing.forget_keys()


def test_key_rotation(api: InProcessApi, admin_token: str, hq: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    k1 = settings().signing_key_id
    old = ok(replay(api, "tokens-generate", admin_token), 201)["token"]
    assert jwt.get_unverified_header(old)["kid"] == k1
    k2 = boto3.client("kms", region_name="us-east-1").create_key(
        KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY"
    )["KeyMetadata"]["KeyId"]

    _rotate(monkeypatch, k2, k1)
    assert can_list_rooms(api, old) == 200  # signed by K1, which still verifies
    new = ok(replay(api, "tokens-generate", admin_token), 201)["token"]  # the admin token too is K1's
    assert jwt.get_unverified_header(new)["kid"] == k2
    assert can_list_rooms(api, new) == 200
    assert sorted(k["kid"] for k in ok(replay(api, "jwks"))["keys"]) == sorted([k1, k2])

    _rotate(monkeypatch, k2, "")
    assert can_list_rooms(api, old) == 401
    assert (
        ok(replay(api, "tokens-validate", body={"token": old}))["reason"]
        == "token was not signed by a key of ours"
    )
    assert can_list_rooms(api, new) == 200
    assert [k["kid"] for k in ok(replay(api, "jwks"))["keys"]] == [k2]
