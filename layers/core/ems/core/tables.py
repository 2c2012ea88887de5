"""Table names and region for PynamoDB models, read from the environment when first used.

The persistence idiom: a store describes its items as PynamoDB models (Meta from these descriptors),
writes conditionally with PynamoDB conditions, and maps a lost condition to the domain's exception
by its error code (`cause_response_code`, cancellation reason codes), never by the message. The
low-level client only on a measured hot path, with the reason and its figure at the top of the
module: today the telemetry write path (ems.telemetry.store).

PynamoDB reads `Meta.table_name` and `Meta.region` on every call; these descriptors make them
environment lookups, so no model is bound to a table when its module is imported.

Every store imports this module, so it is also where PynamoDB is handed the process's botocore
session (ems.core.aws.session): its DynamoDB client and our KMS client then share the SDK data that
a session loads, instead of each session loading it again (about 50 ms of cold start).
"""

from __future__ import annotations

import os
from typing import Any

import pynamodb.connection.base

from ems.core.aws import session


def _process_session(env_vars: Any = None) -> Any:
    """PynamoDB's `get_session()`, answered with the process's one session."""
    return session()


# PynamoDB makes its session with the `get_session` name of this module, when it first calls AWS.
pynamodb.connection.base.get_session = _process_session


class EnvTableName:
    def __init__(self, variable: str, default: str) -> None:
        self.variable, self.default = variable, default

    def __get__(self, instance: Any, owner: Any) -> str:
        return os.environ.get(self.variable, self.default)


class EnvRegion:
    def __get__(self, instance: Any, owner: Any) -> str:
        return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
