"""The business vocabulary: batches, files, what was learnt about a file, and how it ended."""

from __future__ import annotations

import base64
import binascii
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
# Where the workflow's Distributed Map writes its results (ResultWriter, per batch) and where a
# batch's results export goes (one JSONL file, written when the batch ends).
WORKFLOW_RESULTS_PREFIX = "workflow-results/"
EXPORT_PREFIX = "exports/"

_UPLOAD_KEY = re.compile(
    r"^uploads/(?P<tenant_id>[a-z0-9][a-z0-9-]{0,62})/(?P<batch_id>b-[0-9a-f]{32})/(?P<file_id>f[0-9]{5})$"
)


class BatchStatus(StrEnum):
    AWAITING_UPLOAD = "awaiting_upload"
    PROCESSING = "processing"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # The upload window closed with nothing uploaded.
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_BATCH_STATES


_TERMINAL_BATCH_STATES = frozenset(
    {
        BatchStatus.COMPLETED,
        BatchStatus.COMPLETED_WITH_ERRORS,
        BatchStatus.FAILED,
        BatchStatus.CANCELLED,
        BatchStatus.EXPIRED,
    }
)


class FileStatus(StrEnum):
    AWAITING_UPLOAD = "awaiting_upload"
    UPLOADED = "uploaded"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # The batch's upload window closed (close, or the URLs expired) before this file arrived.
    UPLOAD_EXPIRED = "upload_expired"
    # Not uploaded on purpose: a duplicate of a file the tenant already completed (issue 10), its
    # result copied from that file at create.
    SKIPPED = "skipped"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_FILE_STATES

    @property
    def counter(self) -> str:
        """The batch item's attribute counting the files in this state (see records.py)."""
        return f"n_{self.value}"


_TERMINAL_FILE_STATES = frozenset(
    {
        FileStatus.COMPLETED,
        FileStatus.FAILED,
        FileStatus.CANCELLED,
        FileStatus.UPLOAD_EXPIRED,
        FileStatus.SKIPPED,
    }
)


def execution_name(batch_id: str, retry: int) -> str:
    """The batch's Step Functions execution: its id for the first run, `<id>-r<n>` for retry n."""
    return batch_id if retry == 0 else f"{batch_id}-r{retry}"


def file_id_for(position: int) -> str:
    """Files are numbered in the order the client listed them, so results come back in that order."""
    return f"f{position:05d}"


def upload_key(tenant_id: str, batch_id: str, file_id: str) -> str:
    """Where a file's bytes live. No client-chosen text goes into keys."""
    return f"{UPLOAD_PREFIX}{tenant_id}/{batch_id}/{file_id}"


def manifest_key(tenant_id: str, batch_id: str, run: str = "") -> str:
    """The file list a run of the batch reads: every file for the first run (written at create),
    the files that arrived when uploads were closed (`run="-closed"`), the files retried (`"-r<n>"`)."""
    return f"{MANIFEST_PREFIX}{tenant_id}/{batch_id}{run}.json"


def export_key(tenant_id: str, batch_id: str) -> str:
    """The batch's results, one FileResult JSON per line, in file order."""
    return f"{EXPORT_PREFIX}{tenant_id}/{batch_id}.jsonl"


def workflow_results_prefix(tenant_id: str, batch_id: str) -> str:
    """Where the state machine's ResultWriter writes for this batch (it adds /<map run id>/...)."""
    return f"{WORKFLOW_RESULTS_PREFIX}{tenant_id}/{batch_id}/"


def batch_object_prefixes(tenant_id: str, batch_id: str) -> list[str]:
    """Every key prefix under which the batch has objects: its uploads, its manifest(s) (a retry
    writes `<batch>-r<n>.json`), the workflow's results and the export. Batch ids have one length, so
    `manifests/<tenant>/<batch>` matches no other batch's keys."""
    return [
        upload_key(tenant_id, batch_id, ""),
        f"{MANIFEST_PREFIX}{tenant_id}/{batch_id}",
        workflow_results_prefix(tenant_id, batch_id),
        f"{EXPORT_PREFIX}{tenant_id}/{batch_id}",
    ]


UploadMethod = Literal["PUT", "POST"]


def sha256_hex(declared: str) -> str:
    """A SHA-256 given as 64 hex digits or as the base64 of its 32 bytes, as lowercase hex."""
    if len(declared) == 64:
        bytes.fromhex(declared)  # ValueError for a non-hex digit
        return declared.lower()
    try:
        digest = base64.b64decode(declared, validate=True)
    except binascii.Error as error:
        raise ValueError("sha256 must be 64 hex digits or the base64 of 32 bytes") from error
    if len(digest) != 32:
        raise ValueError("sha256 must be 64 hex digits or the base64 of 32 bytes")
    return digest.hex()


def sha256_base64(hex_digest: str) -> str:
    """What S3's x-amz-checksum-sha256 header carries: the base64 of the digest's bytes."""
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


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


# -- issue 10, skip duplicates (services/duplicates.py, docs/duplicates.md) --------------------------
class DuplicateOf(BaseModel):
    """The earlier file (same tenant, same bytes, same description settings) whose result a file took."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_id: str
    file_id: str


class KnownResult(BaseModel):
    """One entry of the hash index (tenant, fingerprint, sha256): the file describing those bytes now
    (`claimed`, until `lease_until`) or the file that completed with them (`completed`, its facts and
    description copied here, so that a lookup is one read). Expires with its file."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: str
    fingerprint: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    state: Literal["claimed", "completed"]
    batch_id: str
    file_id: str
    lease_until: datetime | None = None
    facts: FileFacts | None = None
    description: Description | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = None


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
    # How many of the batch's files are in each state now (FileStatus → count; they add up to
    # `total`). Every file transition moves one count to another in the same transaction.
    counts: dict[FileStatus, int] = Field(default_factory=dict)
    # Uploads recorded, ever: the workflow starts when this reaches `total`.
    arrived: int = Field(default=0, ge=0)
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
    # Lifecycle (issue 8). `retries`: 0 for the first run, n after the n-th retry (execution_name).
    retries: int = Field(default=0, ge=0)
    # When the sweep must look at the batch: the end of the upload window while awaiting upload;
    # a watchdog time while a close or cancel is being carried out, or while an end is written and
    # not yet announced. None once nothing is due.
    due_at: datetime | None = None
    # When the current end (this status, this run) was announced on the event bus. Cleared by every
    # end (finish_batch), set by the announcement: absent on an ended batch = its end is owed.
    announced_at: datetime | None = None
    # Set by close (or the end of the upload window): from then on no upload is recorded.
    closed_at: datetime | None = None
    # The current run (first or retry): when it started and how many files it took.
    run_started_at: datetime | None = None
    run_files: int = Field(default=0, ge=0)

    def count(self, status: FileStatus) -> int:
        return self.counts.get(status, 0)

    @property
    def completed(self) -> int:
        return self.count(FileStatus.COMPLETED)

    @property
    def failed(self) -> int:
        return self.count(FileStatus.FAILED)

    # -- stream EVENTS: where the batch's end is POSTed (signed with the tenant's webhook secret).
    webhook_url: str | None = None
    # -- stream PURGE: set by DELETE /v1/batches/{id}; from then on the batch is invisible (every
    # route answers 404) until the purge job has removed its objects and items.
    deleted_at: datetime | None = None
    # The client's name for the batch (unique per tenant while the batch exists) and its metadata.
    name: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    # -- issue 10: how the batch's files are uploaded (POST: presigned browser form uploads), and
    # whether files the tenant already had described are skipped (docs/uploads.md).
    upload_method: UploadMethod = "PUT"
    skip_duplicates: bool = False
    # -- issue 10: set when the batch skips duplicates, the description settings' fingerprint
    # (services/duplicates.py): the key of its files' entries in the hash index.
    dedup_fingerprint: str | None = None

    @property
    def end_unannounced(self) -> bool:
        """Ended, and that end not announced yet (the sweep announces it; so does a repeated
        close or cancel)."""
        return self.status.is_terminal and self.announced_at is None

    @property
    def terminal_files(self) -> int:
        return sum(n for status, n in self.counts.items() if status.is_terminal)

    @property
    def progress_percentage(self) -> float:
        return round(100.0 * self.terminal_files / self.total, 1)

    @property
    def all_uploaded(self) -> bool:
        return self.arrived >= self.total

    @property
    def execution_name(self) -> str:
        return execution_name(self.batch_id, self.retries)

    def eta_seconds(self, now: datetime, *, warm_up_seconds: float = 5.0) -> int | None:
        """Seconds until the current run's files are all done, from its observed per-file rate:
        None until the run has gone on for `warm_up_seconds` and finished at least one file."""
        if self.status is not BatchStatus.PROCESSING or self.run_started_at is None:
            return None
        remaining = sum(n for status, n in self.counts.items() if not status.is_terminal)
        done = self.run_files - remaining
        elapsed = (now - self.run_started_at).total_seconds()
        if done <= 0 or elapsed < warm_up_seconds:
            return None
        return round(remaining * elapsed / done)

    def final_status(self) -> BatchStatus:
        """The terminal status once every file is terminal: completed when none failed, failed
        when none succeeded (a batch closed with nothing uploaded is `expired` instead). A file
        skipped as a duplicate has its result: it counts as one that completed."""
        succeeded = self.completed + self.count(FileStatus.SKIPPED)
        if succeeded and self.failed:
            return BatchStatus.COMPLETED_WITH_ERRORS
        if succeeded:
            return BatchStatus.COMPLETED
        return BatchStatus.FAILED if self.failed else BatchStatus.EXPIRED


class BatchFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: str
    batch_id: str
    file_id: str
    filename: str
    declared_size: int
    declared_content_type: str
    # The client's SHA-256 of the bytes (lowercase hex), when it declared one: signed into the upload
    # so that S3 refuses other bytes, and checked again by the process step.
    declared_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    status: FileStatus
    # -- issue 10, stream MULTIPART: the S3 multipart upload of a file above the multipart threshold,
    # once one was started for it (services/multipart.py); None after an abort.
    multipart_upload_id: str | None = None
    uploaded_at: datetime | None = None
    # The S3 object version the upload event announced: the bytes that are verified and described.
    uploaded_version_id: str | None = None
    finished_at: datetime | None = None
    facts: FileFacts | None = None
    description: Description | None = None
    error: FileError | None = None
    # The batch's expiry: a file item goes when its batch does.
    expires_at: datetime | None = None
    # -- issue 10: the earlier file whose result this one took (skipped at create, or its
    # description reused after upload).
    duplicate_of: DuplicateOf | None = None

    @property
    def object_key(self) -> str:
        return upload_key(self.tenant_id, self.batch_id, self.file_id)

    @property
    def failed_retryably(self) -> bool:
        """Failed with an error a later run may not meet: what a retry runs again."""
        return self.status is FileStatus.FAILED and self.error is not None and self.error.retryable


class TenantUsage(BaseModel):
    """What counts against a tenant's plan: batches not yet ended, files declared this month."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    open_batches: int = 0
    files_this_month: int = 0


class Tenant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    plan: PlanName = DEFAULT_PLAN


# -- stream EVENTS: webhook signing secrets ---------------------------------------------------------
WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret


class WebhookSecret(BaseModel):
    """A tenant's webhook signing secret (`whsec_<base64 of random bytes>`, Standard Webhooks). After a
    rotation the replaced secret keeps signing alongside the new one until `previous_valid_until`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: str
    secret: str = Field(pattern=r"^whsec_[A-Za-z0-9+/]+={0,2}$")
    created_at: datetime
    previous_secret: str | None = Field(default=None, pattern=r"^whsec_[A-Za-z0-9+/]+={0,2}$")
    previous_valid_until: datetime | None = None

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets that sign a delivery made at `now`: the current one first, then the replaced
        one while it is still valid."""
        secrets = [self.secret]
        if self.previous_secret and self.previous_valid_until and now < self.previous_valid_until:
            secrets.append(self.previous_secret)
        return secrets
