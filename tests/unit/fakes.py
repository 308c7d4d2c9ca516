"""In-memory stand-ins for the service ports, with the same conditional semantics as the DynamoDB
adapter (tests/integration checks the adapter itself against moto)."""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from datetime import datetime
from typing import Any

from filebatch.errors import NotFoundError, StorageUnavailableError
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
from filebatch.models.workflow import BatchJob
from filebatch.services.ports import StoredObject


class InMemoryRepository:
    def __init__(self) -> None:
        self.batches: dict[tuple[str, str], Batch] = {}
        self.files: dict[tuple[str, str, str], BatchFile] = {}
        self.api_keys: dict[str, ApiKeyRecord] = {}
        self.open_batches: dict[str, int] = {}
        self.files_by_month: dict[tuple[str, str], int] = {}

    def create_batch(self, batch: Batch, files: Sequence[BatchFile]) -> None:
        for file in files:
            self.files[(file.tenant_id, file.batch_id, file.file_id)] = file.model_copy(deep=True)
        self.batches[(batch.tenant_id, batch.batch_id)] = batch.model_copy(deep=True)

    def get_batch(
        self, tenant_id: str, batch_id: str, *, consistent: bool = False, include_deleted: bool = False
    ) -> Batch | None:
        batch = self.batches.get((tenant_id, batch_id))
        if batch is None or (batch.deleted_at is not None and not include_deleted):
            return None
        return batch.model_copy(deep=True)

    def get_file(self, tenant_id: str, batch_id: str, file_id: str) -> BatchFile | None:
        file = self.files.get((tenant_id, batch_id, file_id))
        return file.model_copy(deep=True) if file else None

    def list_files(
        self,
        tenant_id: str,
        batch_id: str,
        *,
        limit: int,
        after_file_id: str | None = None,
        status: FileStatus | None = None,
        consistent: bool = False,
    ) -> tuple[list[BatchFile], str | None]:
        ids = sorted(
            f
            for (t, b, f), file in self.files.items()
            if (t, b) == (tenant_id, batch_id) and (status is None or file.status is status)
        )
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

    # -- stream PURGE ----------------------------------------------------------------------------
    def mark_deleted(self, tenant_id: str, batch_id: str, *, at: datetime) -> bool:
        batch = self.batches.get((tenant_id, batch_id))
        if batch is None or batch.deleted_at is not None or not batch.status.is_terminal:
            return False
        batch.deleted_at, batch.updated_at = at, at
        return True

    def unmark_deleted(self, tenant_id: str, batch_id: str, *, at: datetime) -> None:
        batch = self.batches.get((tenant_id, batch_id))
        if batch is not None and batch.deleted_at == at:
            batch.deleted_at = None

    def delete_batch_items(self, tenant_id: str, batch_id: str) -> int:
        files = [key for key in self.files if key[:2] == (tenant_id, batch_id)]
        for key in files:
            del self.files[key]
        batch = self.batches.get((tenant_id, batch_id))
        if batch is None or batch.deleted_at is None:
            return len(files)
        del self.batches[(tenant_id, batch_id)]
        return len(files) + 1


class InMemoryStorage:
    """A versioned bucket: `put` adds a version, `read` gives the current one or the one asked for."""

    def __init__(self) -> None:
        self.versions: dict[str, list[bytes]] = {}
        self.documents: dict[str, Any] = {}
        # Small chunks, so that tests cross chunk boundaries; counters, so they can see what was read.
        self.chunk_size = 64
        self.streams_opened = 0
        self.bytes_streamed = 0
        self.content_types: dict[str, str] = {}

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

    # -- stream PURGE ----------------------------------------------------------------------------
    def put_stream(self, key: str, chunks: Iterable[bytes], *, content_type: str) -> int:
        content = b"".join(chunks)
        self.put(key, content)
        self.content_types[key] = content_type
        return len(content)

    def exists(self, key: str) -> bool:
        return bool(self.versions.get(key)) or key in self.documents

    def presign_get(self, key: str, *, expires_in: int) -> str:
        return f"https://downloads.example/{key}?expires={expires_in}"

    def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        for key in [k for k in self.versions if k.startswith(prefix)]:
            deleted += len(self.versions.pop(key))
        for key in [k for k in self.documents if k.startswith(prefix)]:
            del self.documents[key]
            deleted += 1
        return deleted

    def all_keys(self) -> set[str]:
        return set(self.versions) | set(self.documents)


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


class RecordingJobQueue:
    """Keeps what was enqueued; `fail` makes the next enqueue raise as an unreachable queue would."""

    def __init__(self) -> None:
        self.jobs: list[BatchJob] = []
        self.fail = False

    def enqueue(self, job: BatchJob) -> None:
        if self.fail:
            raise StorageUnavailableError("SQS send of a job failed: ServiceUnavailable")
        self.jobs.append(job)
