"""Settings read from the environment when first asked for, never at import (tests set env first)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    stage: str = "dev"
    region: str = "us-east-1"
    tokens_table: str = "ems-dev-tokens"
    registry_table: str = "ems-dev-registry"
    signing_key_id: str = ""
    previous_signing_key_ids: tuple[str, ...] = field(default_factory=tuple)
    token_issuer: str = "ems"
    token_audience: str = "ems-api"
    telemetry_backend: str = "dynamodb"
    telemetry_table: str = "ems-dev-telemetry"
    rollups_table: str = "ems-dev-telemetry-rollups"
    raw_retention_days: int = 30
    default_site_id: str = "default"
    # The API Gateway management endpoint of the WebSocket API: https://{api}.execute-api.{region}.amazonaws.com/{stage}
    websocket_endpoint: str = ""
    # The domain events' EventBridge bus (ems.core.events); empty: events are not sent (logged).
    event_bus_name: str = ""
    # Exports: the bucket of large files, and the largest file returned in the response itself
    # (Lambda answers at most 6 MB; 5 MB leaves room for headers).
    export_bucket: str = ""
    alerts_table: str = "ems-dev-alerts"
    # Where the telemetry ingest function sends poison messages (ems.telemetry.device_queue).
    telemetry_dead_letter_queue_url: str = ""
    # TelemetryBackend=timestream: where readings go (ems.telemetry.timestream).
    timestream_database: str = ""
    timestream_table: str = "readings"
    # How long an AWS call may wait for its answer: sized for AWS; a local moto under load is slower.
    aws_read_timeout_s: float = 5.0
    export_inline_max_bytes: int = 5_000_000
    version: str = "0.1.0"

    @property
    def verification_key_ids(self) -> tuple[str, ...]:
        """The key that signs now, then the keys that signed before the last rotations."""
        return tuple(k for k in (self.signing_key_id, *self.previous_signing_key_ids) if k)


@lru_cache(maxsize=1)
def settings() -> Settings:
    env = os.environ
    from ems import __version__

    return Settings(
        stage=env.get("STAGE", "dev"),
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        tokens_table=env.get("TOKENS_TABLE", "ems-dev-tokens"),
        registry_table=env.get("REGISTRY_TABLE", "ems-dev-registry"),
        signing_key_id=env.get("SIGNING_KEY_ID", ""),
        previous_signing_key_ids=_csv(env.get("PREVIOUS_SIGNING_KEY_IDS", "")),
        token_issuer=env.get("TOKEN_ISSUER", "ems"),
        token_audience=env.get("TOKEN_AUDIENCE", "ems-api"),
        telemetry_backend=env.get("TELEMETRY_BACKEND", "dynamodb"),
        telemetry_table=env.get("TELEMETRY_TABLE", "ems-dev-telemetry"),
        rollups_table=env.get("ROLLUPS_TABLE", "ems-dev-telemetry-rollups"),
        raw_retention_days=max(1, int(env.get("RAW_RETENTION_DAYS") or 30)),
        default_site_id=env.get("DEFAULT_SITE_ID", "default"),
        websocket_endpoint=env.get("WEBSOCKET_ENDPOINT", ""),
        event_bus_name=env.get("EVENT_BUS_NAME", ""),
        export_bucket=env.get("EXPORT_BUCKET", ""),
        alerts_table=env.get("ALERTS_TABLE", "ems-dev-alerts"),
        telemetry_dead_letter_queue_url=env.get("TELEMETRY_DEAD_LETTER_QUEUE_URL", ""),
        timestream_database=env.get("TIMESTREAM_DATABASE", ""),
        timestream_table=env.get("TIMESTREAM_TABLE") or "readings",
        aws_read_timeout_s=float(env.get("EMS_AWS_READ_TIMEOUT_SECONDS") or 5.0),
        export_inline_max_bytes=int(env.get("EXPORT_INLINE_MAX_BYTES") or 5_000_000),
        version=__version__,
    )
