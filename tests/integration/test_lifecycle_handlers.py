"""The lifecycle routes and the sweep, in-process under moto: close, cancel, retry through their API
handlers, the sweep from a real scheduled event, and the repository's bulk moves on moto's
DynamoDB (transactions of 100 actions, a file that moved on meanwhile)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from filebatch import runtime
from filebatch.errors import StorageUnavailableError
from filebatch.models.domain import BatchStatus, FileError, FileStatus
from filebatch.models.records import batch_pk, due_stamp
from tests.conftest import load_event
from tests.integration.conftest import BUCKET, EVENT_BUS, TABLE, Aws, api_event
from tests.integration.test_workflow_handlers import s3_event

Invoke = Callable[[str, dict[str, Any]], Any]


def create(invoke: Invoke, files: int) -> str:
    body = {
        "files": [{"filename": f"{i}.txt", "size": 5, "content_type": "text/plain"} for i in range(files)]
    }
    response = invoke("create_batch", api_event("POST", "/v1/batches", body=body))
    assert response["statusCode"] == 201
    return str(json.loads(response["body"])["batch_id"])


def upload(invoke: Invoke, batch_id: str, file_id: str) -> None:
    boto3.client("s3").put_object(Bucket=BUCKET, Key=f"uploads/acme/{batch_id}/{file_id}", Body=b"hello")
    assert invoke("record_upload", s3_event(batch_id, file_id, 5)) == {"batchItemFailures": []}


def post(
    invoke: Invoke, function: str, batch_id: str, action: str, body: Any = None
) -> tuple[int, dict[str, Any]]:
    path = f"/v1/batches/{batch_id}/{action}"
    response = invoke(function, api_event("POST", path, body=body, path_parameters={"batch_id": batch_id}))
    return response["statusCode"], json.loads(response["body"])


def execution(aws: Aws, name: str) -> dict[str, Any]:
    arn = aws.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
    return dict(aws.sfn.describe_execution(executionArn=arn))


def test_close_expires_missing_files_and_starts_the_run_with_the_rest(aws: Aws, invoke: Invoke) -> None:
    # Given a batch of two files, one uploaded
    batch_id = create(invoke, 2)
    upload(invoke, batch_id, "f00001")
    # When it is closed through the API
    status, body = post(invoke, "close_batch", batch_id, "close")
    # Then it answers 202 with the batch processing, the missing file expired, the run started
    assert status == 202 and body["status"] == "processing"
    assert (body["counts"]["uploaded"], body["counts"]["upload_expired"]) == (1, 1)
    assert body["closed_at"] is not None and body["upload_deadline"] is None
    started = json.loads(execution(aws, batch_id)["input"])
    assert started["manifest_key"] == f"manifests/acme/{batch_id}-closed.json"
    # And closing again is a conflict with a code
    status, body = post(invoke, "close_batch", batch_id, "close")
    assert (status, body["error"]["code"]) == (409, "batch_not_open")


def test_cancel_then_retry_through_the_api(aws: Aws, invoke: Invoke) -> None:
    # Given a batch awaiting upload: cancelling it ends it at once, and a repeat answers the same
    batch_id = create(invoke, 2)
    upload(invoke, batch_id, "f00001")
    first = post(invoke, "cancel_batch", batch_id, "cancel")
    second = post(invoke, "cancel_batch", batch_id, "cancel")
    assert first[0] == second[0] == 202
    assert first[1]["status"] == second[1]["status"] == "cancelled"
    assert first[1]["counts"]["cancelled"] == 2
    # And a cancelled file is not retryable
    status, body = post(invoke, "retry_batch", batch_id, "retry", body={})
    assert (status, body["error"]["code"]) == (409, "nothing_to_retry")


def test_retry_starts_a_named_execution_once(aws: Aws, invoke: Invoke) -> None:
    # Given a batch whose one file failed with a retryable error
    batch_id = create(invoke, 1)
    upload(invoke, batch_id, "f00001")
    repo, now = runtime.repository(), datetime.now(UTC)
    retryable = FileError(code="provider_throttled", message="slow down", retryable=True)
    assert repo.move_file(
        "acme",
        batch_id,
        "f00001",
        expected=FileStatus.UPLOADED,
        to=FileStatus.FAILED,
        at=now,
        error=retryable,
    )
    assert invoke("finalize_batch", {"tenant_id": "acme", "batch_id": batch_id})["status"] == "failed"
    # When it is retried, and the call repeated
    status, body = post(invoke, "retry_batch", batch_id, "retry", body={"file_ids": ["f00001"]})
    again = post(invoke, "retry_batch", batch_id, "retry", body={"file_ids": ["f00001"]})
    # Then one execution <batch>-r1 runs it; the repeat is refused while it runs
    assert status == 202 and body == {
        "batch_id": batch_id,
        "retry": 1,
        "execution_name": f"{batch_id}-r1",
        "file_ids": ["f00001"],
        "status": "processing",
    }
    assert execution(aws, f"{batch_id}-r1")["name"] == f"{batch_id}-r1"
    assert (again[0], again[1]["error"]["code"]) == (409, "batch_not_ended")
    # And a body that is not the retry model is refused before the service runs
    status, body = post(invoke, "retry_batch", batch_id, "retry", body={"file_ids": ["../x"]})
    assert status == 400


def test_the_sweep_closes_a_batch_whose_window_has_ended(aws: Aws, invoke: Invoke) -> None:
    # Given a batch with nothing uploaded whose upload window ended a minute ago
    batch_id = create(invoke, 2)
    boto3.resource("dynamodb").Table(TABLE).update_item(
        Key={"pk": batch_pk("acme", batch_id), "sk": "BATCH"},
        UpdateExpression="SET due_at = :past",
        ExpressionAttributeValues={":past": due_stamp(datetime.now(UTC) - timedelta(minutes=1))},
    )
    # When the scheduled sweep runs
    result = invoke("sweep_batches", load_event("eventbridge_scheduled_event"))
    # Then the batch found through the ByDueTime index is expired
    assert result == {"batches": {batch_id: "expired"}}
    assert invoke("sweep_batches", load_event("eventbridge_scheduled_event")) == {"batches": {}}


def test_bulk_moves_span_transactions_and_leave_a_file_that_moved_on(aws: Aws, invoke: Invoke) -> None:
    # Given 150 files awaiting upload (more than one transaction holds), one of which is uploaded
    batch_id = create(invoke, 150)
    upload(invoke, batch_id, "f00042")
    repo, now = runtime.repository(), datetime.now(UTC)
    # When all 150 are moved as if each were still awaiting upload
    moved = repo.move_files(
        "acme",
        batch_id,
        [(f"f{i:05d}", FileStatus.AWAITING_UPLOAD) for i in range(1, 151)],
        to=FileStatus.CANCELLED,
        at=now,
    )
    # Then the 149 that were are moved, the uploaded one is not, and the counts say so exactly
    assert moved == 149
    batch = repo.get_batch("acme", batch_id, consistent=True)
    assert batch is not None
    assert {s: n for s, n in batch.counts.items() if n} == {FileStatus.CANCELLED: 149, FileStatus.UPLOADED: 1}


# -- every end is announced at least once -----------------------------------------------------------
def bus_to_queue() -> str:
    """The stack's bus (recreated), with a rule sending every filebatch event to a queue we read."""
    events, sqs = boto3.client("events"), boto3.client("sqs")
    if EVENT_BUS not in {bus["Name"] for bus in events.list_event_buses()["EventBuses"]}:
        events.create_event_bus(Name=EVENT_BUS)
    url = sqs.create_queue(QueueName="announced")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="all", EventBusName=EVENT_BUS, EventPattern=json.dumps({"source": ["filebatch"]}))
    events.put_targets(Rule="all", EventBusName=EVENT_BUS, Targets=[{"Id": "q", "Arn": arn}])
    return str(url)


def announced(queue_url: str) -> list[str]:
    messages = boto3.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
    return [json.loads(m["Body"])["detail"]["event_id"] for m in messages.get("Messages", [])]


def batch_item(batch_id: str) -> dict[str, Any]:
    return dict(
        boto3.resource("dynamodb")
        .Table(TABLE)
        .get_item(Key={"pk": batch_pk("acme", batch_id), "sk": "BATCH"}, ConsistentRead=True)["Item"]
    )


def watchdog_passed(batch_id: str) -> None:
    """Move the batch's due time into the past, as two minutes of waiting would."""
    boto3.resource("dynamodb").Table(TABLE).update_item(
        Key={"pk": batch_pk("acme", batch_id), "sk": "BATCH"},
        UpdateExpression="SET due_at = :past",
        ExpressionAttributeValues={":past": due_stamp(datetime.now(UTC) - timedelta(seconds=1))},
    )


def end_by_cancel(invoke: Invoke, batch_id: str) -> None:
    status, body = post(invoke, "cancel_batch", batch_id, "cancel")
    assert (status, body["error"]["code"]) == (503, "storage_unavailable")


def end_by_close(invoke: Invoke, batch_id: str) -> None:
    status, body = post(invoke, "close_batch", batch_id, "close")
    assert (status, body["error"]["code"]) == (503, "storage_unavailable")


def end_by_finalize(invoke: Invoke, batch_id: str) -> None:
    runtime.repository().start_run("acme", batch_id, files=1, at=datetime.now(UTC))
    with pytest.raises(StorageUnavailableError):
        invoke("finalize_batch", {"tenant_id": "acme", "batch_id": batch_id})


def end_by_expiry(invoke: Invoke, batch_id: str) -> None:
    watchdog_passed(batch_id)
    assert invoke("sweep_batches", load_event("eventbridge_scheduled_event")) == {
        "batches": {batch_id: "error"}
    }


@pytest.mark.parametrize(
    ("end", "status"),
    [
        (end_by_cancel, "cancelled"),
        (end_by_close, "expired"),
        (end_by_finalize, "failed"),
        (end_by_expiry, "expired"),
    ],
)
def test_an_end_the_bus_did_not_take_is_announced_by_the_sweep(
    aws: Aws, invoke: Invoke, end: Callable[[Invoke, str], None], status: str
) -> None:
    # Given a batch of one file, and an event bus that is gone when the batch ends
    batch_id = create(invoke, 1)
    boto3.client("events").delete_event_bus(Name=EVENT_BUS)
    end(invoke, batch_id)
    # Then its status is written, its end owed: no announced_at, due a watchdog time later
    item = batch_item(batch_id)
    assert item["status"] == status and "announced_at" not in item and item["due_pk"] == "DUE"
    # When the bus is back, the sweep leaves it alone until the watchdog time has passed...
    queue_url = bus_to_queue()
    assert invoke("sweep_batches", load_event("eventbridge_scheduled_event")) == {"batches": {}}
    assert announced(queue_url) == []
    # ...and then announces it, under the end's event id
    watchdog_passed(batch_id)
    assert invoke("sweep_batches", load_event("eventbridge_scheduled_event")) == {
        "batches": {batch_id: status}
    }
    assert announced(queue_url) == [f"{batch_id}:0:{status}"]
    item = batch_item(batch_id)
    assert "announced_at" in item and "due_pk" not in item and "due_at" not in item
    # And nothing is left for the next sweep
    assert invoke("sweep_batches", load_event("eventbridge_scheduled_event")) == {"batches": {}}
    assert announced(queue_url) == []


def test_a_repeated_cancel_announces_the_end_the_first_could_not(aws: Aws, invoke: Invoke) -> None:
    # Given a batch cancelled while the bus was gone
    batch_id = create(invoke, 1)
    boto3.client("events").delete_event_bus(Name=EVENT_BUS)
    end_by_cancel(invoke, batch_id)
    queue_url = bus_to_queue()
    # When the client repeats the cancel
    status, body = post(invoke, "cancel_batch", batch_id, "cancel")
    # Then it answers as for any cancelled batch, and the end is announced now, once
    assert (status, body["status"]) == (202, "cancelled")
    assert announced(queue_url) == [f"{batch_id}:0:cancelled"]
    assert "due_pk" not in batch_item(batch_id)
    assert post(invoke, "cancel_batch", batch_id, "cancel")[0] == 202
    assert announced(queue_url) == []


def test_an_announcement_counts_only_for_the_end_it_announced(aws: Aws, invoke: Invoke) -> None:
    # Given a batch that ended failed (unannounced) and whose retry is now running
    batch_id = create(invoke, 1)
    repo, now = runtime.repository(), datetime.now(UTC)
    assert repo.finish_batch(
        "acme",
        batch_id,
        status=BatchStatus.FAILED,
        expected=frozenset({BatchStatus.AWAITING_UPLOAD}),
        at=now,
        due_at=now,
    )
    assert repo.claim_retry("acme", batch_id, expected=BatchStatus.FAILED, retry=1, files=1, at=now)
    # When a late announcement of the first end is recorded, it changes nothing
    assert not repo.mark_announced("acme", batch_id, status=BatchStatus.FAILED, retries=0, at=now)
    # And once the retry ends, only its own announcement takes the batch off the sweep's list
    assert repo.finish_batch(
        "acme",
        batch_id,
        status=BatchStatus.FAILED,
        expected=frozenset({BatchStatus.PROCESSING}),
        at=now,
        due_at=now,
    )
    assert not repo.mark_announced("acme", batch_id, status=BatchStatus.FAILED, retries=0, at=now)
    assert repo.list_due(now=now, limit=10) == [("acme", batch_id)]
    assert repo.mark_announced("acme", batch_id, status=BatchStatus.FAILED, retries=1, at=now)
    assert repo.list_due(now=now, limit=10) == []
