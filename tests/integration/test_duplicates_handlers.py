"""Skipping duplicates (issue 10), handlers in-process under moto: the hash index items the record
step writes, the create's BatchGetItem lookup (100 keys a call, unprocessed keys asked again), claims
made at once, and the purge removing the index items its batch owns."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from filebatch import runtime
from filebatch.models.domain import DEFAULT_INSTRUCTIONS, FileFacts, KnownResult
from filebatch.models.records import known_result_pk
from filebatch.services.duplicates import fingerprint
from tests.integration.conftest import BUCKET, TABLE, Aws, api_event
from tests.integration.test_purge_handlers import received_jobs
from tests.integration.test_workflow_handlers import Invoke, s3_event, upload_all

FINGERPRINT = fingerprint("local", DEFAULT_INSTRUCTIONS)


def text(n: int) -> bytes:
    return f"note {n}: the same words again\n".encode()


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def create(
    invoke: Invoke, contents: list[bytes], *, skip: bool = True, tenant: str = "acme"
) -> dict[str, Any]:
    body = {
        "files": [
            {"filename": f"n{i}.txt", "size": len(c), "content_type": "text/plain", "sha256": sha(c)}
            for i, c in enumerate(contents)
        ],
        "skip_duplicates": skip,
    }
    response = invoke("create_batch", api_event("POST", "/v1/batches", body=body, tenant_id=tenant))
    assert response["statusCode"] == 201, response["body"]
    return dict(json.loads(response["body"]))


def run(invoke: Invoke, created: dict[str, Any], contents: list[bytes]) -> str:
    """Upload the files that have an instruction, and run the workflow's steps over the manifest."""
    batch_id = created["batch_id"]
    to_upload = [(f, c) for f, c in zip(created["files"], contents, strict=True) if f["upload"]]
    upload_all({"files": [f for f, _ in to_upload]}, [c for _, c in to_upload])
    for file, content in to_upload:
        invoke("record_upload", s3_event(batch_id, file["file_id"], len(content)))
    manifest = json.loads(
        boto3.client("s3").get_object(Bucket=BUCKET, Key=f"manifests/acme/{batch_id}.json")["Body"].read()
    )
    task = {"tenant_id": "acme", "batch_id": batch_id, "dedup_fingerprint": FINGERPRINT}
    for item in manifest:
        processed = invoke("process_file", {**task, "file_id": item["file_id"]})
        described = invoke("describe_file", {"file": processed, "attempt": 0})
        invoke("record_result", {"outcome": "succeeded", "file": described})
    return str(invoke("finalize_batch", {"tenant_id": "acme", "batch_id": batch_id})["status"])


def index_item(aws: Aws, content: bytes, tenant: str = "acme") -> dict[str, Any] | None:
    item = aws.dynamodb.get_item(
        TableName=TABLE,
        Key={"pk": {"S": known_result_pk(tenant, FINGERPRINT, sha(content))}, "sk": {"S": "DEDUP"}},
    ).get("Item")
    return dict(item) if item else None


def test_a_completed_file_is_indexed_and_a_later_batch_skips_its_content(aws: Aws, invoke: Invoke) -> None:
    # Given a batch that skips duplicates, run through the workflow's handlers
    first = create(invoke, [text(1), text(2)])
    assert run(invoke, first, [text(1), text(2)]) == "completed"
    # Then each completed file has its index item: completed, naming it, its description, its expiry
    item = index_item(aws, text(1))
    assert item is not None
    assert (item["state"]["S"], item["batch_id"]["S"], item["file_id"]["S"]) == (
        "completed",
        first["batch_id"],
        "f00001",
    )
    file_item = aws.dynamodb.get_item(
        TableName=TABLE,
        Key={"pk": {"S": f"TENANT#acme#BATCH#{first['batch_id']}"}, "sk": {"S": "FILE#f00001"}},
    )["Item"]
    assert item["expires_at"] == file_item["expires_at"]
    assert json.loads(item["description_json"]["S"]) == json.loads(file_item["description_json"]["S"])
    # When a later batch declares one known and one new content
    later = create(invoke, [text(2), text(3)])
    # Then the known one has no upload and names the earlier file; the manifest lists the new one only
    assert later["files"][0]["upload"] is None
    assert later["files"][0]["duplicate_of"] == {"batch_id": first["batch_id"], "file_id": "f00002"}
    assert later["files"][1]["upload"]["method"] == "PUT"
    manifest = aws.s3.get_object(Bucket=BUCKET, Key=f"manifests/acme/{later['batch_id']}.json")["Body"].read()
    assert json.loads(manifest) == [{"file_id": "f00002"}]
    # And once the new one is processed the batch completes, its results listing the skipped file
    assert run(invoke, later, [text(2), text(3)]) == "completed"
    results = json.loads(
        invoke(
            "list_results",
            api_event(
                "GET",
                f"/v1/batches/{later['batch_id']}/results",
                path_parameters={"batch_id": later["batch_id"]},
            ),
        )["body"]
    )["items"]
    assert [r["status"] for r in results] == ["skipped", "completed"]
    assert results[0]["duplicate_of"] == {"batch_id": first["batch_id"], "file_id": "f00002"}
    copied = index_item(aws, text(2))
    assert copied is not None
    assert results[0]["description"] == json.loads(copied["description_json"]["S"])
    assert results[0]["sha256"] == sha(text(2))


def test_another_tenant_declaring_the_same_content_uploads_it(aws: Aws, invoke: Invoke) -> None:
    # Given acme's completed file
    run(invoke, create(invoke, [text(1)]), [text(1)])
    # When globex declares the same bytes
    other = create(invoke, [text(1)], tenant="globex")
    # Then globex gets an upload instruction: the tenant is part of the index key
    assert other["files"][0]["upload"] is not None and other["files"][0]["duplicate_of"] is None


def seed(count: int) -> list[bytes]:
    """`count` completed index entries of acme, written as the record step writes them."""
    repo, now = runtime.repository(), datetime.now(UTC)
    contents = [text(n) for n in range(count)]
    for n, content in enumerate(contents):
        facts = FileFacts(size_bytes=len(content), sha256=sha(content), detected_content_type="text/plain")
        assert repo.publish_result(
            KnownResult(
                tenant_id="acme",
                fingerprint=FINGERPRINT,
                sha256=facts.sha256,
                state="completed",
                batch_id="b-" + "e" * 32,
                file_id=f"f{n + 1:05d}",
                facts=facts,
                description=None,
                expires_at=now + timedelta(days=1),
            ),
            now=now,
        )
    return contents


def test_the_lookup_pages_by_100_keys_and_asks_again_for_unprocessed_ones(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 230 completed entries, and a store that leaves every second key of a call unprocessed once
    contents = seed(230)
    repo = runtime.repository()
    client = repo._client  # type: ignore[attr-defined]
    calls: list[int] = []
    real = client.batch_get_item

    def batch_get_item(RequestItems: dict[str, Any]) -> dict[str, Any]:
        keys = RequestItems[TABLE]["Keys"]
        calls.append(len(keys))
        assert len(keys) <= 100 and RequestItems[TABLE]["ConsistentRead"] is True
        if len(calls) % 2:
            answer = real(RequestItems={TABLE: {**RequestItems[TABLE], "Keys": keys[::2]}})
            answer["UnprocessedKeys"] = {TABLE: {"Keys": keys[1::2]}}
            return dict(answer)
        return dict(real(RequestItems=RequestItems))

    monkeypatch.setattr(client, "batch_get_item", batch_get_item)
    # When 240 hashes are looked up (10 of them unknown)
    wanted = [sha(c) for c in contents] + [sha(b"unknown %d" % n) for n in range(10)]
    found = repo.known_results("acme", FINGERPRINT, wanted, now=datetime.now(UTC))
    # Then every known hash was found, in calls of at most 100 keys, the unprocessed ones asked again
    assert set(found) == {sha(c) for c in contents}
    assert calls == [100, 50, 100, 50, 40, 20]


def test_claims_made_at_once_have_one_winner_and_the_others_see_it(aws: Aws) -> None:
    # Given DynamoDB's atomic conditional writes (moto serialised as on the local stack)
    from moto.dynamodb.models import DynamoDBBackend

    from filebatch_local.provision import _serialise_dynamodb

    originals = dict(vars(DynamoDBBackend))
    _serialise_dynamodb()
    try:
        repo, now = runtime.repository(), datetime.now(UTC)
        start = threading.Barrier(8)
        answers: dict[int, KnownResult | None] = {}

        def claim(n: int) -> None:
            start.wait()
            answers[n] = repo.claim_description(
                KnownResult(
                    tenant_id="acme",
                    fingerprint=FINGERPRINT,
                    sha256=sha(b"same"),
                    state="claimed",
                    batch_id=f"b-{n:032x}",
                    file_id="f00001",
                    lease_until=now + timedelta(minutes=2),
                    expires_at=now + timedelta(days=1),
                ),
                now=now,
            )

        # When 8 files of 8 batches claim the same content at once
        threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for name, member in originals.items():
            if not name.startswith("_") and callable(member):
                setattr(DynamoDBBackend, name, member)
    # Then exactly one holds it, and each other one was answered with the winner's claim
    winners = [n for n, held in answers.items() if held is None]
    assert len(winners) == 1
    assert {held.batch_id for held in answers.values() if held is not None} == {f"b-{winners[0]:032x}"}


def test_the_purge_removes_the_index_items_its_batch_owns(aws: Aws, invoke: Invoke) -> None:
    # Given two batches whose files completed, the second skipping a content of the first
    doomed = create(invoke, [text(1), text(2)])
    run(invoke, doomed, [text(1), text(2)])
    kept = create(invoke, [text(2), text(3)])
    run(invoke, kept, [text(2), text(3)])
    # When the first is deleted and its purge job runs
    batch_id = doomed["batch_id"]
    response = invoke(
        "delete_batch",
        api_event("DELETE", f"/v1/batches/{batch_id}", path_parameters={"batch_id": batch_id}),
    )
    assert response["statusCode"] == 202
    [record] = received_jobs(aws)
    assert invoke("run_batch_job", {"Records": [record]}) == {"batchItemFailures": []}
    # Then its index items are gone, the other batch's stays, and its contents are uploaded again
    assert index_item(aws, text(1)) is None and index_item(aws, text(2)) is None
    assert index_item(aws, text(3)) is not None
    again = create(invoke, [text(1), text(3)])
    assert again["files"][0]["upload"] is not None
    assert again["files"][1]["duplicate_of"] == {"batch_id": kept["batch_id"], "file_id": "f00002"}
