"""Handlers in-process under moto: the real app modules, the real adapters, AWS emulated by moto.

Resources are created from template.yaml's own properties (key schema, etc.), so the tests exercise
the table the template deploys."""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from filebatch import runtime
from filebatch.adapters.apigateway import ApiGatewayUsageKeys
from filebatch.config import get_settings
from filebatch.plans import PLAN_TAG, PLANS
from filebatch.services.auth import issue_api_key
from filebatch_local.template import load_template
from tests.conftest import PROJECT_ROOT, load_event

TEMPLATE = load_template(PROJECT_ROOT / "template.yaml")
TABLE = "filebatch-test-table"
IDEMPOTENCY_TABLE = "filebatch-test-idempotency"
BUCKET = "filebatch-test-uploads"
# -- stream EVENTS: the bus batch ends are announced on, and the webhook deliveries queue
EVENT_BUS = "filebatch-test-batch-events"
WEBHOOK_QUEUE = "filebatch-test-webhook-deliveries"
# The API id and stage of the fixture events' method ARNs.
API_ID = "a1b2c3d4e5"
STAGE = "dev"
_MODULES: dict[str, ModuleType] = {}


@dataclass
class LambdaContext:
    function_name: str = "test-function"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    memory_limit_in_mb: int = 512
    aws_request_id: str = ""
    log_group_name: str = "/aws/lambda/test-function"
    log_stream_name: str = "2026/11/22/[$LATEST]test"

    def __post_init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def load_handler(function_dir: str) -> ModuleType:
    """functions/<dir>/app.py as its own module (every handler is called `app`)."""
    if function_dir not in _MODULES:
        path = PROJECT_ROOT / "functions" / function_dir / "app.py"
        spec = importlib.util.spec_from_file_location(f"handler_{function_dir}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        _MODULES[function_dir] = module
    return _MODULES[function_dir]


def _reset_caches() -> None:
    get_settings.cache_clear()
    for factory in (
        runtime.repository,
        runtime.storage,
        runtime.workflow,
        runtime.description_provider,
        runtime.fault_injection,
        runtime.cursor_keys,
        runtime._boto3_client,
        runtime.bedrock_model,
        runtime.bedrock_client,
        # -- stream EVENTS
        runtime.batch_events,
        runtime.delivery_queue,
        runtime.host_resolver,
        runtime.webhook_transport,
        runtime.job_queue,
        runtime.idempotent_calls,
    ):
        factory.cache_clear()


@dataclass
class Aws:
    dynamodb: Any
    s3: Any
    sfn: Any
    state_machine_arn: str
    # The background jobs queue (stream PURGE).
    jobs_queue_url: str = ""

    def api_key(self, tenant_id: str, plan: str = "pro") -> str:
        usage_keys = ApiGatewayUsageKeys(boto3.client("apigateway"), api_id=API_ID, stage=STAGE)
        return issue_api_key(runtime.repository(), usage_keys, tenant_id, plan=plan, now=datetime.now(UTC))


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    with mock_aws():
        table = TEMPLATE["Resources"]["Table"]["Properties"]
        dynamodb = boto3.client("dynamodb")
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=table["KeySchema"],
            AttributeDefinitions=table["AttributeDefinitions"],
            BillingMode=table["BillingMode"],
            GlobalSecondaryIndexes=table["GlobalSecondaryIndexes"],
        )
        idempotency = TEMPLATE["Resources"]["IdempotencyTable"]["Properties"]
        dynamodb.create_table(
            TableName=IDEMPOTENCY_TABLE,
            KeySchema=idempotency["KeySchema"],
            AttributeDefinitions=idempotency["AttributeDefinitions"],
            BillingMode=idempotency["BillingMode"],
        )
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        versioning = TEMPLATE["Resources"]["UploadBucket"]["Properties"]["VersioningConfiguration"]
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": versioning["Status"]})
        secret = boto3.client("secretsmanager").create_secret(
            Name="filebatch-test-cursor-key", SecretString="integration-test-cursor-signing-key"
        )
        apigateway = boto3.client("apigateway")
        for name in PLANS:  # the template's usage plans, one per plan, on the API's stage
            apigateway.create_usage_plan(
                name=f"filebatch-{name}", apiStages=[{"apiId": API_ID, "stage": STAGE}], tags={PLAN_TAG: name}
            )
        sfn = boto3.client("stepfunctions")
        machine = sfn.create_state_machine(
            name="process-batch",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
            roleArn="arn:aws:iam::123456789012:role/sfn",
        )
        jobs_queue_url = boto3.client("sqs").create_queue(QueueName="filebatch-test-jobs")["QueueUrl"]
        # -- stream EVENTS
        boto3.client("events").create_event_bus(Name=EVENT_BUS)
        webhook_queue = boto3.client("sqs").create_queue(QueueName=WEBHOOK_QUEUE)["QueueUrl"]
        for name, value in {
            "BATCH_JOBS_QUEUE_URL": jobs_queue_url,
            "EVENT_BUS_NAME": EVENT_BUS,
            "WEBHOOK_QUEUE_URL": webhook_queue,
            # Receivers in these tests listen on 127.0.0.1 (as on the local stack).
            "WEBHOOK_ALLOW_LOOPBACK": "true",
            "WEBHOOK_RETRY_BASE_SECONDS": "1",
            "TABLE_NAME": TABLE,
            "BUCKET_NAME": BUCKET,
            "STATE_MACHINE_ARN": machine["stateMachineArn"],
            "DESCRIPTION_PROVIDER": "local",
            "DESCRIBE_FAULT_INJECTION": "",
            "CURSOR_SECRET_ARN": secret["ARN"],
            "IDEMPOTENCY_TABLE_NAME": IDEMPOTENCY_TABLE,
        }.items():
            monkeypatch.setenv(name, value)
        _reset_caches()
        yield Aws(
            dynamodb=dynamodb,
            s3=s3,
            sfn=sfn,
            state_machine_arn=machine["stateMachineArn"],
            jobs_queue_url=jobs_queue_url,
        )
    _reset_caches()


@pytest.fixture
def invoke() -> Callable[[str, dict[str, Any]], Any]:
    def call(function_dir: str, event: dict[str, Any]) -> Any:
        return load_handler(function_dir).lambda_handler(event, LambdaContext(function_name=function_dir))

    return call


def api_event(
    method: str,
    path: str,
    *,
    tenant_id: str | None = "acme",
    plan: str = "pro",
    body: Any = None,
    path_parameters: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The real REST proxy event shape (fixture), re-aimed at one route; `headers` are added to the
    fixture's (as API Gateway passes them: as sent, in both header maps)."""
    event = load_event("apigw_rest_proxy_create_batch")
    resource = path
    for name, value in (path_parameters or {}).items():
        resource = resource.replace(value, "{" + name + "}")
    event.update(
        httpMethod=method,
        path=path,
        resource=resource,
        pathParameters=path_parameters,
        queryStringParameters=query,
        multiValueQueryStringParameters={k: [v] for k, v in query.items()} if query else None,
        body=body if body is None or isinstance(body, str) else json.dumps(body),
    )
    event["requestContext"].update(httpMethod=method, resourcePath=resource, path=f"/dev{path}")
    for name, value in (headers or {}).items():
        event["headers"][name] = value
        event["multiValueHeaders"][name] = [value]
    if tenant_id is None:
        event["requestContext"]["authorizer"] = {}
    else:
        event["requestContext"]["authorizer"].update(principalId=tenant_id, tenant_id=tenant_id, plan=plan)
    return event
