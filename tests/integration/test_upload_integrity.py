"""Declared checksums and browser POST uploads, handlers in-process under moto: validation of what is
declared, the headers an instruction gives against what its URL signed, and a POST upload through the
record and process steps (moto enforces no presigned condition: the product's own checks are what
these tests can observe; tests/unit/test_upload_signing.py reads what S3 would enforce)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.conftest import load_event
from tests.integration.conftest import BUCKET, TABLE, Aws, api_event
from tests.integration.test_workflow_handlers import batch_status, png

Invoke = Callable[[str, dict[str, Any]], Any]


def create(invoke: Invoke, files: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    response = invoke("create_batch", api_event("POST", "/v1/batches", body={"files": files, **options}))
    assert response["statusCode"] == 201, response["body"]
    return dict(json.loads(response["body"]))


def post_form(upload: dict[str, Any], content: bytes, filename: str) -> requests.Response:
    """What a browser form sends: the instruction's fields, then the file, as multipart/form-data."""
    return requests.post(
        upload["url"], data=upload["fields"], files={"file": (filename, content)}, timeout=10
    )


def upload_event(
    batch_id: str, file_id: str, size: int, version_id: str, message_id: str, *, by_post: bool = True
) -> dict[str, Any]:
    """The SQS message of S3's EventBridge "Object Created" for a POST upload (reason "POST Object"),
    or for a PUT."""
    event = load_event(
        "sqs_s3_object_created_by_post_via_eventbridge"
        if by_post
        else "sqs_s3_object_created_via_eventbridge"
    )
    record = event["Records"][0]
    body = json.loads(record["body"])
    body["detail"]["bucket"]["name"] = BUCKET
    body["detail"]["object"].update(
        {"key": f"uploads/acme/{batch_id}/{file_id}", "size": size, "version-id": version_id}
    )
    record.update(body=json.dumps(body), messageId=message_id)
    return event


@pytest.mark.parametrize(
    "sha256",
    [
        "ab" * 31,  # hex, too short
        "ab" * 33,  # hex, too long
        "zz" * 32,  # 64 characters, not hex
        base64.b64encode(b"\x01" * 31).decode(),  # base64 of 31 bytes
        "A" * 43 + "!",  # not base64
        "",
    ],
)
def test_a_malformed_declared_sha256_is_a_400_saying_where_and_nothing_is_written(
    aws: Aws, invoke: Invoke, sha256: str
) -> None:
    # When a create declares a SHA-256 that is neither 64 hex digits nor the base64 of 32 bytes
    files = [{"filename": "a.png", "size": 5, "content_type": "image/png", "sha256": sha256}]
    response = invoke("create_batch", api_event("POST", "/v1/batches", body={"files": files}))
    # Then it is a 400 validation_error pointing at the field, and nothing was stored
    assert response["statusCode"] == 400
    error = json.loads(response["body"])["error"]
    assert error["code"] == "validation_error"
    assert any(d["location"].endswith("files.0.sha256") for d in error["details"])
    assert aws.dynamodb.scan(TableName=TABLE)["Count"] == 0


def test_the_headers_a_put_instruction_gives_are_exactly_the_ones_its_url_signed(
    aws: Aws, invoke: Invoke
) -> None:
    # Given a batch of a file declaring its SHA-256 (upper-case hex) and one declaring none
    content = png(6, 6)
    digest = hashlib.sha256(content)
    created = create(
        invoke,
        [
            {
                "filename": "a.png",
                "size": len(content),
                "content_type": "image/png",
                "sha256": digest.hexdigest().upper(),
            },
            {"filename": "b.png", "size": len(content), "content_type": "image/png"},
        ],
    )
    # When the client asks for the instructions again
    batch_id = created["batch_id"]
    again = invoke(
        "list_uploads",
        api_event("GET", f"/v1/batches/{batch_id}/uploads", path_parameters={"batch_id": batch_id}),
    )
    # Then each instruction's headers, with Host and Content-Length, are exactly what its URL signed
    instructions = [f["upload"] for f in created["files"] + json.loads(again["body"])["items"]]
    for upload in instructions:
        signed = parse_qs(urlsplit(upload["url"]).query)["X-Amz-SignedHeaders"][0].split(";")
        assert sorted({name.lower() for name in upload["headers"]} | {"host", "content-length"}) == signed
    # And the declared hash is echoed as hex and signed as S3's base64 header with its algorithm
    assert created["files"][0]["sha256"] == digest.hexdigest()
    assert (
        created["files"][0]["upload"]["headers"]["x-amz-checksum-sha256"]
        == base64.b64encode(digest.digest()).decode()
    )
    assert created["files"][0]["upload"]["headers"]["x-amz-sdk-checksum-algorithm"] == "SHA256"
    assert "x-amz-checksum-sha256" not in created["files"][1]["upload"]["headers"]
    # And a plain HTTP client can upload with them (moto checks no checksum: the product does)
    put = requests.put(instructions[0]["url"], data=content, headers=instructions[0]["headers"], timeout=10)
    assert put.status_code == 200, put.text


def test_a_post_upload_is_recorded_once_and_a_second_post_cannot_replace_the_announced_version(
    aws: Aws, invoke: Invoke
) -> None:
    # Given a batch created for browser POST uploads, its file declaring no hash
    picture = png(16, 9)
    created = create(
        invoke,
        [{"filename": "photo.png", "size": len(picture), "content_type": "image/png"}],
        upload_method="POST",
    )
    batch_id, upload = created["batch_id"], created["files"][0]["upload"]
    key = f"uploads/acme/{batch_id}/f00001"
    assert upload["method"] == "POST" and upload["fields"]["key"] == key
    # (asked for again, the instruction is a POST too)
    again = invoke(
        "list_uploads",
        api_event("GET", f"/v1/batches/{batch_id}/uploads", path_parameters={"batch_id": batch_id}),
    )
    [reissued] = json.loads(again["body"])["items"]
    assert reissued["upload"]["method"] == "POST" and reissued["upload"]["fields"]["key"] == key
    # When the file is POSTed as a form, then other bytes of the same length are POSTed again with
    # the same, still valid fields (a POST cannot carry If-None-Match: S3 keeps both as versions)
    assert post_form(upload, picture, "photo.png").status_code == 204
    first_version = aws.s3.head_object(Bucket=BUCKET, Key=key)["VersionId"]
    text = b"not a picture at all ".ljust(len(picture), b"!")
    assert post_form(upload, text, "photo.png").status_code == 204
    second_version = aws.s3.head_object(Bucket=BUCKET, Key=key)["VersionId"]
    assert second_version != first_version
    # And both upload events arrive, the first one twice (at least once)
    for version, message in ((first_version, "m-1"), (first_version, "m-1-again"), (second_version, "m-2")):
        event = upload_event(batch_id, "f00001", len(picture), version, message)
        assert invoke("record_upload", event) == {"batchItemFailures": []}
    # Then the file was counted once and the batch started, pinned to the version announced first
    status = batch_status(invoke, batch_id)
    assert status["counts"]["uploaded"] == 1
    assert status["status"] == "processing"
    # And the process and describe steps read that version, not the bytes the second POST wrote
    processed = invoke("process_file", {"tenant_id": "acme", "batch_id": batch_id, "file_id": "f00001"})
    assert processed["version_id"] == first_version
    assert processed["facts"]["sha256"] == hashlib.sha256(picture).hexdigest()
    described = invoke("describe_file", {"file": processed, "attempt": 0})
    assert described["description"]["attributes"]["kind"] == "image"


def test_a_post_batch_declaring_a_hash_signs_it_into_the_form_and_fails_other_bytes(
    aws: Aws, invoke: Invoke
) -> None:
    # Given a POST batch whose file declares the SHA-256 of other bytes than it uploads (moto, unlike
    # S3, does not check the form's checksum field)
    picture, declared = png(10, 10), png(11, 10)
    created = create(
        invoke,
        [
            {
                "filename": "photo.png",
                "size": len(picture),
                "content_type": "image/png",
                "sha256": base64.b64encode(hashlib.sha256(declared).digest()).decode(),
            }
        ],
        upload_method="POST",
    )
    batch_id, upload = created["batch_id"], created["files"][0]["upload"]
    # Then the form carries the checksum field S3 checks, pinned by the signed policy
    checksum = base64.b64encode(hashlib.sha256(declared).digest()).decode()
    assert upload["fields"]["x-amz-checksum-sha256"] == checksum
    policy = json.loads(base64.b64decode(upload["fields"]["policy"]))
    assert {"x-amz-checksum-sha256": checksum} in policy["conditions"]
    assert ["content-length-range", len(picture), len(picture)] in policy["conditions"]
    # When the other bytes are POSTed anyway and announced
    assert post_form(upload, picture, "photo.png").status_code == 204
    version = aws.s3.head_object(Bucket=BUCKET, Key=f"uploads/acme/{batch_id}/f00001")["VersionId"]
    invoke("record_upload", upload_event(batch_id, "f00001", len(picture), version, "m-1"))
    # Then the process step refuses them with checksum_mismatch
    with pytest.raises(Exception, match="checksum_mismatch") as rejected:
        invoke("process_file", {"tenant_id": "acme", "batch_id": batch_id, "file_id": "f00001"})
    assert type(rejected.value).__name__ == "FileRejectedError"
    assert hashlib.sha256(declared).hexdigest() in str(rejected.value)
    assert hashlib.sha256(picture).hexdigest() in str(rejected.value)


def test_bytes_put_under_a_wrong_declared_hash_fail_checksum_mismatch_not_a_read_error(
    aws: Aws, invoke: Invoke
) -> None:
    # Given a file declaring the SHA-256 of other bytes, PUT with its instruction's headers: moto, unlike
    # S3, stores the bytes and keeps the declared checksum as the object's own
    picture, declared = png(12, 12), png(13, 12)
    created = create(
        invoke,
        [
            {
                "filename": "liar.png",
                "size": len(picture),
                "content_type": "image/png",
                "sha256": hashlib.sha256(declared).hexdigest(),
            }
        ],
    )
    batch_id, upload = created["batch_id"], created["files"][0]["upload"]
    assert requests.put(upload["url"], data=picture, headers=upload["headers"], timeout=10).status_code == 200
    key = f"uploads/acme/{batch_id}/f00001"
    stored = aws.s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
    assert stored["ChecksumSHA256"] == upload["headers"]["x-amz-checksum-sha256"]
    invoke(
        "record_upload",
        upload_event(batch_id, "f00001", len(picture), stored["VersionId"], "m-1", by_post=False),
    )
    # When the process step reads it
    with pytest.raises(Exception, match="checksum_mismatch") as rejected:
        invoke("process_file", {"tenant_id": "acme", "batch_id": batch_id, "file_id": "f00001"})
    # Then it is the process step's own permanent checksum_mismatch, not botocore's validation of the
    # stored checksum surfacing as a retryable storage error
    assert type(rejected.value).__name__ == "FileRejectedError"
