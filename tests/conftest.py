"""Fixtures shared by every test tier."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# No test may reach a real AWS account, whatever the developer's shell says.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1", POWERTOOLS_METRICS_NAMESPACE="EMS",
    POWERTOOLS_SERVICE_NAME="ems", POWERTOOLS_DEV="false", POWERTOOLS_LOG_LEVEL="INFO",
)  # fmt: skip
for _name in [k for k in os.environ if k.startswith("AWS_ENDPOINT_URL") or k == "AWS_PROFILE"]:
    del os.environ[_name]


def _reset_caches() -> None:
    from ems.auth import signing
    from ems.core import aws, settings

    settings.settings.cache_clear()
    aws.client.cache_clear()
    aws.session.cache_clear()
    signing.forget_keys()
    # PynamoDB keeps a connection (a client bound to an endpoint) per model class and per store.
    from pynamodb.models import Model

    pending = list(Model.__subclasses__())
    while pending:
        model = pending.pop()
        model._connection = None
        pending.extend(model.__subclasses__())
    from ems.registry import store as registry_store

    registry_store._connection.cache_clear()


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """moto with the template's resources created, and the functions' environment set."""
    import boto3
    from moto import mock_aws

    from ems_local import moto_dynamodb
    from ems_local.template import Stack

    moto_dynamodb.install()  # the local cloud's DynamoDB: moto's own copies whole tables per transaction item
    with mock_aws():
        built = Stack.from_file()
        built.create_resources(lambda service: boto3.client(service, region_name="us-east-1"))
        # Every function's environment (Globals plus each one's own, like TELEMETRY_TABLE).
        for fn in built.functions().values():
            for key, value in fn["Environment"]["Variables"].items():
                monkeypatch.setenv(key, value)
        # Every log line runs, so a bad `extra` key fails a test rather than production.
        monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "INFO")
        _reset_caches()
        yield built
    _reset_caches()


@pytest.fixture
def api(stack: object) -> object:
    from tests.support.inprocess import InProcessApi

    return InProcessApi(stack)  # type: ignore[arg-type]


@pytest.fixture
def admin_token(stack: object) -> str:
    """What `ems token create --admin` prints."""
    from ems.auth.models import TokenRequest
    from ems.auth.service import mint
    from ems.auth.store import TokenStore

    request = TokenRequest(name="admin", list_of_resources=["*"], sites=["*"])
    return mint(request, None, TokenStore()).token
