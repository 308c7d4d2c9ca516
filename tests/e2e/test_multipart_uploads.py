"""A 300 MiB file uploaded in parts with plain curl, interrupted half way, resumed through the parts
route, completed and processed; a complete with a part missing is refused; an abort drops the parts
and the next parts request starts a new upload (issue 10, docs/uploads.md). A file that declares its
SHA-256 uploads with part checksums: the test hashes each part and POSTs the digest for its URL
before each curl, sends the signed checksum headers, and completes with every part's checksum.

A stack of its own: MaxFileBytes raised to 400 MiB (the default MultipartThresholdBytes, 100 MiB,
makes both files multipart). moto's S3 enforces nothing about presigned requests (the notes), so
what is asserted is what the product itself says: the parts S3 holds, its codes, the result."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.conftest import Stack, started_stack, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.own_stack]

MIB = 1024 * 1024
SIZE = 300 * MIB
PART_SIZE = 16 * MIB
PART_COUNT = 19  # 18 parts of 16 MiB and one of 12 MiB


@pytest.fixture(scope="module")
def multipart_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with started_stack(
        tmp_path_factory.mktemp("multipart-stack"), {"MaxFileBytes": str(400 * MIB)}, "mp"
    ) as stack:
        yield stack


def write_file(path: Path, size: int) -> str:
    """Random 1 MiB blocks every 16 MiB, zeros between (so each part differs); returns the SHA-256."""
    digest = hashlib.sha256()
    zeros = bytes(MIB)
    with path.open("wb") as file:
        for mib in range(size // MIB):
            block = os.urandom(MIB) if mib % 16 == 0 else zeros
            file.write(block)
            digest.update(block)
    return digest.hexdigest()


def part_file(source: Path, number: int, size: int, directory: Path) -> Path:
    """Part `number`'s byte range of `source`, copied to a file of its own for curl to send."""
    target = directory / f"part-{number}.bin"
    start = (number - 1) * PART_SIZE
    length = min(PART_SIZE, size - start)
    with source.open("rb") as src, target.open("wb") as dst:
        src.seek(start)
        dst.write(src.read(length))
    return target


def curl_put(url: str, path: Path, *extra: str) -> subprocess.Popen[bytes]:
    # -T streams the file as the PUT body (Content-Length from its size, no Content-Type); no
    # "Expect: 100-continue" round trip.
    return subprocess.Popen(
        ["curl", "-sS", "-f", "-o", os.devnull, "-H", "Expect:", "-T", str(path), *extra, url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def upload_parts(parts: list[dict[str, Any]], source: Path, size: int, directory: Path) -> None:
    for part in parts:
        path = part_file(source, part["part_number"], size, directory)
        process = curl_put(part["url"], path)
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr.decode()
        path.unlink()


def api(stack: Stack, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{stack.api_url}{path}", headers=stack.headers(), timeout=60, **kwargs)


def sha256_b64(path: Path) -> str:
    return base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode("ascii")


def signed_part(
    stack: Stack, file_path: str, source: Path, number: int, size: int, directory: Path
) -> tuple[Path, dict[str, Any], str]:
    """Part `number` copied to its own file, hashed, and its URL asked for with that digest (hex):
    (the part's file, its presigned PUT with the headers to send, its checksum in base64)."""
    path = part_file(source, number, size, directory)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    response = api(
        stack, "POST", f"{file_path}/parts", json={"parts": [{"part_number": number, "sha256": digest}]}
    )
    assert response.status_code == 201, response.text
    [part] = response.json()["parts"]
    assert part["part_number"] == number
    return path, part, sha256_b64(path)


def curl_signed_put(part: dict[str, Any], path: Path, *extra: str) -> subprocess.Popen[bytes]:
    headers = [arg for name, value in part["headers"].items() for arg in ("-H", f"{name}: {value}")]
    return curl_put(part["url"], path, *headers, *extra)


def upload_checksummed_parts(
    stack: Stack, file_path: str, numbers: list[int], source: Path, size: int, directory: Path
) -> dict[int, str]:
    """Hash, sign and send each part; returns part number → checksum (base64)."""
    checksums = {}
    for number in numbers:
        path, part, checksums[number] = signed_part(stack, file_path, source, number, size, directory)
        process = curl_signed_put(part, path)
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr.decode()
        path.unlink()
    return checksums


def test_a_300_mib_file_uploaded_in_parts_with_curl_interrupted_resumed_completed_and_processed(
    multipart_stack: Stack, tmp_path: Path
) -> None:
    # Given a 300 MiB file, and a batch that declares it (with its SHA-256)
    source = tmp_path / "scan.bin"
    expected_sha256 = write_file(source, SIZE)
    response = multipart_stack.post_batch(
        [
            {
                "filename": "scan.bin",
                "size": SIZE,
                "content_type": "application/octet-stream",
                "sha256": expected_sha256,
            }
        ]
    )
    assert response.status_code == 201, response.text
    created = response.json()
    batch_id, [file] = created["batch_id"], created["files"]
    upload = file["upload"]
    assert (upload["method"], upload["part_size"], upload["part_count"]) == (
        "MULTIPART",
        PART_SIZE,
        PART_COUNT,
    )
    # with part checksums: no part URL until the client gives each part's digest
    assert (upload["part_checksum"], upload["parts"]) == ("SHA256", [])
    file_path = f"/v1/batches/{batch_id}/files/{file['file_id']}"

    # When the first half of the parts is hashed, signed and sent, one curl per part
    checksums = upload_checksummed_parts(
        multipart_stack, file_path, list(range(1, 10)), source, SIZE, tmp_path
    )
    # and the curl of part 10 is killed half way through its bytes (sent at 4 MiB/s), its URL
    # signing the part's checksum, which curl sends as a header
    path, part, checksum = signed_part(multipart_stack, file_path, source, 10, SIZE, tmp_path)
    assert part["headers"] == {"x-amz-checksum-sha256": checksum, "x-amz-sdk-checksum-algorithm": "SHA256"}
    assert "x-amz-checksum-sha256" in part["url"].split("X-Amz-SignedHeaders=", 1)[1].split("&", 1)[0]
    interrupted = curl_signed_put(part, path, "--limit-rate", "4M")
    time.sleep(2)
    assert interrupted.poll() is None, "the interrupted part finished before it was killed"
    interrupted.kill()
    interrupted.wait()

    # Then the parts route says which parts S3 holds, with the checksums they arrived with, and
    # signs none (the client asks for the others with their digests)
    page = api(multipart_stack, "GET", f"{file_path}/parts")
    assert page.status_code == 200, page.text
    held = page.json()
    assert held["upload_id"] == upload["upload_id"]
    assert [p["part_number"] for p in held["uploaded"]] == list(range(1, 10))
    assert all(p["size"] == PART_SIZE for p in held["uploaded"])
    assert {p["part_number"]: p["checksum_sha256"] for p in held["uploaded"]} == checksums
    assert (held["part_checksum"], held["parts"]) == ("SHA256", [])
    assert held["next_cursor"] is None

    # And a complete with only those parts is refused, with a code
    listed = [
        {"part_number": p["part_number"], "etag": p["etag"], "checksum_sha256": p["checksum_sha256"]}
        for p in held["uploaded"]
    ]
    refused = api(multipart_stack, "POST", f"{file_path}/complete", json={"parts": listed})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "parts_missing"

    # When only the missing parts are hashed, signed and sent
    missing = [n for n in range(1, PART_COUNT + 1) if n not in checksums]
    checksums |= upload_checksummed_parts(multipart_stack, file_path, missing, source, SIZE, tmp_path)
    resumed = api(multipart_stack, "GET", f"{file_path}/parts").json()
    assert [p["part_number"] for p in resumed["uploaded"]] == list(range(1, PART_COUNT + 1))
    assert resumed["parts"] == []
    assert resumed["uploaded"][-1]["size"] == SIZE - 18 * PART_SIZE
    # then a complete without the parts' checksums is refused, with a code
    bare = [{"part_number": p["part_number"], "etag": p["etag"]} for p in resumed["uploaded"]]
    unchecked = api(multipart_stack, "POST", f"{file_path}/complete", json={"parts": bare})
    assert unchecked.status_code == 400, unchecked.text
    assert unchecked.json()["error"]["code"] == "part_checksum_missing"
    # and the upload is completed with every part's ETag and checksum
    listed = [{**p, "checksum_sha256": checksums[p["part_number"]]} for p in bare]
    completed = api(multipart_stack, "POST", f"{file_path}/complete", json={"parts": listed})
    assert completed.status_code == 202, completed.text
    assert completed.json()["size"] == SIZE
    # (a repeat answers the same)
    again = api(multipart_stack, "POST", f"{file_path}/complete", json={"parts": listed})
    assert (again.status_code, again.json()) == (202, completed.json())

    # Then the S3 event of the completed object starts the batch, and the file is processed
    status = multipart_stack.wait_terminal(batch_id, timeout=600)
    assert status["status"] == "completed", status
    [result] = multipart_stack.results(batch_id)
    assert result["status"] == "completed", result
    assert (result["size_bytes"], result["sha256"]) == (SIZE, expected_sha256)
    assert result["declared_sha256"] == expected_sha256


def test_a_multipart_file_whose_bytes_differ_from_its_declared_sha256_fails_checksum_mismatch(
    multipart_stack: Stack, tmp_path: Path
) -> None:
    # Given a 120 MiB file declared with another file's SHA-256 (each part's checksum is the part's
    # own, as the client hashed it, and SHA-256 is a composite checksum on S3: the process step
    # checks the whole object's)
    source = tmp_path / "video.bin"
    actual = write_file(source, 120 * MIB)
    declared = hashlib.sha256(b"some other bytes").hexdigest()
    response = multipart_stack.post_batch(
        [
            {
                "filename": "video.bin",
                "size": 120 * MIB,
                "content_type": "application/octet-stream",
                "sha256": declared,
            }
        ]
    )
    assert response.status_code == 201, response.text
    created = response.json()
    batch_id, [file] = created["batch_id"], created["files"]
    # When it is uploaded in parts (each hashed and signed) and completed
    file_path = f"/v1/batches/{batch_id}/files/{file['file_id']}"
    numbers = list(range(1, file["upload"]["part_count"] + 1))
    upload_checksummed_parts(multipart_stack, file_path, numbers, source, 120 * MIB, tmp_path)
    held = api(multipart_stack, "GET", f"{file_path}/parts").json()["uploaded"]
    listed = [
        {"part_number": p["part_number"], "etag": p["etag"], "checksum_sha256": p["checksum_sha256"]}
        for p in held
    ]
    completed = api(multipart_stack, "POST", f"{file_path}/complete", json={"parts": listed})
    assert completed.status_code == 202, completed.text
    # Then the process step refuses it: checksum_mismatch, naming the digest it computed
    status = multipart_stack.wait_terminal(batch_id, timeout=600)
    [result] = multipart_stack.results(batch_id)
    assert status["status"] == "failed", status
    assert result["error"]["code"] == "checksum_mismatch", result
    assert result["sha256"] in (None, actual)


def test_abort_drops_the_parts_and_the_next_parts_request_starts_a_new_upload(
    multipart_stack: Stack, tmp_path: Path
) -> None:
    # Given a 120 MiB multipart file with its first part sent
    source = tmp_path / "video.bin"
    write_file(source, 120 * MIB)
    response = multipart_stack.post_batch(
        [{"filename": "video.bin", "size": 120 * MIB, "content_type": "application/octet-stream"}]
    )
    assert response.status_code == 201, response.text
    created = response.json()
    batch_id, [file] = created["batch_id"], created["files"]
    upload = file["upload"]
    upload_parts(upload["parts"][:1], source, 120 * MIB, tmp_path)
    file_path = f"/v1/batches/{batch_id}/files/{file['file_id']}"
    assert [
        p["part_number"] for p in api(multipart_stack, "GET", f"{file_path}/parts").json()["uploaded"]
    ] == [1]

    # When the client aborts the upload
    aborted = api(multipart_stack, "POST", f"{file_path}/abort")
    assert aborted.status_code == 202, aborted.text
    assert aborted.json()["aborted_upload_id"] == upload["upload_id"]

    # Then S3 has no such upload any more
    s3 = multipart_stack.local.client("s3")
    bucket = multipart_stack.local.physical_ids["UploadBucket"]
    key = f"uploads/mp/{batch_id}/{file['file_id']}"
    uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
    assert upload["upload_id"] not in [u["UploadId"] for u in uploads]
    # and the next parts request starts a new upload, with every part still to send
    fresh = wait_for(lambda: api(multipart_stack, "GET", f"{file_path}/parts").json(), 10, "a parts page")
    assert fresh["upload_id"] != upload["upload_id"]
    assert fresh["uploaded"] == []
    assert [p["part_number"] for p in fresh["parts"]] == list(range(1, 9))
    # and the file still awaits upload
    [result] = multipart_stack.results(batch_id)
    assert result["status"] == "awaiting_upload"
