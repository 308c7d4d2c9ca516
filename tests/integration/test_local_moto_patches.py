"""The local stack's fixes to moto keep DynamoDB's semantics (transactions still roll back whole) and
make the state machine's ResultWriter run as AWS runs it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from filebatch.models.domain import workflow_results_prefix
from filebatch_local.provision import install_moto_patches
from tests.conftest import PROJECT_ROOT


@pytest.fixture
def table() -> Iterator[Any]:
    install_moto_patches()
    with mock_aws():
        dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
        created = dynamodb.create_table(
            TableName="t",
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        created.put_item(Item={"pk": "b", "sk": "BATCH", "uploaded": 0})
        created.put_item(Item={"pk": "b", "sk": "FILE#1", "status": "uploaded"})
        yield created


def transact(table: Any, file_status_required: str) -> None:
    table.meta.client.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": "t", "Item": {"pk": "b", "sk": "NEW"}}},
            {
                "Update": {
                    "TableName": "t",
                    "Key": {"pk": "b", "sk": "BATCH"},
                    "UpdateExpression": "ADD uploaded :one",
                    "ExpressionAttributeValues": {":one": 1},
                }
            },
            {
                "Update": {
                    "TableName": "t",
                    "Key": {"pk": "b", "sk": "FILE#1"},
                    "UpdateExpression": "SET #s = :done",
                    "ConditionExpression": "#s = :required",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {":done": "completed", ":required": file_status_required},
                }
            },
        ]
    )


def test_a_cancelled_transaction_leaves_every_item_as_it_was(table: Any) -> None:
    # Given items before a transaction whose last condition fails
    # When it runs
    with pytest.raises(ClientError, match="TransactionCanceled"):
        transact(table, file_status_required="awaiting_upload")
    # Then the put did not happen and the applied update was rolled back
    assert "Item" not in table.get_item(Key={"pk": "b", "sk": "NEW"})
    assert table.get_item(Key={"pk": "b", "sk": "BATCH"})["Item"]["uploaded"] == 0
    assert table.get_item(Key={"pk": "b", "sk": "FILE#1"})["Item"]["status"] == "uploaded"


def test_a_successful_transaction_applies_every_item(table: Any) -> None:
    transact(table, file_status_required="uploaded")
    assert "Item" in table.get_item(Key={"pk": "b", "sk": "NEW"})
    assert table.get_item(Key={"pk": "b", "sk": "BATCH"})["Item"]["uploaded"] == 1
    assert table.get_item(Key={"pk": "b", "sk": "FILE#1"})["Item"]["status"] == "completed"


def test_the_result_writer_prefix_is_a_path_into_the_map_states_input() -> None:
    # Given the state machine's own ResultWriter (a per-batch Prefix.$ from the execution input) on a
    # Distributed Map whose items only pass through
    real = json.loads((PROJECT_ROOT / "statemachine" / "process_batch.asl.json").read_text())
    real_map = real["States"]["ProcessFiles"]
    bucket = "results-bucket"
    writer = json.loads(json.dumps(real_map["ResultWriter"]).replace("${UploadBucketName}", bucket))
    definition = {
        "StartAt": "ProcessFiles",
        "States": {
            "ProcessFiles": {
                "Type": "Map",
                "ItemReader": json.loads(
                    json.dumps(real_map["ItemReader"]).replace("${UploadBucketName}", bucket)
                ),
                "ItemSelector": {"file_id.$": "$$.Map.Item.Value.file_id"},
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "Pass",
                    "States": {"Pass": {"Type": "Pass", "End": True}},
                },
                "ResultWriter": writer,
                "ResultPath": None,
                "End": True,
            }
        },
    }
    install_moto_patches()
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="manifests/acme/b-1.json", Body=b'[{"file_id": "f00001"}]')
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        machine = sfn.create_state_machine(
            name="m", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/sfn"
        )
        # When an execution runs with a batch's input
        execution = sfn.start_execution(
            stateMachineArn=machine["stateMachineArn"],
            input=json.dumps(
                {"tenant_id": "acme", "batch_id": "b-1", "manifest_key": "manifests/acme/b-1.json"}
            ),
        )
        for _ in range(100):
            described = sfn.describe_execution(executionArn=execution["executionArn"])
            if described["status"] != "RUNNING":
                break
            time.sleep(0.1)
        # Then it succeeds, and the results are under the batch's own prefix (a map run id folder)
        assert described["status"] == "SUCCEEDED", described.get("cause")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="workflow-results/")["Contents"]]
        assert len(keys) == 1
        assert keys[0].startswith(workflow_results_prefix("acme", "b-1"))
        assert keys[0].endswith("/manifest.json")
