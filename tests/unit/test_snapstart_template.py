"""The SnapStart parameter: off renders today's stack (no versions, no aliases), on publishes a
version and an alias `live` of every function and points every trigger at the alias. Rendered as
CloudFormation would: AWS::LanguageExtensions (SAM CLI's implementation), then SAM's transform."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from samcli.lib.cfn_language_extensions.api import process_template
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from ems_local.gateway import HttpGateway
from ems_local.template import TEMPLATE, Stack
from ems_local.websocket_api import WebSocketSpec

FUNCTIONS = 16  # every AWS::Serverless::Function of template.yaml


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


@pytest.fixture(scope="module")
def source() -> dict[str, Any]:
    return yaml_parse(TEMPLATE.read_text())  # type: ignore[no-any-return]


def render(source: dict[str, Any], snap_start: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    packaged = copy.deepcopy(source)
    for name, resource in packaged["Resources"].items():  # as `sam package` leaves them
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = f"s3://bucket/{name}.zip"
    parameters = {"SnapStart": snap_start} if "SnapStart" in packaged["Parameters"] else {}
    expanded = process_template(packaged, parameters)
    expanded["Transform"] = "AWS::Serverless-2016-10-31"  # LanguageExtensions is done
    return transform(expanded, parameters, _NoManagedPolicies())  # type: ignore[no-any-return]


def of_type(rendered: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in rendered["Resources"].items() if v["Type"] == kind}


def test_the_template_has_the_functions_counted_here(source: dict[str, Any]) -> None:
    kinds = [r["Type"] for r in source["Resources"].values()]
    assert kinds.count("AWS::Serverless::Function") == FUNCTIONS


def test_off_publishes_no_version_and_no_alias(
    source: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = render(source, "off", monkeypatch)
    functions = of_type(rendered, "AWS::Lambda::Function")
    assert len(functions) == FUNCTIONS
    assert of_type(rendered, "AWS::Lambda::Version") == {}
    assert of_type(rendered, "AWS::Lambda::Alias") == {}
    assert [name for name, fn in functions.items() if "SnapStart" in fn["Properties"]] == []


def _without_snap_start(value: Any) -> Any:
    """The template as it was before the parameter: each `!If [UseSnapStart, a, b]` is b, and the
    functions' AutoPublishAlias and SnapStart (each such an !If, with no value when off) are gone."""
    if isinstance(value, list):
        return [_without_snap_start(v) for v in value]
    if not isinstance(value, dict):
        return value
    if _on_snap_start(value):
        return _without_snap_start(value["Fn::If"][2])
    dropped = ("AutoPublishAlias", "SnapStart")
    return {k: _without_snap_start(v) for k, v in value.items() if not (k in dropped and _on_snap_start(v))}


def _on_snap_start(value: Any) -> bool:
    return isinstance(value, dict) and list(value) == ["Fn::If"] and value["Fn::If"][0] == "UseSnapStart"


def test_off_renders_the_stack_the_template_made_before_the_parameter(
    source: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _without_snap_start(source)
    del before["Parameters"]["SnapStart"], before["Conditions"]["UseSnapStart"]
    assert render(source, "off", monkeypatch)["Resources"] == render(before, "off", monkeypatch)["Resources"]


def test_on_snapshots_a_version_of_every_function_behind_an_alias(
    source: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = render(source, "on", monkeypatch)
    functions = of_type(rendered, "AWS::Lambda::Function")
    assert len(functions) == FUNCTIONS
    assert {fn["Properties"]["SnapStart"]["ApplyOn"] for fn in functions.values()} == {"PublishedVersions"}
    aliases = of_type(rendered, "AWS::Lambda::Alias")
    assert sorted(aliases) == sorted(f"{name}Aliaslive" for name in functions)
    assert {a["Properties"]["Name"] for a in aliases.values()} == {"live"}
    assert len(of_type(rendered, "AWS::Lambda::Version")) == FUNCTIONS


def test_on_every_trigger_invokes_the_alias(source: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    rendered = render(source, "on", monkeypatch)
    aliases = set(of_type(rendered, "AWS::Lambda::Alias"))
    # API Gateway's permissions (routes, the authorizer, the WebSocket API), the queue's mapping,
    # EventBridge rules and the schedule: each names an alias, never the unpublished function.
    permissions = of_type(rendered, "AWS::Lambda::Permission")
    assert permissions
    for name, permission in permissions.items():
        assert permission["Properties"]["FunctionName"] in ({"Ref": a} for a in aliases), name
    for name, mapping in of_type(rendered, "AWS::Lambda::EventSourceMapping").items():
        assert mapping["Properties"]["FunctionName"] in ({"Ref": a} for a in aliases), name
    for name, rule in of_type(rendered, "AWS::Events::Rule").items():
        for target in rule["Properties"]["Targets"]:
            assert target["Arn"] in ({"Ref": a} for a in aliases), name
    for name, schedule in of_type(rendered, "AWS::Scheduler::Schedule").items():
        assert schedule["Properties"]["Target"]["Arn"] in ({"Ref": a} for a in aliases), name
    # SAM CLI's LanguageExtensions leaves a !Sub it cannot resolve as its text.
    integration = rendered["Resources"]["WebSocketIntegration"]["Properties"]["IntegrationUri"]
    assert str(integration.get("Fn::Sub") if isinstance(integration, dict) else integration).endswith(
        "/functions/${RealtimeFunction.Arn}:live/invocations"
    )
    # The HTTP API's authorizer is in its OpenAPI body.
    authorizer = rendered["Resources"]["HttpApi"]["Properties"]["Body"]["components"]["securitySchemes"]
    assert "AuthorizerFunctionAliaslive" in json.dumps(authorizer)
    assert "AuthorizerFunction.Arn" not in json.dumps(authorizer)


@pytest.mark.parametrize("snap_start", ["off", "on"])
def test_the_local_cloud_reads_the_template_either_way(snap_start: str) -> None:
    stack = Stack.from_file(SnapStart=snap_start)
    gateway = HttpGateway(stack, lambda function, event: None)
    assert {a.function for a in gateway.authorizers.values()} == {"AuthorizerFunction"}
    spec = WebSocketSpec.from_stack(stack)
    assert spec is not None
    assert {route.function for route in spec.routes.values()} == {"RealtimeFunction"}
    assert len(stack.functions()) == FUNCTIONS
