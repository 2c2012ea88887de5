"""moto's DynamoDB as the local cloud and the tests run it: TransactWriteItems replaced by a faster
one with the same semantics, and a table's Query reading only its partition.

moto 5 answers a Query on a table's key by sorting every item of the table and keeping those of the
partition: a query costs the whole table, so reading 50 sensors' rollups from a table of 30,000
items takes seconds. `_query_partition` hands moto's own query a view of the table whose items are
the partition's only: the same results, pages and errors, at the partition's cost. Index queries are
left as they are (moto finds their items by attributes, not by partition).

moto 5 deep-copies every table a transaction touches once per item of the transaction, so one
100-item transaction against a table of a few thousand items takes seconds, and the cost grows with
the table (the local cloud's demo building fills the telemetry tables every few seconds). This
version checks every condition against the state before the transaction (as DynamoDB does), answers
TransactionCanceledException with per-item reasons when one fails, and otherwise applies the items,
keeping only the touched items' previous images to roll back if applying fails.

moto 5 writes every answer through a serializer driven by the service model, member by member: most
of the time of a large Query went there (`python -m bench telemetry`: a sensor-year of hourly rollups
took 7.3 s before this and reads without projections, 2.0 s after; bench/RESULTS.md has the current
figure). The data-plane operations' answers (items, keys, counts) are already DynamoDB JSON, so
`_serialized` writes them with json.dumps (bytes as base64, as on the wire); anything else, errors
and answers holding another value JSON cannot carry still go through moto's serializer.

Two costs of moto's server on every request, whatever the service, are paid once instead:
listing moto's package folder to route a request (`list_of_moto_modules`) and listing a response
class's methods to find the action (`method_names_from_class`): a good part of a small call's time.

Writes run one at a time (a lock): the moto server answers requests on several threads, and moto
checks a write's condition, then applies it, in Python. A transaction's checks and writes must not
interleave with another's, nor a PutItem's, UpdateItem's or DeleteItem's with any other write, or two
concurrent writers of the same rollup (or of the same "version = :seen" item) could both pass their
condition; DynamoDB makes each of them atomic. Unconditional writes take the lock too: an UpdateItem
is a read and a write of the item, and a write landing between a condition and its write would be
lost. Reads do not take it. `install()` patches moto's backend class in this process: the local
cloud calls it before its moto server starts (ems_local.aws_endpoint), the tests before `mock_aws`
(tests/conftest.py), so both run this same emulator.
"""

from __future__ import annotations

import base64
import functools
import json
import threading
from typing import Any

import moto.backends as moto_backends
import moto.core.responses as moto_responses
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler

_original = DynamoDBBackend.transact_write_items
# Re-entrant: a transaction applies its items through the (locked) single-item writes.
_one_at_a_time = threading.RLock()


def _key(backend: DynamoDBBackend, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
    if op_type != "Put":
        return dict(op["Key"])
    table = backend.get_table(op["TableName"])
    key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = op["Item"][table.range_key_attr]
    return key


def _condition(expression: str, names: dict[str, str] | None, values: dict[str, Any] | None) -> Any:
    """A parsed condition; parsed once per text when it names no values (attribute_not_exists(pk),
    the condition of most of a telemetry transaction's items), since moto's parser is slow."""
    if values:
        return get_filter_expression(expression, names, values)
    return _parsed(expression, json.dumps(names, sort_keys=True))


@functools.lru_cache(maxsize=256)
def _parsed(expression: str, names_json: str) -> Any:
    return get_filter_expression(expression, json.loads(names_json), None)


def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    with _one_at_a_time:
        _transact(self, transact_items)


def _transact(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    ops: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    seen: set[tuple[str, str]] = set()
    for item in transact_items:
        if len(item) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(item.items()))
        key = _key(self, op_type, op)
        marker = (op["TableName"], str(sorted(key.items())))
        if marker in seen:
            raise MultipleTransactionsException()
        seen.add(marker)
        ops.append((op_type, op, key))

    errors: list[tuple[str | None, str | None, dict[str, Any] | None]] = []
    for _op_type, op, key in ops:
        current = self.get_item(op["TableName"], key)
        expression = op.get("ConditionExpression")
        if expression is not None and not _condition(
            expression, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
        ).expr(current):
            old = (
                current.to_json()["Attributes"]
                if current and op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD"
                else None
            )
            errors.append(("ConditionalCheckFailed", "The conditional request failed", old))
        else:
            errors.append((None, None, None))
    if any(code is not None for code, _, _ in errors):
        raise TransactionCanceledException(errors)

    before = []
    for _op_type, op, key in ops:
        current = self.get_item(op["TableName"], key)
        before.append((op["TableName"], key, None if current is None else current.to_json()["Attributes"]))
    try:
        for op_type, op, key in ops:
            # moto's own handler passes {} for what a request leaves out.
            names, values = (
                op.get("ExpressionAttributeNames") or {},
                op.get("ExpressionAttributeValues") or {},
            )
            if op_type == "Put":
                self.put_item(op["TableName"], op["Item"], expression_attribute_names=names,
                              expression_attribute_values=values)  # fmt: skip
            elif op_type == "Delete":
                self.delete_item(op["TableName"], key, expression_attribute_names=names,
                                 expression_attribute_values=values)  # fmt: skip
            elif op_type == "Update":
                self.update_item(op["TableName"], key, update_expression=op["UpdateExpression"],
                                 expression_attribute_names=names, expression_attribute_values=values)  # fmt: skip
    except Exception:
        for table_name, key, image in before:
            if image is None:
                self.delete_item(table_name, key)
            else:
                self.put_item(table_name, image)
        raise


_original_put_item = DynamoDBBackend.put_item
_original_update_item = DynamoDBBackend.update_item
_original_delete_item = DynamoDBBackend.delete_item


def put_item(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
    with _one_at_a_time:
        return _original_put_item(self, *args, **kwargs)


def update_item(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
    with _one_at_a_time:
        return _original_update_item(self, *args, **kwargs)


def delete_item(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
    with _one_at_a_time:
        return _original_delete_item(self, *args, **kwargs)


class _Partition:
    """A table as moto's query sees it, with only one partition's items."""

    def __init__(self, table: Table, hash_key: Any) -> None:
        self._table, self._hash_key = table, hash_key

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)

    def all_items(self) -> list[Any]:
        held = self._table.items.get(self._hash_key)
        if held is None:
            return []
        return list(held.values()) if self._table.range_key_attr else [held]


_original_query = Table.query


def _query_partition(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
    # moto's backend passes index_name as the 8th positional argument of Table.query.
    index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
    if index_name or hash_key is None:
        return _original_query(self, hash_key, *args, **kwargs)
    return _original_query(_Partition(self, hash_key), hash_key, *args, **kwargs)  # type: ignore[arg-type]


_original_serialized = DynamoHandler.serialized
# Operations whose answers hold only items, keys, counts and capacity: plain DynamoDB JSON.
PLAIN_ANSWERS = frozenset(
    {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchGetItem", "BatchWriteItem",
     "TransactGetItems", "TransactWriteItems"}
)  # fmt: skip


class _NotPlain(TypeError):
    pass


def _plain(value: Any) -> Any:
    """What json.dumps cannot write itself: bytes (B and BS values) go as base64, as on the wire."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise _NotPlain(type(value).__name__)


def _serialized(self: DynamoHandler, action_result: Any) -> Any:
    result = action_result.result
    if isinstance(result, dict) and self._get_action() in PLAIN_ANSWERS:
        try:
            body = json.dumps(result, default=_plain, separators=(",", ":"))
        except _NotPlain:
            pass
        else:
            headers = {"Content-Type": "application/x-amz-json-1.0", **self.response_headers}
            return 200, headers, body
    return _original_serialized(self, action_result)


_MOTO_MODULES = tuple(moto_backends.list_of_moto_modules())  # folders of the installed moto package


def _moto_modules() -> tuple[str, ...]:
    return _MOTO_MODULES


def install() -> None:
    """Use these in every moto DynamoDB backend of the process (idempotent)."""
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    DynamoDBBackend.put_item = put_item  # type: ignore[method-assign]
    DynamoDBBackend.update_item = update_item  # type: ignore[method-assign]
    DynamoDBBackend.delete_item = delete_item  # type: ignore[method-assign]
    Table.query = _query_partition  # type: ignore[method-assign]
    DynamoHandler.serialized = _serialized  # type: ignore[assignment]
    moto_backends.list_of_moto_modules = _moto_modules
    if not hasattr(moto_responses.method_names_from_class, "cache_info"):
        moto_responses.method_names_from_class = functools.cache(moto_responses.method_names_from_class)


def uninstall_serializer() -> None:
    """moto's own serializer again (tests compare the two)."""
    DynamoHandler.serialized = _original_serialized  # type: ignore[method-assign]


def installed() -> bool:
    return DynamoDBBackend.transact_write_items is transact_write_items
