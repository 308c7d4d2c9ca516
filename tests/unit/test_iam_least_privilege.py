"""Least privilege, checked against the code: each function's AWS calls are derived from the source
(handler → service functions → port methods → adapter methods → boto3 operations) and must equal,
action for action, what template.yaml grants that function.

The derivation reads the code with `ast`; it follows calls by name, so it sees every path the code
could take, not only the ones a test happens to exercise."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from filebatch_local.template import Template, load_template
from tests.conftest import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "layers" / "filebatch" / "filebatch"
TEMPLATE: dict[str, Any] = load_template(PROJECT_ROOT / "template.yaml")
FUNCTIONS = {
    name: resource
    for name, resource in TEMPLATE["Resources"].items()
    if resource["Type"] == "AWS::Serverless::Function"
}
# Deployments whose grants differ: the provider (and, for bedrock, the kind of model id) decides
# what the describe function may call. Parameter overrides, as `sam deploy` would pass them.
PROFILE_ID = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
CONFIGURATIONS: dict[str, dict[str, str]] = {
    "local": {},
    "bedrock": {"DescriptionProvider": "bedrock"},
    "bedrock-profile": {
        "DescriptionProvider": "bedrock",
        "BedrockModelId": PROFILE_ID,
        "BedrockRegion": "us-west-2",
    },
}

# The IAM service prefix of each adapter module's client.
SERVICE_OF_ADAPTER = {
    "dynamodb": "dynamodb",
    "s3": "s3",
    "stepfunctions": "states",
    "secrets": "secretsmanager",
    "bedrock": "bedrock",
    # -- stream EVENTS
    "events": "events",
    "sqs": "sqs",
}
# boto3 calls whose IAM action is not their own name in PascalCase.
SPECIAL_OPERATIONS = {
    "batch_writer": "BatchWriteItem",
    # Converse is authorised as InvokeModel (Bedrock user guide, "Carry out a conversation with the
    # Converse API operations": "requires permissions for the bedrock:InvokeModel action").
    "converse": "InvokeModel",
    # A presigned URL is a request signed with the signer's permissions: the action of the operation
    # it names (the first argument) is what the function must be granted.
    "generate_presigned_url": None,
    # A browser POST upload is authorised as PutObject (S3 API reference, "POST Object").
    "generate_presigned_post": "PutObject",
    # S3 operations authorised under another action's name (S3 API reference, each operation's
    # "Permissions"): listing versions is ListBucketVersions, a multi-object delete is DeleteObject
    # per key, HEAD is GetObject.
    "list_object_versions": "ListBucketVersions",
    "delete_objects": "DeleteObject",
    "head_object": "GetObject",
    # Multipart uploads (S3 API reference, each operation's "Permissions"): creating one, uploading a
    # part and completing it are PutObject; listing its parts is ListMultipartUploadParts.
    "create_multipart_upload": "PutObject",
    "upload_part": "PutObject",
    "complete_multipart_upload": "PutObject",
    "list_parts": "ListMultipartUploadParts",
}
# TransactWriteItems is authorised per item action (DynamoDB developer guide, "IAM with transactions").
TRANSACTION_ITEM_ACTIONS = {
    "Update": "UpdateItem",
    "Put": "PutItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
# The attributes adapters keep their boto3 client or resource in.
CLIENT_ATTRIBUTES = {"_client", "_table"}


def pascal(operation: str) -> str:
    return "".join(part.capitalize() for part in operation.split("_"))


# ------------------------------------------------------------------------------ adapters
@dataclass
class MethodCalls:
    actions: set[str] = field(default_factory=set)
    helpers: set[str] = field(default_factory=set)
    transaction_kinds: set[str] = field(default_factory=set)
    transacts: bool = False


def _adapter_method_calls(method: ast.FunctionDef, service: str) -> MethodCalls:
    calls = MethodCalls()
    for node in ast.walk(method):
        if isinstance(node, ast.Dict):
            calls.transaction_kinds |= {
                key.value
                for key in node.keys
                if isinstance(key, ast.Constant) and key.value in TRANSACTION_ITEM_ACTIONS
            }
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        target, name = node.func.value, node.func.attr
        if isinstance(target, ast.Name) and target.id == "self":
            calls.helpers.add(name)
        elif isinstance(target, ast.Attribute) and target.attr in CLIENT_ATTRIBUTES:
            if name == "transact_write_items":
                calls.transacts = True
            elif name == "generate_presigned_url":
                operation = node.args[0]
                assert isinstance(operation, ast.Constant), "presigned operation must be a literal"
                presigned = str(operation.value)
                calls.actions.add(f"{service}:{SPECIAL_OPERATIONS.get(presigned) or pascal(presigned)}")
            elif name in SPECIAL_OPERATIONS:
                calls.actions.add(f"{service}:{SPECIAL_OPERATIONS[name]}")
                if name == "delete_objects" and "VersionId" in ast.unparse(method):
                    # Deleting a given version (or delete marker) needs DeleteObjectVersion too.
                    calls.actions.add("s3:DeleteObjectVersion")
            else:
                calls.actions.add(f"{service}:{pascal(name)}")
                if name == "get_object" and "VersionId" in ast.unparse(method):
                    # Reading a given version is authorised as GetObjectVersion.
                    calls.actions.add("s3:GetObjectVersion")
    return calls


def _resolve(
    methods: dict[str, MethodCalls],
    service: str,
    name: str,
    seen: frozenset[str] = frozenset(),
    kinds: frozenset[str] = frozenset(),
) -> set[str]:
    """A method's actions, with those of the helpers it calls; a transaction takes the item kinds
    written by the method that built its items."""
    calls = methods[name]
    kinds = kinds | calls.transaction_kinds
    actions = set(calls.actions)
    if calls.transacts:
        actions |= {f"{service}:{TRANSACTION_ITEM_ACTIONS[k]}" for k in kinds}
    for helper in calls.helpers - seen - {name}:
        if helper in methods:
            actions |= _resolve(methods, service, helper, seen | {name}, kinds)
    return actions


def adapter_actions() -> dict[str, dict[str, set[str]]]:
    """Adapter class name → public method → the IAM actions it (and its helpers) needs."""
    found: dict[str, dict[str, set[str]]] = {}
    for module, service in SERVICE_OF_ADAPTER.items():
        tree = ast.parse((PACKAGE / "adapters" / f"{module}.py").read_text())
        for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
            methods = {
                m.name: _adapter_method_calls(m, service) for m in cls.body if isinstance(m, ast.FunctionDef)
            }
            found[cls.name] = {
                name: _resolve(methods, service, name) for name in methods if not name.startswith("_")
            }
    return found


# ------------------------------------------------------------------------------ ports and runtime
def port_adapters() -> dict[str, str]:
    """Port protocol → the adapter class runtime.py builds for it (from the factories' code)."""
    tree = ast.parse((PACKAGE / "runtime.py").read_text())
    mapping = {}
    for function in (n for n in tree.body if isinstance(n, ast.FunctionDef)):
        if not isinstance(function.returns, ast.Name):
            continue
        built = [
            n.func.id
            for n in ast.walk(function)
            if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Name)
            and n.func.id.endswith(("Repository", "Storage", "Starter", "Keys", "Model", "Events", "Queue"))
        ]
        if built:
            mapping[function.returns.id] = built[-1]
    return mapping


def runtime_factories() -> dict[str, str]:
    """runtime factory name → the port it returns."""
    tree = ast.parse((PACKAGE / "runtime.py").read_text())
    return {
        f.name: f.returns.id
        for f in tree.body
        if isinstance(f, ast.FunctionDef) and isinstance(f.returns, ast.Name)
    }


def provider_factory_calls(provider: str) -> tuple[set[str], set[str]]:
    """What runtime's factory for the description provider `provider` (its PROVIDERS registry) calls:
    (runtime factories, i.e. ports it obtains; other names, e.g. the provider class it builds)."""
    tree = ast.parse((PACKAGE / "runtime.py").read_text())
    registry = next(
        node.value
        for node in tree.body
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and node.target.id == "PROVIDERS"
        and isinstance(node.value, ast.Dict)
    )
    entries = {
        key.value: value.id
        for key, value in zip(registry.keys, registry.values, strict=True)
        if isinstance(key, ast.Constant) and isinstance(value, ast.Name)
    }
    factory = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == entries[provider])
    called = {
        n.func.id for n in ast.walk(factory) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }
    factories = runtime_factories()
    return {factories[name] for name in called if name in factories}, called - set(factories)


# ------------------------------------------------------------------------------ library adapters
# Ports whose adapter leaves its AWS calls to a library: the calls are read from the library's own
# source (its class, the attribute holding its boto3 client), as they are from ours.
LIBRARY_PORTS = {
    "IdempotentCalls": (
        "aws_lambda_powertools.utilities.idempotency.persistence.dynamodb",
        "DynamoDBPersistenceLayer",
        "client",
        "dynamodb",
    ),
}


@cache
def library_actions(port: str) -> frozenset[str]:
    import importlib.util

    module, class_name, attribute, service = LIBRARY_PORTS[port]
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, module
    tree = ast.parse(Path(spec.origin).read_text())
    [cls] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name]
    return frozenset(
        f"{service}:{pascal(node.func.attr)}"
        for node in ast.walk(cls)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Attribute)
        and node.func.value.attr == attribute
        and isinstance(node.func.value.value, ast.Name)
        and node.func.value.value.id == "self"
    )


# ------------------------------------------------------------------------------ services
# The description provider is a port too: which implementation (and so which further ports) a
# function uses is a deployment choice, DescriptionProvider.
PORTS = {
    "BatchRepository",
    "ObjectStorage",
    "WorkflowStarter",
    "CursorKeys",
    "ConverseModel",
    "DescriptionProvider",
    # -- stream EVENTS
    "BatchEvents",
    "DeliveryQueue",
    "JobQueue",
}


@dataclass
class ServiceCalls:
    port_calls: set[tuple[str, str]] = field(default_factory=set)
    calls: set[str] = field(default_factory=set)


def _annotation_name(annotation: ast.expr | None) -> str | None:
    return annotation.id if isinstance(annotation, ast.Name) else None


def _callable_calls(node: ast.FunctionDef, typed: dict[str, str]) -> ServiceCalls:
    found = ServiceCalls()
    local_types = dict(typed)
    for argument in node.args.args + node.args.kwonlyargs:
        port = _annotation_name(argument.annotation)
        if port in PORTS:
            local_types[argument.arg] = port
    for inner in ast.walk(node):
        if not isinstance(inner, ast.Call):
            continue
        func = inner.func
        if isinstance(func, ast.Name):
            found.calls.add(func.id)
        elif isinstance(func, ast.Attribute):
            owner = func.value
            key = (
                owner.id
                if isinstance(owner, ast.Name)
                else f"self.{owner.attr}"
                if (
                    isinstance(owner, ast.Attribute)
                    and isinstance(owner.value, ast.Name)
                    and owner.value.id == "self"
                )
                else None
            )
            if key in local_types:
                found.port_calls.add((local_types[key], func.attr))
    return found


def service_callables() -> dict[str, ServiceCalls]:
    """Every service function and class (a class stands for all its methods) → its calls."""
    found: dict[str, ServiceCalls] = {}
    for path in (PACKAGE / "services").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                found[node.name] = _callable_calls(node, {})
            elif isinstance(node, ast.ClassDef):
                typed: dict[str, str] = {}
                methods = [m for m in node.body if isinstance(m, ast.FunctionDef)]
                for method in methods:
                    if method.name == "__init__":
                        params = {a.arg: _annotation_name(a.annotation) for a in method.args.args}
                        for statement in ast.walk(method):
                            if (
                                isinstance(statement, ast.Assign)
                                and isinstance(statement.value, ast.Name)
                                and params.get(statement.value.id) in PORTS
                            ):
                                for target in statement.targets:
                                    if isinstance(target, ast.Attribute):
                                        typed[f"self.{target.attr}"] = str(params[statement.value.id])
                merged = ServiceCalls()
                for method in methods:
                    calls = _callable_calls(method, typed)
                    merged.port_calls |= calls.port_calls
                    merged.calls |= calls.calls
                found[node.name] = merged
    return found


def port_calls_of(names: Iterable[str], services: dict[str, ServiceCalls]) -> set[tuple[str, str]]:
    seen: set[str] = set()
    pending = [n for n in names if n in services]
    result: set[tuple[str, str]] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        result |= services[name].port_calls
        pending += [n for n in services[name].calls if n in services and n not in seen]
    return result


# ------------------------------------------------------------------------------ handlers
def derived_actions(function_logical_id: str, provider: str = "local") -> set[str]:
    properties = FUNCTIONS[function_logical_id]["Properties"]
    tree = ast.parse((PROJECT_ROOT / properties["CodeUri"] / "app.py").read_text())
    factories = runtime_factories()
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    ports_obtained = {
        factories[n.func.attr]
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and isinstance(n.func.value, ast.Name)
        and n.func.value.id == "runtime"
        and n.func.attr in factories
    }
    services = service_callables()
    port_calls = port_calls_of(called, services)
    if "DescriptionProvider" in ports_obtained and ("DescriptionProvider", "describe") in port_calls:
        # The configured provider: what its factory obtains and builds, and what that calls.
        provider_ports, provider_calls = provider_factory_calls(provider)
        ports_obtained |= provider_ports
        port_calls |= port_calls_of(provider_calls, services)
    adapters, implementations = adapter_actions(), port_adapters()
    actions: set[str] = set()
    for port in ports_obtained & set(LIBRARY_PORTS):
        actions |= library_actions(port)
    for port, method in port_calls:
        if port in ports_obtained and port in implementations:
            actions |= adapters[implementations[port]][method]
    return actions


# ------------------------------------------------------------------------------ template
def _policy_template_statements() -> dict[str, list[dict[str, Any]]]:
    import samtranslator

    data = json.loads(
        (Path(samtranslator.__file__).parent / "policy_templates_data" / "policy_templates.json").read_text()
    )
    return {name: body["Definition"]["Statement"] for name, body in data["Templates"].items()}


@cache
def deployed(configuration: str) -> Template:
    """template.yaml evaluated as CloudFormation would for one configuration (conditions applied)."""
    return Template(PROJECT_ROOT / "template.yaml", CONFIGURATIONS[configuration])


def granted_statements(function_logical_id: str, configuration: str = "local") -> list[dict[str, Any]]:
    templates = _policy_template_statements()
    statements: list[dict[str, Any]] = []
    template = deployed(configuration)
    policies = template.resolve(
        template.resource(function_logical_id)["Properties"].get("Policies", []), where=function_logical_id
    )
    for policy in policies:
        assert isinstance(policy, dict), f"{function_logical_id}: a managed policy by name grants too much"
        [(name, body)] = policy.items()
        if name == "Statement":
            statements += body
        else:
            assert name in templates, f"{function_logical_id}: unknown policy {name}"
            statements += templates[name]
    return statements


def _actions(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


def granted_actions(function_logical_id: str, configuration: str = "local") -> set[str]:
    return {
        a
        for s in granted_statements(function_logical_id, configuration)
        if s.get("Effect", "Allow") == "Allow"
        for a in _actions(s)
    }


def provider_of(configuration: str) -> str:
    return CONFIGURATIONS[configuration].get("DescriptionProvider", "local")


# The key prefixes a function may be granted on (filebatch.models.domain: uploads, manifests, the
# workflow's results, exports).
OBJECT_PREFIXES = "(uploads|manifests|workflow-results|exports)"

FUNCTION_CONFIGURATIONS = [(f, c) for f in sorted(FUNCTIONS) for c in CONFIGURATIONS]


# ------------------------------------------------------------------------------ tests
def test_the_derivation_follows_handlers_services_ports_and_adapters() -> None:
    # Given the code as it is, Then known paths come out: the authorizer only reads a key,
    # recording a result is a conditional transaction of updates, and describing reads a version
    assert derived_actions("AuthorizeRequestFunction") == {"dynamodb:GetItem"}
    assert derived_actions("RecordResultFunction") == {
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        # Issue 10: the hash index (publish, release)
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
    }
    # (and, issue 10, claims the hash index entry of its content)
    assert derived_actions("DescribeFileFunction") == {
        "s3:GetObject",
        "s3:GetObjectVersion",
        "dynamodb:PutItem",
    }
    assert derived_actions("DescribeFileFunction", "bedrock") == {
        "s3:GetObject",
        "s3:GetObjectVersion",
        "bedrock:InvokeModel",
        "dynamodb:PutItem",
    }
    assert "states:StartExecution" in derived_actions("RecordUploadFunction")
    assert {"s3:PutObject", "dynamodb:BatchWriteItem", "dynamodb:PutItem"} <= derived_actions(
        "CreateBatchFunction"
    )
    # -- stream EVENTS: announcing, postponing a failed delivery, reading and rotating the secret
    assert "events:PutEvents" in derived_actions("FinalizeBatchFunction")
    assert derived_actions("DeliverWebhookFunction") == {"dynamodb:GetItem", "sqs:ChangeMessageVisibility"}
    assert derived_actions("RotateWebhookSecretFunction") == {"dynamodb:GetItem", "dynamodb:PutItem"}
    # A purge lists and deletes object versions and deletes items; a delete only marks and queues
    assert derived_actions("RunBatchJobFunction") == {
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:BatchWriteItem",
        "dynamodb:DeleteItem",
        "s3:ListBucketVersions",
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
    }
    assert derived_actions("DeleteBatchFunction") == {
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "sqs:SendMessage",
    }
    assert "s3:PutObject" in derived_actions("FinalizeBatchFunction")


@pytest.mark.parametrize(("function", "configuration"), FUNCTION_CONFIGURATIONS)
def test_each_function_is_granted_exactly_the_actions_its_code_calls(
    function: str, configuration: str
) -> None:
    derived = derived_actions(function, provider_of(configuration))
    granted = granted_actions(function, configuration)
    assert derived == granted, (
        f"{function} ({configuration}): granted but never called: {sorted(granted - derived)}; "
        f"called but not granted: {sorted(derived - granted)}"
    )


@pytest.mark.parametrize(("function", "configuration"), FUNCTION_CONFIGURATIONS)
def test_grants_are_scoped_to_the_table_the_upload_prefixes_and_the_state_machine(
    function: str, configuration: str
) -> None:
    template = deployed(configuration)
    for statement in granted_statements(function, configuration):
        resources = statement.get("Resource")
        assert resources not in (None, "*"), f"{function}: a grant without a resource scope"
        for resource in resources if isinstance(resources, list) else [resources]:
            text = json.dumps(resource)
            services = {a.split(":")[0] for a in _actions(statement)}
            if services == {"s3"}:
                bucket = template.get_att("UploadBucket", "Arn")
                if set(_actions(statement)) == {"s3:ListBucketVersions"}:
                    # A bucket action: the bucket itself, listed only under the batches' prefixes.
                    assert resource == bucket, (function, text)
                    prefixes = statement["Condition"]["StringLike"]["s3:prefix"]
                    assert all(re.fullmatch(rf"{OBJECT_PREFIXES}/\*", p) for p in prefixes), (function, text)
                    continue
                assert re.fullmatch(rf"{re.escape(bucket)}/{OBJECT_PREFIXES}/\*", resource), (
                    function,
                    text,
                )
            elif services == {"dynamodb"}:
                # The table, its indexes (queries only), or Powertools' idempotency table.
                table = template.get_att("Table", "Arn")
                indexes = {
                    f"{table}/index/{index['IndexName']}"
                    for index in template.properties("Table").get("GlobalSecondaryIndexes", [])
                }
                allowed = {table, template.get_att("IdempotencyTable", "Arn")} | indexes
                assert resource in allowed, (function, text)
                if resource in indexes:
                    assert _actions(statement) == {"dynamodb:Query"}, (function, text)
            elif services == {"sqs"}:
                queues = {template.get_att(q, "Arn") for q in ("BatchJobsQueue", "WebhookDeliveriesQueue")}
                assert resource in queues, (function, text)
            elif services == {"secretsmanager"}:
                assert resource == template.ref("CursorSigningSecret"), (function, text)
            elif services == {"bedrock"}:
                assert function == "DescribeFileFunction", (function, text)
            # -- stream EVENTS: the stack's own bus
            elif services == {"events"}:
                assert resource == template.get_att("BatchEventsBus", "Arn"), (function, text)


def test_bedrock_is_granted_on_exactly_the_configured_model_and_only_when_configured() -> None:
    # Given the three deployments: local, bedrock with the default model id, bedrock with a profile
    def bedrock_statements(configuration: str) -> list[dict[str, Any]]:
        return [
            s
            for function in FUNCTIONS
            for s in granted_statements(function, configuration)
            if any(a.startswith("bedrock:") for a in _actions(s))
        ]

    default_model = TEMPLATE["Parameters"]["BedrockModelId"]["Default"]
    # Then the local provider's deployment grants nothing on Bedrock
    assert bedrock_statements("local") == []
    # And a foundation model id grants InvokeModel on that model, in the stack's Region, and nothing else
    assert bedrock_statements("bedrock") == [
        {
            "Effect": "Allow",
            "Action": ["bedrock:InvokeModel"],
            "Resource": f"arn:aws:bedrock:us-east-1::foundation-model/{default_model}",
        }
    ]
    # And an inference profile id grants the profile in BedrockRegion, and its model (in the Regions the
    # profile routes to) only when invoked through exactly that profile
    profile_arn = f"arn:aws:bedrock:us-west-2:123456789012:inference-profile/{PROFILE_ID}"
    model = PROFILE_ID.split(".", 1)[1]
    assert bedrock_statements("bedrock-profile") == [
        {"Effect": "Allow", "Action": ["bedrock:InvokeModel"], "Resource": profile_arn},
        {
            "Effect": "Allow",
            "Action": ["bedrock:InvokeModel"],
            "Resource": [
                f"arn:aws:bedrock:*::foundation-model/{model}",
                f"arn:aws:bedrock:::foundation-model/{model}",
            ],
            "Condition": {"StringEquals": {"bedrock:InferenceProfileArn": profile_arn}},
        },
    ]


@pytest.mark.parametrize(
    ("configuration", "region"),
    [("local", "us-east-1"), ("bedrock", "us-east-1"), ("bedrock-profile", "us-west-2")],
)
def test_the_describe_function_is_told_the_model_and_region_it_is_granted(
    configuration: str, region: str
) -> None:
    template = deployed(configuration)
    variables = template.resolve(
        template.resource("DescribeFileFunction")["Properties"]["Environment"]["Variables"]
    )
    assert variables["BEDROCK_REGION"] == region
    assert variables["BEDROCK_MODEL_ID"] == template.parameters["BedrockModelId"]
    assert variables["DESCRIPTION_PROVIDER"] == provider_of(configuration)


def test_only_the_create_function_may_use_the_idempotency_table_and_for_what_powertools_calls() -> None:
    # Given Powertools' persistence layer as installed: put, read, complete and delete a record
    calls = library_actions("IdempotentCalls")
    assert calls == {"dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
    template = deployed("local")
    table = template.get_att("IdempotencyTable", "Arn")
    for function in FUNCTIONS:
        on_table = {
            a for s in granted_statements(function) if s.get("Resource") == table for a in _actions(s)
        }
        # Then the function that uses it is granted those on that table, and no other function anything
        assert on_table == (calls if function == "CreateBatchFunction" else set()), function


def test_the_list_function_queries_the_index_and_reads_batch_items_only() -> None:
    assert derived_actions("ListBatchesFunction") == {
        "dynamodb:Query",
        "dynamodb:BatchGetItem",
        "secretsmanager:GetSecretValue",
    }
    template = deployed("local")
    [query] = [s for s in granted_statements("ListBatchesFunction") if "dynamodb:Query" in _actions(s)]
    assert query["Resource"] == template.get_att("Table", "Arn") + "/index/ByTenant"


def test_the_authorizer_reads_only_api_key_items() -> None:
    [statement] = granted_statements("AuthorizeRequestFunction")
    assert statement["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["APIKEY#*"]}}
    from filebatch.models.records import api_key_pk

    assert api_key_pk("x").startswith("APIKEY#")


def test_only_adapters_and_the_composition_root_import_boto3() -> None:
    # The derivation above reads AWS calls from the adapters: code elsewhere calling AWS would escape it
    allowed = {PACKAGE / "runtime.py", PACKAGE / "admin.py", *(PACKAGE / "adapters").glob("*.py")}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        if imported & {"boto3", "botocore"} and path not in allowed:
            offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []
