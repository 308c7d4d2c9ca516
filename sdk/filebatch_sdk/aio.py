"""`AsyncFilebatchClient`: the SDK on asyncio (httpx), for code that runs inside an event loop.

    from filebatch_sdk.aio import AsyncFilebatchClient   # pip install "./sdk[async]"

    async with AsyncFilebatchClient(api_url, api_key) as client:
        run = await client.submit(["cat.jpg", "report.pdf"])
        async for batch in client.list_batches(status="processing"):
            ...

The same methods, arguments and answers as `FilebatchClient`, awaited. Both run one
implementation of the protocol (`filebatch_sdk._protocol`: requests, retries with Retry-After,
pages, multipart uploads, polling); this class only sends it over httpx and waits with asyncio.
Files are hashed and read in worker threads, so the loop keeps running while a large file is
declared.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar, Unpack

import httpx

from filebatch_sdk._callbacks import CallbackDispatcher
from filebatch_sdk._drivers import AsyncDriver
from filebatch_sdk._inputs import FilesArgument
from filebatch_sdk._protocol import CreateBatchArguments, Op, Pager, create_options
from filebatch_sdk._submit import SubmitArguments, prepare_submit, retry_failed, running, submit
from filebatch_sdk.client import (
    FileInput,
    PathLike,
    StatusCallback,
    UploadProgressCallback,
    new_protocol,
)
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
    HeldPart,
    PartsPage,
    ResultsPage,
    SubmitRun,
    UploadPart,
    WebhookSecret,
)

T = TypeVar("T")

# As FilebatchClient's pool: the default upload concurrency plus the caller's API calls.
_LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=32)


class AsyncFilebatchClient:
    """A client of one filebatch API on asyncio. Arguments as `FilebatchClient`'s, except:

    Args:
        client: an `httpx.AsyncClient` to send through (proxies, certificates, transports). The
            client closes only an httpx client it created itself.
        sleep: an async function to wait between retries and polls (tests pass a fake).
    """

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        timeout: float = 30,
        max_retries: int = 5,
        client: httpx.AsyncClient | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._protocol = new_protocol(api_url, api_key, max_retries, backoff_base, backoff_cap)
        self.api_url = self._protocol.api_url
        self.timeout = timeout
        self.max_retries = max_retries
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=timeout, limits=_LIMITS)
        self._driver = AsyncDriver(self._client, sleep=sleep)

    def __repr__(self) -> str:
        # Never show the key: clients end up in logs and tracebacks.
        return f"AsyncFilebatchClient(api_url={self.api_url!r})"

    async def aclose(self) -> None:
        """Release pooled connections (only if this client created its httpx client)."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _run(self, op: Op[T]) -> T:
        return await self._driver.run(op)

    # ---- the API (see FilebatchClient for each method's contract) -----------------------------

    async def create_batch(
        self, files: Sequence[FileInput], **arguments: Unpack[CreateBatchArguments]
    ) -> CreatedBatch:
        """Declare a batch of files (see `FilebatchClient.create_batch`)."""
        key = arguments.get("idempotency_key") or str(uuid.uuid4())
        return await self._run(self._protocol.create_batch(files, create_options(arguments), key))

    async def refresh_uploads(self, batch_id: str) -> list[CreatedFile]:
        """Fresh upload instructions for every file still awaiting upload."""
        items = await self._run(self._protocol.upload_pages(batch_id))
        return [CreatedFile.from_json(item) for item in items]

    async def get_batch(self, batch_id: str) -> BatchStatus:
        return await self._run(self._protocol.get_batch(batch_id))

    async def list_batches(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        limit: int | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[BatchStatus]:
        """The API key's batches, newest first, fetching pages lazily (`async for`)."""
        pager = Pager(limit=limit, page_size=page_size)
        while not pager.done:
            page = await self.list_batches_page(
                status=status, name=name, limit=pager.size, cursor=pager.cursor
            )
            for batch in pager.take(page.items, page.next_cursor):
                yield batch

    async def list_batches_page(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> BatchesPage:
        return await self._run(
            self._protocol.list_batches_page(status=status, name=name, limit=limit, cursor=cursor)
        )

    async def close_batch(self, batch_id: str) -> BatchStatus:
        return await self._run(self._protocol.close_batch(batch_id))

    async def cancel_batch(self, batch_id: str) -> BatchStatus:
        return await self._run(self._protocol.cancel_batch(batch_id))

    async def retry_batch(self, batch_id: str, file_ids: Sequence[str] | None = None) -> BatchRetry:
        return await self._run(self._protocol.retry_batch(batch_id, file_ids))

    async def delete_batch(self, batch_id: str) -> DeletedBatch:
        return await self._run(self._protocol.delete_batch(batch_id))

    async def list_results(
        self,
        batch_id: str,
        *,
        limit: int = 100,
        cursor: str | None = None,
        status: str | None = None,
    ) -> ResultsPage:
        return await self._run(
            self._protocol.list_results(batch_id, limit=limit, cursor=cursor, status=status)
        )

    async def iter_results(
        self, batch_id: str, *, page_size: int = 100, status: str | None = None
    ) -> AsyncIterator[FileResult]:
        """Every file's result (or those in `status`), fetching pages lazily (`async for`)."""
        pager = Pager(limit=None, page_size=page_size)
        while not pager.done:
            page = await self.list_results(batch_id, limit=pager.size, cursor=pager.cursor, status=status)
            for result in pager.take(page.items, page.next_cursor):
                yield result

    async def results(self, batch_id: str, *, status: str | None = None) -> list[FileResult]:
        return await self._run(self._protocol.all_results(batch_id, page_size=100, status=status))

    async def export_results(self, batch_id: str) -> ExportInfo:
        return await self._run(self._protocol.export_results(batch_id))

    async def download_export(self, batch_id: str, path: PathLike) -> ExportInfo:
        return await self._run(self._protocol.download_export(batch_id, Path(path)))

    async def rotate_webhook_secret(self) -> WebhookSecret:
        return await self._run(self._protocol.rotate_webhook_secret())

    async def wait(
        self,
        batch_id: str,
        *,
        timeout: float = 600,
        poll_interval: float = 1.0,
        on_progress: StatusCallback | None = None,
    ) -> BatchStatus:
        """Poll the batch until it is terminal (see `FilebatchClient.wait`)."""
        return await self._run(
            self._protocol.wait(batch_id, timeout=timeout, poll_interval=poll_interval, on_status=on_progress)
        )

    # ---- uploads ------------------------------------------------------------------------------

    async def upload(
        self,
        created_batch: CreatedBatch,
        paths: Sequence[PathLike],
        *,
        concurrency: int = 8,
        on_progress: UploadProgressCallback | None = None,
        part_concurrency: int = 4,
    ) -> None:
        """Upload each file to its presigned URL (see `FilebatchClient.upload`)."""
        # Progress goes through the SDK's callback thread, as in `submit`: never concurrently,
        # never holding an upload back.
        with CallbackDispatcher() as dispatcher:
            failures = await self._run(
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

    async def list_parts(self, batch_id: str, file_id: str, *, cursor: str | None = None) -> PartsPage:
        return await self._run(self._protocol.list_parts(batch_id, file_id, cursor=cursor))

    async def sign_parts(self, batch_id: str, file_id: str, digests: Mapping[int, str]) -> list[UploadPart]:
        return await self._run(self._protocol.sign_parts(batch_id, file_id, digests))

    async def complete_upload(self, batch_id: str, file_id: str, parts: Sequence[HeldPart]) -> None:
        await self._run(self._protocol.complete_upload(batch_id, file_id, parts))

    async def abort_upload(self, batch_id: str, file_id: str) -> None:
        await self._run(self._protocol.abort_upload(batch_id, file_id))

    # ---- the whole flow -----------------------------------------------------------------------

    async def submit(self, files: FilesArgument, **arguments: Unpack[SubmitArguments]) -> SubmitRun:
        """Submit any number of files in pipelined batches (see `FilebatchClient.submit`).
        Callbacks run on the SDK's callback thread, not on the event loop; retry with
        `await run.aretry_failed()`."""
        prepared = prepare_submit(arguments)
        with running(prepared) as (dispatcher, state):
            run = await self._run(submit(self._protocol, files, prepared, dispatcher, state))

        async def again(failed: SubmitRun) -> SubmitRun:
            return await self._run(retry_failed(self._protocol, failed, prepared.options))

        run.bind_async_retry(again)
        if prepared.raise_on_failure:
            run.raise_for_failures()
        return run
