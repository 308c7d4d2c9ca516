"""The SDK's protocol, written once: the requests it makes, how it retries, how it reads answers.

Every operation is a generator (an `Op`) that yields *effects* and receives their outcomes:

- a `Request` to send, answered with a `Response` (or a `TransportError` thrown in);
- `Sleep` (a pause between retries and polls);
- `Blocking` (local work such as hashing a file, run where it does not stall an event loop);
- `Gather` (several operations at once, at most `limit` in flight) and `Spawn`/`Join` (an
  operation started now and awaited later: how `submit` pipelines its batches).

No I/O happens here. `FilebatchClient` runs operations with requests and threads, and
`AsyncFilebatchClient` with httpx and asyncio (`_drivers`): the logic (what is retried, how
pages are followed, how a multipart upload is resumed, how a batch is followed) exists once,
and each driver only says how to send bytes and how to wait.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypedDict, TypeVar
from urllib.parse import quote, urlsplit

from filebatch_sdk._retry import NOT_APPLIED_STATUSES, RETRYABLE_STATUSES, Backoff, parse_retry_after
from filebatch_sdk._version import __version__
from filebatch_sdk.errors import (
    BatchTimeoutError,
    DownloadError,
    FilebatchApiError,
    FilebatchConnectionError,
    UploadFailure,
    api_error,
)
from filebatch_sdk.models import (
    BatchesPage,
    BatchRetry,
    BatchStatus,
    CreatedBatch,
    CreatedFile,
    DeletedBatch,
    DescriptionOptions,
    ExportInfo,
    FileResult,
    FileSpec,
    HeldPart,
    MultipartInstruction,
    PartsPage,
    ResultsPage,
    UploadPart,
    UploadProgress,
    WebhookSecret,
)

T = TypeVar("T")
# PUT: presigned PUTs (scripts); POST: browser-style presigned form uploads.
UploadMethod = Literal["PUT", "POST"]

USER_AGENT = f"filebatch-sdk-python/{__version__}"
# What a body reads from its file at a time (a file or a part is never held in memory whole).
UPLOAD_BLOCK = 1 << 16
DOWNLOAD_CHUNK = 1 << 16
# Parts per POST .../parts (the API's bound).
SIGNED_PARTS_PER_REQUEST = 100
# What the API accepts in an Idempotency-Key header: 1 to 255 printable ASCII characters.
IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,255}")
_S3_ERROR_CODE = re.compile(r"<Code>([^<]{1,100})</Code>")

# ---- effects --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileBody:
    """Bytes [start, start + length) of a file, read a block at a time when sent. `on_bytes` is
    told how many bytes each block carried (upload progress); a retry reopens the file."""

    path: Path
    start: int
    length: int
    on_bytes: Callable[[int], None] | None = None


@dataclass(frozen=True, slots=True)
class FormBody:
    """A browser-style multipart/form-data POST: `fields` in order, then the file (streamed)."""

    fields: Mapping[str, str]
    path: Path
    filename: str
    content_type: str
    on_bytes: Callable[[int], None] | None = None


Body = bytes | FileBody | FormBody


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request. A header whose value is None is removed (e.g. a session's default
    Authorization, which must never reach a presigned URL)."""

    method: str
    url: str
    headers: Mapping[str, str | None] = field(default_factory=dict)
    params: Mapping[str, str | int] | None = None
    json: Any = None
    body: Body | None = None
    # Stream a successful answer's body into this file instead of holding it (downloads).
    download_to: Path | None = None


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    # Lower-case names.
    headers: Mapping[str, str]
    content: bytes = b""
    reason: str = ""

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class TransportError(Exception):
    """The exchange broke before an answer arrived. `sent` is False only when the request cannot
    have reached the server (the connection was never made): then even a request that is not
    idempotent may be sent again."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Blocking(Generic[T]):
    """Local work that blocks (reading and hashing files): run in a worker thread under asyncio."""

    function: Callable[[], T]


@dataclass(frozen=True, slots=True)
class Gather:
    """Run `ops` concurrently, at most `limit` at a time; the outcome is their results in order.
    If any raised, the first exception is raised once all have ended."""

    ops: Sequence[Op[Any]]
    limit: int


@dataclass(frozen=True, slots=True)
class Spawn:
    """Start `op` now; the outcome is a handle to `Join` later."""

    op: Op[Any]


@dataclass(frozen=True, slots=True)
class Join:
    handle: Any


@dataclass(frozen=True, slots=True)
class Now:
    """The driver's monotonic clock (deadlines of polls)."""


Effect = Request | Sleep | Blocking[Any] | Gather | Spawn | Join | Now
Op = Generator[Effect, Any, T]


@dataclass(frozen=True, slots=True)
class Step:
    """Where an operation is: its next effect, or (`done`) its result."""

    done: bool
    value: Any


def advance(op: Op[Any], value: Any, error: BaseException | None) -> Step:
    """Send the last effect's outcome into `op` (or throw the error its handling raised): the
    operation's next effect, or its result. What the operation raises goes to the caller."""
    try:
        effect = op.throw(error) if error is not None else op.send(value)
    except StopIteration as stop:
        return Step(True, stop.value)
    return Step(False, effect)


def blocking(function: Callable[[], T]) -> Op[T]:
    """`function()` as an operation (typed helper for `yield from`)."""
    result: T = yield Blocking(function)
    return result


def gather(ops: Sequence[Op[T]], limit: int) -> Op[list[T]]:
    results: list[T] = yield Gather(ops, max(1, limit))
    return results


def now() -> Op[float]:
    value: float = yield Now()
    return value


# ---- the API --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int
    backoff: Backoff


class Protocol:
    """Requests to one filebatch API (one base URL, one key) with the SDK's retry rules.

    Reads are retried with backoff and jitter on transport errors, 429 (honouring Retry-After)
    and 5xx. A request that is not idempotent is retried only when it cannot have taken effect:
    the connection was never made, or the answer was 429 (throttled before reaching the function)
    or 503 (the function gave up before committing). A lost answer (a read timeout, a reset, 502,
    504) could hide a change, so it is raised. A keyed request (Idempotency-Key) is retried like a
    read, and also on 409 request_in_progress, the answer while an earlier attempt with the same
    key is still being handled: once that one finishes, the server replays its answer.
    """

    def __init__(self, api_url: str, api_key: str, policy: RetryPolicy) -> None:
        self.api_url = api_url.rstrip("/")
        self._api_key = api_key
        self.policy = policy

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json_body: Any = None,
        idempotent: bool = True,
        idempotency_key: str | None = None,
    ) -> Op[Any]:
        """One API call: JSON in, JSON out; an error body is raised as `FilebatchApiError`."""
        headers: dict[str, str | None] = {
            "Authorization": f"Bearer {self._api_key}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        request = Request(method, self.api_url + path, headers, params=params, json=json_body)
        keyed = idempotency_key is not None
        response = yield from self.send(
            request, f"{method} {path}", idempotent=idempotent or keyed, keyed=keyed
        )
        if response.status >= 400:
            raise error_of(response)
        try:
            return response.json()
        except ValueError:
            raise FilebatchApiError(
                response.status,
                "invalid_response",
                f"expected a JSON body from {method} {path}, got {response.text[:200]!r}",
                request_id=request_id(response),
            ) from None

    def send(
        self, request: Request, what: str, *, idempotent: bool = True, keyed: bool = False
    ) -> Op[Response]:
        """Send `request` until it gets an answer that is not retryable or the retries run out.

        The last answer is returned even when its status is retryable: the caller turns it into
        an error with the server's own message. Transport errors that may not be retried raise
        `FilebatchConnectionError`.
        """
        retryable_statuses = RETRYABLE_STATUSES if idempotent else NOT_APPLIED_STATUSES
        attempt = 0
        while True:
            try:
                response: Response = yield request
            except TransportError as error:
                if (error.sent and not idempotent) or attempt >= self.policy.max_retries:
                    raise FilebatchConnectionError(
                        f"{what} failed after {attempt + 1} attempt(s): {error}"
                    ) from error
                delay = self.policy.backoff.delay(attempt)
            else:
                retry = response.status in retryable_statuses or (keyed and is_request_in_progress(response))
                if not retry or attempt >= self.policy.max_retries:
                    return response
                retry_after = parse_retry_after(response.header("Retry-After"))
                if retry_after is not None and retry_after > self.policy.backoff.max_retry_after:
                    # A plan's monthly quota: retrying within this call cannot pass, so say so now.
                    return response
                delay = self.policy.backoff.delay(attempt, retry_after)
            yield Sleep(delay)
            attempt += 1

    def pages(
        self, path: str, params: Mapping[str, str | int], *, cursor: str | None = None
    ) -> Op[list[dict[str, Any]]]:
        """Every item of a paged route, following `next_cursor` (used where all items are needed)."""
        items: list[dict[str, Any]] = []
        while True:
            query = dict(params) | ({"cursor": cursor} if cursor else {})
            page = yield from self.call("GET", path, params=query)
            items += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    # ---- routes ---------------------------------------------------------------------------

    def create_batch(
        self,
        files: Sequence[FileSpec | str | os.PathLike[str]],
        options: Mapping[str, Any],
        idempotency_key: str,
    ) -> Op[CreatedBatch]:
        """POST /v1/batches with every upload instruction (larger batches page on through
        GET .../uploads). The key makes every attempt the same request, so it is retried like a read.
        Paths are declared by `FileSpec.from_path` (which reads each file to hash it)."""
        if not files:
            raise ValueError("a batch needs at least one file")
        specs = yield from blocking(
            lambda: [item if isinstance(item, FileSpec) else FileSpec.from_path(item) for item in files]
        )
        if not specs:
            raise ValueError("a batch needs at least one file")
        if not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            raise ValueError("idempotency_key must be 1 to 255 printable ASCII characters")
        request = {"files": [spec.to_json() for spec in specs], **options}
        body = yield from self.call("POST", "/v1/batches", json_body=request, idempotency_key=idempotency_key)
        instructions: list[dict[str, Any]] = list(body["files"])
        if body.get("next_uploads_cursor"):
            instructions += yield from self.upload_pages(body["batch_id"], cursor=body["next_uploads_cursor"])
        return CreatedBatch.from_json({**body, "files": instructions})

    def upload_pages(self, batch_id: str, *, cursor: str | None = None) -> Op[list[dict[str, Any]]]:
        return self.pages(f"/v1/batches/{segment(batch_id)}/uploads", {"limit": 1000}, cursor=cursor)

    def get_batch(self, batch_id: str) -> Op[BatchStatus]:
        return BatchStatus.from_json((yield from self.call("GET", f"/v1/batches/{segment(batch_id)}")))

    def list_batches_page(
        self, *, status: str | None, name: str | None, limit: int, cursor: str | None
    ) -> Op[BatchesPage]:
        params = _query(limit=limit, status=status, name=name, cursor=cursor)
        return BatchesPage.from_json((yield from self.call("GET", "/v1/batches", params=params)))

    def close_batch(self, batch_id: str) -> Op[BatchStatus]:
        # A second close answers 409, so a close whose answer was lost is not sent again.
        body = yield from self.call("POST", f"/v1/batches/{segment(batch_id)}/close", idempotent=False)
        return BatchStatus.from_json(body)

    def cancel_batch(self, batch_id: str) -> Op[BatchStatus]:
        # Repeating a cancel answers the same, so it is retried like a read.
        return BatchStatus.from_json(
            (yield from self.call("POST", f"/v1/batches/{segment(batch_id)}/cancel"))
        )

    def retry_batch(self, batch_id: str, file_ids: Sequence[str] | None) -> Op[BatchRetry]:
        body: dict[str, Any] = {} if file_ids is None else {"file_ids": list(file_ids)}
        # Not idempotent (a second retry is another run): sent again only when it cannot have
        # reached the service.
        answer = yield from self.call(
            "POST", f"/v1/batches/{segment(batch_id)}/retry", json_body=body, idempotent=False
        )
        return BatchRetry.from_json(answer)

    def delete_batch(self, batch_id: str) -> Op[DeletedBatch]:
        # After a delete the batch is gone (404), so a delete whose answer was lost is not repeated.
        body = yield from self.call("DELETE", f"/v1/batches/{segment(batch_id)}", idempotent=False)
        return DeletedBatch.from_json(body)

    def list_results(
        self, batch_id: str, *, limit: int, cursor: str | None, status: str | None
    ) -> Op[ResultsPage]:
        params = _query(limit=limit, status=status, cursor=cursor)
        body = yield from self.call("GET", f"/v1/batches/{segment(batch_id)}/results", params=params)
        return ResultsPage.from_json(body)

    def all_results(
        self, batch_id: str, *, page_size: int, status: str | None = None
    ) -> Op[list[FileResult]]:
        results: list[FileResult] = []
        cursor: str | None = None
        while True:
            page = yield from self.list_results(batch_id, limit=page_size, cursor=cursor, status=status)
            results += page.items
            if not page.next_cursor:
                return results
            cursor = page.next_cursor

    def export_results(self, batch_id: str) -> Op[ExportInfo]:
        return ExportInfo.from_json((yield from self.call("GET", f"/v1/batches/{segment(batch_id)}/export")))

    def download_export(self, batch_id: str, path: Path) -> Op[ExportInfo]:
        info = yield from self.export_results(batch_id)
        response = yield from self.download(info.url, path)
        if response.status >= 300:
            raise DownloadError(urlsplit(info.url).path, storage_reason(response), response.status)
        return info

    def rotate_webhook_secret(self) -> Op[WebhookSecret]:
        # Not repeated when its answer may have been lost: a second rotation would retire the
        # previous secret in favour of one nobody saw.
        return WebhookSecret.from_json(
            (yield from self.call("POST", "/v1/webhooks/secret", idempotent=False))
        )

    def abort_upload(self, batch_id: str, file_id: str) -> Op[Any]:
        path = f"/v1/batches/{segment(batch_id)}/files/{segment(file_id)}/abort"
        return self.call("POST", path, idempotent=False)

    # ---- following a batch ----------------------------------------------------------------

    def wait(
        self,
        batch_id: str,
        *,
        timeout: float,
        poll_interval: float,
        on_status: Callable[[BatchStatus], None] | None = None,
    ) -> Op[BatchStatus]:
        """Poll the batch until it is terminal; `BatchTimeoutError` after `timeout` seconds."""
        deadline = (yield from now()) + timeout
        while True:
            status = yield from self.get_batch(batch_id)
            if on_status is not None:
                on_status(status)
            if status.is_terminal:
                return status
            remaining = deadline - (yield from now())
            if remaining <= 0:
                raise BatchTimeoutError(batch_id, status, timeout)
            yield Sleep(min(poll_interval, remaining))

    # ---- uploads --------------------------------------------------------------------------

    def upload_batch(
        self,
        created_batch: CreatedBatch,
        paths: Sequence[Path],
        *,
        concurrency: int,
        part_concurrency: int,
        on_progress: Callable[[UploadProgress], None] | None = None,
        skip_file_ids: Set[str] = frozenset(),
        on_file_uploaded: Callable[[CreatedFile], None] | None = None,
    ) -> Op[list[UploadFailure]]:
        """Upload every file of the batch that has an upload instruction, `concurrency` files at a
        time; the files that still failed after retries, in file order.

        `paths[i]` is the file declared i-th. `skip_file_ids` are files known to be uploaded
        already (a resumed run). `on_progress` gets the bytes sent, per file and overall, while
        files upload; `on_file_uploaded` each file once it is stored.
        """
        if len(paths) != len(created_batch.files):
            raise ValueError(f"{len(created_batch.files)} files were declared but {len(paths)} paths given")
        sizes = yield from blocking(lambda: [path.stat().st_size for path in paths])
        for created, path, size in zip(created_batch.files, paths, sizes, strict=True):
            # The URL is only good for the declared size; catching a changed file here names it,
            # where the upload itself would fail with an opaque signature or size error.
            if size != created.size:
                raise ValueError(f"{path}: size is {size} bytes, but {created.size} were declared")
        # A file skipped as a duplicate has no upload instruction: nothing to send.
        to_send = [
            (created, path)
            for created, path in zip(created_batch.files, paths, strict=True)
            if created.upload is not None and created.file_id not in skip_file_ids
        ]
        tracker = UploadTracker(created_batch.batch_id, [created for created, _ in to_send], on_progress)

        def one(created: CreatedFile, path: Path) -> Op[UploadFailure | None]:
            failure = yield from self.upload_file(
                created_batch.batch_id,
                created,
                path,
                part_concurrency=part_concurrency,
                on_bytes=tracker.on_bytes(created.file_id),
            )
            tracker.finished(created.file_id, ok=failure is None)
            if failure is None and on_file_uploaded is not None:
                on_file_uploaded(created)
            return failure

        outcomes = yield from gather([one(created, path) for created, path in to_send], concurrency)
        return [failure for failure in outcomes if failure is not None]

    def upload_file(
        self,
        batch_id: str,
        created: CreatedFile,
        path: Path,
        *,
        part_concurrency: int,
        on_bytes: Callable[[int], None] | None = None,
    ) -> Op[UploadFailure | None]:
        """Upload one file (with retries); a failure is returned, not raised, to report them all."""
        instruction = created.upload
        assert instruction is not None, "a skipped file has nothing to upload"

        def failure(reason: str, status: int | None = None, retryable: bool = False) -> UploadFailure:
            return UploadFailure(created.file_id, created.filename, reason, status, retryable)

        try:
            if isinstance(instruction, MultipartInstruction):
                return (
                    yield from self._upload_in_parts(
                        batch_id, created, path, instruction, part_concurrency, on_bytes
                    )
                )
            # Exactly the headers the API returned: they are part of the signature. Authorization
            # None drops any default a caller's session carries: S3 rejects a presigned request
            # that also carries another credential (and the key must not leak there).
            headers: dict[str, str | None] = {**instruction.headers, "Authorization": None}
            body: Body
            if instruction.method == "POST":
                # A browser-style POST: the signed fields in order, then the file, streamed as
                # multipart/form-data with its Content-Length (S3 refuses chunked POSTs).
                body = FormBody(instruction.fields, path, created.filename, created.content_type, on_bytes)
            else:
                body = FileBody(path, 0, created.size, on_bytes)
            request = Request(instruction.method, instruction.url, headers, body=body)
            response = yield from self.send(request, f"upload of {created.filename}")
        except FilebatchApiError as error:
            return failure(f"{error.code}: {error.message}", error.status, error.retryable)
        except FilebatchConnectionError as error:
            return failure(str(error), retryable=True)
        except OSError as error:
            return failure(f"{type(error).__name__}: {error}")
        if response.status < 300:
            return None
        return failure(storage_reason(response), response.status, response.status in RETRYABLE_STATUSES)

    def list_parts(self, batch_id: str, file_id: str, *, cursor: str | None = None) -> Op[PartsPage]:
        path = f"/v1/batches/{segment(batch_id)}/files/{segment(file_id)}/parts"
        return PartsPage.from_json((yield from self.call("GET", path, params=_query(cursor=cursor))))

    def sign_parts(self, batch_id: str, file_id: str, digests: Mapping[int, str]) -> Op[list[UploadPart]]:
        path = f"/v1/batches/{segment(batch_id)}/files/{segment(file_id)}/parts"
        body = {"parts": [{"part_number": n, "sha256": digest} for n, digest in sorted(digests.items())]}
        signed = yield from self.call("POST", path, json_body=body)
        return [UploadPart.from_json(p) for p in signed["parts"]]

    def complete_upload(self, batch_id: str, file_id: str, parts: Sequence[HeldPart]) -> Op[Any]:
        path = f"/v1/batches/{segment(batch_id)}/files/{segment(file_id)}/complete"
        listed = [
            {"part_number": p.part_number, "etag": p.etag}
            | ({"checksum_sha256": p.checksum_sha256} if p.checksum_sha256 else {})
            for p in sorted(parts, key=lambda p: p.part_number)
        ]
        return self.call("POST", path, json_body={"parts": listed})

    def _upload_in_parts(
        self,
        batch_id: str,
        created: CreatedFile,
        path: Path,
        instruction: MultipartInstruction,
        concurrency: int,
        on_bytes: Callable[[int], None] | None,
    ) -> Op[UploadFailure | None]:
        # A page of the parts route at a time (100 parts): which parts the storage holds (a resumed
        # upload skips them) and fresh URLs for the others, sent before the next page is asked for,
        # so that URLs are used minutes after they were signed however large the file.
        done: list[HeldPart] = []
        cursor: str | None = None
        part_size = instruction.part_size
        while True:
            page = yield from self.list_parts(batch_id, created.file_id, cursor=cursor)
            done += page.uploaded
            if on_bytes is not None and page.uploaded:
                on_bytes(sum(p.size for p in page.uploaded))
            outcomes = yield from gather(
                [self._send_part(part, path, page.part_size, created.size, on_bytes) for part in page.parts],
                concurrency,
            )
            if (refused := _first_refusal(created, outcomes, done)) is not None:
                return refused
            if not page.next_cursor:
                break
            cursor = page.next_cursor
        if instruction.part_checksum is not None:
            # Parts with checksums: the pages above said which parts the storage holds (no URL:
            # each URL signs its part's digest). The others go `concurrency` at a time: each is
            # read twice, a block at a time, once to hash it (the digest is signed into its URL)
            # and once to send it, so memory stays at a few blocks however large the parts (the
            # second read mostly comes from the OS's page cache).
            held = {p.part_number for p in done}
            missing = [n for n in range(1, instruction.part_count + 1) if n not in held]
            step = max(1, min(concurrency, SIGNED_PARTS_PER_REQUEST))
            for start in range(0, len(missing), step):
                numbers = missing[start : start + step]
                hashed = yield from gather(
                    [blocking(_part_digest(path, n, part_size, created.size)) for n in numbers], concurrency
                )
                digests = dict(zip(numbers, hashed, strict=True))
                urls = yield from self.sign_parts(batch_id, created.file_id, digests)
                outcomes = yield from gather(
                    [
                        self._send_part(
                            part, path, part_size, created.size, on_bytes, checksum=digests[part.part_number]
                        )
                        for part in urls
                    ],
                    concurrency,
                )
                if (refused := _first_refusal(created, outcomes, done)) is not None:
                    return refused
        yield from self.complete_upload(batch_id, created.file_id, done)
        return None

    def _send_part(
        self,
        part: UploadPart,
        path: Path,
        part_size: int,
        size: int,
        on_bytes: Callable[[int], None] | None,
        *,
        checksum: str | None = None,
    ) -> Op[HeldPart | tuple[str, int | None, bool]]:
        """PUT one part, streamed from its byte range of the file, with retries (`checksum`: its
        SHA-256 in base64, signed into its URL): the part with the ETag the storage answered, or
        (reason, status, retryable)."""
        start = (part.part_number - 1) * part_size
        length = min(part_size, size - start)
        headers: dict[str, str | None] = {**part.headers, "Authorization": None}
        try:
            response = yield from self.send(
                Request("PUT", part.url, headers, body=FileBody(path, start, length, on_bytes)),
                f"upload of part {part.part_number} of {path.name}",
            )
        except FilebatchConnectionError as error:
            return str(error), None, True
        except OSError as error:
            return f"{type(error).__name__}: {error}", None, False
        if response.status >= 300:
            return storage_reason(response), response.status, response.status in RETRYABLE_STATUSES
        return HeldPart(part.part_number, (response.header("ETag") or "").strip('"'), length, checksum)

    def download(self, url: str, path: Path) -> Op[Response]:
        """GET a presigned URL into `path` (the driver streams it), retried from the first byte."""
        # No Authorization: the URL's signature is the credential (and the key must not leak).
        request = Request("GET", url, {"Authorization": None}, download_to=path)
        return self.send(request, f"download of {url.split('?', 1)[0]}")


class UploadTracker:
    """Bytes sent per file and overall, told to `report` as `UploadProgress` while files upload.

    Bodies report the bytes they read from worker threads (hence the lock). A retried request
    reads its bytes again: a file's count stops at its size, so progress never passes 100 %.
    """

    def __init__(
        self, batch_id: str, files: Sequence[CreatedFile], report: Callable[[UploadProgress], None] | None
    ) -> None:
        self._batch_id = batch_id
        self._sizes = {created.file_id: created.size for created in files}
        self._names = {created.file_id: created.filename for created in files}
        self._sent = dict.fromkeys(self._sizes, 0)
        self._total = sum(self._sizes.values())
        self._bytes_done = 0
        self._files_done = 0
        self._report = report
        self._lock = threading.Lock()

    def on_bytes(self, file_id: str) -> Callable[[int], None] | None:
        if self._report is None:
            return None
        return lambda count: self._add(file_id, count)

    def _add(self, file_id: str, count: int) -> None:
        with self._lock:
            before = self._sent[file_id]
            after = min(before + count, self._sizes[file_id])
            if after == before:
                return
            self._sent[file_id] = after
            self._bytes_done += after - before
            # Reported under the lock, so reports arrive in the order they were counted (the
            # reporter only queues them).
            assert self._report is not None
            self._report(self._progress(file_id))

    def finished(self, file_id: str, *, ok: bool) -> None:
        if self._report is None:
            return
        with self._lock:
            if ok:
                self._files_done += 1
                self._bytes_done += self._sizes[file_id] - self._sent[file_id]
                self._sent[file_id] = self._sizes[file_id]
            self._report(self._progress(file_id))

    def _progress(self, file_id: str) -> UploadProgress:
        return UploadProgress(
            batch_id=self._batch_id,
            file_id=file_id,
            filename=self._names[file_id],
            files_done=self._files_done,
            files_total=len(self._sizes),
            bytes_done=self._bytes_done,
            bytes_total=self._total,
            file_bytes_done=self._sent[file_id],
            file_bytes_total=self._sizes[file_id],
        )


def _first_refusal(
    created: CreatedFile, outcomes: Sequence[HeldPart | tuple[str, int | None, bool]], done: list[HeldPart]
) -> UploadFailure | None:
    """Record the parts that arrived; the first refused part is the file's failure (the parts that
    arrived stay held for a resume)."""
    refusal: UploadFailure | None = None
    for outcome in outcomes:
        if isinstance(outcome, HeldPart):
            done.append(outcome)
        elif refusal is None:
            refusal = UploadFailure(created.file_id, created.filename, *outcome)
    return refusal


def _part_digest(path: Path, part_number: int, part_size: int, size: int) -> Callable[[], str]:
    """The SHA-256 (base64, as S3's checksum headers carry it) of part `part_number` of the file."""

    def digest() -> str:
        hasher = hashlib.sha256()
        start = (part_number - 1) * part_size
        for block in iter_file_range(FileBody(path, start, min(part_size, size - start))):
            hasher.update(block)
        return base64.b64encode(hasher.digest()).decode("ascii")

    return digest


def iter_file_range(body: FileBody) -> Iterator[bytes]:
    """The body's bytes, a block at a time, telling `on_bytes` as they go."""
    with body.path.open("rb") as file:
        file.seek(body.start)
        left = body.length
        while left > 0:
            block = file.read(min(UPLOAD_BLOCK, left))
            if not block:
                raise OSError(f"{body.path} is shorter than declared ({body.length - left} bytes read)")
            left -= len(block)
            if body.on_bytes is not None:
                body.on_bytes(len(block))
            yield block


class Pager:
    """Where a paged listing is: the cursor to send next, how many items are still wanted (None:
    all), and whether it is done. Both clients follow pages with it, lazily."""

    def __init__(self, *, limit: int | None, page_size: int) -> None:
        if limit is not None and limit < 1:
            raise ValueError("limit must be >= 1 (or None for every batch)")
        self.cursor: str | None = None
        self.done = False
        self._remaining = limit
        self._page_size = page_size

    @property
    def size(self) -> int:
        """How many items to ask for next."""
        return self._page_size if self._remaining is None else min(self._page_size, self._remaining)

    def take(self, items: Sequence[T], next_cursor: str | None) -> Sequence[T]:
        """The items of a page to hand out; moves on to the next page."""
        if self._remaining is not None:
            items = items[: self._remaining]
            self._remaining -= len(items)
        self.cursor = next_cursor
        self.done = not next_cursor or self._remaining == 0
        return items


class CreateArguments(TypedDict, total=False):
    """A batch's options, as keyword arguments of `create_batch` and `submit` (all optional).

    description: how files are described (provider, model, instructions).
    name: unique among the API key's batches (409 `NameTakenError` otherwise).
    metadata: up to 16 string pairs stored with the batch.
    webhook_url: https URL called when the batch ends.
    upload_method: "PUT" (presigned PUTs, the default) or "POST" (browser-style form uploads).
    skip_duplicates: files whose SHA-256 this API key already had described are not uploaded
        (their results are `skipped`, with the earlier result); default False for `create_batch`,
        True for `submit`.
    """

    description: DescriptionOptions | None
    name: str | None
    metadata: Mapping[str, str] | None
    webhook_url: str | None
    upload_method: UploadMethod
    skip_duplicates: bool


class CreateBatchArguments(CreateArguments, total=False):
    """`create_batch`'s keyword arguments: a batch's options and

    idempotency_key: 1-255 printable ASCII characters; every create with the same key (and body)
        is answered with the batch the first one created. A fresh one per call when not given.
    """

    idempotency_key: str | None


def create_options(arguments: CreateArguments, *, skip_duplicates: bool = False) -> dict[str, Any]:
    """The create request's fields besides `files` (only those given); `skip_duplicates` is the
    default of the caller (`create_batch`: False, `submit`: True)."""
    upload_method = arguments.get("upload_method", "PUT")
    if upload_method not in ("PUT", "POST"):
        raise ValueError('upload_method must be "PUT" or "POST"')
    options: dict[str, Any] = {}
    description = arguments.get("description")
    if description:
        options["description"] = description.to_json()
    for key in ("name", "webhook_url"):
        if arguments.get(key) is not None:
            options[key] = arguments.get(key)
    metadata = arguments.get("metadata")
    if metadata is not None:
        options["metadata"] = dict(metadata)
    if upload_method != "PUT":
        options["upload_method"] = upload_method
    if arguments.get("skip_duplicates", skip_duplicates):
        options["skip_duplicates"] = True
    return options


def _query(**values: str | int | None) -> dict[str, str | int]:
    """Query parameters, leaving out those not given."""
    return {name: value for name, value in values.items() if value is not None and value != ""}


def segment(value: str) -> str:
    # Ids go into the path: quoting keeps "../" or "?" in a mistyped id from changing the route.
    return quote(value, safe="")


def is_request_in_progress(response: Response) -> bool:
    if response.status != 409:
        return False
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return False
    return isinstance(error, dict) and error.get("code") == "request_in_progress"


def storage_reason(response: Response) -> str:
    # S3 explains refusals in XML (<Code>SignatureDoesNotMatch</Code>, AccessDenied when the URL
    # expired): the code is what a person needs to see.
    match = _S3_ERROR_CODE.search(response.text)
    return f"HTTP {response.status}" + (f" {match.group(1)}" if match else "")


def request_id(response: Response) -> str | None:
    return response.header("x-amzn-RequestId") or response.header("x-amz-request-id")


def error_of(response: Response) -> FilebatchApiError:
    """The error body as an exception (of its code's class, see `errors.API_ERRORS`); bodies from
    proxies or load balancers get a generic code."""
    status = response.status
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and error.get("code"):
        details = error.get("details")
        return api_error(
            status,
            str(error["code"]),
            str(error.get("message", "")),
            details if isinstance(details, list) else None,
            request_id=request_id(response),
        )
    text = (response.text or response.reason).strip()
    return api_error(status, f"http_{status}", text[:500], request_id=request_id(response))
