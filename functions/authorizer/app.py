"""Lambda REQUEST authorizer (HTTP API, payload 2.0, simple responses).

Refusals of who the caller is (no token, bad signature, expired, revoked...) raise "Unauthorized",
which API Gateway answers with 401; refusals of what the caller may do (resource, site) return
isAuthorized false, which it answers with 403. The reason is logged, never sent to the caller.
"""

from typing import Any

from ems.auth.service import authorize
from ems.auth.store import TokenStore
from ems.core.observability import logger

store = TokenStore()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    query = event.get("queryStringParameters") or {}
    path_site = (event.get("pathParameters") or {}).get("site_id")
    named_site = path_site or query.get("site") or headers.get("x-site")
    route_key = event.get("routeKey", "")
    decision = authorize(headers.get("authorization"), route_key, named_site, store)
    logger.info(
        "authorizer decision",
        extra={"route": route_key, "allowed": decision.allowed, "status": decision.status,
               "reason": decision.reason, "sub": decision.claims.sub if decision.claims else None,
               "jti": decision.claims.jti if decision.claims else None, "site": named_site},
    )  # fmt: skip
    if decision.status == 401:
        raise Exception("Unauthorized")
    if not decision.allowed or decision.claims is None:
        return {"isAuthorized": False}
    claims = decision.claims
    return {
        "isAuthorized": True,
        "context": {
            "sub": claims.sub,
            "jti": claims.jti,
            "site": decision.site or "",
            "claims": claims.model_dump_json(),
        },
    }
