"""The business vocabulary: batches, files, what was learnt about a file, and how it ended."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from filebatch.plans import DEFAULT_PLAN, PlanName

TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
BATCH_ID_PATTERN = r"^b-[0-9a-f]{32}$"
FILE_ID_PATTERN = r"^f[0-9]{5}$"
UPLOAD_PREFIX = "uploads/"
MANIFEST_PREFIX = "manifests/"

_UPLOAD_KEY = re.compile(
    r"^uploads/(?P<tenant_id>[a-z0-9][a-z0-9-]{0,62})/(?P<batch_id>b-[0-9a-f]{32})/(?P<file_id>f[0-9]{5})$"
)


class BatchStatus(StrEnum):
    AWAITING_UPLOAD = "awaiting_upload"
    PROCESSING = "processing"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in {BatchStatus.COMPLETED, BatchStatus.COMPLETED_WITH_ERRORS, BatchStatus.FAILED}


class FileStatus(StrEnum):
    AWAITING_UPLOAD = "awaiting_upload"
    UPLOADED = "uploaded"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in {FileStatus.COMPLETED, FileStatus.FAILED}


def file_id_for(position: int) -> str:
    """Files are numbered in the order the client listed them, so results come back in that order."""
    return f"f{position:05d}"


def upload_key(tenant_id: str, batch_id: str, file_id: str) -> str:
    """Where a file's bytes live. No client-chosen text goes into keys."""
    return f"{UPLOAD_PREFIX}{tenant_id}/{batch_id}/{file_id}"


def manifest_key(tenant_id: str, batch_id: str) -> str:
    return f"{MANIFEST_PREFIX}{tenant_id}/{batch_id}.json"


class FileRef(BaseModel):
    """Which file an S3 object key belongs to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: str
    batch_id: str
    file_id: str


def parse_upload_key(key: str) -> FileRef | None:
    """The file an object key names, or None for keys that are not uploads (manifests, results)."""
    match = _UPLOAD_KEY.match(key)
    return FileRef(**match.groupdict()) if match else None


class FileFacts(BaseModel):
    """What the process step verified about the stored bytes."""

    model_config = ConfigDict(extra="forbid")

    size_bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    detected_content_type: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class TokenUsage(BaseModel):
    """Tokens a model call was billed for."""

    model_config = ConfigDict(extra="forbid")

    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)


class ModelInvocation(BaseModel):
    """The model call behind a description: which model, what it cost, how long it took, why it stopped."""

    model_config = ConfigDict(extra="forbid")

    model_id: str
    usage: TokenUsage
    # As the model service measured it (Converse `metrics.latencyMs`).
    latency_ms: int = Field(ge=0)
    stop_reason: str


class Description(BaseModel):
    """A provider's account of one file: a sentence for people, attributes for programs."""

    model_config = ConfigDict(extra="forbid")

    provider: str
    text: str
    attributes: dict[str, Any] = Field(default_factory=dict)
    # Providers that call a hosted model say which call; the local provider calls none.
    invocation: ModelInvocation | None = None


class FileError(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str
    message: str
    retryable: bool


DetailLevel = Literal["brief", "standard", "detailed"]
# A well-formed BCP 47 tag without extensions or private use (RFC 5646 langtag): language, then
# optional script, region and variants. "en", "pt-BR", "zh-Hant-TW", "sr-Latn".
LANGUAGE_TAG_PATTERN = (
    r"^[A-Za-z]{2,3}(-[A-Za-z]{4})?(-(?:[A-Za-z]{2}|[0-9]{3}))?(-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*$"
)
MAX_PROMPT_CHARS = 2000


class DescriptionInstructions(BaseModel):
    """What the user asks of the describing model for one batch. The prompt is added to the system
    prompt as the user's instructions; it never replaces it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str | None = None
    language: str | None = None
    detail: DetailLevel = "standard"

    def given(self) -> list[str]:
        """The instructions the user actually gave (a default detail is not one)."""
        given = {"prompt": self.prompt is not None, "language": self.language is not None}
        given["detail"] = self.detail != "standard"
        return [name for name, was_given in given.items() if was_given]


# None asked for: the provider's own defaults.
DEFAULT_INSTRUCTIONS = DescriptionInstructions()

# -- batch names and metadata (issue 8, stream CREATE) ----------------------------------------------
# A name is the client's own handle on a batch, unique per tenant among the batches that still exist;
# metadata is a few string pairs the API stores and echoes, never reads. Printable: no C0 control
# character and no DEL (the filename rule).
PRINTABLE_PATTERN = r"^[^\x00-\x1f\x7f]+$"
MAX_NAME_CHARS = 128
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 256


class Batch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: str
    batch_id: str
    status: BatchStatus
    total: int = Field(ge=1)
    uploaded: int = Field(default=0, ge=0)
    completed: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    # Model tokens of the files described so far (counted with each file's result, once).
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    instructions: DescriptionInstructions = Field(default_factory=DescriptionInstructions)
    # When DynamoDB's TTL removes the batch (see records.py). None only for batches created before
    # retention existed; every new batch has one.
    expires_at: datetime | None = None
    # The client's name for the batch (unique per tenant while the batch exists) and its metadata.
    name: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)

    @property
    def terminal_files(self) -> int:
        return self.completed + self.failed

    @property
    def progress_percentage(self) -> float:
        return round(100.0 * self.terminal_files / self.total, 1)

    @property
    def all_uploaded(self) -> bool:
        return self.uploaded >= self.total

    def final_status(self) -> BatchStatus:
        """The terminal status once every file is terminal."""
        if self.failed == 0:
            return BatchStatus.COMPLETED
        if self.completed == 0:
            return BatchStatus.FAILED
        return BatchStatus.COMPLETED_WITH_ERRORS


class BatchFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: str
    batch_id: str
    file_id: str
    filename: str
    declared_size: int
    declared_content_type: str
    status: FileStatus
    uploaded_at: datetime | None = None
    # The S3 object version the upload event announced: the bytes that are verified and described.
    uploaded_version_id: str | None = None
    finished_at: datetime | None = None
    facts: FileFacts | None = None
    description: Description | None = None
    error: FileError | None = None
    # The batch's expiry: a file item goes when its batch does.
    expires_at: datetime | None = None

    @property
    def object_key(self) -> str:
        return upload_key(self.tenant_id, self.batch_id, self.file_id)


class TenantUsage(BaseModel):
    """What counts against a tenant's plan: batches not yet ended, files declared this month."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    open_batches: int = 0
    files_this_month: int = 0


class Tenant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    plan: PlanName = DEFAULT_PLAN
