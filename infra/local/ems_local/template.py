"""Read template.yaml as CloudFormation would: intrinsic functions, conditions, SAM globals.

Used by the local cloud (to create the template's resources in moto and run its functions), by
the integration tests (tables built from the template, so keys cannot drift) and by bench/.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = ROOT / "template.yaml"
ACCOUNT_ID = "123456789012"

_SHORT_TAGS = ("Ref", "Condition")
_LIST_TAGS = ("GetAtt",)
_FN_TAGS = (
    "Sub", "Join", "If", "Equals", "Not", "And", "Or", "Select", "Split", "GetAZs", "ImportValue",
    "FindInMap", "Base64", "Cidr", "Transform", "ToJsonString", "Length",
)  # fmt: skip


class _Loader(yaml.SafeLoader):
    pass


def _construct(tag: str):  # type: ignore[no-untyped-def]
    key = tag if tag in _SHORT_TAGS else f"Fn::{tag}"

    def build(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {key: value}

    return build


for _tag in (*_SHORT_TAGS, *_LIST_TAGS, *_FN_TAGS):
    _Loader.add_constructor(f"!{_tag}", _construct(_tag))


def load(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open() as handle:
        return yaml.load(handle, Loader=_Loader)


@dataclass
class Stack:
    """A template with its parameters chosen and its resources' physical ids known."""

    template: dict[str, Any]
    parameters: dict[str, Any] = field(default_factory=dict)
    physical: dict[str, str] = field(default_factory=dict)
    region: str = "us-east-1"
    base_dir: Path = ROOT  # what CodeUri and ContentUri are relative to: the template's folder

    @classmethod
    def from_file(cls, path: Path = TEMPLATE, region: str = "us-east-1", **overrides: Any) -> Stack:
        template = load(path)
        params = {}
        for name, spec in template.get("Parameters", {}).items():
            default = spec.get("Default")
            if spec.get("Type") == "CommaDelimitedList":
                default = [p for p in str(default or "").split(",") if p]
            params[name] = overrides.get(name, default)
        return cls(template=template, parameters=params, region=region, base_dir=path.resolve().parent)

    # ------------------------------------------------------------ resources

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template["Resources"].items() if self.condition(v.get("Condition"))}

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v["Type"] == kind}

    def condition(self, name: str | None) -> bool:
        if name is None:
            return True
        return bool(self.resolve(self.template.get("Conditions", {})[name]))

    # ------------------------------------------------------------ intrinsic functions

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": self.region, "AWS::AccountId": ACCOUNT_ID, "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": f"ems-{self.parameters.get('Stage', 'dev')}",
            "AWS::NoValue": None,
        }  # fmt: skip
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.physical:
            return self.physical[name]
        function, _, attribute = name.partition(".")
        kind = self.template["Resources"].get(function, {}).get("Type")
        if attribute == "Alias" and kind == "AWS::Serverless::Function":
            # SAM's `Fn.Alias` (AutoPublishAlias, the SnapStart parameter): the local cloud publishes
            # no versions, so the alias is the function itself.
            return self.get_att(function, "Arn")
        resource = self.template["Resources"].get(name)
        if resource is None:
            raise KeyError(f"!Ref {name}: no such parameter or resource")
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::SQS::Queue":  # a queue's Ref is its URL
            return self.queue_url(self.queue_name(name))
        for key in (
            "TableName",
            "FunctionName",
            "Name",
            "BucketName",
            "QueueName",
            "DatabaseName",
            "AliasName",
        ):
            if key in props:
                return self.resolve(props[key])
        return name

    def get_att(self, name: str, attribute: str) -> Any:
        resource = self.template["Resources"][name]
        kind = resource["Type"]
        physical = self.queue_name(name) if kind == "AWS::SQS::Queue" else self.ref(name)
        arns = {
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{self.region}:{ACCOUNT_ID}:table/{physical}",
            "AWS::KMS::Key": f"arn:aws:kms:{self.region}:{ACCOUNT_ID}:key/{physical}",
            "AWS::Serverless::Function": f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{physical}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{self.region}:{ACCOUNT_ID}:{physical}",
            "AWS::S3::Bucket": f"arn:aws:s3:::{physical}",
            "AWS::Events::EventBus": f"arn:aws:events:{self.region}:{ACCOUNT_ID}:event-bus/{physical}",
        }
        if attribute == "Name" and kind == "AWS::Events::EventBus":
            return physical
        if kind == "AWS::SQS::Queue" and attribute == "QueueName":
            return physical
        if kind == "AWS::SQS::Queue" and attribute == "QueueUrl":
            return self.queue_url(physical)
        if attribute == "Arn" and kind in arns:
            return arns[kind]
        if attribute == "StreamArn":
            return f"{arns['AWS::DynamoDB::Table']}/stream/local"
        return f"{physical}.{attribute}"

    def queue_name(self, logical_id: str) -> str:
        props = self.template["Resources"][logical_id].get("Properties", {})
        return str(self.resolve(props["QueueName"])) if "QueueName" in props else logical_id

    def queue_url(self, name: str) -> str:
        """The URL moto gives a queue (its path is all moto reads, whatever endpoint a client uses)."""
        return f"https://sqs.{self.region}.amazonaws.com/{ACCOUNT_ID}/{name}"

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {k: self.resolve(v) for k, v in value.items()}
        ((key, arg),) = value.items()
        if key == "Ref":
            return self.ref(arg)
        if key == "Condition":
            return self.condition(arg)
        if key == "Fn::GetAtt":
            name, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
            return self.get_att(name, attribute)
        if key == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
            return self._sub(text, variables)
        if key == "Fn::Join":
            sep, items = arg
            return sep.join(str(i) for i in self._flatten(self.resolve(items)))
        if key == "Fn::If":
            name, yes, no = arg
            return self.resolve(yes if self.condition(name) else no)
        if key == "Fn::Equals":
            left, right = self.resolve(arg)
            return left == right
        if key == "Fn::Not":
            return not self.resolve(arg[0])
        if key == "Fn::And":
            return all(self.resolve(arg))
        if key == "Fn::Or":
            return any(self.resolve(arg))
        if key == "Fn::Select":
            index, items = self.resolve(arg)
            return self._flatten(items)[int(index)]
        if key == "Fn::Split":
            sep, text = self.resolve(arg)
            return str(text).split(sep)
        if key == "Fn::Base64":
            return base64.b64encode(str(self.resolve(arg)).encode()).decode()
        if key == "Fn::ToJsonString":
            return json.dumps(self.resolve(arg))
        return {k: self.resolve(v) for k, v in value.items()}

    @staticmethod
    def _flatten(items: Any) -> list[Any]:
        return list(items) if isinstance(items, list) else [items]

    def _sub(self, text: str, variables: dict[str, Any]) -> str:
        out, i = [], 0
        while i < len(text):
            start = text.find("${", i)
            if start < 0:
                out.append(text[i:])
                break
            out.append(text[i:start])
            end = text.index("}", start)
            name = text[start + 2 : end]
            if name.startswith("!"):
                out.append("${" + name[1:] + "}")
            elif name in variables:
                out.append(str(variables[name]))
            elif "." in name:
                out.append(str(self.get_att(*name.split(".", 1))))
            else:
                value = self.ref(name)
                out.append(",".join(value) if isinstance(value, list) else str(value))
            i = end + 1
        return "".join(out)

    # ------------------------------------------------------------ functions

    def functions(self) -> dict[str, dict[str, Any]]:
        """Every function with SAM's Globals merged in, properties resolved except Events."""
        globals_ = self.template.get("Globals", {}).get("Function", {})
        merged: dict[str, dict[str, Any]] = {}
        for name, resource in self.of_type("AWS::Serverless::Function").items():
            props = dict(resource.get("Properties", {}))
            out = {**{k: v for k, v in globals_.items() if k != "Environment"}, **props}
            # SAM adds a function's layers to the global ones rather than replacing them.
            out["Layers"] = [*globals_.get("Layers", []), *props.get("Layers", [])]
            variables = {
                **globals_.get("Environment", {}).get("Variables", {}),
                **props.get("Environment", {}).get("Variables", {}),
            }
            out["Environment"] = {"Variables": variables}
            events = out.pop("Events", {})
            out = self.resolve(out)
            out["Environment"]["Variables"] = {
                k: "" if v is None else str(v) for k, v in out["Environment"]["Variables"].items()
            }
            out["Events"] = events
            out.setdefault("FunctionName", name)
            merged[name] = out
        return merged

    def http_routes(self) -> list[dict[str, Any]]:
        """(method, path, function, authorizer) for every HttpApi event of every function."""
        routes = []
        for name, fn in self.functions().items():
            for event in fn["Events"].values():
                if event.get("Type") != "HttpApi":
                    continue
                props = event.get("Properties", {})
                auth = (props.get("Auth") or {}).get("Authorizer")
                routes.append(
                    {"method": props.get("Method", "ANY").upper(), "path": props.get("Path", "$default"),
                     "function": name, "authorizer": auth}
                )  # fmt: skip
        return routes

    # ------------------------------------------------------------ provisioning

    def create_resources(self, clients: Any) -> None:
        """Create the template's tables and keys through `clients(service)` (moto, in process or served)."""
        for name, resource in self.of_type("AWS::KMS::Key").items():
            if name in self.physical:  # restored from a snapshot (ems_local.state)
                continue
            props = resource.get("Properties", {})
            key = clients("kms").create_key(
                KeySpec=props.get("KeySpec", "SYMMETRIC_DEFAULT"),
                KeyUsage=props.get("KeyUsage", "ENCRYPT_DECRYPT"),
                Description=str(self.resolve(props.get("Description", name))),
            )
            self.physical[name] = key["KeyMetadata"]["KeyId"]
        for resource in self.of_type("AWS::KMS::Alias").values():
            props = self.resolve(resource["Properties"])
            clients("kms").create_alias(AliasName=props["AliasName"], TargetKeyId=props["TargetKeyId"])
        for resource in self.of_type("AWS::DynamoDB::Table").values():
            self.create_table(clients("dynamodb"), self.resolve(resource["Properties"]))
        for logical_id in self.of_type("AWS::Events::EventBus"):
            clients("events").create_event_bus(Name=str(self.ref(logical_id)))
        for logical_id in self.of_type("AWS::S3::Bucket"):
            clients("s3").create_bucket(Bucket=str(self.ref(logical_id)))
        # Queues without a redrive policy first: they are the dead-letter queues of the others.
        queues = self.of_type("AWS::SQS::Queue")
        for logical_id in sorted(queues, key=lambda q: "RedrivePolicy" in queues[q].get("Properties", {})):
            self.create_queue(
                clients("sqs"),
                self.queue_name(logical_id),
                self.resolve(queues[logical_id].get("Properties", {})),
            )

    @staticmethod
    def create_queue(sqs: Any, name: str, props: dict[str, Any]) -> None:
        attributes: dict[str, str] = {
            key: str(props[key])
            for key in (
                "VisibilityTimeout",
                "MessageRetentionPeriod",
                "DelaySeconds",
                "ReceiveMessageWaitTimeSeconds",
            )
            if key in props
        }
        if "RedrivePolicy" in props:
            policy = props["RedrivePolicy"]
            attributes["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": policy["deadLetterTargetArn"],
                    "maxReceiveCount": int(policy["maxReceiveCount"]),
                }
            )
        sqs.create_queue(QueueName=name, Attributes=attributes)

    @staticmethod
    def create_table(dynamodb: Any, props: dict[str, Any]) -> None:
        args: dict[str, Any] = {
            k: props[k]
            for k in ("TableName", "AttributeDefinitions", "KeySchema", "BillingMode", "StreamSpecification")
            if k in props
        }
        if props.get("GlobalSecondaryIndexes"):
            args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        if "StreamSpecification" in args:
            args["StreamSpecification"] = {"StreamEnabled": True, **args["StreamSpecification"]}
        dynamodb.create_table(**args)
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            dynamodb.update_time_to_live(
                TableName=props["TableName"],
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
