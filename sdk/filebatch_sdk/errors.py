"""Exceptions the SDK raises.

All derive from `FilebatchError`, so one `except` catches them all::

    try:
        run = client.submit(paths)
    except BatchNotEndedError:  # one class per conflict code (see API_ERRORS)
        ...
    except FilebatchApiError as error:  # the API answered 4xx/5xx
        print(error.status, error.code, error.message)
    except UploadError as error:  # some files could not be uploaded
        for failure in error.failures:
            print(failure.filename, failure.reason)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from filebatch_sdk.models import BatchStatus, FileResult

__all__ = [
    "API_ERRORS",
    "BatchEndedError",
    "BatchNotEndedError",
    "BatchNotFoundError",
    "BatchNotOpenError",
    "BatchTimeoutError",
    "ConflictError",
    "DownloadError",
    "ExportNotReadyError",
    "FilebatchApiError",
    "FilebatchConnectionError",
    "FilebatchError",
    "IdempotencyKeyReusedError",
    "InvalidFileError",
    "NameTakenError",
    "NothingToRetryError",
    "RequestInProgressError",
    "RetryInProgressError",
    "RunFailedError",
    "StateFileError",
    "StateFileMismatchError",
    "UploadError",
    "UploadFailure",
    "api_error",
]


class FilebatchError(Exception):
    """Base class of every error the SDK raises on purpose."""


class InvalidFileError(FilebatchError, ValueError):
    """A local file cannot be declared in a batch (missing, not a regular file, or empty)."""


class FilebatchApiError(FilebatchError):
    """The API answered with an error body: `{"error": {"code", "message", "details"?}}`.

    `code` is stable and machine-readable (e.g. "batch_not_found", "validation_error",
    "throttled"); `message` is for people; `details` lists per-field problems when there are any.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        *,
        request_id: str | None = None,
    ) -> None:
        super().__init__(status, code, message, details)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.request_id = request_id

    @property
    def retryable(self) -> bool:
        """Throttling and server-side faults may pass later (the client already retried them)."""
        return self.status == 429 or self.status >= 500

    def __str__(self) -> str:
        text = f"HTTP {self.status} {self.code}: {self.message}"
        if self.details:
            text += " (" + "; ".join(_detail_text(d) for d in self.details) + ")"
        return text


def _detail_text(detail: dict[str, Any]) -> str:
    location, problem = detail.get("location"), detail.get("problem")
    if location and problem:
        return f"{location}: {problem}"
    return str(problem or detail)


class BatchNotFoundError(FilebatchApiError):
    """404 `batch_not_found`: no such batch for this API key (or it was deleted)."""


class ConflictError(FilebatchApiError):
    """409: the request conflicts with the batch's current state; its subclasses name the code.

    A 409 with a code this SDK does not know is raised as `ConflictError` itself.
    """


class NameTakenError(ConflictError):
    """409 `name_taken`: another batch of this API key already has that name."""


class IdempotencyKeyReusedError(ConflictError):
    """409 `idempotency_key_reused`: the Idempotency-Key was already used for a different request."""


class RequestInProgressError(ConflictError):
    """409 `request_in_progress`: a request with the same Idempotency-Key is still being handled.

    `create_batch` retries it itself; it surfaces only once the retries are spent.
    """

    @property
    def retryable(self) -> bool:
        return True


class BatchNotOpenError(ConflictError):
    """409 `batch_not_open`: only a batch awaiting upload can be closed."""


class BatchEndedError(ConflictError):
    """409 `batch_ended`: the batch already finished (completed, failed or expired): nothing to cancel."""


class BatchNotEndedError(ConflictError):
    """409 `batch_not_ended`: retry and delete need a finished batch (cancel it first to delete it)."""


class NothingToRetryError(ConflictError):
    """409 `nothing_to_retry`: the batch has no failed files to run again."""


class RetryInProgressError(ConflictError):
    """409 `retry_in_progress`: a retry of this batch is already running."""


class ExportNotReadyError(ConflictError):
    """409 `export_not_ready`: the export exists once the batch is finished (`wait` for it)."""


# The one place error codes meet exception classes.
API_ERRORS: Mapping[str, type[FilebatchApiError]] = {
    "batch_not_found": BatchNotFoundError,
    "name_taken": NameTakenError,
    "idempotency_key_reused": IdempotencyKeyReusedError,
    "request_in_progress": RequestInProgressError,
    "batch_not_open": BatchNotOpenError,
    "batch_ended": BatchEndedError,
    "batch_not_ended": BatchNotEndedError,
    "nothing_to_retry": NothingToRetryError,
    "retry_in_progress": RetryInProgressError,
    "export_not_ready": ExportNotReadyError,
}


def api_error(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    *,
    request_id: str | None = None,
) -> FilebatchApiError:
    """The exception for an error answer: the class of its code, else `ConflictError` for other
    409s, else `FilebatchApiError`."""
    kind = API_ERRORS.get(code) or (ConflictError if status == 409 else FilebatchApiError)
    return kind(status, code, message, details, request_id=request_id)


class FilebatchConnectionError(FilebatchError):
    """The service could not be reached (connection refused, DNS, timeouts), even after retries."""


@dataclass(frozen=True, slots=True)
class UploadFailure:
    """One file whose upload did not succeed after the client's retries."""

    file_id: str
    filename: str
    reason: str
    status: int | None = None
    retryable: bool = False


class UploadError(FilebatchError):
    """Some files of a batch could not be uploaded; the others were.

    The batch only starts processing once every file has arrived, so it stays in
    "awaiting_upload" until the listed files are uploaded (before their URLs expire).
    """

    def __init__(self, batch_id: str, failures: list[UploadFailure]) -> None:
        self.batch_id = batch_id
        self.failures = failures
        names = ", ".join(f"{f.filename} ({f.reason})" for f in failures[:3])
        more = f" and {len(failures) - 3} more" if len(failures) > 3 else ""
        super().__init__(f"batch {batch_id}: {len(failures)} file(s) failed to upload: {names}{more}")


class DownloadError(FilebatchError):
    """A presigned download (the export) was refused, e.g. because its URL expired.

    `reason` carries the storage's own code when it sent one ("HTTP 403 AccessDenied").
    """

    def __init__(self, url_path: str, reason: str, status: int | None = None) -> None:
        self.reason = reason
        self.status = status
        super().__init__(f"download of {url_path} failed: {reason}")


class BatchTimeoutError(FilebatchError, TimeoutError):
    """`wait` gave up before the batch finished. The batch keeps going; wait again to follow it."""

    def __init__(self, batch_id: str, last_status: BatchStatus, timeout: float) -> None:
        self.batch_id = batch_id
        self.last_status = last_status
        self.timeout = timeout
        super().__init__(
            f"batch {batch_id} still {last_status.status} after {timeout:g}s "
            f"({last_status.counts.finished}/{last_status.counts.total} files finished)"
        )


class RunFailedError(FilebatchError):
    """Files of a submit failed (`submit(..., raise_on_failure=True)`, `SubmitRun.raise_for_failures`).

    `failures` holds every failed `FileResult`, in input order; `total` is the number of files
    submitted. The message lists the first few.
    """

    def __init__(self, failures: Sequence[FileResult], total: int) -> None:
        self.failures = list(failures)
        self.total = total
        shown = "; ".join(_failure_text(result) for result in self.failures[:3])
        more = f"; and {len(self.failures) - 3} more" if len(self.failures) > 3 else ""
        super().__init__(f"{len(self.failures)} of {total} file(s) failed: {shown}{more}")


def _failure_text(result: FileResult) -> str:
    why = f"{result.error.code}: {result.error.message}" if result.error else "no error given"
    return f"{result.filename} ({result.status}, {why})"


class StateFileError(FilebatchError, ValueError):
    """A submit's state file cannot be used: a line other than the last is not a record of it."""


class StateFileMismatchError(StateFileError):
    """The state file was written by a different submit (other options, or other files in a
    chunk): resuming from it would upload the wrong files. Use another state file, or delete it
    to start over."""
