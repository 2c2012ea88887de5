"""ems.core.aws: one client per service and settings, kept; a hot path's client skips botocore's
check of each request before sending it, every other client keeps it."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ParamValidationError

from ems.core.aws import client


class Sent(Exception):
    """Raised instead of sending: the request got past every check before the wire."""


@pytest.fixture(autouse=True)
def fresh_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing is ever sent there
    client.cache_clear()


def stopped_before_sending(dynamodb: Any) -> Any:
    def stop(**_kwargs: Any) -> None:
        raise Sent

    dynamodb.meta.events.register("before-send.dynamodb", stop)
    return dynamodb


def test_clients_are_kept_per_service_and_validation() -> None:
    assert client("dynamodb") is client("dynamodb")
    assert client("dynamodb", validated=False) is client("dynamodb", validated=False)
    assert client("dynamodb") is not client("dynamodb", validated=False)


def test_a_validated_client_refuses_a_malformed_request_before_sending_it() -> None:
    dynamodb = stopped_before_sending(client("dynamodb"))
    with pytest.raises(ParamValidationError, match="TableName"):
        dynamodb.get_item(Key={"pk": {"S": "a"}})  # no TableName


def test_an_unvalidated_client_sends_it_and_leaves_the_check_to_the_service() -> None:
    dynamodb = stopped_before_sending(client("dynamodb", validated=False))
    with pytest.raises(Sent):
        dynamodb.get_item(Key={"pk": {"S": "a"}})
    with pytest.raises(Sent):  # a well-formed one goes the same way
        dynamodb.get_item(TableName="t", Key={"pk": {"S": "a"}})
