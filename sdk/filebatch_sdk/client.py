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

Reads are retried with exponential backoff and jitter on connection errors, timeouts, 429
(honouring Retry-After) and 5xx; creating a batch only when it cannot have happened (no connection,
429, 503). Other 4xx raise `FilebatchApiError` at once.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from filebatch_sdk._retry import NOT_APPLIED_STATUSES, RETRYABLE_STATUSES, Backoff, parse_retry_after
from filebatch_sdk._version import __version__
from filebatch_sdk.errors import (
    BatchTimeoutError,
    FilebatchApiError,
    FilebatchConnectionError,
    UploadError,
    UploadFailure,
)
from filebatch_sdk.models import (
    BatchRun,
    BatchStatus,
    CreatedBatch,
    CreatedFile,
    DescriptionOptions,
    FileResult,
    FileSpec,
    ResultsPage,
    UploadProgress,
)

logger = logging.getLogger("filebatch_sdk")

PathLike = str | os.PathLike[str]
FileInput = FileSpec | str | os.PathLike[str]
UploadProgressCallback = Callable[[UploadProgress], None]
StatusCallback = Callable[[BatchStatus], None]

USER_AGENT = f"filebatch-sdk-python/{__version__}"
# Big enough for the default upload concurrency plus the caller's API calls, so urllib3 reuses
# connections instead of warning "connection pool is full" and opening new ones.
_POOL_SIZE = 32
_S3_ERROR_CODE = re.compile(r"<Code>([^<]{1,100})</Code>")


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
        self, files: Sequence[FileInput], *, description: DescriptionOptions | None = None
    ) -> CreatedBatch:
        """Declare a batch of files; returns its id and one upload instruction per file.

        Paths are declared with their name, size on disk and a content type guessed from the
        extension (see `guess_content_type`); pass a `FileSpec` to choose these yourself.
        """
        specs = [item if isinstance(item, FileSpec) else FileSpec.from_path(item) for item in files]
        if not specs:
            raise ValueError("a batch needs at least one file")
        # Not idempotent: retried only when the server cannot have created the batch (see _send).
        body = self._call(
            "POST",
            "/v1/batches",
            json_body={
                "files": [spec.to_json() for spec in specs],
                **({"description": description.to_json()} if description else {}),
            },
            idempotent=False,
        )
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

    def list_results(self, batch_id: str, *, limit: int = 100, cursor: str | None = None) -> ResultsPage:
        """One page of per-file results, in the order the files were declared."""
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        body = self._call("GET", f"/v1/batches/{_segment(batch_id)}/results", params=params)
        return ResultsPage.from_json(body)

    def iter_results(self, batch_id: str, *, page_size: int = 100) -> Iterator[FileResult]:
        """Every file's result, fetching pages lazily by following `next_cursor`."""
        cursor: str | None = None
        while True:
            page = self.list_results(batch_id, limit=page_size, cursor=cursor)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def wait(
        self,
        batch_id: str,
        *,
        timeout: float = 600,
        poll_interval: float = 1.0,
        on_progress: StatusCallback | None = None,
    ) -> BatchStatus:
        """Poll the batch until it is terminal and return its final status.

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
    ) -> None:
        """Upload each file's bytes to its presigned URL, `concurrency` files at a time.

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

        bytes_total = sum(created.size for created in created_batch.files)
        files_done = bytes_done = 0
        failures: list[UploadFailure] = []
        workers = max(1, min(concurrency, len(local)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="filebatch-upload") as pool:
            futures = {
                pool.submit(self._upload_file, created, path): created
                for created, path in zip(created_batch.files, local, strict=True)
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
                            files_total=len(local),
                            bytes_done=bytes_done,
                            bytes_total=bytes_total,
                        )
                    )
        if failures:
            raise UploadError(created_batch.batch_id, sorted(failures, key=lambda f: f.file_id))

    def _upload_file(self, created: CreatedFile, path: Path) -> UploadFailure | None:
        """Upload one file (with retries); a failure is returned, not raised, to report them all."""
        instruction = created.upload
        # Exactly the headers the API returned: they are part of the signature. Setting
        # Authorization to None drops any default a caller's session carries, since S3 rejects a
        # presigned request that also carries another credential (and the key must not leak there).
        headers: dict[str, Any] = {**instruction.headers, "Authorization": None}

        def send() -> requests.Response:
            # Reopened on every attempt so a retry sends the file from its first byte. An open
            # file streams as the raw body with its Content-Length: never form-encoded, never
            # fully loaded in memory.
            with path.open("rb") as body:
                return self._session.request(
                    instruction.method,
                    instruction.url,
                    data=body,
                    headers=headers,
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
            # S3 explains refusals in XML (<Code>SignatureDoesNotMatch</Code>, AccessDenied when
            # the URL expired): the code is what a person needs to see.
            match = _S3_ERROR_CODE.search(response.text or "")
            reason = f"HTTP {response.status_code}" + (f" {match.group(1)}" if match else "")
            return failure(reason, response.status_code, response.status_code in RETRYABLE_STATUSES)

    # ---- the whole flow -----------------------------------------------------------------------

    def submit(
        self,
        paths: Sequence[PathLike],
        *,
        wait: bool = True,
        timeout: float = 600,
        poll_interval: float = 1.0,
        concurrency: int = 8,
        page_size: int = 100,
        on_upload_progress: UploadProgressCallback | None = None,
        on_progress: StatusCallback | None = None,
    ) -> BatchRun:
        """Create a batch of `paths`, upload them, and (unless `wait=False`) wait for every result.

        Returns a `BatchRun` with `.results`, `.summary()`, `.failed()` and `.retryable()`. Files
        that failed are results, not exceptions; exceptions mean the batch itself could not be
        created, uploaded or followed.
        """
        local = [Path(path) for path in paths]
        created = self.create_batch(local)
        logger.info("batch %s created with %d files", created.batch_id, len(created.files))
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
    ) -> Any:
        """One API call: JSON in, JSON out, error bodies raised as FilebatchApiError."""
        url = self.api_url + path
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }

        def send() -> requests.Response:
            return self._session.request(
                method, url, params=params, json=json_body, headers=headers, timeout=self.timeout
            )

        with self._send(send, f"{method} {path}", idempotent=idempotent) as response:
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
        self, send: Callable[[], requests.Response], what: str, *, idempotent: bool = True
    ) -> requests.Response:
        """Call `send` until it gets a non-retryable answer or the retries run out.

        The last response is returned even when its status is retryable: the caller turns it into
        an error with the server's own message. A request that is not idempotent is retried only
        when it cannot have taken effect: the connection was never made, or the answer was 429
        (throttled before reaching the function) or 503 (the function gave up before committing).
        A lost answer (read timeout, reset, 502, 504) could hide a created batch, so it is raised.
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
                if response.status_code not in retryable_statuses or attempt >= self.max_retries:
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


def _new_session() -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=_POOL_SIZE)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _segment(value: str) -> str:
    # Ids go into the path: quoting keeps "../" or "?" in a mistyped id from changing the route.
    return quote(value, safe="")


def _request_id(response: requests.Response) -> str | None:
    return response.headers.get("x-amzn-RequestId") or response.headers.get("x-amz-request-id")


def _api_error(response: requests.Response) -> FilebatchApiError:
    """The error body as an exception; bodies from proxies or load balancers get a generic code."""
    status = response.status_code
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and error.get("code"):
        details = error.get("details")
        return FilebatchApiError(
            status,
            str(error["code"]),
            str(error.get("message", "")),
            details if isinstance(details, list) else None,
            request_id=_request_id(response),
        )
    text = (response.text or response.reason or "").strip()
    return FilebatchApiError(status, f"http_{status}", text[:500], request_id=_request_id(response))
