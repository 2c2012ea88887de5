"""A table keyed like the telemetry tables (pk string, sk number), for tests of the local cloud's moto."""

from __future__ import annotations

from typing import Any


def create_pk_sk_table(dynamodb: Any, name: str = "t") -> None:
    dynamodb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "N"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    )  # fmt: skip
