"""Typed views of the REST API's JSON bodies, as small frozen dataclasses.

They mirror the API field for field (see the API reference), so `to_json(obj)` gives back the
API's shape. Parsing ignores fields it does not know and keeps statuses as plain strings, so an
older SDK keeps working when the service adds a field or a status. Compare statuses with the
`BatchState` / `FileState` constants::

    if result.status == FileState.COMPLETED:
        print(result.description.text if result.description else "")
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path, PurePath
from typing import Any

from filebatch_sdk.errors import InvalidFileError, RunFailedError, UploadFailure

OCTET_STREAM = "application/octet-stream"

# mimetypes reads the machine's /etc/mime.types and differs between Python versions (.webp only
# arrived in 3.13, .bmp was image/x-ms-bmp for years): the types people batch most often are
# pinned here so a batch declares the same content type wherever the SDK runs.
CONTENT_TYPE_OVERRIDES: Mapping[str, str] = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".jpe": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".avif": "image/avif",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}

# mimetypes reports "x.tar.gz" as (application/x-tar, gzip): the bytes on the wire are gzip, so
# the declared type must be the compression's, or the service's type check would reject the file.
_COMPRESSION_TYPES: Mapping[str, str] = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "compress": "application/x-compress",
}


class BatchState(StrEnum):
    """Values of a batch's `status`. The last five are terminal: the batch no longer changes
    unless it is retried."""

    AWAITING_UPLOAD = "awaiting_upload"
    PROCESSING = "processing"
    # Cancel was asked for; files still being described finish first, then it becomes cancelled.
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # The upload window closed with nothing uploaded.
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_BATCH_STATES


class FileState(StrEnum):
    """Values of a file result's `status`. The last five are terminal."""

    AWAITING_UPLOAD = "awaiting_upload"
    UPLOADED = "uploaded"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # The batch's upload window closed (close, or the URLs expired) before this file arrived.
    UPLOAD_EXPIRED = "upload_expired"
    # Not processed on purpose (e.g. a duplicate).
    SKIPPED = "skipped"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_FILE_STATES


# Plain strings compare equal to these members, so `status in TERMINAL_BATCH_STATES` works on the
# `status` field of any model, whatever the server sent.
TERMINAL_BATCH_STATES: frozenset[str] = frozenset(
    {
        BatchState.COMPLETED,
        BatchState.COMPLETED_WITH_ERRORS,
        BatchState.FAILED,
        BatchState.CANCELLED,
        BatchState.EXPIRED,
    }
)
TERMINAL_FILE_STATES: frozenset[str] = frozenset(
    {
        FileState.COMPLETED,
        FileState.FAILED,
        FileState.CANCELLED,
        FileState.UPLOAD_EXPIRED,
        FileState.SKIPPED,
    }
)


def guess_content_type(filename: str) -> str:
    """The content type to declare for `filename`, from its extension.

    Common image types come from `CONTENT_TYPE_OVERRIDES`, everything else from `mimetypes`, and
    unknown extensions fall back to application/octet-stream.
    """
    name = PurePath(filename).name
    pinned = CONTENT_TYPE_OVERRIDES.get(PurePath(name).suffix.lower())
    if pinned:
        return pinned
    guessed, encoding = mimetypes.guess_type(name, strict=False)
    if encoding:
        return _COMPRESSION_TYPES.get(encoding, OCTET_STREAM)
    return guessed.lower() if guessed else OCTET_STREAM


def _datetime(value: str) -> datetime:
    # The API sends ISO 8601 with a "Z" suffix, which fromisoformat reads since Python 3.11.
    return datetime.fromisoformat(value)


def _optional_datetime(value: str | None) -> datetime | None:
    return _datetime(value) if value else None


def to_json(value: Any) -> Any:
    """`value` (a model, or lists/dicts of them) as JSON-ready data in the API's own shape."""
    if is_dataclass(value) and not isinstance(value, type):
        # Fields named "_..." are the SDK's own bookkeeping, not part of the API's shape.
        return {f.name: to_json(getattr(value, f.name)) for f in fields(value) if not f.name.startswith("_")}
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


@dataclass(frozen=True, slots=True)
class FileSpec:
    """One file to declare in `POST /v1/batches`. Usually built with `FileSpec.from_path`.

    `sha256` (hex) is the digest of the bytes that will be uploaded: S3 refuses an upload whose
    bytes differ from it, and the service fails such a file with `checksum_mismatch`."""

    filename: str
    size: int
    content_type: str
    # With `skip_duplicates`, a file whose hash the API already has a result for is not uploaded.
    sha256: str | None = None

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], *, content_type: str | None = None) -> FileSpec:
        """Declare a local file: its name, its size on disk, a content type from its extension, and
        its SHA-256 (read through once, a block at a time: never the whole file in memory)."""
        local = Path(path)
        try:
            stat = local.stat()
        except OSError as error:
            raise InvalidFileError(f"{local}: cannot read file ({error.strerror or error})") from error
        if not local.is_file():
            raise InvalidFileError(f"{local}: not a regular file")
        if stat.st_size == 0:
            # The API requires size >= 1; failing here names the file instead of a schema error.
            raise InvalidFileError(f"{local}: empty files cannot be submitted")
        try:
            with local.open("rb") as content:
                digest = hashlib.file_digest(content, "sha256").hexdigest()
        except OSError as error:
            raise InvalidFileError(f"{local}: cannot read file ({error.strerror or error})") from error
        return cls(
            filename=local.name,
            size=stat.st_size,
            content_type=content_type or guess_content_type(local.name),
            sha256=digest,
        )

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "filename": self.filename,
            "size": self.size,
            "content_type": self.content_type,
        }
        if self.sha256 is not None:
            body["sha256"] = self.sha256
        return body


@dataclass(frozen=True, slots=True)
class UploadInstruction:
    """How to upload one file. PUT: send its raw bytes to `url` with exactly these `headers`.
    POST (a batch created with upload_method "POST", for browsers): send `fields`, in order, then
    the file as the form field `file`, as multipart/form-data to `url`."""

    method: str
    url: str
    headers: dict[str, str]
    expires_at: datetime
    fields: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UploadInstruction:
        return cls(
            method=data.get("method", "PUT"),
            url=data["url"],
            headers=dict(data.get("headers") or {}),
            expires_at=_datetime(data["expires_at"]),
            fields=dict(data.get("fields") or {}),
        )


@dataclass(frozen=True, slots=True)
class DuplicateOf:
    """The earlier file (same bytes, same description settings) whose result a file took."""

    batch_id: str
    file_id: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> DuplicateOf | None:
        return cls(batch_id=data["batch_id"], file_id=data["file_id"]) if data else None


@dataclass(frozen=True, slots=True)
class UploadPart:
    """A presigned PUT of one part: bytes (part_number - 1) * part_size onwards, part_size of them
    (the last part: what is left)."""

    part_number: int
    url: str
    headers: dict[str, str]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UploadPart:
        return cls(part_number=data["part_number"], url=data["url"], headers=dict(data.get("headers") or {}))


@dataclass(frozen=True, slots=True)
class MultipartInstruction:
    """How to upload a large file: in `part_count` parts of `part_size` bytes, PUT to presigned
    URLs (the first page is here, the rest at the parts route), then completed (issue 10)."""

    method: str
    upload_id: str
    part_size: int
    part_count: int
    parts: list[UploadPart]
    next_parts_cursor: str | None
    expires_at: datetime
    # "SHA256": every part carries its SHA-256, signed into its URL (POST .../parts with the digests).
    part_checksum: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MultipartInstruction:
        return cls(
            method=data["method"],
            upload_id=data["upload_id"],
            part_size=data["part_size"],
            part_count=data["part_count"],
            parts=[UploadPart.from_json(p) for p in data.get("parts") or []],
            next_parts_cursor=data.get("next_parts_cursor"),
            expires_at=_datetime(data["expires_at"]),
            part_checksum=data.get("part_checksum"),
        )


@dataclass(frozen=True, slots=True)
class HeldPart:
    """A part the storage already holds: not sent again."""

    part_number: int
    etag: str
    size: int
    checksum_sha256: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HeldPart:
        return cls(
            part_number=data["part_number"],
            etag=data["etag"],
            size=data["size"],
            checksum_sha256=data.get("checksum_sha256"),
        )


@dataclass(frozen=True, slots=True)
class PartsPage:
    """One page of GET /v1/batches/{id}/files/{file_id}/parts."""

    batch_id: str
    file_id: str
    upload_id: str
    part_size: int
    part_count: int
    uploaded: list[HeldPart]
    parts: list[UploadPart]
    next_cursor: str | None
    part_checksum: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PartsPage:
        return cls(
            batch_id=data["batch_id"],
            file_id=data["file_id"],
            upload_id=data["upload_id"],
            part_size=data["part_size"],
            part_count=data["part_count"],
            uploaded=[HeldPart.from_json(p) for p in data.get("uploaded") or []],
            parts=[UploadPart.from_json(p) for p in data.get("parts") or []],
            next_cursor=data.get("next_cursor"),
            part_checksum=data.get("part_checksum"),
        )


def upload_instruction(data: Mapping[str, Any]) -> UploadInstruction | MultipartInstruction:
    """The instruction for its `method`: one request of the whole file, or a multipart upload."""
    if data.get("method") == "MULTIPART":
        return MultipartInstruction.from_json(data)
    return UploadInstruction.from_json(data)


@dataclass(frozen=True, slots=True)
class CreatedFile:
    """A file of a newly created batch. `file_id`s follow the order the files were declared in.
    `upload` is None for a file skipped as a duplicate (`duplicate_of` says of which file)."""

    file_id: str
    filename: str
    size: int
    content_type: str
    upload: UploadInstruction | MultipartInstruction | None
    duplicate_of: DuplicateOf | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CreatedFile:
        return cls(
            file_id=data["file_id"],
            filename=data["filename"],
            size=data["size"],
            content_type=data["content_type"],
            upload=upload_instruction(data["upload"]) if data.get("upload") else None,
            duplicate_of=DuplicateOf.from_json(data.get("duplicate_of")),
        )


@dataclass(frozen=True, slots=True)
class CreatedBatch:
    """The answer to `POST /v1/batches`: the batch id and one upload instruction per file."""

    batch_id: str
    status: str
    created_at: datetime
    files: list[CreatedFile]
    # As given to create_batch (servers before batch names and webhooks send none).
    name: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    webhook_url: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CreatedBatch:
        return cls(
            batch_id=data["batch_id"],
            status=data["status"],
            created_at=_datetime(data["created_at"]),
            files=[CreatedFile.from_json(item) for item in data["files"]],
            name=data.get("name"),
            metadata=dict(data.get("metadata") or {}),
            webhook_url=data.get("webhook_url"),
        )


@dataclass(frozen=True, slots=True)
class BatchCounts:
    """How many of the batch's files are in each state (they add up to `total`).

    Servers before the batch lifecycle send only total, uploaded, completed and failed (and count
    in `uploaded` every file that ever arrived); the other states then read as 0.
    """

    total: int
    uploaded: int
    completed: int
    failed: int
    awaiting_upload: int = 0
    processing: int = 0
    cancelled: int = 0
    upload_expired: int = 0
    skipped: int = 0

    @property
    def finished(self) -> int:
        """Files with a final result: completed, failed, cancelled, upload_expired or skipped."""
        return self.completed + self.failed + self.cancelled + self.upload_expired + self.skipped

    def by_state(self) -> dict[str, int]:
        """The states that have files, in `FileState` order, e.g. {"completed": 9, "failed": 1}."""
        counts = {state.value: getattr(self, state.value) for state in FileState}
        return {state: n for state, n in counts.items() if n}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchCounts:
        return cls(
            total=int(data["total"]),
            **{state.value: int(data.get(state.value, 0)) for state in FileState},
        )


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Model tokens billed (the bedrock provider); zero with the local provider."""

    input_tokens: int = 0
    output_tokens: int = 0

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> TokenUsage:
        data = data or {}
        return cls(
            input_tokens=int(data.get("input_tokens", 0)), output_tokens=int(data.get("output_tokens", 0))
        )


@dataclass(frozen=True, slots=True)
class DescriptionOptions:
    """What to ask of the describing model for every file of a batch (all optional)."""

    prompt: str | None = None
    language: str | None = None  # BCP 47, e.g. "en", "pt-BR"
    detail: str = "standard"  # "brief" | "standard" | "detailed"

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"detail": self.detail}
        if self.prompt is not None:
            body["prompt"] = self.prompt
        if self.language is not None:
            body["language"] = self.language
        return body


@dataclass(frozen=True, slots=True)
class DescriptionSettings:
    """A batch's description instructions as the server stored them, and which its provider ignores."""

    provider: str
    prompt: str | None
    language: str | None
    detail: str
    ignored: tuple[str, ...]
    note: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DescriptionSettings:
        return cls(
            provider=data["provider"],
            prompt=data.get("prompt"),
            language=data.get("language"),
            detail=data.get("detail", "standard"),
            ignored=tuple(data.get("ignored", ())),
            note=data.get("note"),
        )


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """`GET /v1/batches/{batch_id}`: where a batch stands.

    Fields after `description` came with the batch lifecycle; from older servers they keep their
    defaults.
    """

    batch_id: str
    status: str
    is_terminal: bool
    counts: BatchCounts
    progress_percentage: float
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    # The tokens of the files described so far (servers before token accounting send none: zero).
    usage: TokenUsage = TokenUsage()
    # None from servers that predate per-batch instructions.
    description: DescriptionSettings | None = None
    name: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    webhook_url: str | None = None
    # 0 for the first run, n after the n-th `retry_batch`.
    retries: int = 0
    # The server's estimate of the seconds left while processing; None when it has none yet.
    eta_seconds: int | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchStatus:
        status = data["status"]
        eta = data.get("eta_seconds")
        return cls(
            batch_id=data["batch_id"],
            status=status,
            # A status this SDK knows as terminal is terminal whatever else the body says.
            is_terminal=bool(data.get("is_terminal")) or status in TERMINAL_BATCH_STATES,
            counts=BatchCounts.from_json(data["counts"]),
            progress_percentage=float(data["progress_percentage"]),
            created_at=_datetime(data["created_at"]),
            updated_at=_datetime(data["updated_at"]),
            finished_at=_optional_datetime(data.get("finished_at")),
            usage=TokenUsage.from_json(data.get("usage")),
            description=DescriptionSettings.from_json(data["description"])
            if data.get("description")
            else None,
            name=data.get("name"),
            metadata=dict(data.get("metadata") or {}),
            webhook_url=data.get("webhook_url"),
            retries=int(data.get("retries") or 0),
            eta_seconds=round(eta) if eta is not None else None,
        )


@dataclass(frozen=True, slots=True)
class BatchesPage:
    """One page of `GET /v1/batches`, newest first; `next_cursor` is None on the last page."""

    items: list[BatchStatus]
    next_cursor: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchesPage:
        return cls(
            items=[BatchStatus.from_json(item) for item in data["items"]],
            next_cursor=data.get("next_cursor") or None,
        )


@dataclass(frozen=True, slots=True)
class BatchRetry:
    """`POST /v1/batches/{batch_id}/retry`: a new run of the batch's failed (or named) files."""

    batch_id: str
    retry: int  # the new value of BatchStatus.retries
    execution_name: str
    file_ids: list[str]
    status: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchRetry:
        return cls(
            batch_id=data["batch_id"],
            retry=int(data["retry"]),
            execution_name=data["execution_name"],
            file_ids=list(data.get("file_ids") or []),
            status=data["status"],
        )


@dataclass(frozen=True, slots=True)
class DeletedBatch:
    """`DELETE /v1/batches/{batch_id}`: deletion started; the batch then answers 404 everywhere."""

    batch_id: str
    status: str  # "deleting"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeletedBatch:
        return cls(batch_id=data["batch_id"], status=data["status"])


@dataclass(frozen=True, slots=True)
class ExportInfo:
    """`GET /v1/batches/{batch_id}/export`: where to download every result as JSON Lines.

    `url` is a presigned GET, good until `expires_at` (`FilebatchClient.download_export` fetches
    it); each line is one `FileResult` (read them with `iter_export_file`).
    """

    batch_id: str
    url: str
    expires_at: datetime
    files: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExportInfo:
        return cls(
            batch_id=data["batch_id"],
            url=data["url"],
            expires_at=_datetime(data["expires_at"]),
            files=int(data["files"]),
        )


@dataclass(frozen=True, slots=True)
class WebhookSecret:
    """`POST /v1/webhooks/secret`: the tenant's new webhook signing secret ("whsec_...").

    Shown once: store it now. The previous secret keeps signing alongside it for 24 hours.
    """

    secret: str = field(repr=False)  # kept out of repr, so it does not end up in logs
    created_at: datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WebhookSecret:
        return cls(secret=data["secret"], created_at=_datetime(data["created_at"]))


@dataclass(frozen=True, slots=True)
class Description:
    """What the description provider said about a file: `text` for people, `attributes` for code."""

    provider: str
    text: str
    attributes: dict[str, Any]
    # The model call behind it (model_id, usage, latency_ms, stop_reason); None for the local provider.
    invocation: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Description:
        attributes = dict(data.get("attributes") or {})
        invocation = data.get("invocation")
        return cls(
            provider=data["provider"],
            text=data["text"],
            attributes=attributes,
            invocation=dict(invocation) if invocation else None,
        )


@dataclass(frozen=True, slots=True)
class FileError:
    """Why a file failed. `retryable` files may succeed if submitted again."""

    code: str
    message: str
    retryable: bool

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileError:
        return cls(code=data["code"], message=data["message"], retryable=bool(data.get("retryable", False)))


@dataclass(frozen=True, slots=True)
class FileResult:
    """One file's outcome, from `GET /v1/batches/{batch_id}/results`."""

    file_id: str
    filename: str
    status: str
    declared_size: int
    declared_content_type: str
    size_bytes: int | None
    sha256: str | None
    detected_content_type: str | None
    description: Description | None
    error: FileError | None
    uploaded_at: datetime | None
    finished_at: datetime | None
    # The SHA-256 the file declared (hex), if any; `sha256` is what was uploaded.
    declared_sha256: str | None = None
    # Whose result this is when it was not made for this file (a skipped or reused duplicate).
    duplicate_of: DuplicateOf | None = None

    @property
    def ok(self) -> bool:
        return self.status == FileState.COMPLETED

    @property
    def failed(self) -> bool:
        return self.status == FileState.FAILED

    @property
    def ended_unsuccessfully(self) -> bool:
        """Ended without a result: failed, cancelled, or never uploaded (upload_expired)."""
        return self.status in (FileState.FAILED, FileState.CANCELLED, FileState.UPLOAD_EXPIRED)

    @property
    def retryable(self) -> bool:
        """Failed, but for a reason that may pass on another attempt (throttling, timeouts)."""
        return self.failed and self.error is not None and self.error.retryable

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileResult:
        description = data.get("description")
        error = data.get("error")
        return cls(
            file_id=data["file_id"],
            filename=data["filename"],
            status=data["status"],
            declared_size=data["declared_size"],
            declared_content_type=data["declared_content_type"],
            size_bytes=data.get("size_bytes"),
            sha256=data.get("sha256"),
            detected_content_type=data.get("detected_content_type"),
            description=Description.from_json(description) if description else None,
            error=FileError.from_json(error) if error else None,
            uploaded_at=_optional_datetime(data.get("uploaded_at")),
            finished_at=_optional_datetime(data.get("finished_at")),
            declared_sha256=data.get("declared_sha256"),
            duplicate_of=DuplicateOf.from_json(data.get("duplicate_of")),
        )


@dataclass(frozen=True, slots=True)
class ResultsPage:
    """One page of results. Pass `next_cursor` back to get the next page; None means the last page."""

    batch_id: str
    items: list[FileResult]
    next_cursor: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResultsPage:
        return cls(
            batch_id=data["batch_id"],
            items=[FileResult.from_json(item) for item in data["items"]],
            next_cursor=data.get("next_cursor") or None,
        )


def iter_export_file(path: str | os.PathLike[str]) -> Iterator[FileResult]:
    """The `FileResult`s of a downloaded export (JSON Lines, one result per line), read lazily.

    Blank lines are skipped; a line that is not a result raises ValueError naming the line.
    """
    with Path(path).open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                result = FileResult.from_json(data)
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                raise ValueError(
                    f"{path}:{number}: not a file result ({type(error).__name__}: {error})"
                ) from error
            yield result


@dataclass(frozen=True, slots=True)
class UploadProgress:
    """Where an upload stands, reported for the file `file_id`.

    `files_*` and `bytes_*` are overall (every file of the upload, or of the whole submit);
    `file_bytes_*` are this file's. Reporters that send them do so while the file uploads, not
    only once it finished; the file's last report has `file_bytes_done == file_bytes_total`.
    Reporters that do not (left at 0) report once per file, after it finished.
    """

    file_id: str
    filename: str
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    file_bytes_done: int = 0
    file_bytes_total: int = 0
    # The batch the file belongs to (a submit of several batches reports them all).
    batch_id: str = ""

    @property
    def percentage(self) -> float:
        """Overall bytes done, in percent."""
        return round(100.0 * self.bytes_done / self.bytes_total, 1) if self.bytes_total else 100.0

    @property
    def file_percentage(self) -> float:
        """This file's bytes done, in percent."""
        if not self.file_bytes_total:
            return 100.0
        return round(100.0 * self.file_bytes_done / self.file_bytes_total, 1)

    @property
    def file_finished(self) -> bool:
        """This is the file's last report: all its bytes are uploaded."""
        return self.file_bytes_done >= self.file_bytes_total


def _summary(results: Iterable[FileResult]) -> dict[str, int]:
    """Number of files per status, known statuses in `FileState` order, then others by name."""
    counts = Counter(result.status for result in results)
    known = [state.value for state in FileState if state.value in counts]
    return {status: counts[status] for status in [*known, *sorted(set(counts) - set(known))]}


@dataclass(slots=True)
class BatchRun:
    """One batch of a `submit` (`SubmitRun.batches`): the batch, its files' paths, its final
    status and every file's result.

    With `submit(..., wait=False)` only `batch` and `paths` are set; `status` is None and
    `results` empty.
    """

    batch: CreatedBatch
    paths: list[Path]
    status: BatchStatus | None = None
    results: list[FileResult] = field(default_factory=list)
    # Files whose upload still failed after retries (`submit`): they end `upload_expired`.
    upload_failures: list[UploadFailure] = field(default_factory=list)

    @property
    def batch_id(self) -> str:
        return self.batch.batch_id

    @property
    def ok(self) -> bool:
        """True when the batch finished and every file completed."""
        return self.status is not None and self.status.status == BatchState.COMPLETED

    @property
    def has_failures(self) -> bool:
        return any(result.failed for result in self.results)

    def summary(self) -> dict[str, int]:
        """Number of files per status, e.g. {"completed": 9, "failed": 1}."""
        return _summary(self.results)

    def completed(self) -> list[FileResult]:
        return [result for result in self.results if result.ok]

    def failed(self) -> list[FileResult]:
        return [result for result in self.results if result.failed]

    def retryable(self) -> list[FileResult]:
        """Failed files worth submitting again.

        To resubmit them: `client.submit([run.path_for(r) for r in run.retryable()])`.
        """
        return [result for result in self.results if result.retryable]

    def path_for(self, result: FileResult | CreatedFile) -> Path:
        """The local file a result belongs to (file ids follow the order the paths were given in)."""
        for created, path in zip(self.batch.files, self.paths, strict=True):
            if created.file_id == result.file_id:
                return path
        raise KeyError(result.file_id)


@dataclass(slots=True)
class SubmitRun:
    """What a chunked `submit` did: one `BatchRun` per chunk of files, in input order.

    `results` are every file's result in the order the files were given, across batches. File ids
    repeat from one batch to the next, so `path_for` finds a result by identity: pass it results
    (or created files) of this run.
    """

    batches: list[BatchRun] = field(default_factory=list)
    # id(result or created file) -> its batch; rebuilt when it misses (see `_batch_of`).
    _owners: dict[int, BatchRun] = field(default_factory=dict, init=False, repr=False, compare=False)
    # How the client that made the run retries it (set by `submit`).
    _retry: Callable[[SubmitRun], SubmitRun] | None = field(default=None, repr=False, compare=False)
    _aretry: Callable[[SubmitRun], Awaitable[SubmitRun]] | None = field(
        default=None, repr=False, compare=False
    )

    def bind_retry(self, retry: Callable[[SubmitRun], SubmitRun]) -> None:
        self._retry = retry

    def bind_async_retry(self, retry: Callable[[SubmitRun], Awaitable[SubmitRun]]) -> None:
        self._aretry = retry

    def retry_failed(self) -> SubmitRun:
        """Run every retryable failed file again (the retry route, once per batch with some), wait
        for them, and return the run with their new results. For a run of `FilebatchClient`;
        with `AsyncFilebatchClient`, `await run.aretry_failed()`."""
        if self._retry is None:
            raise TypeError(
                "this run was not made by FilebatchClient.submit (async: await run.aretry_failed())"
            )
        return self._retry(self)

    async def aretry_failed(self) -> SubmitRun:
        """`retry_failed` for a run of `AsyncFilebatchClient.submit`."""
        if self._aretry is None:
            raise TypeError("this run was not made by AsyncFilebatchClient.submit (use run.retry_failed())")
        return await self._aretry(self)

    @property
    def upload_failures(self) -> list[UploadFailure]:
        """Files whose upload still failed after retries, across batches (they end `upload_expired`)."""
        return [failure for run in self.batches for failure in run.upload_failures]

    @property
    def results(self) -> list[FileResult]:
        """Every file's result, in input order (empty for batches submitted without waiting)."""
        ordered: list[FileResult] = []
        for run in self.batches:
            position = {created.file_id: index for index, created in enumerate(run.batch.files)}
            ordered += sorted(run.results, key=lambda result: position.get(result.file_id, len(position)))
        return ordered

    @property
    def batch_ids(self) -> list[str]:
        return [run.batch_id for run in self.batches]

    @property
    def ok(self) -> bool:
        """True when every batch finished and every file completed."""
        return all(run.ok for run in self.batches)

    @property
    def has_failures(self) -> bool:
        """Some file ended without a result (see `failed`)."""
        return any(result.ended_unsuccessfully for run in self.batches for result in run.results)

    def summary(self) -> dict[str, int]:
        """Number of files per status across every batch, e.g. {"completed": 990, "failed": 10}."""
        return _summary(result for run in self.batches for result in run.results)

    def completed(self) -> list[FileResult]:
        return [result for result in self.results if result.ok]

    def failed(self) -> list[FileResult]:
        """Every file that ended without a result: failed, cancelled, or never uploaded
        (`upload_expired`, e.g. an upload that failed after retries: see `upload_failures`)."""
        return [result for result in self.results if result.ended_unsuccessfully]

    def retryable(self) -> list[FileResult]:
        """Failed files worth running again (`retry_failed()`).

        Or to submit them again: `client.submit([run.path_for(r) for r in run.retryable()])`.
        """
        return [result for result in self.results if result.retryable]

    def path_for(self, result: FileResult | CreatedFile) -> Path:
        """The local file a result (or created file) of this run belongs to."""
        return self._batch_of(result).path_for(result)

    def raise_for_failures(self) -> None:
        """Raise `RunFailedError` carrying every failed result, if any file failed."""
        failures = self.failed()
        if failures:
            raise RunFailedError(failures, total=sum(len(run.batch.files) for run in self.batches))

    def _batch_of(self, item: FileResult | CreatedFile) -> BatchRun:
        owner = self._owners.get(id(item))
        if owner is None or not _holds(owner, item):
            # Built once for every item, so finding the paths of many results stays linear.
            self._owners = {
                id(held): run for run in self.batches for held in [*run.results, *run.batch.files]
            }
            owner = self._owners.get(id(item))
        if owner is None or not _holds(owner, item):
            raise KeyError(item.file_id)
        return owner


def _holds(run: BatchRun, item: FileResult | CreatedFile) -> bool:
    return any(held is item for held in [*run.results, *run.batch.files])
