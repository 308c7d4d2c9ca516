"""The SDK's multipart uploads (issue 10) against the in-process fake API of test_sdk.py, taught the
MULTIPART instruction, the parts route, part PUTs and complete: parts go up in parallel, each
streamed from its byte range with its Content-Length, a resumed upload skips the parts the storage
holds, a failed part is sent again, and the upload is completed with every part's ETag."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import pytest

from filebatch_sdk import FilebatchClient, MultipartInstruction, UploadError, UploadInstruction
from tests.unit.test_sdk import (
    API_KEY,
    TIMESTAMP,
    BlockingAsyncClient,
    FakeApi,
    FakeBatch,
    FakeFile,
    Recorded,
    Scripted,
    _error,
    serving,
)

PART_SIZE = 1000
THRESHOLD = 2500
# The parts route's page size (the API's is 100).
PAGE = 2


class MultipartFakeApi(FakeApi):
    """FakeApi plus multipart uploads: files over THRESHOLD bytes get a MULTIPART instruction of
    PART_SIZE parts; part PUTs are held a moment so that parallel ones overlap."""

    def __init__(self) -> None:
        super().__init__()
        self.held: dict[tuple[str, str], dict[int, bytes]] = {}
        self.completed: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.in_flight = self.max_in_flight = 0
        self._flight_lock = threading.Lock()
        # Issue 10: uploads with part checksums (as for a file that declares its sha256): no part URL
        # but from POST .../parts, each signing its part's digest, which the storage checks.
        self.part_checksums = False
        self.held_checksums: dict[tuple[str, str], dict[int, str]] = {}
        # Parts in memory per POST .../parts: how many digests each request carried.
        self.signed_requests: list[list[int]] = []

    def handle(self, request: Recorded) -> Scripted:
        if request.method == "PUT" and request.path.startswith("/part/"):
            # Outside the fake's lock: parts in flight at once are seen as such.
            with self._flight_lock:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            time.sleep(0.05)
            with self._flight_lock:
                self.in_flight -= 1
        return super().handle(request)

    def _route(self, request: Recorded) -> Scripted:
        parts = request.path.strip("/").split("/")
        if parts[0] == "part" and request.method == "PUT":
            batch_id, file_id, number = parts[1], parts[2], int(parts[3])
            signed = request.query.get("x-amz-checksum-sha256", [None])[0]
            if signed is not None:
                # As S3: the header sent must be the one signed, and the bytes must match it.
                if request.headers.get("x-amz-checksum-sha256") != signed:
                    return Scripted(403, "<Error><Code>SignatureDoesNotMatch</Code></Error>")
                if sha256_b64(request.body) != signed:
                    return Scripted(400, "<Error><Code>BadDigest</Code></Error>")
                self.held_checksums.setdefault((batch_id, file_id), {})[number] = signed
            self.held.setdefault((batch_id, file_id), {})[number] = request.body
            return Scripted(200, None, {"ETag": f'"{etag(request.body)}"'})
        if (
            len(parts) == 6
            and parts[3] == "files"
            and request.headers.get("authorization") == f"Bearer {API_KEY}"
        ):
            batch = self.batches[parts[2]]
            file = next(f for f in batch.files if f.file_id == parts[4])
            if parts[5] == "parts" and request.method == "POST":
                return self._sign(batch, file, json.loads(request.body))
            if parts[5] == "parts":
                return self._parts(batch, file, int(request.query.get("cursor", ["1"])[0]))
            return self._complete(batch, file, json.loads(request.body))
        return super()._route(request)

    def _instruction(self, batch_id: str, f: FakeFile) -> dict[str, Any]:
        instruction = super()._instruction(batch_id, f)
        if f.size > THRESHOLD:
            count = -(-f.size // PART_SIZE)
            instruction["upload"] = {
                "method": "MULTIPART",
                "upload_id": "u-1",
                "part_size": PART_SIZE,
                "part_count": count,
                "parts": []
                if self.part_checksums
                else [self._part(batch_id, f, n) for n in range(1, min(count, PAGE) + 1)],
                "next_parts_cursor": str(PAGE + 1) if count > PAGE else None,
                "expires_at": TIMESTAMP,
                "part_checksum": "SHA256" if self.part_checksums else None,
            }
        return instruction

    def _sign(self, batch: FakeBatch, f: FakeFile, body: dict[str, Any]) -> Scripted:
        assert self.part_checksums and 1 <= len(body["parts"]) <= 100
        self.signed_requests.append([p["part_number"] for p in body["parts"]])
        signed = []
        for part in body["parts"]:
            checksum = part["sha256"]
            url = self._part(batch.batch_id, f, part["part_number"])["url"]
            signed.append(
                {
                    "part_number": part["part_number"],
                    "url": f"{url}&x-amz-checksum-sha256={quote(checksum, safe='')}",
                    "headers": {"x-amz-checksum-sha256": checksum, "x-amz-sdk-checksum-algorithm": "SHA256"},
                }
            )
        return Scripted(
            201,
            {
                "batch_id": batch.batch_id,
                "file_id": f.file_id,
                "upload_id": "u-1",
                "parts": signed,
                "expires_at": TIMESTAMP,
            },
        )

    def _part(self, batch_id: str, f: FakeFile, number: int) -> dict[str, Any]:
        url = f"{self.base_url}/part/{batch_id}/{f.file_id}/{number}?uploadId=u-1&X-Amz-Signature=p{number}"
        return {"part_number": number, "url": url, "headers": {}}

    def _parts(self, batch: FakeBatch, f: FakeFile, first: int) -> Scripted:
        count = -(-f.size // PART_SIZE)
        numbers = range(first, min(count, first + PAGE - 1) + 1)
        held = self.held.get((batch.batch_id, f.file_id), {})
        checksums = self.held_checksums.get((batch.batch_id, f.file_id), {})
        return Scripted(
            200,
            {
                "batch_id": batch.batch_id,
                "file_id": f.file_id,
                "upload_id": "u-1",
                "part_size": PART_SIZE,
                "part_count": count,
                "uploaded": [
                    {
                        "part_number": n,
                        "etag": etag(held[n]),
                        "size": len(held[n]),
                        "checksum_sha256": checksums.get(n),
                    }
                    for n in numbers
                    if n in held
                ],
                "parts": []
                if self.part_checksums
                else [self._part(batch.batch_id, f, n) for n in numbers if n not in held],
                "next_cursor": str(numbers[-1] + 1) if numbers[-1] < count else None,
                "expires_at": TIMESTAMP,
                "part_checksum": "SHA256" if self.part_checksums else None,
            },
        )

    def _complete(self, batch: FakeBatch, f: FakeFile, body: dict[str, Any]) -> Scripted:
        held = self.held.get((batch.batch_id, f.file_id), {})
        count = -(-f.size // PART_SIZE)
        listed = body["parts"]
        if [p["part_number"] for p in listed] != list(range(1, count + 1)) or any(
            p["etag"] != etag(held.get(p["part_number"], b"?")) for p in listed
        ):
            return _error(400, "parts_missing", "parts are missing or wrong")
        if self.part_checksums and any(
            p.get("checksum_sha256") != sha256_b64(held[p["part_number"]]) for p in listed
        ):
            return _error(400, "part_checksum_missing", "every part's checksum_sha256 is needed")
        self.completed[(batch.batch_id, f.file_id)] = listed
        f.uploaded = b"".join(held[n] for n in range(1, count + 1))
        return Scripted(202, {"batch_id": batch.batch_id, "file_id": f.file_id, "upload_id": "u-1"})

    def part_puts(self, batch_id: str, file_id: str) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if r.method == "PUT" and r.path.startswith(f"/part/{batch_id}/{file_id}/")
        ]


def etag(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()


def sha256_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


@pytest.fixture
def fake() -> Iterator[MultipartFakeApi]:
    with serving(MultipartFakeApi()) as api:
        yield api


@pytest.fixture(params=["requests", "httpx-async"])
def sdk(request: pytest.FixtureRequest, fake: MultipartFakeApi) -> Iterator[FilebatchClient]:
    # Both clients: they run the one protocol implementation, so they send the same parts.
    if request.param == "requests":
        with FilebatchClient(fake.base_url, API_KEY, sleep=lambda _: None, backoff_base=0.01) as client:
            yield client
        return
    adapter = BlockingAsyncClient(fake.base_url, [])
    try:
        yield cast(FilebatchClient, adapter)
    finally:
        adapter.close()


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    small, large = tmp_path / "note.txt", tmp_path / "scan.tif"
    small.write_bytes(b"small file\n")
    large.write_bytes(bytes(range(256)) * 17 + b"tail")  # 4,356 bytes: 5 parts, the last 356
    return [small, large]


def test_a_large_file_goes_up_in_parallel_parts_streamed_with_their_lengths_and_is_completed(
    sdk: FilebatchClient, fake: MultipartFakeApi, files: list[Path]
) -> None:
    # Given a batch of a small file (one PUT) and a large one (MULTIPART, 5 parts)
    created = sdk.create_batch(files)
    small, large = created.files
    assert isinstance(small.upload, UploadInstruction)
    assert isinstance(large.upload, MultipartInstruction) and large.upload.part_count == 5
    # When both are uploaded, 3 parts at a time
    sdk.upload(created, files, part_concurrency=3)
    # Then the large file's bytes arrived whole, part by part, and the upload was completed
    batch = fake.batches[created.batch_id]
    assert batch.files[1].uploaded == files[1].read_bytes()
    assert batch.files[0].uploaded == files[0].read_bytes()
    puts = fake.part_puts(created.batch_id, large.file_id)
    assert sorted(int(r.path.rsplit("/", 1)[1]) for r in puts) == [1, 2, 3, 4, 5]
    # each part with its own length as Content-Length (the URL is signed for it), not chunked,
    # and without the API key
    for put in puts:
        assert int(put.headers["content-length"]) == len(put.body)
        assert "transfer-encoding" not in put.headers and "authorization" not in put.headers
    # more than one part in flight at a time, never more than asked for
    assert 2 <= fake.max_in_flight <= 3
    completed = fake.completed[(created.batch_id, large.file_id)]
    assert [p["part_number"] for p in completed] == [1, 2, 3, 4, 5]
    # and each page of the parts route was sent before the next was asked for (fresh URLs however
    # long the whole upload takes)
    file_requests = [
        r
        for r in fake.requests
        if r.path.endswith(f"/files/{large.file_id}/parts") or r.path.startswith(f"/part/{created.batch_id}/")
    ]
    pages = [i for i, r in enumerate(file_requests) if r.path.endswith("/parts")]
    assert len(pages) == 3
    for page, (start, end) in enumerate(zip(pages, [*pages[1:], len(file_requests)], strict=True)):
        sent = sorted(int(r.path.rsplit("/", 1)[1]) for r in file_requests[start + 1 : end])
        assert sent == [n for n in (2 * page + 1, 2 * page + 2) if n <= 5]


def test_a_resumed_upload_sends_only_the_parts_the_storage_does_not_hold(
    sdk: FilebatchClient, fake: MultipartFakeApi, files: list[Path]
) -> None:
    # Given a large file whose parts 1 and 4 arrived in an earlier, interrupted upload
    created = sdk.create_batch(files[1:])
    [large] = created.files
    content = files[1].read_bytes()
    fake.held[(created.batch_id, large.file_id)] = {1: content[:1000], 4: content[3000:4000]}
    # When it is uploaded again
    sdk.upload(created, files[1:])
    # Then only parts 2, 3 and 5 are sent, and the upload is completed with all five
    puts = fake.part_puts(created.batch_id, large.file_id)
    assert sorted(int(r.path.rsplit("/", 1)[1]) for r in puts) == [2, 3, 5]
    assert fake.batches[created.batch_id].files[0].uploaded == content


def test_a_part_answered_with_a_server_error_is_sent_again(
    sdk: FilebatchClient, fake: MultipartFakeApi, files: list[Path]
) -> None:
    created = sdk.create_batch(files[1:])
    [large] = created.files
    fake.script(
        "PUT",
        f"/part/{created.batch_id}/{large.file_id}/2",
        Scripted(500, "<Error><Code>InternalError</Code></Error>"),
    )
    sdk.upload(created, files[1:])
    assert len(fake.calls("PUT", f"/part/{created.batch_id}/{large.file_id}/2")) == 2
    assert fake.batches[created.batch_id].files[0].uploaded == files[1].read_bytes()


def test_a_refused_part_fails_the_file_without_completing_it(
    sdk: FilebatchClient, fake: MultipartFakeApi, files: list[Path]
) -> None:
    created = sdk.create_batch(files[1:])
    [large] = created.files
    refused = Scripted(403, "<Error><Code>AccessDenied</Code></Error>")
    fake.script("PUT", f"/part/{created.batch_id}/{large.file_id}/3", refused)
    with pytest.raises(UploadError) as failed:
        sdk.upload(created, files[1:])
    [failure] = failed.value.failures
    assert (failure.file_id, failure.status) == (large.file_id, 403)
    assert (created.batch_id, large.file_id) not in fake.completed
    # and the parts that did arrive are kept for a resume (the next page was not asked for)
    assert sorted(fake.held[(created.batch_id, large.file_id)]) == [1, 2, 4]


# -- issue 10: part checksums -----------------------------------------------------------------------
def test_parts_with_checksums_are_hashed_signed_with_their_digests_sent_and_completed_with_them(
    sdk: FilebatchClient, fake: MultipartFakeApi, files: list[Path]
) -> None:
    # Given a large file (5 parts) whose upload takes part checksums: no part URL in the instruction
    fake.part_checksums = True
    created = sdk.create_batch(files[1:])
    [large] = created.files
    assert isinstance(large.upload, MultipartInstruction)
    assert large.upload.part_checksum == "SHA256" and large.upload.parts == []
    # When it is uploaded, 2 parts at a time
    sdk.upload(created, files[1:], part_concurrency=2)
    # Then each part's digest was POSTed for its URL, 2 at a time (2 parts in memory at most), and
    # every part was sent with the signed checksum header (the fake storage checked the bytes)
    content = files[1].read_bytes()
    assert fake.signed_requests == [[1, 2], [3, 4], [5]]
    puts = fake.part_puts(created.batch_id, large.file_id)
    assert sorted(int(r.path.rsplit("/", 1)[1]) for r in puts) == [1, 2, 3, 4, 5]
    for put in puts:
        number = int(put.path.rsplit("/", 1)[1])
        assert put.body == content[(number - 1) * PART_SIZE : number * PART_SIZE]
        assert put.headers["x-amz-checksum-sha256"] == sha256_b64(put.body)
        assert put.headers["x-amz-sdk-checksum-algorithm"] == "SHA256"
    # and the upload was completed with each part's checksum
    completed = fake.completed[(created.batch_id, large.file_id)]
    assert [p["checksum_sha256"] for p in completed] == [
        sha256_b64(content[n * PART_SIZE : (n + 1) * PART_SIZE]) for n in range(5)
    ]
    assert fake.batches[created.batch_id].files[0].uploaded == content


def test_a_resumed_upload_with_part_checksums_signs_and_sends_only_the_parts_not_held(
    sdk: FilebatchClient, fake: MultipartFakeApi, files: list[Path]
) -> None:
    # Given a large file with part checksums whose parts 1 and 4 arrived (with their checksums)
    fake.part_checksums = True
    created = sdk.create_batch(files[1:])
    [large] = created.files
    content = files[1].read_bytes()
    key = (created.batch_id, large.file_id)
    fake.held[key] = {1: content[:1000], 4: content[3000:4000]}
    fake.held_checksums[key] = {1: sha256_b64(content[:1000]), 4: sha256_b64(content[3000:4000])}
    # When it is uploaded again
    sdk.upload(created, files[1:])
    # Then only parts 2, 3 and 5 are signed and sent, and the upload is completed with all five
    # checksums (the held parts' as the parts route listed them)
    assert sorted(n for request in fake.signed_requests for n in request) == [2, 3, 5]
    puts = fake.part_puts(created.batch_id, large.file_id)
    assert sorted(int(r.path.rsplit("/", 1)[1]) for r in puts) == [2, 3, 5]
    assert fake.batches[created.batch_id].files[0].uploaded == content
    assert all(p["checksum_sha256"] for p in fake.completed[key])


def test_a_part_whose_bytes_changed_after_hashing_is_refused_and_the_file_fails(
    sdk: FilebatchClient, fake: MultipartFakeApi, files: list[Path]
) -> None:
    # Given a large file with part checksums, whose storage refuses part 3's bytes (BadDigest)
    fake.part_checksums = True
    created = sdk.create_batch(files[1:])
    [large] = created.files
    fake.script(
        "PUT",
        f"/part/{created.batch_id}/{large.file_id}/3",
        Scripted(400, "<Error><Code>BadDigest</Code></Error>"),
    )
    # When it is uploaded, the file fails with the storage's refusal and is not completed
    with pytest.raises(UploadError) as failed:
        sdk.upload(created, files[1:])
    [failure] = failed.value.failures
    assert (failure.file_id, failure.status) == (large.file_id, 400)
    assert "BadDigest" in failure.reason
    assert (created.batch_id, large.file_id) not in fake.completed
