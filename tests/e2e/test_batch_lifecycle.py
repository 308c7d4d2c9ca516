"""A whole batch over HTTP against the local stack: presigned uploads, S3 events, the real ASL in
moto's Step Functions interpreter, the real handlers, results through the API."""

from __future__ import annotations

import hashlib
import io
import json
import mimetypes
from pathlib import Path

import boto3
import pytest
import requests
from PIL import Image, ImageOps

from tests.conftest import PROJECT_ROOT, load_event
from tests.e2e.conftest import Stack, wait_for

pytestmark = pytest.mark.e2e

SAMPLES = sorted(p for p in (PROJECT_ROOT / "samples").iterdir() if p.suffix not in {".md", ".py"})
TYPES = {".webp": "image/webp", ".csv": "text/csv"}


def content_type(path: Path) -> str:
    return TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def png(width: int, height: int, colour: tuple[int, int, int] = (0, 128, 0)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_batch_of_real_files_completes_with_one_true_result_per_file(stack: Stack) -> None:
    # Given the project's sample files: real photos in several formats, a PDF and a CSV
    files = [(p.name, p.read_bytes(), content_type(p)) for p in SAMPLES]
    assert len([f for f in files if f[2].startswith("image/")]) >= 4
    assert any(not f[2].startswith("image/") for f in files)
    # When they are declared, uploaded through their presigned URLs, and processed
    batch_id = stack.submit(files)
    status = stack.wait_terminal(batch_id)
    # Then the batch completed, every counter adds up, and there is one result per file
    assert status["status"] == "completed", status
    assert {state: n for state, n in status["counts"].items() if n} == {
        "total": len(files),
        "completed": len(files),
    }
    assert status["progress_percentage"] == 100.0
    results = stack.results(batch_id)
    assert [r["filename"] for r in results] == [name for name, _, _ in files]
    # And each result says true things about its file
    for (name, content, _), result in zip(files, results, strict=True):
        assert result["status"] == "completed", result
        assert result["sha256"] == hashlib.sha256(content).hexdigest()
        assert result["size_bytes"] == len(content)
        description = result["description"]
        assert description["provider"] == "local"
        assert description["text"]
        if result["detected_content_type"].startswith("image/"):
            shown = ImageOps.exif_transpose(Image.open(io.BytesIO(content)))
            assert (description["attributes"]["width"], description["attributes"]["height"]) == shown.size, (
                name
            )
            assert f"{shown.size[0]}\u00d7{shown.size[1]}" in description["text"], name
    pdf = next(r for r in results if r["filename"].endswith(".pdf"))
    assert pdf["detected_content_type"] == "application/pdf"
    assert pdf["description"]["attributes"]["page_count"] == 2


def test_files_that_do_not_match_their_declaration_fail_with_clear_codes(stack: Stack) -> None:
    # Given one honest file, one whose bytes are longer than declared, one PDF declared as a PNG
    honest, pdf = png(20, 10), (PROJECT_ROOT / "samples" / "filebatch-overview.pdf").read_bytes()
    declared = [
        ("honest.png", honest, "image/png"),
        ("short.png", honest, "image/png"),
        ("fake.png", pdf, "image/png"),
    ]
    # When their bytes are uploaded (S3 emulation accepts them; the product must check)
    batch_id = stack.submit(declared, upload=[honest, honest + b"trailing", pdf])
    status = stack.wait_terminal(batch_id)
    # Then the honest one completes and the others fail, not retryable, with codes saying why
    assert status["status"] == "completed_with_errors"
    assert status["counts"]["completed"] == 1
    assert status["counts"]["failed"] == 2
    results = {r["filename"]: r for r in stack.results(batch_id)}
    assert results["honest.png"]["status"] == "completed"
    assert results["short.png"]["error"]["code"] == "size_mismatch"
    assert results["short.png"]["error"]["retryable"] is False
    assert results["fake.png"]["error"]["code"] == "type_mismatch"
    assert "application/pdf" in results["fake.png"]["error"]["message"]


def test_retryable_describe_errors_are_retried_then_recorded(stack: Stack) -> None:
    # Given fault injection: "flaky" files throttle twice, "hopeless" files on every attempt
    files = [("flaky-1.png", png(8, 8), "image/png"), ("hopeless.png", png(9, 9), "image/png")]
    # When the batch runs
    batch_id = stack.submit(files)
    status = stack.wait_terminal(batch_id)
    results = {r["filename"]: r for r in stack.results(batch_id)}
    # Then the flaky file succeeded after Retry, and the hopeless one is recorded as a retryable failure
    assert status["status"] == "completed_with_errors"
    assert results["flaky-1.png"]["status"] == "completed"
    assert results["hopeless.png"]["status"] == "failed"
    assert results["hopeless.png"]["error"]["code"] == "provider_throttled"
    assert results["hopeless.png"]["error"]["retryable"] is True
    # And the state machine really retried: the describe function logged every attempt it got
    attempts = describe_attempts(stack, batch_id)
    assert attempts[results["flaky-1.png"]["file_id"]] == [0, 1, 2]
    # (the first call and the Retry's two: three calls of the slowest provider fit an Express child)
    assert attempts[results["hopeless.png"]["file_id"]] == [0, 1, 2]


def describe_attempts(stack: Stack, batch_id: str) -> dict[str, list[int]]:
    """Attempt numbers ($$.State.RetryCount) per file, from the describe function's JSON logs."""
    log = stack.local.state_dir / "logs" / "DescribeFileFunction.log"
    attempts: dict[str, list[int]] = {}
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") == "describing file" and entry.get("batch_id") == batch_id:
            attempts.setdefault(entry["file_id"], []).append(entry["attempt"])
    return {file_id: sorted(found) for file_id, found in attempts.items()}


def test_duplicate_and_late_s3_events_do_not_double_count(stack: Stack) -> None:
    # Given a batch of two files, the first uploaded twice before the second arrives
    first, second = png(5, 5), png(6, 6)
    response = stack.post_batch(
        [
            {"filename": "one.png", "size": len(first), "content_type": "image/png"},
            {"filename": "two.png", "size": len(second), "content_type": "image/png"},
        ]
    )
    created = response.json()
    batch_id = created["batch_id"]
    uploads = [f["upload"] for f in created["files"]]
    for _ in range(2):
        requests.put(uploads[0]["url"], data=first, headers=uploads[0]["headers"], timeout=30)
    wait_for(
        lambda: stack.status(batch_id).json()["counts"]["uploaded"] == 1, 30, "the first upload to count"
    )
    requests.put(uploads[1]["url"], data=second, headers=uploads[1]["headers"], timeout=30)
    stack.wait_terminal(batch_id)
    # When the same S3 event is delivered again after the batch finished (at-least-once delivery)
    queue_url = stack.local.outputs["UploadEventsQueueUrl"]
    sqs = boto3.client("sqs", endpoint_url=stack.local.moto_endpoint)
    key = f"uploads/e2e/{batch_id}/f00001"
    event = json.loads(load_event("sqs_s3_object_created_via_eventbridge")["Records"][0]["body"])
    event["detail"]["object"].update(key=key, size=len(first))
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(event))
    wait_for(lambda: _queue_empty(sqs, queue_url), 30, "the upload events queue to drain")
    # Then every count is still exact and the execution ran once
    status = stack.status(batch_id).json()
    assert status["status"] == "completed"
    assert {state: n for state, n in status["counts"].items() if n} == {"total": 2, "completed": 2}
    sfn = boto3.client("stepfunctions", endpoint_url=stack.local.moto_endpoint)
    executions = sfn.list_executions(stateMachineArn=stack.local.outputs["StateMachineArn"])["executions"]
    assert [e["name"] for e in executions].count(batch_id) == 1


def _queue_empty(sqs: object, queue_url: str) -> bool:
    attributes = sqs.get_queue_attributes(  # type: ignore[attr-defined]
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return all(value == "0" for value in attributes.values())
