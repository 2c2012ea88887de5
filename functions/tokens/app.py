"""Token routes: generate, validate, save, revoke, list."""

from functools import cache

from ems.auth import service as tokens
from ems.auth.http import claims
from ems.auth.models import (
    Revoked,
    RevokeRequest,
    TokenIssued,
    TokenMeta,
    TokenRequest,
    TokenText,
    Validation,
)
from ems.auth.store import TokenStore
from ems.core.http import body, http_app, lambda_handler, query
from ems.core.pagination import Page, parse_limit

app = http_app("tokens")


@cache
def store() -> TokenStore:
    return TokenStore()


@app.post("/api/v1/tokens/generate")
def generate() -> tuple[TokenIssued, int]:
    return tokens.mint(body(app, TokenRequest), claims(app), store()), 201


@app.post("/api/v1/tokens/validate")
def validate() -> Validation:
    return tokens.validate(body(app, TokenText).token, store())


@app.post("/api/v1/tokens/save")
def save() -> tuple[TokenMeta, int]:
    return tokens.save(body(app, TokenText).token, claims(app), store()), 201


@app.post("/api/v1/tokens/revoke")
def revoke() -> Revoked:
    return tokens.revoke(body(app, RevokeRequest), claims(app), store())


@app.get("/api/v1/tokens")
def list_tokens() -> Page[TokenMeta]:
    return tokens.list_tokens(
        claims(app), store(), parse_limit(query(app, "limit")), query(app, "next_token")
    )


handler = lambda_handler(app)
