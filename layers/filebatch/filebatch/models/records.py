"""DynamoDB items (one table, see docs/scaling.md for the key design).

    pk                                   sk              item
    TENANT#<tenant>#BATCH#<batch>        BATCH           the batch and its counters
    TENANT#<tenant>#BATCH#<batch>        FILE#f00001     one file, its facts, description or error
    APIKEY#<sha256 of key>               APIKEY          an API key's tenant (the key itself is never stored)
    TENANT#<tenant>                      USAGE           open_batches, files_<yyyy>_<mm> (plan limits)
    TENANT#<tenant>                      WEBHOOK_SECRET  the tenant's webhook signing secret(s)

The batch item counts its files per state in one attribute per FileStatus (`n_<status>`): every
file transition is a transaction that moves the file and one count to another, so the counts always
add up to `total`. While something is due for a batch (the end of its upload window, or a close or
cancel being carried out, or an end written and not yet announced) it carries `due_pk` = "DUE" and
`due_at`: the sparse index ByDueTime that the sweep queries holds exactly those batches.
    TENANT#<tenant>#NAME#<name>          NAME            a batch name's claim: the batch holding it
    DEDUP#<tenant>#<fingerprint>#<sha256> DEDUP          the hash index (issue 10): the file describing
                                                         or the file that completed those bytes

Index ByTenant (sparse: only batch items carry its keys) lists a tenant's batches newest first:
partition `tenant_pk` = TENANT#<tenant>, sort `created_sk` = <created_at, UTC, microseconds>#<batch>.
It projects the keys, `status` and `name` only (what the list filters on), so the batch item's
counter updates (hundreds a second while a batch runs) never write to it; the list reads the
items themselves with BatchGetItem.

The tenant is part of every batch key, so another tenant's batch is simply not found.
Batch and file items carry `expires_at` (epoch seconds, the table's TTL attribute): DynamoDB
deletes them after the upload retention, as the bucket's lifecycle rule deletes the batch's
objects. API key items have no `expires_at` and never expire.
A batch item with `deleted_at` is a deleted batch whose purge job has not finished: reads treat it as
gone (adapters/dynamodb.py), and the purge deletes it after everything else of the batch.
Nested values (facts, description, error) are stored as JSON text: DynamoDB would otherwise turn
floats into Decimals and the API would have to turn them back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from filebatch.models.domain import (
    Batch,
    BatchFile,
    BatchStatus,
    Description,
    DescriptionInstructions,
    DuplicateOf,
    FileError,
    FileFacts,
    FileStatus,
    KnownResult,
    UploadMethod,
    WebhookSecret,
)
from filebatch.plans import DEFAULT_PLAN, PlanName

BATCH_SK = "BATCH"
API_KEY_SK = "APIKEY"
FILE_SK_PREFIX = "FILE#"


def batch_pk(tenant_id: str, batch_id: str) -> str:
    return f"TENANT#{tenant_id}#BATCH#{batch_id}"


def file_sk(file_id: str) -> str:
    return f"{FILE_SK_PREFIX}{file_id}"


def api_key_pk(key_hash: str) -> str:
    return f"APIKEY#{key_hash}"


USAGE_SK = "USAGE"


def usage_pk(tenant_id: str) -> str:
    return f"TENANT#{tenant_id}"


def month_files_attribute(month: str) -> str:
    """The usage item's counter of files declared in a UTC month ("2026-11" → files_2026_11)."""
    return "files_" + month.replace("-", "_")


# -- names and the tenant's list of batches (issue 8, stream CREATE) ----------------------------------
NAME_CLAIM_SK = "NAME"
BY_TENANT_INDEX = "ByTenant"


def name_claim_pk(tenant_id: str, name: str) -> str:
    return f"TENANT#{tenant_id}#NAME#{name}"


def tenant_batches_pk(tenant_id: str) -> str:
    """The ByTenant index's partition: one per tenant."""
    return f"TENANT#{tenant_id}"


def created_sort_key(created_at: datetime, batch_id: str) -> str:
    """The ByTenant index's sort key: fixed-width UTC time (sorts as text), then the batch id."""
    return f"{created_at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}#{batch_id}"


def batch_id_of_sort_key(created_sk: str) -> str:
    return created_sk.rsplit("#", 1)[1]


# The attribute template.yaml names in the table's TimeToLiveSpecification.
TTL_ATTRIBUTE = "expires_at"


def to_epoch_seconds(moment: datetime | None) -> int | None:
    """DynamoDB TTL only acts on a Number of epoch seconds (an ISO string would be ignored)."""
    return int(moment.timestamp()) if moment else None


def from_epoch_seconds(seconds: int | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def to_item(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


# The sparse index of batches with something due (template.yaml, Table GlobalSecondaryIndexes).
DUE_INDEX = "ByDueTime"
DUE_PK = "DUE"


def due_stamp(moment: datetime) -> str:
    """`due_at` as the index sorts it: whole seconds, UTC, one format (the same text pydantic writes)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class BatchRecord(_Record):
    pk: str
    sk: Literal["BATCH"] = "BATCH"
    entity: Literal["batch"] = "batch"
    tenant_id: str
    batch_id: str
    status: BatchStatus
    total: int
    n_awaiting_upload: int = 0
    n_uploaded: int = 0
    n_processing: int = 0
    n_completed: int = 0
    n_failed: int = 0
    n_cancelled: int = 0
    n_upload_expired: int = 0
    n_skipped: int = 0
    arrived: int = 0
    retries: int = 0
    due_pk: Literal["DUE"] | None = None
    due_at: datetime | None = None
    # Set when the batch's end was announced; absent on items ended before it existed.
    announced_at: datetime | None = None
    closed_at: datetime | None = None
    run_started_at: datetime | None = None
    run_files: int = 0
    # Added to by the result transaction of each described file; absent on items of older batches.
    input_tokens: int = 0
    output_tokens: int = 0
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    # The user's description instructions; absent when none were given (and on older items).
    instructions_json: str | None = None
    # Optional only because items written before retention existed lack it.
    expires_at: int | None = None
    # -- stream EVENTS: absent when the batch has no webhook (and on older items).
    webhook_url: str | None = None
    # -- stream PURGE: when the batch was deleted (the purge job then removes it); absent otherwise.
    deleted_at: datetime | None = None
    # The client's name and metadata (a map of strings); absent on older items.
    name: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    # How files are uploaded and whether duplicates are skipped (issue 10); absent on older items.
    upload_method: UploadMethod = "PUT"
    skip_duplicates: bool = False
    # ByTenant index keys; absent on items written before the index existed (not listed).
    tenant_pk: str | None = None
    created_sk: str | None = None
    # -- issue 10: present when the batch skips duplicates.
    dedup_fingerprint: str | None = None

    @classmethod
    def from_domain(cls, batch: Batch) -> BatchRecord:
        return cls(
            pk=batch_pk(batch.tenant_id, batch.batch_id),
            **batch.model_dump(exclude={"expires_at", "instructions", "counts"}),
            **{status.counter: batch.count(status) for status in FileStatus},
            due_pk=DUE_PK if batch.due_at else None,
            instructions_json=batch.instructions.model_dump_json() if batch.instructions.given() else None,
            expires_at=to_epoch_seconds(batch.expires_at),
            tenant_pk=tenant_batches_pk(batch.tenant_id),
            created_sk=created_sort_key(batch.created_at, batch.batch_id),
        )

    def to_domain(self) -> Batch:
        counters = {status.counter for status in FileStatus}
        return Batch(
            **self.model_dump(
                exclude={
                    "pk",
                    "sk",
                    "entity",
                    "expires_at",
                    "instructions_json",
                    "due_pk",
                    *counters,
                    *_INDEX_KEYS,
                }
            ),
            counts={status: getattr(self, status.counter) for status in FileStatus},
            instructions=DescriptionInstructions.model_validate_json(self.instructions_json)
            if self.instructions_json
            else DescriptionInstructions(),
            expires_at=from_epoch_seconds(self.expires_at),
        )


_INDEX_KEYS = {"tenant_pk", "created_sk"}


class NameClaimRecord(_Record):
    """A batch's hold on its name. Written in the transaction that creates the batch, with the
    batch's expiry: once that has passed the name is free again (even before TTL deletes the item);
    deleting the batch deletes it (release_name)."""

    pk: str
    sk: Literal["NAME"] = "NAME"
    entity: Literal["name_claim"] = "name_claim"
    tenant_id: str
    name: str
    batch_id: str
    created_at: datetime
    expires_at: int | None = None

    @classmethod
    def for_batch(cls, batch: Batch) -> NameClaimRecord:
        assert batch.name is not None
        return cls(
            pk=name_claim_pk(batch.tenant_id, batch.name),
            tenant_id=batch.tenant_id,
            name=batch.name,
            batch_id=batch.batch_id,
            created_at=batch.created_at,
            expires_at=to_epoch_seconds(batch.expires_at),
        )


class FileRecord(_Record):
    pk: str
    sk: str
    entity: Literal["file"] = "file"
    tenant_id: str
    batch_id: str
    file_id: str
    filename: str
    declared_size: int
    declared_content_type: str
    declared_sha256: str | None = None
    status: FileStatus
    # The file's S3 multipart upload (issue 10); absent until one is started, and after an abort.
    multipart_upload_id: str | None = None
    uploaded_at: datetime | None = None
    uploaded_size: int | None = None
    uploaded_version_id: str | None = None
    finished_at: datetime | None = None
    facts_json: str | None = None
    description_json: str | None = None
    error_json: str | None = None
    # Optional only because items written before retention existed lack it.
    expires_at: int | None = None
    # -- issue 10: the file whose result this one took, as JSON text ({"batch_id", "file_id"}).
    duplicate_of_json: str | None = None

    @classmethod
    def from_domain(cls, file: BatchFile) -> FileRecord:
        return cls(
            pk=batch_pk(file.tenant_id, file.batch_id),
            sk=file_sk(file.file_id),
            **file.model_dump(exclude={"facts", "description", "error", "expires_at", "duplicate_of"}),
            duplicate_of_json=file.duplicate_of.model_dump_json() if file.duplicate_of else None,
            facts_json=file.facts.model_dump_json() if file.facts else None,
            description_json=file.description.model_dump_json() if file.description else None,
            error_json=file.error.model_dump_json() if file.error else None,
            expires_at=to_epoch_seconds(file.expires_at),
        )

    def to_domain(self) -> BatchFile:
        return BatchFile(
            **self.model_dump(
                exclude={
                    "pk",
                    "sk",
                    "entity",
                    "uploaded_size",
                    "facts_json",
                    "description_json",
                    "error_json",
                    "expires_at",
                    "duplicate_of_json",
                }
            ),
            duplicate_of=DuplicateOf.model_validate_json(self.duplicate_of_json)
            if self.duplicate_of_json
            else None,
            facts=FileFacts.model_validate_json(self.facts_json) if self.facts_json else None,
            description=(
                Description.model_validate_json(self.description_json) if self.description_json else None
            ),
            error=FileError.model_validate_json(self.error_json) if self.error_json else None,
            expires_at=from_epoch_seconds(self.expires_at),
        )


class ApiKeyRecord(_Record):
    pk: str
    sk: Literal["APIKEY"] = "APIKEY"
    entity: Literal["api_key"] = "api_key"
    tenant_id: str
    key_prefix: str
    enabled: bool = True
    created_at: datetime
    plan: PlanName = DEFAULT_PLAN
    # The API Gateway API key the authorizer names as the request's usageIdentifierKey: it puts the
    # request under its usage plan's throttle and quota. Not a credential (clients never send it).
    usage_key: str | None = None
    usage_key_id: str | None = None


# -- stream EVENTS: the tenant's webhook signing secret ---------------------------------------------
WEBHOOK_SECRET_SK = "WEBHOOK_SECRET"  # noqa: S105 - a sort key, not a secret


class WebhookSecretRecord(_Record):
    """One item per tenant, next to its USAGE item. No TTL: it lives as long as the tenant. The table
    is encrypted at rest; the secret is readable by the functions that sign (deliver) and rotate."""

    pk: str
    sk: Literal["WEBHOOK_SECRET"] = "WEBHOOK_SECRET"
    entity: Literal["webhook_secret"] = "webhook_secret"
    tenant_id: str
    secret: str
    created_at: datetime
    previous_secret: str | None = None
    previous_valid_until: datetime | None = None

    @classmethod
    def from_domain(cls, secret: WebhookSecret) -> WebhookSecretRecord:
        return cls(pk=usage_pk(secret.tenant_id), **secret.model_dump())

    def to_domain(self) -> WebhookSecret:
        return WebhookSecret(**self.model_dump(exclude={"pk", "sk", "entity"}))


# -- issue 10: the hash index of results (services/duplicates.py, docs/duplicates.md) ---------------
KNOWN_RESULT_SK = "DEDUP"


def known_result_pk(tenant_id: str, fingerprint: str, sha256: str) -> str:
    """One item per tenant, description settings and content: a lookup is one GetItem (or one key
    of a BatchGetItem), strongly consistent, and a claim is one conditional write on it."""
    return f"DEDUP#{tenant_id}#{fingerprint}#{sha256}"


class KnownResultRecord(_Record):
    """An index entry: a claim (`lease_until`) or a completed file's facts and description. Its TTL
    is its file's expiry; a lookup also ignores one whose expiry has passed (TTL deletes late)."""

    pk: str
    sk: Literal["DEDUP"] = "DEDUP"
    entity: Literal["known_result"] = "known_result"
    tenant_id: str
    fingerprint: str
    sha256: str
    state: Literal["claimed", "completed"]
    batch_id: str
    file_id: str
    lease_until: int | None = None
    facts_json: str | None = None
    description_json: str | None = None
    finished_at: datetime | None = None
    expires_at: int | None = None

    @classmethod
    def from_domain(cls, known: KnownResult) -> KnownResultRecord:
        return cls(
            pk=known_result_pk(known.tenant_id, known.fingerprint, known.sha256),
            **known.model_dump(exclude={"facts", "description", "lease_until", "expires_at"}),
            lease_until=to_epoch_seconds(known.lease_until),
            facts_json=known.facts.model_dump_json() if known.facts else None,
            description_json=known.description.model_dump_json() if known.description else None,
            expires_at=to_epoch_seconds(known.expires_at),
        )

    def to_domain(self) -> KnownResult:
        return KnownResult(
            **self.model_dump(
                exclude={"pk", "sk", "entity", "lease_until", "facts_json", "description_json", "expires_at"}
            ),
            lease_until=from_epoch_seconds(self.lease_until),
            facts=FileFacts.model_validate_json(self.facts_json) if self.facts_json else None,
            description=Description.model_validate_json(self.description_json)
            if self.description_json
            else None,
            expires_at=from_epoch_seconds(self.expires_at),
        )
