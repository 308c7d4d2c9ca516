"""What the services need from the outside world. Adapters implement these with boto3; unit tests
implement them with in-memory fakes."""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol

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
from filebatch.plans import PlanName


class BatchRepository(Protocol):
    def create_batch(self, batch: Batch, files: Sequence[BatchFile]) -> None:
        """Write the files, then the batch (the batch item makes the batch visible). A named batch
        claims its name in the same write as the batch item: ConflictError (name_taken), and no
        batch, when another batch of the tenant that still exists holds the name."""

    def get_batch(self, tenant_id: str, batch_id: str, *, consistent: bool = False) -> Batch | None: ...

    def get_file(self, tenant_id: str, batch_id: str, file_id: str) -> BatchFile | None: ...

    def list_files(
        self, tenant_id: str, batch_id: str, *, limit: int, after_file_id: str | None = None
    ) -> tuple[list[BatchFile], str | None]:
        """Files in file-id order; the second value is the last file id when more may follow."""

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

    def mark_processing(self, tenant_id: str, batch_id: str, *, at: datetime) -> bool:
        """awaiting_upload → processing. False when the batch had already moved on."""

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
        """Non-terminal → terminal and count it on the batch, atomically. False if the file was
        already terminal: the first recorded result stands."""

    def finish_batch(self, tenant_id: str, batch_id: str, *, status: BatchStatus, at: datetime) -> bool:
        """Give the batch its terminal status once, and release its open-batch slot with it. False
        (and nothing released) if it already had one."""

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


class StoredObject(NamedTuple):
    """One version of an object, opened for reading: its bytes arrive as `chunks`, once, in order;
    closing the iterator (or reading it to the end) ends the download."""

    size: int
    # The version being read: later steps read this one again, whatever was written since.
    version_id: str | None
    chunks: Generator[bytes, None, None]


class ObjectStorage(Protocol):
    def presign_put(
        self, key: str, *, content_type: str, size: int, expires_in: int
    ) -> tuple[str, dict[str, str]]:
        """A URL and the headers the client must send with its PUT. The PUT only creates the
        object: once a file is uploaded, its key can no longer be written through such a URL."""

    def put_json(self, key: str, document: Any) -> None: ...

    def stream(self, key: str, *, version_id: str | None = None) -> StoredObject:
        """Open one version of an object (the current one when `version_id` is None) for a single
        pass over its bytes, in chunks of bounded size."""


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


class ConverseModel(Protocol):
    """A hosted model reached through Amazon Bedrock's Converse API."""

    @property
    def model_id(self) -> str: ...

    def converse(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one Converse request (every field but `modelId`) and return the response as the API
        shapes it (`output`, `stopReason`, `usage`, `metrics`). Failures are classified:
        RetryableDescriptionError when a later attempt may succeed (throttling, timeouts, the service
        or model unavailable), PermanentDescriptionError otherwise."""


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
