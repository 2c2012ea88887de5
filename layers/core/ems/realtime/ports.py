"""What the realtime domain needs from other domains, in its own words.

`TokenVerifier` is ems.auth.service.TokenVerifier (the HTTP authorizer's checks, for $connect);
`SiteDirectory` is ems.registry.store.RegistryStore. functions/realtime/app.py wires them.
"""

from __future__ import annotations

from typing import Protocol

from ems.auth.models import Claims


class TokenVerifier(Protocol):
    """The claims of a token in force now; raises Unauthorized with the reason otherwise."""

    def verify(self, token: str) -> Claims: ...


class SiteDirectory(Protocol):
    """Whether a topic's sensor or room exists in the site."""

    def sensor_exists(self, site_id: str, sensor_id: str) -> bool: ...
    def room_exists(self, site_id: str, name: str) -> bool: ...
