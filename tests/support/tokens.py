"""Tokens for tests: minted as the CLI mints them, signed by the stack's KMS key, or forged.

Forged tokens are signed with a P-256 key made here (never the stack's), so a verifier that
accepts one has a bug.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from ems.auth.models import TokenRequest
from ems.auth.service import mint
from ems.auth.store import TokenStore
from ems.core.ids import new_id
from ems.core.settings import settings


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64url_json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(resources: list[str], sites: list[str] | None = None, **fields: Any) -> str:
    """A token minted and recorded as `ems token create` does it (no issuer: no delegation limits)."""
    fields.setdefault("name", "test")
    request = TokenRequest.model_validate({"list_of_resources": resources, "sites": sites, **fields})
    return mint(request, None, TokenStore()).token


def claims(**changes: Any) -> dict[str, Any]:
    """Claims our verifier accepts (an hour of life from now), with `changes` applied."""
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "tester", "name": "tester", "jti": new_id("tok_"), "iat": now, "exp": now + 3600,
        "iss": settings().token_issuer, "aud": settings().token_audience, "resources": ["*"], "sites": ["*"],
        "data_aggregation": "raw", "time_aggregation": "raw", "embargo_minutes": 0,
    }  # fmt: skip
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def kms_signed(payload: dict[str, Any], key_id: str | None = None) -> str:
    """`payload` signed by the stack's KMS key: a genuine signature over whatever claims."""
    from ems.auth import signing

    return signing.sign(payload, key_id or settings().signing_key_id)


def foreign_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def forged(payload: dict[str, Any], kid: str | None = None, key: Any = None) -> str:
    """`payload` signed ES256 by a key of our own making, claiming to be `kid` (the real key by default)."""
    import jwt

    return jwt.encode(
        payload, key or foreign_key(), algorithm="ES256", headers={"kid": kid or settings().signing_key_id}
    )


def unsigned(payload: dict[str, Any], header: dict[str, Any], signature: bytes = b"") -> str:
    """A compact JWS with any header and signature bytes, built by hand (alg none, HS256...)."""
    return f"{b64url_json(header)}.{b64url_json(payload)}.{b64url(signature)}"
