"""Creating batches and reading their status and results (the REST API's business logic)."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from filebatch.errors import ConflictError, InvalidRequestError, NotFoundError
from filebatch.models.api import (
    UPLOADS_PER_PAGE,
    BatchCounts,
    BatchesPage,
    BatchesQuery,
    BatchStatusResponse,
    CreateBatchRequest,
    CreateBatchResponse,
    CreatedFile,
    DescriptionBody,
    DescriptionSettingsBody,
    DuplicateOfBody,
    ErrorDetail,
    FileResult,
    PageQuery,
    PostUpload,
    PutUpload,
    ResultsPage,
    TokenUsageBody,
    UploadsPage,
)
from filebatch.models.domain import (
    BATCH_ID_PATTERN,
    DEFAULT_INSTRUCTIONS,
    Batch,
    BatchFile,
    BatchStatus,
    FileStatus,
    Tenant,
    UploadMethod,
    file_id_for,
    manifest_key,
)
from filebatch.services.cursors import CursorSigner
from filebatch.services.description import abilities_of
from filebatch.services.duplicates import fingerprint, skip_known
from filebatch.services.limits import check_batch_size, reserve_batch
from filebatch.services.multipart import (
    MultipartPolicy,
    MultipartUploads,
    abort_uploads,
    page_cut,
    start_uploads,
)
from filebatch.services.ports import BatchEvents, BatchRepository, ObjectStorage
from filebatch.services.webhooks import WebhookPolicy, accept_webhook_url

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadLimits:
    max_files: int
    max_file_bytes: int
    url_ttl_seconds: int
    # The upload window closes this long after the upload URLs expire (a PUT begun just before its
    # URL expired may still be arriving).
    grace_seconds: int = 0
    # -- issue 10, stream MULTIPART: files declared larger than this upload in parts (None: none do).
    multipart_threshold_bytes: int | None = None

    def multipart_policy(self) -> MultipartPolicy | None:
        return MultipartPolicy(self.multipart_threshold_bytes) if self.multipart_threshold_bytes else None

    def upload_deadline(self, now: datetime) -> datetime:
        # Whole seconds: the sweep's index sorts deadlines as text (records.due_stamp).
        return now.replace(microsecond=0) + timedelta(seconds=self.url_ttl_seconds + self.grace_seconds + 1)


@dataclass(frozen=True)
class DuplicateSettings:
    """What create needs to skip duplicates (issue 10): the deployment's description provider (its
    name, as the status names it) and its identity with the model (what the fingerprint hashes), and
    the bus that announces a batch ended at create because every file was skipped."""

    provider: str
    provider_identity: str
    events: BatchEvents


def new_batch_id() -> str:
    return f"b-{uuid.uuid4().hex}"


def create_batch(
    repo: BatchRepository,
    storage: ObjectStorage,
    tenant: Tenant,
    request: CreateBatchRequest,
    *,
    limits: UploadLimits,
    retention_days: int,
    cursors: CursorSigner,
    now: datetime,
    make_batch_id: Callable[[], str] = new_batch_id,
    webhooks: WebhookPolicy | None = None,
    duplicates: DuplicateSettings | None = None,
) -> CreateBatchResponse:
    """`duplicates`: what a batch that skips duplicates needs (issue 10): the deployment's provider
    and the event bus that announces a batch whose every file was skipped (it ends at once)."""
    check_batch_size(tenant, len(request.files), deployment_max=limits.max_files)
    too_big = [f.filename for f in request.files if f.size > limits.max_file_bytes]
    if too_big:
        raise InvalidRequestError(
            f"files larger than {limits.max_file_bytes} bytes are not accepted: {', '.join(too_big[:5])}",
            code="file_too_large",
        )
    # -- stream EVENTS: a webhook needs the tenant's secret, and a URL the deployment may call.
    if request.webhook_url is not None:
        accept_webhook_url(repo, tenant.tenant_id, request.webhook_url, webhooks)

    # Before anything is counted or written; the batch's own write claims the name (a race between
    # two creates with one name is decided there).
    if request.name is not None and repo.name_holder(tenant.tenant_id, request.name, now=now) is not None:
        raise name_taken(request.name)

    batch_id = make_batch_id()
    # The batch's items expire with its objects (the bucket's lifecycle uses the same number of
    # days). Whole seconds: the TTL attribute is epoch seconds.
    expires_at = now.replace(microsecond=0) + timedelta(days=retention_days)
    files = [
        BatchFile(
            tenant_id=tenant.tenant_id,
            batch_id=batch_id,
            file_id=file_id_for(position),
            filename=spec.filename,
            declared_size=spec.size,
            declared_content_type=spec.content_type,
            declared_sha256=spec.sha256,
            status=FileStatus.AWAITING_UPLOAD,
            expires_at=expires_at,
        )
        for position, spec in enumerate(request.files, start=1)
    ]
    instructions = request.description.to_domain() if request.description else DEFAULT_INSTRUCTIONS
    dedup_fingerprint = None
    if request.skip_duplicates:
        if duplicates is None:
            raise TypeError("create_batch needs `duplicates` for a batch that skips duplicates")
        dedup_fingerprint = fingerprint(duplicates.provider_identity, instructions)
        # Files the tenant already has a result for are skipped: created ended, never uploaded.
        files = skip_known(repo, files, fingerprint=dedup_fingerprint, now=now)
    to_upload = [f for f in files if f.status is FileStatus.AWAITING_UPLOAD]
    skipped = len(files) - len(to_upload)
    batch = Batch(
        tenant_id=tenant.tenant_id,
        batch_id=batch_id,
        instructions=instructions,
        status=BatchStatus.AWAITING_UPLOAD,
        total=len(files),
        counts={FileStatus.AWAITING_UPLOAD: len(to_upload), FileStatus.SKIPPED: skipped},
        # A skipped file needs no upload: counted as arrived, so the run starts when the others have.
        arrived=skipped,
        dedup_fingerprint=dedup_fingerprint,
        # A batch with nothing to upload is due at once: should its end below not be carried out
        # (a crash, the bus unavailable), the sweep ends it within a minute.
        due_at=limits.upload_deadline(now) if to_upload else now.replace(microsecond=0),
        created_at=now,
        updated_at=now,
        expires_at=expires_at,
        webhook_url=request.webhook_url,
        name=request.name,
        metadata=dict(request.metadata or {}),
        upload_method=request.upload_method,
        skip_duplicates=request.skip_duplicates,
    )
    # Counted against the plan first (open batches, files this month); given back if the batch is
    # not created after all. The batch's end (finish_batch) gives the open slot back.
    month = reserve_batch(repo, tenant, len(files), now=now)
    policy = limits.multipart_policy()
    first_page = files[:UPLOADS_PER_PAGE]
    first_page = first_page[: page_cut(first_page, policy)]
    # -- issue 10: the first page's multipart uploads are started before the commit, their ids
    # written with the file items, so that a failed S3 call fails the create (not yet committed,
    # safe to retry) instead of a created batch's answer.
    in_parts = (
        [f for f in first_page if policy.applies_to(f) and f.status is FileStatus.AWAITING_UPLOAD]
        if policy
        else []
    )
    try:
        start_uploads(storage, in_parts)
        # The manifest is what the workflow's Distributed Map reads: it exists before any upload can
        # complete, and the batch record (written last by create_batch) is the commit point.
        # Only the files to process: a skipped one has its result already.
        storage.put_json(
            manifest_key(tenant.tenant_id, batch_id), [{"file_id": f.file_id} for f in to_upload]
        )
        repo.create_batch(batch, files)
    except BaseException:
        repo.release_batch(tenant.tenant_id, month=month, files=len(files))
        abort_uploads(storage, in_parts)
        raise
    if not to_upload and duplicates is not None:
        # Every file skipped: the batch ends now, as any batch ends (export, status, announcement).
        from filebatch.services.lifecycle import end_batch  # lifecycle imports this module

        try:
            batch = end_batch(
                repo,
                storage,
                duplicates.events,
                tenant.tenant_id,
                batch_id,
                expected=BatchStatus.AWAITING_UPLOAD,
                now=now,
                provider=duplicates.provider,
            )
        except Exception:
            # The batch exists and is due (now, or, its end written but not announced, a watchdog
            # time later): the sweep carries its end out. The client gets its batch (a 5xx would
            # make it create another).
            log.exception("batch %s: every file skipped, its end is left to the sweep", batch_id)

    return CreateBatchResponse(
        batch_id=batch_id,
        status=batch.status,
        created_at=now,
        total_files=len(files),
        files=upload_instructions(
            storage,
            first_page,
            ttl_seconds=limits.url_ttl_seconds,
            now=now,
            method=batch.upload_method,
            multipart=MultipartUploads(repo, cursors, policy) if policy else None,
        ),
        next_uploads_cursor=cursors.encode(tenant.tenant_id, batch_id, first_page[-1].file_id)
        if len(files) > len(first_page)
        else None,
        webhook_url=batch.webhook_url,
        name=batch.name,
        metadata=batch.metadata,
    )


def replay_created_batch(
    repo: BatchRepository,
    storage: ObjectStorage,
    tenant: Tenant,
    batch_id: str,
    *,
    url_ttl_seconds: int,
    cursors: CursorSigner,
    now: datetime,
    multipart: MultipartPolicy | None = None,
) -> CreateBatchResponse:
    """The create answer of an existing batch, read back from the store: what a repeated
    Idempotency-Key request gets when the first answer was too large to keep whole. Same batch,
    files and cursor; the upload URLs are signed anew and the status is the batch's current one."""
    batch = require_batch(repo, tenant, batch_id)
    first_page, _ = repo.list_files(tenant.tenant_id, batch_id, limit=UPLOADS_PER_PAGE)
    first_page = first_page[: page_cut(first_page, multipart)]
    return CreateBatchResponse(
        batch_id=batch_id,
        status=batch.status,
        created_at=batch.created_at,
        total_files=batch.total,
        files=upload_instructions(
            storage,
            first_page,
            ttl_seconds=url_ttl_seconds,
            now=now,
            method=batch.upload_method,
            multipart=MultipartUploads(repo, cursors, multipart) if multipart else None,
        ),
        next_uploads_cursor=cursors.encode(tenant.tenant_id, batch_id, first_page[-1].file_id)
        if first_page and batch.total > len(first_page)
        else None,
        name=batch.name,
        metadata=batch.metadata,
        webhook_url=batch.webhook_url,
    )


def name_taken(name: str) -> ConflictError:
    return ConflictError(
        f"another of your batches is named {name!r}; names are unique among batches that still exist",
        code="name_taken",
    )


def upload_instructions(
    storage: ObjectStorage,
    files: list[BatchFile],
    *,
    ttl_seconds: int,
    now: datetime,
    method: UploadMethod = "PUT",
    multipart: MultipartUploads | None = None,
) -> list[CreatedFile]:
    """A presigned upload per file, signed for its declared type, size and (when declared) SHA-256:
    a PUT, or with `method` POST (the batch's upload_method) a browser form upload; a MULTIPART
    instruction, whatever the method, for a file above the multipart threshold (its S3 upload
    started, or reused, here)."""
    expires_at = now + timedelta(seconds=ttl_seconds)
    in_parts = multipart.instructions(storage, files, ttl_seconds=ttl_seconds, now=now) if multipart else {}
    created = []
    for file in files:
        if file.status is FileStatus.SKIPPED:
            created.append(skipped_file(file))
            continue
        created.append(
            CreatedFile(
                file_id=file.file_id,
                filename=file.filename,
                size=file.declared_size,
                content_type=file.declared_content_type,
                sha256=file.declared_sha256,
                upload=in_parts[file.file_id]
                if file.file_id in in_parts
                else signed_upload(
                    storage, file, method=method, ttl_seconds=ttl_seconds, expires_at=expires_at
                ),
            )
        )
    return created


def signed_upload(
    storage: ObjectStorage, file: BatchFile, *, method: UploadMethod, ttl_seconds: int, expires_at: datetime
) -> PutUpload | PostUpload:
    """One file's single-request upload: a presigned PUT, or a browser form POST."""
    if method == "POST":
        url, fields = storage.presign_post(
            file.object_key,
            content_type=file.declared_content_type,
            size=file.declared_size,
            expires_in=ttl_seconds,
            sha256=file.declared_sha256,
        )
        return PostUpload(url=url, fields=fields, expires_at=expires_at)
    url, headers = storage.presign_put(
        file.object_key,
        content_type=file.declared_content_type,
        size=file.declared_size,
        expires_in=ttl_seconds,
        sha256=file.declared_sha256,
    )
    return PutUpload(url=url, headers=headers, expires_at=expires_at)


def skipped_file(file: BatchFile) -> CreatedFile:
    """A file skipped as a duplicate (issue 10): no upload instruction, and whose result it has."""
    return CreatedFile(
        file_id=file.file_id,
        filename=file.filename,
        size=file.declared_size,
        content_type=file.declared_content_type,
        sha256=file.declared_sha256,
        upload=None,
        duplicate_of=DuplicateOfBody(**file.duplicate_of.model_dump()) if file.duplicate_of else None,
    )


def list_uploads(
    repo: BatchRepository,
    storage: ObjectStorage,
    tenant: Tenant,
    batch_id: str,
    query: PageQuery,
    *,
    cursors: CursorSigner,
    limits: UploadLimits,
    now: datetime,
) -> UploadsPage:
    """Fresh upload instructions for the files still awaiting upload, a page at a time: for batches
    larger than the create response's page, and to replace URLs that expired before the upload.
    An ended batch takes no more uploads: 409 rather than an empty page that looks like success."""
    batch = require_batch(repo, tenant, batch_id)
    require_open_for_uploads(batch)
    if batch.status is BatchStatus.AWAITING_UPLOAD:
        # The window lasts as long as the URLs handed out (plus the grace period).
        repo.extend_upload_window(tenant.tenant_id, batch_id, due_at=limits.upload_deadline(now))
    after = cursors.decode(tenant.tenant_id, batch_id, query.cursor) if query.cursor else None
    files, last = repo.list_files(tenant.tenant_id, batch_id, limit=query.limit, after_file_id=after)
    policy = limits.multipart_policy()
    cut = page_cut(files, policy)
    if cut < len(files):
        files, last = files[:cut], files[cut - 1].file_id
    waiting = [f for f in files if f.status is FileStatus.AWAITING_UPLOAD]
    return UploadsPage(
        batch_id=batch_id,
        items=upload_instructions(
            storage,
            waiting,
            ttl_seconds=limits.url_ttl_seconds,
            now=now,
            method=batch.upload_method,
            multipart=MultipartUploads(repo, cursors, policy) if policy else None,
        ),
        next_cursor=cursors.encode(tenant.tenant_id, batch_id, last) if last else None,
    )


def require_open_for_uploads(batch: Batch) -> None:
    """An ended batch takes no more uploads (409 batch_ended), nor one whose uploads were closed
    (409 uploads_closed)."""
    if batch.status.is_terminal:
        raise ConflictError(
            f"batch {batch.batch_id} has ended ({batch.status.value}); it takes no more uploads",
            code="batch_ended",
        )
    if batch.closed_at is not None:
        raise ConflictError(f"batch {batch.batch_id} takes no more uploads (closed)", code="uploads_closed")


def require_batch(repo: BatchRepository, tenant: Tenant, batch_id: str, *, consistent: bool = False) -> Batch:
    # A malformed id cannot name a batch: same answer as an unknown one, and no read needed.
    batch = (
        repo.get_batch(tenant.tenant_id, batch_id, consistent=consistent)
        if re.match(BATCH_ID_PATTERN, batch_id)
        else None
    )
    if batch is None:
        raise NotFoundError(f"batch {batch_id} not found", code="batch_not_found")
    return batch


def get_batch_status(
    repo: BatchRepository,
    tenant: Tenant,
    batch_id: str,
    *,
    provider: str,
    now: datetime,
    consistent: bool = False,
) -> BatchStatusResponse:
    """`provider` is the deployment's description provider: the status says which of the batch's
    instructions it follows. `consistent`: read what was just written (an announcement of its end)."""
    return status_of(require_batch(repo, tenant, batch_id, consistent=consistent), provider=provider, now=now)


def status_of(batch: Batch, *, provider: str, now: datetime) -> BatchStatusResponse:
    instructions = batch.instructions
    abilities = abilities_of(provider)
    ignored = abilities.ignored(instructions)
    return BatchStatusResponse(
        batch_id=batch.batch_id,
        name=batch.name,
        metadata=batch.metadata,
        status=batch.status,
        is_terminal=batch.status.is_terminal,
        counts=BatchCounts(total=batch.total, **{status.value: batch.count(status) for status in FileStatus}),
        usage=TokenUsageBody(input_tokens=batch.input_tokens, output_tokens=batch.output_tokens),
        description=DescriptionSettingsBody(
            provider=provider,
            prompt=instructions.prompt,
            language=instructions.language,
            detail=instructions.detail,
            ignored=ignored,
            note=abilities.note if ignored else None,
        ),
        progress_percentage=batch.progress_percentage,
        eta_seconds=batch.eta_seconds(now),
        retries=batch.retries,
        upload_deadline=batch.due_at
        if batch.status is BatchStatus.AWAITING_UPLOAD and batch.closed_at is None
        else None,
        closed_at=batch.closed_at,
        created_at=batch.created_at,
        updated_at=batch.updated_at,
        finished_at=batch.finished_at,
        webhook_url=batch.webhook_url,
    )


def to_file_result(file: BatchFile) -> FileResult:
    return FileResult(
        file_id=file.file_id,
        filename=file.filename,
        status=file.status,
        declared_size=file.declared_size,
        declared_content_type=file.declared_content_type,
        declared_sha256=file.declared_sha256,
        size_bytes=file.facts.size_bytes if file.facts else None,
        sha256=file.facts.sha256 if file.facts else None,
        detected_content_type=file.facts.detected_content_type if file.facts else None,
        description=DescriptionBody(**file.description.model_dump()) if file.description else None,
        error=ErrorDetail(**file.error.model_dump()) if file.error else None,
        uploaded_at=file.uploaded_at,
        finished_at=file.finished_at,
        duplicate_of=DuplicateOfBody(**file.duplicate_of.model_dump()) if file.duplicate_of else None,
    )


def list_results(
    repo: BatchRepository,
    tenant: Tenant,
    batch_id: str,
    query: PageQuery,
    *,
    cursors: CursorSigner,
    status: FileStatus | None = None,
) -> ResultsPage:
    """With `status`, only files in that status: a page may then hold fewer than `limit` results (or
    none) and still have a `next_cursor`, since a page reads a bounded number of files."""
    require_batch(repo, tenant, batch_id)
    after = cursors.decode(tenant.tenant_id, batch_id, query.cursor) if query.cursor else None
    files, last = repo.list_files(
        tenant.tenant_id, batch_id, limit=query.limit, after_file_id=after, status=status
    )
    return ResultsPage(
        batch_id=batch_id,
        items=[to_file_result(f) for f in files],
        next_cursor=cursors.encode(tenant.tenant_id, batch_id, last) if last else None,
    )


# -- the tenant's list of batches (issue 8, stream CREATE) ------------------------------------------
BATCHES_CURSOR_SCOPE = "batches"


def list_batches(
    repo: BatchRepository,
    tenant: Tenant,
    query: BatchesQuery,
    *,
    cursors: CursorSigner,
    provider: str,
    now: datetime,
) -> BatchesPage:
    """The caller's batches newest first, filtered by status and name prefix. Only the tenant's own
    batches can be read: the list is keyed by tenant, and a cursor verifies only for its tenant."""
    after = cursors.decode_key(tenant.tenant_id, BATCHES_CURSOR_SCOPE, query.cursor) if query.cursor else None
    batches, last = repo.list_batches(
        tenant.tenant_id, limit=query.limit, after=after, status=query.status, name_prefix=query.name
    )
    return BatchesPage(
        # A deleted batch is gone for its tenant (its items go with its purge): not listed.
        items=[status_of(batch, provider=provider, now=now) for batch in batches if batch.deleted_at is None],
        next_cursor=cursors.encode_key(tenant.tenant_id, BATCHES_CURSOR_SCOPE, last) if last else None,
    )
