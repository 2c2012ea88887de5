"""The local cloud's moto makes each single-item write atomic (ems_local.moto_dynamodb), as DynamoDB
does: concurrent conditional writes through its threaded server never both pass the same condition.

moto checks a write's condition and then applies it in Python; the server answers every request on a
thread of its own, so without the lock two writers can both see the old item. The interpreter is made
to switch threads very often here, so that an unlocked check-then-write would be caught between the
two within a few hundred attempts; the counts below are what must come out, whatever the timing.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from ems_local.aws_endpoint import CREDENTIALS, REGION
from ems_local.moto_server import MotoServer
from tests.support.dynamodb import create_pk_sk_table

THREADS, ATTEMPTS = 8, 50
TABLE = "conditional-writes"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[MotoServer]:
    # The local cloud's own (moto's threaded server on 127.0.0.1, patched), in this process rather than
    # in its own (ems_local.aws_endpoint): the frequent thread switches must reach the server's threads.
    aws = MotoServer(port=0)
    aws.start()
    create_pk_sk_table(aws.client("dynamodb"), TABLE)
    yield aws
    aws.stop()


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def dynamodb(aws: MotoServer) -> Any:
    # One attempt per call: a retried write would be counted once but could have applied twice.
    return boto3.client(
        "dynamodb", endpoint_url=aws.url, region_name=REGION, **CREDENTIALS,
        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=THREADS),
    )  # fmt: skip


def race(worker: Callable[[Any], int], aws: MotoServer) -> list[int]:
    """THREADS workers started together, each with its own client; what each returned."""
    clients = [dynamodb(aws) for _ in range(THREADS)]
    start = threading.Barrier(THREADS)
    results: list[int] = [0] * THREADS
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            start.wait()
            results[i] = worker(clients[i])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


def passed(client: Any, write: Callable[[], Any]) -> int:
    """1 when the conditional write went through, 0 when its condition failed; anything else raises."""
    try:
        write()
    except client.exceptions.ConditionalCheckFailedException:
        return 0
    return 1


def test_increment_if_version_unchanged_loses_no_update(
    endpoint: MotoServer, frequent_thread_switches: None
) -> None:
    key = {"pk": {"S": "counter"}, "sk": {"N": "0"}}
    endpoint.client("dynamodb").put_item(TableName=TABLE, Item={**key, "version": {"N": "0"}})

    def increments(client: Any) -> int:
        done = 0
        for _ in range(ATTEMPTS):
            seen = int(client.get_item(TableName=TABLE, Key=key, ConsistentRead=True)["Item"]["version"]["N"])
            done += passed(client, lambda seen=seen: client.update_item(
                TableName=TABLE, Key=key, UpdateExpression="SET version = :next",
                ConditionExpression="version = :seen",
                ExpressionAttributeValues={":seen": {"N": str(seen)}, ":next": {"N": str(seen + 1)}},
            ))  # fmt: skip
        return done

    successes = race(increments, endpoint)
    final = endpoint.client("dynamodb").get_item(TableName=TABLE, Key=key, ConsistentRead=True)["Item"]
    # Each success moved the version by one from what it saw: a lost update would leave it short.
    assert int(final["version"]["N"]) == sum(successes)
    assert sum(successes) > 0


def test_put_if_absent_creates_each_item_once(endpoint: MotoServer, frequent_thread_switches: None) -> None:
    def creates(client: Any) -> int:
        done = 0
        for sk in range(ATTEMPTS):  # every thread tries to create the same ATTEMPTS items
            done += passed(client, lambda sk=sk: client.put_item(
                TableName=TABLE, Item={"pk": {"S": "once"}, "sk": {"N": str(sk)}},
                ConditionExpression="attribute_not_exists(pk)",
            ))  # fmt: skip
        return done

    successes = race(creates, endpoint)
    assert sum(successes) == ATTEMPTS  # exactly one creator per item: no double create, none missing


def test_delete_if_present_deletes_each_item_once(
    endpoint: MotoServer, frequent_thread_switches: None
) -> None:
    setup = endpoint.client("dynamodb")
    for sk in range(ATTEMPTS):
        setup.put_item(TableName=TABLE, Item={"pk": {"S": "gone"}, "sk": {"N": str(sk)}})

    def deletes(client: Any) -> int:
        done = 0
        for sk in range(ATTEMPTS):
            done += passed(client, lambda sk=sk: client.delete_item(
                TableName=TABLE, Key={"pk": {"S": "gone"}, "sk": {"N": str(sk)}},
                ConditionExpression="attribute_exists(pk)",
            ))  # fmt: skip
        return done

    successes = race(deletes, endpoint)
    assert sum(successes) == ATTEMPTS  # one deleter per item
