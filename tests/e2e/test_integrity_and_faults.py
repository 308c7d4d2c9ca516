"""Integrity and fault tolerance over HTTP against the local stack: uploaded bytes cannot be swapped
under the workflow, and a crashed execution environment is infrastructure, not the file."""

from __future__ import annotations

import hashlib

import pytest
import requests

from tests.e2e.conftest import Stack
from tests.e2e.test_batch_lifecycle import png

pytestmark = pytest.mark.e2e


def create(stack: Stack, files: list[tuple[str, bytes, str]]) -> dict[str, object]:
    response = stack.post_batch([{"filename": n, "size": len(b), "content_type": t} for n, b, t in files])
    assert response.status_code == 201, response.text
    return dict(response.json())


def put(upload: dict[str, object], content: bytes) -> requests.Response:
    return requests.put(
        str(upload["url"]),
        data=content,
        headers=dict(upload["headers"]),  # type: ignore[call-overload]
        timeout=30,
    )


def test_an_uploaded_file_cannot_be_replaced_through_its_url_before_or_after_processing(stack: Stack) -> None:
    # Given a PNG uploaded through its presigned URL
    picture = png(24, 12, (200, 30, 30))
    created = create(stack, [("photo.png", picture, "image/png")])
    upload = created["files"][0]["upload"]  # type: ignore[index]
    assert put(upload, picture).status_code == 200
    # When the client PUTs text of the same length through the same, still valid URL, at once and
    # again once the batch has finished
    text = b"a plain text file, no picture ".ljust(len(picture), b".")
    during = put(upload, text)
    status = stack.wait_terminal(str(created["batch_id"]))
    after = put(upload, text)
    # Then S3 refuses both, and the result is the PNG's: its hash, its type, its description
    assert (during.status_code, after.status_code) == (412, 412)
    assert status["status"] == "completed"
    [result] = stack.results(str(created["batch_id"]))
    assert result["sha256"] == hashlib.sha256(picture).hexdigest()
    assert result["detected_content_type"] == "image/png"
    assert result["description"]["attributes"]["kind"] == "image"
    assert "24\u00d712" in result["description"]["text"]


@pytest.mark.parametrize("function", ["ProcessFileFunction", "DescribeFileFunction"])
def test_an_environment_killed_mid_invocation_is_retried_and_the_file_completes(
    stack: Stack, function: str
) -> None:
    # Given a batch whose file's first invocation of one workflow step is SIGKILLed mid-invocation
    picture = png(10, 10)
    created = create(stack, [("crashy.png", picture, "image/png")])
    batch_id = str(created["batch_id"])
    crashes = stack.local.inject_crashes(function, batch_id, times=1)
    # When it is uploaded and processed
    assert put(created["files"][0]["upload"], picture).status_code == 200  # type: ignore[index]
    status = stack.wait_terminal(batch_id)
    # Then the environment was really killed once, and the state machine's retry completed the file
    assert crashes.crashed == 1
    assert status["status"] == "completed", status
    [result] = stack.results(batch_id)
    assert result["status"] == "completed"
    assert result["sha256"] == hashlib.sha256(picture).hexdigest()


def test_a_result_that_cannot_be_recorded_fails_only_its_file_not_the_others_of_its_express_child(
    stack: Stack,
) -> None:
    # Given a batch of two files (one Express child) whose second file's record step is SIGKILLed on
    # its first attempt and on every retry (RecordSuccess: 1 + 5 attempts)
    first, second = png(12, 12), png(13, 13)
    created = create(
        stack, [("slow-but-kept.png", first, "image/png"), ("unrecordable.png", second, "image/png")]
    )
    batch_id = str(created["batch_id"])
    files = created["files"]
    assert isinstance(files, list)
    crashes = stack.local.inject_crashes("RecordResultFunction", "unrecordable.png", times=6)
    # and whose first file is described slower than all those attempts can take (31 s of backoff at
    # most): it is still running when the second file's recording gives up
    slow = stack.local.inject_latency("DescribeFileFunction", "slow-but-kept.png", 40)
    # When both are uploaded and processed
    for file, content in zip(files, (first, second), strict=True):
        assert put(file["upload"], content).status_code == 200
    status = stack.wait_terminal(batch_id)
    # Then every attempt to record the second file was killed, the first file kept its result, and the
    # second, left unrecorded, was failed by the finalize step as not processed, retryable
    assert crashes.crashed == 6 and slow.delayed >= 1
    assert status["status"] == "completed_with_errors", status
    results = {r["file_id"]: r for r in stack.results(batch_id)}
    assert results[files[0]["file_id"]]["status"] == "completed"
    assert results[files[1]["file_id"]]["status"] == "failed"
    assert results[files[1]["file_id"]]["error"]["code"] == "not_processed"
    assert results[files[1]["file_id"]]["error"]["retryable"] is True


def test_an_environment_that_keeps_crashing_fails_the_file_retryable_with_a_code_saying_so(
    stack: Stack,
) -> None:
    # Given a batch whose file's process step is SIGKILLed on every attempt
    picture = png(11, 11)
    created = create(stack, [("doomed.png", picture, "image/png")])
    batch_id = str(created["batch_id"])
    crashes = stack.local.inject_crashes("ProcessFileFunction", batch_id, times=99)
    # When it is uploaded and processed
    assert put(created["files"][0]["upload"], picture).status_code == 200  # type: ignore[index]
    status = stack.wait_terminal(batch_id)
    # Then the state machine tried three times (the first attempt and two retries), and recorded a
    # crash: infrastructure, so retryable, not the file's fault
    assert crashes.crashed == 3
    assert status["status"] == "failed"
    [result] = stack.results(batch_id)
    assert result["error"]["code"] == "function_crashed"
    assert result["error"]["retryable"] is True
    assert "signal: killed" in result["error"]["message"]
