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
from tests.conftest import PROJECT_ROOT, load_event


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


def finished(sfn: Any, execution_arn: str) -> dict[str, Any]:
    """The execution's description once it is no longer RUNNING (15 s at most)."""
    for _ in range(300):
        described: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.05)
    raise AssertionError("the execution did not end")


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
        described = finished(sfn, execution["executionArn"])
        # Then it succeeds, and the results are under the batch's own prefix (a map run id folder)
        assert described["status"] == "SUCCEEDED", described.get("cause")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="workflow-results/")["Contents"]]
        assert len(keys) == 1
        assert keys[0].startswith(workflow_results_prefix("acme", "b-1"))
        assert keys[0].endswith("/manifest.json")


# ------------------------------------------------------------------ ItemBatcher and EXPRESS children
REAL_ASL = json.loads((PROJECT_ROOT / "statemachine" / "process_batch.asl.json").read_text())
BUCKET = "batcher-bucket"


def real_state(name: str, **substitutions: str) -> dict[str, Any]:
    """A top-level state of the real ASL, its ${...} placeholders substituted as CloudFormation does."""
    text = json.dumps(REAL_ASL["States"][name])
    for key, value in {"UploadBucketName": BUCKET, **substitutions}.items():
        text = text.replace("${" + key + "}", value)
    state: dict[str, Any] = json.loads(text)
    return state


def run(definition: dict[str, Any], execution_input: dict[str, Any], items: list[Any]) -> dict[str, Any]:
    """Create the machine, put the manifest, run one execution to its end; its description."""
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="manifests/acme/b-1.json", Body=json.dumps(items).encode())
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    machine = sfn.create_state_machine(
        name="m", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/sfn"
    )
    execution = sfn.start_execution(
        stateMachineArn=machine["stateMachineArn"], name="b-1", input=json.dumps(execution_input)
    )
    return finished(sfn, execution["executionArn"])


def child_outputs_of(
    item_batcher: dict[str, Any], items: list[Any], item_selector: dict[str, Any] | None = None
) -> list[Any]:
    """The inputs the Distributed Map's children got (each child passes its input through)."""
    process_files = real_state("ProcessFiles")
    process_files["ItemBatcher"] = item_batcher
    if item_selector is not None:
        process_files["ItemSelector"] = item_selector
    process_files["ItemProcessor"] = {
        "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
        "StartAt": "Child",
        "States": {"Child": {"Type": "Pass", "End": True}},
    }
    process_files.update({"ResultPath": "$.children", "End": True})
    for key in ("ResultWriter", "Catch", "Next"):
        process_files.pop(key)
    definition = {"StartAt": "ProcessFiles", "States": {"ProcessFiles": process_files}}
    execution_input = {
        "tenant_id": "acme",
        "batch_id": "b-1",
        "manifest_key": "manifests/acme/b-1.json",
        "instructions": {"language": "en"},
        "dedup_fingerprint": "f" * 32,
        "batching": {"max_items_per_batch": 3},
    }
    install_moto_patches()
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        described = run(definition, execution_input, items)
    assert described["status"] == "SUCCEEDED", described.get("cause")
    children: list[Any] = json.loads(described["output"])["children"]
    return children


def test_the_real_item_batcher_hands_each_child_up_to_max_items_per_batch_files_and_the_batch_input() -> None:
    # Given the state machine's own ItemBatcher (MaxItemsPerBatchPath, a BatchInput from the
    # execution input) over a manifest of 7 files, and an execution input asking for 3 per batch
    files = [{"file_id": f"f{n:05d}"} for n in range(1, 8)]
    # When the Distributed Map runs
    children = child_outputs_of(real_state("ProcessFiles")["ItemBatcher"], files)
    # Then the children got the files in order, 3, 3 and 1, each with the batch's own fields
    batch_input = {
        "tenant_id": "acme",
        "batch_id": "b-1",
        "instructions": {"language": "en"},
        "dedup_fingerprint": "f" * 32,
    }
    assert children == [
        {"Items": files[0:3], "BatchInput": batch_input},
        {"Items": files[3:6], "BatchInput": batch_input},
        {"Items": files[6:7], "BatchInput": batch_input},
    ]


def test_a_batch_stops_at_max_input_bytes_and_the_item_selector_shapes_each_item_first() -> None:
    # Given items of 2 sizes, an ItemSelector adding the item's index, at most 10 items and 60 bytes
    items = [{"v": "x" * 20}, {"v": "y"}, {"v": "z"}, {"v": "w" * 20}]
    selector = {"v.$": "$$.Map.Item.Value.v", "i.$": "$$.Map.Item.Index"}
    # When the Map runs
    children = child_outputs_of({"MaxItemsPerBatch": 10, "MaxInputBytesPerBatch": 60}, items, selector)
    # Then each child's input stays within 60 bytes, items whole and in order, selected first
    selected = [{"v": item["v"], "i": index} for index, item in enumerate(items)]
    assert [child["Items"] for child in children] == [selected[0:1], selected[1:3], selected[3:4]]
    assert all(len(json.dumps(child, separators=(",", ":"))) <= 60 for child in children)
    assert all("BatchInput" not in child for child in children)


@pytest.mark.parametrize(
    "item_batcher",
    [
        {"MaxItemsPerBatch": 2, "MaxItemsPerBatchPath": "$.n"},
        {"MaxItemsPerBatch": 0},
        {"MaxItemsPerBatch": 2, "Unknown": 1},
    ],
)
def test_an_item_batcher_aws_would_refuse_is_refused_at_create(item_batcher: dict[str, Any]) -> None:
    process_files = real_state("ProcessFiles", MaxItemsPerBatch="20")
    process_files["ItemBatcher"] = item_batcher
    process_files.update({"End": True})
    process_files.pop("Next")
    process_files.pop("Catch")
    install_moto_patches()
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        # (moto answers an invalid definition with an empty error code and the parser's message)
        with pytest.raises(ClientError, match=r"ASLParserException ItemBatcher: "):
            sfn.create_state_machine(
                name="m",
                definition=json.dumps({"StartAt": "ProcessFiles", "States": {"ProcessFiles": process_files}}),
                roleArn="arn:aws:iam::123456789012:role/sfn",
            )


def test_an_item_batcher_the_patch_cannot_attach_is_refused_not_ignored() -> None:
    # Given the real Distributed Map (ItemBatcher, EXPRESS children) inside a Parallel's branch, where
    # the patch does not look for Maps
    process_files = real_state("ProcessFiles", MaxItemsPerBatch="20")
    process_files.update({"End": True})
    process_files.pop("Next")
    process_files.pop("Catch")
    parallel = {
        "Type": "Parallel",
        "Branches": [{"StartAt": "ProcessFiles", "States": {"ProcessFiles": process_files}}],
        "End": True,
    }
    install_moto_patches()
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        # When it is created, then it is refused, naming the Map, rather than run without its batcher
        with pytest.raises(ClientError, match=r"Both/ProcessFiles: ItemBatcher or EXPRESS children"):
            sfn.create_state_machine(
                name="m",
                definition=json.dumps({"StartAt": "Both", "States": {"Both": parallel}}),
                roleArn="arn:aws:iam::123456789012:role/sfn",
            )


@pytest.mark.parametrize(("execution_type", "timed_out"), [("EXPRESS", True), ("STANDARD", False)])
def test_an_express_child_is_cut_at_its_time_limit_and_a_standard_one_is_not(
    execution_type: str, timed_out: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given children that wait 1 s, then mark their output, and an Express limit shortened to 0.2 s
    from filebatch_local import provision

    monkeypatch.setattr(provision, "EXPRESS_CHILD_LIMIT_S", 0.2)
    process_files = real_state("ProcessFiles")
    process_files["ItemProcessor"] = {
        "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": execution_type},
        "StartAt": "Wait",
        "States": {
            "Wait": {"Type": "Wait", "Seconds": 1, "Next": "Done"},
            "Done": {"Type": "Pass", "Result": "done", "End": True},
        },
    }
    process_files.update({"ResultPath": "$.children", "End": True})
    for key in ("ResultWriter", "Catch", "Next", "ItemBatcher"):
        process_files.pop(key)
    install_moto_patches()
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        # When a batch of one file runs
        described = run(
            {"StartAt": "ProcessFiles", "States": {"ProcessFiles": process_files}},
            {"tenant_id": "acme", "batch_id": "b-1", "manifest_key": "manifests/acme/b-1.json"},
            [{"file_id": "f00001"}],
        )
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        map_run = sfn.list_map_runs(executionArn=described["executionArn"])["mapRuns"][0]
        counts = sfn.describe_map_run(mapRunArn=map_run["mapRunArn"])["executionCounts"]
    # Then the Express child timed out without an output (its state after the wait never ran), as
    # Step Functions cuts an Express execution at its limit; the Standard child finished
    assert described["status"] == "SUCCEEDED", described.get("cause")
    assert json.loads(described["output"])["children"] == ([None] if timed_out else ["done"])
    assert (counts["timedOut"], counts["succeeded"]) == ((1, 0) if timed_out else (0, 1))


# Paths of every kind the interpreter evaluates: InputPath, Parameters ".$" (context object
# included), intrinsic arguments, ResultPath into the state's input, OutputPath, ItemsPath.
JSONPATH_DEFINITION = {
    "StartAt": "Each",
    "States": {
        "Each": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "MaxConcurrency": 2,
            "ItemSelector": {"item.$": "$$.Map.Item.Value", "tag.$": "$.tag"},
            "ItemProcessor": {
                "StartAt": "Shape",
                "States": {
                    "Shape": {
                        "Type": "Pass",
                        "InputPath": "$.item",
                        "Parameters": {
                            "id.$": "$.id",
                            "first.$": "$.values[0]",
                            "label.$": "States.Format('{}-{}', $.id, $.name)",
                        },
                        "ResultPath": "$.shaped",
                        "OutputPath": "$.shaped",
                        "End": True,
                    }
                },
            },
            "End": True,
        }
    },
}


def run_jsonpath_machine(executions: int) -> list[Any]:
    """Run the definition `executions` times over three items; the outputs, parsed."""
    items = [{"id": f"i{n}", "name": f"n{n}", "values": [n, n + 1]} for n in range(3)]
    outputs = []
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        machine = sfn.create_state_machine(
            name="paths",
            definition=json.dumps(JSONPATH_DEFINITION),
            roleArn="arn:aws:iam::123456789012:role/sfn",
        )
        for index in range(executions):
            execution = sfn.start_execution(
                stateMachineArn=machine["stateMachineArn"],
                name=f"run-{index}",
                input=json.dumps({"items": items, "tag": "t"}),
            )
            described = finished(sfn, execution["executionArn"])
            assert described["status"] == "SUCCEEDED", described.get("cause")
            outputs.append(json.loads(described["output"]))
    return outputs


def test_jsonpaths_are_parsed_once_each_and_evaluate_as_without_the_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from jsonpath_ng.parser import JsonPathParser
    from moto.stepfunctions.parser.asl.component.common.path import result_path
    from moto.stepfunctions.parser.asl.utils import json_path

    install_moto_patches()
    # Given what moto's interpreter computes with its own, uncached parsing
    with monkeypatch.context() as uncached:
        for module in (json_path, result_path):
            uncached.setattr(module, "parse", module.parse.__wrapped__)
        expected = run_jsonpath_machine(executions=1)
    # and every real parse counted (by parser: ResultPath uses the plain one), from an empty cache
    parsed: list[tuple[str, str]] = []
    original_parse = JsonPathParser.parse

    def counting_parse(self: Any, string: str, lexer: Any = None) -> Any:
        parsed.append((type(self).__name__, string))
        return original_parse(self, string, lexer)

    monkeypatch.setattr(JsonPathParser, "parse", counting_parse)
    for module in (json_path, result_path):
        module.parse.cache_clear()
    # When the same definition runs three times, with the cache
    outputs = run_jsonpath_machine(executions=3)
    # Then each execution's output is what moto computes without it
    assert outputs == expected * 3
    # and each distinct path was parsed once, however often it was evaluated
    assert parsed, "the interpreter evaluated no JSONPath: the test proves nothing"
    assert sorted(parsed) == sorted(set(parsed))
    assert {"$.item", "$.shaped", "$.id", "$.values[0]"} <= {path for _, path in parsed}


def test_the_interpreters_clients_get_the_connection_pool_they_are_sized_for() -> None:
    from moto.stepfunctions.parser.asl.utils import boto_client

    from filebatch_local.provision import size_interpreter_connection_pool

    install_moto_patches()
    try:
        # Given the pool sized for 37 tasks in flight
        size_interpreter_connection_pool(37)
        # When the interpreter asks for its Lambda client
        lambda_client = boto_client.boto_client_for(region="us-east-1", service="lambda")
        # Then it has that many connections, and is reused
        assert lambda_client.meta.config.max_pool_connections == 37
        assert boto_client.boto_client_for(region="us-east-1", service="lambda") is lambda_client
        # and a smaller need never goes below botocore's default
        size_interpreter_connection_pool(3)
        assert (
            boto_client.boto_client_for(region="us-east-1", service="lambda").meta.config.max_pool_connections
            == 10
        )
    finally:
        size_interpreter_connection_pool(10)


def test_sqs_receive_still_drops_expired_and_holds_delayed_messages_without_a_scan_per_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sqs.models import Queue, sqs_backends

    install_moto_patches()
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="q", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
        # Given 30 messages, one sent longer ago than the queue's retention, one delayed 15 min
        for index in range(30):
            sqs.send_message(QueueUrl=url, MessageBody=f"m{index}", DelaySeconds=900 if index == 1 else 0)
        queue = sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].queues["q"]
        expired = next(m for m in queue._messages if m.body == "m0")
        expired.sent_timestamp -= 61_000
        # and every computation of the queue's attributes (all of them, counts over every message)
        computed: list[str] = []
        attributes = Queue.attributes
        monkeypatch.setattr(
            Queue, "attributes", property(lambda self: computed.append(self.name) or attributes.fget(self))
        )
        # When every message is received (moto answers a receive that meets an expired message with
        # nothing, so a few receives more than three)
        bodies: list[str] = []
        for _ in range(8):
            batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages") or []
            bodies += [message["Body"] for message in batch]
        # Then all but the expired and the delayed one arrive, each once
        assert sorted(bodies) == sorted(f"m{index}" for index in range(2, 30))
        # and no receive computed the queue's attributes to check a message's retention
        assert computed == []


def test_s3_object_created_events_reach_eventbridge_in_s3s_shape_for_a_put_and_a_multipart_upload() -> None:
    from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel

    install_moto_patches()
    with mock_aws():
        # Given a versioned bucket sending its events to EventBridge, and the template's upload rule
        # delivering them to a queue
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="uploads-bucket")
        s3.put_bucket_versioning(Bucket="uploads-bucket", VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_notification_configuration(
            Bucket="uploads-bucket", NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
        sqs = boto3.client("sqs", region_name="us-east-1")
        queue_url = sqs.create_queue(QueueName="upload-events")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
        events = boto3.client("events", region_name="us-east-1")
        pattern = {
            "source": ["aws.s3"],
            "detail-type": ["Object Created"],
            "detail": {"bucket": {"name": ["uploads-bucket"]}, "object": {"key": [{"prefix": "uploads/"}]}},
        }
        events.put_rule(Name="uploads", EventPattern=json.dumps(pattern))
        events.put_targets(Rule="uploads", Targets=[{"Id": "q", "Arn": queue_arn["QueueArn"]}])
        # When one object is PUT and another completed from two parts (and a manifest is written)
        s3.put_object(Bucket="uploads-bucket", Key="uploads/a", Body=b"x")
        s3.put_object(Bucket="uploads-bucket", Key="manifests/m", Body=b"[]")
        upload_id = s3.create_multipart_upload(Bucket="uploads-bucket", Key="uploads/b")["UploadId"]
        parts = [
            {
                "PartNumber": n,
                "ETag": s3.upload_part(
                    Bucket="uploads-bucket", Key="uploads/b", UploadId=upload_id, PartNumber=n, Body=body
                )["ETag"],
            }
            for n, body in ((1, b"p" * 5 * 1024 * 1024), (2, b"q"))
        ]
        s3.complete_multipart_upload(
            Bucket="uploads-bucket", Key="uploads/b", UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
        # Then each upload's event says what S3 says: the operation, the ETag, the version
        received = [json.loads(m["Body"]) for m in messages]
        by_key = {event["detail"]["object"]["key"]: event for event in received}
        assert sorted(by_key) == ["uploads/a", "uploads/b"]
        assert by_key["uploads/a"]["detail"]["reason"] == "PutObject"
        completed = by_key["uploads/b"]["detail"]
        assert completed["reason"] == "CompleteMultipartUpload"
        assert completed["object"]["size"] == 5 * 1024 * 1024 + 1
        head = s3.head_object(Bucket="uploads-bucket", Key="uploads/b")
        assert completed["object"]["etag"] == head["ETag"].strip('"')
        assert completed["object"]["version-id"] == head["VersionId"]
        assert isinstance(by_key["uploads/b"]["time"], str)
        # and the shape is the one the record step parses, as the fixture's is
        fixture = json.loads(
            load_event("sqs_s3_complete_multipart_upload_via_eventbridge")["Records"][0]["body"]
        )
        for event in (by_key["uploads/b"], fixture):
            parsed = S3EventNotificationEventBridgeModel.model_validate(event)
            assert parsed.detail.reason == "CompleteMultipartUpload"
            assert parsed.detail.object.etag is not None
        assert set(completed["object"]) == set(fixture["detail"]["object"])
        assert set(by_key["uploads/b"]) == set(fixture)


def test_list_parts_returns_the_sha256_each_part_was_uploaded_with_as_s3_does() -> None:
    import base64
    import hashlib

    install_moto_patches()
    with mock_aws():
        # Given an upload created with part checksums, one part sent with its SHA-256, one without
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="uploads-bucket")
        upload_id = s3.create_multipart_upload(
            Bucket="uploads-bucket", Key="uploads/c", ChecksumAlgorithm="SHA256", ChecksumType="COMPOSITE"
        )["UploadId"]
        body = b"p" * 5 * 1024 * 1024
        checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()
        s3.upload_part(
            Bucket="uploads-bucket",
            Key="uploads/c",
            UploadId=upload_id,
            PartNumber=1,
            Body=body,
            ChecksumSHA256=checksum,
        )
        s3.upload_part(Bucket="uploads-bucket", Key="uploads/c", UploadId=upload_id, PartNumber=2, Body=b"q")
        # When its parts are listed
        parts = s3.list_parts(Bucket="uploads-bucket", Key="uploads/c", UploadId=upload_id)["Parts"]
        # Then the first carries the checksum it was sent with, the second none (as sent)
        assert [(p["PartNumber"], p.get("ChecksumSHA256")) for p in parts] == [(1, checksum), (2, None)]
        # and an unknown upload is still refused as S3 refuses it
        with pytest.raises(ClientError) as missing:
            s3.list_parts(Bucket="uploads-bucket", Key="uploads/c", UploadId="nope")
        assert missing.value.response["Error"]["Code"] == "NoSuchUpload"
