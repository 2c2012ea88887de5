"""The local cloud's moto takes shortcuts that must change no answer (ems_local.moto_dynamodb): it
reads data-plane requests with json.loads, parses each condition once, sizes an item once and writes
data-plane answers with json.dumps. Every operation the stores use answers exactly as through moto's
own parser and serializer, errors included."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ems_local import moto_dynamodb
from tests.support.dynamodb import create_pk_sk_table

ITEM = {
    "pk": {"S": "a"}, "sk": {"N": "1"}, "n": {"N": "1.25"}, "b": {"B": b"\x00\xffbytes"}, "t": {"BOOL": True},
    "z": {"NULL": True}, "l": {"L": [{"S": "x"}, {"N": "2"}]}, "m": {"M": {"k": {"S": "v"}, "n": {"N": "-3"}}},
    "ss": {"SS": ["p", "q"]}, "ns": {"NS": ["1", "2.5"]},
}  # fmt: skip


def conversation(dynamodb: Any) -> list[Any]:
    """Every data-plane operation the stores use (and a few more), with what each answered."""
    create_pk_sk_table(dynamodb)
    key = {"pk": {"S": "a"}, "sk": {"N": "1"}}
    answers: list[Any] = []

    def call(operation: str, **kwargs: Any) -> None:
        try:
            answer = getattr(dynamodb, operation)(**kwargs)
            answer.pop("ResponseMetadata", None)
            answers.append((operation, answer))
        except dynamodb.exceptions.ClientError as exc:
            answers.append((operation, exc.response["Error"], exc.response.get("CancellationReasons")))

    call("put_item", TableName="t", Item=ITEM, ReturnConsumedCapacity="TOTAL")
    call("put_item", TableName="t", Item=ITEM, ConditionExpression="attribute_not_exists(pk)")
    call("get_item", TableName="t", Key=key, ConsistentRead=True)
    call("get_item", TableName="t", Key={"pk": {"S": "none"}, "sk": {"N": "0"}})
    call("batch_write_item", RequestItems={"t": [
        {"PutRequest": {"Item": {"pk": {"S": "a"}, "sk": {"N": str(n)}, "v": {"N": str(n * 1.5)}}}} for n in range(2, 30)
    ]})  # fmt: skip
    call(
        "query",
        TableName="t",
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "a"}},
        Limit=7,
    )
    call("query", TableName="t", KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
         ExpressionAttributeValues={":pk": {"S": "a"}, ":lo": {"N": "1"}, ":hi": {"N": "4"}},
         ProjectionExpression="sk, b, m.k", ScanIndexForward=False)  # fmt: skip
    call("scan", TableName="t", Limit=5)
    call(
        "batch_get_item",
        RequestItems={"t": {"Keys": [key, {"pk": {"S": "a"}, "sk": {"N": "3"}}], "ConsistentRead": True}},
    )
    call("update_item", TableName="t", Key=key, UpdateExpression="SET n = n + :one, s = :s",
         ExpressionAttributeValues={":one": {"N": "1"}, ":s": {"S": "new"}}, ReturnValues="ALL_NEW")  # fmt: skip
    call("update_item", TableName="t", Key=key, UpdateExpression="SET n = :x", ConditionExpression="n = :y",
         ExpressionAttributeValues={":x": {"N": "0"}, ":y": {"N": "99"}})  # fmt: skip
    call("transact_get_items", TransactItems=[{"Get": {"TableName": "t", "Key": key}}])
    call("transact_write_items", TransactItems=[
        {"Put": {"TableName": "t", "Item": {"pk": {"S": "b"}, "sk": {"N": "1"}}, "ConditionExpression": "attribute_not_exists(pk)"}},
        {"Update": {"TableName": "t", "Key": key, "UpdateExpression": "SET c = :c", "ExpressionAttributeValues": {":c": {"N": "1"}}}},
    ])  # fmt: skip
    call("transact_write_items", TransactItems=[
        {"Put": {"TableName": "t", "Item": {"pk": {"S": "b"}, "sk": {"N": "1"}}, "ConditionExpression": "attribute_not_exists(pk)"}},
    ])  # fmt: skip
    # One condition text with other values each time (the parse kept for one must not answer another).
    for seen in ("1", "2", "1"):
        call("put_item", TableName="t", Item={"pk": {"S": "v"}, "sk": {"N": "1"}, "c": {"N": str(int(seen) + 1)}},
             ConditionExpression="attribute_not_exists(pk) OR c = :seen",
             ExpressionAttributeValues={":seen": {"N": seen}})  # fmt: skip
    # The handler's check of a condition's names, answered the same on a second, kept parse.
    for _ in range(2):
        call("put_item", TableName="t", Item={"pk": {"S": "v"}, "sk": {"N": "2"}},
             ConditionExpression="attribute_not_exists(#p)", ExpressionAttributeNames={"#p": "pk", "#u": "unused"})  # fmt: skip
    # Items at and past the 400 KB limit, as moto measures it; binary values in a condition and a key.
    call("put_item", TableName="t", Item={"pk": {"S": "big"}, "sk": {"N": "1"}, "x": {"S": "x" * 404_000}})
    call("put_item", TableName="t", Item={"pk": {"S": "big"}, "sk": {"N": "2"}, "x": {"S": "x" * 406_000}})
    call("put_item", TableName="t", Item={"pk": {"S": "bin"}, "sk": {"N": "1"}, "b": {"B": b"\x01"}},
         ConditionExpression="attribute_not_exists(b) OR b = :b", ExpressionAttributeValues={":b": {"B": b"\x01"}})  # fmt: skip
    call("get_item", TableName="t", Key={"pk": {"S": "bin"}, "sk": {"N": "1"}})
    # A transaction that fails while applying (its last put is too large): what it applied is undone.
    r = {n: {"pk": {"S": "r"}, "sk": {"N": str(n)}} for n in range(4)}
    call(
        "batch_write_item",
        RequestItems={"t": [{"PutRequest": {"Item": {**r[n], "x": {"S": "old"}}}} for n in (1, 2)]},
    )
    call("transact_write_items", TransactItems=[
        {"Put": {"TableName": "t", "Item": {**r[0], "x": {"S": "new"}}}},
        {"Update": {"TableName": "t", "Key": r[1], "UpdateExpression": "SET x = :x", "ExpressionAttributeValues": {":x": {"S": "new"}}}},
        {"Delete": {"TableName": "t", "Key": r[2]}},
        {"Put": {"TableName": "t", "Item": {**r[3], "x": {"S": "x" * 406_000}}}},
    ])  # fmt: skip
    call("batch_get_item", RequestItems={"t": {"Keys": list(r.values()), "ConsistentRead": True}})
    call("delete_item", TableName="t", Key=key, ReturnValues="ALL_OLD")
    call(
        "query",
        TableName="t",
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "nobody"}},
    )
    return answers


@pytest.fixture
def serializers() -> Iterator[None]:
    moto_dynamodb.install()
    yield
    moto_dynamodb.install()


def run_with(fast: bool) -> list[Any]:
    moto_dynamodb.install()
    if not fast:
        moto_dynamodb.uninstall_shortcuts()
    with mock_aws():
        return conversation(boto3.client("dynamodb", region_name="us-east-1"))


def test_answers_are_the_same_as_through_motos_parser_and_serializer(serializers: None) -> None:
    fast, slow = run_with(fast=True), run_with(fast=False)
    assert [a[0] for a in fast] == [a[0] for a in slow]
    for mine, theirs in zip(fast, slow, strict=True):
        assert mine == theirs, mine[0]
    # The conversation did what it says: items with every type came back, and the errors are errors.
    assert fast[2][1]["Item"] == {**ITEM, "b": {"B": b"\x00\xffbytes"}}
    assert fast[1][1]["Code"] == "ConditionalCheckFailedException"
    assert len(fast[5][1]["Items"]) == 7 and "LastEvaluatedKey" in fast[5][1]
    assert [a[1].get("Code") for a in fast[14:17]] == [
        None,
        None,
        "ConditionalCheckFailedException",
    ]  # :seen 1, 2, 1
    assert [a[1]["Code"] for a in fast[17:19]] == ["ValidationException"] * 2  # the unused name, twice
    assert (
        "Code" not in fast[19][1] and "maximum allowed size" in fast[20][1]["Message"]
    )  # 404,000 and 406,000 bytes
    assert fast[22][1]["Item"]["b"] == {"B": b"\x01"}
    assert fast[24][1]["Code"] == "ValidationException"  # the transaction's too large put
    after = {i["sk"]["N"]: i["x"]["S"] for i in fast[25][1]["Responses"]["t"]}
    assert after == {"1": "old", "2": "old"}  # the put undone, the update undone, the delete undone
