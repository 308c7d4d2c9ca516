"""How the protocol's operations (`_protocol`) meet the network: with requests and threads for
`FilebatchClient`, with httpx and asyncio for `AsyncFilebatchClient`.

A driver only sends bytes, waits and runs work side by side; every decision (what to retry, what
to send next) is the operation's. Whatever handling an effect raises is thrown back into the
operation, which may catch it (an upload turns an unreadable file into a failure) or let it rise.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import requests
import urllib3

from filebatch_sdk._multipart import MultipartFormFile
from filebatch_sdk._protocol import (
    DOWNLOAD_CHUNK,
    UPLOAD_BLOCK,
    Blocking,
    FileBody,
    FormBody,
    Gather,
    Join,
    Now,
    Op,
    Request,
    Response,
    Sleep,
    Spawn,
    TransportError,
    advance,
    iter_file_range,
)

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")


class SyncDriver:
    """Runs operations in the calling thread; `Gather` and `Spawn` use worker threads."""

    def __init__(
        self,
        session: requests.Session,
        *,
        timeout: float,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self.timeout = timeout
        self._sleep = sleep
        self._clock = clock
        # Set when a caller is interrupted (Ctrl-C) while work runs in threads: bodies being sent
        # stop at their next block, and queued work never starts, so the caller gets control back
        # without every remaining file being uploaded first.
        self._interrupted = threading.Event()

    def call(self, op: Op[T]) -> T:
        """Run `op` for a caller (a client method): a fresh start after an earlier interruption."""
        self._interrupted.clear()
        return self.run(op)

    def run(self, op: Op[T]) -> T:
        step = advance(op, None, None)
        while not step.done:
            try:
                value, error = self._handle(step.value), None
            except Exception as raised:
                value, error = None, raised
            step = advance(op, value, error)
        result: T = step.value
        return result

    def _handle(self, effect: Any) -> Any:
        if isinstance(effect, Request):
            return self._send(effect)
        if isinstance(effect, Sleep):
            self._sleep(effect.seconds)
            return None
        if isinstance(effect, Blocking):
            return effect.function()
        if isinstance(effect, Now):
            return self._clock()
        if isinstance(effect, Gather):
            return self._gather(effect.ops, effect.limit)
        if isinstance(effect, Spawn):
            return self._spawn(effect.op)
        if isinstance(effect, Join):
            handle: Future[Any] = effect.handle
            return handle.result()
        raise TypeError(f"not an effect: {effect!r}")

    def _gather(self, ops: Sequence[Op[Any]], limit: int) -> list[Any]:
        if len(ops) <= 1 or limit <= 1:
            return [self.run(op) for op in ops]
        outcomes: list[Any] = [None] * len(ops)
        errors: list[BaseException] = []
        pool = ThreadPoolExecutor(max_workers=min(limit, len(ops)), thread_name_prefix="filebatch")
        try:
            futures = [pool.submit(self._run_interruptibly, op) for op in ops]
            for index, future in enumerate(futures):
                try:
                    outcomes[index] = future.result()
                except Exception as error:
                    errors.append(error)
        except BaseException:
            # KeyboardInterrupt (or another exit): stop what runs, drop what waits.
            self._interrupted.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        if errors:
            raise errors[0]
        return outcomes

    def _run_interruptibly(self, op: Op[Any]) -> Any:
        try:
            return self.run(op)
        except Exception:
            raise
        except BaseException:
            # An interruption inside a worker: the work queued beside it must not start sending
            # before the caller's thread hears of it.
            self._interrupted.set()
            raise

    def _spawn(self, op: Op[Any]) -> Future[Any]:
        future: Future[Any] = Future()

        def work() -> None:
            try:
                future.set_result(self.run(op))
            except BaseException as error:
                future.set_exception(error)

        threading.Thread(target=work, name="filebatch-batch", daemon=True).start()
        return future

    def _send(self, request: Request) -> Response:
        data: Any = None
        # None removes a default of the session (requests' own convention).
        headers: dict[str, Any] = dict(request.headers)
        if self._interrupted.is_set():
            raise OSError("interrupted")
        if isinstance(request.body, FileBody):
            data = _FileStream(request.body, self._interrupted)
        elif isinstance(request.body, FormBody):
            data = _form(request.body, self._interrupted).__enter__()
            headers["Content-Type"] = data.content_type
        elif request.body is not None:
            data = request.body
        try:
            try:
                response = self.session.request(
                    request.method,
                    request.url,
                    params=request.params,
                    json=request.json,
                    data=data,
                    headers=headers,
                    timeout=self.timeout,
                    stream=request.download_to is not None,
                )
                with response:
                    if request.download_to is not None and response.status_code < 300:
                        _write_atomically(request.download_to, response.iter_content(DOWNLOAD_CHUNK))
                        content = b""
                    else:
                        content = response.content
            finally:
                if hasattr(data, "close"):
                    data.close()
        except requests.ConnectionError as error:
            # Refused or timed out while connecting, the request never left; otherwise it may have.
            raise TransportError(str(error), sent=not _never_connected(error)) from error
        except (requests.Timeout, requests.exceptions.ChunkedEncodingError) as error:
            # ChunkedEncodingError: a transfer cut short, the same as a lost connection.
            raise TransportError(str(error), sent=True) from error
        return Response(
            response.status_code,
            {name.lower(): value for name, value in response.headers.items()},
            content,
            response.reason or "",
        )


def _never_connected(error: requests.ConnectionError) -> bool:
    if isinstance(error, requests.ConnectTimeout):
        return True
    # urllib3 wraps the cause: MaxRetryError(reason=NewConnectionError(...)) for a refused connection.
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


class AsyncDriver:
    """Runs operations on the running event loop; `Gather` and `Spawn` are tasks, `Blocking`
    work goes to a worker thread so that hashing a file never stalls the loop."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self._sleep = sleep
        self._clock = clock

    async def run(self, op: Op[T]) -> T:
        step = advance(op, None, None)
        while not step.done:
            try:
                value, error = await self._handle(step.value), None
            except Exception as raised:
                value, error = None, raised
            step = advance(op, value, error)
        result: T = step.value
        return result

    async def _handle(self, effect: Any) -> Any:
        if isinstance(effect, Request):
            return await self._send(effect)
        if isinstance(effect, Sleep):
            await self._sleep(effect.seconds)
            return None
        if isinstance(effect, Blocking):
            return await asyncio.to_thread(effect.function)
        if isinstance(effect, Now):
            return self._clock()
        if isinstance(effect, Gather):
            return await self._gather(effect.ops, effect.limit)
        if isinstance(effect, Spawn):
            return asyncio.ensure_future(self.run(effect.op))
        if isinstance(effect, Join):
            task: asyncio.Future[Any] = effect.handle
            return await task
        raise TypeError(f"not an effect: {effect!r}")

    async def _gather(self, ops: Sequence[Op[Any]], limit: int) -> list[Any]:
        slots = asyncio.Semaphore(max(1, limit))

        async def one(op: Op[Any]) -> Any:
            async with slots:
                return await self.run(op)

        outcomes = await asyncio.gather(*(one(op) for op in ops), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return list(outcomes)

    async def _send(self, request: Request) -> Response:
        import httpx

        headers = {name: value for name, value in request.headers.items() if value is not None}
        content: Any = None
        if isinstance(request.body, FileBody):
            # httpx streams an async iterator; with the Content-Length given it is not chunked
            # (presigned URLs are signed for the length).
            content = _aiter_blocks(iter_file_range(request.body))
            headers["Content-Length"] = str(request.body.length)
        elif isinstance(request.body, FormBody):
            form = _form(request.body)
            content = _aiter_blocks(_read_blocks(form))
            headers["Content-Length"] = str(len(form))
            headers["Content-Type"] = form.content_type
        elif request.body is not None:
            content = request.body
        built = self.client.build_request(
            request.method,
            request.url,
            params=dict(request.params) if request.params else None,
            json=request.json,
            content=content,
            headers=headers,
        )
        # A None header means "not this one", including a default of the client (Authorization).
        for name, value in request.headers.items():
            if value is None and name in built.headers:
                del built.headers[name]
        try:
            response = await self.client.send(built, stream=True)
            try:
                if request.download_to is not None and response.status_code < 300:
                    await _awrite_atomically(request.download_to, response.aiter_bytes(DOWNLOAD_CHUNK))
                    body = b""
                else:
                    body = await response.aread()
            finally:
                await response.aclose()
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            raise TransportError(str(error) or type(error).__name__, sent=False) from error
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as error:
            raise TransportError(str(error) or type(error).__name__, sent=True) from error
        return Response(
            response.status_code,
            {name.lower(): value for name, value in response.headers.items()},
            body,
            response.reason_phrase or "",
        )


class _FileStream:
    """A `FileBody` as a requests body: a known length (sent as Content-Length, which presigned
    URLs are signed for) read a block at a time, reopened for every attempt."""

    def __init__(self, body: FileBody, interrupted: threading.Event | None = None) -> None:
        self._length = body.length
        self._blocks = iter_file_range(body)
        self._pending = b""
        self._interrupted = interrupted

    def __len__(self) -> int:
        return self._length

    def read(self, size: int = -1) -> bytes:
        if self._interrupted is not None and self._interrupted.is_set():
            raise OSError("interrupted")
        if not self._pending:
            self._pending = next(self._blocks, b"")
        if size is None or size < 0 or size >= len(self._pending):
            data, self._pending = self._pending, b""
        else:
            data, self._pending = self._pending[:size], self._pending[size:]
        return data

    def __iter__(self) -> Iterator[bytes]:
        while block := self.read(UPLOAD_BLOCK):
            yield block

    def close(self) -> None:
        self._blocks.close()  # type: ignore[attr-defined]


class _CountingForm(MultipartFormFile):
    """The form body, telling its `on_bytes` what each read carried."""

    on_bytes: Callable[[int], None] | None = None
    interrupted: threading.Event | None = None

    def read(self, size: int = -1) -> bytes:
        if self.interrupted is not None and self.interrupted.is_set():
            raise OSError("interrupted")
        data = super().read(size)
        if self.on_bytes is not None and data:
            self.on_bytes(len(data))
        return data

    def close(self) -> None:
        self.__exit__()


def _form(body: FormBody, interrupted: threading.Event | None = None) -> _CountingForm:
    form = _CountingForm(body.fields, body.path, filename=body.filename, file_content_type=body.content_type)
    form.on_bytes = body.on_bytes
    form.interrupted = interrupted
    return form


def _read_blocks(form: MultipartFormFile) -> Iterator[bytes]:
    with form:
        while block := form.read(UPLOAD_BLOCK):
            yield block


async def _aiter_blocks(blocks: Iterator[bytes]) -> AsyncIterator[bytes]:
    # Blocks of a local file are read on the loop: 64 KiB from disk is quicker than a hop to a
    # thread, and the file is read only as fast as the network takes it.
    try:
        for block in blocks:
            yield block
    finally:
        close = getattr(blocks, "close", None)
        if close is not None:
            close()


def _temporary_beside(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(handle)
    return Path(temporary)


def _write_atomically(path: Path, chunks: Iterator[bytes]) -> None:
    """Stream into a temporary file beside `path`, renamed over it once complete: `path` never
    holds half a download."""
    part = _temporary_beside(path)
    try:
        with part.open("wb") as out:
            for chunk in chunks:
                out.write(chunk)
        part.replace(path)
    finally:
        part.unlink(missing_ok=True)


async def _awrite_atomically(path: Path, chunks: AsyncIterator[bytes]) -> None:
    part = _temporary_beside(path)
    try:
        with part.open("wb") as out:
            async for chunk in chunks:
                out.write(chunk)
        part.replace(path)
    finally:
        part.unlink(missing_ok=True)
