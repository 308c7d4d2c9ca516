"""Multipart uploads (issue 10) through the handlers, in-process under moto: create → parts →
complete / abort, and the S3 adapter's multipart calls and error mapping against moto's S3."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.stub import Stubber

from filebatch import runtime
from filebatch.adapters.s3 import S3ObjectStorage
from filebatch.errors import ConflictError, InvalidRequestError, NotFoundError
from filebatch.services.multipart import MIB
from filebatch_local.provision import install_moto_patches
from tests.conftest import load_event
from tests.integration.conftest import BUCKET, Aws, api_event

Invoke = Callable[[str, dict[str, Any]], Any]
# Multipart above 5 MiB (the smallest threshold the template allows): a 20 MiB file is 2 parts of
# 16 MiB + 4 MiB.
THRESHOLD = 5 * MIB
SIZE = 20 * MIB
PARTS = [b"a" * (16 * MIB), b"b" * (4 * MIB)]


@pytest.fixture
def multipart_env(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Aws:
    monkeypatch.setenv("MULTIPART_THRESHOLD_BYTES", str(THRESHOLD))
    monkeypatch.setenv("MAX_FILE_BYTES", str(50 * 1024 * MIB))
    from filebatch.config import get_settings

    get_settings.cache_clear()
    return aws


def body_of(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


def create(invoke: Invoke, *sizes: int) -> dict[str, Any]:
    files = [
        {"filename": f"video-{i}.mp4", "size": s, "content_type": "video/mp4"} for i, s in enumerate(sizes)
    ]
    response = invoke("create_batch", api_event("POST", "/v1/batches", body={"files": files}))
    assert response["statusCode"] == 201, response["body"]
    return body_of(response)


def file_route(invoke: Invoke, function: str, batch_id: str, file_id: str, verb: str, **kwargs: Any) -> Any:
    method = "GET" if verb == "parts" else "POST"
    path = f"/v1/batches/{batch_id}/files/{file_id}/{verb}"
    event = api_event(method, path, path_parameters={"batch_id": batch_id, "file_id": file_id}, **kwargs)
    return invoke(function, event)


def put_part(s3: Any, key: str, upload_id: str, number: int) -> str:
    return str(
        s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=number, Body=PARTS[number - 1])[
            "ETag"
        ]
    )


def test_a_multipart_file_resumes_through_the_parts_route_and_completes(
    multipart_env: Aws, invoke: Invoke
) -> None:
    # Given a batch with one small file and one 20 MiB file
    created = create(invoke, 1000, SIZE)
    batch_id = created["batch_id"]
    small, large = created["files"]
    assert small["upload"]["method"] == "PUT"
    upload = large["upload"]
    assert (upload["method"], upload["part_size"], upload["part_count"]) == ("MULTIPART", 16 * MIB, 2)
    # whose part URLs are presigned UploadPart requests with Content-Length signed
    assert all("uploadId=" in p["url"] and "content-length" in p["url"] for p in upload["parts"])
    key = f"uploads/acme/{batch_id}/{large['file_id']}"
    first_etag = put_part(multipart_env.s3, key, upload["upload_id"], 1)
    # When the client asks which parts arrived
    response = file_route(invoke, "list_upload_parts", batch_id, large["file_id"], "parts")
    assert response["statusCode"] == 200, response["body"]
    page = body_of(response)
    # Then part 1 is held (with its ETag) and only part 2 gets a URL
    assert [(p["part_number"], p["etag"], p["size"]) for p in page["uploaded"]] == [
        (1, first_etag.strip('"'), 16 * MIB)
    ]
    assert [p["part_number"] for p in page["parts"]] == [2]
    assert page["upload_id"] == upload["upload_id"]
    # A complete without part 2 is refused with a code, and S3 was not asked
    parts = [{"part_number": 1, "etag": first_etag}]
    refused = file_route(
        invoke, "complete_upload", batch_id, large["file_id"], "complete", body={"parts": parts}
    )
    assert refused["statusCode"] == 400
    assert body_of(refused)["error"]["code"] == "parts_missing"
    # When part 2 arrives and the client completes
    parts.append({"part_number": 2, "etag": put_part(multipart_env.s3, key, upload["upload_id"], 2)})
    done = file_route(
        invoke, "complete_upload", batch_id, large["file_id"], "complete", body={"parts": parts}
    )
    assert done["statusCode"] == 202, done["body"]
    # Then the object is there, whole
    head = multipart_env.s3.head_object(Bucket=BUCKET, Key=key)
    assert head["ContentLength"] == SIZE
    assert body_of(done)["size"] == SIZE
    # and completing again answers the same success
    again = file_route(
        invoke, "complete_upload", batch_id, large["file_id"], "complete", body={"parts": parts}
    )
    assert (again["statusCode"], body_of(again)) == (202, body_of(done))
    # while the parts route says the file is uploaded
    after = file_route(invoke, "list_upload_parts", batch_id, large["file_id"], "parts")
    assert (after["statusCode"], body_of(after)["error"]["code"]) == (409, "already_uploaded")


def test_abort_drops_the_parts_and_the_next_parts_request_starts_a_new_upload(
    multipart_env: Aws, invoke: Invoke
) -> None:
    created = create(invoke, SIZE)
    batch_id, [file] = created["batch_id"], created["files"]
    key = f"uploads/acme/{batch_id}/{file['file_id']}"
    put_part(multipart_env.s3, key, file["upload"]["upload_id"], 1)
    # When the client aborts
    aborted = file_route(invoke, "abort_upload", batch_id, file["file_id"], "abort")
    assert aborted["statusCode"] == 202, aborted["body"]
    assert body_of(aborted)["aborted_upload_id"] == file["upload"]["upload_id"]
    # Then S3 has no upload of the file any more
    assert multipart_env.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    # and the next parts request starts a new one, with nothing held
    page = body_of(file_route(invoke, "list_upload_parts", batch_id, file["file_id"], "parts"))
    assert page["upload_id"] != file["upload"]["upload_id"]
    assert page["uploaded"] == [] and [p["part_number"] for p in page["parts"]] == [1, 2]
    uploads = multipart_env.s3.list_multipart_uploads(Bucket=BUCKET)["Uploads"]
    assert [u["UploadId"] for u in uploads] == [page["upload_id"]]


def test_the_file_routes_refuse_unknown_files_put_files_other_tenants_and_bad_bodies(
    multipart_env: Aws, invoke: Invoke
) -> None:
    created = create(invoke, 1000, SIZE)
    batch_id, (small, large) = created["batch_id"], created["files"]
    cases = [
        (file_route(invoke, "list_upload_parts", batch_id, "f00009", "parts"), 404, "file_not_found"),
        (file_route(invoke, "list_upload_parts", batch_id, small["file_id"], "parts"), 409, "not_multipart"),
        (file_route(invoke, "abort_upload", batch_id, small["file_id"], "abort"), 409, "not_multipart"),
        (
            file_route(invoke, "list_upload_parts", batch_id, large["file_id"], "parts", tenant_id="globex"),
            404,
            "batch_not_found",
        ),
        (
            file_route(invoke, "complete_upload", batch_id, large["file_id"], "complete", body={"parts": []}),
            400,
            "validation_error",
        ),
        (
            file_route(
                invoke, "list_upload_parts", batch_id, large["file_id"], "parts", query={"cursor": "forged.x"}
            ),
            400,
            "invalid_cursor",
        ),
    ]
    for response, status, code in cases:
        assert (response["statusCode"], body_of(response)["error"]["code"]) == (status, code)
    # A closed batch takes no more uploads
    close = f"/v1/batches/{batch_id}/close"
    invoke("close_batch", api_event("POST", close, path_parameters={"batch_id": batch_id}))
    ended = file_route(invoke, "list_upload_parts", batch_id, large["file_id"], "parts")
    # (nothing had arrived, so the close ended it: expired)
    assert (ended["statusCode"], body_of(ended)["error"]["code"]) == (409, "batch_ended")


# -- the adapter against moto's S3 ---------------------------------------------------------------------
def test_the_s3_adapter_maps_s3s_refusals_of_a_complete_to_codes(multipart_env: Aws) -> None:
    storage = S3ObjectStorage(BUCKET, boto3.client("s3"))
    upload_id = storage.create_multipart_upload("uploads/acme/x/f00001", content_type="video/mp4")
    small = multipart_env.s3.upload_part(
        Bucket=BUCKET, Key="uploads/acme/x/f00001", UploadId=upload_id, PartNumber=1, Body=b"x" * 1024
    )["ETag"]
    last = multipart_env.s3.upload_part(
        Bucket=BUCKET, Key="uploads/acme/x/f00001", UploadId=upload_id, PartNumber=2, Body=b"y"
    )["ETag"]
    # ListParts, paged by the adapter
    assert [(p.part_number, p.size) for p in storage.list_parts("uploads/acme/x/f00001", upload_id)] == [
        (1, 1024),
        (2, 1),
    ]
    assert [p.part_number for p in storage.list_parts("uploads/acme/x/f00001", upload_id, after=1)] == [2]
    for parts, code in [
        ([(1, "0" * 32, None), (2, last, None)], "invalid_part"),
        ([(1, small, None), (2, last, None)], "part_too_small"),
    ]:
        with pytest.raises(InvalidRequestError) as refused:
            storage.complete_multipart_upload("uploads/acme/x/f00001", upload_id, parts)
        assert refused.value.code == code
    assert storage.abort_multipart_upload("uploads/acme/x/f00001", upload_id) is True
    assert storage.abort_multipart_upload("uploads/acme/x/f00001", upload_id) is False
    with pytest.raises(NotFoundError):
        storage.list_parts("uploads/acme/x/f00001", upload_id)
    assert storage.head("uploads/acme/x/f00001") is None


def test_the_s3_adapter_maps_no_such_upload_on_complete_to_not_found() -> None:
    # moto's S3 answers a complete of an unknown upload with a 500 (a KeyError), real S3 with
    # NoSuchUpload: botocore's Stubber plays S3's answer.
    client = boto3.client("s3", region_name="us-east-1")
    storage = S3ObjectStorage(BUCKET, client)
    with Stubber(client) as stub:
        stub.add_client_error(
            "complete_multipart_upload", service_error_code="NoSuchUpload", http_status_code=404
        )
        stub.add_client_error("complete_multipart_upload", service_error_code="InvalidPartOrder")
        with pytest.raises(NotFoundError) as gone:
            storage.complete_multipart_upload("uploads/acme/x/f00001", "u-1", [(1, "e", None)])
        assert gone.value.code == "upload_not_found"
        with pytest.raises(InvalidRequestError) as order:
            storage.complete_multipart_upload(
                "uploads/acme/x/f00001", "u-1", [(2, "e", None), (1, "e", None)]
            )
        assert order.value.code == "invalid_part_order"


def test_the_s3_adapter_completes_only_onto_a_free_key() -> None:
    # Given S3 (botocore's Stubber) that expects the complete to carry If-None-Match: * (the bucket
    # policy refuses object creations without it), then answers a second one 412
    client = boto3.client("s3", region_name="us-east-1")
    storage = S3ObjectStorage(BUCKET, client)
    expected = {
        "Bucket": BUCKET,
        "Key": "uploads/acme/x/f00001",
        "UploadId": "u-1",
        "MultipartUpload": {"Parts": [{"PartNumber": 1, "ETag": '"e"'}]},
        "IfNoneMatch": "*",
    }
    with Stubber(client) as stub:
        stub.add_response("complete_multipart_upload", {"ETag": '"abc-1"'}, expected)
        stub.add_client_error(
            "complete_multipart_upload",
            service_error_code="PreconditionFailed",
            http_status_code=412,
            expected_params=expected,
        )
        # When it completes twice, Then the first succeeds and the second is a conflict with a code
        assert storage.complete_multipart_upload("uploads/acme/x/f00001", "u-1", [(1, "e", None)])
        with pytest.raises(ConflictError) as taken:
            storage.complete_multipart_upload("uploads/acme/x/f00001", "u-1", [(1, "e", None)])
        assert taken.value.code == "already_uploaded"


def test_the_claim_of_an_upload_id_is_conditional_in_dynamodb(multipart_env: Aws, invoke: Invoke) -> None:
    created = create(invoke, SIZE)
    batch_id, [file] = created["batch_id"], created["files"]
    repo = runtime.repository()
    # The file already has the create's upload: a second claim loses, releasing another id does nothing
    assert repo.claim_multipart_upload("acme", batch_id, file["file_id"], upload_id="other") is False
    assert repo.release_multipart_upload("acme", batch_id, file["file_id"], upload_id="other") is False
    stored = repo.get_file("acme", batch_id, file["file_id"])
    assert stored is not None and stored.multipart_upload_id == file["upload"]["upload_id"]
    assert repo.release_multipart_upload(
        "acme", batch_id, file["file_id"], upload_id=stored.multipart_upload_id
    )
    assert repo.claim_multipart_upload("acme", batch_id, file["file_id"], upload_id="fresh") is True


def test_the_upload_event_of_a_completed_multipart_object_records_the_file_as_a_puts_does(
    multipart_env: Aws, invoke: Invoke
) -> None:
    # Given a one-file batch whose 20 MiB file was uploaded in parts and completed
    created = create(invoke, SIZE)
    batch_id, [file] = created["batch_id"], created["files"]
    key = f"uploads/acme/{batch_id}/{file['file_id']}"
    upload_id = file["upload"]["upload_id"]
    parts = [{"part_number": n, "etag": put_part(multipart_env.s3, key, upload_id, n)} for n in (1, 2)]
    done = file_route(invoke, "complete_upload", batch_id, file["file_id"], "complete", body={"parts": parts})
    assert done["statusCode"] == 202
    # When its S3 event arrives, in the shape S3 sends for CompleteMultipartUpload (via EventBridge, SQS)
    event = load_event("sqs_s3_complete_multipart_upload_via_eventbridge")
    record = event["Records"][0]
    body = json.loads(record["body"])
    assert body["detail"]["reason"] == "CompleteMultipartUpload"
    version_id = multipart_env.s3.head_object(Bucket=BUCKET, Key=key)["VersionId"]
    body["detail"]["bucket"]["name"] = BUCKET
    body["detail"]["object"].update({"key": key, "size": SIZE, "version-id": version_id})
    record["body"] = json.dumps(body)
    assert invoke("record_upload", event) == {"batchItemFailures": []}
    # Then the file is recorded uploaded (that version), and the batch's run started
    stored = runtime.repository().get_file("acme", batch_id, file["file_id"])
    assert stored is not None and stored.status.value == "uploaded"
    assert stored.uploaded_version_id == version_id
    batch = runtime.repository().get_batch("acme", batch_id, consistent=True)
    assert batch is not None and batch.status.value == "processing"
    # and a late repeat of the complete still answers its success
    again = file_route(
        invoke, "complete_upload", batch_id, file["file_id"], "complete", body={"parts": parts}
    )
    assert (again["statusCode"], body_of(again)) == (202, body_of(done))


# -- part checksums (a file that declares its sha256) ----------------------------------------------------
def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def test_a_file_with_a_declared_sha256_gets_part_urls_signing_each_parts_digest_and_completes_with_them(
    multipart_env: Aws, invoke: Invoke
) -> None:
    install_moto_patches()  # moto keeps the parts' checksums and lists them, as S3 does
    # Given a 20 MiB file that declares its SHA-256
    whole = hashlib.sha256(b"".join(PARTS)).hexdigest()
    files = [{"filename": "video.mp4", "size": SIZE, "content_type": "video/mp4", "sha256": whole}]
    response = invoke("create_batch", api_event("POST", "/v1/batches", body={"files": files}))
    assert response["statusCode"] == 201, response["body"]
    created = body_of(response)
    batch_id, [file] = created["batch_id"], created["files"]
    upload = file["upload"]
    # Then its upload takes part checksums (S3 was asked for SHA256 on create) and no URL is unsigned
    assert (upload["method"], upload["part_checksum"], upload["parts"]) == ("MULTIPART", "SHA256", [])
    key = f"uploads/acme/{batch_id}/{file['file_id']}"
    [started] = multipart_env.s3.list_multipart_uploads(Bucket=BUCKET)["Uploads"]
    assert (started["UploadId"], started["ChecksumAlgorithm"]) == (upload["upload_id"], "SHA256")
    # When the client posts each part's digest (one hex, one base64)
    digests = [hashlib.sha256(PARTS[0]).hexdigest(), sha256_b64(PARTS[1])]
    body = {"parts": [{"part_number": n, "sha256": d} for n, d in enumerate(digests, start=1)]}
    path = f"/v1/batches/{batch_id}/files/{file['file_id']}/parts"
    signed = invoke(
        "sign_upload_parts",
        api_event(
            "POST", path, path_parameters={"batch_id": batch_id, "file_id": file["file_id"]}, body=body
        ),
    )
    assert signed["statusCode"] == 201, signed["body"]
    # Then each URL signs its part's length and checksum, and names the headers to send
    for part, data in zip(body_of(signed)["parts"], PARTS, strict=True):
        assert part["headers"] == {
            "x-amz-checksum-sha256": sha256_b64(data),
            "x-amz-sdk-checksum-algorithm": "SHA256",
        }
        signed_headers = parse_qs(urlsplit(part["url"]).query)["X-Amz-SignedHeaders"][0].split(";")
        assert {"content-length", "x-amz-checksum-sha256", "x-amz-sdk-checksum-algorithm"} <= set(
            signed_headers
        )
    # When the parts arrive with their checksums, the parts route lists them with the checksums and
    # signs nothing
    etags = [
        multipart_env.s3.upload_part(
            Bucket=BUCKET,
            Key=key,
            UploadId=upload["upload_id"],
            PartNumber=n,
            Body=data,
            ChecksumSHA256=sha256_b64(data),
        )["ETag"]
        for n, data in enumerate(PARTS, start=1)
    ]
    page = body_of(file_route(invoke, "list_upload_parts", batch_id, file["file_id"], "parts"))
    assert [(p["part_number"], p["checksum_sha256"]) for p in page["uploaded"]] == [
        (1, sha256_b64(PARTS[0])),
        (2, sha256_b64(PARTS[1])),
    ]
    assert (page["part_checksum"], page["parts"]) == ("SHA256", [])
    # A complete without the parts' checksums is refused with a code
    bare = [{"part_number": n, "etag": e} for n, e in enumerate(etags, start=1)]
    refused = file_route(
        invoke, "complete_upload", batch_id, file["file_id"], "complete", body={"parts": bare}
    )
    assert (refused["statusCode"], body_of(refused)["error"]["code"]) == (400, "part_checksum_missing")
    # and one with them completes the object
    checked = [{**p, "checksum_sha256": sha256_b64(data)} for p, data in zip(bare, PARTS, strict=True)]
    done = file_route(
        invoke, "complete_upload", batch_id, file["file_id"], "complete", body={"parts": checked}
    )
    assert done["statusCode"] == 202, done["body"]
    assert multipart_env.s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == SIZE


def test_the_sign_route_refuses_parts_out_of_range_files_without_part_checksums_and_bad_bodies(
    multipart_env: Aws, invoke: Invoke
) -> None:
    created = create(invoke, SIZE)
    batch_id, [plain] = created["batch_id"], created["files"]
    digest = hashlib.sha256(b"x").hexdigest()

    def sign(file_id: str, body: Any) -> tuple[int, str]:
        path = f"/v1/batches/{batch_id}/files/{file_id}/parts"
        event = api_event("POST", path, path_parameters={"batch_id": batch_id, "file_id": file_id}, body=body)
        response = invoke("sign_upload_parts", event)
        return response["statusCode"], body_of(response)["error"]["code"]

    assert sign(plain["file_id"], {"parts": [{"part_number": 1, "sha256": digest}]}) == (
        409,
        "no_part_checksums",
    )
    assert sign("f00009", {"parts": [{"part_number": 1, "sha256": digest}]}) == (404, "file_not_found")
    assert sign(plain["file_id"], {"parts": [{"part_number": 1, "sha256": "nothex"}]}) == (
        400,
        "validation_error",
    )
    assert sign(plain["file_id"], {"parts": []}) == (400, "validation_error")
    files = [{"filename": "v.mp4", "size": SIZE, "content_type": "video/mp4", "sha256": digest}]
    checked = body_of(invoke("create_batch", api_event("POST", "/v1/batches", body={"files": files})))
    batch_id = checked["batch_id"]
    assert sign(checked["files"][0]["file_id"], {"parts": [{"part_number": 3, "sha256": digest}]}) == (
        400,
        "invalid_part",
    )
