"""Exceptions the SDK raises.

All derive from `FilebatchError`, so one `except` catches them all::

    try:
        run = client.submit(paths)
    except FilebatchApiError as error:  # the API answered 4xx/5xx
        print(error.status, error.code, error.message)
    except UploadError as error:  # some files could not be uploaded
        for failure in error.failures:
            print(failure.filename, failure.reason)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from filebatch_sdk.models import BatchStatus

__all__ = [
    "BatchTimeoutError",
    "FilebatchApiError",
    "FilebatchConnectionError",
    "FilebatchError",
    "InvalidFileError",
    "UploadError",
    "UploadFailure",
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
