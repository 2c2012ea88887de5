"""What a fresh local cloud starts with: the bootstrap admin token and the demo site."""

from __future__ import annotations

import os
from typing import Any

import httpx

DEMO_SITE = {"site_id": "demo", "name": "Demo building", "timezone": "Europe/Berlin", "country": "DE-BE"}


def mint_admin_token(environment: dict[str, str]) -> str:
    """What `ems token create --admin` prints, minted here with the functions' environment, so it
    is signed by the stack's key and recorded in its tokens table."""
    os.environ.update(environment)
    from ems.auth.models import TokenRequest
    from ems.auth.service import mint
    from ems.auth.store import TokenStore
    from ems.core import aws, settings

    # Settings and clients are read once per process: make sure they see the environment above.
    settings.settings.cache_clear()
    aws.client.cache_clear()
    request = TokenRequest(name="admin", list_of_resources=["*"], sites=["*"])
    return mint(request, None, TokenStore()).token


def create_demo_site(http_url: str, admin_token: str) -> dict[str, Any]:
    """The demo site, created through the API as any client would (an existing one is kept)."""
    response = httpx.post(
        f"{http_url}/api/v1/sites",
        json=DEMO_SITE,
        headers={"authorization": f"Bearer {admin_token}"},
        timeout=60,
    )
    if response.status_code not in (201, 409):
        raise RuntimeError(f"creating the demo site: {response.status_code} {response.text}")
    return DEMO_SITE
