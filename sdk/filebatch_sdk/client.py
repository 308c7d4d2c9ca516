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

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar, Unpack

import requests
from requests.adapters import HTTPAdapter

from filebatch_sdk._callbacks import CallbackDispatcher
from filebatch_sdk._drivers import SyncDriver
from filebatch_sdk._inputs import FilesArgument
from filebatch_sdk._protocol import (
    USER_AGENT,
    CreateBatchArguments,
    Op,
    Pager,
    Protocol,
    RetryPolicy,
    UploadMethod,
    create_options,
)
from filebatch_sdk._retry import Backoff
from filebatch_sdk._submit import SubmitArguments, prepare_submit, retry_failed, running, submit
from filebatch_sdk.errors import UploadError
from filebatch_sdk.models import (
    BatchesPage,
    BatchRetry,
    BatchStatus,
    CreatedBatch,
    CreatedFile,
    DeletedBatch,
    ExportInfo,
    FileResult,
    FileSpec,
    HeldPart,
    PartsPage,
    ResultsPage,
    SubmitRun,
    UploadPart,
    UploadProgress,
    WebhookSecret,
)

__all__ = ["USER_AGENT", "FileInput", "FilebatchClient", "PathLike", "UploadMethod"]

logger = logging.getLogger("filebatch_sdk")

T = TypeVar("T")
PathLike = str | os.PathLike[str]
FileInput = FileSpec | str | os.PathLike[str]
UploadProgressCallback = Callable[[UploadProgress], None]
StatusCallback = Callable[[BatchStatus], None]

# Big enough for the default upload concurrency plus the caller's API calls, so urllib3 reuses
# connections instead of warning "connection pool is full" and opening new ones.
_POOL_SIZE = 32


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

    The protocol (requests, retries, pages, uploads) is `filebatch_sdk._protocol`, shared with
    `AsyncFilebatchClient`; this class runs it with requests and threads.
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
        self._protocol = new_protocol(api_url, api_key, max_retries, backoff_base, backoff_cap)
        self.api_url = self._protocol.api_url
        self.timeout = timeout
        self.max_retries = max_retries
        self._owns_session = session is None
        self._session = session if session is not None else _new_session()
        self._driver = SyncDriver(self._session, timeout=timeout, sleep=sleep)

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

    def _run(self, op: Op[T]) -> T:
        return self._driver.call(op)

    # ---- the API ------------------------------------------------------------------------------

    def create_batch(
        self, files: Sequence[FileInput], **arguments: Unpack[CreateBatchArguments]
    ) -> CreatedBatch:
        """Declare a batch of files; returns its id and one upload instruction per file.

        Keyword arguments: `CreateBatchArguments` (all optional).

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
        key = arguments.get("idempotency_key") or str(uuid.uuid4())
        return self._run(self._protocol.create_batch(files, create_options(arguments), key))

    def refresh_uploads(self, batch_id: str) -> list[CreatedFile]:
        """Fresh upload instructions for every file of the batch still awaiting upload (for URLs
        that expired before the upload, or an upload resumed later)."""
        return [CreatedFile.from_json(item) for item in self._run(self._protocol.upload_pages(batch_id))]

    def get_batch(self, batch_id: str) -> BatchStatus:
        """The batch's status, counts and progress."""
        return self._run(self._protocol.get_batch(batch_id))

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
        pager = Pager(limit=limit, page_size=page_size)
        while not pager.done:
            page = self.list_batches_page(status=status, name=name, limit=pager.size, cursor=pager.cursor)
            yield from pager.take(page.items, page.next_cursor)

    def list_batches_page(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> BatchesPage:
        """One page of `GET /v1/batches` (newest first); pass `next_cursor` back for the next."""
        return self._run(
            self._protocol.list_batches_page(status=status, name=name, limit=limit, cursor=cursor)
        )

    def close_batch(self, batch_id: str) -> BatchStatus:
        """Stop waiting for uploads: the files that arrived are processed, the others end as
        `upload_expired`. Only a batch awaiting upload can be closed (409 `BatchNotOpenError`)."""
        return self._run(self._protocol.close_batch(batch_id))

    def cancel_batch(self, batch_id: str) -> BatchStatus:
        """Cancel the batch: "cancelling" until the files being described finish, then
        "cancelled" (follow it with `wait`). Cancelling again answers the same; a batch that
        already finished otherwise raises 409 `BatchEndedError`."""
        return self._run(self._protocol.cancel_batch(batch_id))

    def retry_batch(self, batch_id: str, file_ids: Sequence[str] | None = None) -> BatchRetry:
        """Run a finished batch's failed files again (or only `file_ids`); follow it with `wait`.

        409: `BatchNotEndedError` (not finished yet), `NothingToRetryError`, `RetryInProgressError`.
        """
        return self._run(self._protocol.retry_batch(batch_id, file_ids))

    def delete_batch(self, batch_id: str) -> DeletedBatch:
        """Delete a finished batch, its files and results; it answers 404 afterwards. A batch
        still running raises 409 `BatchNotEndedError`: cancel it first."""
        return self._run(self._protocol.delete_batch(batch_id))

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
        return self._run(self._protocol.list_results(batch_id, limit=limit, cursor=cursor, status=status))

    def iter_results(
        self, batch_id: str, *, page_size: int = 100, status: str | None = None
    ) -> Iterator[FileResult]:
        """Every file's result (or those in `status`), fetching pages lazily by following `next_cursor`."""
        pager = Pager(limit=None, page_size=page_size)
        while not pager.done:
            page = self.list_results(batch_id, limit=pager.size, cursor=pager.cursor, status=status)
            yield from pager.take(page.items, page.next_cursor)

    def results(self, batch_id: str, *, status: str | None = None) -> list[FileResult]:
        """Every file's result as a list (or only those in `status`, e.g. `FileState.FAILED`)."""
        return list(self.iter_results(batch_id, status=status))

    def export_results(self, batch_id: str) -> ExportInfo:
        """Where to download every result of a finished batch as one JSON Lines file.

        Raises 409 `ExportNotReadyError` while the batch is not finished."""
        return self._run(self._protocol.export_results(batch_id))

    def download_export(self, batch_id: str, path: PathLike) -> ExportInfo:
        """Download the batch's export to `path` (JSON Lines; read it with `iter_export_file`).

        The file is streamed to a temporary file next to `path` and renamed over it once
        complete, so `path` never holds half an export. Raises `DownloadError` when storage
        refuses the URL.
        """
        return self._run(self._protocol.download_export(batch_id, Path(path)))

    def rotate_webhook_secret(self) -> WebhookSecret:
        """Create the API key's webhook signing secret, or replace it. The previous secret keeps
        signing webhooks alongside the new one for 24 hours, time to deploy the new one."""
        return self._run(self._protocol.rotate_webhook_secret())

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
        return self._run(
            self._protocol.wait(batch_id, timeout=timeout, poll_interval=poll_interval, on_status=on_progress)
        )

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

        `paths[i]` is the file declared i-th in `create_batch`. `on_progress` gets the bytes sent,
        per file and overall, while files upload; it is called from one thread at a time, never
        concurrently, so it needs no locking. Files that still fail after retries are reported
        together in one `UploadError` once the others are done.
        """
        # Progress goes through the SDK's callback thread, as in `submit`: never concurrently,
        # never holding an upload back.
        with CallbackDispatcher() as dispatcher:
            failures = self._run(
                self._protocol.upload_batch(
                    created_batch,
                    [Path(path) for path in paths],
                    concurrency=concurrency,
                    part_concurrency=part_concurrency,
                    on_progress=dispatcher.progress_poster(on_progress),
                )
            )
        if failures:
            raise UploadError(created_batch.batch_id, sorted(failures, key=lambda f: f.file_id))

    def list_parts(self, batch_id: str, file_id: str, *, cursor: str | None = None) -> PartsPage:
        """One page of a multipart file's parts: those the storage holds, fresh URLs for the rest."""
        return self._run(self._protocol.list_parts(batch_id, file_id, cursor=cursor))

    def sign_parts(self, batch_id: str, file_id: str, digests: Mapping[int, str]) -> list[UploadPart]:
        """Presigned PUTs of the given parts of an upload with part checksums (at most 100 at a time),
        from each part's SHA-256 (hex or base64): each URL signs its part's digest."""
        return self._run(self._protocol.sign_parts(batch_id, file_id, digests))

    def complete_upload(self, batch_id: str, file_id: str, parts: Sequence[HeldPart]) -> None:
        """Complete a multipart upload from every part's number and ETag (and SHA-256, for an upload
        with part checksums). Safe to repeat: the server answers a completed upload's success again."""
        self._run(self._protocol.complete_upload(batch_id, file_id, parts))

    def abort_upload(self, batch_id: str, file_id: str) -> None:
        """Abort a file's multipart upload: its parts are dropped, and the next upload starts afresh."""
        self._run(self._protocol.abort_upload(batch_id, file_id))

    # ---- the whole flow -----------------------------------------------------------------------

    def submit(self, files: FilesArgument, **arguments: Unpack[SubmitArguments]) -> SubmitRun:
        """Submit any number of files: split into batches, uploaded, processed, results in order.

        The keyword arguments and their defaults are listed in `SubmitArguments` (a batch's
        options in `CreateArguments`).

        `files`: paths (a list, or any iterable such as a generator, read lazily) or a directory,
        walked lazily (hidden files skipped; see `filebatch_sdk._inputs`). Each batch holds
        `chunk_size` files (at most 10,000, the API's bound). Batches are **pipelined**: the next
        batch is declared and uploaded while the previous ones are processed, with at most
        `max_batches_in_flight` batches open at once.

        Each file is declared with its SHA-256 (S3 refuses other bytes) and, with `skip_duplicates`
        (the default), a file already described for this API key is not uploaded again: its
        result is `skipped`, with the earlier description. Files are read in blocks, never whole;
        files above the deployment's multipart threshold go up in parts, `part_concurrency` at a
        time, resumably. 429 and 503 answers are retried after their Retry-After.

        `name` is the first batch's name (the next ones are `name-2`, `name-3`...); `description`,
        `metadata`, `webhook_url` and `upload_method` apply to every batch. `timeout` bounds the
        wait for each batch (`BatchTimeoutError`).

        Callbacks are called from one thread of their own, one at a time, so they never block
        uploads and need no locking: `on_created(CreatedBatch)` as each batch exists (before its
        uploads), `on_upload_progress(UploadProgress)` as bytes go up (per file and per batch;
        while the callback is busy, only a file's latest progress is kept), `on_batch_status`
        with every status polled, and `on_file_complete` / `on_file_failed` with each file's
        result once its batch ended. An exception in a callback is logged, not raised.

        `state_file`: record the run there; calling `submit` again with the same files and state
        file after a crash or Ctrl-C continues where it stopped, uploading nothing twice.

        Returns a `SubmitRun` (results in input order, `summary()`, `failed()`, `retryable()`,
        `retry_failed()`). Files that failed are results, not exceptions, unless
        `raise_on_failure` is set: then `RunFailedError` carries every failure. A file whose
        upload failed after retries ends `upload_expired` (its batch is closed so the others go
        on) and its reason is in the batch's `upload_failures`. With `wait=False` the batches are
        created and uploaded, and not followed.
        """
        prepared = prepare_submit(arguments)
        with running(prepared) as (dispatcher, state):
            run = self._run(submit(self._protocol, files, prepared, dispatcher, state))
        run.bind_retry(lambda failed: self._run(retry_failed(self._protocol, failed, prepared.options)))
        if prepared.raise_on_failure:
            run.raise_for_failures()
        return run


def new_protocol(
    api_url: str, api_key: str, max_retries: int, backoff_base: float, backoff_cap: float
) -> Protocol:
    """The protocol both clients run, from their shared arguments (checked here, once)."""
    if not api_url:
        raise ValueError("api_url is required")
    if not api_key:
        raise ValueError("api_key is required")
    if max_retries < 0:
        raise ValueError("max_retries must be >= 0")
    return Protocol(api_url, api_key, RetryPolicy(max_retries, Backoff(base=backoff_base, cap=backoff_cap)))


def _new_session() -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=_POOL_SIZE)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
