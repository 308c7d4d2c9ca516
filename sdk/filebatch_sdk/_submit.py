"""`submit`, written once for both clients: any number of files, in pipelined batches.

Files are split into batches of `chunk_size` as they are read (a generator or a directory walk is
never read ahead by more than one batch). Each batch is declared (its files hashed in a worker
thread), created and uploaded; then it is followed (polled to its end and its results read) in
the background while the next batch is declared and uploaded. At most `max_batches_in_flight`
batches are open at once: before another is created, the oldest one is waited for. Results come
back in input order.

With a state file (`_state.RunState`) every step is recorded before or as it happens, so that
running the same call again continues where it stopped: a batch whose creation may have reached
the server is created again with the same Idempotency-Key (the server answers the batch it
created), a batch already created is not created again, and a file already uploaded is not
uploaded again.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from filebatch_sdk._callbacks import CallbackDispatcher
from filebatch_sdk._inputs import FilesArgument, chunked, iter_file_inputs
from filebatch_sdk._protocol import CreateArguments, Join, Op, Protocol, Spawn, blocking, create_options
from filebatch_sdk._state import ChunkFile, ChunkState, RunState
from filebatch_sdk.errors import BatchNotOpenError, ConflictError
from filebatch_sdk.models import (
    BatchRun,
    BatchStatus,
    CreatedBatch,
    CreatedFile,
    FileResult,
    FileSpec,
    SubmitRun,
    UploadProgress,
)


@dataclass(frozen=True, slots=True)
class SubmitCallbacks:
    """What the caller wants to hear about; each is run by the dispatcher's one thread."""

    on_created: Callable[[CreatedBatch], None] | None = None
    on_upload_progress: Callable[[UploadProgress], None] | None = None
    on_batch_status: Callable[[BatchStatus], None] | None = None
    on_file_complete: Callable[[FileResult], None] | None = None
    on_file_failed: Callable[[FileResult], None] | None = None


@dataclass(frozen=True, slots=True)
class SubmitOptions:
    create_options: Mapping[str, Any]
    name: str | None
    chunk_size: int
    max_batches_in_flight: int
    wait: bool
    timeout: float
    poll_interval: float
    concurrency: int
    part_concurrency: int
    page_size: int


# The API's bound on files per batch.
MAX_CHUNK_SIZE = 10_000


class SubmitArguments(CreateArguments, total=False):
    """`submit`'s keyword arguments (all optional; the defaults in brackets), besides a batch's
    options (`CreateArguments`; `name` names the first batch, the next ones `name-2`, `name-3`...):

    chunk_size: files per batch [100], at most 10,000 (the API's bound).
    max_batches_in_flight: batches open at once [2]; the next batch uploads while the previous
        ones are processed.
    wait: follow each batch to its end and read its results [True].
    timeout: seconds to wait for each batch [600] (`BatchTimeoutError`).
    poll_interval: seconds between status polls [1.0].
    concurrency: files uploaded at a time [8]; part_concurrency: parts of a large file [4].
    page_size: results per request [100].
    state_file: where the run is recorded, to be resumed by the same call [None].
    raise_on_failure: raise `RunFailedError` when some file ended without a result [False].
    on_created, on_upload_progress, on_batch_status, on_file_complete, on_file_failed: callbacks,
        run on the SDK's callback thread.
    """

    chunk_size: int
    max_batches_in_flight: int
    wait: bool
    timeout: float
    poll_interval: float
    concurrency: int
    part_concurrency: int
    page_size: int
    state_file: str | os.PathLike[str] | None
    raise_on_failure: bool
    on_created: Callable[[CreatedBatch], None] | None
    on_upload_progress: Callable[[UploadProgress], None] | None
    on_batch_status: Callable[[BatchStatus], None] | None
    on_file_complete: Callable[[FileResult], None] | None
    on_file_failed: Callable[[FileResult], None] | None


@dataclass(frozen=True, slots=True)
class PreparedSubmit:
    options: SubmitOptions
    callbacks: SubmitCallbacks
    state_file: str | os.PathLike[str] | None
    raise_on_failure: bool


def prepare_submit(arguments: SubmitArguments) -> PreparedSubmit:
    """`submit`'s arguments with their defaults, checked once for both clients."""
    chunk_size = arguments.get("chunk_size", 100)
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be 1 to {MAX_CHUNK_SIZE} files (the API's bound per batch)")
    max_batches_in_flight = arguments.get("max_batches_in_flight", 2)
    if max_batches_in_flight < 1:
        raise ValueError("max_batches_in_flight must be >= 1")
    batch_options = create_options(arguments, skip_duplicates=True)
    # The name goes to each batch with its number (see `_batch_name`).
    batch_options.pop("name", None)
    options = SubmitOptions(
        create_options=batch_options,
        name=arguments.get("name"),
        chunk_size=chunk_size,
        max_batches_in_flight=max_batches_in_flight,
        wait=arguments.get("wait", True),
        timeout=arguments.get("timeout", 600),
        poll_interval=arguments.get("poll_interval", 1.0),
        concurrency=arguments.get("concurrency", 8),
        part_concurrency=arguments.get("part_concurrency", 4),
        page_size=arguments.get("page_size", 100),
    )
    callbacks = SubmitCallbacks(
        on_created=arguments.get("on_created"),
        on_upload_progress=arguments.get("on_upload_progress"),
        on_batch_status=arguments.get("on_batch_status"),
        on_file_complete=arguments.get("on_file_complete"),
        on_file_failed=arguments.get("on_file_failed"),
    )
    return PreparedSubmit(
        options, callbacks, arguments.get("state_file"), arguments.get("raise_on_failure", False)
    )


@contextmanager
def running(prepared: PreparedSubmit) -> Iterator[tuple[CallbackDispatcher, RunState | None]]:
    """The callback thread and the state file of one `submit` call, closed when it ends."""
    with CallbackDispatcher() as dispatcher, open_run_state(prepared.state_file, prepared.options) as state:
        yield dispatcher, state


@contextmanager
def open_run_state(path: str | os.PathLike[str] | None, options: SubmitOptions) -> Iterator[RunState | None]:
    """The run's state file, if the caller asked for one (closed at the end of the run)."""
    if path is None:
        yield None
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    state = RunState.open(Path(path), run_fingerprint=run_fingerprint(options))
    try:
        yield state
    finally:
        state.close()


def run_fingerprint(options: SubmitOptions) -> dict[str, Any]:
    """What a state file must have been written with to be resumed by this call: the options that
    decide how files are split and declared."""
    return {
        "chunk_size": options.chunk_size,
        "name": options.name,
        "create_options": dict(options.create_options),
    }


def retry_failed(protocol: Protocol, run: SubmitRun, options: SubmitOptions) -> Op[SubmitRun]:
    """Run every retryable failed file again (the retry route, one call per batch that has some),
    wait for those batches and read their results again; the other batches are kept as they are."""
    batches: list[BatchRun] = []
    for batch in run.batches:
        retryable = [result.file_id for result in batch.results if result.retryable]
        if not retryable:
            batches.append(batch)
            continue
        yield from protocol.retry_batch(batch.batch_id, retryable)
        again = BatchRun(batch=batch.batch, paths=batch.paths, upload_failures=batch.upload_failures)
        again.status = yield from protocol.wait(
            batch.batch_id, timeout=options.timeout, poll_interval=options.poll_interval
        )
        again.results = yield from protocol.all_results(batch.batch_id, page_size=options.page_size)
        batches.append(again)
    return SubmitRun(batches=batches)


def submit(
    protocol: Protocol,
    files: FilesArgument,
    prepared: PreparedSubmit,
    dispatcher: CallbackDispatcher,
    state: RunState | None,
) -> Op[SubmitRun]:
    """Declare, create, upload and follow every batch of `files`; the run, in input order."""
    options, callbacks = prepared.options, prepared.callbacks
    in_flight: deque[Any] = deque()
    batches: list[BatchRun] = []

    def post(callback: Callable[[Any], None] | None, value: Any) -> None:
        if callback is not None:
            dispatcher.post(callback, value)

    def follow(index: int, run: BatchRun) -> Op[BatchRun]:
        """Wait for the batch's end and read its results (in the background)."""
        if not options.wait:
            return run
        run.status = yield from protocol.wait(
            run.batch_id,
            timeout=options.timeout,
            poll_interval=options.poll_interval,
            on_status=lambda status: post(callbacks.on_batch_status, status),
        )
        run.results = yield from protocol.all_results(run.batch_id, page_size=options.page_size)
        if state is not None:
            state.ended(index, run.status.status)
        for result in run.results:
            ended_badly = result.ended_unsuccessfully
            post(callbacks.on_file_failed if ended_badly else callbacks.on_file_complete, result)
        return run

    for index, chunk in enumerate(chunked(iter_file_inputs(files), options.chunk_size)):
        while len(in_flight) >= options.max_batches_in_flight:
            batches.append((yield Join(in_flight.popleft())))
        paths = [_local_path(item.path, item.source) for item in chunk]
        # Hashed on every run, a resumed one too: the state file's files are checked against them.
        specs = yield from blocking(_declaring(paths))
        recorded: ChunkState | None = None
        if state is not None:
            # Recorded before the create: a crash after the server created the batch repeats the
            # create with the same key, and the server answers the batch it created.
            recorded = state.start_chunk(
                index, [ChunkFile.declared(spec, path) for spec, path in zip(specs, paths, strict=True)]
            )
        if recorded is not None and recorded.batch_id is not None:
            created = yield from _resumed(protocol, recorded, specs)
        else:
            key = recorded.idempotency_key if recorded is not None else str(uuid.uuid4())
            create_options = dict(options.create_options)
            if options.name is not None:
                create_options["name"] = _batch_name(options.name, index)
            created = yield from protocol.create_batch(specs, create_options, key)
            if state is not None:
                state.created(index, created.batch_id, [f.file_id for f in created.files])
        post(callbacks.on_created, created)
        run = BatchRun(batch=created, paths=paths)
        uploaded = recorded.uploaded if recorded is not None else frozenset()
        run.upload_failures = yield from protocol.upload_batch(
            created,
            paths,
            concurrency=options.concurrency,
            part_concurrency=options.part_concurrency,
            on_progress=dispatcher.progress_poster(callbacks.on_upload_progress),
            skip_file_ids=uploaded,
            on_file_uploaded=_recorder(state, index),
        )
        if run.upload_failures:
            # Those files cannot arrive: stop waiting for them, so that the others are processed
            # now and the batch ends (the missing files end as `upload_expired`). Already closed
            # (a resumed run): nothing to do.
            with contextlib.suppress(BatchNotOpenError):
                yield from protocol.close_batch(created.batch_id)
        # The run keeps every batch's files, not their upload instructions (presigned URLs and
        # headers, ~2 KB a file, expired soon anyway): a run of 100,000 files would hold 200 MB.
        run.batch = replace(created, files=[replace(file, upload=None) for file in created.files])
        in_flight.append((yield Spawn(follow(index, run))))
    while in_flight:
        batches.append((yield Join(in_flight.popleft())))
    return SubmitRun(batches=batches)


def _resumed(protocol: Protocol, recorded: ChunkState, specs: list[FileSpec]) -> Op[CreatedBatch]:
    """A batch created by an earlier run of the same call: fresh upload instructions for its files
    still awaiting upload (none once it is processing or ended)."""
    assert recorded.batch_id is not None
    status = yield from protocol.get_batch(recorded.batch_id)
    pending: dict[str, CreatedFile] = {}
    if not status.is_terminal:
        try:
            items = yield from protocol.upload_pages(recorded.batch_id)
        except ConflictError:
            # Ended or closed meanwhile: it takes no more uploads.
            items = []
        pending = {item["file_id"]: CreatedFile.from_json(item) for item in items}
    files = [
        pending.get(file_id)
        or CreatedFile(
            file_id=file_id,
            filename=declared.filename,
            size=declared.size,
            content_type=declared.content_type,
            upload=None,
        )
        for file_id, declared in zip(recorded.file_ids, specs, strict=True)
    ]
    return CreatedBatch(
        batch_id=recorded.batch_id, status=status.status, created_at=status.created_at, files=files
    )


def _declaring(paths: list[Path]) -> Callable[[], list[FileSpec]]:
    return lambda: [FileSpec.from_path(path) for path in paths]


def _recorder(state: RunState | None, index: int) -> Callable[[CreatedFile], None] | None:
    if state is None:
        return None
    return lambda file: state.uploaded(index, file.file_id)


def _local_path(path: Path | None, source: FileSpec | Path) -> Path:
    if path is None:
        raise ValueError(f"submit uploads local files: give the path of {source!r}, not only its FileSpec")
    return path


def _batch_name(name: str, index: int) -> str:
    """The first batch is `name`, the next ones `name-2`, `name-3`... (names are unique per key)."""
    return name if index == 0 else f"{name}-{index + 1}"
