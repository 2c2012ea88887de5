"""AWS clients, made on first use and kept for the life of the container.

botocore directly rather than boto3: it is what PynamoDB uses anyway, and skipping boto3's own
import keeps API cold starts down. Endpoints come from AWS_ENDPOINT_URL[_<SERVICE>], so the code
never knows whether it talks to AWS or to the local cloud.

One botocore session serves every client of the process, PynamoDB's included (ems.core.tables
hands it over): a session loads the SDK's endpoint, partition and retry data once, so each client
after the first costs about 12 ms of cold start instead of about 60 ms (bench/cold_start.py).
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

from ems.core.settings import settings

# botocore sessions are not thread-safe while they build clients; clients themselves are.
_building = threading.Lock()


@cache
def session() -> Any:
    """The process's botocore session (PynamoDB calls this as its `get_session`)."""
    import botocore.session

    return botocore.session.get_session()


@cache
def client(service: str, endpoint_url: str | None = None, *, validated: bool = True) -> Any:
    """A client of `service`; `endpoint_url` for APIs whose endpoint is per resource (the WebSocket
    management API), else the standard endpoint or AWS_ENDPOINT_URL[_<SERVICE>].

    `validated=False` skips botocore's check of each request against the service model before it is
    sent (the service checks every request anyway): for hot paths whose requests are built in one
    place and tested, where the check is a good part of the CPU (the telemetry store's 100-item
    transactions: about a third of the function's own time in `python -m bench telemetry`)."""
    from botocore.config import Config

    with _building:
        return session().create_client(
            service,
            region_name=settings().region,
            endpoint_url=endpoint_url,
            config=Config(
                retries={"mode": "standard", "max_attempts": 3},
                connect_timeout=2,
                # Stores read and write in up to 16 threads (ems.telemetry.store); botocore keeps 10.
                max_pool_connections=32,
                read_timeout=settings().aws_read_timeout_s,
                # Presigned S3 links with SigV4 (botocore may still pick SigV2 for them otherwise).
                signature_version="s3v4" if service == "s3" else None,
                parameter_validation=validated,
            ),
        )


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError, or '' for anything else."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""
