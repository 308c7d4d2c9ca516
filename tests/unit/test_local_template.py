"""filebatch_local.template: CloudFormation/SAM evaluation on small inline templates, and on the
real template.yaml (whatever it starts using must stay evaluable by the local stack)."""

from __future__ import annotations

import base64
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from filebatch_local.lint import lint_template_asl
from filebatch_local.template import (
    DEFINITION_PLACEHOLDER,
    CfnLoader,
    Template,
    TemplateError,
    load_template,
    merge_globals,
)
from tests.conftest import PROJECT_ROOT

REAL_TEMPLATE = PROJECT_ROOT / "template.yaml"

SMALL = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage:
    Type: String
    Default: dev
    AllowedValues: [dev, prod]
  Size:
    Type: Number
    Default: 5
    MinValue: 1
    MaxValue: 10
Mappings:
  Sizes:
    dev: {Memory: 128}
    prod: {Memory: 1024}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  IsDev: !Not [!Condition IsProd]
  Both: !And [!Condition IsDev, !Equals [!Ref Size, "5"]]
  Either: !Or [!Condition IsProd, !Equals [a, b]]
Globals:
  Function:
    Runtime: python3.13
    Handler: app.lambda_handler
    Timeout: 30
    Layers: [!Ref Layer]
    Environment:
      Variables:
        SHARED: from-globals
        OVERRIDDEN: from-globals
        TABLE: !Ref Table
Resources:
  Layer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layer
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
  Bucket:
    Type: AWS::S3::Bucket
  Queue:
    Type: AWS::SQS::Queue
  ProdOnly:
    Type: AWS::SQS::Queue
    Condition: IsProd
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn
      Timeout: 10
      Layers: [arn:aws:lambda:us-east-1:123456789012:layer:extra:1]
      Environment:
        Variables:
          OVERRIDDEN: from-function
          LEVEL: !If [IsProd, INFO, DEBUG]
          BOTH: !If [Both, "yes", "no"]
          EITHER: !If [Either, "yes", "no"]
          MEMORY: !FindInMap [Sizes, !Ref Stage, Memory]
          QUEUE_URL: !Ref Queue
          QUEUE_ARN: !GetAtt Queue.Arn
          QUEUE_NAME: !GetAtt [Queue, QueueName]
          BUCKET_ARN: !GetAtt Bucket.Arn
          OBJECTS: !Sub "${Bucket.Arn}/*"
          WHERE: !Sub "${AWS::Region}/${AWS::AccountId}/${AWS::StackName}/${AWS::Partition}/${AWS::URLSuffix}"
          SUB_VARS: !Sub ["${Name}-${Stage}-${!Literal}", {Name: !Ref Table}]
          JOINED: !Join ["-", [a, !Ref Stage, !Select [1, !Split [",", "x,y,z"]]]]
          ENCODED: !Base64 hello
          COUNT: !Ref Size
          MAYBE: !If [IsProd, set, !Ref AWS::NoValue]
"""


def write(tmp_path: Path, text: str, name: str = "template.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def small(tmp_path: Path) -> Path:
    return write(tmp_path, SMALL)


def function_env(path: Path, overrides: dict[str, str] | None = None) -> dict[str, str]:
    return Template(path, overrides).properties("Fn")["Environment"]["Variables"]


# ------------------------------------------------------------------------------- YAML short tags
def test_short_tags_load_as_long_form() -> None:
    # Given every short tag form
    text = """
        a: !Ref X
        b: !GetAtt R.Arn
        c: !GetAtt [R, Arn]
        d: !Sub "x-${Y}"
        e: !Sub ["${Z}", {Z: !Ref W}]
        f: !If [C, 1, 2]
        g: !Equals [a, b]
        h: !Join [",", [a, b]]
        i: !Select [0, [a]]
        j: !Split [",", "a,b"]
        k: !Not [!Condition C]
        l: !And [!Condition C, !Condition D]
        m: !Or [!Condition C, !Condition D]
        n: !FindInMap [M, k1, k2]
        o: !Base64 text
        p: !GetAtt R.Attr.Nested
    """
    # When it is loaded
    loaded: dict[str, Any] = yaml.load(textwrap.dedent(text), Loader=CfnLoader)
    # Then each becomes CloudFormation's long form
    assert loaded["a"] == {"Ref": "X"}
    assert loaded["b"] == loaded["c"] == {"Fn::GetAtt": ["R", "Arn"]}
    assert loaded["d"] == {"Fn::Sub": "x-${Y}"}
    assert loaded["e"] == {"Fn::Sub": ["${Z}", {"Z": {"Ref": "W"}}]}
    assert loaded["f"] == {"Fn::If": ["C", 1, 2]}
    assert loaded["g"] == {"Fn::Equals": ["a", "b"]}
    assert loaded["h"] == {"Fn::Join": [",", ["a", "b"]]}
    assert loaded["i"] == {"Fn::Select": [0, ["a"]]}
    assert loaded["j"] == {"Fn::Split": [",", "a,b"]}
    assert loaded["k"] == {"Fn::Not": [{"Condition": "C"}]}
    assert loaded["l"] == {"Fn::And": [{"Condition": "C"}, {"Condition": "D"}]}
    assert loaded["m"] == {"Fn::Or": [{"Condition": "C"}, {"Condition": "D"}]}
    assert loaded["n"] == {"Fn::FindInMap": ["M", "k1", "k2"]}
    assert loaded["o"] == {"Fn::Base64": "text"}
    assert loaded["p"] == {"Fn::GetAtt": ["R", "Attr.Nested"]}


# ------------------------------------------------------------------------------- intrinsics
def test_ref_to_parameters_resources_and_pseudo_parameters(small: Path) -> None:
    # Given the small template with defaults
    # When the function's environment is resolved
    env = function_env(small)
    # Then Refs give parameter values, local physical names/URLs, and the local pseudo parameters
    assert env["TABLE"] == "filebatch-local-Table"
    assert env["QUEUE_URL"] == "https://sqs.us-east-1.amazonaws.com/123456789012/filebatch-local-Queue"
    assert env["COUNT"] == "5"
    assert env["WHERE"] == "us-east-1/123456789012/filebatch-local/aws/amazonaws.com"


def test_queue_urls_use_the_local_endpoint_when_given(small: Path) -> None:
    template = Template(small, sqs_endpoint="http://127.0.0.1:5000")
    assert template.ref("Queue") == "http://127.0.0.1:5000/123456789012/filebatch-local-Queue"


def test_get_att_both_forms(small: Path) -> None:
    env = function_env(small)
    assert env["QUEUE_ARN"] == "arn:aws:sqs:us-east-1:123456789012:filebatch-local-Queue"
    assert env["QUEUE_NAME"] == "filebatch-local-Queue"
    # Bucket names are lower-cased, and bucket ARNs have no region or account
    assert env["BUCKET_ARN"] == "arn:aws:s3:::filebatch-local-bucket"


def test_sub_string_and_list_forms(small: Path) -> None:
    env = function_env(small)
    assert env["OBJECTS"] == "arn:aws:s3:::filebatch-local-bucket/*"
    assert env["SUB_VARS"] == "filebatch-local-Table-dev-${Literal}"


def test_join_select_split_find_in_map_base64(small: Path) -> None:
    env = function_env(small)
    assert env["JOINED"] == "a-dev-y"
    assert env["MEMORY"] == 128  # values keep their YAML type until they become env strings
    assert base64.b64decode(env["ENCODED"]) == b"hello"


@pytest.mark.parametrize(
    ("stage", "expected"),
    [
        ("dev", {"LEVEL": "DEBUG", "BOTH": "yes", "EITHER": "no"}),
        ("prod", {"LEVEL": "INFO", "BOTH": "no", "EITHER": "yes", "MAYBE": "set"}),
    ],
)
def test_conditions_follow_parameter_overrides(small: Path, stage: str, expected: dict[str, str]) -> None:
    # Given a Stage override
    # When the environment is resolved
    env = function_env(small, {"Stage": stage})
    # Then !If/!Equals/!And/!Or/!Not follow it, and AWS::NoValue removes the key
    assert {k: env.get(k) for k in expected} == expected
    if stage == "dev":
        assert "MAYBE" not in env


def test_resources_whose_condition_is_false_do_not_exist(small: Path) -> None:
    assert "ProdOnly" not in Template(small).resources
    assert "ProdOnly" in Template(small, {"Stage": "prod"}).resources
    with pytest.raises(TemplateError, match="Condition is false"):
        Template(small).ref("ProdOnly")


def test_parameter_overrides_are_checked_like_cloudformation(small: Path) -> None:
    with pytest.raises(TemplateError, match="not one of"):
        Template(small, {"Stage": "qa"})
    with pytest.raises(TemplateError, match="above MaxValue"):
        Template(small, {"Size": "11"})
    with pytest.raises(TemplateError, match="not declared"):
        Template(small, {"Nope": "x"})


def test_globals_merge_like_sam(small: Path) -> None:
    # Given Globals.Function and a function that overrides some of it
    template = Template(small)
    properties = template.properties("Fn")
    env = properties["Environment"]["Variables"]
    # Then maps merge with the function winning, scalars are replaced, lists are concatenated
    assert env["SHARED"] == "from-globals"
    assert env["OVERRIDDEN"] == "from-function"
    assert env["TABLE"] == "filebatch-local-Table"
    assert properties["Timeout"] == 10
    assert properties["Runtime"] == "python3.13"
    assert properties["Layers"] == [
        "arn:aws:lambda:us-east-1:123456789012:layer:filebatch-local-Layer:1",
        "arn:aws:lambda:us-east-1:123456789012:layer:extra:1",
    ]


def test_merge_globals_intrinsics_are_replaced_not_merged() -> None:
    assert merge_globals({"Ref": "A"}, {"x": 1}) == {"x": 1}
    assert merge_globals({"a": {"Ref": "A"}}, {"a": {"b": 1}}) == {"a": {"b": 1}}
    assert merge_globals({"a": 1, "b": {"c": 1}}, {"b": {"d": 2}}) == {"a": 1, "b": {"c": 1, "d": 2}}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"Fn::ImportValue": "x"}, "Fn::ImportValue cannot be evaluated locally"),
        ({"Fn::Cidr": ["10.0.0.0/16", 2, 8]}, "Fn::Cidr cannot be evaluated locally"),
        ({"Fn::GetAtt": ["Queue", "Nope"]}, r"GetAtt Queue.Nope .* not supported"),
        ({"Ref": "Missing"}, "no such parameter, resource or pseudo parameter"),
        ({"Fn::Sub": "${Missing}"}, "no such parameter"),
        ({"Fn::If": ["NoSuchCondition", 1, 2]}, "unknown condition"),
    ],
)
def test_what_cannot_be_evaluated_raises_a_clear_error(small: Path, value: Any, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        Template(small).resolve(value)


def test_function_spec_reads_layers_handler_and_events(tmp_path: Path) -> None:
    # Given a template whose only layer is local
    path = write(
        tmp_path, SMALL.replace("      Layers: [arn:aws:lambda:us-east-1:123456789012:layer:extra:1]\n", "")
    )
    # When the function is read
    spec = Template(path).function("Fn")
    # Then the code, handler, layer dir, name, ARN and log group are the local ones
    assert spec.code_dir == tmp_path / "fn"
    assert spec.handler_file == tmp_path / "fn" / "app.py"
    assert spec.handler_attr == "lambda_handler"
    assert spec.layer_dirs == (tmp_path / "layer",)
    assert spec.name == "filebatch-local-Fn"
    assert spec.arn == "arn:aws:lambda:us-east-1:123456789012:function:filebatch-local-Fn"
    assert spec.log_group == "/aws/lambda/filebatch-local-Fn"
    assert spec.timeout_s == 10
    # And a layer that is not in the template (it could not be put on the path) is refused
    with pytest.raises(TemplateError, match="not a layer of this template"):
        Template(write(tmp_path, SMALL, "other.yaml")).function("Fn")


def with_reservation(tmp_path: Path, value: str) -> Path:
    """SMALL with a local layer only (so the function can be read) and this reservation."""
    external_layer = "      Layers: [arn:aws:lambda:us-east-1:123456789012:layer:extra:1]\n"
    return write(tmp_path, SMALL.replace(external_layer, f"      ReservedConcurrentExecutions: {value}\n"))


@pytest.mark.parametrize(
    ("overrides", "reserved"),
    [({}, None), ({"Stage": "prod"}, 5), ({"Stage": "prod", "Size": "2"}, 2)],
)
def test_function_spec_reads_reserved_concurrency_with_parameters_and_conditions_resolved(
    tmp_path: Path, overrides: dict[str, str], reserved: int | None
) -> None:
    # Given a function that reserves the Size parameter's concurrency in prod, and nothing otherwise
    path = with_reservation(tmp_path, "!If [IsProd, !Ref Size, !Ref AWS::NoValue]")
    # When the function is read with these parameter overrides
    spec = Template(path, overrides).function("Fn")
    # Then its reservation is the resolved count, or none where AWS::NoValue removed the property
    assert spec.reserved_concurrency == reserved


def test_a_reserved_concurrency_that_is_not_a_count_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="ReservedConcurrentExecutions 'many' is not a count"):
        Template(with_reservation(tmp_path, "many")).function("Fn")


# ------------------------------------------------------------------------------- the real template
@pytest.fixture(scope="module")
def real() -> Template:
    return Template(REAL_TEMPLATE)


def _no_intrinsics_left(value: Any, where: str) -> None:
    if isinstance(value, dict):
        assert not (
            len(value) == 1 and (next(iter(value)) == "Ref" or next(iter(value)).startswith("Fn::"))
        ), where
        for key, item in value.items():
            _no_intrinsics_left(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _no_intrinsics_left(item, f"{where}[{index}]")


@pytest.mark.parametrize("overrides", [{}, {"EnvironmentName": "prod"}])
def test_the_whole_real_template_evaluates(overrides: dict[str, str]) -> None:
    # Given template.yaml, with defaults and with the prod environment
    template = Template(REAL_TEMPLATE, overrides)
    # When every resource's properties and every output are resolved
    # Then nothing is left unresolved (a new intrinsic or attribute fails here first)
    for logical_id in template.resources:
        _no_intrinsics_left(template.properties(logical_id), logical_id)
    _no_intrinsics_left(template.outputs(), "Outputs")
    assert set(template.outputs()) == set(load_template(REAL_TEMPLATE).get("Outputs", {}))


def test_every_real_function_has_a_plain_string_environment_and_its_code(real: Template) -> None:
    functions = real.functions()
    assert functions, "template.yaml declares no functions"
    for logical_id, spec in functions.items():
        assert spec.environment, logical_id
        for name, value in spec.environment.items():
            assert isinstance(value, str) and "${" not in value and value != "None", (logical_id, name, value)
        assert spec.environment["TABLE_NAME"] == real.ref("Table")
        assert spec.handler_file.is_file(), f"{logical_id}: {spec.handler_file} is missing"
        assert all(d.is_dir() for d in spec.layer_dirs), logical_id


def test_every_real_api_event_is_a_route_behind_its_authorizer(real: Template) -> None:
    raw = load_template(REAL_TEMPLATE)["Resources"]
    declared = {
        (function_id, event_name)
        for function_id, resource in raw.items()
        if resource["Type"] == "AWS::Serverless::Function"
        for event_name, event in (resource["Properties"].get("Events") or {}).items()
        if event["Type"] == "Api"
    }
    routes = real.routes()
    apis = real.apis()
    assert {(r.function_logical_id, r.event_name) for r in routes} == declared
    for route in routes:
        api = apis[route.api_logical_id]
        assert route.path.startswith("/") and route.method in {"GET", "POST", "PUT", "PATCH", "DELETE", "ANY"}
        assert route.authorizer is None or route.authorizer in api.authorizers
        if route.authorizer:
            assert api.authorizers[route.authorizer].function_logical_id in real.functions()
    assert len({(r.path, r.method) for r in routes}) == len(routes), "two events claim the same route"


def test_every_real_definition_substitution_resolves_and_is_used(real: Template) -> None:
    machines = real.state_machines()
    assert machines
    for spec in machines.values():
        assert spec.definition_file is not None
        placeholders = set(DEFINITION_PLACEHOLDER.findall(spec.definition_file.read_text()))
        assert placeholders == set(spec.substitutions)
        for value in spec.substitutions.values():
            assert isinstance(value, str) and value and "${" not in value
        assert not DEFINITION_PLACEHOLDER.search(spec.definition)
        json.loads(spec.definition)


def test_every_real_sqs_event_reads_a_queue_of_the_template(real: Template) -> None:
    for source in real.sqs_sources():
        assert real.type_of(source.queue_logical_id) == "AWS::SQS::Queue"
        assert 1 <= source.batch_size <= 10_000
    assert real.unsupported_events() == []


def test_lint_asl_accepts_the_real_template() -> None:
    assert lint_template_asl(REAL_TEMPLATE) == []


def test_lint_asl_reports_placeholder_mismatches_and_bad_states(tmp_path: Path) -> None:
    # Given a state machine file with an unknown placeholder, an unused substitution and a bad Next
    (tmp_path / "sm.asl.json").write_text(
        json.dumps(
            {
                "StartAt": "A",
                "States": {"A": {"Type": "Task", "Resource": "${Missing}", "Next": "Nowhere"}},
            }
        )
    )
    path = write(
        tmp_path,
        """\
        Transform: AWS::Serverless-2016-10-31
        Resources:
          Machine:
            Type: AWS::Serverless::StateMachine
            Properties:
              DefinitionUri: sm.asl.json
              DefinitionSubstitutions:
                Unused: x
        """,
    )
    # When it is linted
    problems = "\n".join(lint_template_asl(path))
    # Then each problem is reported
    assert "${Missing} has no DefinitionSubstitutions entry" in problems
    assert "Unused is not used" in problems
    assert "'Nowhere' is not a state" in problems
    assert "E3601" in problems  # cfn-lint's own check of the definition ran


# -- stream EVENTS ------------------------------------------------------------------------------------
def test_an_event_bus_and_a_rule_on_it_have_the_names_and_arns_cloudformation_gives(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(
        textwrap.dedent(
            """\
            Resources:
              Bus:
                Type: AWS::Events::EventBus
                Properties:
                  Name: !Sub "${AWS::StackName}-events"
              OnBus:
                Type: AWS::Events::Rule
                Properties:
                  EventBusName: !GetAtt Bus.Name
                  EventPattern: {source: [filebatch]}
              OnDefault:
                Type: AWS::Events::Rule
                Properties:
                  EventPattern: {source: [aws.s3]}
            """
        )
    )
    template = Template(tmp_path / "template.yaml")
    assert template.ref("Bus") == template.get_att("Bus", "Name") == "filebatch-local-events"
    assert (
        template.get_att("Bus", "Arn")
        == "arn:aws:events:us-east-1:123456789012:event-bus/filebatch-local-events"
    )
    # A rule's ARN names its bus, unless it is on the default bus
    assert template.get_att("OnBus", "Arn") == (
        "arn:aws:events:us-east-1:123456789012:rule/filebatch-local-events/filebatch-local-OnBus"
    )
    assert (
        template.get_att("OnDefault", "Arn")
        == "arn:aws:events:us-east-1:123456789012:rule/filebatch-local-OnDefault"
    )
