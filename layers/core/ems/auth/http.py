"""Who an HTTP request comes from: the claims the authorizer verified, and the site the request acts on."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from ems.auth.models import Claims
from ems.core.errors import Unauthorized
from ems.core.http import query
from ems.core.settings import settings


def claims(app: APIGatewayHttpResolver) -> Claims:
    """The claims the authorizer verified and passed on; 401 when the route ran without them."""
    authorizer = app.current_event.request_context.authorizer
    context = (authorizer.get_lambda or {}) if authorizer else {}
    raw = context.get("claims")
    if not raw:
        raise Unauthorized("this route needs a token")
    return Claims.model_validate_json(raw) if isinstance(raw, str) else Claims.model_validate(raw)


def request_site(app: APIGatewayHttpResolver, site_id: str | None = None) -> str:
    """The site a request acts on: named by `site_id` (a path), `?site=` or `X-Site`, else as
    `Claims.site_for` says."""
    named = site_id or query(app, "site") or app.current_event.headers.get("x-site")
    return claims(app).site_for(named, settings().default_site_id)
