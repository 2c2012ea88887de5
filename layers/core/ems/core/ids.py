"""Identifiers: random ids for things we create, and the patterns ids chosen by users must match."""

from __future__ import annotations

import re
import secrets

# Ids that users choose (site, sensor, device): safe in a URL path, a DynamoDB key and an MQTT topic.
USER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
USER_ID = re.compile(USER_ID_PATTERN)


def new_id(prefix: str = "") -> str:
    """A 128-bit random id, url-safe; `prefix` tells a reader what kind of thing it names."""
    return f"{prefix}{secrets.token_hex(16)}"
