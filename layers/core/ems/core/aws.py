"""AWS clients, made on first use and kept for the life of the container.

botocore directly rather than boto3: it is what PynamoDB uses anyway, and skipping boto3's own
import keeps API cold starts down. Endpoints come from AWS_ENDPOINT_URL[_<SERVICE>], so the code
never knows whether it talks to AWS or to the local cloud.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ems.core.settings import settings


@cache
def client(service: str) -> Any:
    import botocore.session
    from botocore.config import Config

    session = botocore.session.get_session()
    return session.create_client(
        service,
        region_name=settings().region,
        config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5),
    )


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError, or '' for anything else."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""
