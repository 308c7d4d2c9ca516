"""Exporting, filtering and deleting a batch over HTTP against the local stack: the real ASL (its
per-batch ResultWriter prefix), the finalize step's export, the DELETE route, the jobs queue and the
purge job it feeds."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import requests
from PIL import Image

from filebatch.models.domain import batch_object_prefixes, workflow_results_prefix
from tests.e2e.conftest import Stack, wait_for

pytestmark = pytest.mark.e2e
TENANT = "e2e"  # the tenant of the session stack's key


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (40, 90, 160)).save(buffer, format="PNG")
    return buffer.getvalue()


def get(stack: Stack, path: str, **params: str) -> requests.Response:
    return requests.get(f"{stack.api_url}{path}", params=params, headers=stack.headers(), timeout=30)


def delete(stack: Stack, batch_id: str) -> requests.Response:
    return requests.delete(f"{stack.api_url}/v1/batches/{batch_id}", headers=stack.headers(), timeout=30)


def object_versions(stack: Stack, prefix: str) -> list[str]:
    """Every version and delete marker under a prefix of the upload bucket."""
    s3 = stack.local.client("s3")
    listed = s3.list_object_versions(Bucket=stack.local.outputs["UploadBucketName"], Prefix=prefix)
    return [v["Key"] for v in listed.get("Versions", []) + listed.get("DeleteMarkers", [])]


def batch_items(stack: Stack, batch_id: str) -> list[dict[str, Any]]:
    dynamodb = stack.local.client("dynamodb")
    items: list[dict[str, Any]] = []
    request: dict[str, Any] = {"TableName": stack.local.outputs["TableName"]}
    while True:
        page = dynamodb.scan(**request)
        items += [i for i in page["Items"] if batch_id in i["pk"]["S"]]
        if "LastEvaluatedKey" not in page:
            return items
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_an_ended_batch_exports_every_result_filters_by_status_and_is_deleted_without_a_trace(
    stack: Stack,
) -> None:
    # Given a batch of three files, one of which lies about its size, processed to its end
    honest = png(12, 8)
    files = [
        ("a.png", honest, "image/png"),
        ("b.png", png(7, 7), "image/png"),
        ("c.png", honest, "image/png"),
    ]
    batch_id = stack.submit(files, upload=[honest, png(7, 7), honest + b"trailing"])
    status = stack.wait_terminal(batch_id)
    assert status["status"] == "completed_with_errors"
    # And the workflow's results went under the batch's own prefix
    assert object_versions(stack, workflow_results_prefix(TENANT, batch_id))

    # When its export is asked for
    response = get(stack, f"/v1/batches/{batch_id}/export")
    # Then it is a presigned download of every result, one JSON per line, as the results route has them
    assert response.status_code == 200, response.text
    export = response.json()
    assert export["batch_id"] == batch_id and export["files"] == 3
    downloaded = requests.get(export["url"], timeout=30)
    assert downloaded.status_code == 200
    lines = [json.loads(line) for line in downloaded.text.splitlines()]
    assert lines == stack.results(batch_id)
    assert [line["filename"] for line in lines] == ["a.png", "b.png", "c.png"]

    # When its results are filtered by status
    failed = get(stack, f"/v1/batches/{batch_id}/results", status="failed").json()
    completed = get(stack, f"/v1/batches/{batch_id}/results", status="completed", limit="1").json()
    # Then only the files in that status come back
    assert [r["filename"] for r in failed["items"]] == ["c.png"]
    assert failed["items"][0]["error"]["code"] == "size_mismatch"
    assert failed["next_cursor"] is None
    rest = get(stack, f"/v1/batches/{batch_id}/results", status="completed", cursor=completed["next_cursor"])
    assert [r["filename"] for r in completed["items"] + rest.json()["items"]] == ["a.png", "b.png"]

    # When it is deleted
    response = delete(stack, batch_id)
    # Then the answer is 202, and at once its status, results and export are 404
    assert response.status_code == 202, response.text
    assert response.json() == {"batch_id": batch_id, "status": "deleting"}
    for path in (
        f"/v1/batches/{batch_id}",
        f"/v1/batches/{batch_id}/results",
        f"/v1/batches/{batch_id}/export",
    ):
        gone = get(stack, path)
        assert gone.status_code == 404, (path, gone.text)
        assert gone.json()["error"]["code"] == "batch_not_found"
    assert delete(stack, batch_id).status_code == 404
    # And the purge job removes every object version and delete marker under its prefixes, then
    # every item of the batch
    prefixes = batch_object_prefixes(TENANT, batch_id)
    wait_for(
        lambda: not any(object_versions(stack, p) for p in prefixes) and not batch_items(stack, batch_id),
        60,
        f"batch {batch_id} to be purged",
    )


def test_a_batch_that_has_not_ended_has_no_export_and_cannot_be_deleted(stack: Stack) -> None:
    # Given a batch whose files were never uploaded
    created = stack.post_batch([{"filename": "x.png", "size": 10, "content_type": "image/png"}])
    batch_id = created.json()["batch_id"]
    # When its export or its deletion is asked for
    export = get(stack, f"/v1/batches/{batch_id}/export")
    deleted = delete(stack, batch_id)
    # Then both are refused as conflicts with its state, and it is still there
    assert (export.status_code, export.json()["error"]["code"]) == (409, "export_not_ready")
    assert (deleted.status_code, deleted.json()["error"]["code"]) == (409, "batch_not_ended")
    assert stack.status(batch_id).status_code == 200
