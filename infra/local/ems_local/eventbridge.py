"""EventBridge for the local cloud: the template's rules, and a PutEvents endpoint that routes by them.

Functions reach `EventBridgeApi` through AWS_ENDPOINT_URL_EVENTBRIDGE (botocore's name for the
`events` client: AWS_ENDPOINT_URL_ + its service id "EventBridge"). PutEvents checks entries as
AWS does, builds each event's envelope, matches it against every rule of its bus
(ems_local.eventpattern) and hands each matching rule's target input to Lambda's asynchronous
invocation (ems_local.async_invoke): PutEvents answers before any function runs.

Rules come from the template: SAM `EventBridgeRule` and `CloudWatchEvent` function events
(Pattern, EventBusName, Input, InputPath, InputTransformer, State) and AWS::Events::Rule resources
whose Targets are the template's functions. Rules with a ScheduleExpression are the scheduler's
(ems_local.scheduler); they share `Rule` and `target_input` with this module.

As in AWS, an event for a bus that does not exist is accepted and goes nowhere (logged here).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ems_local import console, eventpattern
from ems_local.template import ACCOUNT_ID, Stack

Response = tuple[int, dict[str, str], bytes]
Deliver = Callable[[str, Any, str], Any]  # (function logical id, event, source ARN)

DEFAULT_BUS = "default"
MAX_ENTRIES = 10
# "The total entry size must be less than 256KB" (EventBridge user guide, "Calculating PutEvents
# event entry size"): Time counts 14 bytes, Source, DetailType, Detail and each Resources entry
# their UTF-8 bytes.
MAX_REQUEST_BYTES = 256 * 1024
TIME_BYTES = 14
_JSON = "application/x-amz-json-1.1"
_RULE_EVENT_TYPES = ("EventBridgeRule", "CloudWatchEvent")


class ApiError(Exception):
    """A request-level error: AWS answers it with a 400 and `{"__type", "message"}`."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


# --- the template's rules ------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    name: str
    function: str  # the target function's logical id
    bus: str = DEFAULT_BUS
    pattern: dict[str, Any] | None = None
    schedule_expression: str | None = None
    enabled: bool = True
    input: str | None = None
    input_path: str | None = None
    input_transformer: dict[str, Any] | None = None
    region: str = "us-east-1"

    @property
    def arn(self) -> str:
        path = self.name if self.bus == DEFAULT_BUS else f"{self.bus}/{self.name}"
        return f"arn:aws:events:{self.region}:{ACCOUNT_ID}:rule/{path}"


def bus_name(value: Any) -> str:
    """An EventBusName as PutEvents and rules accept it (a name or an ARN), as the bus's name."""
    if not value:
        return DEFAULT_BUS
    text = str(value)
    return text.split("event-bus/", 1)[1] if text.startswith("arn:") and "event-bus/" in text else text


def function_ids_by_arn(stack: Stack) -> dict[str, str]:
    """Each function's ARN (and its name) -> its logical id: how a target names a function."""
    found = {}
    for logical_id, props in stack.functions().items():
        found[stack.get_att(logical_id, "Arn")] = logical_id
        found[str(props["FunctionName"])] = logical_id
    return found


def function_for(target_arn: Any, functions: dict[str, str]) -> str | None:
    """The logical id of the function a target ARN names (a version or alias suffix ignored)."""
    text = str(target_arn or "")
    if text in functions:
        return functions[text]
    parts = text.split(":")
    if len(parts) == 8 and parts[2] == "lambda":  # arn:aws:lambda:region:account:function:name:qualifier
        return functions.get(":".join(parts[:7]))
    return None


def _pattern(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    return dict(json.loads(value)) if isinstance(value, str) else dict(value)


def _enabled(props: dict[str, Any]) -> bool:
    if "Enabled" in props:
        return bool(props["Enabled"]) and str(props["Enabled"]).lower() != "false"
    return str(props.get("State", "ENABLED")).upper() != "DISABLED"


def rules_from(stack: Stack) -> list[Rule]:
    """Every rule of the template whose target is one of its functions.

    SAM names the rule of a function event `<Function><Event>` (plus a random suffix in AWS) unless
    RuleName or Name says otherwise; a rule with a pattern AWS would refuse is left out, loudly.
    """
    rules: list[Rule] = []
    for logical_id, function in stack.functions().items():
        for event_name, event in function["Events"].items():
            kind = event.get("Type")
            if kind not in (*_RULE_EVENT_TYPES, "Schedule"):
                continue
            props = stack.resolve(event.get("Properties", {}))
            rule = Rule(
                name=str(props.get("RuleName") or props.get("Name") or f"{logical_id}{event_name}"),
                function=logical_id, bus=bus_name(props.get("EventBusName")),
                pattern=_pattern(props.get("Pattern")) if kind != "Schedule" else None,
                schedule_expression=props.get("Schedule") if kind == "Schedule" else None,
                enabled=_enabled(props), input=props.get("Input"), input_path=props.get("InputPath"),
                input_transformer=props.get("InputTransformer"), region=stack.region,
            )  # fmt: skip
            rules.append(rule)
    functions = function_ids_by_arn(stack)
    for logical_id, resource in stack.of_type("AWS::Events::Rule").items():
        props = stack.resolve(resource.get("Properties", {}))
        for target in props.get("Targets", []):
            target_function = function_for(target.get("Arn"), functions)
            if target_function is None:
                console.line(
                    "events", f"rule {logical_id}: target {target.get('Arn')} is not a function here"
                )
                continue
            rule = Rule(
                name=str(props.get("Name") or logical_id), function=target_function,
                bus=bus_name(props.get("EventBusName")), pattern=_pattern(props.get("EventPattern")),
                schedule_expression=props.get("ScheduleExpression"), enabled=_enabled(props),
                input=target.get("Input"), input_path=target.get("InputPath"),
                input_transformer=target.get("InputTransformer"), region=stack.region,
            )  # fmt: skip
            rules.append(rule)
    usable = []
    for rule in rules:
        if rule.pattern is not None:
            try:
                eventpattern.validate(rule.pattern)
            except ValueError as exc:
                console.line("events", f"rule {rule.name}: pattern refused, rule left out: {exc}")
                continue
        usable.append(rule)
    return usable


def buses_from(stack: Stack) -> set[str]:
    return {DEFAULT_BUS} | {
        bus_name(stack.ref(logical_id)) for logical_id in stack.of_type("AWS::Events::EventBus")
    }


# --- entries and events --------------------------------------------------------------------------


def entry_size(entry: dict[str, Any]) -> int:
    size = TIME_BYTES if entry.get("Time") is not None else 0
    for key in ("Source", "DetailType", "Detail"):
        if isinstance(entry.get(key), str):
            size += len(entry[key].encode())
    return size + sum(len(str(r).encode()) for r in entry.get("Resources") or [])


def entry_error(entry: Any) -> tuple[str, str] | None:
    """(ErrorCode, ErrorMessage) for an entry AWS would fail, as PutEvents reports it; None if good."""
    if not isinstance(entry, dict):
        return "InvalidArgument", "Parameter Entry is not valid. Reason: an entry must be an object."
    for key in ("Source", "DetailType", "Detail"):
        if not entry.get(key):
            return "InvalidArgument", f"Parameter {key} is not valid. Reason: {key} is a required argument."
        if not isinstance(entry[key], str):
            return "InvalidArgument", f"Parameter {key} is not valid. Reason: {key} must be a string."
    if entry["Source"].startswith("aws."):  # only AWS services may send aws.* events
        return "NotAuthorizedForSourceException", "Not authorized for the source."
    try:
        detail = json.loads(entry["Detail"])
    except ValueError:
        return "MalformedDetail", "Detail is malformed."
    if not isinstance(detail, dict):  # the user guide: "Detail: a valid JSON object"
        return "MalformedDetail", "Detail is malformed."
    resources = entry.get("Resources")
    if resources is not None and not (
        isinstance(resources, list) and all(isinstance(r, str) for r in resources)
    ):
        return "InvalidArgument", "Parameter Resources is not valid. Reason: a list of ARNs (strings)."
    if entry.get("Time") is not None and _event_time(entry["Time"]) is None:
        return "InvalidArgument", "Parameter Time is not valid. Reason: not a timestamp."
    return None


def _event_time(value: Any) -> datetime | None:
    # botocore sends a timestamp as epoch seconds in the JSON protocols; accept ISO 8601 too.
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def iso_seconds(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def envelope(entry: dict[str, Any], event_id: str, now: datetime, region: str) -> dict[str, Any]:
    """The event as EventBridge delivers it: its envelope around the entry's Detail."""
    moment = _event_time(entry["Time"]) if entry.get("Time") is not None else now
    return {
        "version": "0",
        "id": event_id,
        "detail-type": entry["DetailType"],
        "source": entry["Source"],
        "account": ACCOUNT_ID,
        "time": iso_seconds(moment or now),
        "region": region,
        "resources": list(entry.get("Resources") or []),
        "detail": json.loads(entry["Detail"]),
    }


# --- what a rule's target receives ---------------------------------------------------------------

_PATH_STEP = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")
_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.\-]+)>")


def json_path(document: Any, path: str) -> Any:
    """The value at a JSONPath of the kind InputPath and InputPathsMap take ($, $.a.b, $.a[0]);
    None where there is nothing."""
    if not path.startswith("$"):
        raise ValueError(f"a JSONPath starts with $: {path!r}")
    value, position = document, 1
    while position < len(path):
        step = _PATH_STEP.match(path, position)
        if step is None:
            raise ValueError(f"unsupported JSONPath {path!r}")
        key, index = step.groups()
        if key is not None:
            value = value.get(key) if isinstance(value, dict) else None
        else:
            value = value[int(index)] if isinstance(value, list) and int(index) < len(value) else None
        position = step.end()
    return value


def _transform(transformer: dict[str, Any], event: dict[str, Any], rule: Rule) -> Any:
    values = {name: json_path(event, path) for name, path in (transformer.get("InputPathsMap") or {}).items()}
    values |= {
        "aws.events.rule-arn": rule.arn, "aws.events.rule-name": rule.name,
        "aws.events.event": event, "aws.events.event.json": event,
        "aws.events.event.ingestion-time": event.get("time"),
    }  # fmt: skip
    template = str(transformer.get("InputTemplate", ""))
    out, in_string, i = [], False, 0
    # A placeholder inside a JSON string takes the value's text; outside one, its JSON.
    while i < len(template):
        char = template[i]
        if char == "\\" and in_string:
            out.append(template[i : i + 2])
            i += 2
            continue
        if char == '"':
            in_string = not in_string
        placeholder = _PLACEHOLDER.match(template, i) if char == "<" else None
        if placeholder and placeholder[1] in values:
            value = values[placeholder[1]]
            if in_string:
                text = value if isinstance(value, str) else json.dumps(value)
                out.append(json.dumps(text)[1:-1])
            else:
                out.append(json.dumps(value))
            i = placeholder.end()
            continue
        out.append(char)
        i += 1
    text = "".join(out)
    try:
        return json.loads(text)
    except ValueError:
        return text  # a text template: the target gets a JSON string


def target_input(rule: Rule, event: dict[str, Any]) -> Any:
    """What the rule's target receives: the event, or the rule's Input, InputPath or InputTransformer."""
    if rule.input is not None:
        try:
            return json.loads(rule.input)
        except ValueError:
            return rule.input
    if rule.input_path:
        return json_path(event, rule.input_path)
    if rule.input_transformer:
        return _transform(rule.input_transformer, event, rule)
    return event


# --- the endpoint --------------------------------------------------------------------------------


class EventBridgeApi:
    """PutEvents (AWS JSON 1.1, X-Amz-Target AWSEvents.PutEvents); the SigV4 service name is `events`."""

    service = "events"

    def __init__(
        self,
        rules: list[Rule],
        buses: set[str],
        deliver: Deliver,
        region: str = "us-east-1",
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.rules = [r for r in rules if r.pattern is not None and r.enabled]
        self.buses = buses
        self._deliver = deliver
        self.region = region
        self._now = now

    @classmethod
    def from_stack(cls, stack: Stack, deliver: Deliver) -> EventBridgeApi:
        return cls(rules_from(stack), buses_from(stack), deliver, stack.region)

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Response:
        request_id = str(uuid.uuid4())
        target = {k.lower(): v for k, v in headers.items()}.get("x-amz-target", "")
        try:
            if method != "POST":
                raise ApiError("UnknownOperationException", f"EventBridge takes POST, not {method}")
            operation = target.rsplit(".", 1)[-1]
            if operation != "PutEvents":
                raise ApiError(
                    "UnknownOperationException",
                    f"the local cloud serves PutEvents of EventBridge, not {target or 'an empty X-Amz-Target'}",
                )
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                raise ApiError("SerializationException", "the request body is not JSON") from None
            if not isinstance(request, dict):
                raise ApiError("SerializationException", "the request body is not a JSON object")
            status, answer = 200, self.put_events(request)
        except ApiError as exc:
            status, answer = exc.status, {"__type": exc.code, "message": exc.message}
        out = {"content-type": _JSON, "x-amzn-requestid": request_id}
        if status != 200:
            out["x-amzn-errortype"] = str(answer["__type"])
        return status, out, json.dumps(answer).encode()

    def put_events(self, request: dict[str, Any]) -> dict[str, Any]:
        entries = request.get("Entries")
        if not isinstance(entries, list):
            raise ApiError("ValidationException", "1 validation error detected: 'entries' must be a list")
        if not 1 <= len(entries) <= MAX_ENTRIES:
            bound = "greater than or equal to 1" if not entries else f"less than or equal to {MAX_ENTRIES}"
            raise ApiError(
                "ValidationException",
                "1 validation error detected: Value at 'entries' failed to satisfy constraint: "
                f"Member must have length {bound}",
            )
        if sum(entry_size(e) for e in entries if isinstance(e, dict)) > MAX_REQUEST_BYTES:
            raise ApiError(
                "ValidationException", "Total size of the entries in the request is over the limit."
            )
        results: list[dict[str, str]] = []
        now = self._now()
        for entry in entries:
            error = entry_error(entry)
            if error is not None:
                results.append({"ErrorCode": error[0], "ErrorMessage": error[1]})
                continue
            event_id = str(uuid.uuid4())
            results.append({"EventId": event_id})
            self.route(bus_name(entry.get("EventBusName")), envelope(entry, event_id, now, self.region))
        failed = sum(1 for r in results if "ErrorCode" in r)
        return {"FailedEntryCount": failed, "Entries": results}

    def route(self, bus: str, event: dict[str, Any]) -> list[Rule]:
        """Hand the event to every rule of `bus` that matches it; the rules that did."""
        if bus not in self.buses:
            console.line(
                "events", f"no event bus {bus!r} here: {event['detail-type']} dropped (AWS drops it too)"
            )
            return []
        matched = [r for r in self.rules if r.bus == bus and eventpattern.matches(r.pattern or {}, event)]
        for rule in matched:
            self._deliver(rule.function, target_input(rule, event), rule.arn)
        names = ", ".join(r.name for r in matched) or "no rule"
        console.line("events", f"{event['source']} / {event['detail-type']} on {bus}: {names}")
        return matched
