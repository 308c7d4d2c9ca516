"""The SDK and its command line against an in-process fake of the API and of S3's presigned PUTs.

The fake is a stdlib HTTP server on 127.0.0.1 (port 0): the SDK goes through real HTTP, so these
tests see exactly the bytes and headers it sends. The client gets a recording `sleep`, so retries
and polls run instantly and the delays it chose can be asserted.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import hashlib
import inspect
import json
import threading
import tracemalloc
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import parse_qs, urlsplit

import pytest

from filebatch_sdk import (
    API_ERRORS,
    AsyncFilebatchClient,
    BatchEndedError,
    BatchNotEndedError,
    BatchNotFoundError,
    BatchNotOpenError,
    BatchState,
    BatchStatus,
    BatchTimeoutError,
    ConflictError,
    CreatedBatch,
    DownloadError,
    ExportNotReadyError,
    FilebatchApiError,
    FilebatchClient,
    FileResult,
    FileSpec,
    FileState,
    IdempotencyKeyReusedError,
    NameTakenError,
    NothingToRetryError,
    RetryInProgressError,
    TokenUsage,
    UploadError,
    UploadProgress,
    guess_content_type,
    iter_export_file,
)
from filebatch_sdk._multipart import MultipartFormFile
from filebatch_sdk._retry import Backoff, parse_retry_after
from filebatch_sdk.cli import main

API_KEY = "test-key-0123456789abcdef"
FakeApiT = TypeVar("FakeApiT", bound="FakeApi")
TIMESTAMP = "2024-05-01T12:00:00Z"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeFile:
    file_id: str
    filename: str
    size: int
    content_type: str
    uploaded: bytes | None = None
    # The batch was closed before this file arrived: it ends upload_expired.
    expired: bool = False
    # What a form POST upload sent besides the file (field name → value, in order).
    posted_fields: dict[str, str] | None = None


@dataclass
class FakeBatch:
    batch_id: str
    files: list[FakeFile]
    polls: int = 0
    name: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    webhook_url: str | None = None
    # Set by the lifecycle routes (close, cancel, retry); None: the polls decide, as before.
    state: str | None = None
    retries: int = 0
    upload_method: str = "PUT"
    closed: bool = False


# The fake plays the server, which knows its own terminal states.
FAKE_TERMINAL = {"completed", "completed_with_errors", "failed", "cancelled", "expired"}


@dataclass
class Scripted:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    # Handle the request, then close the connection without answering (a lost answer).
    drop: bool = False


class FakeApi:
    """The API's routes plus S3-like PUT and GET targets, with scripted failures.

    Batches finish after `polls_until_done` status polls. Files whose name contains "flaky" fail
    with a retryable error; the others complete with a description. Creates honour the
    Idempotency-Key header as the contract says: a repeated key with the same body replays the
    first answer, with another body it is a 409 idempotency_key_reused.
    """

    def __init__(self) -> None:
        self.base_url = ""
        self.polls_until_done = 2
        # How many upload instructions the create answer carries before paging (the API: 1,000).
        self.create_page_size = 1000
        self.batches: dict[str, FakeBatch] = {}
        self.requests: list[Recorded] = []
        self._scripted: dict[tuple[str, str], deque[Scripted]] = {}
        self._lost: dict[tuple[str, str], deque[Scripted | None]] = {}
        self._idempotent: dict[str, tuple[bytes, Scripted]] = {}
        self._lock = threading.Lock()
        # Issue 10: sha256 → (batch id, file id) of a file already described; skip_duplicates skips it.
        self.known_results: dict[str, tuple[str, str]] = {}

    def script(self, method: str, path: str, *responses: Scripted) -> None:
        """Answer the next requests to `method path` with `responses` before behaving normally."""
        self._scripted.setdefault((method, path), deque()).extend(responses)

    def lose_answers(
        self, method: str, path: str, *, count: int = 1, instead: Scripted | None = None
    ) -> None:
        """Carry out the next `count` requests to `method path`, then drop their answers (the
        connection closes) or, given `instead`, answer that (a gateway's 502 or 504)."""
        self._lost.setdefault((method, path), deque()).extend([instead] * count)

    def calls(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def handle(self, request: Recorded) -> Scripted:
        with self._lock:
            self.requests.append(request)
            queued = self._scripted.get((request.method, request.path))
            answer = queued.popleft() if queued else self._route(request)
            lost = self._lost.get((request.method, request.path))
            if lost:
                instead = lost.popleft()
                return instead if instead is not None else replace(answer, drop=True)
            return answer

    def _route(self, request: Recorded) -> Scripted:
        parts = request.path.strip("/").split("/")
        if parts[0] == "upload" and request.method == "PUT":
            return self._put(parts[1], parts[2], request.body)
        if parts[0] == "form-upload" and request.method == "POST":
            return self._form_post(parts[1], parts[2], request)
        if parts[0] == "exports" and request.method == "GET":
            return self._download(parts[1].removesuffix(".jsonl"))
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return _error(401, "unauthorized", "Missing or invalid API key.")
        if request.method == "POST" and parts == ["v1", "batches"]:
            return self._create_once(request)
        if request.method == "GET" and parts == ["v1", "batches"]:
            return self._list(request.query)
        if request.method == "POST" and parts == ["v1", "webhooks", "secret"]:
            return Scripted(201, {"secret": "whsec_" + "A" * 43 + "=", "created_at": TIMESTAMP})
        batch = self.batches.get(parts[2]) if len(parts) >= 3 and parts[:2] == ["v1", "batches"] else None
        if batch is None:
            return _error(404, "batch_not_found", f"batch {parts[-1]} not found")
        if len(parts) == 3:
            return self._delete(batch) if request.method == "DELETE" else self._status(batch)
        action = parts[3]
        if action == "uploads":
            return self._uploads(batch, request.query)
        if action == "close":
            return self._close(batch)
        if action == "cancel":
            return self._cancel(batch)
        if action == "retry":
            return self._retry(batch, json.loads(request.body or b"{}"))
        if action == "export":
            return self._export(batch)
        return self._results(batch, request.query)

    def _create_once(self, request: Recorded) -> Scripted:
        key = request.headers.get("idempotency-key")
        if key is None:
            return self._create(json.loads(request.body))
        if key in self._idempotent:
            body, answer = self._idempotent[key]
            if body != request.body:
                return _error(409, "idempotency_key_reused", "this key was used for another request")
            return answer
        answer = self._create(json.loads(request.body))
        self._idempotent[key] = (request.body, answer)
        return answer

    def _create(self, body: dict[str, Any]) -> Scripted:
        batch_id = f"b-{len(self.batches) + 1:032x}"
        files = [
            FakeFile(f"f{position:05d}", spec["filename"], spec["size"], spec["content_type"])
            for position, spec in enumerate(body["files"], start=1)
        ]
        batch = FakeBatch(
            batch_id,
            files,
            name=body.get("name"),
            metadata=body.get("metadata", {}),
            webhook_url=body.get("webhook_url"),
            upload_method=body.get("upload_method", "PUT"),
        )
        if batch.name is not None and any(b.name == batch.name for b in self.batches.values()):
            return _error(409, "name_taken", f"a batch is already named {batch.name!r}")
        self.batches[batch_id] = batch
        first = files[: self.create_page_size]
        return Scripted(
            201,
            {
                "batch_id": batch_id,
                "status": "awaiting_upload",
                "created_at": TIMESTAMP,
                "name": batch.name,
                "metadata": batch.metadata,
                "webhook_url": batch.webhook_url,
                "total_files": len(files),
                "files": [
                    self._skipped(f, self.known_results[spec["sha256"]])
                    if body.get("skip_duplicates") and spec.get("sha256") in self.known_results
                    else self._instruction(batch, f)
                    for f, spec in zip(first, body["files"], strict=False)
                ],
                "next_uploads_cursor": str(len(first)) if len(files) > len(first) else None,
            },
        )

    def _list(self, query: dict[str, list[str]]) -> Scripted:
        newest_first = [self._status_body(b) for b in reversed(self.batches.values())]
        wanted_status, wanted_name = query.get("status", [None])[0], query.get("name", [None])[0]
        matching = [
            body
            for body in newest_first
            if wanted_status in (None, body["status"]) and wanted_name in (None, body["name"])
        ]
        start = int(query.get("cursor", ["0"])[0])
        limit = int(query.get("limit", ["20"])[0])
        more = start + limit < len(matching)
        return Scripted(
            200,
            {"items": matching[start : start + limit], "next_cursor": str(start + limit) if more else None},
        )

    def _close(self, batch: FakeBatch) -> Scripted:
        if batch.closed or batch.state is not None or self._done(batch):
            return _error(409, "batch_not_open", "only a batch awaiting upload can be closed")
        # What arrived is processed (the polls end it as usual); the rest ends upload_expired.
        batch.closed = True
        for file in batch.files:
            file.expired = file.uploaded is None
        return Scripted(202, self._status_body(batch))

    def _cancel(self, batch: FakeBatch) -> Scripted:
        current = self._status_body(batch)["status"]
        if current in FAKE_TERMINAL - {"cancelled"}:
            return _error(409, "batch_ended", f"the batch already ended: {current}")
        if current != "cancelled":
            batch.state = "cancelling"
        return Scripted(202, self._status_body(batch))

    def _retry(self, batch: FakeBatch, body: dict[str, Any]) -> Scripted:
        if not self._done(batch):
            return _error(409, "batch_not_ended", "the batch has not ended")
        failed = [f.file_id for f in batch.files if "flaky" in f.filename]
        file_ids = body.get("file_ids", failed)
        if not file_ids:
            return _error(409, "nothing_to_retry", "no failed files")
        batch.retries += 1
        # Processing again, until the polls end it as before.
        batch.state, batch.polls = None, 0
        return Scripted(
            202,
            {
                "batch_id": batch.batch_id,
                "retry": batch.retries,
                "execution_name": f"{batch.batch_id}-r{batch.retries}",
                "file_ids": file_ids,
                "status": "processing",
            },
        )

    def _delete(self, batch: FakeBatch) -> Scripted:
        if not self._done(batch):
            return _error(409, "batch_not_ended", "cancel the batch first")
        del self.batches[batch.batch_id]
        return Scripted(202, {"batch_id": batch.batch_id, "status": "deleting"})

    def _export(self, batch: FakeBatch) -> Scripted:
        if not self._done(batch):
            return _error(409, "export_not_ready", "the batch has not ended")
        return Scripted(
            200,
            {
                "batch_id": batch.batch_id,
                "url": f"{self.base_url}/exports/{batch.batch_id}.jsonl?X-Amz-Signature=def456",
                "expires_at": TIMESTAMP,
                "files": len(batch.files),
            },
        )

    def _download(self, batch_id: str) -> Scripted:
        lines = "".join(json.dumps(_result(f)) + "\n" for f in self.batches[batch_id].files)
        return Scripted(200, lines.encode())

    def _uploads(self, batch: FakeBatch, query: dict[str, list[str]]) -> Scripted:
        start = int(query.get("cursor", ["0"])[0])
        limit = int(query.get("limit", ["1000"])[0])
        page = batch.files[start : start + limit]
        more = start + limit < len(batch.files)
        return Scripted(
            200,
            {
                "batch_id": batch.batch_id,
                "items": [self._instruction(batch, f) for f in page if f.uploaded is None],
                "next_cursor": str(start + limit) if more else None,
            },
        )

    def _skipped(self, f: FakeFile, known: tuple[str, str]) -> dict[str, Any]:
        return {
            "file_id": f.file_id,
            "filename": f.filename,
            "size": f.size,
            "content_type": f.content_type,
            "upload": None,
            "duplicate_of": {"batch_id": known[0], "file_id": known[1]},
        }

    def _instruction(self, batch: FakeBatch, f: FakeFile) -> dict[str, Any]:
        batch_id = batch.batch_id
        upload: dict[str, Any] = {
            "method": "PUT",
            "url": f"{self.base_url}/upload/{batch_id}/{f.file_id}?X-Amz-Signature=abc123",
            # A second header proves the SDK sends all of them, not only Content-Type.
            "headers": {"Content-Type": f.content_type, "x-amz-meta-batch": batch_id},
            "expires_at": TIMESTAMP,
        }
        if batch.upload_method == "POST":
            # As S3's presigned POST: the fields a form sends before the file (the key, the signed
            # policy and signature, the pinned Content-Type), to the bucket's URL.
            upload = {
                "method": "POST",
                "url": f"{self.base_url}/form-upload/{batch_id}/{f.file_id}",
                "fields": {
                    "key": f"uploads/{batch_id}/{f.file_id}",
                    "Content-Type": f.content_type,
                    "policy": "eyJjb25kaXRpb25zIjogW119",
                    "x-amz-signature": "abc123",
                },
                "expires_at": TIMESTAMP,
            }
        return {
            "file_id": f.file_id,
            "filename": f.filename,
            "size": f.size,
            "content_type": f.content_type,
            "upload": upload,
        }

    def _form_post(self, batch_id: str, file_id: str, request: Recorded) -> Scripted:
        # Parsed as S3 would: a multipart/form-data body, fields first, the file last.
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode() + request.body
        )
        parts = list(message.iter_parts())
        file = next(f for f in self.batches[batch_id].files if f.file_id == file_id)
        file.posted_fields = {
            str(p.get_param("name", header="content-disposition")): p.get_content() for p in parts[:-1]
        }
        last = parts[-1]
        assert last.get_param("name", header="content-disposition") == "file"
        assert last.get_filename() == file.filename
        file.uploaded = last.get_payload(decode=True)
        return Scripted(204, None)

    def _put(self, batch_id: str, file_id: str, body: bytes) -> Scripted:
        file = next(f for f in self.batches[batch_id].files if f.file_id == file_id)
        file.uploaded = body
        return Scripted(200, None)

    def _done(self, batch: FakeBatch) -> bool:
        return self._status_body(batch)["is_terminal"]

    def _status(self, batch: FakeBatch) -> Scripted:
        batch.polls += 1
        body = self._status_body(batch)
        if batch.state == "cancelling":
            batch.state = "cancelled"  # the files in flight finished: seen on the next poll
        return Scripted(200, body)

    def _status_body(self, batch: FakeBatch) -> dict[str, Any]:
        finished = batch.state is None and batch.polls >= self.polls_until_done
        failed = sum(1 for f in batch.files if "flaky" in f.filename and not f.expired) if finished else 0
        expired = sum(1 for f in batch.files if f.expired) if finished else 0
        completed = len(batch.files) - failed - expired if finished else 0
        status = batch.state or "processing"
        if finished:
            status = "completed" if not failed and not expired else "completed_with_errors"
        done = status in FAKE_TERMINAL
        return {
            "batch_id": batch.batch_id,
            "status": status,
            "is_terminal": done,
            "name": batch.name,
            "metadata": batch.metadata,
            "webhook_url": batch.webhook_url,
            "retries": batch.retries,
            "counts": {
                "total": len(batch.files),
                "awaiting_upload": sum(1 for f in batch.files if f.uploaded is None) if not done else 0,
                "uploaded": sum(1 for f in batch.files if f.uploaded is not None) if not done else 0,
                "processing": 0,
                "completed": completed,
                "failed": failed,
                "cancelled": len(batch.files) if status == "cancelled" else 0,
                "upload_expired": expired,
                "skipped": 0,
            },
            "progress_percentage": 100.0 if done else 0.0,
            "eta_seconds": None if done else 42,
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
            "finished_at": TIMESTAMP if done else None,
        }

    def _results(self, batch: FakeBatch, query: dict[str, list[str]]) -> Scripted:
        limit = int(query.get("limit", ["100"])[0])
        start = int(query.get("cursor", ["0"])[0])
        wanted = query.get("status", [None])[0]
        items = [item for item in map(_result, batch.files) if wanted in (None, item["status"])]
        page = items[start : start + limit]
        more = start + limit < len(items)
        return Scripted(
            200,
            {
                "batch_id": batch.batch_id,
                "items": page,
                "next_cursor": str(start + limit) if more else None,
            },
        )


def _result(file: FakeFile) -> dict[str, Any]:
    if file.expired:
        return {
            "file_id": file.file_id,
            "filename": file.filename,
            "status": "upload_expired",
            "declared_size": file.size,
            "declared_content_type": file.content_type,
            "description": None,
            "error": {"code": "upload_expired", "message": "never uploaded", "retryable": False},
            "finished_at": TIMESTAMP,
        }
    flaky = "flaky" in file.filename
    return {
        "file_id": file.file_id,
        "filename": file.filename,
        "status": "failed" if flaky else "completed",
        "declared_size": file.size,
        "declared_content_type": file.content_type,
        "size_bytes": file.size,
        "sha256": "0" * 64,
        "detected_content_type": file.content_type,
        "description": None
        if flaky
        else {"provider": "fake", "text": f"A file called {file.filename}.", "attributes": {"pages": 1}},
        "error": {"code": "provider_unavailable", "message": "provider throttled", "retryable": True}
        if flaky
        else None,
        "uploaded_at": TIMESTAMP,
        "finished_at": TIMESTAMP,
    }


def _error(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> Scripted:
    return Scripted(status, {"error": {"code": code, "message": message, **extra}}, headers or {})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeApi


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _serve(self) -> None:
        # Always read the whole body first: answering early would reset an upload mid-send.
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        request = Recorded(
            method=self.command,
            path=url.path,
            query=parse_qs(url.query),
            headers={key.lower(): value for key, value in self.headers.items()},
            body=body,
        )
        answer = self.server.fake.handle(request)
        if answer.drop:
            # Done, but the answer is lost: the client sees the connection close.
            self.close_connection = True
            return
        if answer.body is None or isinstance(answer.body, bytes):
            payload = answer.body or b""
        elif isinstance(answer.body, str):
            payload = answer.body.encode()
        else:
            payload = json.dumps(answer.body).encode()
        self.send_response(answer.status)
        for key, value in answer.headers.items():
            self.send_header(key, value)
        if isinstance(answer.body, str):
            self.send_header("Content-Type", "application/xml")
        elif isinstance(answer.body, bytes):
            self.send_header("Content-Type", "application/x-ndjson")
        elif answer.body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest's output clean


@contextmanager
def serving(fake: FakeApiT) -> Iterator[FakeApiT]:
    """`fake` served over HTTP on 127.0.0.1 (a free port) while the block runs."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.fake = fake
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    # A short poll interval makes shutdown() return at once at the end of each test.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    with serving(FakeApi()) as fake:
        yield fake


@pytest.fixture(autouse=True)
def private_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Where the CLI keeps its run state files (XDG_CACHE_HOME): the test's own directory."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


@pytest.fixture
def sleeps() -> list[float]:
    return []


class BlockingAsyncClient:
    """`AsyncFilebatchClient` called like `FilebatchClient`: each coroutine runs on one event loop
    in a thread of its own, async iterators are read to the end. With it, every test taking the
    `client` fixture runs against both clients: the same requests, retries and answers, since
    both run the one protocol implementation (filebatch_sdk._protocol)."""

    def __init__(self, base_url: str, sleeps: list[float]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def sleep(seconds: float) -> None:
            sleeps.append(seconds)

        self._client = AsyncFilebatchClient(base_url, API_KEY, sleep=sleep, backoff_base=0.01)

    def _wait(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if inspect.isasyncgenfunction(attribute):

            async def collect(*args: Any, **kwargs: Any) -> list[Any]:
                return [item async for item in attribute(*args, **kwargs)]

            return lambda *args, **kwargs: iter(self._wait(collect(*args, **kwargs)))
        if inspect.iscoroutinefunction(attribute):
            return lambda *args, **kwargs: self._wait(attribute(*args, **kwargs))
        return attribute

    def close(self) -> None:
        self._wait(self._client.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


@pytest.fixture(params=["requests", "httpx-async"])
def client(
    request: pytest.FixtureRequest, fake_api: FakeApi, sleeps: list[float]
) -> Iterator[FilebatchClient]:
    if request.param == "requests":
        with FilebatchClient(fake_api.base_url, API_KEY, sleep=sleeps.append, backoff_base=0.01) as sdk:
            yield sdk
        return
    adapter = BlockingAsyncClient(fake_api.base_url, sleeps)
    try:
        yield cast(FilebatchClient, adapter)
    finally:
        adapter.close()


@pytest.fixture
def sample_files(tmp_path: Path) -> list[Path]:
    contents = {
        "cat.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
        "photo.webp": b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00\xff" * 300,
        "flaky-notes.txt": b"name=value&other=1\n",  # form-like text must still travel raw
    }
    paths = []
    for name, data in contents.items():
        path = tmp_path / name
        path.write_bytes(data)
        paths.append(path)
    return paths


def test_submit_creates_uploads_waits_and_pages_results(
    client: FilebatchClient, fake_api: FakeApi, sample_files: list[Path]
) -> None:
    # Given three local files, one of which the fake service will fail with a retryable error
    uploads: list[UploadProgress] = []
    statuses: list[BatchStatus] = []

    # When they are submitted with results fetched two per page
    run = client.submit(
        sample_files, page_size=2, on_upload_progress=uploads.append, on_batch_status=statuses.append
    )

    # Then one batch declared each file's name, size, a content type from its extension and its
    # SHA-256 (so that S3 refuses other bytes), no upload method (PUT is the default), and asked to
    # skip files already described (submit's default)
    (batch,) = run.batches
    created = json.loads(fake_api.calls("POST", "/v1/batches")[0].body)
    assert created == {
        "files": [
            {
                "filename": p.name,
                "size": p.stat().st_size,
                "content_type": guess_content_type(p.name),
                "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
            }
            for p in sample_files
        ],
        "skip_duplicates": True,
    }
    assert [f["content_type"] for f in created["files"]] == ["image/png", "image/webp", "text/plain"]
    # And each PUT carried the file's raw bytes with exactly the returned headers, and no API key
    batch_id = batch.batch_id
    for created_file, path in zip(batch.batch.files, sample_files, strict=True):
        (put,) = fake_api.calls("PUT", f"/upload/{batch_id}/{created_file.file_id}")
        assert put.body == path.read_bytes()
        assert put.query == {"X-Amz-Signature": ["abc123"]}
        assert put.headers["content-type"] == created_file.content_type
        assert put.headers["x-amz-meta-batch"] == batch_id
        assert put.headers["content-length"] == str(path.stat().st_size)
        assert "authorization" not in put.headers
        assert "transfer-encoding" not in put.headers
    # And API calls carried the key as a bearer token
    assert all(
        r.headers["authorization"] == f"Bearer {API_KEY}"
        for r in fake_api.requests
        if r.path.startswith("/v1")
    )
    # And upload progress was reported while files went up (bytes per file, never going back, and
    # overall) and once each file was stored, ending at every byte of every file
    sizes = {f.file_id: f.size for f in batch.batch.files}
    for file_id in sizes:
        sent = [u.file_bytes_done for u in uploads if u.file_id == file_id]
        assert sent == sorted(sent)
    assert all(u.batch_id == batch_id for u in uploads)
    assert max(u.files_done for u in uploads) == 3
    assert all(0 <= u.file_bytes_done <= u.file_bytes_total == sizes[u.file_id] for u in uploads)
    assert {u.file_id for u in uploads if u.file_bytes_done == u.file_bytes_total} == set(sizes)
    assert max(u.bytes_done for u in uploads) == uploads[-1].bytes_total == sum(sizes.values())
    # And the status of every poll, ending terminal
    assert [s.is_terminal for s in statuses] == [False, True]
    assert batch.status is not None
    assert batch.status.status == "completed_with_errors"
    # And the results were read over two pages, following the cursor, in submission order
    pages = fake_api.calls("GET", f"/v1/batches/{batch_id}/results")
    assert [p.query for p in pages] == [{"limit": ["2"]}, {"limit": ["2"], "cursor": ["2"]}]
    assert [r.filename for r in run.results] == [p.name for p in sample_files]
    assert run.results[0].description is not None
    assert run.results[0].description.text == "A file called cat.png."
    # And the run summarises, and points back to the local file worth retrying
    assert run.summary() == {"completed": 2, "failed": 1}
    assert [r.filename for r in run.failed()] == ["flaky-notes.txt"]
    assert [run.path_for(r) for r in run.retryable()] == [sample_files[2]]
    assert not run.ok
    assert run.has_failures


def test_throttled_call_waits_as_long_as_retry_after_says(
    client: FilebatchClient, fake_api: FakeApi, sleeps: list[float], sample_files: list[Path]
) -> None:
    # Given a batch, and an API that throttles the next status request with Retry-After: 7
    created = client.create_batch(sample_files[:1])
    path = f"/v1/batches/{created.batch_id}"
    fake_api.script("GET", path, _error(429, "throttled", "Too many requests", headers={"Retry-After": "7"}))

    # When the status is asked for
    status = client.get_batch(created.batch_id)

    # Then the client waited exactly the 7 seconds asked for, once, and then got the answer
    assert sleeps == [7.0]
    assert len(fake_api.calls("GET", path)) == 2
    assert status.batch_id == created.batch_id


def test_a_monthly_quota_is_raised_at_once_instead_of_waiting_for_next_month(
    client: FilebatchClient, fake_api: FakeApi, sleeps: list[float], sample_files: list[Path]
) -> None:
    # Given an API whose plan has used its files for the month (Retry-After: the month's end)
    fake_api.script(
        "POST",
        "/v1/batches",
        _error(429, "monthly_file_quota", "no files left", headers={"Retry-After": "864000"}),
    )
    # When a batch is created
    with pytest.raises(FilebatchApiError) as raised:
        client.create_batch(sample_files[:1])
    # Then the error comes back at once, with its code, and nothing was slept
    assert (raised.value.status, raised.value.code) == (429, "monthly_file_quota")
    assert sleeps == []


def test_upload_retries_server_errors_then_succeeds(
    client: FilebatchClient, fake_api: FakeApi, sleeps: list[float], sample_files: list[Path]
) -> None:
    # Given a batch whose upload target fails the first PUT with 503 (S3's SlowDown)
    created = client.create_batch(sample_files[:1])
    put_path = f"/upload/{created.batch_id}/f00001"
    fake_api.script("PUT", put_path, Scripted(503, "<Error><Code>SlowDown</Code></Error>"))

    # When the file is uploaded
    client.upload(created, sample_files[:1])

    # Then it was sent again, whole, after one short backoff
    puts = fake_api.calls("PUT", put_path)
    assert len(puts) == 2
    assert puts[1].body == sample_files[0].read_bytes()
    assert len(sleeps) == 1
    assert 0.005 <= sleeps[0] <= 0.01


def test_upload_refused_by_storage_raises_upload_error_naming_the_file(
    client: FilebatchClient, fake_api: FakeApi, sample_files: list[Path]
) -> None:
    # Given a batch whose second file's URL is refused (as S3 does once a presigned URL expired)
    created = client.create_batch(sample_files)
    refused = "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
    fake_api.script("PUT", f"/upload/{created.batch_id}/f00002", Scripted(403, refused))

    # When the files are uploaded
    with pytest.raises(UploadError) as raised:
        client.upload(created, sample_files)

    # Then the error names the file and S3's code, the refusal was not retried, the others arrived
    assert raised.value.batch_id == created.batch_id
    (failure,) = raised.value.failures
    assert (failure.filename, failure.status, failure.retryable) == ("photo.webp", 403, False)
    assert "AccessDenied" in failure.reason
    assert len(fake_api.calls("PUT", f"/upload/{created.batch_id}/f00002")) == 1
    uploaded = [f.uploaded is not None for f in fake_api.batches[created.batch_id].files]
    assert uploaded == [True, False, True]


def test_api_error_body_becomes_filebatch_api_error_without_retrying(
    client: FilebatchClient, fake_api: FakeApi, sleeps: list[float]
) -> None:
    # Given a batch id the service does not know
    missing = "b-" + "f" * 32

    # When its status is asked for
    with pytest.raises(FilebatchApiError) as raised:
        client.get_batch(missing)

    # Then the error body's status, code and message are on the exception, after a single request
    error = raised.value
    assert (error.status, error.code) == (404, "batch_not_found")
    assert missing in error.message
    assert not error.retryable
    assert len(fake_api.calls("GET", f"/v1/batches/{missing}")) == 1
    assert sleeps == []


def test_validation_error_details_are_kept(client: FilebatchClient, fake_api: FakeApi) -> None:
    # Given an API that rejects the batch with per-field details
    details = [{"location": "body.files.0.content_type", "problem": "bad pattern", "type": "string"}]
    fake_api.script(
        "POST", "/v1/batches", _error(400, "validation_error", "does not match the schema", details=details)
    )

    # When a batch is created
    with pytest.raises(FilebatchApiError) as raised:
        client.create_batch([FileSpec("a.bin", 3, "Not A Type")])

    # Then the details are available and part of the message
    assert raised.value.code == "validation_error"
    assert raised.value.details == details
    assert "body.files.0.content_type: bad pattern" in str(raised.value)


def test_retries_stop_after_max_retries_with_the_last_error(fake_api: FakeApi, sleeps: list[float]) -> None:
    # Given an API that keeps answering 503, and a client allowed two retries
    path = "/v1/batches/b-" + "0" * 32
    unavailable = _error(503, "storage_unavailable", "try later")
    fake_api.script("GET", path, unavailable, unavailable, unavailable, unavailable)
    client = FilebatchClient(fake_api.base_url, API_KEY, max_retries=2, sleep=sleeps.append, backoff_base=0.1)

    # When the status is asked for
    with client, pytest.raises(FilebatchApiError) as raised:
        client.get_batch("b-" + "0" * 32)

    # Then three attempts were made with growing backoff, and the server's error surfaced
    assert (raised.value.status, raised.value.code) == (503, "storage_unavailable")
    assert len(fake_api.calls("GET", path)) == 3
    assert len(sleeps) == 2
    assert 0.05 <= sleeps[0] <= 0.1 <= sleeps[1] <= 0.2


def test_wait_gives_up_after_timeout_with_last_status(
    client: FilebatchClient, fake_api: FakeApi, sample_files: list[Path]
) -> None:
    # Given a batch that is still processing
    created = client.create_batch(sample_files[:1])

    # When waiting for it with no time to spare
    with pytest.raises(BatchTimeoutError) as raised:
        client.wait(created.batch_id, timeout=0)

    # Then the timeout carries the last status seen
    assert raised.value.last_status.status == "processing"
    assert isinstance(raised.value, TimeoutError)


def test_cli_submit_json_output_parses(
    fake_api: FakeApi, sample_files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a service that finishes batches on the first poll (so the CLI never sleeps)
    fake_api.polls_until_done = 1
    files = [str(p) for p in sample_files[:2]]

    # When files are submitted from the command line with --json
    code = main(["submit", *files, "--api-url", fake_api.base_url, "--api-key", API_KEY, "--json"])

    # Then stdout is one JSON document in the API's shape, and every file completed
    document = json.loads(capsys.readouterr().out)
    assert code == 0
    (batch,) = document["batches"]
    assert batch["status"]["status"] == "completed"
    assert batch["summary"] == document["summary"] == {"completed": 2}
    assert [r["filename"] for r in document["results"]] == ["cat.png", "photo.webp"]
    assert document["results"][0]["status"] == FileState.COMPLETED
    assert document["results"][0]["finished_at"] == TIMESTAMP


def test_cli_reads_the_stack_file_and_prints_results_and_status(
    fake_api: FakeApi,
    client: FilebatchClient,
    sample_files: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a finished batch, no credentials in the environment, and the local stack's file
    (run,) = client.submit(sample_files).batches
    monkeypatch.delenv("FILEBATCH_API_URL", raising=False)
    monkeypatch.delenv("FILEBATCH_API_KEY", raising=False)
    (tmp_path / ".local").mkdir()
    stack = {"api_url": fake_api.base_url, "api_key": API_KEY}
    (tmp_path / ".local" / "stack.json").write_text(json.dumps(stack))
    monkeypatch.chdir(tmp_path)

    # When results and status are asked for without credentials on the command line
    results_code = main(["results", run.batch_id, "--json", "--page-size", "2"])
    results = json.loads(capsys.readouterr().out)
    status_code = main(["status", run.batch_id])
    status_text = capsys.readouterr().out

    # Then the stack file supplied them
    assert (results_code, status_code) == (0, 0)
    assert results["batch_id"] == run.batch_id
    assert [item["status"] for item in results["items"]] == ["completed", "completed", "failed"]
    assert results["items"][2]["error"]["retryable"] is True
    assert "completed_with_errors" in status_text


def test_cli_without_credentials_explains_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given no flags, no environment variables and no stack file
    monkeypatch.delenv("FILEBATCH_API_URL", raising=False)
    monkeypatch.delenv("FILEBATCH_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)

    # When a command runs
    code = main(["status", "b-" + "0" * 32])

    # Then it says where credentials come from
    assert code == 2
    assert "FILEBATCH_API_URL" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("IMG_0001.JPG", "image/jpeg"),
        ("photo.webp", "image/webp"),
        ("scan.heic", "image/heic"),
        ("report.pdf", "application/pdf"),
        ("backup.tar.gz", "application/gzip"),
        ("mystery.qqq", "application/octet-stream"),
        ("no-extension", "application/octet-stream"),
    ],
)
def test_content_type_is_guessed_from_the_extension(filename: str, expected: str) -> None:
    # Given a file name / When its content type is guessed / Then it is the expected one
    assert guess_content_type(filename) == expected


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("7", 7.0), ("0", 0.0), ("-3", 0.0), ("nan", None), ("soon", None), (None, None)],
)
def test_retry_after_header_is_read_as_seconds(header: str | None, seconds: float | None) -> None:
    # Given a Retry-After value / When parsed / Then it gives seconds, or None when unusable
    assert parse_retry_after(header) == seconds


def test_retry_after_http_date_and_backoff_bounds() -> None:
    # Given an HTTP-date Retry-After 30 s ahead, and a backoff starting at 1 s capped at 4 s
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    backoff = Backoff(base=1.0, cap=4.0)

    # When delays are computed
    from_date = parse_retry_after("Wed, 01 May 2024 12:00:30 GMT", now=now)
    delays = [backoff.delay(attempt) for attempt in range(5)]

    # Then the date becomes 30 s, and backoff grows (with jitter) but stays under the cap
    assert from_date == 30.0
    assert 0.5 <= delays[0] <= 1.0
    assert 1.0 <= delays[1] <= 2.0
    assert all(2.0 <= d <= 4.0 for d in delays[3:])
    assert backoff.delay(0, retry_after=1000) == backoff.max_retry_after


@pytest.mark.parametrize(
    ("status", "carried_out"), [(429, False), (503, False), (500, True), (502, True), (504, True)]
)
def test_creating_a_batch_is_retried_with_the_same_idempotency_key_after_an_error_answer(
    fake_api: FakeApi, sleeps: list[float], sample_files: list[Path], status: int, carried_out: bool
) -> None:
    # Given an API whose first answer to POST /v1/batches is `status`, whether or not the batch
    # was created behind it (a gateway's 502/504 can hide a created batch)
    failure = _error(status, "some_error", "first attempt failed")
    if carried_out:
        fake_api.lose_answers("POST", "/v1/batches", instead=failure)
    else:
        fake_api.script("POST", "/v1/batches", failure)
    client = FilebatchClient(
        fake_api.base_url, API_KEY, max_retries=3, sleep=sleeps.append, backoff_base=0.01
    )

    # When a batch is created
    with client:
        created = client.create_batch(sample_files[:1])

    # Then it was sent again with the same Idempotency-Key, and exactly one batch exists: the
    # one the answer names
    attempts = fake_api.calls("POST", "/v1/batches")
    assert len(attempts) == 2
    assert attempts[0].headers["idempotency-key"] == attempts[1].headers["idempotency-key"]
    assert attempts[0].body == attempts[1].body
    assert list(fake_api.batches) == [created.batch_id]
    assert len(sleeps) == 1


def test_a_create_whose_answer_was_lost_is_retried_and_answered_with_the_batch_it_created(
    client: FilebatchClient, fake_api: FakeApi, sleeps: list[float], sample_files: list[Path]
) -> None:
    # Given an API that creates the batch but whose answer never arrives (the connection drops)
    fake_api.lose_answers("POST", "/v1/batches")

    # When a batch is created
    created = client.create_batch(sample_files[:1])

    # Then the SDK sent it again with the same key, and got the first batch back instead of a second
    attempts = fake_api.calls("POST", "/v1/batches")
    assert len(attempts) == 2
    assert len({a.headers["idempotency-key"] for a in attempts}) == 1
    assert list(fake_api.batches) == [created.batch_id]
    assert created.files[0].filename == sample_files[0].name


def test_a_create_still_in_progress_is_waited_for_with_the_same_key(
    client: FilebatchClient, fake_api: FakeApi, sleeps: list[float], sample_files: list[Path]
) -> None:
    # Given an API that is still handling an earlier attempt with the same key, and says so
    fake_api.script(
        "POST",
        "/v1/batches",
        _error(
            409, "request_in_progress", "a request with this key is in progress", headers={"Retry-After": "2"}
        ),
    )

    # When a batch is created
    created = client.create_batch(sample_files[:1])

    # Then the SDK waited as asked and asked again with the same key
    attempts = fake_api.calls("POST", "/v1/batches")
    assert [a.headers["idempotency-key"] for a in attempts] == [attempts[0].headers["idempotency-key"]] * 2
    assert sleeps == [2.0]
    assert created.batch_id in fake_api.batches


def test_every_create_carries_its_own_idempotency_key_unless_one_is_given(
    client: FilebatchClient, fake_api: FakeApi, sample_files: list[Path]
) -> None:
    # Given two creates with generated keys, and two with the caller's own key and the same files
    first = client.create_batch(sample_files[:1])
    second = client.create_batch(sample_files[:1])
    mine = client.create_batch(sample_files[:1], idempotency_key="order-1234")
    again = client.create_batch(sample_files[:1], idempotency_key="order-1234")

    # Then generated keys are fresh uuid4s, so the first two are two batches
    keys = [r.headers["idempotency-key"] for r in fake_api.calls("POST", "/v1/batches")]
    assert uuid.UUID(keys[0]).version == 4
    assert keys[0] != keys[1]
    assert first.batch_id != second.batch_id
    # And the caller's key travels as given, so repeating the create gives the same batch back
    assert keys[2:] == ["order-1234", "order-1234"]
    assert again.batch_id == mine.batch_id
    assert len(fake_api.batches) == 3
    # And the same key for other files is refused with its own error, not retried
    with pytest.raises(IdempotencyKeyReusedError) as raised:
        client.create_batch(sample_files[1:2], idempotency_key="order-1234")
    assert (raised.value.status, raised.value.code) == (409, "idempotency_key_reused")
    assert len(fake_api.calls("POST", "/v1/batches")) == 5
    # And a key the header cannot carry is refused before any request
    with pytest.raises(ValueError, match="idempotency_key"):
        client.create_batch(sample_files[:1], idempotency_key="line\nbreak")
    assert len(fake_api.calls("POST", "/v1/batches")) == 5


def test_create_batch_collects_every_upload_instruction_across_pages(
    client: FilebatchClient, fake_api: FakeApi, sample_files: list[Path]
) -> None:
    # Given an API whose create answer carries one instruction and pages the rest
    fake_api.create_page_size = 1
    # When a batch of three files is created and uploaded
    created = client.create_batch(sample_files)
    # Then the SDK followed the uploads cursor and has an instruction for every file
    assert [f.file_id for f in created.files] == ["f00001", "f00002", "f00003"]
    assert len(fake_api.calls("GET", f"/v1/batches/{created.batch_id}/uploads")) == 1
    client.upload(created, sample_files)
    # And once uploaded, nothing is left to refresh
    assert client.refresh_uploads(created.batch_id) == []


def test_skip_duplicates_sends_the_declared_hashes_and_uploads_only_files_with_an_instruction(
    client: FilebatchClient, fake_api: FakeApi, sample_files: list[Path]
) -> None:
    # Given an API that already described the bytes of the first file (issue 10)
    import hashlib

    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in sample_files]
    fake_api.known_results[digests[0]] = ("b-" + "e" * 32, "f00007")
    # When a batch skipping duplicates is created from the paths (their hashes declared), and uploaded
    progress: list[UploadProgress] = []
    created = client.create_batch(sample_files, skip_duplicates=True)
    client.upload(created, sample_files, on_progress=progress.append)
    # Then the request carried the option and the hash, the first file has no instruction and says
    # whose result it takes, and only the two others were sent
    [create] = fake_api.calls("POST", "/v1/batches")
    body = json.loads(create.body)
    assert body["skip_duplicates"] is True
    assert [f.get("sha256") for f in body["files"]] == digests
    first = created.files[0]
    assert first.upload is None and first.duplicate_of is not None
    assert (first.duplicate_of.batch_id, first.duplicate_of.file_id) == ("b-" + "e" * 32, "f00007")
    puts = [r.path for r in fake_api.requests if r.method == "PUT"]
    assert sorted(puts) == [f"/upload/{created.batch_id}/f00002", f"/upload/{created.batch_id}/f00003"]
    assert {p.files_total for p in progress} == {2}
    assert {p.file_id for p in progress} == {"f00002", "f00003"}


def test_cli_submit_passes_skip_duplicates(fake_api: FakeApi, sample_files: list[Path]) -> None:
    # When the CLI submits with --skip-duplicates
    code = _cli(fake_api, "submit", "--no-wait", "--skip-duplicates", *[str(p) for p in sample_files])
    # Then the create asked for it
    assert code == 0
    [create] = fake_api.calls("POST", "/v1/batches")
    assert json.loads(create.body)["skip_duplicates"] is True


def test_refresh_uploads_gives_fresh_instructions_for_files_not_yet_uploaded(
    client: FilebatchClient, fake_api: FakeApi, sample_files: list[Path]
) -> None:
    # Given a created batch none of whose files was uploaded
    created = client.create_batch(sample_files)
    # When its upload instructions are refreshed
    refreshed = client.refresh_uploads(created.batch_id)
    # Then every file gets one again
    assert [f.file_id for f in refreshed] == [f.file_id for f in created.files]


def test_status_carries_the_batch_token_totals_and_tolerates_servers_without_them() -> None:
    # Given the status body the API answers, built with the server's own response model
    from filebatch.models.api import BatchCounts as ApiCounts
    from filebatch.models.api import BatchStatusResponse, DescriptionSettingsBody, TokenUsageBody

    moment = datetime(2026, 11, 23, tzinfo=UTC)
    body = BatchStatusResponse(
        batch_id="b-" + "0" * 32,
        status="completed",
        is_terminal=True,
        counts=ApiCounts(
            total=2,
            awaiting_upload=0,
            uploaded=0,
            processing=0,
            completed=2,
            failed=0,
            cancelled=0,
            upload_expired=0,
            skipped=0,
        ),
        usage=TokenUsageBody(input_tokens=3015, output_tokens=228),
        description=DescriptionSettingsBody(
            provider="local",
            prompt="Name the product.",
            language="fr",
            detail="brief",
            ignored=["detail", "language", "prompt"],
            note="English only",
        ),
        progress_percentage=100.0,
        eta_seconds=None,
        retries=0,
        upload_deadline=None,
        closed_at=moment,
        webhook_url=None,
        created_at=moment,
        updated_at=moment,
        finished_at=moment,
    ).model_dump(mode="json")
    # When the SDK reads it, and the same body from a server that predates token accounting
    status = BatchStatus.from_json(body)
    body.pop("usage")
    older = BatchStatus.from_json(body)
    # Then the totals come through, and their absence reads as none
    assert status.usage == TokenUsage(input_tokens=3015, output_tokens=228)
    assert older.usage == TokenUsage()
    # And so do the batch's instructions and what its provider ignores
    assert status.description is not None
    assert (status.description.prompt, status.description.ignored) == (
        "Name the product.",
        ("detail", "language", "prompt"),
    )


# ---- the batch lifecycle (issue 8) ------------------------------------------------------------


def _finished_batch(client: FilebatchClient, paths: list[Path]) -> str:
    """A batch of `paths`, uploaded and followed to its end (the fake ends it on its 2nd poll)."""
    (batch_id,) = client.submit(paths).batch_ids
    return batch_id


def test_create_sends_name_metadata_and_webhook_url_and_reads_them_back(
    client: FilebatchClient, fake_api: FakeApi, sample_files: list[Path]
) -> None:
    # Given a name, metadata and a webhook URL
    # When a batch is created with them
    created = client.create_batch(
        sample_files[:1],
        name="june-invoices",
        metadata={"team": "ops", "run": "7"},
        webhook_url="https://hooks.example.com/filebatch",
    )

    # Then the body carries them next to the files, and the answer gives them back
    body = json.loads(fake_api.calls("POST", "/v1/batches")[0].body)
    assert body["name"] == "june-invoices"
    assert body["metadata"] == {"team": "ops", "run": "7"}
    assert body["webhook_url"] == "https://hooks.example.com/filebatch"
    assert (created.name, created.metadata, created.webhook_url) == (
        "june-invoices",
        {"team": "ops", "run": "7"},
        "https://hooks.example.com/filebatch",
    )
    # And so does the status
    status = client.get_batch(created.batch_id)
    assert (status.name, status.metadata, status.retries) == ("june-invoices", {"team": "ops", "run": "7"}, 0)
    # And a second batch of the same name is refused with its own error
    with pytest.raises(NameTakenError):
        client.create_batch(sample_files[:1], name="june-invoices")


def test_list_batches_follows_the_cursor_newest_first_and_stops_at_the_limit(
    client: FilebatchClient, fake_api: FakeApi, sample_files: list[Path]
) -> None:
    # Given five batches, two of them named
    ids = [client.create_batch(sample_files[:1], name=f"n{i}" if i < 2 else None).batch_id for i in range(5)]

    # When every batch is listed two per page
    listed = list(client.list_batches(page_size=2))

    # Then all five come back newest first, over three requests that followed the cursor
    assert [b.batch_id for b in listed] == ids[::-1]
    pages = fake_api.calls("GET", "/v1/batches")
    assert [p.query.get("cursor") for p in pages] == [None, ["2"], ["4"]]
    # And with a limit, it stops once it has that many, asking for no more than it needs
    fake_api.requests.clear()
    assert [b.batch_id for b in client.list_batches(limit=3, page_size=2)] == ids[:1:-1]
    assert [p.query["limit"] for p in fake_api.calls("GET", "/v1/batches")] == [["2"], ["1"]]
    # And the filters travel to the server
    fake_api.requests.clear()
    (named,) = client.list_batches(name="n1", status="processing")
    assert named.batch_id == ids[1]
    assert fake_api.calls("GET", "/v1/batches")[0].query == {
        "limit": ["100"],
        "status": ["processing"],
        "name": ["n1"],
    }
    # And one page can be asked for on its own
    page = client.list_batches_page(limit=4)
    assert len(page.items) == 4
    assert page.next_cursor == "4"


def test_close_processes_what_arrived_and_a_second_close_is_refused_without_retrying(
    client: FilebatchClient, fake_api: FakeApi, sleeps: list[float], sample_files: list[Path]
) -> None:
    # Given a batch awaiting its uploads
    created = client.create_batch(sample_files[:1])
    path = f"/v1/batches/{created.batch_id}/close"

    # When it is closed, twice
    status = client.close_batch(created.batch_id)
    with pytest.raises(BatchNotOpenError) as raised:
        client.close_batch(created.batch_id)

    # Then the first close answers the batch's status, the second the conflict, once each
    assert status.status == "processing"
    assert isinstance(raised.value, ConflictError)
    assert len(fake_api.calls("POST", path)) == 2
    assert sleeps == []


def test_a_close_whose_answer_may_be_lost_is_not_sent_again(
    client: FilebatchClient, fake_api: FakeApi, sample_files: list[Path]
) -> None:
    # Given a batch whose close is carried out but answered 502 by the gateway
    created = client.create_batch(sample_files[:1])
    path = f"/v1/batches/{created.batch_id}/close"
    fake_api.lose_answers("POST", path, instead=_error(502, "bad_gateway", "upstream"))

    # When it is closed
    with pytest.raises(FilebatchApiError) as raised:
        client.close_batch(created.batch_id)

    # Then the 502 surfaces: sending it again would answer batch_not_open for a close that worked
    assert raised.value.status == 502
    assert len(fake_api.calls("POST", path)) == 1


def test_cancel_then_wait_follows_cancelling_until_cancelled(
    client: FilebatchClient, fake_api: FakeApi, sample_files: list[Path]
) -> None:
    # Given a batch being processed
    created = client.create_batch(sample_files[:1])
    seen: list[str] = []

    # When it is cancelled and waited for
    cancelling = client.cancel_batch(created.batch_id)
    final = client.wait(created.batch_id, on_progress=lambda s: seen.append(s.status))

    # Then cancel answers "cancelling" (not terminal), and wait stops at "cancelled"
    assert (cancelling.status, cancelling.is_terminal) == ("cancelling", False)
    assert seen == ["cancelling", "cancelled"]
    assert final.is_terminal
    assert final.counts.cancelled == 1
    assert final.counts.finished == 1
    # And cancelling again answers the same
    assert client.cancel_batch(created.batch_id).status == "cancelled"


def test_cancelling_a_batch_that_ended_otherwise_raises_batch_ended(
    client: FilebatchClient, sample_files: list[Path]
) -> None:
    batch_id = _finished_batch(client, sample_files[:1])
    with pytest.raises(BatchEndedError) as raised:
        client.cancel_batch(batch_id)
    assert raised.value.code == "batch_ended"


@pytest.mark.parametrize(("before", "final"), [("cancelling", "cancelled"), ("awaiting_upload", "expired")])
def test_wait_treats_cancelled_and_expired_as_terminal(
    client: FilebatchClient,
    fake_api: FakeApi,
    sleeps: list[float],
    sample_files: list[Path],
    before: str,
    final: str,
) -> None:
    # Given a batch that the server reports as `before`, then `final`
    created = client.create_batch(sample_files[:1])
    body = fake_api._status_body(fake_api.batches[created.batch_id])
    fake_api.script(
        "GET",
        f"/v1/batches/{created.batch_id}",
        Scripted(200, {**body, "status": before, "is_terminal": False}),
        Scripted(200, {**body, "status": final, "is_terminal": True, "eta_seconds": None}),
    )

    # When it is waited for
    status = client.wait(created.batch_id, poll_interval=5)

    # Then the wait ended at `final` after one poll interval, without polling on
    assert status.status == final
    assert status.is_terminal
    assert sleeps == [5]
    assert len(fake_api.calls("GET", f"/v1/batches/{created.batch_id}")) == 2


def test_retry_runs_the_failed_files_again_only_once_the_batch_ended(
    client: FilebatchClient, fake_api: FakeApi, sample_files: list[Path]
) -> None:
    # Given a batch still running, and one that ended with a failed file
    running = client.create_batch(sample_files[:1])
    ended = _finished_batch(client, sample_files)

    # When each is retried
    with pytest.raises(BatchNotEndedError):
        client.retry_batch(running.batch_id)
    retry = client.retry_batch(ended)

    # Then the running one is refused, and the ended one runs its failed file again
    assert (retry.batch_id, retry.retry, retry.status) == (ended, 1, "processing")
    assert retry.file_ids == ["f00003"]
    assert retry.execution_name == f"{ended}-r1"
    assert json.loads(fake_api.calls("POST", f"/v1/batches/{ended}/retry")[-1].body) == {}
    # And the status counts the retry; wait follows the new run
    assert client.get_batch(ended).retries == 1


def test_retry_sends_the_chosen_files_and_maps_its_conflicts(
    client: FilebatchClient, fake_api: FakeApi, sample_files: list[Path]
) -> None:
    # Given an ended batch whose files all completed
    batch_id = _finished_batch(client, sample_files[:2])
    path = f"/v1/batches/{batch_id}/retry"

    # When it is retried with chosen files, and without
    retry = client.retry_batch(batch_id, file_ids=["f00002"])
    fake_api.batches[batch_id].polls = fake_api.polls_until_done  # ended again
    with pytest.raises(NothingToRetryError):
        client.retry_batch(batch_id)
    fake_api.script("POST", path, _error(409, "retry_in_progress", "a retry is running"))
    with pytest.raises(RetryInProgressError):
        client.retry_batch(batch_id)

    # Then the chosen files travel in the body
    assert json.loads(fake_api.calls("POST", path)[0].body) == {"file_ids": ["f00002"]}
    assert retry.file_ids == ["f00002"]


def test_delete_needs_an_ended_batch_which_is_gone_afterwards(
    client: FilebatchClient, fake_api: FakeApi, sample_files: list[Path]
) -> None:
    # Given a running batch and an ended one
    running = client.create_batch(sample_files[:1])
    ended = _finished_batch(client, sample_files[:1])

    # When each is deleted
    with pytest.raises(BatchNotEndedError) as raised:
        client.delete_batch(running.batch_id)
    deleted = client.delete_batch(ended)

    # Then the running one must be cancelled first, the ended one is being deleted, then 404
    assert "cancel" in raised.value.message
    assert (deleted.batch_id, deleted.status) == (ended, "deleting")
    assert fake_api.calls("DELETE", f"/v1/batches/{ended}")[0].headers["authorization"] == f"Bearer {API_KEY}"
    with pytest.raises(BatchNotFoundError):
        client.get_batch(ended)


def test_results_can_be_filtered_by_file_status(
    client: FilebatchClient, fake_api: FakeApi, sample_files: list[Path]
) -> None:
    # Given an ended batch with two completed files and a failed one
    batch_id = _finished_batch(client, sample_files)
    fake_api.requests.clear()

    # When only the failed results are asked for
    failed = client.results(batch_id, status=FileState.FAILED)

    # Then the filter travelled to the server, and only the failed file came back
    assert [r.filename for r in failed] == ["flaky-notes.txt"]
    assert fake_api.calls("GET", f"/v1/batches/{batch_id}/results")[0].query["status"] == ["failed"]
    assert len(client.results(batch_id)) == 3


def test_export_downloads_the_jsonl_without_the_api_key_and_reads_back_as_results(
    client: FilebatchClient, fake_api: FakeApi, sample_files: list[Path], tmp_path: Path
) -> None:
    # Given a running batch and an ended one
    running = client.create_batch(sample_files[:1])
    batch_id = _finished_batch(client, sample_files)
    target = tmp_path / "out" / "results.jsonl"

    # When the running one's export is asked for, and the ended one's downloaded
    with pytest.raises(ExportNotReadyError):
        client.export_results(running.batch_id)
    info = client.download_export(batch_id, target)

    # Then the ended one's JSON Lines arrived from the presigned URL, which got no API key
    assert (info.batch_id, info.files) == (batch_id, 3)
    (download,) = fake_api.calls("GET", f"/exports/{batch_id}.jsonl")
    assert download.query == {"X-Amz-Signature": ["def456"]}
    assert "authorization" not in download.headers
    # And each line reads back as the same result the results route gives
    assert list(iter_export_file(target)) == client.results(batch_id)
    # And no temporary file was left next to it
    assert [p.name for p in target.parent.iterdir()] == ["results.jsonl"]


def test_export_download_retries_storage_faults_and_names_a_refusal(
    client: FilebatchClient, fake_api: FakeApi, sleeps: list[float], sample_files: list[Path], tmp_path: Path
) -> None:
    # Given an ended batch whose export storage first answers 503, and later refuses the URL
    batch_id = _finished_batch(client, sample_files[:1])
    sleeps.clear()  # the wait's poll
    path = f"/exports/{batch_id}.jsonl"
    fake_api.script("GET", path, Scripted(503, "<Error><Code>SlowDown</Code></Error>"))
    expired = "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"

    # When it is downloaded twice, the second time after the URL expired
    client.download_export(batch_id, tmp_path / "a.jsonl")
    fake_api.script("GET", path, Scripted(403, expired))
    (tmp_path / "b.jsonl").write_text("keep me\n")
    with pytest.raises(DownloadError) as raised:
        client.download_export(batch_id, tmp_path / "b.jsonl")

    # Then the 503 was retried, and the refusal names S3's code and leaves the target as it was
    assert len(sleeps) == 1
    assert len(list(iter_export_file(tmp_path / "a.jsonl"))) == 1
    assert (raised.value.status, raised.value.reason) == (403, "HTTP 403 AccessDenied")
    assert (tmp_path / "b.jsonl").read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".part") == []


def test_iter_export_file_names_a_line_that_is_not_a_result(tmp_path: Path) -> None:
    export = tmp_path / "broken.jsonl"
    export.write_text(json.dumps(_result(FakeFile("f00001", "a.png", 3, "image/png"))) + "\n\n{}\n")
    results = iter_export_file(export)
    assert next(results).filename == "a.png"
    with pytest.raises(ValueError, match=r"broken\.jsonl:3"):
        next(results)


def test_rotating_the_webhook_secret_is_not_repeated_after_an_ambiguous_failure(
    client: FilebatchClient, fake_api: FakeApi
) -> None:
    # Given an API that rotates the secret
    # When it is rotated
    secret = client.rotate_webhook_secret()

    # Then the new secret comes back, kept out of repr
    assert secret.secret.startswith("whsec_")
    assert secret.secret not in repr(secret)
    # And a rotation answered 502 is not sent again (a second one would retire the first's secret)
    fake_api.lose_answers("POST", "/v1/webhooks/secret", instead=_error(502, "bad_gateway", "upstream"))
    with pytest.raises(FilebatchApiError):
        client.rotate_webhook_secret()
    assert len(fake_api.calls("POST", "/v1/webhooks/secret")) == 2


@pytest.mark.parametrize(("code", "kind"), sorted(API_ERRORS.items()))
def test_each_error_code_raises_its_own_exception(
    client: FilebatchClient, fake_api: FakeApi, code: str, kind: type[FilebatchApiError]
) -> None:
    # Given an API that answers a request with `code`
    path = "/v1/batches/b-" + "1" * 32
    status = 404 if code == "batch_not_found" else 409
    fake_api.script("GET", path, _error(status, code, "no"))
    # When the request is made / Then the exception is the code's class, still a FilebatchApiError
    with pytest.raises(kind) as raised:
        client.get_batch("b-" + "1" * 32)
    assert type(raised.value) is kind
    assert isinstance(raised.value, FilebatchApiError)
    assert raised.value.code == code


def test_unknown_codes_fall_back_to_conflict_or_the_base_error(
    client: FilebatchClient, fake_api: FakeApi
) -> None:
    path = "/v1/batches/b-" + "1" * 32
    fake_api.script("GET", path, _error(409, "something_new", "no"), _error(400, "webhook_url_refused", "no"))
    with pytest.raises(ConflictError) as conflict:
        client.get_batch("b-" + "1" * 32)
    with pytest.raises(FilebatchApiError) as refused:
        client.get_batch("b-" + "1" * 32)
    assert type(conflict.value) is ConflictError
    assert type(refused.value) is FilebatchApiError
    assert refused.value.code == "webhook_url_refused"


def test_status_reads_the_lifecycle_fields_and_defaults_them_for_older_servers() -> None:
    # Given a status body as the issue 8 contract describes it
    body = {
        "batch_id": "b-" + "0" * 32,
        "status": "processing",
        "is_terminal": False,
        "name": "june",
        "metadata": {"team": "ops"},
        "webhook_url": "https://hooks.example.com/x",
        "retries": 2,
        "counts": {
            "total": 10,
            "awaiting_upload": 0,
            "uploaded": 1,
            "processing": 2,
            "completed": 3,
            "failed": 1,
            "cancelled": 0,
            "upload_expired": 2,
            "skipped": 1,
        },
        "progress_percentage": 70.0,
        "eta_seconds": 12.6,
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
        "finished_at": None,
    }
    # When the SDK reads it, and the same body without the new fields, ended as the old states say
    status = BatchStatus.from_json(body)
    older = BatchStatus.from_json(
        {
            **{
                k: v
                for k, v in body.items()
                if k not in {"name", "metadata", "webhook_url", "retries", "eta_seconds"}
            },
            "counts": {"total": 10, "uploaded": 10, "completed": 9, "failed": 1},
        }
    )
    # Then every new field comes through, and terminal files count as finished
    assert (status.name, status.metadata, status.webhook_url, status.retries) == (
        "june",
        {"team": "ops"},
        "https://hooks.example.com/x",
        2,
    )
    assert status.eta_seconds == 13
    assert status.counts.finished == 3 + 1 + 2 + 1
    assert status.counts.by_state() == {
        "uploaded": 1,
        "processing": 2,
        "completed": 3,
        "failed": 1,
        "upload_expired": 2,
        "skipped": 1,
    }
    # And from an older server they read as absent
    assert (older.name, older.metadata, older.webhook_url, older.retries, older.eta_seconds) == (
        None,
        {},
        None,
        0,
        None,
    )
    assert (older.counts.awaiting_upload, older.counts.cancelled, older.counts.finished) == (0, 0, 10)
    # And a terminal status is terminal even from a body that does not say so
    assert BatchStatus.from_json({**body, "status": "expired", "is_terminal": False}).is_terminal
    assert BatchState.CANCELLED.is_terminal and not BatchState.CANCELLING.is_terminal
    assert FileState.UPLOAD_EXPIRED.is_terminal and not FileState.PROCESSING.is_terminal


# ---- the lifecycle commands ---------------------------------------------------------------------


def _cli(fake_api: FakeApi, *args: str) -> int:
    return main([*args, "--api-url", fake_api.base_url, "--api-key", API_KEY])


def test_cli_submit_sends_name_metadata_and_webhook_url(
    fake_api: FakeApi, sample_files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given files to submit
    # When they are submitted with a name, two metadata pairs (one given twice) and a webhook URL
    code = _cli(
        fake_api,
        "submit",
        str(sample_files[0]),
        "--no-wait",
        "--name",
        "june",
        "--metadata",
        "team=ops",
        "--metadata",
        "note=a=b",
        "--metadata",
        "team=sales",
        "--webhook-url",
        "https://hooks.example.com/x",
    )

    # Then the batch carries them (a value may hold "="; the last value of a key wins)
    body = json.loads(fake_api.calls("POST", "/v1/batches")[0].body)
    assert code == 0
    assert (body["name"], body["metadata"], body["webhook_url"]) == (
        "june",
        {"team": "sales", "note": "a=b"},
        "https://hooks.example.com/x",
    )
    assert capsys.readouterr().out.strip() in fake_api.batches


def test_cli_rejects_metadata_without_a_key(
    fake_api: FakeApi, sample_files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        _cli(fake_api, "submit", str(sample_files[0]), "--metadata", "no-equals-sign")
    assert exited.value.code == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert fake_api.calls("POST", "/v1/batches") == []


def test_cli_list_prints_a_line_per_batch_or_json(
    fake_api: FakeApi, client: FilebatchClient, sample_files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given three batches, the newest named
    ids = [client.create_batch(sample_files[:1]).batch_id for _ in range(2)]
    ids.append(client.create_batch(sample_files[:1], name="latest").batch_id)

    # When they are listed as text with a limit, and as JSON
    text_code = _cli(fake_api, "list", "--limit", "2")
    lines = capsys.readouterr().out.splitlines()
    json_code = _cli(fake_api, "list", "--all", "--json", "--status", "processing")
    document = json.loads(capsys.readouterr().out)

    # Then the text shows the newest two, one line each with the name; the JSON every batch
    assert (text_code, json_code) == (0, 0)
    assert [line.split()[0] for line in lines] == ids[:0:-1]
    assert "'latest'" in lines[0]
    assert "1 file(s)" in lines[0]
    assert [item["batch_id"] for item in document["items"]] == ids[::-1]
    assert document["items"][0]["name"] == "latest"
    assert fake_api.calls("GET", "/v1/batches")[-1].query["status"] == ["processing"]


def test_cli_list_with_no_batches_says_so_on_stderr(
    fake_api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(fake_api, "list") == 0
    output = capsys.readouterr()
    assert (output.out, output.err.strip()) == ("", "no batches")


def test_cli_close_and_cancel_print_the_status_and_conflicts_exit_3(
    fake_api: FakeApi, client: FilebatchClient, sample_files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a batch awaiting upload
    batch_id = client.create_batch(sample_files[:1]).batch_id

    # When it is closed, closed again, then cancelled (as JSON)
    close_code = _cli(fake_api, "close", batch_id)
    closed = capsys.readouterr().out
    again_code = _cli(fake_api, "close", batch_id)
    refused = capsys.readouterr().err
    cancel_code = _cli(fake_api, "cancel", batch_id, "--json")
    cancelled = json.loads(capsys.readouterr().out)

    # Then each prints the batch's status; the second close is a conflict, named, exit 3
    assert (close_code, again_code, cancel_code) == (0, 3, 0)
    assert closed.startswith(f"{batch_id}  processing")
    assert "409 batch_not_open" in refused
    assert (cancelled["batch_id"], cancelled["status"]) == (batch_id, "cancelling")


def test_cli_retry_delete_and_export(
    fake_api: FakeApi,
    client: FilebatchClient,
    sample_files: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given an ended batch with a failed file, in a scratch directory
    batch_id = _finished_batch(client, sample_files)
    monkeypatch.chdir(tmp_path)

    # When it is exported to the default path and to a chosen one
    assert _cli(fake_api, "export", batch_id) == 0
    default_line = capsys.readouterr().out
    assert _cli(fake_api, "export", batch_id, "--output", "out/r.jsonl", "--json") == 0
    exported = json.loads(capsys.readouterr().out)

    # Then both hold every result
    assert default_line.strip() == f"{batch_id}.jsonl  (3 results of {batch_id})"
    assert len(list(iter_export_file(tmp_path / f"{batch_id}.jsonl"))) == 3
    assert exported == {"batch_id": batch_id, "files": 3, "path": "out/r.jsonl"}
    assert [r.status for r in iter_export_file(tmp_path / "out" / "r.jsonl")] == [
        "completed",
        "completed",
        "failed",
    ]

    # When one file is retried, then the batch deleted while the retry runs, then after it ended
    assert _cli(fake_api, "retry", batch_id, "--file-id", "f00003", "--file-id", "f00001") == 0
    retried = capsys.readouterr().out
    assert _cli(fake_api, "delete", batch_id) == 3
    not_ended = capsys.readouterr().err
    fake_api.batches[batch_id].state = "completed"
    assert _cli(fake_api, "delete", batch_id, "--json") == 0
    deleted = json.loads(capsys.readouterr().out)

    # Then the retry named its files and run, and the delete waited for the batch to end
    body = json.loads(fake_api.calls("POST", f"/v1/batches/{batch_id}/retry")[0].body)
    assert body == {"file_ids": ["f00003", "f00001"]}
    assert retried.strip() == f"{batch_id}  processing  retry 1: 2 file(s) ({batch_id}-r1)"
    assert "batch_not_ended" in not_ended
    assert deleted == {"batch_id": batch_id, "status": "deleting"}


def test_cli_export_of_a_running_batch_exits_3_and_writes_nothing(
    fake_api: FakeApi,
    client: FilebatchClient,
    sample_files: list[Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    batch_id = client.create_batch(sample_files[:1]).batch_id
    assert _cli(fake_api, "export", batch_id, "--output", str(tmp_path / "r.jsonl")) == 3
    assert "export_not_ready" in capsys.readouterr().err
    assert list(tmp_path.glob("*.jsonl")) == []


def test_cli_results_filters_by_status(
    fake_api: FakeApi, client: FilebatchClient, sample_files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    batch_id = _finished_batch(client, sample_files)
    assert _cli(fake_api, "results", batch_id, "--status", "failed") == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert "flaky-notes.txt" in line
    assert "provider_unavailable" in line


def test_cli_webhook_secret_rotate_prints_only_the_secret_on_stdout(
    fake_api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the secret is rotated, as text and as JSON
    assert _cli(fake_api, "webhook-secret", "rotate") == 0
    text = capsys.readouterr()
    assert _cli(fake_api, "webhook-secret", "rotate", "--json") == 0
    document = json.loads(capsys.readouterr().out)

    # Then stdout holds the secret alone (ready for a secrets store), the advice goes to stderr
    assert text.out.strip().startswith("whsec_")
    assert "24 hours" in text.err
    assert document["secret"].startswith("whsec_")
    assert document["created_at"] == TIMESTAMP


# ---- integrity and browser-style uploads (issue 10, stream INTEGRITY) ----------------------------


def test_post_uploads_send_the_signed_fields_then_the_streamed_file_as_form_data(
    client: FilebatchClient, fake_api: FakeApi, sample_files: list[Path]
) -> None:
    # Given a service that finishes batches on the first poll
    fake_api.polls_until_done = 1
    # When files are submitted asking for browser-style POST uploads
    announced: list[CreatedBatch] = []
    (run,) = client.submit(sample_files, upload_method="POST", on_created=announced.append).batches
    # Then the create asked for POST uploads, and declared each file's SHA-256
    created = json.loads(fake_api.calls("POST", "/v1/batches")[0].body)
    assert created["upload_method"] == "POST"
    assert [f["sha256"] for f in created["files"]] == [
        hashlib.sha256(p.read_bytes()).hexdigest() for p in sample_files
    ]
    # And each file was POSTed once as multipart/form-data: the instruction's fields in their
    # order, then the file's raw bytes, with a Content-Length (never chunked) and no API key
    batch = fake_api.batches[run.batch_id]
    (with_instructions,) = announced
    for created_file, path, fake_file in zip(with_instructions.files, sample_files, batch.files, strict=True):
        (post,) = fake_api.calls("POST", f"/form-upload/{run.batch_id}/{created_file.file_id}")
        assert post.headers["content-type"].startswith("multipart/form-data; boundary=")
        assert post.headers["content-length"] == str(len(post.body))
        assert "transfer-encoding" not in post.headers
        assert "authorization" not in post.headers
        assert fake_file.posted_fields is not None
        assert list(fake_file.posted_fields.items()) == list(created_file.upload.fields.items())
        assert fake_file.uploaded == path.read_bytes()
    assert not fake_api.calls("PUT", f"/upload/{run.batch_id}/f00001")
    assert run.summary() == {"completed": 2, "failed": 1}


def test_cli_submit_can_choose_post_uploads(
    fake_api: FakeApi, sample_files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a service that finishes batches on the first poll
    fake_api.polls_until_done = 1
    # When a file is submitted from the command line with --upload-method POST
    code = _cli(fake_api, "submit", str(sample_files[0]), "--upload-method", "POST", "--json")
    # Then it was created for POST uploads and its bytes arrived by form POST
    assert code == 0
    assert json.loads(fake_api.calls("POST", "/v1/batches")[0].body)["upload_method"] == "POST"
    [batch] = fake_api.batches.values()
    assert batch.files[0].uploaded == sample_files[0].read_bytes()


def test_an_unknown_upload_method_is_refused_before_any_request(
    client: FilebatchClient, fake_api: FakeApi, sample_files: list[Path]
) -> None:
    with pytest.raises(ValueError, match="upload_method"):
        client.create_batch(sample_files, upload_method="GET")  # type: ignore[arg-type]
    assert fake_api.requests == []


def test_the_form_body_streams_in_the_readers_blocks_and_parses_as_the_fields_then_the_file(
    tmp_path: Path,
) -> None:
    # Given a 4 MiB file and fields whose values need quoting care
    path = tmp_path / 'scan "final".bin'
    content = bytes(range(256)) * (16 * 1024)
    path.write_bytes(content)
    fields = {"key": "uploads/acme/b-1/f00001", "Content-Type": "application/octet-stream", "policy": "e30="}
    form = MultipartFormFile(fields, path, filename=path.name, file_content_type="application/octet-stream")
    # When it is read through in 64 KiB blocks, as an HTTP client sends a body
    received = hashlib.sha256()
    blocks = []
    tracemalloc.start()
    with form:
        while block := form.read(65536):
            assert len(block) <= 65536
            blocks.append(len(block))
            received.update(block)
        _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # Then it never held more than a few blocks (not the 4 MiB file), its length was known up front
    assert peak < 1024 * 1024
    assert sum(blocks) == len(form)
    # And read whole, it is a multipart/form-data body of the fields in order, then the file
    with form:
        body = form.read()
    assert hashlib.sha256(body).hexdigest() == received.hexdigest()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {form.content_type}\r\n\r\n".encode() + body
    )
    parts = list(message.iter_parts())
    assert [p.get_param("name", header="content-disposition") for p in parts] == [*fields, "file"]
    assert [p.get_content() for p in parts[:-1]] == list(fields.values())
    assert parts[-1].get_payload(decode=True) == content
    assert parts[-1].get_content_type() == "application/octet-stream"


def test_declaring_a_file_hashes_it_a_block_at_a_time(tmp_path: Path) -> None:
    # Given a 16 MiB file
    path = tmp_path / "video.bin"
    with path.open("wb") as out:
        for _ in range(16):
            out.write(bytes(range(256)) * 4096)
    # When it is declared
    tracemalloc.start()
    spec = FileSpec.from_path(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # Then its SHA-256 is declared, computed without reading the file into memory
    assert spec.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert spec.to_json()["sha256"] == spec.sha256
    assert peak < 2 * 1024 * 1024
    # And a spec built by hand declares none unless given one
    assert "sha256" not in FileSpec("a.png", 3, "image/png").to_json()


def test_a_result_reads_the_declared_sha256_next_to_the_uploaded_one(
    client: FilebatchClient, fake_api: FakeApi, sample_files: list[Path]
) -> None:
    # Given a finished batch whose results carry the declared hash (servers before issue 10 do not)
    fake_api.polls_until_done = 1
    (run,) = client.submit(sample_files[:1]).batches
    body = {**_result(fake_api.batches[run.batch_id].files[0]), "declared_sha256": "ab" * 32}
    # When results are read, Then the declared hash is there, and absent it reads as None
    assert FileResult.from_json(body).declared_sha256 == "ab" * 32
    assert run.results[0].declared_sha256 is None
