"""The local stack (filebatch_local) on a tiny throwaway template with its own trivial handlers:
what the template declares is what runs — environment, SQS event source with partial batch
failures and the queue's redrive, Step Functions Retry/Catch on the handler's exception class,
reserved concurrency throttling the excess as Lambda does, the REST API behind a TOKEN authorizer,
usage plans metering the routes that require an API key, and gateway responses."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from filebatch_local.api import ApiGateway, UsagePlanMeter, stage_usage_keys
from filebatch_local.events import SqsEventSource, failed_message_ids
from filebatch_local.lambdas import THROTTLED_BODY, InvokeResult
from filebatch_local.stack import LocalStack
from filebatch_local.template import SqsSourceSpec, Template

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Greeting:
    Type: String
    Default: hello
    AllowedValues: [hello, bonjour]
  HeldReservation:
    Type: Number
    Default: 5
Conditions:
  IsFrench: !Equals [!Ref Greeting, bonjour]
Globals:
  Function:
    Runtime: python3.13
    Handler: app.lambda_handler
    Timeout: 10
    Layers: [!Ref SharedLayer]
    Environment:
      Variables:
        GREETING: !Ref Greeting
        TABLE_NAME: !Ref Table
        LANGUAGE: !If [IsFrench, fr, en]
Resources:
  SharedLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layer
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {AttributeName: pk, AttributeType: S}
        - {AttributeName: sk, AttributeType: S}
      KeySchema:
        - {AttributeName: pk, KeyType: HASH}
        - {AttributeName: sk, KeyType: RANGE}
  DeadLetterQueue:
    Type: AWS::SQS::Queue
  WorkQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 1
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt DeadLetterQueue.Arn
        maxReceiveCount: 2
  Api:
    Type: AWS::Serverless::Api
    Properties:
      StageName: test
      ApiKeySourceType: AUTHORIZER
      Auth:
        DefaultAuthorizer: TokenAuthorizer
        Authorizers:
          TokenAuthorizer:
            FunctionArn: !GetAtt AuthFunction.Arn
            Identity:
              Header: Authorization
              ValidationExpression: "^Bearer [a-z]+$"
              ReauthorizeEvery: 0
      GatewayResponses:
        UNAUTHORIZED:
          StatusCode: 401
          ResponseTemplates:
            application/json: '{"error":"unauthorized"}'
        ACCESS_DENIED:
          StatusCode: 403
          ResponseTemplates:
            application/json: '{"error":"forbidden"}'
        MISSING_AUTHENTICATION_TOKEN:
          StatusCode: 404
          ResponseTemplates:
            application/json: '{"error":"route_not_found"}'
        DEFAULT_5XX:
          ResponseTemplates:
            application/json: '{"error":"internal","message":$context.error.messageString}'
        THROTTLED:
          StatusCode: 429
          ResponseParameters:
            Headers:
              Retry-After: "'1'"
          ResponseTemplates:
            application/json: '{"error":"throttled"}'
        QUOTA_EXCEEDED:
          StatusCode: 429
          ResponseTemplates:
            application/json: '{"error":"quota_exceeded"}'
  # Two at once, then one a second, five a month. Tagged as a filebatch plan would be.
  MeteredUsagePlan:
    Type: AWS::ApiGateway::UsagePlan
    Properties:
      UsagePlanName: !Sub "${AWS::StackName}-metered"
      Description: a small plan
      ApiStages:
        - ApiId: !Ref Api
          Stage: !Ref Api.Stage
      Throttle: {RateLimit: 1, BurstLimit: 2}
      Quota: {Limit: 5, Period: MONTH}
      Tags:
        - {Key: "filebatch:plan", Value: free}
  # The plan of the key the stack issues for itself.
  OwnUsagePlan:
    Type: AWS::ApiGateway::UsagePlan
    Properties:
      ApiStages:
        - ApiId:
            Ref: Api
          Stage:
            Ref: Api.Stage
      Tags:
        - {Key: "filebatch:plan", Value: enterprise}
  AuthFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn_auth
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn_echo
      MemorySize: 256
      Environment:
        Variables:
          GREETING: overridden-by-function
          ONLY_HERE: "42"
      Events:
        GetItem:
          Type: Api
          Properties:
            RestApiId: !Ref Api
            Path: /items/{item_id}
            Method: GET
        Boom:
          Type: Api
          Properties:
            RestApiId: !Ref Api
            Path: /boom
            Method: POST
        Metered:
          Type: Api
          Properties:
            RestApiId: !Ref Api
            Path: /metered/{item_id}
            Method: GET
            Auth:
              ApiKeyRequired: true
  ConsumerFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn_consumer
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt WorkQueue.Arn
            BatchSize: 10
            FunctionResponseTypes: [ReportBatchItemFailures]
            ScalingConfig:
              MaximumConcurrency: 2
  FlakyFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn_flaky
  FragileFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn_fragile
      Timeout: 1
  HeldFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn_held
      ReservedConcurrentExecutions: !Ref HeldReservation
  HeldMachine:
    Type: AWS::Serverless::StateMachine
    Properties:
      Name: !Sub "${AWS::StackName}-held"
      DefinitionUri: held.asl.json
      DefinitionSubstitutions:
        HeldFunctionArn: !GetAtt HeldFunction.Arn
  Machine:
    Type: AWS::Serverless::StateMachine
    Properties:
      Name: !Sub "${AWS::StackName}-machine"
      DefinitionUri: machine.asl.json
      DefinitionSubstitutions:
        FlakyFunctionArn: !GetAtt FlakyFunction.Arn
Outputs:
  QueueUrl:
    Value: !Ref WorkQueue
  MachineArn:
    Value: !Ref Machine
  HeldMachineArn:
    Value: !Ref HeldMachine
  MeteredPlanId:
    Value: !Ref MeteredUsagePlan
  StageName:
    Value: !Sub "${Api.Stage}"
"""

MACHINE = {
    "StartAt": "CallFlaky",
    "States": {
        "CallFlaky": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {
                "FunctionName": "${FlakyFunctionArn}",
                "Payload": {"run.$": "$.run", "attempt.$": "$$.State.RetryCount"},
            },
            "Retry": [
                {
                    "ErrorEquals": ["MyRetryableError"],
                    "IntervalSeconds": 1,
                    "MaxAttempts": 2,
                    "BackoffRate": 1,
                }
            ],
            "Catch": [{"ErrorEquals": ["MyRetryableError"], "ResultPath": "$.error", "Next": "Caught"}],
            "End": True,
        },
        "Caught": {"Type": "Pass", "End": True},
    },
}

# A Task on the function with reserved concurrency; what Lambda refuses is caught by its error name.
HELD_MACHINE = {
    "StartAt": "CallHeld",
    "States": {
        "CallHeld": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "${HeldFunctionArn}", "Payload": {}},
            "Catch": [
                {
                    "ErrorEquals": ["Lambda.TooManyRequestsException"],
                    "ResultPath": "$.error",
                    "Next": "Refused",
                }
            ],
            "End": True,
        },
        "Refused": {"Type": "Pass", "End": True},
    },
}

HANDLERS = {
    "layer/shared_util.py": """
        def shout(text):
            return text.upper()
    """,
    "fn_auth/app.py": """
        def lambda_handler(event, context):
            token = event["authorizationToken"].split(" ", 1)[1]
            if token == "nobody":
                raise Exception("Unauthorized")
            effect = "Deny" if token == "deny" else "Allow"
            return {
                "principalId": "user-" + token,
                "policyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Action": "execute-api:Invoke", "Effect": effect, "Resource": event["methodArn"]}
                    ],
                },
                "context": {"tenant": "t-" + token, "admin": False, "level": 3},
                # The API key the request is metered under (the Api's ApiKeySourceType is AUTHORIZER).
                "usageIdentifierKey": "usage-key-for-user-" + token,
            }
    """,
    "fn_echo/app.py": """
        import importlib.util
        import os
        import shared_util

        def lambda_handler(event, context):
            if event.get("resource") == "/boom":
                raise RuntimeError("kaboom")
            return {
                "statusCode": 200,
                "headers": {"X-Echo": shared_util.shout("ok")},
                "body": __import__("json").dumps({
                    "env": dict(os.environ),
                    "event": event,
                    "tooling_importable": importlib.util.find_spec("filebatch_local") is not None,
                    "context": {
                        "function_name": context.function_name,
                        "memory_limit_in_mb": context.memory_limit_in_mb,
                        "aws_request_id": context.aws_request_id,
                        "remaining_ms": context.get_remaining_time_in_millis(),
                    },
                }),
            }
    """,
    "fn_consumer/app.py": """
        import json
        import os
        import boto3

        def lambda_handler(event, context):
            table = boto3.resource("dynamodb").Table(os.environ["TABLE_NAME"])
            failures = []
            for record in event["Records"]:
                count = record["attributes"]["ApproximateReceiveCount"]
                item = {"pk": "sqs#" + record["body"], "sk": count, "record": json.dumps(record)}
                table.put_item(Item=item)
                if record["body"].startswith("fail"):
                    failures.append({"itemIdentifier": record["messageId"]})
            return {"batchItemFailures": failures}
    """,
    "fn_flaky/app.py": """
        import os
        import boto3

        class MyRetryableError(Exception):
            pass

        def lambda_handler(event, context):
            table = boto3.resource("dynamodb").Table(os.environ["TABLE_NAME"])
            table.put_item(Item={"pk": "flaky#" + event["run"], "sk": str(event["attempt"])})
            raise MyRetryableError("try again later")
    """,
    "fn_held/app.py": """
        import os
        import time
        import boto3

        def lambda_handler(event, context):
            # With "hold": says it started, then runs until the test writes the release item.
            table = boto3.resource("dynamodb").Table(os.environ["TABLE_NAME"])
            hold = event.get("hold")
            if hold:
                table.put_item(Item={"pk": "held#" + hold, "sk": "started"})
                key = {"pk": "held#" + hold, "sk": "release"}
                while "Item" not in table.get_item(Key=key, ConsistentRead=True):
                    time.sleep(0.05)
            return {"held": hold}
    """,
    "fn_fragile/app.py": """
        import os
        import time

        def lambda_handler(event, context):
            if event.get("sleep"):
                time.sleep(event["sleep"])
            if event.get("exit"):
                os._exit(event["exit"])
            if event.get("allocate_mb"):
                block = bytearray(event["allocate_mb"] * 1024 * 1024)
                block[::4096] = b"x" * len(block[::4096])  # touch every page: resident, not just reserved
            return {"pid": os.getpid()}
    """,
}


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Poll until `condition()` is truthy (returns it) or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(interval)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("throwaway-project")
    (root / "template.yaml").write_text(TEMPLATE)
    (root / "machine.asl.json").write_text(json.dumps(MACHINE, indent=2))
    (root / "held.asl.json").write_text(json.dumps(HELD_MACHINE, indent=2))
    for relative, source in HANDLERS.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root


@pytest.fixture(scope="module")
def stack(project: Path) -> Iterator[LocalStack]:
    overrides = {"Greeting": "bonjour", "HeldReservation": "1"}
    with LocalStack(project, api_port=0, parameter_overrides=overrides) as started:
        yield started


def items(stack: LocalStack, prefix: str) -> list[dict[str, Any]]:
    table = stack.physical_ids["Table"]
    found = stack.client("dynamodb").scan(TableName=table)["Items"]
    return [
        {k: next(iter(v.values())) for k, v in item.items()}
        for item in found
        if item["pk"]["S"].startswith(prefix)
    ]


def test_stack_file_lists_urls_key_and_resolved_outputs(stack: LocalStack, project: Path) -> None:
    # Given a started stack
    # When the key file is read
    document = json.loads((project / ".local" / "stack.json").read_text())
    # Then it points at the local endpoints, holds an API key for tenant "local" and the outputs
    assert document["api_url"] == stack.api_url and stack.api_url.startswith("http://127.0.0.1:")
    assert document["moto_endpoint"] == stack.moto_endpoint
    assert document["api_key"]
    assert document["outputs"]["QueueUrl"] == f"{stack.moto_endpoint}/123456789012/filebatch-local-WorkQueue"
    assert document["outputs"]["MachineArn"].endswith(":stateMachine:filebatch-local-machine")


def test_environments_are_started_ahead_as_the_template_lets_them_run_at_once(stack: LocalStack) -> None:
    # Given a started stack whose SQS consumer has MaximumConcurrency 2 (before any message)
    # When its environments started ahead are up
    assert stack.wait_warm(timeout_s=120)
    started = {logical_id: count for logical_id, (count, _) in stack.cpu_seconds_by_function().items()}
    # Then the consumer has one per concurrent batch, every other function one
    assert stack.environments_ahead["ConsumerFunction"] == 2
    assert started["ConsumerFunction"] == 2
    assert {started[logical_id] for logical_id in started if logical_id != "ConsumerFunction"} == {1}


def test_handler_environment_comes_from_the_template(stack: LocalStack) -> None:
    # Given the EchoFunction's Globals + function variables, with Greeting overridden to "bonjour"
    # When the function is invoked directly through its worker pool
    result = stack.invoke("EchoFunction", {"resource": "/items/{item_id}"})
    body = json.loads(result.payload["body"])
    env = body["env"]
    # Then the function-level value wins over Globals, conditions and parameters are resolved
    assert not result.function_error
    assert env["GREETING"] == "overridden-by-function"
    assert env["LANGUAGE"] == "fr"
    assert env["ONLY_HERE"] == "42"
    assert env["TABLE_NAME"] == stack.physical_ids["Table"] == "filebatch-local-Table"
    # And the Lambda runtime variables point the handler's boto3 at the local endpoint
    assert env["AWS_ENDPOINT_URL"] == stack.moto_endpoint
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "filebatch-local-EchoFunction"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env == {
        **stack.function_env("EchoFunction"),
        **{k: v for k, v in env.items() if k.startswith("LC_")},
    }
    assert body["context"]["memory_limit_in_mb"] == 256
    # And its imports are its code, its layers and the runtime's packages only (shared_util comes
    # from the layer; the local tooling on this venv's path is not visible, as on Lambda)
    assert result.payload["headers"]["X-Echo"] == "OK"
    assert body["tooling_importable"] is False
    assert 0 < body["context"]["remaining_ms"] <= 10_000
    # And the AuthFunction, which has no function-level variables, gets the Globals value
    assert stack.function_env("AuthFunction")["GREETING"] == "bonjour"


def test_sqs_event_source_delivers_and_keeps_only_failed_messages(stack: LocalStack) -> None:
    # Given a queue with an SQS event source that reports partial batch failures (and a warm
    # consumer: a cold start longer than the 1 s VisibilityTimeout would redeliver, as on AWS)
    sqs = stack.client("sqs")
    queue_url = stack.physical_ids["WorkQueue"]
    dlq_url = stack.physical_ids["DeadLetterQueue"]
    assert not stack.invoke("ConsumerFunction", {"Records": []}).function_error
    # When one good and one failing message are sent
    sqs.send_message_batch(
        QueueUrl=queue_url,
        Entries=[
            {
                "Id": "1",
                "MessageBody": "good-1",
                "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "test"}},
            },
            {"Id": "2", "MessageBody": "fail-1"},
        ],
    )
    # Then the good one is delivered in Lambda's SQS record shape
    good = wait_for(lambda: items(stack, "sqs#good-1"))
    record = json.loads(good[0]["record"])
    assert set(record) >= {
        "messageId", "receiptHandle", "body", "attributes", "messageAttributes", "md5OfBody",
        "eventSource", "eventSourceARN", "awsRegion",
    }  # fmt: skip
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == "arn:aws:sqs:us-east-1:123456789012:filebatch-local-WorkQueue"
    assert record["awsRegion"] == "us-east-1"
    assert set(record["attributes"]) >= {
        "ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp",
    }  # fmt: skip
    assert record["messageAttributes"]["kind"]["stringValue"] == "test"
    assert record["messageAttributes"]["kind"]["dataType"] == "String"
    # And the failed one stays on the queue: it comes back after the VisibilityTimeout (1 s), and
    # after maxReceiveCount (2) receives the queue's RedrivePolicy moves it to the dead-letter queue
    wait_for(lambda: {i["sk"] for i in items(stack, "sqs#fail-1")} == {"1", "2"})
    dead = wait_for(
        lambda: sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1, MaxNumberOfMessages=10).get(
            "Messages"
        )
    )
    assert [m["Body"] for m in dead] == ["fail-1"]
    # And the good one was deleted: nothing is left on the queue, visible or in flight
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_state_machine_retries_and_catches_the_handler_exception_class(stack: LocalStack) -> None:
    # Given a Task whose handler always raises MyRetryableError, with Retry (MaxAttempts 2) and a
    # Catch on that error name
    sfn = stack.client("stepfunctions")
    # When an execution runs
    execution = sfn.start_execution(
        stateMachineArn=stack.outputs["MachineArn"], name="run-1", input=json.dumps({"run": "r1"})
    )["executionArn"]
    described = wait_for(
        lambda: (d := sfn.describe_execution(executionArn=execution))["status"] != "RUNNING" and d, timeout=30
    )
    # Then it was tried three times, $$.State.RetryCount counting 0, 1, 2, and then caught
    assert described["status"] == "SUCCEEDED"
    assert sorted(i["sk"] for i in items(stack, "flaky#r1")) == ["0", "1", "2"]
    error = json.loads(described["output"])["error"]
    assert error["Error"] == "MyRetryableError"
    assert json.loads(error["Cause"])["errorMessage"] == "try again later"


def test_invocations_over_the_reserved_concurrency_are_throttled_as_lambda_does(stack: LocalStack) -> None:
    # Given a function whose ReservedConcurrentExecutions is a parameter, overridden to 1, and one
    # invocation of it running (held until the test releases it)
    throttled_before = stack.throttles("HeldFunction")
    with ThreadPoolExecutor(max_workers=1) as pool:
        held = pool.submit(stack.invoke, "HeldFunction", {"hold": "h1"})
        wait_for(lambda: items(stack, "held#h1"))
        # When it is invoked directly, and by a state machine's Task, meanwhile
        refused = stack.invoke("HeldFunction", {})
        sfn = stack.client("stepfunctions")
        execution = sfn.start_execution(stateMachineArn=stack.outputs["HeldMachineArn"], name="held-1")
        described = wait_for(
            lambda: (
                (d := sfn.describe_execution(executionArn=execution["executionArn"]))["status"] != "RUNNING"
                and d
            ),
            timeout=30,
        )
        # ... and then the running one is released
        table = stack.physical_ids["Table"]
        stack.client("dynamodb").put_item(
            TableName=table, Item={"pk": {"S": "held#h1"}, "sk": {"S": "release"}}
        )
        finished = held.result(timeout=30)
    # Then the direct call is refused without running: Invoke's 429 TooManyRequestsException body
    assert refused.throttled and not refused.function_error
    assert refused.payload == {
        "Type": "User",
        "message": "Rate Exceeded.",
        "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
    }
    # And Step Functions saw Lambda's own error, by the name its Retry and Catch match on AWS
    error = json.loads(described["output"])["error"]
    assert described["status"] == "SUCCEEDED"
    assert error["Error"] == "Lambda.TooManyRequestsException"
    assert "Status Code: 429" in error["Cause"] and error["Cause"].startswith("Rate Exceeded.")
    # And the held invocation was not disturbed; the function never ran two at once, and Lambda's
    # Throttles metric counted both refusals
    assert not finished.function_error and finished.payload == {"held": "h1"}
    assert stack.peak_concurrent_executions("HeldFunction") == 1
    assert stack.throttles("HeldFunction") == throttled_before + 2
    # And once the reservation is free again, the next invocation runs, and moto reports it
    assert not stack.invoke("HeldFunction", {}).throttled
    concurrency = stack.client("lambda").get_function_concurrency(FunctionName="filebatch-local-HeldFunction")
    assert concurrency["ReservedConcurrentExecutions"] == 1


def test_a_throttled_sqs_batch_is_left_on_the_queue_whole() -> None:
    # Given a batch of two messages whose invocation Lambda throttled (it never ran)
    records = [{"messageId": "m1"}, {"messageId": "m2"}]
    throttled = InvokeResult(json.dumps(THROTTLED_BODY), function_error=False, throttled=True)
    # When the event source decides what to delete
    # Then nothing is: every message comes back after the VisibilityTimeout, as on AWS
    assert failed_message_ids(throttled, records, partial=True) == {"m1", "m2"}


def test_a_poller_whose_queue_is_gone_stops_quietly() -> None:
    # Given an event source whose queue no longer exists (another stack reset moto's shared state)
    from botocore.exceptions import ClientError

    class GoneQueue:
        def receive_message(self, **_: Any) -> dict[str, Any]:
            error = {"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue", "Message": "gone"}}
            raise ClientError(error, "ReceiveMessage")

    invoked: list[Any] = []
    spec = SqsSourceSpec("F", "E", "Q", "arn:aws:sqs:us-east-1:123456789012:q", 10, 0.0, True, 1, True)
    source = SqsEventSource(
        spec, "http://localhost/q", lambda f, e: invoked.append(e), GoneQueue, "us-east-1", max_concurrency=1
    )
    # When it starts polling
    source.start()
    # Then its poller ends by itself (no retry loop logging every second), having invoked nothing
    source._threads[0].join(timeout=5)
    assert not source._threads[0].is_alive() and invoked == []


def get(stack: LocalStack, path: str, token: str | None = None) -> requests.Response:
    headers = {"Authorization": token} if token else {}
    return requests.get(f"{stack.api_url}{path}", headers=headers, timeout=20)


def test_api_without_token_is_401_without_invoking_the_authorizer(stack: LocalStack) -> None:
    # Given a route behind a TOKEN authorizer
    # When it is called without the header, or with a token failing the ValidationExpression
    missing = get(stack, "/items/42")
    malformed = get(stack, "/items/42", "Token abc")
    # Then API Gateway's UNAUTHORIZED response from the template is returned
    for response in (missing, malformed):
        assert response.status_code == 401
        assert response.json() == {"error": "unauthorized"}


def test_api_authorizer_unauthorized_error_is_401(stack: LocalStack) -> None:
    # Given an authorizer that raises Exception("Unauthorized") for this token
    # When the route is called
    response = get(stack, "/items/42", "Bearer nobody")
    # Then the answer is 401
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized"}


def test_api_deny_policy_is_403(stack: LocalStack) -> None:
    # Given an authorizer returning a Deny policy for this token
    # When the route is called
    response = get(stack, "/items/42", "Bearer deny")
    # Then the ACCESS_DENIED gateway response is returned
    assert response.status_code == 403
    assert response.json() == {"error": "forbidden"}


@pytest.mark.parametrize("path", ["/items/42", "/test/items/42"])
def test_api_allow_passes_the_authorizer_context_to_the_handler(stack: LocalStack, path: str) -> None:
    # Given an authorizer allowing this token with a context map
    # When the route is called (with or without the stage prefix)
    response = get(stack, f"{path}?q=1&q=2", "Bearer alice")
    # Then the handler's proxy response comes back, and it got a REST proxy event
    assert response.status_code == 200
    assert response.headers["X-Echo"] == "OK"
    event = response.json()["event"]
    assert event["resource"] == "/items/{item_id}"
    assert event["path"] == "/items/42"
    assert event["httpMethod"] == "GET"
    assert event["pathParameters"] == {"item_id": "42"}
    assert event["queryStringParameters"] == {"q": "2"}
    assert event["multiValueQueryStringParameters"] == {"q": ["1", "2"]}
    context = event["requestContext"]
    assert context["stage"] == "test"
    assert context["path"] == "/test/items/42"
    assert context["resourcePath"] == "/items/{item_id}"
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["authorizer"]["principalId"] == "user-alice"
    assert context["authorizer"]["tenant"] == "t-alice"
    assert context["authorizer"]["admin"] == "false"
    assert context["authorizer"]["level"] == "3"


def test_unknown_route_is_the_missing_authentication_token_response(stack: LocalStack) -> None:
    # Given no route for this path, or for this method on a known path
    # When they are called (even with a valid token)
    unknown_path = get(stack, "/nope", "Bearer alice")
    unknown_method = requests.delete(f"{stack.api_url}/items/42", timeout=10)
    # Then both get the template's MISSING_AUTHENTICATION_TOKEN response
    for response in (unknown_path, unknown_method):
        assert response.status_code == 404
        assert response.json() == {"error": "route_not_found"}


def test_unhandled_handler_error_is_502_through_default_5xx(stack: LocalStack) -> None:
    # Given a route whose handler raises
    # When it is called
    response = requests.post(f"{stack.api_url}/boom", headers={"Authorization": "Bearer alice"}, timeout=20)
    # Then API Gateway's 502 "Internal server error" goes through the DEFAULT_5XX template
    assert response.status_code == 502
    assert response.json() == {"error": "internal", "message": "Internal server error"}


def test_direct_invoke_reports_exceptions_like_lambda(stack: LocalStack) -> None:
    # Given a handler that raises a custom exception class
    # When it is invoked directly
    result = stack.invoke("FlakyFunction", {"run": "direct", "attempt": 0})
    # Then the result is Lambda's error payload, flagged as a function error
    assert result.function_error
    assert result.payload["errorType"] == "MyRetryableError"
    assert result.payload["errorMessage"] == "try again later"
    assert any("lambda_handler" in frame for frame in result.payload["stackTrace"])


def test_timeout_and_crash_are_reported_and_the_environment_replaced(stack: LocalStack) -> None:
    # Given a function with a 1 s Timeout, warm
    first = stack.invoke("FragileFunction", {}).payload["pid"]
    # When a call runs past the Timeout, and another makes the runtime exit
    timed_out = stack.invoke("FragileFunction", {"sleep": 5})
    crashed = stack.invoke("FragileFunction", {"exit": 3})
    after = stack.invoke("FragileFunction", {})
    # Then both are function errors shaped like Lambda's, and a fresh environment serves the next call
    assert timed_out.function_error and timed_out.payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in timed_out.payload["errorMessage"]
    assert crashed.function_error and crashed.payload["errorType"] == "Runtime.ExitError"
    assert not after.function_error and after.payload["pid"] != first


def test_concurrent_counter_updates_are_not_lost(stack: LocalStack) -> None:
    # Given one counter item, and the handlers' way of counting (ADD), from 16 threads at once
    table = stack.physical_ids["Table"]
    key = {"pk": {"S": "counter"}, "sk": {"S": "c"}}

    def add(_: int) -> None:
        dynamodb = stack.client("dynamodb")
        for _ in range(12):
            dynamodb.update_item(
                TableName=table,
                Key=key,
                UpdateExpression="ADD #n :one",
                ExpressionAttributeNames={"#n": "n"},
                ExpressionAttributeValues={":one": {"N": "1"}},
            )

    # When they all update it
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(add, range(16)))
    # Then every update counted (moto's DynamoDB backend is serialised by the local stack)
    item = stack.client("dynamodb").get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]
    assert item["n"]["N"] == "192"


def test_max_memory_used_is_the_environments_peak_rss_as_lambda_reports_it(
    stack: LocalStack, project: Path
) -> None:
    # Given a fresh environment (the previous one is made to exit) that has done nothing yet
    stack.invoke("FragileFunction", {"exit": 1})
    idle = stack.invoke("FragileFunction", {})
    # When an invocation allocates and touches 200 MB
    busy = stack.invoke("FragileFunction", {"allocate_mb": 200})
    # Then its Max Memory Used is 200 MB above the idle figure, and the REPORT line says so. Both are
    # whole MB, each rounded down, and the block may reuse a few pages the idle environment already
    # had resident: a few MB of slack (a run measured 212 after 13).
    assert idle.max_memory_used_mb is not None and busy.max_memory_used_mb is not None
    assert busy.max_memory_used_mb >= idle.max_memory_used_mb + 195
    assert stack.peak_memory_used_mb("FragileFunction") >= busy.max_memory_used_mb
    log = (stack.state_dir / "logs" / "FragileFunction.log").read_text()
    assert f"Max Memory Used: {busy.max_memory_used_mb} MB" in log


# --- usage plans ------------------------------------------------------------------------------
def add_usage_key(stack: LocalStack, token: str, plan_logical_id: str | None) -> str:
    """The API key the test authorizer names for `token`, in that usage plan (None: in none)."""
    apigateway = stack.client("apigateway")
    key = apigateway.create_api_key(name=f"key-of-{token}", value=f"usage-key-for-user-{token}", enabled=True)
    if plan_logical_id is not None:
        usage_plan_id = stack.physical_ids[plan_logical_id]
        apigateway.create_usage_plan_key(usagePlanId=usage_plan_id, keyId=key["id"], keyType="API_KEY")
    return str(key["id"])


class Clock:
    """Epoch seconds that move only when told to."""

    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def metered(stack: LocalStack) -> Iterator[tuple[ApiGateway, Clock]]:
    """A gateway of its own on the stack's routes, functions and moto, whose usage plans run on a
    clock the test moves (a minute before a month ends)."""
    assert stack.template is not None
    clock = Clock(datetime(2026, 1, 31, 23, 59, tzinfo=UTC))
    api = stack.template.apis()["Api"]
    meter = UsagePlanMeter(
        stage_usage_keys(stack.client("apigateway"), api_id=api.api_id, stage=api.stage), clock=clock
    )
    gateway = ApiGateway(
        stack.template.apis(),
        stack.template.routes(),
        stack.invoke,
        region=stack.template.region,
        account_id=stack.template.account_id,
        port=0,
        usage_plans={"Api": meter},
    )
    gateway.start()
    try:
        yield gateway, clock
    finally:
        gateway.stop()


def call(gateway: ApiGateway, path: str, token: str) -> requests.Response:
    return requests.get(f"{gateway.url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=20)


def test_the_template_reads_api_key_settings_and_sam_stage_references(tmp_path: Path) -> None:
    # Given an Api requiring API keys for all its methods, one event opting out, and the forms of
    # SAM's stage reference a template can use
    (tmp_path / "template.yaml").write_text(
        textwrap.dedent(
            """\
            Transform: AWS::Serverless-2016-10-31
            Resources:
              Api:
                Type: AWS::Serverless::Api
                Properties:
                  StageName: v1
                  Auth: {ApiKeyRequired: true}
              Fn:
                Type: AWS::Serverless::Function
                Properties:
                  CodeUri: fn
                  Handler: app.handler
                  Runtime: python3.13
                  Events:
                    Keyed: {Type: Api, Properties: {RestApiId: !Ref Api, Path: /a, Method: GET}}
                    Open:
                      Type: Api
                      Properties: {RestApiId: !Ref Api, Path: /b, Method: GET, Auth: {ApiKeyRequired: false}}
              Plan:
                Type: AWS::ApiGateway::UsagePlan
                Properties:
                  ApiStages: [{ApiId: !Ref Api, Stage: !Ref Api.Stage}]
            Outputs:
              Long: {Value: {Ref: Api.Stage}}
              Sub: {Value: !Sub "${Api}/${Api.Stage}"}
              PlanRef: {Value: !Ref Plan}
              PlanId: {Value: !GetAtt Plan.Id}
            """
        )
    )
    template = Template(tmp_path / "template.yaml")
    # When it is read
    api = template.apis()["Api"]
    routes = {route.path: route for route in template.routes()}
    outputs = template.outputs()
    # Then the Api's ApiKeyRequired is each route's default, and the event's own setting wins
    assert api.api_key_required is True and api.api_key_source == "HEADER"
    assert routes["/a"].api_key_required is True
    assert routes["/b"].api_key_required is False
    # And Api.Stage is the stage name in Ref (both forms) and in Sub; a usage plan's Ref is its id
    assert outputs["Long"] == "v1"
    assert outputs["Sub"] == f"{api.api_id}/v1"
    assert outputs["PlanRef"] == outputs["PlanId"] == template.usage_plan_id("Plan")
    assert template.properties("Plan")["ApiStages"] == [{"ApiId": api.api_id, "Stage": "v1"}]


def test_usage_plans_are_created_from_the_template_with_the_id_ref_gives(stack: LocalStack) -> None:
    # Given the started stack
    apigateway = stack.client("apigateway")
    # When its usage plans are listed in (moto's) API Gateway
    plans = {plan["name"]: plan for plan in apigateway.get_usage_plans()["items"]}
    # Then each has the template's properties, the stage of the local API, and the id of its Ref
    metered = plans["filebatch-local-metered"]
    assert metered["id"] == stack.physical_ids["MeteredUsagePlan"] == stack.outputs["MeteredPlanId"]
    assert metered["description"] == "a small plan"
    assert metered["apiStages"] == [{"apiId": stack.physical_ids["Api"], "stage": stack.outputs["StageName"]}]
    assert stack.outputs["StageName"] == "test"
    assert metered["throttle"] == {"rateLimit": 1.0, "burstLimit": 2}
    assert metered["quota"] == {"limit": 5, "period": "MONTH"}
    assert metered["tags"] == {"filebatch:plan": "free"}
    own = plans["filebatch-local-OwnUsagePlan"]
    assert own["id"] == stack.physical_ids["OwnUsagePlan"]
    assert "throttle" not in own and "quota" not in own
    # And the stack's own key was issued on the enterprise plan: its usage key is in that plan
    own_keys = apigateway.get_usage_plan_keys(usagePlanId=own["id"])["items"]
    assert stack.api_key is not None
    assert len(own_keys) == 1


def test_a_burst_is_throttled_with_retry_after_until_the_bucket_refills(
    stack: LocalStack, metered: tuple[ApiGateway, Clock]
) -> None:
    # Given a key in the metered plan (a bucket of 2, refilled at 1 a second), time standing still
    gateway, clock = metered
    key_id = add_usage_key(stack, "bursty", "MeteredUsagePlan")
    # When it sends three requests at the same instant
    first = [call(gateway, "/metered/1", "bursty") for _ in range(3)]
    # Then the burst passes, metered under the key, and the third is the THROTTLED response with
    # the template's Retry-After header
    assert [r.status_code for r in first] == [200, 200, 429]
    identity = first[0].json()["event"]["requestContext"]["identity"]
    assert identity["apiKeyId"] == key_id and identity["apiKey"] == "usage-key-for-user-bursty"
    assert first[2].json() == {"error": "throttled"}
    assert first[2].headers["Retry-After"] == "1"
    assert first[2].headers["x-amzn-ErrorType"] == "TooManyRequestsException"
    # When half a second passes, then another half
    clock.advance(0.5)
    half = call(gateway, "/metered/1", "bursty")
    clock.advance(0.5)
    refilled = [call(gateway, "/metered/1", "bursty") for _ in range(2)]
    # Then half a token is not enough, a whole one lets exactly one more request through
    assert half.status_code == 429
    assert [r.status_code for r in refilled] == [200, 429]


def test_the_monthly_quota_refuses_requests_until_the_next_month(
    stack: LocalStack, metered: tuple[ApiGateway, Clock]
) -> None:
    # Given a key in the metered plan (5 requests a month), sending one request a second
    gateway, clock = metered
    add_usage_key(stack, "thrifty", "MeteredUsagePlan")
    statuses = []
    for _ in range(6):
        response = call(gateway, "/metered/1", "thrifty")
        statuses.append(response.status_code)
        clock.advance(1.0)
    # Then the sixth request of the month is the QUOTA_EXCEEDED response
    assert statuses == [200] * 5 + [429]
    assert response.json() == {"error": "quota_exceeded"}
    assert "Retry-After" not in response.headers
    # And once the month is over (in UTC), requests pass again
    clock.advance(60)
    assert call(gateway, "/metered/1", "thrifty").status_code == 200


def test_a_key_in_no_usage_plan_of_the_stage_is_403(stack: LocalStack) -> None:
    # Given a key in the metered plan, an API key in no plan, and a token with no API key at all
    add_usage_key(stack, "member", "MeteredUsagePlan")
    add_usage_key(stack, "stranger", None)
    # When each calls the route that requires an API key, through the stack's own gateway
    member = get(stack, "/metered/1", "Bearer member")
    stranger = get(stack, "/metered/1", "Bearer stranger")
    keyless = get(stack, "/metered/1", "Bearer keyless")
    unauthenticated = get(stack, "/metered/1")
    # Then only the member passes; the others get INVALID_API_KEY (403, API Gateway's own body, as
    # the template sets none), after the authorizer (no token is still 401)
    assert member.status_code == 200
    for response in (stranger, keyless):
        assert response.status_code == 403
        assert response.json() == {"message": "Forbidden"}
        assert response.headers["x-amzn-ErrorType"] == "ForbiddenException"
    assert unauthenticated.status_code == 401


def test_routes_that_require_no_api_key_are_not_metered(
    stack: LocalStack, metered: tuple[ApiGateway, Clock]
) -> None:
    # Given a key in the metered plan (a bucket of 2), time standing still
    gateway, _ = metered
    add_usage_key(stack, "steady", "MeteredUsagePlan")
    # When it calls a route without ApiKeyRequired five times, then the metered route three times
    plain = [call(gateway, "/items/42", "steady") for _ in range(5)]
    metered_calls = [call(gateway, "/metered/1", "steady") for _ in range(3)]
    # Then the plain route took no tokens and no quota: it all passed, and the bucket was still full
    assert [r.status_code for r in plain] == [200] * 5
    assert "apiKeyId" not in plain[0].json()["event"]["requestContext"]["identity"]
    assert [r.status_code for r in metered_calls] == [200, 200, 429]
