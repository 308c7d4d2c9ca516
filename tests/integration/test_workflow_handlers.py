"""Upload consumer and workflow steps in-process under moto, chained the way the state machine
chains them (the e2e tests run the real ASL)."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest
import requests
from PIL import Image

from tests.conftest import load_event
from tests.integration.conftest import BUCKET, Aws, api_event

Invoke = Callable[[str, dict[str, Any]], Any]


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def create(invoke: Invoke, files: list[tuple[str, bytes, str]]) -> dict[str, Any]:
    body = {"files": [{"filename": n, "size": len(b), "content_type": t} for n, b, t in files]}
    response = invoke("create_batch", api_event("POST", "/v1/batches", body=body))
    assert response["statusCode"] == 201
    return json.loads(response["body"])


def upload_all(created: dict[str, Any], contents: list[bytes]) -> None:
    for file, content in zip(created["files"], contents, strict=True):
        upload = file["upload"]
        assert (
            requests.put(upload["url"], data=content, headers=upload["headers"], timeout=10).status_code
            == 200
        )


def s3_event(
    batch_id: str, file_id: str, size: int, message_id: str = "m-1", version_id: str | None = None
) -> dict[str, Any]:
    """The real SQS event shape whose body is EventBridge's S3 'Object Created' event, for the
    given version of the object (by default its current version, as the event of the last write)."""
    event = load_event("sqs_s3_object_created_via_eventbridge")
    record = event["Records"][0]
    body = json.loads(record["body"])
    key = f"uploads/acme/{batch_id}/{file_id}"
    if version_id is None:
        version_id = boto3.client("s3").head_object(Bucket=BUCKET, Key=key)["VersionId"]
    body["detail"]["bucket"]["name"] = BUCKET
    body["detail"]["object"].update({"key": key, "size": size, "version-id": version_id})
    record.update(body=json.dumps(body), messageId=message_id)
    return event


def batch_status(invoke: Invoke, batch_id: str) -> dict[str, Any]:
    response = invoke(
        "get_batch", api_event("GET", f"/v1/batches/{batch_id}", path_parameters={"batch_id": batch_id})
    )
    return json.loads(response["body"])


def inject_describe_faults(monkeypatch: pytest.MonkeyPatch, spec: str) -> None:
    """DESCRIBE_FAULT_INJECTION for the rest of the test, past the settings' and the runtime's caches."""
    from filebatch import runtime
    from filebatch.config import get_settings

    monkeypatch.setenv("DESCRIBE_FAULT_INJECTION", spec)
    get_settings.cache_clear()
    runtime.fault_injection.cache_clear()


def test_upload_events_count_once_and_the_last_starts_one_execution_named_after_the_batch(
    aws: Aws, invoke: Invoke
) -> None:
    # Given a batch of two uploaded files
    contents = [png(4, 4), png(8, 8)]
    created = create(invoke, [("a.png", contents[0], "image/png"), ("b.png", contents[1], "image/png")])
    batch_id = created["batch_id"]
    upload_all(created, contents)
    # When the first file's event arrives twice, then the second file's
    for _ in range(2):
        assert invoke("record_upload", s3_event(batch_id, "f00001", len(contents[0]))) == {
            "batchItemFailures": []
        }
    assert batch_status(invoke, batch_id)["counts"]["uploaded"] == 1
    invoke("record_upload", s3_event(batch_id, "f00002", len(contents[1])))
    invoke("record_upload", s3_event(batch_id, "f00002", len(contents[1])))
    # Then it counted two uploads, and one execution named after the batch was started
    status = batch_status(invoke, batch_id)
    assert status["counts"]["uploaded"] == 2
    assert status["status"] == "processing"
    executions = aws.sfn.list_executions(stateMachineArn=aws.state_machine_arn)["executions"]
    assert [e["name"] for e in executions] == [batch_id]
    execution_input = json.loads(
        aws.sfn.describe_execution(executionArn=executions[0]["executionArn"])["input"]
    )
    assert execution_input == {
        "tenant_id": "acme",
        "batch_id": batch_id,
        "manifest_key": f"manifests/acme/{batch_id}.json",
        "retry": 0,
        "instructions": {"prompt": None, "language": None, "detail": "standard"},
        # Not a batch that skips duplicates (issue 10)
        "dedup_fingerprint": None,
    }


def test_an_unreadable_message_is_reported_alone_as_a_failed_item(aws: Aws, invoke: Invoke) -> None:
    # Given an SQS batch with a good upload event and a record whose body is not an S3 event
    content = png(4, 4)
    created = create(invoke, [("a.png", content, "image/png")])
    upload_all(created, [content])
    event = s3_event(created["batch_id"], "f00001", len(content), message_id="good")
    bad = {**event["Records"][0], "messageId": "bad", "body": "not json"}
    event["Records"].append(bad)
    # When the consumer gets the batch
    response = invoke("record_upload", event)
    # Then only the bad record is reported failed (SQS retries it, then dead-letters it)
    assert response == {"batchItemFailures": [{"itemIdentifier": "bad"}]}
    assert batch_status(invoke, created["batch_id"])["counts"]["uploaded"] == 1


def test_a_batch_of_only_unreadable_messages_fails_the_invocation(aws: Aws, invoke: Invoke) -> None:
    # Given an SQS batch where every record is unreadable
    event = load_event("sqs_s3_object_created_via_eventbridge")
    event["Records"][0]["body"] = "not json"
    # When the consumer gets it, then the whole invocation fails and SQS will redeliver it
    with pytest.raises(Exception, match="All records failed"):
        invoke("record_upload", event)


def test_process_describe_record_and_finalize_a_batch_with_one_good_and_one_lying_file(
    aws: Aws, invoke: Invoke
) -> None:
    # Given a batch whose second file declares one size and uploads another
    good, liar = png(30, 20), png(5, 5)
    created = create(invoke, [("wide.png", good, "image/png"), ("liar.png", liar, "image/png")])
    batch_id = created["batch_id"]
    # The second file's bytes are 5 longer than declared (S3 emulation accepts them: the product checks)
    upload_all(created, [good, liar + b"extra"])
    for file_id, content in (("f00001", good), ("f00002", liar)):
        invoke("record_upload", s3_event(batch_id, file_id, len(content)))
    task = {"tenant_id": "acme", "batch_id": batch_id}

    # When the workflow's steps run for each file, as the state machine chains them
    processed = invoke("process_file", {**task, "file_id": "f00001"})
    described = invoke("describe_file", {"file": processed, "attempt": 0})
    recorded = invoke("record_result", {"outcome": "succeeded", "file": described})
    with pytest.raises(Exception) as rejected:
        invoke("process_file", {**task, "file_id": "f00002"})
    caught = {
        **task,
        "file_id": "f00002",
        "error": {
            "Error": type(rejected.value).__name__,
            "Cause": json.dumps(
                {"errorType": type(rejected.value).__name__, "errorMessage": str(rejected.value)}
            ),
        },
    }
    failed = invoke("record_result", {"outcome": "failed", "file": caught})
    finished = invoke("finalize_batch", task)

    # Then the good file is described truthfully and the liar failed with size_mismatch, not retryable
    assert type(rejected.value).__name__ == "FileRejectedError"
    assert (recorded["status"], failed["status"]) == ("completed", "failed")
    assert finished == {"batch_id": batch_id, "status": "completed_with_errors", "swept_files": 0}
    results = json.loads(
        invoke(
            "list_results",
            api_event("GET", f"/v1/batches/{batch_id}/results", path_parameters={"batch_id": batch_id}),
        )["body"]
    )["items"]
    assert results[0]["status"] == "completed"
    assert results[0]["detected_content_type"] == "image/png"
    assert results[0]["description"]["attributes"]["width"] == 30
    assert "30" in results[0]["description"]["text"]
    assert results[1]["error"] == {
        "code": "size_mismatch",
        "message": f"size_mismatch: uploaded {len(liar) + 5} bytes but {len(liar)} were declared",
        "retryable": False,
    }
    status = batch_status(invoke, batch_id)
    assert status["status"] == "completed_with_errors"
    assert {k: n for k, n in status["counts"].items() if n} == {"total": 2, "completed": 1, "failed": 1}
    assert status["progress_percentage"] == 100.0


def test_bytes_written_after_the_upload_are_neither_verified_nor_described(aws: Aws, invoke: Invoke) -> None:
    # Given a PNG uploaded through its presigned URL, and its upload event (which names the version)
    picture = png(16, 9)
    created = create(invoke, [("photo.png", picture, "image/png")])
    batch_id, upload = created["batch_id"], created["files"][0]["upload"]
    upload_all(created, [picture])
    key = f"uploads/acme/{batch_id}/f00001"
    invoke("record_upload", s3_event(batch_id, "f00001", len(picture)))
    # When the client PUTs other bytes of the same length through the same URL
    text = b"not a picture at all ".ljust(len(picture), b"!")
    again = requests.put(upload["url"], data=text, headers=upload["headers"], timeout=10)
    # Then S3 refuses it: the URL only creates the object
    assert again.status_code == 412, again.text
    # And even bytes that do reach the key (a writer that S3 lets through) change nothing: the
    # process step verifies the announced version and the describe step describes that version
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=text)
    processed = invoke("process_file", {"tenant_id": "acme", "batch_id": batch_id, "file_id": "f00001"})
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=text)
    described = invoke("describe_file", {"file": processed, "attempt": 0})
    invoke("record_result", {"outcome": "succeeded", "file": described})
    result = json.loads(
        invoke(
            "list_results",
            api_event("GET", f"/v1/batches/{batch_id}/results", path_parameters={"batch_id": batch_id}),
        )["body"]
    )["items"][0]
    assert result["sha256"] == hashlib.sha256(picture).hexdigest()
    assert result["detected_content_type"] == "image/png"
    assert result["description"]["attributes"]["kind"] == "image"
    assert (result["description"]["attributes"]["width"], result["description"]["attributes"]["height"]) == (
        16,
        9,
    )


def test_recording_the_same_result_twice_counts_it_once(aws: Aws, invoke: Invoke) -> None:
    # Given a processed and described file
    content = png(3, 3)
    created = create(invoke, [("one.png", content, "image/png")])
    upload_all(created, [content])
    batch_id = created["batch_id"]
    invoke("record_upload", s3_event(batch_id, "f00001", len(content)))
    processed = invoke("process_file", {"tenant_id": "acme", "batch_id": batch_id, "file_id": "f00001"})
    described = invoke("describe_file", {"file": processed, "attempt": 0})
    # When Step Functions retries the record step after it had succeeded
    first = invoke("record_result", {"outcome": "succeeded", "file": described})
    second = invoke("record_result", {"outcome": "succeeded", "file": described})
    # Then the first result stands and the batch counts one completion
    assert (first["recorded"], second["recorded"]) == (True, False)
    assert batch_status(invoke, batch_id)["counts"]["completed"] == 1


def test_describe_throttled_by_fault_injection_raises_the_retryable_error_name(
    aws: Aws, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given fault injection throttles files named 'flaky' for two attempts
    inject_describe_faults(monkeypatch, "throttle:flaky:2")
    content = png(3, 3)
    created = create(invoke, [("flaky.png", content, "image/png")])
    upload_all(created, [content])
    assert invoke("record_upload", s3_event(created["batch_id"], "f00001", len(content))) == {
        "batchItemFailures": []
    }
    processed = invoke(
        "process_file", {"tenant_id": "acme", "batch_id": created["batch_id"], "file_id": "f00001"}
    )
    # When it is described on attempt 0, then on attempt 2
    with pytest.raises(Exception) as throttled:
        invoke("describe_file", {"file": processed, "attempt": 0})
    described = invoke("describe_file", {"file": processed, "attempt": 2})
    # Then the first raises the class name the ASL retries on; the later attempt succeeds
    assert type(throttled.value).__name__ == "RetryableDescriptionError"
    assert described["description"]["provider"] == "local"


def run_child(invoke: Invoke, child_input: dict[str, Any]) -> None:
    """One Express child of the Distributed Map, as the ASL chains its tasks: each of its files goes
    process → describe → record the success; an error that escapes a step (after its Retry) is
    caught with the step's input and recorded as the failure."""
    shared = child_input["BatchInput"]
    for item in child_input["Items"]:
        task = {**shared, "file_id": item["file_id"]}
        step_input: dict[str, Any] = task
        try:
            processed = invoke("process_file", task)
            step_input = processed
            described = invoke("describe_file", {"file": processed, "attempt": 0})
        except Exception as error:
            cause = {"errorType": type(error).__name__, "errorMessage": str(error)}
            caught = {**step_input, "error": {"Error": type(error).__name__, "Cause": json.dumps(cause)}}
            invoke("record_result", {"outcome": "failed", "file": caught})
            continue
        invoke("record_result", {"outcome": "succeeded", "file": described})


def test_an_express_child_run_twice_changes_nothing_the_second_time(
    aws: Aws, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a batch of a good file, a file whose bytes are longer than declared, and a file whose
    # description keeps failing retryably (the provider throttles it on every attempt)
    inject_describe_faults(monkeypatch, "throttle:hopeless:99")
    good, liar, hopeless = png(6, 4), png(5, 5), png(7, 7)
    created = create(
        invoke,
        [
            ("good.png", good, "image/png"),
            ("liar.png", liar, "image/png"),
            ("hopeless.png", hopeless, "image/png"),
        ],
    )
    batch_id = created["batch_id"]
    upload_all(created, [good, liar + b"extra", hopeless])
    for file_id, content in (("f00001", good), ("f00002", liar), ("f00003", hopeless)):
        invoke("record_upload", s3_event(batch_id, file_id, len(content)))
    # ... and the input Step Functions gives the child that holds all three (ItemBatcher)
    child_input = {
        "Items": [{"file_id": "f00001"}, {"file_id": "f00002"}, {"file_id": "f00003"}],
        "BatchInput": {"tenant_id": "acme", "batch_id": batch_id, "instructions": {}},
    }

    def snapshot() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        status = batch_status(invoke, batch_id)
        # Computed from the clock at each read, not stored: None, then 0 after its warm-up.
        status.pop("eta_seconds")
        results = json.loads(
            invoke(
                "list_results",
                api_event("GET", f"/v1/batches/{batch_id}/results", path_parameters={"batch_id": batch_id}),
            )["body"]
        )["items"]
        return status, results

    # When the child runs, and Express (at-least-once) runs it again with the same items
    run_child(invoke, child_input)
    after_first = snapshot()
    run_child(invoke, child_input)
    after_second = snapshot()

    # Then the first run recorded one terminal state per file
    status, results = after_first
    assert {k: n for k, n in status["counts"].items() if n} == {"total": 3, "completed": 1, "failed": 2}
    assert [(r["status"], (r.get("error") or {}).get("code")) for r in results] == [
        ("completed", None),
        ("failed", "size_mismatch"),
        ("failed", "provider_throttled"),
    ]
    # And the second changed nothing: counts, states, results (times included), even for the file
    # that failed retryably in this very run
    assert after_second == after_first
