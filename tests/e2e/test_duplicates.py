"""Skipping duplicates (issue 10) over HTTP against the local stack: files the tenant already had
described are not uploaded, a duplicate found after upload is described once, and another tenant's
files are nobody's duplicate target.

Provider calls are counted in the describe function's own log (.local/logs/DescribeFileFunction.log,
what CloudWatch Logs holds on AWS): it logs "file described" when it called the provider and
"description reused" when it did not."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
import requests

from tests.e2e.conftest import Stack, wait_for
from tests.e2e.test_batch_lifecycle import png

pytestmark = pytest.mark.e2e


def create(
    stack: Stack, files: list[tuple[str, bytes]], *, declare: bool = True, key: str | None = None
) -> Any:
    body = {
        "files": [
            {
                "filename": name,
                "size": len(content),
                "content_type": "image/png",
                **({"sha256": hashlib.sha256(content).hexdigest()} if declare else {}),
            }
            for name, content in files
        ],
        "skip_duplicates": True,
    }
    response = requests.post(f"{stack.api_url}/v1/batches", json=body, headers=stack.headers(key), timeout=30)
    assert response.status_code == 201, response.text
    return response.json()


def upload(created: Any, contents: list[bytes]) -> int:
    """PUT every file that has an upload instruction; returns how many were uploaded."""
    uploaded = 0
    for file, content in zip(created["files"], contents, strict=True):
        if file["upload"] is None:
            continue
        put = requests.put(file["upload"]["url"], data=content, headers=file["upload"]["headers"], timeout=30)
        assert put.status_code == 200, put.text
        uploaded += 1
    return uploaded


def results(stack: Stack, batch_id: str, key: str | None = None) -> list[dict[str, Any]]:
    response = requests.get(
        f"{stack.api_url}/v1/batches/{batch_id}/results",
        params={"limit": 100},
        headers=stack.headers(key),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def describe_log(stack: Stack, batch_id: str, message: str) -> int:
    """How many times the describe function logged `message` for the batch."""
    path = stack.local.state_dir / "logs" / "DescribeFileFunction.log"
    count = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("message") == message and entry.get("batch_id") == batch_id:
            count += 1
    return count


def test_a_batch_of_10_with_4_duplicates_of_an_earlier_batch_uploads_6_and_skips_4(stack: Stack) -> None:
    # Given an earlier batch (skipping duplicates) whose 4 pictures completed
    pictures = [png(30 + n, 20, (n * 40, 90, 200)) for n in range(10)]
    earlier_files = [(f"earlier-{n}.png", pictures[n]) for n in range(4)]
    earlier = create(stack, earlier_files)
    assert upload(earlier, pictures[:4]) == 4
    assert stack.wait_terminal(earlier["batch_id"])["status"] == "completed"
    earlier_results = {r["filename"]: r for r in results(stack, earlier["batch_id"])}
    # When a batch of 10 pictures is created, 4 of them those same bytes (sha256 declared)
    created = create(stack, [(f"photo-{n}.png", pictures[n]) for n in range(10)])
    batch_id = created["batch_id"]
    # Then the 4 get no upload instruction and say whose result they take; 6 are uploaded
    skipped = [f for f in created["files"] if f["upload"] is None]
    assert [f["filename"] for f in skipped] == [f"photo-{n}.png" for n in range(4)]
    assert [f["duplicate_of"] for f in skipped] == [
        {"batch_id": earlier["batch_id"], "file_id": earlier_results[f"earlier-{n}.png"]["file_id"]}
        for n in range(4)
    ]
    assert upload(created, pictures) == 6
    # And the batch ends completed: 6 described, 4 skipped with the earlier results copied
    status = stack.wait_terminal(batch_id)
    assert status["status"] == "completed", status
    assert {state: n for state, n in status["counts"].items() if n} == {
        "total": 10,
        "completed": 6,
        "skipped": 4,
    }
    listed = results(stack, batch_id)
    for n, result in enumerate(listed[:4]):
        original = earlier_results[f"earlier-{n}.png"]
        assert result["status"] == "skipped" and result["uploaded_at"] is None
        assert result["duplicate_of"] == {"batch_id": earlier["batch_id"], "file_id": original["file_id"]}
        assert result["description"] == original["description"]
        assert result["sha256"] == hashlib.sha256(pictures[n]).hexdigest()
    assert all(r["status"] == "completed" and r["duplicate_of"] is None for r in listed[4:])
    # And the provider was called for the 6 uploaded files only
    assert describe_log(stack, batch_id, "file described") == 6
    # When a third batch declares only known pictures
    again = create(stack, [(f"again-{n}.png", pictures[n]) for n in (7, 2)])
    # Then it has ended at create, completed, with its export, nothing to upload
    assert again["status"] == "completed" and [f["upload"] for f in again["files"]] == [None, None]
    assert stack.status(again["batch_id"]).json()["counts"]["skipped"] == 2
    export = requests.get(
        f"{stack.api_url}/v1/batches/{again['batch_id']}/export", headers=stack.headers(), timeout=30
    )
    assert export.status_code == 200 and export.json()["files"] == 2
    assert [r["duplicate_of"]["batch_id"] for r in results(stack, again["batch_id"])] == [
        batch_id,
        earlier["batch_id"],
    ]


def test_a_duplicate_found_after_upload_is_described_once(stack: Stack) -> None:
    # Given a batch that skips duplicates with two files of the same new bytes, no hash declared
    picture = png(41, 17, (10, 200, 10))
    created = create(stack, [("first.png", picture), ("again.png", picture)], declare=False)
    batch_id = created["batch_id"]
    # When both are uploaded and processed (at once, in one Express child)
    assert upload(created, [picture, picture]) == 2
    status = stack.wait_terminal(batch_id)
    # Then both completed, one with the other's description, which the provider made once
    assert status["status"] == "completed", status
    first, again = results(stack, batch_id)
    assert first["status"] == again["status"] == "completed"
    [original] = [r for r in (first, again) if r["duplicate_of"] is None]
    [reused] = [r for r in (first, again) if r["duplicate_of"] is not None]
    assert reused["duplicate_of"] == {"batch_id": batch_id, "file_id": original["file_id"]}
    assert reused["description"] == original["description"]
    assert reused["sha256"] == original["sha256"] == hashlib.sha256(picture).hexdigest()
    assert describe_log(stack, batch_id, "file described") == 1
    assert describe_log(stack, batch_id, "description reused") == 1


def test_a_duplicate_of_another_tenants_file_is_not_skipped(stack: Stack) -> None:
    # Given a picture the session's tenant had described (skipping duplicates)
    picture = png(23, 29, (250, 250, 0))
    mine = create(stack, [("mine.png", picture)])
    upload(mine, [picture])
    assert stack.wait_terminal(mine["batch_id"])["status"] == "completed"
    # When another tenant declares the same bytes
    other_key = stack.local.create_api_key("e2e-dupes-other")
    theirs = create(stack, [("theirs.png", picture)], key=other_key)
    # Then it gets an upload instruction, and its file is described for it, with no duplicate_of
    [file] = theirs["files"]
    assert file["upload"] is not None and file["duplicate_of"] is None
    upload(theirs, [picture])
    wait_for(
        lambda: requests.get(
            f"{stack.api_url}/v1/batches/{theirs['batch_id']}", headers=stack.headers(other_key), timeout=30
        ).json()["is_terminal"],
        120,
        "the other tenant's batch to end",
    )
    [result] = results(stack, theirs["batch_id"], key=other_key)
    assert result["status"] == "completed" and result["duplicate_of"] is None
    assert describe_log(stack, theirs["batch_id"], "file described") == 1
