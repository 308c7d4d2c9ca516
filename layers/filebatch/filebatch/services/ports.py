"""What the services need from the outside world. Adapters implement these with boto3; unit tests
implement them with in-memory fakes."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol

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
)
from filebatch.models.records import ApiKeyRecord
from filebatch.models.workflow import BatchJob
from filebatch.plans import PlanName


class BatchRepository(Protocol):
    def create_batch(self, batch: Batch, files: Sequence[BatchFile]) -> None:
        """Write the files, then the batch (the batch item makes the batch visible). A named batch
        claims its name in the same write as the batch item: ConflictError (name_taken), and no
        batch, when another batch of the tenant that still exists holds the name."""

    def get_batch(
        self, tenant_id: str, batch_id: str, *, consistent: bool = False, include_deleted: bool = False
    ) -> Batch | None:
        """None for an unknown batch, and for a deleted one unless `include_deleted` (the purge)."""

    def get_file(self, tenant_id: str, batch_id: str, file_id: str) -> BatchFile | None: ...

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
        """Files in file-id order (only those in `status` when given); the second value is the file id
        to continue after when more may follow. With a status that id may be of a file that is not
        in the page: a page reads a bounded number of files, and may hold fewer than `limit`.
        `consistent`: a strongly consistent read (every write acknowledged before it is seen)."""

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
        """awaiting_upload → uploaded (remembering the object version) and count it on the batch,
        atomically. False if it was not awaiting upload (a duplicate or late event): nothing is
        changed then, so the first recorded version stands."""

    def start_run(self, tenant_id: str, batch_id: str, *, files: int, at: datetime) -> bool:
        """awaiting_upload → processing: the first run, of `files` files, starts now (nothing is due
        for the batch any more). False when the batch had already moved on."""

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
        """`expected` → `to` and the batch's counts with it, atomically (model tokens are added when
        a description is recorded). Leaving a terminal state clears the earlier outcome. False, and
        nothing changed, when the file was not in `expected` (or, with `while_batch_runs`, when the
        batch is no longer awaiting upload or processing). `duplicate_of`: the description is
        another file's, reused (issue 10): recorded with it, and its model tokens are not counted
        again."""

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
        """Move many files (file id, the state it was seen in) to one terminal state, in as few
        transactions as the store allows; a file that has moved on meanwhile is left alone. Returns
        how many moved."""

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
        """Give the batch a terminal status from one of `expected`, once, releasing its open-batch
        slot with it. False (and nothing released) when it was in no expected state. The end is then
        owed an announcement (`announced_at` cleared) and the batch stays due at `due_at` until
        `mark_announced`; None for an end that is not announced (a retry that could not start
        ends the batch as it was, an end already announced)."""

    def mark_announced(
        self, tenant_id: str, batch_id: str, *, status: BatchStatus, retries: int, at: datetime
    ) -> bool:
        """The end `status` of run `retries` was announced: set `announced_at`, and the batch is no
        longer due. False, and nothing changed, when the batch is no longer in that end (a retry
        started meanwhile: its own end is owed its own announcement)."""

    def close_uploads(self, tenant_id: str, batch_id: str, *, at: datetime, due_at: datetime) -> bool:
        """End the upload window of a batch awaiting upload: no upload is recorded after this. The
        batch stays due (`due_at`) until its run starts or it ends. False if already closed or not
        awaiting upload."""

    def extend_upload_window(self, tenant_id: str, batch_id: str, *, due_at: datetime) -> bool:
        """Move the end of an open upload window later (never earlier). False if it was not open or
        already ended later."""

    def begin_cancel(self, tenant_id: str, batch_id: str, *, at: datetime, due_at: datetime) -> bool:
        """awaiting_upload | processing → cancelling (uploads closed too), due at `due_at` in case
        the cancel is not carried through. False in any other state."""

    def claim_retry(
        self, tenant_id: str, batch_id: str, *, expected: BatchStatus, retry: int, files: int, at: datetime
    ) -> bool:
        """`expected` (terminal) → processing as retry number `retry` of `files` files, taking an
        open-batch slot again. False if the batch is not in `expected` or another retry claimed it."""

    def list_due(self, *, now: datetime, limit: int) -> list[tuple[str, str]]:
        """(tenant id, batch id) of batches whose due time has come, oldest first."""

    def reserve_batch(
        self,
        tenant_id: str,
        *,
        month: str,
        files: int,
        max_open_batches: int | None,
        monthly_files: int | None,
    ) -> bool:
        """Count one more open batch and `files` more files in `month` ("2026-11"), atomically and
        only if both stay within their limits (None: unlimited). False if either would not."""

    def release_batch(self, tenant_id: str, *, month: str, files: int) -> None:
        """Undo a reservation whose batch was never created."""

    def get_usage(self, tenant_id: str, *, month: str) -> TenantUsage: ...

    def get_api_key(self, key_hash: str) -> ApiKeyRecord | None: ...

    def put_api_key(self, record: ApiKeyRecord) -> None: ...

    # -- stream EVENTS: the tenant's webhook signing secret
    def get_webhook_secret(self, tenant_id: str) -> WebhookSecret | None: ...

    def put_webhook_secret(self, secret: WebhookSecret, *, replacing: datetime | None) -> bool:
        """Store the tenant's secret if the stored one is still the one created at `replacing` (None:
        if there is none yet). False when another rotation got there first: nothing is changed."""

    # -- stream PURGE ----------------------------------------------------------------------------
    def mark_deleted(self, tenant_id: str, batch_id: str, *, at: datetime) -> bool:
        """An ended (terminal), not yet deleted batch → deleted at `at`, in one conditional write.
        False, and nothing changed, if the batch is unknown, not terminal or already deleted."""

    def unmark_deleted(self, tenant_id: str, batch_id: str, *, at: datetime) -> None:
        """Undo `mark_deleted(at=at)` (its purge could not be queued); nothing if it was not that mark."""

    def delete_batch_items(self, tenant_id: str, batch_id: str) -> int:
        """Delete every item of a deleted batch, the batch item last (while it exists, a purge has
        work left). Returns how many items were deleted; 0 when they already were."""

    # -- names and the tenant's list of batches (issue 8, stream CREATE) ---------------------------
    def name_holder(self, tenant_id: str, name: str, *, now: datetime) -> str | None:
        """The id of the tenant's batch holding `name`, or None when the name is free (never
        claimed, released, or its batch has expired)."""

    def release_name(self, tenant_id: str, name: str, *, batch_id: str | None = None) -> None:
        """Free `name` (when its batch is deleted). With `batch_id`, only if that batch holds it: a
        name freed by its batch's expiry may be another batch's since."""

    def list_batches(
        self,
        tenant_id: str,
        *,
        limit: int,
        after: str | None = None,
        status: BatchStatus | None = None,
        name_prefix: str | None = None,
    ) -> tuple[list[Batch], str | None]:
        """The tenant's batches newest first, those with `status` and a name starting with
        `name_prefix` when given: at most `limit`, and the position to continue after (an opaque
        text for `after`) when more may follow."""

    # -- issue 10: the hash index of results (services/duplicates.py) -----------------------------
    def known_results(
        self, tenant_id: str, fingerprint: str, sha256s: Sequence[str], *, now: datetime
    ) -> dict[str, KnownResult]:
        """The completed entries, not expired at `now`, of these distinct hashes, by hash: one
        strongly consistent read each (in as few requests as the store allows). A hash the store
        could not read in a bounded time is left out: its file is then simply not skipped."""

    def claim_description(self, claim: KnownResult, *, now: datetime) -> KnownResult | None:
        """Write `claim` (state claimed) if its entry is free: absent, expired at `now`, or a claim
        whose lease has passed or that is this file's own (renewed). None when written; otherwise
        the entry that holds it (completed, or another file's live claim), unchanged."""

    def publish_result(self, result: KnownResult, *, now: datetime) -> bool:
        """Make the entry `result` (state completed) unless another completed, unexpired file has it
        already (the first to complete stays). False when it did."""

    def release_claim(
        self, tenant_id: str, fingerprint: str, sha256: str, *, batch_id: str, file_id: str
    ) -> bool:
        """Delete the entry if it is this file's claim. False (nothing changed) otherwise."""

    def forget_results(
        self, tenant_id: str, fingerprint: str, sha256s: Sequence[str], *, batch_id: str
    ) -> int:
        """Delete the entries of these hashes that files of `batch_id` own (claimed or completed);
        returns how many were."""

    # -- issue 10, stream MULTIPART --------------------------------------------------------------
    def claim_multipart_upload(self, tenant_id: str, batch_id: str, file_id: str, *, upload_id: str) -> bool:
        """Record `upload_id` as the file's multipart upload, if the file is awaiting upload and has
        none. False, and nothing changed, otherwise (another request's upload won)."""

    def release_multipart_upload(
        self, tenant_id: str, batch_id: str, file_id: str, *, upload_id: str
    ) -> bool:
        """Forget the file's multipart upload (aborted or gone), if it is still `upload_id`."""


class StoredObject(NamedTuple):
    """One version of an object, opened for reading: its bytes arrive as `chunks`, once, in order;
    closing the iterator (or reading it to the end) ends the download."""

    size: int
    # The version being read: later steps read this one again, whatever was written since.
    version_id: str | None
    chunks: Generator[bytes, None, None]


class StoredPart(NamedTuple):
    """A part S3 holds of a multipart upload."""

    part_number: int
    etag: str
    size: int
    checksum_sha256: str | None = None


class ObjectHead(NamedTuple):
    size: int
    etag: str


class ObjectStorage(Protocol):
    def presign_put(
        self, key: str, *, content_type: str, size: int, expires_in: int, sha256: str | None = None
    ) -> tuple[str, dict[str, str]]:
        """A URL and the headers the client must send with its PUT. The PUT only creates the
        object: once a file is uploaded, its key can no longer be written through such a URL.
        With `sha256` (hex), the digest is signed too: S3 refuses bytes whose digest differs."""

    def presign_post(
        self, key: str, *, content_type: str, size: int, expires_in: int, sha256: str | None = None
    ) -> tuple[str, dict[str, str]]:
        """A URL and the form fields of a browser POST upload (the fields, then the file, as
        multipart/form-data), under a signed policy pinning the key, type, exact size and, with
        `sha256` (hex), the digest."""

    def put_json(self, key: str, document: Any) -> None: ...

    def stream(self, key: str, *, version_id: str | None = None) -> StoredObject:
        """Open one version of an object (the current one when `version_id` is None) for a single
        pass over its bytes, in chunks of bounded size."""

    # -- stream PURGE ----------------------------------------------------------------------------
    def put_stream(self, key: str, chunks: Iterable[bytes], *, content_type: str) -> int:
        """Write an object from chunks produced one at a time (spooled to local disk, never held
        whole in memory); returns its size in bytes."""

    def exists(self, key: str) -> bool:
        """Whether `key` holds an object (a current version that is not a delete marker)."""

    def presign_get(self, key: str, *, expires_in: int) -> str:
        """A URL that downloads the object for `expires_in` seconds."""

    # -- issue 10, stream MULTIPART --------------------------------------------------------------
    def head(self, key: str) -> ObjectHead | None:
        """The current version's size and ETag, or None when the key holds no object."""

    def create_multipart_upload(self, key: str, *, content_type: str, part_checksums: bool = False) -> str:
        """Start a multipart upload of `key`; returns its upload id. With `part_checksums`, every
        part must carry its SHA-256 (S3 refuses one without, or with a wrong one)."""

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
        """A URL (and the headers to send) that PUTs part `part_number` of exactly `size` bytes. With
        `sha256` (hex), the part's digest is signed too: S3 refuses bytes whose digest differs."""

    def list_parts(
        self, key: str, upload_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[StoredPart]:
        """The parts S3 holds with numbers above `after`, ascending: at most `limit` of them (every
        one when None). NotFoundError (upload_not_found) when the upload does not exist."""

    def complete_multipart_upload(
        self, key: str, upload_id: str, parts: Sequence[tuple[int, str, str | None]]
    ) -> str:
        """Complete the upload from (part number, ETag, SHA-256 or None); returns the object's ETag.
        InvalidRequestError (invalid_part, invalid_part_order, part_too_small) when S3 refuses the
        parts, NotFoundError (upload_not_found) when the upload does not exist."""

    def abort_multipart_upload(self, key: str, upload_id: str) -> bool:
        """Abort the upload (S3 drops its parts). False when it did not exist (any more)."""

    def delete_prefix(self, prefix: str) -> int:
        """Delete every version and delete marker of every key starting with `prefix` (the bucket is
        versioned: a plain delete would only add a marker). Returns how many were deleted."""


class UsageKeys(Protocol):
    def register(self, *, name: str, value: str, plan: PlanName) -> str:
        """Create a gateway API key with this value under the plan's usage plan; return its id."""


class CursorKeys(Protocol):
    def signing_keys(self) -> list[bytes]:
        """The keys page cursors are signed with: the current one first, then older ones that still
        verify (a rotation in progress)."""


class WorkflowStarter(Protocol):
    def start(self, name: str, payload: dict[str, Any]) -> bool:
        """Start an execution with this name. False if one with the name already exists."""

    def stop(self, name: str, *, cause: str) -> bool:
        """Stop the execution with this name (a Distributed Map's child executions stop with it).
        False if there is none or it had already ended."""


class ConverseModel(Protocol):
    """A hosted model reached through Amazon Bedrock's Converse API."""

    @property
    def model_id(self) -> str: ...

    def converse(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one Converse request (every field but `modelId`) and return the response as the API
        shapes it (`output`, `stopReason`, `usage`, `metrics`). Failures are classified:
        RetryableDescriptionError when a later attempt may succeed (throttling, timeouts, the service
        or model unavailable), PermanentDescriptionError otherwise."""


# -- stream EVENTS ------------------------------------------------------------------------------------
class BatchEvents(Protocol):
    def announce(self, *, event_id: str, detail_type: str, detail: str, at: datetime) -> None:
        """Put one event (source `filebatch`, the detail as JSON text) on the stack's event bus."""


class HostResolver(Protocol):
    def resolve(self, host: str, port: int) -> list[str]:
        """The IP addresses `host` resolves to now (IPv4 and IPv6, as text). Raises OSError when it
        does not resolve."""


class WebhookTarget(NamedTuple):
    """Where one delivery goes: the URL's parts, and the checked addresses to connect to (the request
    is made to one of these, never to a fresh resolution of `host`)."""

    scheme: str
    host: str
    port: int
    # Path and query, as the request line carries them.
    target: str
    addresses: tuple[str, ...]


class WebhookResponse(NamedTuple):
    status: int
    # Retry-After in seconds, when the receiver sent one as a number.
    retry_after_s: int | None = None


class WebhookTransport(Protocol):
    def post(self, target: WebhookTarget, headers: dict[str, str], body: bytes) -> WebhookResponse:
        """POST `body` to the target, connecting to one of its checked addresses (TLS verified for its
        host). Redirects are not followed. Raises OSError when no answer came (refused, timed out)."""


class DeliveryQueue(Protocol):
    def postpone(self, receipt_handle: str, seconds: int) -> None:
        """Make a received message visible again only after `seconds` (its next delivery attempt)."""


class JobQueue(Protocol):
    """The background jobs queue (BatchJobsQueue): functions/run_batch_job runs what is sent."""

    def enqueue(self, job: BatchJob) -> None: ...


class IdempotentCalls(Protocol):
    """Requests made once per client-chosen key (the Idempotency-Key header), for 24 hours."""

    def once(
        self,
        scope: str,
        *,
        tenant_id: str,
        key: str,
        payload: dict[str, Any],
        call: Callable[[], dict[str, Any]],
        brief: Callable[[dict[str, Any]], dict[str, Any]],
        context: Any = None,
    ) -> dict[str, Any]:
        """What `call` returns, the first time this tenant uses `key` in `scope`; on a repeat with the
        same payload within 24 hours, what it returned then, without calling it (or `brief` of it when
        the whole answer is too large to keep). Keys of different tenants never meet. ConflictError
        `idempotency_key_reused` when the payload differs, `request_in_progress` while the first call
        runs. A call that raises is forgotten: a repeat calls again. `context`: the Lambda context,
        whose remaining time bounds how long a call counts as running if its environment dies."""
