"""The local cloud's moto reads a Query from the partition alone (ems_local.moto_dynamodb): the same
answers as DynamoDB's, pages and order and filters included, whatever else the table holds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ems_local import moto_dynamodb
from tests.support.dynamodb import create_pk_sk_table


@pytest.fixture
def table() -> Iterator[Any]:
    moto_dynamodb.install()
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_pk_sk_table(dynamodb)
        for pk in ("a", "b", "c"):
            for sk in range(10):
                item = {"pk": {"S": pk}, "sk": {"N": str(sk)}, "even": {"BOOL": sk % 2 == 0}}
                dynamodb.put_item(TableName="t", Item=item)
        yield dynamodb


def keys(answer: dict[str, Any]) -> list[tuple[str, int]]:
    return [(i["pk"]["S"], int(i["sk"]["N"])) for i in answer["Items"]]


def test_a_range_of_one_partition_in_pages(table: Any) -> None:
    request: dict[str, Any] = {
        "TableName": "t", "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
        "ExpressionAttributeValues": {":pk": {"S": "b"}, ":low": {"N": "2"}, ":high": {"N": "7"}}, "Limit": 4,
    }  # fmt: skip
    first = table.query(**request)
    assert keys(first) == [("b", 2), ("b", 3), ("b", 4), ("b", 5)]
    second = table.query(**request, ExclusiveStartKey=first["LastEvaluatedKey"])
    assert keys(second) == [("b", 6), ("b", 7)] and "LastEvaluatedKey" not in second


def test_newest_first_with_a_filter_and_an_unknown_partition(table: Any) -> None:
    answer = table.query(
        TableName="t", KeyConditionExpression="pk = :pk", FilterExpression="even = :yes",
        ExpressionAttributeValues={":pk": {"S": "c"}, ":yes": {"BOOL": True}}, ScanIndexForward=False,
    )  # fmt: skip
    assert keys(answer) == [("c", 8), ("c", 6), ("c", 4), ("c", 2), ("c", 0)]
    assert answer["ScannedCount"] == 10
    nothing = table.query(
        TableName="t", KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "zz"}}
    )
    assert nothing["Items"] == [] and nothing["Count"] == 0
