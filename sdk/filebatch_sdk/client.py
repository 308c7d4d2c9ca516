"""`FilebatchClient`: create a batch, upload its files, follow it, read its results.

The one-call way::

    from filebatch_sdk import FilebatchClient

    client = FilebatchClient("https://abc.execute-api.eu-west-1.amazonaws.com/prod", "my-api-key")
    run = client.submit(["cat.jpg", "report.pdf"])
    print(run.summary())                      # {"completed": 2}
    for result in run.results:
        print(result.filename, result.description.text if result.description else result.error)

Step by step (e.g. to upload from one process and collect results in another)::

    created = client.create_batch(paths)
    client.upload(created, paths, on_progress=lambda p: print(f"{p.percentage}%"))
    status = client.wait(created.batch_id, on_progress=lambda s: print(s.progress_percentage))
    for result in client.iter_results(created.batch_id):
        ...

Following batches, and what can be done to them::

    for batch in client.list_batches(status="processing", limit=50):
        print(batch.batch_id, batch.name, batch.progress_percentage)
    client.cancel_batch(batch_id)             # then client.wait(batch_id) until it is cancelled
    client.retry_batch(batch_id)              # run the failed files again
    client.download_export(batch_id, "results.jsonl")
    for result in iter_export_file("results.jsonl"):
        ...

Reads are retried with exponential backoff and jitter on connection errors, timeouts, 429
(honouring Retry-After) and 5xx. So is creating a batch: every create carries an Idempotency-Key,
the same on each attempt, so the server creates the batch once however many attempts reach it.
Other requests that change something are retried only when they cannot have taken effect (no
connection, 429, 503). Other 4xx raise `FilebatchApiError` (a subclass per code, see
`filebatch_sdk.errors.API_ERRORS`) at once.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter

from filebatch_sdk._multipart import MultipartFormFile
from filebatch_sdk._retry import NOT_APPLIED_STATUSES, RETRYABLE_STATUSES, Backoff, parse_retry_after
from filebatch_sdk._version import __version__
from filebatch_sdk.errors import (
    BatchTimeoutError,
    DownloadError,
    FilebatchApiError,
    FilebatchConnectionError,
    UploadError,
    UploadFailure,
    api_error,
)
from filebatch_sdk.models import (
    BatchesPage,
    BatchRetry,
    BatchRun,
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

logger = logging.getLogger("filebatch_sdk")

PathLike = str | os.PathLike[str]
FileInput = FileSpec | str | os.PathLike[str]
UploadProgressCallback = Callable[[UploadProgress], None]
StatusCallback = Callable[[BatchStatus], None]
# PUT: presigned PUTs (scripts); POST: browser-style presigned form uploads.
UploadMethod = Literal["PUT", "POST"]

USER_AGENT = f"filebatch-sdk-python/{__version__}"
# Big enough for the default upload concurrency plus the caller's API calls, so urllib3 reuses
# connections instead of warning "connection pool is full" and opening new ones.
_POOL_SIZE = 32
_S3_ERROR_CODE = re.compile(r"<Code>([^<]{1,100})</Code>")
# What the API accepts in an Idempotency-Key header: 1 to 255 printable ASCII characters.
_IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,255}")
_DOWNLOAD_CHUNK = 1 << 16
# What a part upload reads from its file at a time (a part is never held in memory whole).
_UPLOAD_BLOCK = 1 << 16
# Parts per POST .../parts (the API's bound).
_SIGNED_PARTS_PER_REQUEST = 100


class FilebatchClient:
    """A client of one filebatch API (one base URL, one API key). Safe to share between threads.

    Args:
        api_url: the API's base URL, e.g. the stack output ApiUrl or http://127.0.0.1:3000 for the
            local stack; "/v1/..." is appended to it.
        api_key: sent as `Authorization: Bearer <api_key>` to the API, never to upload URLs.
        timeout: seconds to wait for the server to connect and to answer each read.
        max_retries: retries after the first attempt of each request (0 disables retrying).
        session: a `requests.Session` to send through (proxies, certificates, adapters). The
            client closes only a session it created itself.
        backoff_base, backoff_cap: the first retry waits about `backoff_base` seconds, doubling up
            to `backoff_cap`; a Retry-After header overrides both.
        sleep: how to wait between retries and polls (tests pass a fake to run instantly).
    """

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        timeout: float = 30,
        max_retries: int = 5,
        session: requests.Session | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not api_url:
            raise ValueError("api_url is required")
        if not api_key:
            raise ValueError("api_key is required")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.api_url = api_url.rstrip("/")
        self._api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self._owns_session = session is None
        self._session = session if session is not None else _new_session()
        self._backoff = Backoff(base=backoff_base, cap=backoff_cap)
        self._sleep = sleep

    def __repr__(self) -> str:
        # Never show the key: clients end up in logs and tracebacks.
        return f"FilebatchClient(api_url={self.api_url!r})"

    def close(self) -> None:
        """Release pooled connections (only if this client created its session)."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ---- the API ------------------------------------------------------------------------------

    def create_batch(
        self,
        files: Sequence[FileInput],
        *,
        description: DescriptionOptions | None = None,
        name: str | None = None,
        metadata: Mapping[str, str] | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        upload_method: UploadMethod = "PUT",
        skip_duplicates: bool = False,
    ) -> CreatedBatch:
        """Declare a batch of files; returns its id and one upload instruction per file.

        Paths are declared with their name, size on disk, a content type guessed from the
        extension (see `guess_content_type`) and their SHA-256 (S3 then refuses bytes that differ;
        see `FileSpec.from_path`); pass a `FileSpec` to choose these yourself.

        `upload_method` "POST" asks for browser-style form uploads (presigned POST: fields, then
        the file) instead of presigned PUTs; `upload` follows whichever the instructions are.

        `name` (unique among the API key's batches; 409 `NameTakenError` otherwise), `metadata`
        (up to 16 string pairs) and `webhook_url` (https; called when the batch ends) are stored
        with the batch. `idempotency_key` (1-255 printable ASCII characters) makes the create
        safe to repeat: the server answers every request with the same key, and the same body,
        with the batch the first one created. A fresh one is generated for each call when none
        is given; pass your own to repeat a create safely across processes.

        `skip_duplicates`: files whose declared `sha256` matches a file of yours
        already described get no upload instruction (`CreatedFile.upload` None, `duplicate_of` set);
        `upload` leaves them out and their results are `skipped` with the earlier result.
        """
        specs = [item if isinstance(item, FileSpec) else FileSpec.from_path(item) for item in files]
        if not specs:
            raise ValueError("a batch needs at least one file")
        key = idempotency_key if idempotency_key is not None else str(uuid.uuid4())
        if not _IDEMPOTENCY_KEY.fullmatch(key):
            raise ValueError("idempotency_key must be 1 to 255 printable ASCII characters")
        request: dict[str, Any] = {"files": [spec.to_json() for spec in specs]}
        if description:
            request["description"] = description.to_json()
        if name is not None:
            request["name"] = name
        if metadata is not None:
            request["metadata"] = dict(metadata)
        if webhook_url is not None:
            request["webhook_url"] = webhook_url
        if upload_method not in ("PUT", "POST"):
            raise ValueError('upload_method must be "PUT" or "POST"')
        if upload_method != "PUT":
            request["upload_method"] = upload_method
        if skip_duplicates:
            request["skip_duplicates"] = True
        # The key makes every attempt the same request, so it is retried like a read (see _send).
        body = self._call("POST", "/v1/batches", json_body=request, idempotency_key=key)
        # The answer carries the first page of upload instructions; larger batches page on.
        instructions: list[dict[str, Any]] = list(body["files"])
        if body.get("next_uploads_cursor"):
            instructions += self._upload_pages(body["batch_id"], cursor=body["next_uploads_cursor"])
        return CreatedBatch.from_json({**body, "files": instructions})

    def refresh_uploads(self, batch_id: str) -> list[CreatedFile]:
        """Fresh upload instructions for every file of the batch still awaiting upload (for URLs
        that expired before the upload, or an upload resumed later)."""
        return [CreatedFile.from_json(item) for item in self._upload_pages(batch_id)]

    def _upload_pages(self, batch_id: str, *, cursor: str | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        path = f"/v1/batches/{_segment(batch_id)}/uploads"
        while True:
            params: dict[str, str | int] = {"limit": 1000}
            if cursor:
                params["cursor"] = cursor
            page = self._call("GET", path, params=params)
            items += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    def get_batch(self, batch_id: str) -> BatchStatus:
        """The batch's status, counts and progress."""
        return BatchStatus.from_json(self._call("GET", f"/v1/batches/{_segment(batch_id)}"))

    def list_batches(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        limit: int | None = None,
        page_size: int = 100,
    ) -> Iterator[BatchStatus]:
        """The API key's batches, newest first, fetching pages lazily by following `next_cursor`.

        `status` and `name` filter on the server; `limit` stops after that many batches (None:
        all of them); `page_size` (1-100) is how many each request asks for.
        """
        if limit is not None and limit < 1:
            raise ValueError("limit must be >= 1 (or None for every batch)")
        cursor: str | None = None
        remaining = limit
        while True:
            size = page_size if remaining is None else min(page_size, remaining)
            page = self.list_batches_page(status=status, name=name, limit=size, cursor=cursor)
            items = page.items if remaining is None else page.items[:remaining]
            yield from items
            if remaining is not None:
                remaining -= len(items)
                if remaining == 0:
                    return
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def list_batches_page(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> BatchesPage:
        """One page of `GET /v1/batches` (newest first); pass `next_cursor` back for the next."""
        params: dict[str, str | int] = {"limit": limit}
        if status:
            params["status"] = status
        if name:
            params["name"] = name
        if cursor:
            params["cursor"] = cursor
        return BatchesPage.from_json(self._call("GET", "/v1/batches", params=params))

    def close_batch(self, batch_id: str) -> BatchStatus:
        """Stop waiting for uploads: the files that arrived are processed, the others end as
        `upload_expired`. Only a batch awaiting upload can be closed (409 `BatchNotOpenError`)."""
        # A second close answers 409, so a close whose answer was lost is not sent again.
        body = self._call("POST", f"/v1/batches/{_segment(batch_id)}/close", idempotent=False)
        return BatchStatus.from_json(body)

    def cancel_batch(self, batch_id: str) -> BatchStatus:
        """Cancel the batch: "cancelling" until the files being described finish, then
        "cancelled" (follow it with `wait`). Cancelling again answers the same; a batch that
        already finished otherwise raises 409 `BatchEndedError`."""
        # Repeating a cancel answers the same, so it is retried like a read.
        return BatchStatus.from_json(self._call("POST", f"/v1/batches/{_segment(batch_id)}/cancel"))

    def retry_batch(self, batch_id: str, file_ids: Sequence[str] | None = None) -> BatchRetry:
        """Run a finished batch's failed files again (or only `file_ids`); follow it with `wait`.

        409: `BatchNotEndedError` (not finished yet), `NothingToRetryError`, `RetryInProgressError`.
        """
        body: dict[str, Any] = {} if file_ids is None else {"file_ids": list(file_ids)}
        # Not idempotent (a second retry is another run): sent again only when it cannot have
        # reached the service.
        answer = self._call(
            "POST", f"/v1/batches/{_segment(batch_id)}/retry", json_body=body, idempotent=False
        )
        return BatchRetry.from_json(answer)

    def delete_batch(self, batch_id: str) -> DeletedBatch:
        """Delete a finished batch, its files and results; it answers 404 afterwards. A batch
        still running raises 409 `BatchNotEndedError`: cancel it first."""
        # After a delete the batch is gone (404), so a delete whose answer was lost is not repeated.
        body = self._call("DELETE", f"/v1/batches/{_segment(batch_id)}", idempotent=False)
        return DeletedBatch.from_json(body)

    def list_results(
        self,
        batch_id: str,
        *,
        limit: int = 100,
        cursor: str | None = None,
        status: str | None = None,
    ) -> ResultsPage:
        """One page of per-file results, in the order the files were declared; `status` keeps
        only the files in that state (a `FileState`)."""
        params: dict[str, str | int] = {"limit": limit}
        if status:
            params["status"] = status
        if cursor:
            params["cursor"] = cursor
        body = self._call("GET", f"/v1/batches/{_segment(batch_id)}/results", params=params)
        return ResultsPage.from_json(body)

    def iter_results(
        self, batch_id: str, *, page_size: int = 100, status: str | None = None
    ) -> Iterator[FileResult]:
        """Every file's result (or those in `status`), fetching pages lazily by following `next_cursor`."""
        cursor: str | None = None
        while True:
            page = self.list_results(batch_id, limit=page_size, cursor=cursor, status=status)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def results(self, batch_id: str, *, status: str | None = None) -> list[FileResult]:
        """Every file's result as a list (or only those in `status`, e.g. `FileState.FAILED`)."""
        return list(self.iter_results(batch_id, status=status))

    def export_results(self, batch_id: str) -> ExportInfo:
        """Where to download every result of a finished batch as one JSON Lines file.

        Raises 409 `ExportNotReadyError` while the batch is not finished."""
        return ExportInfo.from_json(self._call("GET", f"/v1/batches/{_segment(batch_id)}/export"))

    def download_export(self, batch_id: str, path: PathLike) -> ExportInfo:
        """Download the batch's export to `path` (JSON Lines; read it with `iter_export_file`).

        The file is streamed to a temporary file next to `path` and renamed over it once
        complete, so `path` never holds half an export. Raises `DownloadError` when storage
        refuses the URL.
        """
        info = self.export_results(batch_id)
        self._download(info.url, Path(path))
        return info

    def rotate_webhook_secret(self) -> WebhookSecret:
        """Create the API key's webhook signing secret, or replace it. The previous secret keeps
        signing webhooks alongside the new one for 24 hours, time to deploy the new one."""
        # Not repeated when its answer may have been lost: a second rotation would retire the
        # previous secret in favour of one nobody saw.
        return WebhookSecret.from_json(self._call("POST", "/v1/webhooks/secret", idempotent=False))

    def wait(
        self,
        batch_id: str,
        *,
        timeout: float = 600,
        poll_interval: float = 1.0,
        on_progress: StatusCallback | None = None,
    ) -> BatchStatus:
        """Poll the batch until it is terminal and return its final status.

        Terminal: completed, completed_with_errors, failed, cancelled, expired (a cancelling
        batch is followed until it is cancelled). A batch retried later runs again: wait again.
        `on_progress` gets every status polled, the final one included. Raises
        `BatchTimeoutError` (with the last status) after `timeout` seconds; the batch carries on.
        """
        deadline = time.monotonic() + timeout
        while True:
            status = self.get_batch(batch_id)
            if on_progress is not None:
                on_progress(status)
            if status.is_terminal:
                return status
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BatchTimeoutError(batch_id, status, timeout)
            self._sleep(min(poll_interval, remaining))

    # ---- uploads ------------------------------------------------------------------------------

    def upload(
        self,
        created_batch: CreatedBatch,
        paths: Sequence[PathLike],
        *,
        concurrency: int = 8,
        on_progress: UploadProgressCallback | None = None,
        part_concurrency: int = 4,
    ) -> None:
        """Upload each file's bytes to its presigned URL, `concurrency` files at a time.

        A file with a MULTIPART instruction (above the deployment's multipart threshold) goes up in
        parts, `part_concurrency` at a time, each streamed from its byte range of the file. It is
        resumable: the parts the storage already holds (an earlier, interrupted upload) are not
        sent again. Then the upload is completed.

        `paths[i]` is the file declared i-th in `create_batch`. `on_progress` is called in the
        calling thread after each file finished, so it needs no locking. Files that still fail
        after retries are reported together in one `UploadError` once the others are done.
        """
        local = [Path(path) for path in paths]
        if len(local) != len(created_batch.files):
            raise ValueError(f"{len(created_batch.files)} files were declared but {len(local)} paths given")
        for created, path in zip(created_batch.files, local, strict=True):
            # The URL is only good for the declared size; catching a changed file here names it,
            # where the upload itself would fail with an opaque signature or size error.
            size = path.stat().st_size
            if size != created.size:
                raise ValueError(f"{path}: size is {size} bytes, but {created.size} were declared")

        # A file skipped as a duplicate has no upload instruction: nothing to send.
        to_send = [(c, p) for c, p in zip(created_batch.files, local, strict=True) if c.upload is not None]
        bytes_total = sum(created.size for created, _ in to_send)
        files_done = bytes_done = 0
        failures: list[UploadFailure] = []
        workers = max(1, min(concurrency, len(to_send)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="filebatch-upload") as pool:
            futures = {
                pool.submit(
                    self._upload_file, created, path, batch_id=created_batch.batch_id, parts=part_concurrency
                ): created
                for created, path in to_send
            }
            for future in as_completed(futures):
                created = futures[future]
                failure = future.result()
                if failure is not None:
                    failures.append(failure)
                    continue
                files_done += 1
                bytes_done += created.size
                if on_progress is not None:
                    on_progress(
                        UploadProgress(
                            file_id=created.file_id,
                            filename=created.filename,
                            files_done=files_done,
                            files_total=len(to_send),
                            bytes_done=bytes_done,
                            bytes_total=bytes_total,
                        )
                    )
        if failures:
            raise UploadError(created_batch.batch_id, sorted(failures, key=lambda f: f.file_id))

    def _upload_file(
        self, created: CreatedFile, path: Path, *, batch_id: str, parts: int = 4
    ) -> UploadFailure | None:
        """Upload one file (with retries); a failure is returned, not raised, to report them all."""
        instruction = created.upload
        assert instruction is not None, "a skipped file has nothing to upload"
        if isinstance(instruction, MultipartInstruction):
            return self._upload_in_parts(batch_id, created, path, instruction, concurrency=parts)
        # Exactly the headers the API returned: they are part of the signature. Setting
        # Authorization to None drops any default a caller's session carries, since S3 rejects a
        # presigned request that also carries another credential (and the key must not leak there).
        headers: dict[str, Any] = {**instruction.headers, "Authorization": None}

        def send() -> requests.Response:
            # Reopened on every attempt so a retry sends the file from its first byte. An open
            # file streams as the raw body with its Content-Length: never form-encoded, never
            # fully loaded in memory.
            if instruction.method == "POST":
                return send_form()
            with path.open("rb") as body:
                return self._session.request(
                    instruction.method,
                    instruction.url,
                    data=body,
                    headers=headers,
                    timeout=self.timeout,
                )

        def send_form() -> requests.Response:
            # A browser-style POST: the signed fields in order, then the file, streamed as
            # multipart/form-data with its Content-Length (S3 refuses chunked POSTs).
            form = MultipartFormFile(
                instruction.fields, path, filename=created.filename, file_content_type=created.content_type
            )
            with form:
                return self._session.post(
                    instruction.url,
                    data=form,
                    headers={**headers, "Content-Type": form.content_type},
                    timeout=self.timeout,
                )

        def failure(reason: str, status: int | None = None, retryable: bool = False) -> UploadFailure:
            return UploadFailure(created.file_id, created.filename, reason, status, retryable)

        try:
            response = self._send(send, f"upload of {created.filename}")
        except FilebatchConnectionError as error:
            return failure(str(error), retryable=True)
        except (OSError, requests.RequestException) as error:
            return failure(f"{type(error).__name__}: {error}")
        with response:
            if response.status_code < 300:
                return None
            return failure(
                _storage_reason(response), response.status_code, response.status_code in RETRYABLE_STATUSES
            )

    # ---- multipart uploads (issue 10) ------------------------------------------------------

    def list_parts(self, batch_id: str, file_id: str, *, cursor: str | None = None) -> PartsPage:
        """One page of a multipart file's parts: those the storage holds, fresh URLs for the rest."""
        path = f"/v1/batches/{_segment(batch_id)}/files/{_segment(file_id)}/parts"
        return PartsPage.from_json(self._call("GET", path, params={"cursor": cursor} if cursor else None))

    def sign_parts(self, batch_id: str, file_id: str, digests: Mapping[int, str]) -> list[UploadPart]:
        """Presigned PUTs of the given parts of an upload with part checksums (at most 100 at a time),
        from each part's SHA-256 (hex or base64): each URL signs its part's digest."""
        path = f"/v1/batches/{_segment(batch_id)}/files/{_segment(file_id)}/parts"
        body = {"parts": [{"part_number": n, "sha256": digest} for n, digest in sorted(digests.items())]}
        signed = self._call("POST", path, json_body=body)
        return [UploadPart.from_json(p) for p in signed["parts"]]

    def complete_upload(self, batch_id: str, file_id: str, parts: Sequence[HeldPart]) -> None:
        """Complete a multipart upload from every part's number and ETag (and SHA-256, for an upload
        with part checksums). Safe to repeat: the server answers a completed upload's success again."""
        path = f"/v1/batches/{_segment(batch_id)}/files/{_segment(file_id)}/complete"
        listed = [
            {"part_number": p.part_number, "etag": p.etag}
            | ({"checksum_sha256": p.checksum_sha256} if p.checksum_sha256 else {})
            for p in sorted(parts, key=lambda p: p.part_number)
        ]
        self._call("POST", path, json_body={"parts": listed})

    def abort_upload(self, batch_id: str, file_id: str) -> None:
        """Abort a file's multipart upload: its parts are dropped, and the next upload starts afresh."""
        self._call(
            "POST", f"/v1/batches/{_segment(batch_id)}/files/{_segment(file_id)}/abort", idempotent=False
        )

    def _upload_in_parts(
        self,
        batch_id: str,
        created: CreatedFile,
        path: Path,
        instruction: MultipartInstruction,
        *,
        concurrency: int,
    ) -> UploadFailure | None:
        def failure(reason: str, status: int | None = None, retryable: bool = False) -> UploadFailure:
            return UploadFailure(created.file_id, created.filename, reason, status, retryable)

        def sent(futures: list[Future[HeldPart | tuple[str, int | None, bool]]]) -> UploadFailure | None:
            failures: list[UploadFailure] = []
            for future in as_completed(futures):
                outcome = future.result()
                if isinstance(outcome, HeldPart):
                    done.append(outcome)
                else:
                    failures.append(failure(*outcome))
            # One failure per file (the parts that arrived stay held for a resume).
            return failures[0] if failures else None

        # A page of the parts route at a time (100 parts): which parts the storage holds (a resumed
        # upload skips them) and fresh URLs for the others, sent before the next page is asked for,
        # so that URLs are used minutes after they were signed however large the file.
        done: list[HeldPart] = []
        cursor: str | None = None
        part_size = instruction.part_size
        with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="filebatch-part") as pool:
            try:
                while True:
                    page = self.list_parts(batch_id, created.file_id, cursor=cursor)
                    done += page.uploaded
                    futures = [
                        pool.submit(self._send_part, part, path, page.part_size, created.size)
                        for part in page.parts
                    ]
                    if (refused := sent(futures)) is not None:
                        return refused
                    if not page.next_cursor:
                        break
                    cursor = page.next_cursor
                if instruction.part_checksum is not None:
                    # Parts with checksums: the pages above said which parts the storage holds (no
                    # URL: each URL signs its part's digest). The others are read, hashed and sent
                    # `concurrency` at a time, each read once into memory: part_size * concurrency
                    # bytes at most (64 MiB with 16 MiB parts and the default 4).
                    held = {p.part_number for p in done}
                    missing = [n for n in range(1, instruction.part_count + 1) if n not in held]
                    step = max(1, min(concurrency, _SIGNED_PARTS_PER_REQUEST))
                    for start in range(0, len(missing), step):
                        numbers = missing[start : start + step]
                        bodies = dict(
                            zip(
                                numbers,
                                pool.map(lambda n: _read_part(path, n, part_size, created.size), numbers),
                                strict=True,
                            )
                        )
                        digests = {n: _sha256_base64(body) for n, body in bodies.items()}
                        urls = self.sign_parts(batch_id, created.file_id, digests)
                        futures = [
                            pool.submit(
                                self._send_part,
                                part,
                                path,
                                part_size,
                                created.size,
                                body=bodies[part.part_number],
                                checksum=digests[part.part_number],
                            )
                            for part in urls
                        ]
                        del bodies
                        if (refused := sent(futures)) is not None:
                            return refused
            except FilebatchApiError as error:
                return failure(f"{error.code}: {error.message}", error.status, error.retryable)
            except FilebatchConnectionError as error:
                return failure(str(error), retryable=True)
            except OSError as error:
                return failure(f"{type(error).__name__}: {error}")
        try:
            self.complete_upload(batch_id, created.file_id, done)
        except FilebatchApiError as error:
            return failure(f"{error.code}: {error.message}", error.status, error.retryable)
        except FilebatchConnectionError as error:
            return failure(str(error), retryable=True)
        return None

    def _send_part(
        self,
        part: UploadPart,
        path: Path,
        part_size: int,
        size: int,
        *,
        body: bytes | None = None,
        checksum: str | None = None,
    ) -> HeldPart | tuple[str, int | None, bool]:
        """PUT one part from its byte range of the file, or from `body` (its bytes already read, with
        `checksum` their SHA-256 in base64), with retries: the part with the ETag the storage
        answered, or (reason, status, retryable)."""
        start = (part.part_number - 1) * part_size
        length = min(part_size, size - start)
        headers: dict[str, Any] = {**part.headers, "Authorization": None}

        def send() -> requests.Response:
            if body is not None:
                return self._session.put(part.url, data=body, headers=headers, timeout=self.timeout)
            # Reopened on every attempt: a retry sends the part from its first byte.
            with _FileRange(path, start, length) as stream:
                return self._session.put(part.url, data=stream, headers=headers, timeout=self.timeout)

        try:
            response = self._send(send, f"upload of part {part.part_number} of {path.name}")
        except FilebatchConnectionError as error:
            return str(error), None, True
        except (OSError, requests.RequestException) as error:
            return f"{type(error).__name__}: {error}", None, False
        with response:
            if response.status_code >= 300:
                return (
                    _storage_reason(response),
                    response.status_code,
                    response.status_code in RETRYABLE_STATUSES,
                )
            return HeldPart(part.part_number, response.headers.get("ETag", "").strip('"'), length, checksum)

    def _download(self, url: str, path: Path) -> None:
        """GET a presigned URL into `path`, retrying from the first byte when the transfer breaks."""
        where = urlsplit(url).path
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(handle)
        part = Path(temporary)

        def send() -> requests.Response:
            # No Authorization: the URL's signature is the credential (and the key must not leak).
            # None drops any default a caller's session carries, as for uploads.
            headers: dict[str, Any] = {"Authorization": None}
            response = self._session.get(url, headers=headers, stream=True, timeout=self.timeout)
            if response.status_code >= 300:
                return response
            try:
                with response, part.open("wb") as out:
                    for chunk in response.iter_content(_DOWNLOAD_CHUNK):
                        out.write(chunk)
            except requests.exceptions.ChunkedEncodingError as error:
                # A transfer cut short: the same as a lost connection, so _send tries again.
                raise requests.ConnectionError(str(error)) from error
            return response

        try:
            response = self._send(send, f"download of {where}")
            with response:
                if response.status_code >= 300:
                    raise DownloadError(where, _storage_reason(response), response.status_code)
            part.replace(path)
        finally:
            part.unlink(missing_ok=True)

    # ---- the whole flow -----------------------------------------------------------------------

    def submit(
        self,
        paths: Sequence[PathLike],
        *,
        name: str | None = None,
        metadata: Mapping[str, str] | None = None,
        webhook_url: str | None = None,
        skip_duplicates: bool = False,
        wait: bool = True,
        timeout: float = 600,
        poll_interval: float = 1.0,
        concurrency: int = 8,
        page_size: int = 100,
        on_upload_progress: UploadProgressCallback | None = None,
        on_progress: StatusCallback | None = None,
        upload_method: UploadMethod = "PUT",
        on_created: Callable[[CreatedBatch], None] | None = None,
    ) -> BatchRun:
        """Create a batch of `paths`, upload them, and (unless `wait=False`) wait for every result.

        `name`, `metadata` and `webhook_url` are stored with the batch, `upload_method` chooses
        presigned PUTs or browser-style POSTs, and `skip_duplicates` skips files already described
        (their SHA-256 is declared from the file; see `create_batch`). `on_created` gets the batch
        as soon as it exists, before any upload (so an interrupted caller can name it).
        Returns a `BatchRun` with `.results`, `.summary()`, `.failed()` and `.retryable()`. Files
        that failed are results, not exceptions; exceptions mean the batch itself could not be
        created, uploaded or followed.
        """
        local = [Path(path) for path in paths]
        created = self.create_batch(
            local,
            name=name,
            metadata=metadata,
            webhook_url=webhook_url,
            upload_method=upload_method,
            skip_duplicates=skip_duplicates,
        )
        logger.info("batch %s created with %d files", created.batch_id, len(created.files))
        if on_created is not None:
            on_created(created)
        self.upload(created, local, concurrency=concurrency, on_progress=on_upload_progress)
        run = BatchRun(batch=created, paths=local)
        if not wait:
            return run
        run.status = self.wait(
            created.batch_id, timeout=timeout, poll_interval=poll_interval, on_progress=on_progress
        )
        run.results = list(self.iter_results(created.batch_id, page_size=page_size))
        return run

    # ---- HTTP ---------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str | int] | None = None,
        json_body: dict[str, Any] | None = None,
        idempotent: bool = True,
        idempotency_key: str | None = None,
    ) -> Any:
        """One API call: JSON in, JSON out, error bodies raised as FilebatchApiError.

        With an `idempotency_key` the request is sent with that Idempotency-Key header on every
        attempt, which makes it idempotent whatever the method.
        """
        url = self.api_url + path
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key

        def send() -> requests.Response:
            return self._session.request(
                method, url, params=params, json=json_body, headers=headers, timeout=self.timeout
            )

        with self._send(
            send,
            f"{method} {path}",
            idempotent=idempotent or idempotency_key is not None,
            keyed=idempotency_key is not None,
        ) as response:
            if response.status_code >= 400:
                raise _api_error(response)
            try:
                return response.json()
            except ValueError:
                raise FilebatchApiError(
                    response.status_code,
                    "invalid_response",
                    f"expected a JSON body from {method} {path}, got {response.text[:200]!r}",
                    request_id=_request_id(response),
                ) from None

    def _send(
        self,
        send: Callable[[], requests.Response],
        what: str,
        *,
        idempotent: bool = True,
        keyed: bool = False,
    ) -> requests.Response:
        """Call `send` until it gets a non-retryable answer or the retries run out.

        The last response is returned even when its status is retryable: the caller turns it into
        an error with the server's own message. A request that is not idempotent is retried only
        when it cannot have taken effect: the connection was never made, or the answer was 429
        (throttled before reaching the function) or 503 (the function gave up before committing).
        A lost answer (read timeout, reset, 502, 504) could hide a change (a second close, retry
        or rotation would not be the same request), so it is raised.

        Creating a batch is different: its Idempotency-Key (`keyed`) makes repeating it safe, so
        it is retried like a read, and also on 409 request_in_progress, the answer while an
        earlier attempt with the same key is still being handled (typically the attempt whose
        answer was lost): once that one finishes, the server replays its answer.
        """
        retryable_errors = (
            (requests.ConnectionError, requests.Timeout) if idempotent else (requests.ConnectTimeout,)
        )
        retryable_statuses = RETRYABLE_STATUSES if idempotent else NOT_APPLIED_STATUSES
        attempt = 0
        while True:
            try:
                response = send()
            except retryable_errors as error:
                if attempt >= self.max_retries:
                    raise FilebatchConnectionError(
                        f"{what} failed after {attempt + 1} attempt(s): {error}"
                    ) from error
                delay = self._backoff.delay(attempt)
                logger.info("%s: %s; retrying in %.2fs", what, type(error).__name__, delay)
            else:
                retry = response.status_code in retryable_statuses or (
                    keyed and _is_request_in_progress(response)
                )
                if not retry or attempt >= self.max_retries:
                    return response
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if retry_after is not None and retry_after > self._backoff.max_retry_after:
                    # A plan's monthly quota: retrying within this call cannot pass, so say so now.
                    return response
                delay = self._backoff.delay(attempt, retry_after)
                logger.info("%s: HTTP %d; retrying in %.2fs", what, response.status_code, delay)
                response.close()
            self._sleep(delay)
            attempt += 1


def _read_part(path: Path, part_number: int, part_size: int, size: int) -> bytes:
    """Part `part_number`'s bytes of the file, read whole (to be hashed, then sent)."""
    start = (part_number - 1) * part_size
    with path.open("rb") as file:
        file.seek(start)
        return file.read(min(part_size, size - start))


def _sha256_base64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


class _FileRange:
    """Bytes [start, start + length) of a file as a request body: a known length (requests sends
    it as Content-Length, which the part URL is signed for) and read a block at a time."""

    def __init__(self, path: Path, start: int, length: int) -> None:
        self._file = path.open("rb")
        self._file.seek(start)
        self._left = self._length = length

    def __len__(self) -> int:
        return self._length

    def read(self, size: int = -1) -> bytes:
        wanted = self._left if size is None or size < 0 else min(size, self._left)
        data = self._file.read(wanted) if wanted else b""
        self._left -= len(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        while block := self.read(_UPLOAD_BLOCK):
            yield block

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> _FileRange:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _new_session() -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=_POOL_SIZE)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _segment(value: str) -> str:
    # Ids go into the path: quoting keeps "../" or "?" in a mistyped id from changing the route.
    return quote(value, safe="")


def _is_request_in_progress(response: requests.Response) -> bool:
    if response.status_code != 409:
        return False
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return False
    return isinstance(error, dict) and error.get("code") == "request_in_progress"


def _storage_reason(response: requests.Response) -> str:
    # S3 explains refusals in XML (<Code>SignatureDoesNotMatch</Code>, AccessDenied when the URL
    # expired): the code is what a person needs to see.
    match = _S3_ERROR_CODE.search(response.text or "")
    return f"HTTP {response.status_code}" + (f" {match.group(1)}" if match else "")


def _request_id(response: requests.Response) -> str | None:
    return response.headers.get("x-amzn-RequestId") or response.headers.get("x-amz-request-id")


def _api_error(response: requests.Response) -> FilebatchApiError:
    """The error body as an exception (of its code's class, see `errors.API_ERRORS`); bodies from
    proxies or load balancers get a generic code."""
    status = response.status_code
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
            request_id=_request_id(response),
        )
    text = (response.text or response.reason or "").strip()
    return api_error(status, f"http_{status}", text[:500], request_id=_request_id(response))
