"""Close, cancel, retry and the upload window over HTTP on the local stack, with the races a client
can cause: an upload after close, a cancel while files are being described, a retry called twice,
and a file that is never uploaded (the sweep, run by the template's schedule, ends the batch)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.e2e.conftest import Stack, started_stack, wait_for
from tests.e2e.test_batch_lifecycle import png

pytestmark = pytest.mark.e2e


def create(stack: Stack, files: list[tuple[str, bytes]]) -> dict[str, Any]:
    response = stack.post_batch(
        [{"filename": n, "size": len(b), "content_type": "image/png"} for n, b in files]
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def put(created: dict[str, Any], index: int, content: bytes) -> None:
    upload = created["files"][index]["upload"]
    assert requests.put(upload["url"], data=content, headers=upload["headers"], timeout=30).status_code == 200


def post(stack: Stack, batch_id: str, action: str, body: Any = None) -> requests.Response:
    return requests.post(
        f"{stack.api_url}/v1/batches/{batch_id}/{action}", json=body, headers=stack.headers(), timeout=60
    )


def test_an_upload_after_close_changes_nothing(stack: Stack) -> None:
    # Given a batch of two files, one uploaded and recorded
    first, second = png(8, 8), png(9, 9)
    created = create(stack, [("closing-1.png", first), ("closing-2.png", second)])
    batch_id = created["batch_id"]
    put(created, 0, first)
    wait_for(lambda: stack.status(batch_id).json()["counts"]["uploaded"] == 1, 30, "the upload event")
    # When the client closes it, then uploads the second file anyway
    closed = post(stack, batch_id, "close")
    put(created, 1, second)
    # Then the close answered 202, processing ran on the first file only, the second expired
    assert closed.status_code == 202, closed.text
    assert closed.json()["counts"]["upload_expired"] == 1
    final = stack.wait_terminal(batch_id)
    assert final["status"] == "completed"
    assert (final["counts"]["completed"], final["counts"]["upload_expired"]) == (1, 1)
    results = {r["filename"]: r for r in stack.results(batch_id)}
    assert results["closing-2.png"]["status"] == "upload_expired"
    assert results["closing-2.png"]["error"]["retryable"] is False
    # And the uploads route says uploads are over
    uploads = requests.get(
        f"{stack.api_url}/v1/batches/{batch_id}/uploads", headers=stack.headers(), timeout=30
    )
    assert (uploads.status_code, uploads.json()["error"]["code"]) == (409, "batch_ended")


def test_cancel_during_processing_stops_the_execution_and_cancels_what_is_unfinished(stack: Stack) -> None:
    # Given a batch of four files whose descriptions are slow (a slow provider)
    rule = stack.local.inject_latency("DescribeFileFunction", "slowcancel", 15.0)
    files = [(f"slowcancel-{i}.png", png(10 + i, 10)) for i in range(4)]
    batch_id = stack.submit([(n, b, "image/png") for n, b in files])
    wait_for(lambda: rule.delayed >= 1, 60, "a describe to be under way")
    # When it is cancelled while processing, twice
    first, second = post(stack, batch_id, "cancel"), post(stack, batch_id, "cancel")
    # Then both answer 202 and the batch is cancelled with every unfinished file cancelled
    assert (first.status_code, second.status_code) == (202, 202), first.text
    final = stack.wait_terminal(batch_id, timeout=60)
    assert final["status"] == "cancelled"
    assert final["counts"]["cancelled"] == 4 - final["counts"]["completed"] - final["counts"]["failed"]
    assert final["counts"]["cancelled"] >= 1
    # And the execution was stopped (locally it turns ABORTED once the describes under way return,
    # docs/local-stack.md); the results those describes bring change nothing
    sfn = stack.local.client("stepfunctions")
    arn = stack.local.outputs["StateMachineArn"].replace(":stateMachine:", ":execution:") + f":{batch_id}"
    wait_for(lambda: sfn.describe_execution(executionArn=arn)["status"] == "ABORTED", 60, "the stop")
    # (an ABORTED execution runs no further state: every result it could bring has landed)
    assert stack.status(batch_id).json()["counts"] == final["counts"]


def test_retry_runs_the_retryable_failures_in_a_new_execution_once(stack: Stack) -> None:
    # Given an ended batch: one file completed, one failed retryably (its describe always throttles)
    batch_id = stack.submit(
        [("fine.png", png(12, 12), "image/png"), ("hopeless-r.png", png(13, 13), "image/png")]
    )
    ended = stack.wait_terminal(batch_id)
    assert ended["status"] == "completed_with_errors"
    # When retry is called twice at once
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: post(stack, batch_id, "retry", {}), range(2)))
    # Then one started retry 1 in <batch>-r1 with just the failed file; the other was refused
    codes = sorted(a.status_code for a in answers)
    assert codes == [202, 409], [a.text for a in answers]
    accepted = next(a.json() for a in answers if a.status_code == 202)
    assert (accepted["retry"], accepted["execution_name"]) == (1, f"{batch_id}-r1")
    assert accepted["file_ids"] == ["f00002"]
    # And the batch ends again with the counts moved exactly (the file failed again, retryably)
    final = wait_for(
        lambda: (s := stack.status(batch_id).json())["is_terminal"] and s["retries"] == 1 and s,
        120,
        "the retry",
    )
    assert final["status"] == "completed_with_errors"
    assert (final["counts"]["completed"], final["counts"]["failed"]) == (1, 1)
    sfn = stack.local.client("stepfunctions")
    arn = stack.local.outputs["StateMachineArn"].replace(":stateMachine:", ":execution:") + f":{batch_id}-r1"
    # (the status is written by the finalize step, a moment before its execution ends)
    ended_as = wait_for(
        lambda: (status := sfn.describe_execution(executionArn=arn)["status"]) != "RUNNING" and status,
        60,
        "the retry's execution",
    )
    assert ended_as == "SUCCEEDED"


@pytest.fixture(scope="module")
def short_window(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # The shortest window the template allows: URLs valid 60 s, no grace.
    overrides = {"UploadUrlTtlSeconds": "60", "UploadGraceSeconds": "0"}
    with started_stack(tmp_path_factory.mktemp("short-window"), overrides, "window") as started:
        yield started


@pytest.mark.own_stack
def test_a_batch_with_a_file_never_uploaded_ends_on_its_own(short_window: Stack) -> None:
    # Given two batches: one with one of two files uploaded, one with nothing uploaded
    content = png(11, 11)
    partial = create(short_window, [("arrives.png", content), ("never.png", png(5, 5))])
    put(partial, 0, content)
    empty = create(short_window, [("nothing.png", content)])
    # When nobody does anything more, past the window (60 s) and the sweep's next minute
    # Then the first processes what arrived and the second expires, each with a terminal state per file
    done = short_window.wait_terminal(partial["batch_id"], timeout=200)
    assert done["status"] == "completed"
    assert (done["counts"]["completed"], done["counts"]["upload_expired"]) == (1, 1)
    expired = short_window.wait_terminal(empty["batch_id"], timeout=60)
    assert expired["status"] == "expired" and expired["counts"]["upload_expired"] == 1
