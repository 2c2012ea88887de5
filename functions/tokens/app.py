"""Token routes: generate, validate, save, revoke, list."""

from ems.auth import service as tokens
from ems.auth.models import RevokeRequest, TokenRequest, TokenText
from ems.auth.store import TokenStore
from ems.core.http import body, claims, http_app, lambda_handler, query
from ems.core.pagination import parse_limit

app = http_app("tokens")
store = TokenStore()


@app.post("/api/v1/tokens/generate")
def generate():  # type: ignore[no-untyped-def]
    return tokens.mint(body(app, TokenRequest), claims(app), store), 201


@app.post("/api/v1/tokens/validate")
def validate():  # type: ignore[no-untyped-def]
    return tokens.validate(body(app, TokenText).token, store)


@app.post("/api/v1/tokens/save")
def save():  # type: ignore[no-untyped-def]
    return tokens.save(body(app, TokenText).token, claims(app), store), 201


@app.post("/api/v1/tokens/revoke")
def revoke():  # type: ignore[no-untyped-def]
    return tokens.revoke(body(app, RevokeRequest), claims(app), store)


@app.get("/api/v1/tokens")
def list_tokens():  # type: ignore[no-untyped-def]
    return tokens.list_tokens(claims(app), store, parse_limit(query(app, "limit")), query(app, "next_token"))


handler = lambda_handler(app)
