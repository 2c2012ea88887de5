"""ES256 JWTs whose private key never leaves KMS, and the public keys (JWKS) that verify them.

Signing: KMS `Sign` (ECDSA_SHA_256, MessageType RAW, so KMS hashes the JWS signing input) returns a
DER signature; JWS wants the raw 64-byte r||s (RFC 7518 3.4). RAW caps the signing input at 4096
bytes, which bounds a token's claims. Verification keys: the current key and the keys of earlier
rotations (`PREVIOUS_SIGNING_KEY_IDS`), fetched from KMS once per container and cached.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from ems.core.aws import client, error_code
from ems.core.errors import Invalid, Unauthorized

ALGORITHM = "ES256"
KMS_MAX_RAW_MESSAGE_BYTES = 4096

_public_keys: dict[str, Any] = {}


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def sign(claims: dict[str, Any], key_id: str) -> str:
    """A compact JWS of `claims`, signed in KMS by `key_id`, with `kid` naming that key."""
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    header = {"alg": ALGORITHM, "typ": "JWT", "kid": key_id}
    signing_input = (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    message = signing_input.encode()
    if len(message) > KMS_MAX_RAW_MESSAGE_BYTES:
        raise Invalid("the token would be too large to sign; grant fewer sites", "sites")
    der = client("kms").sign(
        KeyId=key_id, Message=message, MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256"
    )["Signature"]
    r, s = decode_dss_signature(der)
    return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def public_key(key_id: str) -> Any:
    """The public half of a signing key (cached for the container's life); 401 if KMS has no such key."""
    key = _public_keys.get(key_id)
    if key is None:
        from cryptography.hazmat.primitives.serialization import load_der_public_key

        try:
            der = client("kms").get_public_key(KeyId=key_id)["PublicKey"]
        except Exception as exc:
            if error_code(exc) in ("NotFoundException", "DisabledException", "KMSInvalidStateException"):
                raise Unauthorized(f"signing key {key_id} is not available") from exc
            raise
        key = _public_keys[key_id] = load_der_public_key(der)
    return key


def jwks(key_ids: tuple[str, ...]) -> dict[str, list[dict[str, str]]]:
    """RFC 7517 key set of every key that may have signed a live token."""
    from jwt.algorithms import ECAlgorithm

    keys = []
    for key_id in key_ids:
        jwk = ECAlgorithm.to_jwk(public_key(key_id), as_dict=True)
        keys.append({**jwk, "kid": key_id, "use": "sig", "alg": ALGORITHM})
    return {"keys": keys}


def forget_keys() -> None:
    """Drop cached public keys (tests, and after a rotation in a long-lived process)."""
    _public_keys.clear()
