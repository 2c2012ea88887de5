"""Minting, verifying, revoking and listing tokens, and the authorizer's decision."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ems.auth import signing
from ems.auth.models import (
    DATA_AGGREGATION_ORDER,
    MAX_LIFETIME_MINUTES,
    TIME_AGGREGATION_ORDER,
    Claims,
    Revoked,
    RevokeRequest,
    TokenIssued,
    TokenMeta,
    TokenRequest,
    Validation,
)
from ems.auth.policy import ANY_TOKEN, required_resource
from ems.auth.store import TokenStore
from ems.core.clock import Clock, utc_now
from ems.core.errors import BadRequest, Forbidden, Invalid, Unauthorized
from ems.core.ids import new_id
from ems.core.pagination import Page
from ems.core.settings import Settings, settings

# Clock skew we forgive on exp, nbf and iat.
LEEWAY_SECONDS = 30


@dataclass(frozen=True)
class Decision:
    """The authorizer's answer. `status` is what API Gateway returns when `allowed` is false."""

    allowed: bool
    status: int
    reason: str
    claims: Claims | None = None
    site: str | None = None


# ---------------------------------------------------------------- minting


def mint(
    request: TokenRequest,
    issuer: Claims | None,
    store: TokenStore,
    now: Clock = utc_now,
    config: Settings | None = None,
) -> TokenIssued:
    """Sign a new token. `issuer` is the caller's claims; None only for the bootstrap CLI (`--admin`).

    A token hands on at most what its holder has: resources, sites, and data-sharing limits at
    least as strict as its own.
    """
    config = config or settings()
    if not config.signing_key_id:
        raise RuntimeError("SIGNING_KEY_ID is not set: no key to sign tokens with")
    sites = request.sites if request.sites is not None else (issuer.sites if issuer else ["*"])
    if issuer is not None:
        _check_delegation(request, sites, issuer)
    issued = now().replace(microsecond=0)
    expires = issued + timedelta(minutes=request.exp_minutes)
    jti = new_id("tok_")
    claims = Claims(
        sub=request.name, name=request.name, jti=jti, iat=int(issued.timestamp()), exp=int(expires.timestamp()),
        iss=config.token_issuer, aud=config.token_audience, resources=request.list_of_resources, sites=sites,
        data_aggregation=request.data_aggregation, time_aggregation=request.time_aggregation,
        embargo_minutes=request.embargo_minutes,
    )  # fmt: skip
    token = signing.sign(claims.model_dump(), config.signing_key_id)
    store.record(claims, origin="minted")
    return TokenIssued(token=token, jti=jti, expires_at=expires)


def _check_delegation(request: TokenRequest, sites: list[str], issuer: Claims) -> None:
    if "*" not in issuer.resources:
        extra: list[str] = [r for r in request.list_of_resources if r not in issuer.resources]
        if extra:
            raise Forbidden(f"cannot grant resources this token does not hold: {extra}", "list_of_resources")
    if "*" not in issuer.sites:
        extra = [s for s in sites if s not in issuer.sites]
        if extra:
            raise Forbidden(f"cannot grant sites this token does not hold: {extra}", "sites")
    if DATA_AGGREGATION_ORDER.index(request.data_aggregation) < DATA_AGGREGATION_ORDER.index(
        issuer.data_aggregation
    ):
        raise Forbidden(
            f"must be at least as coarse as this token's {issuer.data_aggregation!r}", "data_aggregation"
        )
    if TIME_AGGREGATION_ORDER.index(request.time_aggregation) < TIME_AGGREGATION_ORDER.index(
        issuer.time_aggregation
    ):
        raise Forbidden(
            f"must be at least as coarse as this token's {issuer.time_aggregation!r}", "time_aggregation"
        )
    if request.embargo_minutes < issuer.embargo_minutes:
        raise Forbidden(f"must be at least this token's {issuer.embargo_minutes}", "embargo_minutes")


# ---------------------------------------------------------------- verifying


def verify(token: str, store: TokenStore, now: Clock = utc_now, config: Settings | None = None) -> Claims:
    """The claims of a token we signed that is in force now; Unauthorized with the reason otherwise."""
    import jwt

    config = config or settings()
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:  # DecodeError, and InvalidTokenError for a kid that is not a string
        raise Unauthorized(f"malformed token: {exc}") from exc
    if header.get("alg") != signing.ALGORITHM:
        raise Unauthorized(f"algorithm {header.get('alg')!r} is not accepted")
    kid = header.get("kid")
    if not isinstance(kid, str) or kid not in config.verification_key_ids:
        raise Unauthorized("token was not signed by a key of ours")
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            key=signing.public_key(kid),
            algorithms=[signing.ALGORITHM],
            audience=config.token_audience,
            issuer=config.token_issuer,
            # exp, nbf and iat are checked below against our clock: PyJWT's read the wall clock.
            options={
                "require": ["exp", "iat", "jti", "sub", "iss", "aud"],
                "verify_exp": False, "verify_nbf": False, "verify_iat": False,
            },
        )  # fmt: skip
    except jwt.InvalidAudienceError as exc:
        raise Unauthorized("token is for another audience") from exc
    except jwt.InvalidIssuerError as exc:
        raise Unauthorized("token is from another issuer") from exc
    except jwt.InvalidSignatureError as exc:
        raise Unauthorized("bad signature") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}") from exc
    _check_times(payload, now().timestamp())
    try:
        claims = Claims.model_validate(payload)
    except ValueError as exc:
        raise Unauthorized("token claims are malformed") from exc
    if store.is_revoked(claims.jti):
        raise Unauthorized("token has been revoked")
    return claims


@dataclass(frozen=True)
class TokenVerifier:
    """`verify` as a port for other domains (realtime's $connect): the same checks as the authorizer."""

    store: TokenStore
    now: Clock = utc_now

    def verify(self, token: str) -> Claims:
        return verify(token, self.store, self.now)


def _check_times(payload: dict[str, Any], moment: float) -> None:
    """exp, nbf and iat against `moment` (epoch seconds of our clock), with PyJWT's rules and messages:
    expired when exp <= moment - leeway, not valid yet when nbf or iat > moment + leeway."""
    times: dict[str, int] = {}
    for claim in ("exp", "nbf", "iat"):
        if claim in payload:
            value = payload[claim]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise Unauthorized(f"invalid token: {claim} must be a number of epoch seconds")
            times[claim] = int(value)
    if times["exp"] <= moment - LEEWAY_SECONDS:
        raise Unauthorized("token has expired")
    if max(times.get("nbf", times["iat"]), times["iat"]) > moment + LEEWAY_SECONDS:
        raise Unauthorized("token is not valid yet")


def validate(token: str, store: TokenStore, now: Clock = utc_now) -> Validation:
    try:
        return Validation(valid=True, claims=verify(token, store, now))
    except Unauthorized as exc:
        return Validation(valid=False, reason=exc.message)


def authorize(
    token: str | None,
    route_key: str,
    named_site: str | None,
    store: TokenStore,
    now: Clock = utc_now,
) -> Decision:
    """May this token call this route on this site? 401 for who you are, 403 for what you may do."""
    if not token:
        return Decision(False, 401, "no token")
    scheme, _, credentials = token.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return Decision(False, 401, "Authorization must be 'Bearer <token>'")
    try:
        claims = verify(credentials.strip(), store, now)
    except Unauthorized as exc:
        return Decision(False, 401, exc.message)
    path = route_key.split(" ", 1)[1] if " " in route_key else route_key
    resource = required_resource(path)
    if resource is None:
        return Decision(False, 403, f"no token grants route {route_key}", claims)
    if resource != ANY_TOKEN and not claims.has_resource(resource):
        return Decision(False, 403, f"token lacks resource {resource!r}", claims)
    site = named_site or claims.only_site()
    if named_site and not claims.may_access_site(named_site):
        return Decision(False, 403, f"token is not granted site {named_site!r}", claims)
    return Decision(True, 200, "allowed", claims, site)


# ---------------------------------------------------------------- registering, revoking, listing


def save(token: str, caller: Claims, store: TokenStore, now: Clock = utc_now) -> TokenMeta:
    """Register a token we signed (minted elsewhere, by the CLI say) as active."""
    try:
        claims = verify(token, store, now)
    except Unauthorized as exc:
        # The caller is who it says (the authorizer checked); what is wrong is the token it sent.
        raise Invalid(exc.message, "token") from exc
    _check_may_administer(caller, claims)
    return store.record(claims, origin="saved")


def revoke(request: RevokeRequest, caller: Claims, store: TokenStore, now: Clock = utc_now) -> Revoked:
    """Revoke by token or by jti; revoking twice is the same as once."""
    if (request.token is None) == (request.jti is None):
        raise BadRequest("give exactly one of token and jti", "token")
    claims: Claims | None = None
    if request.token is not None:
        claims = _claims_even_if_expired(request.token, now)
        jti = claims.jti
    else:
        jti = request.jti  # type: ignore[assignment]
        known = store.get(jti)
        if known is not None and "*" not in caller.sites and not set(known.sites) <= set(caller.sites):
            raise Forbidden("this token grants sites the caller does not hold", "jti")
    if claims is not None:
        _check_may_administer(caller, claims)
    fallback_expiry = int((now() + timedelta(minutes=MAX_LIFETIME_MINUTES)).timestamp())
    store.revoke(jti, claims, now(), fallback_expiry)
    return Revoked(revoked=True, jti=jti)


def _claims_even_if_expired(token: str, now: Clock) -> Claims:
    """Revoking needs the jti of a token whose signature is ours, expired or not."""
    import jwt

    config = settings()
    try:
        header = jwt.get_unverified_header(token)
        kid = header.get("kid")
        if header.get("alg") != signing.ALGORITHM or kid not in config.verification_key_ids:
            raise Invalid("not a token of ours", "token")
        payload = jwt.decode(
            token, key=signing.public_key(kid), algorithms=[signing.ALGORITHM], audience=config.token_audience,
            issuer=config.token_issuer, options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
        )  # fmt: skip
        return Claims.model_validate(payload)
    except (jwt.PyJWTError, ValueError) as exc:
        raise Invalid(f"not a token of ours: {exc}", "token") from exc


def _check_may_administer(caller: Claims, target: Claims) -> None:
    if "*" not in caller.sites and not set(target.sites) <= set(caller.sites):
        raise Forbidden("this token grants sites the caller does not hold", "token")


def list_tokens(caller: Claims, store: TokenStore, limit: int, next_token: str | None) -> Page[TokenMeta]:
    page = store.page(limit, next_token)
    if "*" in caller.sites:
        return page
    visible = [m for m in page.items if set(m.sites) <= set(caller.sites)]
    return Page[TokenMeta](items=visible, count=len(visible), next_token=page.next_token)


def expires_at(claims: Claims) -> datetime:
    from datetime import UTC

    return datetime.fromtimestamp(claims.exp, UTC)
