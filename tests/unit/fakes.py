"""In-memory stand-ins for the service ports, with the same conditional semantics as the DynamoDB
adapter (tests/integration checks the adapter itself against moto)."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from datetime import datetime
from typing import Any

from filebatch.errors import ConflictError, NotFoundError
from filebatch.models.domain import (
    Batch,
    BatchFile,
    BatchStatus,
    Description,
    FileError,
    FileFacts,
    FileStatus,
    TenantUsage,
)
from filebatch.models.records import ApiKeyRecord
from filebatch.services.ports import StoredObject


class InMemoryRepository:
    def __init__(self) -> None:
        self.batches: dict[tuple[str, str], Batch] = {}
        self.files: dict[tuple[str, str, str], BatchFile] = {}
        self.api_keys: dict[str, ApiKeyRecord] = {}
        self.open_batches: dict[str, int] = {}
        self.files_by_month: dict[tuple[str, str], int] = {}
        # (tenant, name) → (batch id, expires_at); see the names block below.
        self.name_claims: dict[tuple[str, str], tuple[str, datetime | None]] = {}

    def create_batch(self, batch: Batch, files: Sequence[BatchFile]) -> None:
        if batch.name is not None:
            self._claim_name(batch)
        for file in files:
            self.files[(file.tenant_id, file.batch_id, file.file_id)] = file.model_copy(deep=True)
        self.batches[(batch.tenant_id, batch.batch_id)] = batch.model_copy(deep=True)

    def get_batch(self, tenant_id: str, batch_id: str, *, consistent: bool = False) -> Batch | None:
        batch = self.batches.get((tenant_id, batch_id))
        return batch.model_copy(deep=True) if batch else None

    def get_file(self, tenant_id: str, batch_id: str, file_id: str) -> BatchFile | None:
        file = self.files.get((tenant_id, batch_id, file_id))
        return file.model_copy(deep=True) if file else None

    def list_files(
        self, tenant_id: str, batch_id: str, *, limit: int, after_file_id: str | None = None
    ) -> tuple[list[BatchFile], str | None]:
        ids = sorted(f for (t, b, f) in self.files if (t, b) == (tenant_id, batch_id))
        if after_file_id:
            ids = [i for i in ids if i > after_file_id]
        page = [self.files[(tenant_id, batch_id, i)].model_copy(deep=True) for i in ids[:limit]]
        return page, (page[-1].file_id if len(ids) > limit else None)

    def mark_uploaded(
        self,
        tenant_id: str,
        batch_id: str,
        file_id: str,
        *,
        size: int,
        version_id: str | None,
        at: datetime,
    ) -> bool:
        file = self.files.get((tenant_id, batch_id, file_id))
        batch = self.batches.get((tenant_id, batch_id))
        if file is None or batch is None or file.status is not FileStatus.AWAITING_UPLOAD:
            return False
        file.status, file.uploaded_at, file.uploaded_version_id = FileStatus.UPLOADED, at, version_id
        batch.uploaded += 1
        batch.updated_at = at
        return True

    def mark_processing(self, tenant_id: str, batch_id: str, *, at: datetime) -> bool:
        batch = self.batches.get((tenant_id, batch_id))
        if batch is None or batch.status is not BatchStatus.AWAITING_UPLOAD:
            return False
        batch.status, batch.updated_at = BatchStatus.PROCESSING, at
        return True

    def record_file_result(
        self,
        tenant_id: str,
        batch_id: str,
        file_id: str,
        *,
        status: FileStatus,
        at: datetime,
        facts: FileFacts | None,
        description: Description | None,
        error: FileError | None,
    ) -> bool:
        file = self.files.get((tenant_id, batch_id, file_id))
        batch = self.batches.get((tenant_id, batch_id))
        if file is None or batch is None or file.status.is_terminal:
            return False
        file.status, file.finished_at = status, at
        file.facts = facts or file.facts
        file.description, file.error = description, error
        if status is FileStatus.COMPLETED:
            batch.completed += 1
        else:
            batch.failed += 1
        if description is not None and description.invocation is not None:
            batch.input_tokens += description.invocation.usage.input_tokens
            batch.output_tokens += description.invocation.usage.output_tokens
        return True

    def finish_batch(self, tenant_id: str, batch_id: str, *, status: BatchStatus, at: datetime) -> bool:
        batch = self.batches.get((tenant_id, batch_id))
        if batch is None or batch.status.is_terminal:
            return False
        batch.status, batch.finished_at, batch.updated_at = status, at, at
        self.open_batches[tenant_id] = self.open_batches.get(tenant_id, 0) - 1
        return True

    def reserve_batch(
        self,
        tenant_id: str,
        *,
        month: str,
        files: int,
        max_open_batches: int | None,
        monthly_files: int | None,
    ) -> bool:
        usage = self.get_usage(tenant_id, month=month)
        if max_open_batches is not None and usage.open_batches >= max_open_batches:
            return False
        if monthly_files is not None and usage.files_this_month + files > monthly_files:
            return False
        self.open_batches[tenant_id] = usage.open_batches + 1
        self.files_by_month[(tenant_id, month)] = usage.files_this_month + files
        return True

    def release_batch(self, tenant_id: str, *, month: str, files: int) -> None:
        self.open_batches[tenant_id] = self.open_batches.get(tenant_id, 0) - 1
        self.files_by_month[(tenant_id, month)] = self.files_by_month.get((tenant_id, month), 0) - files

    def get_usage(self, tenant_id: str, *, month: str) -> TenantUsage:
        return TenantUsage(
            open_batches=self.open_batches.get(tenant_id, 0),
            files_this_month=self.files_by_month.get((tenant_id, month), 0),
        )

    def get_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        return next((r for r in self.api_keys.values() if r.pk == f"APIKEY#{key_hash}"), None)

    def put_api_key(self, record: ApiKeyRecord) -> None:
        self.api_keys[record.pk] = record

    # -- names and the tenant's list of batches (issue 8, stream CREATE) ---------------------------
    def _claim_name(self, batch: Batch) -> None:
        assert batch.name is not None
        # In the batch's own write, whatever a check before it said (as the adapter's transaction).
        if self._live_claim(batch.tenant_id, batch.name, now=batch.created_at) is not None:
            raise ConflictError(f"another of your batches is named {batch.name!r}", code="name_taken")
        self.name_claims[(batch.tenant_id, batch.name)] = (batch.batch_id, batch.expires_at)

    def name_holder(self, tenant_id: str, name: str, *, now: datetime) -> str | None:
        return self._live_claim(tenant_id, name, now=now)

    def _live_claim(self, tenant_id: str, name: str, *, now: datetime) -> str | None:
        claim = self.name_claims.get((tenant_id, name))
        if claim is None or (claim[1] is not None and claim[1] < now.replace(microsecond=0)):
            return None
        return claim[0]

    def release_name(self, tenant_id: str, name: str, *, batch_id: str | None = None) -> None:
        claim = self.name_claims.get((tenant_id, name))
        if claim is not None and batch_id in (None, claim[0]):
            del self.name_claims[(tenant_id, name)]

    def list_batches(
        self,
        tenant_id: str,
        *,
        limit: int,
        after: str | None = None,
        status: BatchStatus | None = None,
        name_prefix: str | None = None,
    ) -> tuple[list[Batch], str | None]:
        from filebatch.models.records import created_sort_key

        listed = sorted(
            (
                (created_sort_key(b.created_at, b.batch_id), b)
                for (t, _), b in self.batches.items()
                if t == tenant_id
            ),
            key=lambda pair: pair[0],
            reverse=True,
        )
        if after is not None:
            listed = [(k, b) for k, b in listed if k < after]
        matching = [
            (k, b)
            for k, b in listed
            if (status is None or b.status is status)
            and (name_prefix is None or (b.name is not None and b.name.startswith(name_prefix)))
        ]
        page = matching[:limit]
        return [b.model_copy(deep=True) for _, b in page], (page[-1][0] if len(matching) > limit else None)


class InMemoryStorage:
    """A versioned bucket: `put` adds a version, `read` gives the current one or the one asked for."""

    def __init__(self) -> None:
        self.versions: dict[str, list[bytes]] = {}
        self.documents: dict[str, Any] = {}
        # Small chunks, so that tests cross chunk boundaries; counters, so they can see what was read.
        self.chunk_size = 64
        self.streams_opened = 0
        self.bytes_streamed = 0

    def put(self, key: str, content: bytes) -> str:
        """Store a new version of `key`; returns its version id."""
        self.versions.setdefault(key, []).append(content)
        return f"v{len(self.versions[key])}"

    def presign_put(
        self, key: str, *, content_type: str, size: int, expires_in: int
    ) -> tuple[str, dict[str, str]]:
        return f"https://uploads.example/{key}?expires={expires_in}", {
            "Content-Type": content_type,
            "If-None-Match": "*",
        }

    def put_json(self, key: str, document: Any) -> None:
        self.documents[key] = document

    def stream(self, key: str, *, version_id: str | None = None) -> StoredObject:
        versions = self.versions.get(key, [])
        number = len(versions) if version_id is None else int(version_id.removeprefix("v"))
        if not 1 <= number <= len(versions):
            raise NotFoundError(f"object {key} version {version_id} does not exist", code="object_missing")
        content = versions[number - 1]
        self.streams_opened += 1
        return StoredObject(len(content), f"v{number}", self._chunks(content))

    def _chunks(self, content: bytes) -> Generator[bytes, None, None]:
        for start in range(0, len(content), self.chunk_size):
            self.bytes_streamed += len(content[start : start + self.chunk_size])
            yield content[start : start + self.chunk_size]


class RecordingStarter:
    """Refuses a second start with the same name, as Step Functions does."""

    def __init__(self) -> None:
        self.started: dict[str, dict[str, Any]] = {}
        self.attempts = 0

    def start(self, name: str, payload: dict[str, Any]) -> bool:
        self.attempts += 1
        if name in self.started:
            return False
        self.started[name] = payload
        return True


class StaticCursorKeys:
    """Cursor keys held in memory; `rotate` makes a new current key, keeping the old one as previous."""

    def __init__(self, key: bytes = b"k" * 32) -> None:
        self.current, self.previous = key, None

    def signing_keys(self) -> list[bytes]:
        return [self.current] if self.previous is None else [self.current, self.previous]

    def rotate(self, new_key: bytes) -> None:
        self.current, self.previous = new_key, self.current


class InMemoryUsageKeys:
    """API Gateway API keys under usage plans, by plan."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[str, str, str]] = {}  # id → (name, value, plan)

    def register(self, *, name: str, value: str, plan: str) -> str:
        key_id = f"key{len(self.keys) + 1}"
        self.keys[key_id] = (name, value, plan)
        return key_id
