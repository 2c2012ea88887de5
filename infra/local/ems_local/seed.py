"""What a fresh local cloud starts with: the bootstrap admin token and the demo site."""

from __future__ import annotations

import os
import time
from typing import Any

import httpx

from ems_local import console

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


# A function whose first init outlasts the emulated 10 s on a loaded machine answers 504 with nothing
# done (as Lambda's init timeout would); the call is idempotent (409 once the site exists), so retry.
RETRIED = (502, 503, 504)
ATTEMPTS = 5


def create_demo_site(http_url: str, admin_token: str, pause_seconds: float = 2.0) -> dict[str, Any]:
    """The demo site, created through the API as any client would (an existing one is kept)."""
    for attempt in range(1, ATTEMPTS + 1):
        response = httpx.post(
            f"{http_url}/api/v1/sites",
            json=DEMO_SITE,
            headers={"authorization": f"Bearer {admin_token}"},
            timeout=60,
        )
        if response.status_code in (201, 409):
            return DEMO_SITE
        if response.status_code not in RETRIED or attempt == ATTEMPTS:
            break
        console.notice(
            "seed", f"creating the demo site: {response.status_code} (attempt {attempt}/{ATTEMPTS}), retrying"
        )
        time.sleep(pause_seconds * attempt)
    raise RuntimeError(f"creating the demo site: {response.status_code} {response.text}")
