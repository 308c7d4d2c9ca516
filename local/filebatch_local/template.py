"""Read template.yaml the way SAM and CloudFormation would, with local physical names.

Everything the local stack runs (functions, routes, queues, event sources, the state machine) is
discovered here from the template itself: there is no second list of resources anywhere.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account: ARNs built here match the ones moto builds.
STACK_NAME = "filebatch-local"
PARTITION = "aws"
URL_SUFFIX = "amazonaws.com"
LOCAL_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/filebatch-local"

# Globals sections SAM merges into resources of these types.
_GLOBALS_SECTIONS = {
    "AWS::Serverless::Function": "Function",
    "AWS::Serverless::Api": "Api",
    "AWS::Serverless::HttpApi": "HttpApi",
    "AWS::Serverless::SimpleTable": "SimpleTable",
    "AWS::Serverless::StateMachine": "StateMachine",
    "AWS::Serverless::LayerVersion": "LayerVersion",
}

# The property that names a resource when the template chooses the name itself.
_NAME_PROPERTIES = {
    "AWS::DynamoDB::Table": "TableName",
    "AWS::Serverless::SimpleTable": "TableName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Serverless::StateMachine": "Name",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::Events::Rule": "Name",
    "AWS::Events::EventBus": "Name",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::Serverless::LayerVersion": "LayerName",
    "AWS::IAM::Role": "RoleName",
    "AWS::ApiGateway::UsagePlan": "UsagePlanName",
}

_FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
_STATE_MACHINE_TYPES = ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")
_API_TYPES = ("AWS::Serverless::Api", "AWS::ApiGateway::RestApi")
IMPLICIT_API = "ServerlessRestApi"
USAGE_PLAN_TYPE = "AWS::ApiGateway::UsagePlan"


class TemplateError(Exception):
    """The template cannot be evaluated locally (bad reference, unsupported intrinsic, ...)."""


class _NoValue:
    """AWS::NoValue: the property or list item it stands for is removed."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


# ------------------------------------------------------------------------------------- YAML
class CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns CloudFormation short tags (!Ref, !Sub, ...) into their long form."""


def _long_form(name: str) -> Callable[[CfnLoader, yaml.Node], dict[str, Any]]:
    def construct(loader: CfnLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        if name == "Fn::GetAtt" and isinstance(value, str):
            # "!GetAtt A.B.C" means resource A, attribute "B.C".
            logical, _, attribute = value.partition(".")
            value = [logical, attribute]
        return {name: value}

    return construct


for _tag in (
    "Base64",
    "Cidr",
    "FindInMap",
    "GetAtt",
    "GetAZs",
    "ImportValue",
    "Join",
    "Select",
    "Split",
    "Sub",
    "Transform",
    "And",
    "Equals",
    "If",
    "Not",
    "Or",
    "Length",
    "ToJsonString",
):
    CfnLoader.add_constructor(f"!{_tag}", _long_form(f"Fn::{_tag}"))
CfnLoader.add_constructor("!Ref", _long_form("Ref"))
CfnLoader.add_constructor("!Condition", _long_form("Condition"))


def walk_states(
    states: dict[str, Any], scope: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], str, dict[str, Any]]]:
    """Every state of an ASL `States` object at any depth (a Map's ItemProcessor or Iterator, a
    Parallel's branches) as (the names of the states it is inside, its name, the state), parents first."""
    for name, state in states.items():
        if not isinstance(state, dict):
            continue
        yield scope, name, state
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if isinstance(processor, dict):
            yield from walk_states(processor.get("States") or {}, (*scope, name))
        for branch in state.get("Branches") or []:
            yield from walk_states(branch.get("States") or {}, (*scope, name))


def load_template(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as stream:
        document = yaml.load(stream, Loader=CfnLoader)  # noqa: S506 - CfnLoader is a SafeLoader subclass
    if not isinstance(document, dict) or "Resources" not in document:
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources)")
    return document


def is_intrinsic(value: Any) -> bool:
    if not isinstance(value, dict) or len(value) != 1:
        return False
    key = str(next(iter(value)))
    return key == "Ref" or key.startswith("Fn::")


# ------------------------------------------------------------------------------------- Globals
def merge_globals(global_value: Any, local_value: Any) -> Any:
    """SAM's Globals rule: maps merge (resource wins), lists concatenate (globals first), anything
    else — including intrinsics on either side — is replaced by the resource's value."""
    if is_intrinsic(global_value) or is_intrinsic(local_value):
        return local_value
    if isinstance(global_value, dict) and isinstance(local_value, dict):
        merged = dict(global_value)
        for key, value in local_value.items():
            merged[key] = merge_globals(global_value[key], value) if key in global_value else value
        return merged
    if isinstance(global_value, list) and isinstance(local_value, list):
        return [*global_value, *local_value]
    return local_value


# ------------------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler_file: Path
    handler_attr: str
    runtime: str
    memory_mb: int
    timeout_s: int
    environment: dict[str, str]  # only what the template gives (Globals + function), resolved
    layer_dirs: tuple[Path, ...]
    log_group: str
    events: dict[str, dict[str, Any]]  # resolved Events, by event name
    # ReservedConcurrentExecutions: the most invocations that may run at once (Lambda throttles the
    # rest); None when the template reserves nothing (omitted, or removed by AWS::NoValue).
    reserved_concurrency: int | None = None


@dataclass(frozen=True)
class AuthorizerSpec:
    name: str
    function_logical_id: str
    payload_type: str  # TOKEN or REQUEST
    header: str
    validation_expression: str | None
    ttl_seconds: int


@dataclass(frozen=True)
class ApiSpec:
    logical_id: str
    api_id: str
    stage: str
    authorizers: dict[str, AuthorizerSpec]
    default_authorizer: str | None
    gateway_responses: dict[str, dict[str, Any]]
    binary_media_types: tuple[str, ...]
    # Request models (JSON Schema draft 4) by name, for routes that validate their body.
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Where a method that requires an API key reads it: HEADER (X-API-Key) or AUTHORIZER (the
    # Lambda authorizer's usageIdentifierKey).
    api_key_source: str = "HEADER"
    # Auth.ApiKeyRequired: the default of every route (an event's own Auth.ApiKeyRequired wins).
    api_key_required: bool = False


@dataclass(frozen=True)
class RouteSpec:
    api_logical_id: str
    path: str
    method: str  # upper case, ANY for any
    function_logical_id: str
    event_name: str
    authorizer: str | None  # None: no authorizer
    # The Api model the body must match (RequestModel with ValidateBody), if any.
    request_model: str | None = None
    # The method requires an API key in a usage plan of the stage (metered by that plan).
    api_key_required: bool = False


@dataclass(frozen=True)
class SqsSourceSpec:
    function_logical_id: str
    event_name: str
    queue_logical_id: str
    queue_arn: str
    batch_size: int
    batching_window_s: float
    report_batch_item_failures: bool
    maximum_concurrency: int | None
    enabled: bool


@dataclass(frozen=True)
class ScheduleSpec:
    """A function's `Type: Schedule` event: the EventBridge rule SAM makes, invoking it on a rate."""

    function_logical_id: str
    event_name: str
    period_s: float
    rule_name: str
    enabled: bool


_RATE = re.compile(r"^rate\((?P<value>[1-9][0-9]*) (?P<unit>minute|minutes|hour|hours|day|days)\)$")
_RATE_UNIT_S = {"minute": 60, "hour": 3600, "day": 86400}


def rate_period_s(expression: str) -> float:
    """EventBridge's `rate(value unit)` in seconds (1 takes the singular unit, others the plural)."""
    match = _RATE.match(expression.strip())
    if match is None:
        raise TemplateError(f"schedule {expression!r}: only rate(...) expressions are emulated locally")
    value, unit = int(match["value"]), match["unit"]
    if (value == 1) != (not unit.endswith("s")):
        raise TemplateError(
            f"schedule {expression!r}: EventBridge wants 'rate(1 {unit.rstrip('s')})' or a plural"
        )
    return float(value * _RATE_UNIT_S[unit.rstrip("s")])


@dataclass(frozen=True)
class StateMachineSpec:
    logical_id: str
    name: str
    arn: str
    type: str
    definition: str  # JSON text, substitutions applied
    definition_file: Path | None
    substitutions: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------------- template
class Template:
    """A template evaluated with local names: parameters, conditions, Globals and intrinsics."""

    def __init__(
        self,
        path: Path,
        parameter_overrides: Mapping[str, str] | None = None,
        *,
        stack_name: str = STACK_NAME,
        region: str = REGION,
        account_id: str = ACCOUNT_ID,
        sqs_endpoint: str | None = None,
    ) -> None:
        self.path = path.resolve()
        self.root = self.path.parent
        self.stack_name = stack_name
        self.region = region
        self.account_id = account_id
        # Queue URLs are what Ref gives for a queue; moto builds them from the endpoint it is
        # reached on, so the local stack passes its endpoint. Without one, AWS's form is used.
        self.sqs_endpoint = (sqs_endpoint or f"https://sqs.{region}.{URL_SUFFIX}").rstrip("/")
        self.raw = load_template(self.path)
        self.parameters = self._evaluate_parameters(dict(parameter_overrides or {}))
        self._conditions: dict[str, bool] = {}
        self._conditions_in_progress: set[str] = set()
        self.resources = self._apply_globals_and_conditions()

    # -- parameters and conditions ---------------------------------------------------------
    def _evaluate_parameters(self, overrides: dict[str, str]) -> dict[str, Any]:
        declared: dict[str, Any] = self.raw.get("Parameters") or {}
        unknown = sorted(set(overrides) - set(declared))
        if unknown:
            raise TemplateError(f"parameter overrides not declared in the template: {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, spec in declared.items():
            if name in overrides:
                value = str(overrides[name])
            elif "Default" in spec:
                value = spec["Default"]
                value = ",".join(map(str, value)) if isinstance(value, list) else str(value)
            else:
                raise TemplateError(f"parameter {name} has no Default and no override")
            self._check_parameter(name, spec, value)
            kind = str(spec.get("Type", "String"))
            values[name] = (
                value.split(",") if kind.startswith("List<") or kind == "CommaDelimitedList" else value
            )
        return values

    @staticmethod
    def _check_parameter(name: str, spec: Mapping[str, Any], value: str) -> None:
        # The same checks CloudFormation makes, so an override that deploy would refuse fails here.
        allowed = spec.get("AllowedValues")
        if allowed is not None and value not in [str(v) for v in allowed]:
            raise TemplateError(f"parameter {name}={value!r} is not one of {allowed}")
        pattern = spec.get("AllowedPattern")
        if pattern is not None and not re.fullmatch(pattern, value):
            raise TemplateError(f"parameter {name}={value!r} does not match {pattern}")
        if spec.get("Type") == "Number":
            try:
                number = float(value)
            except ValueError:
                raise TemplateError(f"parameter {name}={value!r} is not a number") from None
            if "MinValue" in spec and number < float(spec["MinValue"]):
                raise TemplateError(f"parameter {name}={value} is below MinValue {spec['MinValue']}")
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                raise TemplateError(f"parameter {name}={value} is above MaxValue {spec['MaxValue']}")
        if "MinLength" in spec and len(value) < int(spec["MinLength"]):
            raise TemplateError(f"parameter {name} is shorter than MinLength {spec['MinLength']}")
        if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
            raise TemplateError(f"parameter {name} is longer than MaxLength {spec['MaxLength']}")

    def condition(self, name: str) -> bool:
        if name in self._conditions:
            return self._conditions[name]
        declared = self.raw.get("Conditions") or {}
        if name not in declared:
            raise TemplateError(f"unknown condition {name!r}")
        if name in self._conditions_in_progress:
            raise TemplateError(f"condition {name!r} refers to itself")
        self._conditions_in_progress.add(name)
        try:
            result = self.resolve(declared[name], where=f"Conditions.{name}")
        finally:
            self._conditions_in_progress.discard(name)
        if not isinstance(result, bool):
            raise TemplateError(f"condition {name!r} does not evaluate to true/false: {result!r}")
        self._conditions[name] = result
        return result

    def _apply_globals_and_conditions(self) -> dict[str, dict[str, Any]]:
        globals_ = self.raw.get("Globals") or {}
        resources: dict[str, dict[str, Any]] = {}
        for logical_id, resource in (self.raw.get("Resources") or {}).items():
            if "Condition" in resource and not self.condition(resource["Condition"]):
                continue
            resource = dict(resource)
            section = _GLOBALS_SECTIONS.get(resource.get("Type", ""))
            if section and section in globals_:
                resource["Properties"] = merge_globals(globals_[section], resource.get("Properties") or {})
            resources[logical_id] = resource
        return resources

    # -- names -----------------------------------------------------------------------------
    def resource(self, logical_id: str) -> dict[str, Any]:
        try:
            return self.resources[logical_id]
        except KeyError:
            raise TemplateError(f"no resource {logical_id!r} in the template") from None

    def type_of(self, logical_id: str) -> str:
        return str(self.resource(logical_id).get("Type", ""))

    def logical_ids(self, *types: str) -> list[str]:
        return [lid for lid, res in self.resources.items() if res.get("Type") in types]

    def physical_name(self, logical_id: str) -> str:
        """Deterministic local name: the template's own name property if it sets one, else
        `<stack>-<LogicalId>` (lower case for buckets, `.fifo` for FIFO queues)."""
        kind = self.type_of(logical_id)
        properties = self.resource(logical_id).get("Properties") or {}
        name_property = _NAME_PROPERTIES.get(kind)
        if name_property and name_property in properties:
            return str(self.resolve(properties[name_property], where=f"{logical_id}.{name_property}"))
        if kind in _FUNCTION_TYPES or kind in _STATE_MACHINE_TYPES:
            return f"{self.stack_name}-{logical_id}"
        if kind == "AWS::S3::Bucket":
            return f"{self.stack_name}-{logical_id}".lower()
        if kind == "AWS::SQS::Queue" and self.resolve(properties.get("FifoQueue", False)) in (True, "true"):
            return f"{self.stack_name}-{logical_id}.fifo"
        if kind in _API_TYPES:
            return self.api_id(logical_id)
        return f"{self.stack_name}-{logical_id}"

    def api_id(self, logical_id: str) -> str:
        # API ids are 10 random lowercase characters in AWS; a hash keeps them stable locally.
        return hashlib.sha256(f"{self.stack_name}/{logical_id}".encode()).hexdigest()[:10]

    def usage_plan_id(self, logical_id: str) -> str:
        # What Ref gives for a usage plan: its id, random in AWS, stable locally (the provisioner
        # has moto create the usage plan under this id).
        return hashlib.sha256(f"{self.stack_name}/{logical_id}/usage-plan".encode()).hexdigest()[:10]

    def api_stage(self, logical_id: str) -> str:
        """The stage name of an AWS::Serverless::Api: what SAM's `Ref <Api>.Stage` gives."""
        if self.type_of(logical_id) != "AWS::Serverless::Api":
            raise TemplateError(f"{logical_id}.Stage: {logical_id} is not an AWS::Serverless::Api")
        stage = (self.resource(logical_id).get("Properties") or {}).get("StageName")
        if stage is None:
            raise TemplateError(f"{logical_id}: no StageName")
        return str(self.resolve(stage, where=f"{logical_id}.StageName"))

    def arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        return (
            f"arn:{PARTITION}:{service}:{self.region if region else ''}:"
            f"{self.account_id if account else ''}:{resource}"
        )

    def queue_url(self, name: str) -> str:
        return f"{self.sqs_endpoint}/{self.account_id}/{name}"

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": self.arn("cloudformation", f"stack/{self.stack_name}/local"),
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": URL_SUFFIX,
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if "." in name and name not in self.resources:
            return self._sam_referable(name)
        if name not in self.resources:
            if name in (self.raw.get("Resources") or {}):
                raise TemplateError(f"Ref to {name!r}, a resource whose Condition is false")
            raise TemplateError(f"Ref to {name!r}: no such parameter, resource or pseudo parameter")
        kind = self.type_of(name)
        physical = self.physical_name(name)
        if kind == "AWS::SQS::Queue":
            return self.queue_url(physical)
        if kind in _STATE_MACHINE_TYPES:
            return self.arn("states", f"stateMachine:{physical}")
        if kind == "AWS::Serverless::LayerVersion" or kind == "AWS::Lambda::LayerVersion":
            return self.arn("lambda", f"layer:{physical}:1")
        if kind == "AWS::SNS::Topic":
            return self.arn("sns", physical)
        if kind == USAGE_PLAN_TYPE:
            return self.usage_plan_id(name)
        return physical

    def _sam_referable(self, name: str) -> Any:
        """SAM's referable properties of its generated resources: `<Api>.Stage` (the stage's Ref,
        its name) and `<Api>.Deployment` (the deployment's id)."""
        logical_id, _, attribute = name.partition(".")
        if logical_id in self.resources and self.type_of(logical_id) == "AWS::Serverless::Api":
            if attribute == "Stage":
                return self.api_stage(logical_id)
            if attribute == "Deployment":
                return hashlib.sha256(f"{self.stack_name}/{logical_id}/deployment".encode()).hexdigest()[:10]
        raise TemplateError(
            f"Ref to {name!r}: not a resource, nor a SAM referable property supported locally"
        )

    def get_att(self, logical_id: str, attribute: str) -> Any:
        if logical_id not in self.resources:
            # SAM creates `<Function>Role` / `<StateMachine>Role` when none is given.
            base = logical_id.removesuffix("Role")
            if attribute == "Arn" and base != logical_id and base in self.resources:
                return LOCAL_ROLE_ARN
            raise TemplateError(f"GetAtt {logical_id}.{attribute}: no such resource")
        kind = self.type_of(logical_id)
        name = self.physical_name(logical_id)
        attributes: dict[str, Callable[[], Any]] = {}
        if kind in _FUNCTION_TYPES:
            attributes["Arn"] = lambda: self.arn("lambda", f"function:{name}")
        elif kind in ("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable"):
            attributes["Arn"] = lambda: self.arn("dynamodb", f"table/{name}")
            attributes["StreamArn"] = lambda: self.arn(
                "dynamodb", f"table/{name}/stream/1970-01-01T00:00:00.000"
            )
        elif kind == "AWS::S3::Bucket":
            attributes["Arn"] = lambda: self.arn("s3", name, region=False, account=False)
            attributes["DomainName"] = lambda: f"{name}.s3.{URL_SUFFIX}"
            attributes["RegionalDomainName"] = lambda: f"{name}.s3.{self.region}.{URL_SUFFIX}"
            attributes["WebsiteURL"] = lambda: f"http://{name}.s3-website-{self.region}.{URL_SUFFIX}"
        elif kind == "AWS::SQS::Queue":
            attributes["Arn"] = lambda: self.arn("sqs", name)
            attributes["QueueName"] = lambda: name
            attributes["QueueUrl"] = lambda: self.queue_url(name)
        elif kind in _STATE_MACHINE_TYPES:
            attributes["Arn"] = lambda: self.arn("states", f"stateMachine:{name}")
            attributes["Name"] = lambda: name
        elif kind == "AWS::Events::Rule":
            attributes["Arn"] = lambda: self.arn("events", f"rule/{self._rule_path(logical_id, name)}")
        elif kind == "AWS::Events::EventBus":
            attributes["Arn"] = lambda: self.arn("events", f"event-bus/{name}")
            attributes["Name"] = lambda: name
        elif kind == "AWS::Logs::LogGroup":
            attributes["Arn"] = lambda: self.arn("logs", f"log-group:{name}:*")
        elif kind == "AWS::SNS::Topic":
            attributes["TopicArn"] = lambda: self.arn("sns", name)
            attributes["TopicName"] = lambda: name
        elif kind == "AWS::CloudWatch::Alarm":
            attributes["Arn"] = lambda: self.arn("cloudwatch", f"alarm:{name}")
        elif kind == "AWS::IAM::Role":
            attributes["Arn"] = lambda: f"arn:{PARTITION}:iam::{self.account_id}:role/{name}"
        elif kind in _API_TYPES:
            attributes["RootResourceId"] = lambda: hashlib.sha256(name.encode()).hexdigest()[:10]
        elif kind == USAGE_PLAN_TYPE:
            attributes["Id"] = lambda: self.usage_plan_id(logical_id)
        if attribute not in attributes:
            raise TemplateError(f"GetAtt {logical_id}.{attribute} ({kind}) is not supported locally")
        return attributes[attribute]()

    def _rule_path(self, logical_id: str, name: str) -> str:
        """A rule's ARN names its bus unless it is on the default bus: rule/<bus>/<name>."""
        bus = (self.resource(logical_id).get("Properties") or {}).get("EventBusName")
        bus_name = ""
        if bus:
            bus_name = str(self.resolve(bus, where=f"{logical_id}.EventBusName")).rsplit("/", 1)[-1]
        return f"{bus_name}/{name}" if bus_name and bus_name != "default" else name

    # -- intrinsics ------------------------------------------------------------------------
    def resolve(self, value: Any, *, where: str = "template") -> Any:
        """Evaluate every intrinsic in `value`. Unknown intrinsics raise TemplateError."""
        if isinstance(value, dict):
            if len(value) == 1:
                (key,) = value
                if key == "Ref" or key.startswith("Fn::"):
                    return self._intrinsic(key, value[key], where)
                if key == "Condition" and isinstance(value[key], str) and where.startswith("Conditions."):
                    return self.condition(value[key])
            resolved_map = {k: self.resolve(v, where=f"{where}.{k}") for k, v in value.items()}
            return {k: v for k, v in resolved_map.items() if v is not NO_VALUE}
        if isinstance(value, list):
            resolved_list = [self.resolve(v, where=f"{where}[{i}]") for i, v in enumerate(value)]
            return [v for v in resolved_list if v is not NO_VALUE]
        return value

    def _intrinsic(self, key: str, argument: Any, where: str) -> Any:
        handler = {
            "Ref": self._fn_ref,
            "Fn::GetAtt": self._fn_get_att,
            "Fn::Sub": self._fn_sub,
            "Fn::If": self._fn_if,
            "Fn::Equals": self._fn_equals,
            "Fn::Not": self._fn_not,
            "Fn::And": self._fn_and,
            "Fn::Or": self._fn_or,
            "Fn::Join": self._fn_join,
            "Fn::Select": self._fn_select,
            "Fn::Split": self._fn_split,
            "Fn::FindInMap": self._fn_find_in_map,
            "Fn::Base64": self._fn_base64,
            "Fn::GetAZs": self._fn_get_azs,
            "Fn::ToJsonString": self._fn_to_json_string,
        }.get(key)
        if handler is None:
            raise TemplateError(f"{where}: intrinsic {key} cannot be evaluated locally")
        try:
            return handler(argument, where)
        except TemplateError:
            raise
        except (TypeError, ValueError, IndexError, KeyError) as error:
            raise TemplateError(f"{where}: malformed {key}: {argument!r} ({error})") from error

    def _fn_ref(self, argument: Any, where: str) -> Any:
        if not isinstance(argument, str):
            raise TemplateError(f"{where}: Ref needs a name, got {argument!r}")
        return self.ref(argument)

    def _fn_get_att(self, argument: Any, where: str) -> Any:
        if isinstance(argument, str):
            argument = argument.split(".", 1)
        logical_id, attribute = argument
        return self.get_att(str(logical_id), str(self.resolve(attribute, where=where)))

    _SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")

    def _fn_sub(self, argument: Any, where: str) -> str:
        if isinstance(argument, list):
            text, variables = argument
            variables = {k: self.resolve(v, where=f"{where}.{k}") for k, v in variables.items()}
        else:
            text, variables = argument, {}
        if not isinstance(text, str):
            raise TemplateError(f"{where}: Fn::Sub needs a string, got {text!r}")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name.startswith("!"):
                return "${" + name[1:] + "}"  # ${!Literal} stays as ${Literal}
            if name in variables:
                value = variables[name]
            elif name.endswith((".Stage", ".Deployment")) and name.split(".")[0] in self.resources:
                value = self._sam_referable(name)  # SAM resolves its referable properties in Sub too
            elif "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                value = self.get_att(logical_id, attribute)
            else:
                value = self.ref(name)
            if isinstance(value, list | dict):
                raise TemplateError(f"{where}: ${{{name}}} is not a string ({value!r})")
            return _scalar_text(value)

        return self._SUB_VARIABLE.sub(substitute, text)

    def _fn_if(self, argument: Any, where: str) -> Any:
        name, when_true, when_false = argument
        chosen = when_true if self.condition(name) else when_false
        return self.resolve(chosen, where=where)

    def _fn_equals(self, argument: Any, where: str) -> bool:
        left, right = (self.resolve(v, where=where) for v in argument)
        return bool(_scalar_text(left) == _scalar_text(right))

    def _fn_not(self, argument: Any, where: str) -> bool:
        (value,) = argument
        return not self._as_bool(value, where)

    def _fn_and(self, argument: Any, where: str) -> bool:
        return all(self._as_bool(v, where) for v in argument)

    def _fn_or(self, argument: Any, where: str) -> bool:
        return any(self._as_bool(v, where) for v in argument)

    def _as_bool(self, value: Any, where: str) -> bool:
        if isinstance(value, dict) and set(value) == {"Condition"}:
            return self.condition(value["Condition"])
        result = self.resolve(value, where=where)
        if not isinstance(result, bool):
            raise TemplateError(f"{where}: expected a condition, got {result!r}")
        return result

    def _fn_join(self, argument: Any, where: str) -> str:
        delimiter, items = argument
        items = self.resolve(items, where=where)
        return str(delimiter).join(_scalar_text(i) for i in items)

    def _fn_select(self, argument: Any, where: str) -> Any:
        index, items = argument
        return self.resolve(items, where=where)[int(self.resolve(index, where=where))]

    def _fn_split(self, argument: Any, where: str) -> list[str]:
        delimiter, text = argument
        return str(self.resolve(text, where=where)).split(str(delimiter))

    def _fn_find_in_map(self, argument: Any, where: str) -> Any:
        name, top, second = (self.resolve(v, where=where) for v in argument[:3])
        try:
            return self.resolve(self.raw["Mappings"][name][str(top)][str(second)], where=where)
        except KeyError:
            raise TemplateError(f"{where}: FindInMap {name}/{top}/{second} not found") from None

    def _fn_base64(self, argument: Any, where: str) -> str:
        return base64.b64encode(str(self.resolve(argument, where=where)).encode()).decode()

    def _fn_get_azs(self, argument: Any, where: str) -> list[str]:
        region = self.resolve(argument, where=where) or self.region
        return [f"{region}a", f"{region}b", f"{region}c"]

    def _fn_to_json_string(self, argument: Any, where: str) -> str:
        return json.dumps(self.resolve(argument, where=where), separators=(",", ":"))

    # -- resolved views --------------------------------------------------------------------
    def properties(self, logical_id: str) -> dict[str, Any]:
        resolved = self.resolve(self.resource(logical_id).get("Properties") or {}, where=logical_id)
        assert isinstance(resolved, dict)
        return resolved

    def physical_ids(self) -> dict[str, Any]:
        """What `describe-stack-resources` would list: the Ref value of each resource."""
        return {logical_id: self.ref(logical_id) for logical_id in self.resources}

    def outputs(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for name, output in (self.raw.get("Outputs") or {}).items():
            if "Condition" in output and not self.condition(output["Condition"]):
                continue
            result[name] = self.resolve(output["Value"], where=f"Outputs.{name}")
        return result

    def _logical_id_for(self, physical: Any, *types: str) -> str | None:
        """The resource whose Ref or Arn is `physical` (e.g. a function ARN given to an authorizer)."""
        for logical_id in self.logical_ids(*types):
            candidates = [self.ref(logical_id)]
            with contextlib.suppress(TemplateError):  # types without an Arn attribute
                candidates.append(self.get_att(logical_id, "Arn"))
            if physical in candidates:
                return logical_id
        return None

    def functions(self) -> dict[str, FunctionSpec]:
        return {logical_id: self.function(logical_id) for logical_id in self.logical_ids(*_FUNCTION_TYPES)}

    def function(self, logical_id: str) -> FunctionSpec:
        properties = self.properties(logical_id)
        if self.type_of(logical_id) != "AWS::Serverless::Function":
            raise TemplateError(f"{logical_id}: only AWS::Serverless::Function is run locally")
        if "InlineCode" in properties or not isinstance(properties.get("CodeUri"), str):
            raise TemplateError(f"{logical_id}: a local CodeUri directory is needed to run it")
        runtime = str(properties.get("Runtime", ""))
        if not runtime.startswith("python"):
            raise TemplateError(f"{logical_id}: runtime {runtime!r} cannot run locally (python only)")
        code_dir = (self.root / properties["CodeUri"]).resolve()
        handler = str(properties.get("Handler", ""))
        module, _, attr = handler.rpartition(".")
        if not module or not attr:
            raise TemplateError(f"{logical_id}: Handler {handler!r} is not <module>.<function>")
        layer_dirs = []
        for layer in properties.get("Layers") or []:
            layer_id = self._logical_id_for(layer, "AWS::Serverless::LayerVersion")
            if layer_id is None:
                raise TemplateError(f"{logical_id}: layer {layer!r} is not a layer of this template")
            content = self.properties(layer_id).get("ContentUri")
            if not isinstance(content, str):
                raise TemplateError(f"{layer_id}: a local ContentUri directory is needed")
            layer_dirs.append((self.root / content).resolve())
        environment = {
            str(k): _scalar_text(v)
            for k, v in ((properties.get("Environment") or {}).get("Variables") or {}).items()
        }
        name = self.physical_name(logical_id)
        log_group = (properties.get("LoggingConfig") or {}).get("LogGroup") or f"/aws/lambda/{name}"
        reserved = properties.get("ReservedConcurrentExecutions")
        if reserved is not None and (not str(reserved).isdigit() or isinstance(reserved, bool)):
            raise TemplateError(f"{logical_id}: ReservedConcurrentExecutions {reserved!r} is not a count")
        return FunctionSpec(
            logical_id=logical_id,
            name=name,
            arn=self.get_att(logical_id, "Arn"),
            code_dir=code_dir,
            handler_file=code_dir / (module.replace(".", "/") + ".py"),
            handler_attr=attr,
            runtime=runtime,
            memory_mb=int(properties.get("MemorySize", 128)),
            timeout_s=int(properties.get("Timeout", 3)),
            environment=environment,
            layer_dirs=tuple(layer_dirs),
            log_group=str(log_group),
            events=dict(properties.get("Events") or {}),
            reserved_concurrency=None if reserved is None else int(reserved),
        )

    def apis(self) -> dict[str, ApiSpec]:
        apis = {logical_id: self._api(logical_id) for logical_id in self.logical_ids("AWS::Serverless::Api")}
        if any(route.api_logical_id == IMPLICIT_API for route in self.routes()):
            apis[IMPLICIT_API] = self._api(IMPLICIT_API)
        return apis

    def _api(self, logical_id: str) -> ApiSpec:
        if logical_id == IMPLICIT_API:
            # SAM's implicit API: stage "Prod", Globals.Api applies.
            properties = self.resolve((self.raw.get("Globals") or {}).get("Api") or {}, where="Globals.Api")
            properties.setdefault("StageName", "Prod")
        else:
            properties = self.properties(logical_id)
        auth = properties.get("Auth") or {}
        authorizers: dict[str, AuthorizerSpec] = {}
        for name, config in (auth.get("Authorizers") or {}).items():
            if "FunctionArn" not in config:
                raise TemplateError(f"{logical_id}: authorizer {name} is not a Lambda authorizer")
            function_id = self._logical_id_for(config["FunctionArn"], *_FUNCTION_TYPES)
            if function_id is None:
                raise TemplateError(
                    f"{logical_id}: authorizer {name} does not name a function of this template"
                )
            identity = config.get("Identity") or {}
            payload_type = str(config.get("FunctionPayloadType", "TOKEN")).upper()
            authorizers[name] = AuthorizerSpec(
                name=name,
                function_logical_id=function_id,
                payload_type=payload_type,
                header=str(identity.get("Header", "Authorization")),
                validation_expression=identity.get("ValidationExpression"),
                ttl_seconds=int(identity.get("ReauthorizeEvery", 300)),
            )
        default = auth.get("DefaultAuthorizer")
        if default is not None and default != "AWS_IAM" and default not in authorizers:
            raise TemplateError(f"{logical_id}: DefaultAuthorizer {default} is not defined in Authorizers")
        api_key_source = str(properties.get("ApiKeySourceType", "HEADER")).upper()
        if api_key_source not in ("HEADER", "AUTHORIZER"):
            raise TemplateError(
                f"{logical_id}: ApiKeySourceType {api_key_source!r} is not HEADER or AUTHORIZER"
            )
        return ApiSpec(
            logical_id=logical_id,
            api_id=self.api_id(logical_id),
            stage=str(properties.get("StageName")),
            authorizers=authorizers,
            default_authorizer=default,
            gateway_responses=dict(properties.get("GatewayResponses") or {}),
            binary_media_types=tuple(
                str(t).replace("~1", "/") for t in properties.get("BinaryMediaTypes") or []
            ),
            models=dict(properties.get("Models") or {}),
            api_key_source=api_key_source,
            api_key_required=_as_flag(auth.get("ApiKeyRequired", False)),
        )

    def _events(self, kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for logical_id in self.logical_ids("AWS::Serverless::Function"):
            raw_events = (self.resource(logical_id).get("Properties") or {}).get("Events") or {}
            for event_name, event in raw_events.items():
                if event.get("Type") == kind:
                    properties = self.resolve(
                        event.get("Properties") or {}, where=f"{logical_id}.{event_name}"
                    )
                    yield logical_id, event_name, properties

    def routes(self) -> list[RouteSpec]:
        routes = []
        for function_id, event_name, properties in self._events("Api"):
            raw_api = properties.get("RestApiId")
            api_id = IMPLICIT_API if raw_api is None else self._logical_id_for(raw_api, *_API_TYPES)
            if api_id is None:
                raise TemplateError(f"{function_id}.{event_name}: RestApiId {raw_api!r} is not an Api here")
            authorizer: str | None
            event_auth = properties.get("Auth") or {}
            api = self._api(api_id)
            override = event_auth.get("Authorizer")
            if override == "NONE":
                authorizer = None
            elif override is not None:
                authorizer = str(override)
            else:
                authorizer = None if api_id == IMPLICIT_API else api.default_authorizer
            # SAM: the event's Auth.ApiKeyRequired, else the Api's.
            api_key_required = (
                _as_flag(event_auth["ApiKeyRequired"])
                if "ApiKeyRequired" in event_auth
                else api.api_key_required
            )
            request_model = properties.get("RequestModel") or {}
            validated = request_model.get("ValidateBody") in (True, "true")
            routes.append(
                RouteSpec(
                    api_logical_id=api_id,
                    path=str(properties["Path"]),
                    method=str(properties["Method"]).upper(),
                    function_logical_id=function_id,
                    event_name=event_name,
                    authorizer=authorizer,
                    request_model=str(request_model["Model"]) if validated else None,
                    api_key_required=api_key_required,
                )
            )
        return routes

    def sqs_sources(self) -> list[SqsSourceSpec]:
        sources = []
        for function_id, event_name, properties in self._events("SQS"):
            queue_id = self._logical_id_for(properties["Queue"], "AWS::SQS::Queue")
            if queue_id is None:
                raise TemplateError(
                    f"{function_id}.{event_name}: queue {properties['Queue']!r} is not in the template"
                )
            scaling = properties.get("ScalingConfig") or {}
            sources.append(
                SqsSourceSpec(
                    function_logical_id=function_id,
                    event_name=event_name,
                    queue_logical_id=queue_id,
                    queue_arn=self.get_att(queue_id, "Arn"),
                    batch_size=int(properties.get("BatchSize", 10)),
                    batching_window_s=float(properties.get("MaximumBatchingWindowInSeconds", 0)),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in (properties.get("FunctionResponseTypes") or []),
                    maximum_concurrency=int(scaling["MaximumConcurrency"])
                    if "MaximumConcurrency" in scaling
                    else None,
                    enabled=properties.get("Enabled", True) in (True, "true", "True"),
                )
            )
        return sources

    def schedules(self) -> list[ScheduleSpec]:
        return [
            ScheduleSpec(
                function_logical_id=function_id,
                event_name=event_name,
                period_s=rate_period_s(str(properties["Schedule"])),
                # SAM names the rule <function logical id><event name>.
                rule_name=str(properties.get("Name") or f"{function_id}{event_name}"),
                enabled=properties.get("Enabled", properties.get("State", "ENABLED"))
                in (True, "true", "ENABLED"),
            )
            for function_id, event_name, properties in self._events("Schedule")
        ]

    def unsupported_events(self) -> list[str]:
        """Event sources the local stack does not emulate (so `up` can say so)."""
        found = []
        for logical_id in self.logical_ids("AWS::Serverless::Function"):
            for event_name, event in (
                (self.resource(logical_id).get("Properties") or {}).get("Events") or {}
            ).items():
                if event.get("Type") not in ("Api", "SQS", "Schedule"):
                    found.append(f"{logical_id}.{event_name} ({event.get('Type')})")
        return found

    def state_machines(self) -> dict[str, StateMachineSpec]:
        return {
            logical_id: self.state_machine(logical_id)
            for logical_id in self.logical_ids(*_STATE_MACHINE_TYPES)
        }

    def state_machine(self, logical_id: str) -> StateMachineSpec:
        properties = self.properties(logical_id)
        definition_file: Path | None = None
        if isinstance(properties.get("DefinitionUri"), str):
            definition_file = (self.root / properties["DefinitionUri"]).resolve()
            text = definition_file.read_text(encoding="utf-8")
            if definition_file.suffix in (".yaml", ".yml"):
                text = json.dumps(yaml.safe_load(text))
        elif "Definition" in properties:
            text = json.dumps(properties["Definition"])
        elif isinstance(properties.get("DefinitionString"), str):
            text = properties["DefinitionString"]
        else:
            raise TemplateError(f"{logical_id}: needs a local DefinitionUri, Definition or DefinitionString")
        substitutions = {
            k: _scalar_text(v) for k, v in (properties.get("DefinitionSubstitutions") or {}).items()
        }
        name = self.physical_name(logical_id)
        return StateMachineSpec(
            logical_id=logical_id,
            name=name,
            arn=self.get_att(logical_id, "Arn"),
            type=str(properties.get("Type", properties.get("StateMachineType", "STANDARD"))),
            definition=substitute_definition(text, substitutions),
            definition_file=definition_file,
            substitutions=substitutions,
        )


DEFINITION_PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")


def substitute_definition(text: str, substitutions: Mapping[str, str]) -> str:
    """CloudFormation's DefinitionSubstitutions: plain textual `${Name}` replacement; placeholders
    without a substitution are left as they are (as CloudFormation does)."""
    return DEFINITION_PLACEHOLDER.sub(lambda m: substitutions.get(m.group(1), m.group(0)), text)


def _as_flag(value: Any) -> bool:
    """A template boolean (true, "true", "True"...)."""
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise TemplateError(f"{value!r} is not a boolean")


def _scalar_text(value: Any) -> str:
    """How CloudFormation renders a scalar into a string (environment variables, Sub, Join)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is NO_VALUE:
        raise TemplateError("AWS::NoValue used where a value is required")
    return str(value)
