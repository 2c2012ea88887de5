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

More of a write's costs in moto are cut without changing an answer (`python -m bench
telemetry`, where the ingest handler's store writes and status puts are nearly all moto's time): the
request read by json.loads where moto's model-driven parser would give the same dict (data-plane
operations without binary values), each condition parsed once per text, names and values (moto
parses it on every use, up to twice a write), and an item's size for the 400 KB limit summed once
rather than again for each attribute. `uninstall_shortcuts()` puts moto's own ways back, so tests
can compare the answers (tests/integration/test_moto_serializer.py).

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
import re
import threading
from collections import OrderedDict
from typing import Any

import moto.backends as moto_backends
import moto.core.responses as moto_responses
from moto.dynamodb.comparisons import ConditionExpressionParser, get_filter_expression
from moto.dynamodb.exceptions import (
    ItemSizeTooLarge,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
from moto.dynamodb.models.table import Table
from moto.dynamodb.models.utilities import bytesize
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


# moto parses a condition on every use, and one write parses it up to twice (its handler checks the
# request's names, its backend evaluates it): 0.1 ms of Python each, most of a 100-item transaction's
# time in moto. A parse depends only on its three inputs, so its result (the tree, and the names and
# values it found, which the handler checks for unused ones) is kept per input, most recent first.
# Trees are only evaluated after parsing (Op.expr reads an item), so sharing one is safe.
PARSES_KEPT = 4096
_parse = ConditionExpressionParser.parse
_parses: OrderedDict[str, tuple[Any, list[str], list[str]]] = OrderedDict()
_parses_lock = threading.Lock()


def _memo_parse(self: ConditionExpressionParser) -> Any:
    if not self.condition_expression:
        return _parse(self)
    try:
        key = json.dumps(
            [self.condition_expression, self.expression_attribute_names, self.expression_attribute_values],
            sort_keys=True, default=_plain,
        )  # fmt: skip
    except TypeError:  # a value JSON cannot write: parsed as moto does
        return _parse(self)
    with _parses_lock:
        held = _parses.get(key)
        if held is not None:
            _parses.move_to_end(key)
    if held is None:
        tree = _parse(self)  # a parse that raises is not kept: the next one raises the same
        held = (tree, list(self.expr_attr_names_found), list(self.expr_attr_values_found))
        with _parses_lock:
            _parses[key] = held
            if len(_parses) > PARSES_KEPT:
                _parses.popitem(last=False)
    else:
        self.expr_attr_names_found.extend(held[1])
        self.expr_attr_values_found.extend(held[2])
    return held[0]


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
    currents = []
    for _op_type, op, key in ops:
        current = self.get_item(op["TableName"], key)
        currents.append(current)
        expression = op.get("ConditionExpression")
        if expression is not None and not get_filter_expression(
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

    # What to put back if applying fails. A put or a delete replaces an item object and leaves the old
    # one as it was, so the object itself is kept; an update changes its item in place: a copy.
    before = [
        (
            op["TableName"],
            key,
            current.to_json()["Attributes"] if op_type == "Update" and current else current,
        )
        for (op_type, op, key), current in zip(ops, currents, strict=True)
    ]
    try:
        for op_type, op, key in ops:
            # moto's own handler passes {} for what a request leaves out.
            names, values = (
                op.get("ExpressionAttributeNames") or {},
                op.get("ExpressionAttributeValues") or {},
            )
            if op_type == "Put":
                # Its condition held before the transaction (checked above), and nothing in the
                # transaction wrote its item before it (one operation per item): put without checking again.
                self.put_item(op["TableName"], op["Item"], expression_attribute_names=names,
                              expression_attribute_values=values, overwrite=True)  # fmt: skip
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
                self.put_item(table_name, image if isinstance(image, dict) else image.to_json()["Attributes"])
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


# An item's size, the 400 KB limit's measure: moto sums the whole item again for each attribute it
# sets while building one (quadratic in attributes, a good part of every write's time). Summed once,
# the answer is the same: sizes are never negative, so the sum passes the limit at the last attribute
# if it ever does.
MAX_ITEM_BYTES = 405_000  # moto's limit (DynamoDB's 400 KB, as measured by moto's authors)


def _item_init(self: Item, hash_key: DynamoType, range_key: DynamoType | None, attrs: dict[str, Any]) -> None:
    self.hash_key = hash_key
    self.range_key = range_key
    values = {key: DynamoType(value) for key, value in attrs.items()}
    if sum(bytesize(key) + value.size() for key, value in values.items()) > MAX_ITEM_BYTES:
        raise ItemSizeTooLarge
    self.attrs = LimitedSizeDict()
    dict.update(self.attrs, values)  # dict's own update: not the per-attribute check again


_original_item_init = Item.__init__

# moto reads a request through the service model (botocore's shapes, member by member) to turn
# base64 binaries into bytes and drop members the operation does not have; for the data plane's
# requests that carry no binary value, which the SDKs write from the same model, that is json.loads.
# Requests naming a B or BS value go moto's way.
_original_parse_parameters = DynamoHandler.parse_parameters
_BINARY = re.compile(rb'"BS?"\s*:')


def _parse_parameters(self: DynamoHandler, request: Any) -> None:
    body = request.data
    if self._get_action() in PLAIN_ANSWERS and body and not _BINARY.search(body):
        try:
            params = json.loads(body)
        except ValueError:
            params = None
        if isinstance(params, dict):
            self.params = params
            return
    _original_parse_parameters(self, request)


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
    ConditionExpressionParser.parse = _memo_parse  # type: ignore[method-assign]
    Item.__init__ = _item_init  # type: ignore[method-assign]
    DynamoHandler.parse_parameters = _parse_parameters  # type: ignore[method-assign,assignment]
    moto_backends.list_of_moto_modules = _moto_modules
    if not hasattr(moto_responses.method_names_from_class, "cache_info"):
        moto_responses.method_names_from_class = functools.cache(moto_responses.method_names_from_class)


def uninstall_shortcuts() -> None:
    """moto's own request parser, condition parser, item constructor and serializer again: the
    shortcuts that change no answer, only its cost (tests compare the two ways)."""
    DynamoHandler.serialized = _original_serialized  # type: ignore[method-assign]
    DynamoHandler.parse_parameters = _original_parse_parameters  # type: ignore[method-assign]
    ConditionExpressionParser.parse = _parse  # type: ignore[method-assign]
    Item.__init__ = _original_item_init  # type: ignore[method-assign]


def installed() -> bool:
    return DynamoDBBackend.transact_write_items is transact_write_items
