"""The record of a resumable `submit(..., state_file=...)`: what was created and uploaded.

The file is an append-only log in JSON Lines, one record a line, so a crash in the middle of a
write loses at most that last line (ignored, and cut off, when the file is opened again):

    {"record": "run", "version": 1, "fingerprint": {...}}       # first line: which submit wrote it
    {"record": "chunk", "index": 0, "idempotency_key": "...", "files": [{...}, ...]}
    {"record": "created", "index": 0, "batch_id": "..."}
    {"record": "uploaded", "index": 0, "file_id": "f00003"}
    {"record": "ended", "index": 0, "status": "completed"}

A chunk is recorded before its batch is created, with the Idempotency-Key of the create: a crash
between the create and the record of its batch id repeats the create with the same key, and the
server answers it with the batch it already made instead of making a second one.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from filebatch_sdk.errors import StateFileError, StateFileMismatchError
from filebatch_sdk.models import FileSpec

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class ChunkFile:
    """One file as a chunk declared it. `path` is the local file, made absolute (None for a
    `FileSpec` given without a path)."""

    filename: str
    size: int
    sha256: str | None
    path: str | None = None

    @classmethod
    def declared(cls, spec: FileSpec, path: str | os.PathLike[str] | None) -> ChunkFile:
        return cls(
            filename=spec.filename,
            size=spec.size,
            sha256=spec.sha256,
            path=os.path.abspath(path) if path is not None else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {"filename": self.filename, "size": self.size, "sha256": self.sha256, "path": self.path}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChunkFile:
        return cls(filename=data["filename"], size=data["size"], sha256=data["sha256"], path=data["path"])


@dataclass(slots=True)
class ChunkState:
    """What the state file says of one chunk. `RunState.chunk` hands out copies."""

    idempotency_key: str
    files: tuple[ChunkFile, ...]
    batch_id: str | None = None
    uploaded: set[str] = field(default_factory=set)  # file ids
    ended: str | None = None  # the batch's final status
    # The file ids the batch gave `files`, in order (a resumed run needs them to match uploads).
    file_ids: tuple[str, ...] = ()

    def copy(self) -> ChunkState:
        return ChunkState(
            self.idempotency_key, self.files, self.batch_id, set(self.uploaded), self.ended, self.file_ids
        )


class RunState:
    """A submit's state file, open for appending. Safe to share between threads.

    Open it with `RunState.open`; close it (or use it as a context manager) when the run is over.
    """

    def __init__(self, path: Path, log: IO[bytes], chunks: dict[int, ChunkState]) -> None:
        self.path = path
        self._log = log
        self._chunks = chunks
        # One lock for the chunks and the file: uploads finish in worker threads.
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, run_fingerprint: Mapping[str, Any]) -> RunState:
        """Create the state file, or load it to resume the run that wrote it.

        `run_fingerprint` (JSON-ready) holds the options that decide what the run's batches are
        (chunk_size, description options, name, upload method, skip_duplicates...): a file written
        with another fingerprint raises `StateFileMismatchError`. A garbled last line (a write
        cut short by a crash) is dropped; any other line that is not a record raises
        `StateFileError`.
        """
        state_path = Path(path)
        fingerprint = _normalised(run_fingerprint)
        log = state_path.open("a+b")
        try:
            chunks = _load(state_path, log, fingerprint)
        except BaseException:
            log.close()
            raise
        return cls(state_path, log, chunks)

    # ---- reading ------------------------------------------------------------------------------

    def chunk(self, index: int) -> ChunkState | None:
        """A copy of what is recorded of chunk `index`, or None if it was never started."""
        with self._lock:
            recorded = self._chunks.get(index)
            return recorded.copy() if recorded else None

    @property
    def chunk_indexes(self) -> list[int]:
        """The chunks recorded so far, in order."""
        with self._lock:
            return sorted(self._chunks)

    # ---- recording ----------------------------------------------------------------------------

    def start_chunk(
        self, index: int, files: Iterable[ChunkFile], *, idempotency_key: str | None = None
    ) -> ChunkState:
        """Record chunk `index` before its batch is created, and return (a copy of) its state.

        A new chunk is recorded with `idempotency_key` (a fresh UUID if None): create its batch
        with the returned state's key. A chunk already recorded (a resumed run) is returned as it
        was recorded, with its own key, once its files are checked against `files`: the first
        difference (path, size or SHA-256) raises `StateFileMismatchError`.
        """
        declared = tuple(files)
        with self._lock:
            recorded = self._chunks.get(index)
            if recorded is not None:
                _check_files(self.path, index, recorded.files, declared)
                return recorded.copy()
            chunk = ChunkState(idempotency_key=idempotency_key or str(uuid.uuid4()), files=declared)
            record = {
                "record": "chunk",
                "index": index,
                "idempotency_key": chunk.idempotency_key,
                "files": [item.to_json() for item in declared],
            }
            # Synced: losing it to a power cut would make a resumed run create the batch twice.
            self._append(record, sync=True)
            self._chunks[index] = chunk
            return chunk.copy()

    def created(self, index: int, batch_id: str, file_ids: Sequence[str]) -> None:
        """Record the batch that chunk `index` created, and the ids it gave the chunk's files."""
        with self._lock:
            chunk = self._started(index)
            record = {"record": "created", "index": index, "batch_id": batch_id, "file_ids": list(file_ids)}
            self._append(record, sync=True)
            chunk.batch_id = batch_id
            chunk.file_ids = tuple(file_ids)

    def uploaded(self, index: int, file_id: str) -> None:
        """Record that file `file_id` of chunk `index` is uploaded."""
        with self._lock:
            chunk = self._started(index)
            # Flushed, not synced: a flushed line is in the OS's cache and survives the process
            # (a crash, a kill, Ctrl-C: what resuming is for); only an OS crash can lose it, and
            # then the file is uploaded again, harmlessly. A sync per file would cost a disk
            # round trip per file, thousands of them in a large run.
            self._append({"record": "uploaded", "index": index, "file_id": file_id}, sync=False)
            chunk.uploaded.add(file_id)

    def ended(self, index: int, status: str) -> None:
        """Record the final status of chunk `index`'s batch."""
        with self._lock:
            chunk = self._started(index)
            self._append({"record": "ended", "index": index, "status": status}, sync=False)
            chunk.ended = status

    # ---- the file -----------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _started(self, index: int) -> ChunkState:
        chunk = self._chunks.get(index)
        if chunk is None:
            raise ValueError(f"chunk {index} was not started (start_chunk first)")
        return chunk

    def _append(self, record: Mapping[str, Any], *, sync: bool) -> None:
        # One write per line, so a crash cuts at most this line.
        self._log.write(_line(record))
        self._log.flush()
        if sync:
            os.fsync(self._log.fileno())


def _line(record: Mapping[str, Any]) -> bytes:
    return (json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n").encode()


def _normalised(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    # As it reads back from the file (tuples become lists...), so a fresh one compares equal.
    normalised: dict[str, Any] = json.loads(json.dumps(dict(fingerprint), sort_keys=True))
    return normalised


def _load(path: Path, log: IO[bytes], fingerprint: dict[str, Any]) -> dict[int, ChunkState]:
    """Replay the log into chunk states, writing its first line if it is new."""
    log.seek(0)
    lines = log.read().splitlines(keepends=True)
    records: list[tuple[int, dict[str, Any]]] = []
    good_bytes = 0
    for number, raw in enumerate(lines, start=1):
        try:
            record = json.loads(raw)
        except ValueError as error:  # includes a cut UTF-8 sequence
            if number == len(lines):
                break  # the last line, cut short by a crash: dropped
            raise StateFileError(f"{path}:{number}: not a JSON record ({error})") from error
        if not isinstance(record, dict):
            raise StateFileError(f"{path}:{number}: not a JSON object")
        records.append((number, record))
        good_bytes += len(raw)
    # Cut a dropped line off (the next record would be glued to it), and end the last one.
    log.truncate(good_bytes)
    if good_bytes and not lines[len(records) - 1].endswith(b"\n"):
        log.write(b"\n")
    log.flush()
    if not records:
        log.write(_line({"record": "run", "version": FORMAT_VERSION, "fingerprint": fingerprint}))
        log.flush()
        os.fsync(log.fileno())
        return {}
    return _replay(path, records, fingerprint)


def _replay(
    path: Path, records: list[tuple[int, dict[str, Any]]], fingerprint: dict[str, Any]
) -> dict[int, ChunkState]:
    (_, header), *rest = records
    if header.get("record") != "run" or header.get("version") != FORMAT_VERSION:
        raise StateFileError(f"{path}:1: not a filebatch submit state file (version {FORMAT_VERSION})")
    _check_fingerprint(path, header.get("fingerprint"), fingerprint)
    chunks: dict[int, ChunkState] = {}
    for number, record in rest:
        try:
            kind, index = record["record"], record["index"]
            if kind == "chunk":
                if index in chunks:
                    raise ValueError(f"chunk {index} started twice")
                files = tuple(ChunkFile.from_json(item) for item in record["files"])
                chunks[index] = ChunkState(idempotency_key=record["idempotency_key"], files=files)
            elif kind == "created":
                chunks[index].batch_id = record["batch_id"]
                chunks[index].file_ids = tuple(record["file_ids"])
            elif kind == "uploaded":
                chunks[index].uploaded.add(record["file_id"])
            elif kind == "ended":
                chunks[index].ended = record["status"]
            else:
                raise ValueError(f"unknown record {kind!r}")
        except (KeyError, TypeError, ValueError) as error:
            raise StateFileError(f"{path}:{number}: not a record of this run ({error!r})") from error
    return chunks


def _check_fingerprint(path: Path, recorded: Any, wanted: dict[str, Any]) -> None:
    if recorded == wanted:
        return
    recorded = recorded if isinstance(recorded, dict) else {}
    differences = [
        f"{key}: {recorded.get(key)!r} there, {wanted.get(key)!r} here"
        for key in sorted(set(recorded) | set(wanted))
        if recorded.get(key) != wanted.get(key)
    ]
    raise StateFileMismatchError(f"{path} was written by another submit ({'; '.join(differences)})")


def _check_files(
    path: Path, index: int, recorded: tuple[ChunkFile, ...], declared: tuple[ChunkFile, ...]
) -> None:
    for position, (before, now) in enumerate(zip(recorded, declared, strict=False)):
        if before != now:
            raise StateFileMismatchError(
                f"{path}: file {position} of chunk {index} was {_describe(before)}, is now {_describe(now)}"
            )
    if len(recorded) != len(declared):
        raise StateFileMismatchError(
            f"{path}: chunk {index} had {len(recorded)} file(s), now has {len(declared)}"
        )


def _describe(item: ChunkFile) -> str:
    return f"{item.path or item.filename} ({item.size} bytes, sha256 {item.sha256})"
