"""The project's own exceptions. Adapters turn botocore errors into these; handlers map them to
HTTP responses or Step Functions error names."""

from __future__ import annotations


class FilebatchError(Exception):
    """Base class. `code` is machine-readable and stable; the message is for humans."""

    code = "internal_error"
    http_status = 500

    def __init__(
        self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        # Response headers that belong with this error (e.g. Retry-After on a 429).
        self.headers = dict(headers or {})

    def __str__(self) -> str:
        # Lambda reports only the exception's class name and str(): keeping the code in front lets
        # the workflow record a stable, machine-readable code for the failure.
        return f"{self.code}: {self.message}"


class InvalidRequestError(FilebatchError):
    code = "invalid_request"
    http_status = 400


class NotFoundError(FilebatchError):
    code = "not_found"
    http_status = 404


class ConflictError(FilebatchError):
    """The request is well formed but the resource's state does not allow it."""

    code = "conflict"
    http_status = 409


class UnauthorizedError(FilebatchError):
    code = "unauthorized"
    http_status = 401


class LimitExceededError(FilebatchError):
    """A limit of the tenant's plan (open batches, files per month). Its headers say when a retry
    can pass: Retry-After (RFC 9110) and RateLimit-Limit/Remaining/Reset where they are known."""

    code = "limit_exceeded"
    http_status = 429


class StorageUnavailableError(FilebatchError):
    """A dependency (DynamoDB, S3, Step Functions) failed or throttled: worth retrying."""

    code = "storage_unavailable"
    http_status = 503


class FileRejectedError(FilebatchError):
    """The uploaded bytes do not match what the client declared (size, type). Not retryable.

    The class name is the Step Functions error name the state machine catches.
    """

    code = "file_rejected"
    http_status = 422


class FileNotRunnableError(FilebatchError):
    """A run was handed a file that is not its to work on (cancelled, expired, already done, or a
    retry's file whose failure was not retryable). Its record stands; nothing is recorded.

    The class name is a Step Functions error name (the record step recognises it)."""

    code = "file_not_runnable"
    http_status = 409


class RetryableDescriptionError(FilebatchError):
    """The description provider failed in a way that may pass on retry (throttling, timeout).

    The class name is matched by the state machine's Retry `ErrorEquals`: keep it stable.
    """

    code = "provider_unavailable"
    http_status = 503


class PermanentDescriptionError(FilebatchError):
    """The provider cannot describe this file (unsupported or corrupt media). Not retryable."""

    code = "unsupported_media"
    http_status = 422


class ProviderBadOutputError(FilebatchError):
    """The provider answered, but not in the agreed shape (no tool call, or one that does not match
    its schema). The class name is a Step Functions error name: the describe step's own retrier for it
    allows BAD_OUTPUT_RETRIES retries, then the Catch records the file failed, not retryable."""

    code = "provider_bad_output"
    http_status = 502


class DuplicateInProgressError(FilebatchError):
    """Another file with the same bytes (same tenant, same description settings) is being described
    right now (issue 10, skip duplicates): this one waits for its description rather than calling the
    provider a second time. The class name is matched by the describe step's Retry (a bounded wait);
    when the wait runs out the Catch records the file failed, retryable (a retry then reuses it)."""

    code = "duplicate_in_progress"
    http_status = 409
