"""A trained model as bytes, and the integrity check before it is ever unpickled.

Unpickling runs code, so an artifact is trusted only when the SHA-256 of its bytes is the one the
training run recorded in DynamoDB (the models table: a second store the artifact's writer to S3
cannot rewrite alone). The hash is checked before `pickle.loads` sees a byte.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
from typing import Any

FORMAT = "pickle-sha256-v1"


class TamperedArtifact(Exception):
    """The artifact's bytes are not the ones its training run recorded."""


def sha256_hex(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def dump(model: Any) -> tuple[bytes, str]:
    """The model's bytes and the hash to record beside them."""
    blob = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    return blob, sha256_hex(blob)


def load(blob: bytes, expected_sha256: str) -> Any:
    """The model, only if `blob` hashes to `expected_sha256`; TamperedArtifact otherwise."""
    found = sha256_hex(blob)
    if not hmac.compare_digest(found, expected_sha256):
        raise TamperedArtifact(f"artifact hash {found[:12]}... is not the recorded {expected_sha256[:12]}...")
    return pickle.loads(blob)  # the bytes training wrote: hash checked above
