"""Delete, purge, export and filtered results: the handlers in-process under moto, with the real
adapters (versioned bucket, the table's key schema, the jobs queue)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
import requests

from filebatch import runtime
from filebatch.adapters import dynamodb as dynamodb_adapter
from filebatch.adapters import s3 as s3_adapter
from filebatch.models.domain import FileError, FileStatus, batch_object_prefixes, workflow_results_prefix
from filebatch_local.events import to_lambda_record
from tests.integration.conftest import BUCKET, TABLE, Aws, api_event

Invoke = Callable[[str, dict[str, Any]], Any]


def body_of(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


def create(invoke: Invoke, files: int = 2) -> str:
    body = {
        "files": [{"filename": f"{i}.txt", "size": 3, "content_type": "text/plain"} for i in range(files)]
    }
    response = invoke("create_batch", api_event("POST", "/v1/batches", body=body))
    assert response["statusCode"] == 201, response["body"]
    return str(body_of(response)["batch_id"])


def call(
    invoke: Invoke, function: str, method: str, path: str, batch_id: str, **kwargs: Any
) -> dict[str, Any]:
    return invoke(function, api_event(method, path, path_parameters={"batch_id": batch_id}, **kwargs))


def routes(batch_id: str) -> list[tuple[str, str, str]]:
    return [
        ("get_batch", "GET", f"/v1/batches/{batch_id}"),
        ("list_results", "GET", f"/v1/batches/{batch_id}/results"),
        ("list_uploads", "GET", f"/v1/batches/{batch_id}/uploads"),
        ("export_results", "GET", f"/v1/batches/{batch_id}/export"),
        ("delete_batch", "DELETE", f"/v1/batches/{batch_id}"),
    ]


def versions_under(s3: Any, prefix: str) -> list[str]:
    listed = s3.list_object_versions(Bucket=BUCKET, Prefix=prefix)
    return [v["Key"] for v in listed.get("Versions", []) + listed.get("DeleteMarkers", [])]


def received_jobs(aws: Aws) -> list[dict[str, Any]]:
    """The queued messages as Lambda's SQS event source hands them to run_batch_job."""
    sqs = boto3.client("sqs")
    messages = sqs.receive_message(
        QueueUrl=aws.jobs_queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
    ).get("Messages", [])
    arn = "arn:aws:sqs:us-east-1:123456789012:filebatch-test-jobs"
    return [to_lambda_record(m, arn, "us-east-1") for m in messages]


def test_a_deleted_batch_is_404_everywhere_at_once_and_its_purge_leaves_nothing(
    aws: Aws, invoke: Invoke
) -> None:
    # Given a batch whose files were uploaded twice (two versions), one also deleted (a delete
    # marker), that the workflow finalized (export written) and whose Map wrote results
    batch_id = create(invoke, files=3)
    other_id = create(invoke)
    for batch in (batch_id, other_id):
        for file_id in ("f00001", "f00002"):
            for content in (b"one", b"two"):
                aws.s3.put_object(Bucket=BUCKET, Key=f"uploads/acme/{batch}/{file_id}", Body=content)
    aws.s3.delete_object(Bucket=BUCKET, Key=f"uploads/acme/{batch_id}/f00002")
    aws.s3.put_object(
        Bucket=BUCKET, Key=f"{workflow_results_prefix('acme', batch_id)}run-1/manifest.json", Body=b"{}"
    )
    for batch in (batch_id, other_id):
        # (its run started, and its files never ran: it ends failed)
        runtime.repository().start_run("acme", batch, files=2, at=datetime.now(UTC))
        assert invoke("finalize_batch", {"tenant_id": "acme", "batch_id": batch})["status"] == "failed"
    assert (
        call(invoke, "export_results", "GET", f"/v1/batches/{batch_id}/export", batch_id)["statusCode"] == 200
    )
    # When it is deleted
    response = call(invoke, "delete_batch", "DELETE", f"/v1/batches/{batch_id}", batch_id)
    # Then the answer is 202 deleting, and every route of the batch answers 404 before any purge ran
    assert response["statusCode"] == 202
    assert body_of(response) == {"batch_id": batch_id, "status": "deleting"}
    for function, method, path in routes(batch_id):
        answer = call(invoke, function, method, path, batch_id)
        assert answer["statusCode"] == 404, (function, answer["body"])
        assert body_of(answer)["error"]["code"] == "batch_not_found"
    # When the purge job queued by the DELETE runs
    [record] = received_jobs(aws)
    assert json.loads(record["body"]) == {"action": "purge", "tenant_id": "acme", "batch_id": batch_id}
    assert invoke("run_batch_job", {"Records": [record]}) == {"batchItemFailures": []}
    # Then no object, version or delete marker is left under any of the batch's prefixes
    for prefix in batch_object_prefixes("acme", batch_id):
        assert versions_under(aws.s3, prefix) == [], prefix
    # And no item of the batch is left in the table
    items = aws.dynamodb.scan(TableName=TABLE)["Items"]
    assert not [i for i in items if batch_id in i["pk"]["S"]]
    # While the other batch keeps every object and item
    assert len(versions_under(aws.s3, f"uploads/acme/{other_id}/")) == 4
    assert len(versions_under(aws.s3, f"exports/acme/{other_id}")) == 1
    assert len([i for i in items if other_id in i["pk"]["S"]]) == 3
    # And a redelivery of the job finds nothing left to do
    assert invoke("run_batch_job", {"Records": [record]}) == {"batchItemFailures": []}


def test_a_batch_that_has_not_ended_cannot_be_deleted(aws: Aws, invoke: Invoke) -> None:
    batch_id = create(invoke)
    response = call(invoke, "delete_batch", "DELETE", f"/v1/batches/{batch_id}", batch_id)
    assert response["statusCode"] == 409
    assert body_of(response)["error"]["code"] == "batch_not_ended"
    assert call(invoke, "get_batch", "GET", f"/v1/batches/{batch_id}", batch_id)["statusCode"] == 200
    assert received_jobs(aws) == []
    # And another tenant's batch is not found, not refused
    other = invoke(
        "delete_batch",
        api_event(
            "DELETE", f"/v1/batches/{batch_id}", tenant_id="globex", path_parameters={"batch_id": batch_id}
        ),
    )
    assert other["statusCode"] == 404


def test_a_job_message_that_does_not_parse_is_reported_alone(aws: Aws, invoke: Invoke) -> None:
    # Given a valid purge job (for a batch already gone) and a message of an unknown action
    boto3.client("sqs").send_message(
        QueueUrl=aws.jobs_queue_url,
        MessageBody=json.dumps({"action": "purge", "tenant_id": "acme", "batch_id": "b-" + "0" * 32}),
    )
    boto3.client("sqs").send_message(QueueUrl=aws.jobs_queue_url, MessageBody='{"action": "explode"}')
    records = received_jobs(aws)
    # When both are delivered in one batch
    response = invoke("run_batch_job", {"Records": records})
    # Then only the unreadable one comes back (to be retried, then dead-lettered)
    bad = next(r for r in records if "explode" in r["body"])
    assert response == {"batchItemFailures": [{"itemIdentifier": bad["messageId"]}]}


def test_the_export_is_a_presigned_jsonl_download_of_every_result(aws: Aws, invoke: Invoke) -> None:
    # Given a finalized batch of three files, the second of which completed
    batch_id = create(invoke, files=3)
    runtime.repository().mark_uploaded(
        "acme", batch_id, "f00002", size=3, version_id=None, at=datetime.now(UTC)
    )
    runtime.repository().move_file(
        "acme",
        batch_id,
        "f00002",
        expected=FileStatus.UPLOADED,
        to=FileStatus.COMPLETED,
        at=datetime.now(UTC),
        facts=None,
        description=None,
        error=None,
    )
    path = f"/v1/batches/{batch_id}/export"
    # Before the batch ends there is no export
    early = call(invoke, "export_results", "GET", path, batch_id)
    assert early["statusCode"] == 409 and body_of(early)["error"]["code"] == "export_not_ready"
    runtime.repository().start_run("acme", batch_id, files=3, at=datetime.now(UTC))
    invoke("finalize_batch", {"tenant_id": "acme", "batch_id": batch_id})
    # When the export is asked for
    export = body_of(call(invoke, "export_results", "GET", path, batch_id))
    # Then its URL downloads one result per line, as the results route gives them, in file order
    assert export["files"] == 3 and export["batch_id"] == batch_id
    downloaded = requests.get(export["url"], timeout=10)
    assert downloaded.status_code == 200
    lines = [json.loads(line) for line in downloaded.text.splitlines()]
    results = body_of(call(invoke, "list_results", "GET", f"/v1/batches/{batch_id}/results", batch_id))
    assert lines == results["items"]
    assert [line["status"] for line in lines] == ["failed", "completed", "failed"]
    head = aws.s3.head_object(Bucket=BUCKET, Key=f"exports/acme/{batch_id}.jsonl")
    assert head["ContentType"] == "application/x-ndjson"


def test_results_filtered_by_status_keep_paging_through_pages_that_filter_to_nothing(
    aws: Aws, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a batch of nine files of which the 2nd and the 9th failed, and a page that reads at most
    # two queries of one file each (so that a page can filter down to nothing)
    monkeypatch.setattr(dynamodb_adapter, "FILTERED_QUERY_MIN_READ", 1)
    monkeypatch.setattr(dynamodb_adapter, "FILTERED_QUERIES_PER_PAGE", 2)
    batch_id = create(invoke, files=9)
    repo = runtime.repository()
    for file_id in ("f00002", "f00009"):
        repo.move_file(
            "acme",
            batch_id,
            file_id,
            expected=FileStatus.AWAITING_UPLOAD,
            to=FileStatus.FAILED,
            at=datetime.now(UTC),
            facts=None,
            description=None,
            error=FileError(code="x", message="x", retryable=False),
        )
    path = f"/v1/batches/{batch_id}/results"
    # When the failed results are paged through one at a time
    pages: list[list[str]] = []
    cursor = None
    while True:
        query = {"status": "failed", "limit": "1"} | ({"cursor": cursor} if cursor else {})
        page = body_of(call(invoke, "list_results", "GET", path, batch_id, query=query))
        pages.append([item["file_id"] for item in page["items"]])
        cursor = page["next_cursor"]
        if not cursor:
            break
    # Then exactly the failed files come back, some pages empty but still with a cursor
    assert [f for page in pages for f in page] == ["f00002", "f00009"]
    assert [] in pages
    # And a status that is not a file status is a 400
    bad = call(invoke, "list_results", "GET", path, batch_id, query={"status": "exploded"})
    assert bad["statusCode"] == 400 and body_of(bad)["error"]["code"] == "validation_error"


def test_deleting_a_prefix_removes_every_version_in_rounds_of_the_delete_batch(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given five versions and two delete markers under a prefix, and deletes of at most two at a time
    monkeypatch.setattr(s3_adapter, "DELETE_BATCH", 2)
    for i in range(5):
        aws.s3.put_object(Bucket=BUCKET, Key=f"uploads/t/b/f{i % 3}", Body=b"x")
    aws.s3.delete_object(Bucket=BUCKET, Key="uploads/t/b/f0")
    aws.s3.delete_object(Bucket=BUCKET, Key="uploads/t/b/f1")
    aws.s3.put_object(Bucket=BUCKET, Key="uploads/t/bb/f0", Body=b"keep")
    # When the prefix is deleted
    deleted = runtime.storage().delete_prefix("uploads/t/b/")
    # Then every version and marker is gone, and only those
    assert deleted == 7
    assert versions_under(aws.s3, "uploads/t/b/") == []
    assert versions_under(aws.s3, "uploads/t/bb/") == ["uploads/t/bb/f0"]
