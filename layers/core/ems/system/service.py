"""Health: each dependency checked with the cheapest call that proves it answers."""

from __future__ import annotations

import time
from typing import Any

from ems.auth import signing
from ems.core.aws import client
from ems.core.models import Model
from ems.core.observability import logger
from ems.core.settings import settings


class Check(Model):
    status: str
    latency_ms: float
    detail: str | None = None


class Health(Model):
    status: str
    version: str
    checks: dict[str, Check]


def _timed(call: Any) -> Check:
    started = time.perf_counter()
    try:
        call()
    except Exception as exc:  # a health check reports every failure, whatever it is
        logger.warning("health check failed", extra={"error": repr(exc)})
        return Check(
            status="error", latency_ms=round((time.perf_counter() - started) * 1000, 1), detail=str(exc)
        )
    return Check(status="ok", latency_ms=round((time.perf_counter() - started) * 1000, 1))


def health() -> Health:
    config = settings()
    dynamodb = client("dynamodb")
    checks = {
        "dynamodb": _timed(
            lambda: [
                dynamodb.describe_table(TableName=t) for t in (config.tokens_table, config.registry_table)
            ]
        ),
        "kms": _timed(lambda: signing.public_key(config.signing_key_id)),
    }
    status = "ok" if all(c.status == "ok" for c in checks.values()) else "degraded"
    return Health(status=status, version=config.version, checks=checks)


def jwks() -> dict[str, list[dict[str, str]]]:
    return signing.jwks(settings().verification_key_ids)
