"""HTTP request and response bodies of the public REST API (/v1)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from annotated_types import MaxLen
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)

from filebatch.models.domain import (
    FILE_ID_PATTERN,
    LANGUAGE_TAG_PATTERN,
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_PAIRS,
    MAX_METADATA_VALUE_CHARS,
    MAX_NAME_CHARS,
    MAX_PROMPT_CHARS,
    PRINTABLE_PATTERN,
    BatchStatus,
    DescriptionInstructions,
    DetailLevel,
    FileStatus,
    UploadMethod,
    sha256_hex,
)

MAX_FILES_PER_BATCH = 10_000
# Upload instructions per response: a presigned URL signed by a Lambda role is ~1.5 KB, and Lambda
# responses stop at 6 MB. Larger batches page through GET /v1/batches/{id}/uploads.
UPLOADS_PER_PAGE = 1000
CONTENT_TYPE_PATTERN = r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$"


# A declared SHA-256: 64 hex digits (any case), or standard base64 of the 32 bytes (S3's own form).
SHA256_INPUT_PATTERN = r"^(?:[0-9A-Fa-f]{64}|[A-Za-z0-9+/]{43}=)$"

# S3's largest object; the deployment's MaxFileBytes is checked by the service.
MAX_DECLARED_FILE_BYTES = 5 * 1024**4

# -- stream EVENTS: webhook URLs. Printable ASCII only (hosts in punycode); http is only accepted by a
# deployment that allows loopback receivers (the local stack), and only for them (services/webhooks.py).
MAX_WEBHOOK_URL_CHARS = 2048
WEBHOOK_URL_PATTERN = r"^https?://[\x21-\x7e]+$"


def _integral(value: Any) -> Any:
    # JSON Schema counts 6.0 as an integer; strings and booleans stay refused (strict models).
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An integer as JSON Schema means it (6 or 6.0), for request bodies.
JsonInteger = Annotated[int, BeforeValidator(_integral)]
# A SHA-256 a client declares (of a file or of a part), kept as lowercase hex.
DeclaredSha256 = Annotated[str, StringConstraints(pattern=SHA256_INPUT_PATTERN), AfterValidator(sha256_hex)]


class FileSpec(BaseModel):
    """One file the client is about to upload."""

    # Strict: JSON types are what they say ("6" is not a size, true is not 1); unknown fields refused.
    model_config = ConfigDict(extra="forbid", strict=True)

    # Printable text: no C0 control character or DEL (JSON Schema pattern, so clients can know).
    filename: str = Field(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")
    size: JsonInteger = Field(
        ge=1, le=MAX_DECLARED_FILE_BYTES, description="Exact size in bytes; the upload is checked against it."
    )
    content_type: str = Field(pattern=CONTENT_TYPE_PATTERN)
    sha256: DeclaredSha256 | None = Field(
        default=None,
        description="The file's SHA-256, as 64 hex digits or the base64 of its 32 bytes. S3 refuses an "
        "upload whose bytes do not match it, and the process step checks it again (`checksum_mismatch`).",
        json_schema_extra={"examples": ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]},
    )

    @field_validator("content_type", mode="before")
    @classmethod
    def _normalise_content_type(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("filename")
    @classmethod
    def _encodable_filename(cls, value: str) -> str:
        # JSON can carry a lone UTF-16 surrogate ("\udaf4"), which no storage can encode.
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("filename must be valid Unicode text (no lone surrogates)") from None
        return value


class DescriptionOptions(BaseModel):
    """What to ask of the describing model for every file of the batch."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        # Text, lines and tabs; no other control character.
        pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+$",
        description="Your instructions to the model, added to its system prompt (never replacing it).",
    )
    language: str | None = Field(
        default=None,
        pattern=LANGUAGE_TAG_PATTERN,
        max_length=35,
        description="BCP 47 tag of the language descriptions are written in (e.g. `en`, `pt-BR`).",
    )
    detail: DetailLevel = Field(default="standard", description="How long a description to write.")

    @field_validator("prompt")
    @classmethod
    def _encodable_prompt(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("prompt must be valid Unicode text (no lone surrogates)") from None
        return value

    def to_domain(self) -> DescriptionInstructions:
        return DescriptionInstructions(prompt=self.prompt, language=self.language, detail=self.detail)


class DescriptionSettingsBody(BaseModel):
    """The batch's description instructions, and which of them its provider follows."""

    model_config = ConfigDict(extra="forbid")

    provider: str
    prompt: str | None
    language: str | None
    detail: DetailLevel
    ignored: list[str] = Field(description="Instructions given that this provider does not follow.")
    note: str | None = Field(description="Why, when some are ignored.")


# -- batch names and metadata (issue 8, stream CREATE) ----------------------------------------------
BatchName = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS, pattern=PRINTABLE_PATTERN)
]
# The key's length is in its pattern: JSON Schema draft 4 (API Gateway's models) can only constrain
# keys by patternProperties.
METADATA_KEY_PATTERN = PRINTABLE_PATTERN.replace("+$", f"{{1,{MAX_METADATA_KEY_CHARS}}}$")
# A value may be empty; otherwise printable, as keys.
METADATA_VALUE_PATTERN = PRINTABLE_PATTERN.replace("+$", "*$")
Metadata = Annotated[
    dict[
        Annotated[str, StringConstraints(pattern=METADATA_KEY_PATTERN)],
        Annotated[
            str, StringConstraints(max_length=MAX_METADATA_VALUE_CHARS, pattern=METADATA_VALUE_PATTERN)
        ],
    ],
    MaxLen(MAX_METADATA_PAIRS),
    # What pydantic would write (patternProperties, with nothing said of other keys) lets a schema
    # validator pass keys the model refuses: other keys are refused here too.
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": MAX_METADATA_PAIRS,
            "patternProperties": {
                METADATA_KEY_PATTERN: {
                    "type": "string",
                    "maxLength": MAX_METADATA_VALUE_CHARS,
                    "pattern": METADATA_VALUE_PATTERN,
                }
            },
            "additionalProperties": False,
        }
    ),
]


def _encodable(value: str, what: str) -> str:
    # JSON can carry a lone UTF-16 surrogate ("\udaf4"), which no storage can encode.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} must be valid Unicode text (no lone surrogates)") from None
    return value


class CreateBatchRequest(BaseModel):
    """The files of a new batch, in the order their results will be listed."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "files": [
                        {"filename": "cat.jpg", "size": 48213, "content_type": "image/jpeg"},
                        {"filename": "scan-0042.pdf", "size": 1048576, "content_type": "application/pdf"},
                    ]
                }
            ]
        },
    )

    files: list[FileSpec] = Field(min_length=1, max_length=MAX_FILES_PER_BATCH)
    description: DescriptionOptions | None = None
    # -- stream EVENTS
    webhook_url: str | None = Field(
        default=None,
        max_length=MAX_WEBHOOK_URL_CHARS,
        pattern=WEBHOOK_URL_PATTERN,
        description="Where the batch's end is POSTed, signed with your webhook secret (Standard Webhooks; "
        "create one first at POST /v1/webhooks/secret). An https URL of a public host.",
    )
    name: BatchName | None = Field(
        default=None,
        description="Your name for the batch: unique among your batches that still exist (409 `name_taken`).",
    )
    metadata: Metadata | None = Field(
        default=None,
        description=f"Up to {MAX_METADATA_PAIRS} string pairs of your own (keys 1-{MAX_METADATA_KEY_CHARS} "
        f"characters, values up to {MAX_METADATA_VALUE_CHARS}), stored with the batch and echoed back.",
    )

    # -- issue 10 (docs/uploads.md)
    upload_method: UploadMethod = Field(
        default="PUT",
        description="`PUT`: a presigned PUT per file (multipart above the deployment's threshold). "
        "`POST`: presigned browser form uploads (`url` + `fields`), for HTML forms and `fetch` without "
        "custom headers.",
    )
    skip_duplicates: bool = Field(
        default=False,
        description="Files whose declared `sha256` matches a file of yours already described with the same "
        "description settings, in a batch that also skipped duplicates, get no upload instruction and end "
        "`skipped` with `duplicate_of` and the earlier result (docs/duplicates.md).",
    )

    @field_validator("name")
    @classmethod
    def _encodable_name(cls, value: str | None) -> str | None:
        return _encodable(value, "name") if value is not None else None

    @field_validator("metadata")
    @classmethod
    def _encodable_metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key, text in (value or {}).items():
            _encodable(key, "metadata keys")
            _encodable(text, "metadata values")
        return value


class PutUpload(BaseModel):
    """One presigned PUT of the whole file, with the headers it was signed for."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["PUT"] = "PUT"
    url: str
    headers: dict[str, str]
    expires_at: datetime


class PostUpload(BaseModel):
    """A presigned browser form upload: POST multipart/form-data to `url` with `fields`, then the file
    as the last field (`file`)."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["POST"] = "POST"
    url: str
    fields: dict[str, str]
    expires_at: datetime


# issue 10: what a MULTIPART instruction and a page of parts say about part checksums.
PART_CHECKSUM_DESCRIPTION = (
    "`SHA256` when every part carries its own SHA-256 (the file declared `sha256`): hash each part, "
    "POST the digests to .../files/{file_id}/parts for its URLs (each signs the part's digest, so S3 "
    "refuses other bytes), and complete with each part's `checksum_sha256`. Null: plain part URLs."
)


class UploadPart(BaseModel):
    """A presigned PUT of one part of a multipart upload (bytes (n-1)*part_size to n*part_size-1)."""

    model_config = ConfigDict(extra="forbid")

    part_number: int
    url: str
    headers: dict[str, str]


class MultipartUpload(BaseModel):
    """A multipart upload for a large file: PUT each part to its URL (the first page of parts is here,
    the rest and fresh URLs at GET .../files/{file_id}/parts), then POST .../files/{file_id}/complete."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["MULTIPART"] = "MULTIPART"
    upload_id: str
    part_size: int
    part_count: int
    part_checksum: Literal["SHA256"] | None = Field(
        default=None,
        description=PART_CHECKSUM_DESCRIPTION,
    )
    parts: list[UploadPart] = Field(
        description="Presigned PUTs of the first page of parts; empty when `part_checksum` is set."
    )
    next_parts_cursor: str | None
    expires_at: datetime


UploadInstruction = Annotated[PutUpload | PostUpload | MultipartUpload, Field(discriminator="method")]


class DuplicateOfBody(BaseModel):
    """Issue 10: the earlier file of yours (same bytes, same description settings) whose result a
    file took: `skipped` at create, or its description reused after upload."""

    model_config = ConfigDict(extra="forbid")

    batch_id: str
    file_id: str


class CreatedFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_id: str
    filename: str
    size: int
    content_type: str
    sha256: str | None = None
    # None only for a file that needs no upload (a skipped duplicate).
    upload: UploadInstruction | None
    # -- issue 10: set (and `upload` null) for a file skipped as a duplicate.
    duplicate_of: DuplicateOfBody | None = None


class CreateBatchResponse(BaseModel):
    """The first page of upload instructions; `next_uploads_cursor` continues at
    GET /v1/batches/{batch_id}/uploads?cursor=… when the batch has more files than a page."""

    model_config = ConfigDict(extra="forbid")

    batch_id: str
    status: BatchStatus
    created_at: datetime
    total_files: int
    files: list[CreatedFile]
    next_uploads_cursor: str | None
    # -- stream EVENTS
    webhook_url: str | None
    # Always written (null and {} when not given); defaults so that every builder need not name them.
    name: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class UploadsPage(BaseModel):
    """Fresh upload instructions for the batch's files that are still awaiting upload."""

    model_config = ConfigDict(extra="forbid")

    batch_id: str
    items: list[CreatedFile]
    next_cursor: str | None


class BatchCounts(BaseModel):
    """How many of the batch's files are in each state now; they add up to `total`."""

    model_config = ConfigDict(extra="forbid")

    total: int
    awaiting_upload: int
    uploaded: int
    processing: int
    completed: int
    failed: int
    cancelled: int
    upload_expired: int
    skipped: int


class TokenUsageBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_tokens: int
    output_tokens: int


class BatchStatusResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_id: str
    status: BatchStatus
    is_terminal: bool
    counts: BatchCounts
    usage: TokenUsageBody = Field(
        description="Model tokens billed for the files described so far (0 with the local provider)."
    )
    description: DescriptionSettingsBody
    progress_percentage: float = Field(description="Files in a terminal state, as a percentage of the total.")
    eta_seconds: int | None = Field(
        description="Estimated seconds until the current run's files are done, from the per-file rate "
        "observed so far; null until processing has run a few seconds and finished a file."
    )
    retries: int = Field(description="Retries of this batch so far (POST .../retry).")
    upload_deadline: datetime | None = Field(
        description="While awaiting upload: when the upload window closes by itself (the upload URLs' "
        "expiry plus a grace period); files not uploaded by then become upload_expired."
    )
    closed_at: datetime | None = Field(
        description="When uploads were closed (close, cancel or the deadline)."
    )
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    # -- stream EVENTS
    webhook_url: str | None = Field(description="Where the batch's end is POSTed, if anywhere.")
    # Always written (null and {} when not given); defaults so that every builder need not name them.
    name: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class InvocationBody(BaseModel):
    """The model call behind a description."""

    model_config = ConfigDict(extra="forbid")

    model_id: str
    usage: TokenUsageBody
    latency_ms: int = Field(description="As the model service measured it.")
    stop_reason: str


class DescriptionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str
    text: str
    attributes: dict[str, Any]
    invocation: InvocationBody | None = Field(
        default=None, description="Set by providers that call a hosted model (bedrock); null for local."
    )


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str
    message: str
    retryable: bool


class FileResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_id: str
    filename: str
    status: FileStatus
    declared_size: int
    declared_content_type: str
    declared_sha256: str | None = None
    size_bytes: int | None
    sha256: str | None
    detected_content_type: str | None
    description: DescriptionBody | None
    error: ErrorDetail | None
    uploaded_at: datetime | None
    finished_at: datetime | None
    # -- issue 10: whose result this is when it was not made for this file.
    duplicate_of: DuplicateOfBody | None = None


class ResultsPage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_id: str
    items: list[FileResult]
    next_cursor: str | None


class RetryRequest(BaseModel):
    """Which failed files to run again; none listed: every failed file whose failure is retryable."""

    model_config = ConfigDict(extra="forbid", strict=True)

    file_ids: list[Annotated[str, Field(pattern=FILE_ID_PATTERN)]] | None = Field(
        default=None, min_length=1, max_length=MAX_FILES_PER_BATCH
    )


class RetryResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_id: str
    retry: int = Field(description="This retry's number (1 for the first).")
    execution_name: str = Field(description="The Step Functions execution running it: `<batch_id>-r<retry>`.")
    file_ids: list[str]
    status: BatchStatus


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = Field(default=None, max_length=2048)


# -- listing batches (issue 8, stream CREATE) -------------------------------------------------------
MAX_BATCHES_PER_PAGE = 100


class BatchesQuery(BaseModel):
    """GET /v1/batches: which of the caller's batches, newest first."""

    model_config = ConfigDict(extra="forbid")

    status: BatchStatus | None = None
    # Names starting with this text (a whole name matches its batch, and any longer names).
    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_CHARS)
    limit: int = Field(default=20, ge=1, le=MAX_BATCHES_PER_PAGE)
    cursor: str | None = Field(default=None, max_length=2048)


class BatchesPage(BaseModel):
    """The caller's batches, newest first; `next_cursor` continues the list (null on the last page)."""

    model_config = ConfigDict(extra="forbid")

    items: list[BatchStatusResponse]
    next_cursor: str | None


class ProblemDetail(BaseModel):
    """One reason a request was refused (for validation errors: where, and what is wrong)."""

    model_config = ConfigDict(extra="forbid")

    location: str
    problem: str
    type: str


class ApiErrorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="Stable and machine-readable, e.g. validation_error, batch_not_found.")
    message: str = Field(description="For people; may change.")
    details: list[ProblemDetail] | None = None


class ApiError(BaseModel):
    """Every error the API answers, whatever its status."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "batch_not_found",
                        "message": "no batch b-0123456789abcdef0123456789abcdef",
                    }
                },
                {
                    "error": {
                        "code": "validation_error",
                        "message": "the request does not match the API schema",
                        "details": [
                            {"location": "body.files.0.size", "problem": "Field required", "type": "missing"}
                        ],
                    }
                },
            ]
        },
    )

    error: ApiErrorBody


# -- stream EVENTS ------------------------------------------------------------------------------------
class WebhookSecretResponse(BaseModel):
    """The tenant's new webhook signing secret. Shown once: keep it where your receiver can read it."""

    model_config = ConfigDict(extra="forbid")

    secret: str = Field(
        description="`whsec_` and the base64 of 32 random bytes; the HMAC key is the decoded bytes "
        "(Standard Webhooks)."
    )
    created_at: datetime
    previous_secret_valid_until: datetime | None = Field(
        description="Until when the secret this one replaced keeps signing deliveries alongside it "
        "(null when there was none)."
    )


# ---------------------------------------------------------------- stream PURGE: delete and export
class DeleteBatchResponse(BaseModel):
    """The batch is gone from the API; its objects and items are being removed in the background."""

    model_config = ConfigDict(extra="forbid")

    batch_id: str
    status: Literal["deleting"] = "deleting"


class ExportResponse(BaseModel):
    """Where to download every result of an ended batch at once."""

    model_config = ConfigDict(extra="forbid")

    batch_id: str
    url: str = Field(
        description="A presigned GET of the export: JSON Lines, one FileResult per line, in submission order."
    )
    expires_at: datetime = Field(description="When the URL stops working; ask again for a fresh one.")
    files: int = Field(description="How many results (lines) the export holds.")


# -- issue 10, stream MULTIPART: resumable multipart uploads (services/multipart.py, docs/uploads.md) ----
# S3's largest part number; a request cannot list more parts than a file can have.
MAX_UPLOAD_PARTS = 10_000


class HeldPart(BaseModel):
    """A part S3 already holds (ListParts): not to be sent again."""

    model_config = ConfigDict(extra="forbid")

    part_number: int
    etag: str
    size: int
    checksum_sha256: str | None = Field(
        default=None, description="The part's SHA-256 (base64) when it was uploaded with one."
    )


class PartsPage(BaseModel):
    """One page of a multipart file's parts: which S3 already holds, and fresh URLs for the others."""

    model_config = ConfigDict(extra="forbid")

    batch_id: str
    file_id: str
    upload_id: str
    part_size: int
    part_count: int
    part_checksum: Literal["SHA256"] | None = Field(default=None, description=PART_CHECKSUM_DESCRIPTION)
    uploaded: list[HeldPart] = Field(
        description="Parts of this page S3 already holds: do not send them again."
    )
    parts: list[UploadPart] = Field(
        description="Presigned PUTs for the parts of this page S3 does not hold; empty when `part_checksum` "
        "is set (POST the parts' digests for their URLs)."
    )
    next_cursor: str | None = Field(
        description="The next page of parts (`?cursor=`), or null after the last."
    )
    expires_at: datetime


# Part URLs per POST .../parts, as per page of GET .../parts (services/multipart.py PART_URLS_PER_PAGE).
MAX_SIGNED_PARTS = 100


class PartDigest(BaseModel):
    """One part to sign and the SHA-256 of its bytes."""

    model_config = ConfigDict(extra="forbid", strict=True)

    part_number: JsonInteger = Field(ge=1, le=MAX_UPLOAD_PARTS)
    sha256: DeclaredSha256 = Field(
        description="The part's SHA-256, as 64 hex digits or the base64 of its 32 bytes.",
    )


class SignPartsRequest(BaseModel):
    """Parts of a multipart upload with part checksums, each with its SHA-256, to get their URLs."""

    model_config = ConfigDict(extra="forbid", strict=True)

    parts: list[PartDigest] = Field(min_length=1, max_length=MAX_SIGNED_PARTS)


class SignedParts(BaseModel):
    """Presigned PUTs of the requested parts, each signing its part's SHA-256: send the headers."""

    model_config = ConfigDict(extra="forbid")

    batch_id: str
    file_id: str
    upload_id: str
    parts: list[UploadPart]
    expires_at: datetime


class CompletedPart(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    part_number: JsonInteger = Field(ge=1, le=MAX_UPLOAD_PARTS)
    etag: str = Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$", description="The part's ETag.")
    checksum_sha256: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9+/]{43}=$",
        description="The part's SHA-256 (base64), when it was uploaded with one: required for every part "
        "of an upload with `part_checksum` (`part_checksum_missing`).",
    )


class CompleteUploadRequest(BaseModel):
    """Every part of the file, in ascending part number, with the ETag each PUT answered."""

    model_config = ConfigDict(extra="forbid", strict=True)

    parts: list[CompletedPart] = Field(min_length=1, max_length=MAX_UPLOAD_PARTS)


class CompleteUploadResponse(BaseModel):
    """The file's object exists: its upload event follows (the file becomes `uploaded`)."""

    model_config = ConfigDict(extra="forbid")

    batch_id: str
    file_id: str
    upload_id: str
    size: int
    etag: str


class AbortUploadResponse(BaseModel):
    """The upload's parts are gone; the file still awaits upload, and the next GET .../parts (or
    .../uploads) starts a fresh upload."""

    model_config = ConfigDict(extra="forbid")

    batch_id: str
    file_id: str
    aborted_upload_id: str | None = Field(
        description="The upload that was aborted; null when there was none."
    )
