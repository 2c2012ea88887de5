"""IoT Core of the local cloud: the MQTT broker, the template's topic rules, device shadows over MQTT
and the IoT data plane endpoint (`iot-data`: Publish and the shadow operations).

- Topic rules: every SAM `IoTRule` event (`Sql`, `AwsIotSqlVersion`) and every `AWS::IoT::TopicRule`
  with Lambda or Sqs actions. Each message the broker routes runs through every rule's SQL
  (ems_local.iotsql); a rule that fires invokes its functions asynchronously, as IoT's Lambda action
  does, with the selected JSON as the event, and sends that JSON to its queues in moto (Sqs action);
  a send that fails goes to the rule's ErrorAction queue as IoT's error document. A rule's error (a
  payload that is not JSON, ...) is logged and the message goes on to the other rules.
- Shadows: moto keeps them (classic and named). Devices use the reserved topics
  `$aws/things/<thing>/shadow[/name/<shadow>]/{update,get,delete}` and get their answers on
  `.../accepted` or `.../rejected`; every accepted update, from MQTT or from `iot-data`, is published on
  `update/accepted`, `update/documents`, and on `update/delta` when it set desired state that differs
  from the reported one. AWS keeps a shadow for a thing name that is not in the registry; moto ties
  shadows to things, so the first update of an unknown thing registers it.
- Data plane: `IotDataPlane.handle(method, path, headers, body, query)` answers what botocore's
  `iot-data` client sends (rest-json; functions reach it through AWS_ENDPOINT_URL_IOT_DATA_PLANE,
  botocore's variable for the service id "IoT Data Plane").
"""

from __future__ import annotations

import base64
import json
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from botocore.exceptions import ClientError

from ems.core.clock import utc_now
from ems_local import console, iotsql
from ems_local.aws_services import aws_error
from ems_local.mqtt_broker import MqttBroker
from ems_local.template import Stack

Submit = Callable[[str, Any, str], Any]  # (function logical id, event, source): asynchronous invocation
Send = Callable[[str, str], None]  # (queue URL, message body): SQS SendMessage
Publish = Callable[[str, bytes], None]  # (topic, payload)
Response = tuple[int, dict[str, str], bytes]

# IoT Core's limit for one message (Publish and MQTT alike).
MAX_PAYLOAD_BYTES = 128 * 1024
SHADOW_REQUEST = re.compile(
    r"^\$aws/things/(?P<thing>[^/]+)/shadow/(?:name/(?P<shadow>[^/]+)/)?(?P<operation>update|get|delete)$"
)
_SQL_VERSION = "2016-03-23"  # what ems_local.iotsql implements


# --- topic rules ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicRule:
    name: str
    rule: iotsql.Rule
    functions: tuple[str, ...]  # logical ids of the functions its Lambda actions invoke
    queues: tuple[str, ...] = ()  # URLs of the queues its Sqs actions send to
    error_queue: str | None = None  # its ErrorAction's Sqs queue


def topic_rules(stack: Stack) -> list[TopicRule]:
    """The template's topic rules with Lambda actions; a rule whose SQL is not supported is left out
    and said so (the rest of the stack still runs)."""
    found: list[tuple[str, Any, Any, tuple[str, ...], tuple[str, ...], str | None]] = []
    for function, props in stack.functions().items():
        for event_name, event in props["Events"].items():
            if event.get("Type") == "IoTRule":
                spec = event.get("Properties", {})
                found.append(
                    (
                        f"{function}{event_name}",
                        spec.get("Sql"),
                        spec.get("AwsIotSqlVersion"),
                        (function,),
                        (),
                        None,
                    )
                )
    by_arn = {str(stack.get_att(name, "Arn")): name for name in stack.functions()}
    for logical_id, resource in stack.of_type("AWS::IoT::TopicRule").items():
        props = stack.resolve(resource.get("Properties", {}))
        payload = props.get("TopicRulePayload", {})
        if payload.get("RuleDisabled") in (True, "true"):
            continue
        functions: list[str] = []
        queues: list[str] = []
        for action in payload.get("Actions", []):
            arn = str((action.get("Lambda") or {}).get("FunctionArn", ""))
            if arn.removesuffix(":$LATEST") in by_arn:
                functions.append(by_arn[arn.removesuffix(":$LATEST")])
            elif (action.get("Sqs") or {}).get("QueueUrl"):
                queues.append(_sqs_target(logical_id, action["Sqs"]))
            else:
                console.line("iot", f"rule {logical_id}: action {sorted(action)} is not run locally")
        error = payload.get("ErrorAction") or {}
        error_queue = (
            _sqs_target(logical_id, error["Sqs"]) if (error.get("Sqs") or {}).get("QueueUrl") else None
        )
        if error and error_queue is None:
            console.line("iot", f"rule {logical_id}: error action {sorted(error)} is not run locally")
        name = str(props.get("RuleName") or logical_id)
        found.append(
            (
                name,
                payload.get("Sql"),
                payload.get("AwsIotSqlVersion"),
                tuple(functions),
                tuple(queues),
                error_queue,
            )
        )

    rules = []
    for name, sql, version, targets, queue_urls, error_url in found:
        try:
            rule = iotsql.parse(str(stack.resolve(sql)))
        except ValueError as exc:
            console.line("iot", f"rule {name} is not run: {exc}")
            continue
        if version and version != _SQL_VERSION:
            console.line("iot", f"rule {name}: AwsIotSqlVersion {version} runs as {_SQL_VERSION} here")
        rules.append(TopicRule(name, rule, targets, queue_urls, error_url))
    return rules


def _sqs_target(rule: str, action: dict[str, Any]) -> str:
    if action.get("UseBase64") in (True, "true"):
        console.line("iot", f"rule {rule}: UseBase64 is not emulated; the queue gets the JSON as it is")
    return str(action["QueueUrl"])


class TopicRuleEngine:
    def __init__(self, rules: list[TopicRule], submit: Submit, send: Send | None = None) -> None:
        self.rules = rules
        self._submit = submit
        self._send = send

    def on_message(self, topic: str, payload: bytes, client_id: str, now_ms: int) -> int:
        """Run every rule on one message; how many invocations it queued. Never raises."""
        queued = 0
        for topic_rule in self.rules:
            try:
                selected = topic_rule.rule.apply(topic, payload, client_id, now_ms)
            except Exception as exc:  # PayloadNotJson, an evaluation bug: this rule, this message only
                console.line("iot", f"rule {topic_rule.name} on {topic}: {exc}")
                continue
            if selected is None:
                continue
            for function in topic_rule.functions:
                self._submit(function, selected, f"iot rule {topic_rule.name}")
                queued += 1
            for queue_url in topic_rule.queues:
                queued += self._to_queue(topic_rule, queue_url, topic, payload, selected, client_id)
        return queued

    def _to_queue(
        self, topic_rule: TopicRule, queue_url: str, topic: str, payload: bytes, selected: Any, client_id: str
    ) -> int:
        """The Sqs action: 1 when the selected JSON is in the queue (or, failing that, the rule's
        error document in its error queue), else 0."""
        if self._send is None:
            console.line("iot", f"rule {topic_rule.name}: no SQS to send to")
            return 0
        try:
            self._send(queue_url, json.dumps(selected))
            return 1
        except Exception as exc:
            failure = repr(exc)
            console.line("iot", f"rule {topic_rule.name}: send to {queue_url} failed: {failure}")
            if topic_rule.error_queue is None:
                return 0
        # IoT's error action message: what failed and the original payload, base64.
        error = {
            "ruleName": topic_rule.name, "topic": topic, "clientId": client_id,
            "base64OriginalPayload": base64.b64encode(payload).decode(),
            "failures": [{"failedAction": "SqsAction", "failedResource": queue_url, "errorMessage": failure}],
        }  # fmt: skip
        try:
            self._send(topic_rule.error_queue, json.dumps(error))
            return 1
        except Exception as again:
            console.line("iot", f"rule {topic_rule.name}: error action failed too: {again!r}")
            return 0


# --- shadows ------------------------------------------------------------------------------------


class ShadowError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _shadow_error(exc: ClientError) -> ShadowError:
    error = exc.response.get("Error", {})
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 500)
    return ShadowError(status, str(error.get("Code", "")), str(error.get("Message", "")))


def shadow_topic(thing: str, shadow: str | None, operation: str) -> str:
    named = f"name/{shadow}/" if shadow else ""
    return f"$aws/things/{thing}/shadow/{named}{operation}"


class Shadows:
    """Shadow operations on moto's shadows, with the MQTT messages IoT Core publishes for them."""

    def __init__(self, iot_data: Any, iot: Any, publish: Publish) -> None:
        self._iot_data, self._iot, self._publish = iot_data, iot, publish
        self._lock = threading.Lock()  # one update at a time: previous and current documents agree

    def _shadow_args(self, thing: str, shadow: str | None) -> dict[str, str]:
        return {"thingName": thing, **({"shadowName": shadow} if shadow else {})}

    def _get_document(self, thing: str, shadow: str | None) -> dict[str, Any]:
        try:
            answer = self._iot_data.get_thing_shadow(**self._shadow_args(thing, shadow))
        except ClientError as exc:
            raise _shadow_error(exc) from None
        return dict(json.loads(answer["payload"].read()))

    def get(self, thing: str, shadow: str | None = None) -> dict[str, Any]:
        """The shadow document (state desired, reported, delta; metadata; version; timestamp)."""
        return self._get_document(thing, shadow)

    def update(self, thing: str, payload: bytes, shadow: str | None = None) -> dict[str, Any]:
        """Update the shadow; the accepted document. Publishes update/accepted, documents and delta."""
        request = _json_object(payload)
        with self._lock:
            try:
                previous: dict[str, Any] | None = self._get_document(thing, shadow)
            except ShadowError:
                previous = None
            try:
                accepted = self._update(thing, payload, shadow)
            except ClientError as exc:
                raise _shadow_error(exc) from None
            current = self._get_document(thing, shadow)
        token = {"clientToken": request["clientToken"]} if "clientToken" in request else {}
        self._send(thing, shadow, "update/accepted", {**accepted, **token})
        self._send(
            thing, shadow, "update/documents",
            {"previous": _document_only(previous), "current": _document_only(current),
             "timestamp": current.get("timestamp"), **token},
        )  # fmt: skip
        state = request.get("state")
        desired = state.get("desired") if isinstance(state, dict) else None
        delta = (current.get("state") or {}).get("delta")
        if desired and delta:
            metadata = (current.get("metadata") or {}).get("desired") or {}
            self._send(
                thing, shadow, "update/delta",
                {"version": current.get("version"), "timestamp": current.get("timestamp"), "state": delta,
                 "metadata": {k: metadata[k] for k in delta if k in metadata}, **token},
            )  # fmt: skip
        return accepted

    def _update(self, thing: str, payload: bytes, shadow: str | None) -> dict[str, Any]:
        args = {**self._shadow_args(thing, shadow), "payload": payload}
        try:
            answer = self._iot_data.update_thing_shadow(**args)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            self._iot.create_thing(thingName=thing)  # AWS needs no registered thing for a shadow; moto does
            console.line("iot", f"registered thing {thing} for its first shadow update")
            answer = self._iot_data.update_thing_shadow(**args)
        return dict(json.loads(answer["payload"].read()))

    def delete(self, thing: str, shadow: str | None = None) -> dict[str, Any]:
        try:
            answer = self._iot_data.delete_thing_shadow(**self._shadow_args(thing, shadow))
        except ClientError as exc:
            raise _shadow_error(exc) from None
        document = dict(json.loads(answer["payload"].read()))
        self._send(thing, shadow, "delete/accepted", document)
        return document

    def list_named(self, thing: str) -> list[str]:
        try:
            return list(self._iot_data.list_named_shadows_for_thing(thingName=thing)["results"])
        except ClientError as exc:
            raise _shadow_error(exc) from None

    def on_message(self, topic: str, payload: bytes) -> bool:
        """Serve a device's request on a shadow topic; False when `topic` is not one. Never raises."""
        found = SHADOW_REQUEST.match(topic)
        if found is None:
            return False
        thing, shadow, operation = found["thing"], found["shadow"], found["operation"]
        request = _json_object(payload)
        token = {"clientToken": request["clientToken"]} if "clientToken" in request else {}
        try:
            if operation == "update":
                if not request:
                    raise ShadowError(400, "InvalidRequestException", "Payload contains invalid json")
                self.update(thing, payload, shadow)  # publishes update/accepted itself
            elif operation == "get":
                self._send(thing, shadow, "get/accepted", {**self.get(thing, shadow), **token})
            else:
                self.delete(thing, shadow)
        except ShadowError as exc:
            message = exc.message
            if exc.status == 404:
                message = f"No shadow exists with name: '{thing}{'~' + shadow if shadow else ''}'"
            self._send(
                thing, shadow, f"{operation}/rejected",
                {"code": exc.status, "message": message, "timestamp": int(time.time()), **token},
            )  # fmt: skip
        except Exception as exc:  # the emulator's bug: the device still gets an answer
            console.line("iot", f"shadow {operation} of {thing}: {exc!r}")
            self._send(
                thing, shadow, f"{operation}/rejected",
                {"code": 500, "message": "Internal service failure", "timestamp": int(time.time()), **token},
            )  # fmt: skip
        return True

    def _send(self, thing: str, shadow: str | None, operation: str, document: dict[str, Any]) -> None:
        self._publish(shadow_topic(thing, shadow, operation), json.dumps(document).encode())


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _document_only(document: dict[str, Any] | None) -> dict[str, Any] | None:
    """A shadow document as `update/documents` shows it: state without delta, metadata, version."""
    if document is None:
        return None
    state = {k: v for k, v in (document.get("state") or {}).items() if k != "delta"}
    return {"state": state, "metadata": document.get("metadata", {}), "version": document.get("version")}


# --- the data plane endpoint ------------------------------------------------------------------


def _json(status: int, document: Any) -> Response:
    return status, {"content-type": "application/json"}, json.dumps(document).encode()


class IotDataPlane:
    """The `iot-data` API: Publish to the broker; shadow operations through `Shadows`."""

    def __init__(self, publish: Callable[[str, bytes, int, bool], None], shadows: Shadows) -> None:
        self._publish, self._shadows = publish, shadows

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes, query: str = ""
    ) -> Response:
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        parts = [unquote(p) for p in path.strip("/").split("/")]
        try:
            if method == "POST" and len(parts) == 2 and parts[0] == "topics":
                return self._publish_message(parts[1], body, params)
            if len(parts) == 3 and parts[0] == "things" and parts[2] == "shadow":
                thing, shadow = parts[1], params.get("name") or None
                if method == "GET":
                    return _json(200, self._shadows.get(thing, shadow))
                if method == "POST":
                    if len(body) > MAX_PAYLOAD_BYTES:
                        return aws_error(413, "RequestEntityTooLargeException", "The payload exceeds 128 KB")
                    return _json(200, self._shadows.update(thing, body, shadow))
                if method == "DELETE":
                    return _json(200, self._shadows.delete(thing, shadow))
            if (
                method == "GET"
                and len(parts) == 5
                and parts[:4] == ["api", "things", "shadow", "ListNamedShadowsForThing"]
            ):
                names = self._shadows.list_named(parts[4])
                return _json(200, {"results": names, "timestamp": int(time.time())})
        except ShadowError as exc:
            return aws_error(exc.status, exc.code, exc.message)
        return aws_error(
            404, "UnsupportedOperationException", f"{method} {path} is not served by the local IoT data plane"
        )

    def _publish_message(self, topic: str, body: bytes, params: dict[str, str]) -> Response:
        if not topic or "+" in topic or "#" in topic:
            return aws_error(400, "InvalidRequestException", f"not a topic to publish to: {topic!r}")
        if len(body) > MAX_PAYLOAD_BYTES:
            return aws_error(413, "RequestEntityTooLargeException", "The payload exceeds 128 KB")
        qos = params.get("qos", "0")
        if qos not in ("0", "1"):
            return aws_error(400, "InvalidRequestException", f"qos must be 0 or 1, not {qos}")
        retain = params.get("retain", "false").lower() == "true"
        self._publish(topic, body, int(qos), retain)
        return 200, {"content-type": "application/json"}, b""


# --- IoT Core -----------------------------------------------------------------------------------

_STOP = object()


class IotCore:
    """The broker, the rules and the shadows together, started and stopped as one service."""

    def __init__(
        self, stack: Stack, submit: Submit, aws_client: Callable[[str], Any], port: int = 1883
    ) -> None:
        sqs = aws_client("sqs")
        self.rules = TopicRuleEngine(
            topic_rules(stack), submit, lambda url, body: sqs.send_message(QueueUrl=url, MessageBody=body)
        )
        self.broker = MqttBroker(port, self._observe)
        self.shadows = Shadows(aws_client("iot-data"), aws_client("iot"), self._publish_service)
        self.data_plane = IotDataPlane(self.broker.publish, self.shadows)
        self._messages: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._dispatch, name="iot-rules", daemon=True)

    @property
    def url(self) -> str:
        return self.broker.url

    def start(self) -> None:
        self._thread.start()
        self.broker.start()
        names = ", ".join(f"{r.name} ({r.rule.topic_filter})" for r in self.rules.rules) or "none"
        console.line("iot", f"topic rules: {names}")

    def _publish_service(self, topic: str, payload: bytes) -> None:
        self.broker.publish(topic, payload, 0, False)

    def _observe(self, topic: str, payload: bytes, client_id: str) -> None:
        # In the broker's event loop: queue only; rules and shadows run on the dispatch thread.
        # timestamp() in a rule reads the local cloud's one clock, as the functions do.
        self._messages.put((topic, payload, client_id, int(utc_now().timestamp() * 1000)))

    def _dispatch(self) -> None:
        while (message := self._messages.get()) is not _STOP:
            topic, payload, client_id, now_ms = message
            try:
                self.rules.on_message(topic, payload, client_id, now_ms)
                self.shadows.on_message(topic, payload)  # what the service publishes is never a request
            except Exception as exc:  # never stop the engine
                console.line("iot", f"message on {topic}: {exc!r}")

    def stop(self) -> None:
        try:
            self.broker.stop()
        finally:
            self._messages.put(_STOP)
            if self._thread.is_alive():
                self._thread.join(timeout=10)
