"""In-memory stand-ins for the service ports, with the same conditional semantics as the DynamoDB
adapter (tests/integration checks the adapter itself against moto)."""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from datetime import datetime
from typing import Any

from filebatch.errors import ConflictError, NotFoundError, StorageUnavailableError
from filebatch.models.domain import (
    Batch,
    BatchFile,
    BatchStatus,
    Description,
    DuplicateOf,
    FileError,
    FileFacts,
    FileStatus,
    KnownResult,
    TenantUsage,
    WebhookSecret,
    sha256_base64,
)
from filebatch.models.records import ApiKeyRecord
from filebatch.models.workflow import BatchJob
from filebatch.services.ports import ObjectHead, StoredObject, StoredPart, WebhookResponse, WebhookTarget


class InMemoryRepository:
    def __init__(self) -> None:
        self.batches: dict[tuple[str, str], Batch] = {}
        self.files: dict[tuple[str, str, str], BatchFile] = {}
        self.api_keys: dict[str, ApiKeyRecord] = {}
        self.open_batches: dict[str, int] = {}
        self.files_by_month: dict[tuple[str, str], int] = {}
        # -- stream EVENTS
        self.webhook_secrets: dict[str, WebhookSecret] = {}
        # (tenant, name) → (batch id, expires_at); see the names block below.
        self.name_claims: dict[tuple[str, str], tuple[str, datetime | None]] = {}
        # -- issue 10: the hash index, (tenant, fingerprint, sha256) → entry; reads counted.
        self.known: dict[tuple[str, str, str], KnownResult] = {}
        self.known_reads = 0

    def create_batch(self, batch: Batch, files: Sequence[BatchFile]) -> None:
        if batch.name is not None:
            self._claim_name(batch)
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
        if batch.status is not BatchStatus.AWAITING_UPLOAD or batch.closed_at is not None:
            return False
        file.status, file.uploaded_at, file.uploaded_version_id = FileStatus.UPLOADED, at, version_id
        self._count(batch, FileStatus.AWAITING_UPLOAD, FileStatus.UPLOADED)
        batch.arrived += 1
        batch.updated_at = at
        return True

    # -- issue 10, stream MULTIPART
    def claim_multipart_upload(self, tenant_id: str, batch_id: str, file_id: str, *, upload_id: str) -> bool:
        file = self.files.get((tenant_id, batch_id, file_id))
        if file is None or file.status is not FileStatus.AWAITING_UPLOAD or file.multipart_upload_id:
            return False
        file.multipart_upload_id = upload_id
        return True

    def release_multipart_upload(
        self, tenant_id: str, batch_id: str, file_id: str, *, upload_id: str
    ) -> bool:
        file = self.files.get((tenant_id, batch_id, file_id))
        if file is None or file.multipart_upload_id != upload_id:
            return False
        file.multipart_upload_id = None
        return True

    @staticmethod
    def _count(batch: Batch, leaving: FileStatus, arriving: FileStatus) -> None:
        batch.counts[leaving] = batch.count(leaving) - 1
        batch.counts[arriving] = batch.count(arriving) + 1

    def start_run(self, tenant_id: str, batch_id: str, *, files: int, at: datetime) -> bool:
        batch = self.batches.get((tenant_id, batch_id))
        if batch is None or batch.status is not BatchStatus.AWAITING_UPLOAD:
            return False
        batch.status, batch.updated_at, batch.run_started_at, batch.run_files = (
            BatchStatus.PROCESSING,
            at,
            at,
            files,
        )
        batch.due_at = None
        return True

    def move_file(
        self,
        tenant_id: str,
        batch_id: str,
        file_id: str,
        *,
        expected: FileStatus,
        to: FileStatus,
        at: datetime,
        facts: FileFacts | None = None,
        description: Description | None = None,
        error: FileError | None = None,
        while_batch_runs: bool = False,
        duplicate_of: DuplicateOf | None = None,
    ) -> bool:
        file = self.files.get((tenant_id, batch_id, file_id))
        batch = self.batches.get((tenant_id, batch_id))
        if file is None or batch is None or file.status is not expected:
            return False
        if while_batch_runs and batch.status not in {BatchStatus.AWAITING_UPLOAD, BatchStatus.PROCESSING}:
            return False
        file.status = to
        if to.is_terminal:
            file.finished_at = at
        else:
            file.finished_at, file.error, file.description = None, None, None
        file.facts = facts or file.facts
        file.description = description or file.description
        file.error = error or file.error
        file.duplicate_of = duplicate_of or file.duplicate_of
        self._count(batch, expected, to)
        if description is not None and description.invocation is not None and duplicate_of is None:
            batch.input_tokens += description.invocation.usage.input_tokens
            batch.output_tokens += description.invocation.usage.output_tokens
        batch.updated_at = at
        return True

    def move_files(
        self,
        tenant_id: str,
        batch_id: str,
        files: Sequence[tuple[str, FileStatus]],
        *,
        to: FileStatus,
        at: datetime,
        error: FileError | None = None,
    ) -> int:
        return sum(
            self.move_file(tenant_id, batch_id, file_id, expected=expected, to=to, at=at, error=error)
            for file_id, expected in files
        )

    def finish_batch(
        self,
        tenant_id: str,
        batch_id: str,
        *,
        status: BatchStatus,
        expected: frozenset[BatchStatus],
        at: datetime,
        due_at: datetime | None,
    ) -> bool:
        batch = self.batches.get((tenant_id, batch_id))
        if batch is None or batch.status not in expected:
            return False
        batch.status, batch.finished_at, batch.updated_at, batch.due_at = status, at, at, due_at
        if due_at is not None:
            batch.announced_at = None
        self.open_batches[tenant_id] = self.open_batches.get(tenant_id, 0) - 1
        return True

    def mark_announced(
        self, tenant_id: str, batch_id: str, *, status: BatchStatus, retries: int, at: datetime
    ) -> bool:
        batch = self.batches.get((tenant_id, batch_id))
        if batch is None or batch.status is not status or batch.retries != retries:
            return False
        batch.announced_at, batch.due_at = at, None
        return True

    def close_uploads(self, tenant_id: str, batch_id: str, *, at: datetime, due_at: datetime) -> bool:
        batch = self.batches.get((tenant_id, batch_id))
        if batch is None or batch.status is not BatchStatus.AWAITING_UPLOAD or batch.closed_at is not None:
            return False
        batch.closed_at, batch.updated_at, batch.due_at = at, at, due_at
        return True

    def extend_upload_window(self, tenant_id: str, batch_id: str, *, due_at: datetime) -> bool:
        batch = self.batches.get((tenant_id, batch_id))
        if batch is None or batch.status is not BatchStatus.AWAITING_UPLOAD or batch.closed_at is not None:
            return False
        if batch.due_at is None or batch.due_at >= due_at:
            return False
        batch.due_at = due_at
        return True

    def begin_cancel(self, tenant_id: str, batch_id: str, *, at: datetime, due_at: datetime) -> bool:
        batch = self.batches.get((tenant_id, batch_id))
        if batch is None or batch.status not in {BatchStatus.AWAITING_UPLOAD, BatchStatus.PROCESSING}:
            return False
        batch.status, batch.updated_at, batch.due_at = BatchStatus.CANCELLING, at, due_at
        batch.closed_at = batch.closed_at or at
        return True

    def claim_retry(
        self, tenant_id: str, batch_id: str, *, expected: BatchStatus, retry: int, files: int, at: datetime
    ) -> bool:
        batch = self.batches.get((tenant_id, batch_id))
        if batch is None or batch.status is not expected or batch.retries != retry - 1:
            return False
        batch.status, batch.retries, batch.updated_at, batch.finished_at = (
            BatchStatus.PROCESSING,
            retry,
            at,
            None,
        )
        batch.run_started_at, batch.run_files = at, files
        self.open_batches[tenant_id] = self.open_batches.get(tenant_id, 0) + 1
        return True

    def list_due(self, *, now: datetime, limit: int) -> list[tuple[str, str]]:
        due = sorted(
            (batch.due_at, key)
            for key, batch in self.batches.items()
            if batch.due_at is not None and batch.due_at <= now
        )
        return [key for _, key in due[:limit]]

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

    # -- stream EVENTS
    def get_webhook_secret(self, tenant_id: str) -> WebhookSecret | None:
        return self.webhook_secrets.get(tenant_id)

    def put_webhook_secret(self, secret: WebhookSecret, *, replacing: datetime | None) -> bool:
        stored = self.webhook_secrets.get(secret.tenant_id)
        if (stored.created_at if stored else None) != replacing:
            return False
        self.webhook_secrets[secret.tenant_id] = secret
        return True

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

    # -- issue 10: the hash index (the adapter's conditions, in memory) -----------------------------
    def known_results(
        self, tenant_id: str, fingerprint: str, sha256s: Sequence[str], *, now: datetime
    ) -> dict[str, KnownResult]:
        assert len(set(sha256s)) == len(sha256s), "BatchGetItem refuses a key asked twice"
        self.known_reads += len(sha256s)
        found = {}
        for sha256 in sha256s:
            entry = self.known.get((tenant_id, fingerprint, sha256))
            if entry and entry.state == "completed" and not _expired(entry.expires_at, now):
                found[sha256] = entry.model_copy(deep=True)
        return found

    def claim_description(self, claim: KnownResult, *, now: datetime) -> KnownResult | None:
        key = (claim.tenant_id, claim.fingerprint, claim.sha256)
        held = self.known.get(key)
        free = (
            held is None
            or _expired(held.expires_at, now)
            or (
                held.state == "claimed"
                and (
                    (held.lease_until is not None and held.lease_until < now)
                    or (held.batch_id, held.file_id) == (claim.batch_id, claim.file_id)
                )
            )
        )
        if not free:
            assert held is not None
            return held.model_copy(deep=True)
        self.known[key] = claim.model_copy(deep=True)
        return None

    def publish_result(self, result: KnownResult, *, now: datetime) -> bool:
        key = (result.tenant_id, result.fingerprint, result.sha256)
        held = self.known.get(key)
        if held is not None and held.state == "completed" and not _expired(held.expires_at, now):
            return False
        self.known[key] = result.model_copy(deep=True)
        return True

    def release_claim(
        self, tenant_id: str, fingerprint: str, sha256: str, *, batch_id: str, file_id: str
    ) -> bool:
        held = self.known.get((tenant_id, fingerprint, sha256))
        if held is None or held.state != "claimed" or (held.batch_id, held.file_id) != (batch_id, file_id):
            return False
        del self.known[(tenant_id, fingerprint, sha256)]
        return True

    def forget_results(
        self, tenant_id: str, fingerprint: str, sha256s: Sequence[str], *, batch_id: str
    ) -> int:
        forgotten = 0
        for sha256 in sha256s:
            held = self.known.get((tenant_id, fingerprint, sha256))
            if held is not None and held.batch_id == batch_id:
                del self.known[(tenant_id, fingerprint, sha256)]
                forgotten += 1
        return forgotten


def _expired(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is not None and expires_at < now


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
        # -- issue 10, stream MULTIPART (see below)
        self.multipart: dict[str, tuple[str, dict[int, StoredPart]]] = {}
        self.heads: dict[str, ObjectHead] = {}
        self.aborted: list[str] = []
        self.multipart_created = 0
        # Uploads created with part checksums (ChecksumAlgorithm SHA256).
        self.checksummed_uploads: set[str] = set()

    def put(self, key: str, content: bytes) -> str:
        """Store a new version of `key`; returns its version id."""
        self.versions.setdefault(key, []).append(content)
        return f"v{len(self.versions[key])}"

    def presign_put(
        self, key: str, *, content_type: str, size: int, expires_in: int, sha256: str | None = None
    ) -> tuple[str, dict[str, str]]:
        headers = {"Content-Type": content_type, "If-None-Match": "*"}
        if sha256 is not None:
            headers["x-amz-checksum-sha256"] = sha256_base64(sha256)
        return f"https://uploads.example/{key}?expires={expires_in}", headers

    def presign_post(
        self, key: str, *, content_type: str, size: int, expires_in: int, sha256: str | None = None
    ) -> tuple[str, dict[str, str]]:
        fields = {"key": key, "Content-Type": content_type, "policy": f"size={size}"}
        if sha256 is not None:
            fields["x-amz-checksum-sha256"] = sha256_base64(sha256)
        return f"https://uploads.example/?expires={expires_in}", fields

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

    # -- issue 10, stream MULTIPART: uploads hold part sizes and ETags only (tests declare gigabytes).
    # A completed upload becomes an object `head` knows (its bytes are not kept).
    def head(self, key: str) -> ObjectHead | None:
        if key in self.heads:
            return self.heads[key]
        versions = self.versions.get(key)
        return ObjectHead(len(versions[-1]), f"etag-{key}") if versions else None

    def create_multipart_upload(self, key: str, *, content_type: str, part_checksums: bool = False) -> str:
        self.multipart_created += 1
        upload_id = f"upload-{self.multipart_created}"
        self.multipart[upload_id] = (key, {})
        if part_checksums:
            self.checksummed_uploads.add(upload_id)
        return upload_id

    def presign_upload_part(
        self,
        key: str,
        upload_id: str,
        part_number: int,
        *,
        size: int,
        expires_in: int,
        sha256: str | None = None,
    ) -> tuple[str, dict[str, str]]:
        headers = {"x-amz-checksum-sha256": sha256_base64(sha256)} if sha256 is not None else {}
        url = f"https://uploads.example/{key}?uploadId={upload_id}&partNumber={part_number}&size={size}"
        return url, headers

    def upload_part(self, upload_id: str, part_number: int, size: int, checksum: str | None = None) -> str:
        """What a client's PUT of a part does: S3 keeps it (the last PUT of a number wins)."""
        etag = f"etag-{upload_id}-{part_number}-{size}"
        self.multipart[upload_id][1][part_number] = StoredPart(part_number, etag, size, checksum)
        return etag

    def list_parts(
        self, key: str, upload_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[StoredPart]:
        if upload_id not in self.multipart:
            raise NotFoundError(f"no upload {upload_id}", code="upload_not_found")
        parts = sorted((p for n, p in self.multipart[upload_id][1].items() if n > after), key=lambda p: p[0])
        return parts if limit is None else parts[:limit]

    def complete_multipart_upload(
        self, key: str, upload_id: str, parts: Sequence[tuple[int, str, str | None]]
    ) -> str:
        if upload_id not in self.multipart:
            raise NotFoundError(f"no upload {upload_id}", code="upload_not_found")
        held = self.multipart.pop(upload_id)[1]
        etag = f"etag-{upload_id}-{len(parts)}"
        self.heads[key] = ObjectHead(sum(held[n].size for n, _, _ in parts), etag)
        return etag

    def abort_multipart_upload(self, key: str, upload_id: str) -> bool:
        self.aborted.append(upload_id)
        return self.multipart.pop(upload_id, None) is not None

    def live_uploads(self, key: str) -> list[str]:
        return [upload_id for upload_id, (k, _) in self.multipart.items() if k == key]


class RecordingStarter:
    """Refuses a second start with the same name, as Step Functions does."""

    def __init__(self) -> None:
        self.started: dict[str, dict[str, Any]] = {}
        self.stopped: list[str] = []
        self.attempts = 0

    def stop(self, name: str, *, cause: str) -> bool:
        if name not in self.started or name in self.stopped:
            return False
        self.stopped.append(name)
        return True

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


# -- stream EVENTS ------------------------------------------------------------------------------------
class RecordingEvents:
    """The event bus: keeps what was put on it; `fail_next` makes the next puts fail as PutEvents can."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.fail_next = 0

    def announce(self, *, event_id: str, detail_type: str, detail: str, at: datetime) -> None:
        if self.fail_next:
            self.fail_next -= 1
            from filebatch.errors import StorageUnavailableError

            raise StorageUnavailableError("EventBridge put failed: InternalFailure")
        self.events.append({"event_id": event_id, "detail_type": detail_type, "detail": detail, "at": at})


class FakeResolver:
    """DNS as a table: host → addresses (a missing host does not resolve). Change it between calls to
    play a rebinding name."""

    def __init__(self, table: dict[str, list[str]] | None = None) -> None:
        self.table = dict(table or {})
        self.lookups: list[tuple[str, int]] = []

    def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append((host, port))
        if host not in self.table:
            raise OSError(f"[Errno -2] Name or service not known: {host}")
        return list(self.table[host])


class RecordingTransport:
    """Answers each POST with the next of `answers` (a status, or an OSError to raise), keeping what
    was sent."""

    def __init__(self, *answers: int | OSError | WebhookResponse) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[WebhookTarget, dict[str, str], bytes]] = []

    def post(self, target: WebhookTarget, headers: dict[str, str], body: bytes) -> WebhookResponse:
        self.sent.append((target, dict(headers), body))
        answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, OSError):
            raise answer
        return answer if isinstance(answer, WebhookResponse) else WebhookResponse(answer)


class RecordingQueue:
    def __init__(self) -> None:
        self.postponed: list[tuple[str, int]] = []

    def postpone(self, receipt_handle: str, seconds: int) -> None:
        self.postponed.append((receipt_handle, seconds))


class RecordingJobQueue:
    """Keeps what was enqueued; `fail` makes the next enqueue raise as an unreachable queue would."""

    def __init__(self) -> None:
        self.jobs: list[BatchJob] = []
        self.fail = False

    def enqueue(self, job: BatchJob) -> None:
        if self.fail:
            raise StorageUnavailableError("SQS send of a job failed: ServiceUnavailable")
        self.jobs.append(job)
