"""The private parts of moto and amqtt the local cloud patches or reaches into are still where the
patches expect them (pyproject.toml bounds both packages for that reason): each test names the patch,
what it relies on, and the installed version, so trying a new version says what to re-check.

Only imports and inspection here (signatures, source text of the calling code): no moto backend is
used and no socket opened. tests/integration/test_pinned_moto_internals.py checks what needs a
running moto (the attributes of its objects).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import amqtt.broker
import amqtt.session
import moto
import moto.backends
import moto.core
import moto.core.responses
import moto.core.utils
import moto.moto_server.werkzeug_app
import werkzeug.serving
from moto.dynamodb.comparisons import ConditionExpressionParser
from moto.dynamodb.exceptions import TransactionCanceledException
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import LimitedSizeDict
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.kms.models import KmsBackend

from ems_local import moto_dynamodb, state

MOTO, AMQTT = f"moto {moto.__version__}", f"amqtt {version('amqtt')}"
WERKZEUG = f"werkzeug {version('werkzeug')}"


def parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def source(thing: Any) -> str:
    return inspect.getsource(thing)


def recheck(patch: str, relies_on: str, package: str) -> str:
    return f"{patch}; it relies on {relies_on}, which {package} no longer has: re-check the patch"


def test_transact_write_items_replacement_fits_motos_backend() -> None:
    patch = "ems_local.moto_dynamodb replaces moto's DynamoDBBackend.transact_write_items"
    # moto_dynamodb keeps moto's own as _original; install() may already have replaced the class's.
    assert parameters(moto_dynamodb._original) == ["self", "transact_items"], recheck(
        patch, "its signature (self, transact_items)", MOTO
    )
    assert "transact_write_items(transact_items" in source(DynamoHandler.transact_write_items), recheck(
        patch, "DynamoHandler.transact_write_items calling the backend's with the items alone", MOTO
    )
    for method, needed in [
        (moto_dynamodb._original_put_item, {"expression_attribute_names", "expression_attribute_values"}),
        (moto_dynamodb._original_delete_item, {"expression_attribute_names", "expression_attribute_values"}),
        (moto_dynamodb._original_update_item, {"update_expression", "expression_attribute_names",
                                               "expression_attribute_values"}),
    ]:  # fmt: skip
        assert needed <= set(parameters(method)), recheck(
            patch, f"DynamoDBBackend.{method.__name__} taking {sorted(needed)} by name", MOTO
        )
    assert parameters(DynamoDBBackend.get_item)[:3] == ["self", "table_name", "keys"], recheck(
        patch, "DynamoDBBackend.get_item(table_name, keys)", MOTO
    )
    assert parameters(TransactionCanceledException.__init__)[:2] == ["self", "errors"], recheck(
        patch, "TransactionCanceledException(errors), one (code, message, item) per transaction item", MOTO
    )


def test_single_item_write_lock_wraps_what_motos_handler_calls() -> None:
    patch = (
        "ems_local.moto_dynamodb wraps moto's DynamoDBBackend.put_item, update_item and delete_item in a lock"
    )
    for operation in ("put_item", "update_item", "delete_item"):
        assert callable(getattr(moto_dynamodb, f"_original_{operation}")), recheck(
            patch, f"DynamoDBBackend.{operation}", MOTO
        )
        # The lock serializes a write only if the condition is checked inside the wrapped call.
        assert f"dynamodb_backend.{operation}(" in source(getattr(DynamoHandler, operation)), recheck(
            patch, f"DynamoHandler.{operation} calling the backend's {operation} (condition included)", MOTO
        )
        assert "condition_expression" in parameters(getattr(moto_dynamodb, f"_original_{operation}")), (
            recheck(
                patch,
                f"DynamoDBBackend.{operation} checking the condition itself (condition_expression)",
                MOTO,
            )
        )


def test_partition_query_fits_motos_table_query() -> None:
    patch = "ems_local.moto_dynamodb replaces moto's Table.query (reading one partition's items)"
    # _query_partition reads index_name as args[6]: Table.query's 9th parameter, self included.
    assert parameters(moto_dynamodb._original_query)[:9] == [
        "self", "hash_key", "range_comparison", "range_objs", "limit", "exclusive_start_key",
        "scan_index_forward", "projection_expressions", "index_name",
    ], recheck(patch, "Table.query's positional parameters up to index_name", MOTO)  # fmt: skip
    assert "self.all_items()" in source(moto_dynamodb._original_query), recheck(
        patch, "Table.query reading the table's items through self.all_items()", MOTO
    )
    assert "self.items.values()" in source(Table.all_items), recheck(
        patch, "Table.items holding {hash key: item or {range key: item}}", MOTO
    )


def test_serializer_replacement_fits_motos_handler() -> None:
    patch = "ems_local.moto_dynamodb replaces moto's DynamoHandler.serialized"
    assert parameters(moto_dynamodb._original_serialized) == ["self", "action_result"], recheck(
        patch, "its signature (self, action_result)", MOTO
    )
    assert isinstance(inspect.getattr_static(moto.core.responses.ActionResult, "result"), property), recheck(
        patch, "ActionResult.result", MOTO
    )
    assert callable(getattr(DynamoHandler, "_get_action", None)), recheck(
        patch, "BaseResponse._get_action()", MOTO
    )
    assert "self.response_headers" in source(moto.core.responses.BaseResponse), recheck(
        patch, "BaseResponse.response_headers", MOTO
    )


def test_request_parser_condition_memo_and_item_sizing_fit_moto() -> None:
    patch = "ems_local.moto_dynamodb replaces DynamoHandler.parse_parameters (json.loads for the data plane)"
    assert parameters(moto_dynamodb._original_parse_parameters) == ["self", "request"], recheck(
        patch, "parse_parameters(self, request)", MOTO
    )
    assert "self.params = " in source(moto_dynamodb._original_parse_parameters), recheck(
        patch, "the parsed request kept as self.params", MOTO
    )
    assert 'getattr(self, "params"' in source(DynamoHandler.call_action), recheck(
        patch, "DynamoHandler.call_action reading self.params as the body", MOTO
    )
    patch = "ems_local.moto_dynamodb keeps ConditionExpressionParser.parse's results"
    init = source(ConditionExpressionParser.__init__)
    for attribute in ("condition_expression", "expression_attribute_names", "expression_attribute_values",
                      "expr_attr_names_found", "expr_attr_values_found"):  # fmt: skip
        assert f"self.{attribute}" in init, recheck(patch, f"ConditionExpressionParser.{attribute}", MOTO)
    assert parameters(moto_dynamodb._parse) == ["self"], recheck(patch, "parse(self)", MOTO)
    patch = "ems_local.moto_dynamodb replaces moto's Item.__init__ (an item's size summed once)"
    assert parameters(moto_dynamodb._original_item_init) == ["self", "hash_key", "range_key", "attrs"], (
        recheck(patch, "Item.__init__(self, hash_key, range_key, attrs)", MOTO)
    )
    assert "405000" in source(LimitedSizeDict.__setitem__), recheck(
        patch, "LimitedSizeDict's limit of 405000", MOTO
    )


def test_module_list_replacement_is_what_the_server_calls() -> None:
    patch = "ems_local.moto_dynamodb replaces moto.backends.list_of_moto_modules (computed once)"
    assert "def list_of_moto_modules(" in source(moto.backends), recheck(
        patch, "moto.backends.list_of_moto_modules", MOTO
    )
    # Looked up on the module at each call, so replacing the module's attribute takes effect.
    assert "backends.list_of_moto_modules()" in source(moto.moto_server.werkzeug_app), recheck(
        patch, "the server's app calling backends.list_of_moto_modules() on each request", MOTO
    )


def test_method_names_cache_is_what_responses_call() -> None:
    patch = "ems_local.moto_dynamodb caches moto.core.responses.method_names_from_class"
    assert parameters(moto.core.utils.method_names_from_class) == ["clazz"], recheck(
        patch, "method_names_from_class(clazz)", MOTO
    )
    assert "method_names_from_class(self.__class__)" in source(moto.core.responses.BaseResponse), recheck(
        patch, "BaseResponse calling method_names_from_class (the responses module's name) per request", MOTO
    )


def test_state_snapshot_finds_motos_kms_backend() -> None:
    patch = "ems_local.state reads and restores moto's KMS keys (kms_backends, KmsBackend.keys, create_key)"
    assert state.ACCOUNT == moto.core.DEFAULT_ACCOUNT_ID, recheck(
        patch, f"moto's default account being {state.ACCOUNT}", MOTO
    )
    assert {"policy", "key_usage", "key_spec", "description", "tags"} <= set(
        parameters(KmsBackend.create_key)
    ), recheck(patch, "KmsBackend.create_key(policy, key_usage, key_spec, description, tags)", MOTO)
    assert "self.keys" in source(KmsBackend.__init__), recheck(patch, "KmsBackend.keys (id -> Key)", MOTO)


def test_moto_server_keep_alive_handler_fits_werkzeug_and_moto() -> None:
    patch = "ems_local.moto_server.KeepAliveHandler replaces MotoRequestHandler.run_wsgi (keep-alive)"
    handler = moto.moto_server.werkzeug_app.MotoRequestHandler
    assert issubclass(handler, werkzeug.serving.WSGIRequestHandler), recheck(
        patch, "MotoRequestHandler being werkzeug's WSGIRequestHandler", MOTO
    )
    assert callable(getattr(handler, "make_environ", None)), recheck(patch, "make_environ()", MOTO)
    assert 'self.send_header("Connection", "close")' in source(
        werkzeug.serving.WSGIRequestHandler.run_wsgi
    ), recheck(patch, "werkzeug's run_wsgi closing every connection (the reason for the patch)", WERKZEUG)
    assert {"threaded", "request_handler"} <= set(parameters(werkzeug.serving.make_server)), recheck(
        patch, "werkzeug.serving.make_server(host, port, app, threaded, request_handler)", WERKZEUG
    )


def test_mqtt_broker_message_delivery_override_fits_amqtt() -> None:
    patch = "ems_local.mqtt_broker overrides amqtt's Broker._handle_message_delivery ($aws/ topics)"
    assert callable(getattr(amqtt.broker.Broker, "_handle_message_delivery", None)), recheck(
        patch, "Broker._handle_message_delivery", AMQTT
    )
    assert parameters(amqtt.broker.Broker._handle_message_delivery) == [
        "self", "client_session", "handler", "wait_deliver",
    ], recheck(patch, "its signature (self, client_session, handler, wait_deliver)", AMQTT)  # fmt: skip
    assert "self._handle_message_delivery(" in source(amqtt.broker.Broker._client_message_loop), recheck(
        patch, "Broker._client_message_loop handing each client PUBLISH to it", AMQTT
    )
    assert {"topic", "data"} <= set(amqtt.session.ApplicationMessage.__slots__), recheck(
        patch, "ApplicationMessage.topic and .data", AMQTT
    )


def test_mqtt_broker_broadcast_override_fits_amqtt() -> None:
    patch = (
        "ems_local.mqtt_broker overrides amqtt's Broker._broadcast_message (the observer of every message)"
    )
    broker = amqtt.broker.Broker
    assert callable(getattr(broker, "_broadcast_message", None)), recheck(
        patch, "Broker._broadcast_message", AMQTT
    )
    assert parameters(broker._broadcast_message) == ["self", "session", "topic", "data", "force_qos"], (
        recheck(patch, "its signature (self, session, topic, data, force_qos)", AMQTT)
    )
    # The override observes every routed message only if all of them go through it.
    for door in ("internal_message_broadcast", "_handle_message_delivery", "_handle_disconnect"):
        assert "self._broadcast_message(" in source(getattr(broker, door)), recheck(
            patch, f"Broker.{door} routing its messages through _broadcast_message", AMQTT
        )
