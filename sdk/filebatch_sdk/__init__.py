"""Python client of the filebatch REST API: submit files, follow the batch, read the results.

    from filebatch_sdk import FilebatchClient

    with FilebatchClient(api_url, api_key) as client:
        run = client.submit(["cat.jpg", "invoice.pdf"])
    print(run.summary())  # {"completed": 1, "failed": 1}
    for result in run.failed():
        print(result.filename, result.error.code if result.error else "")

Batches can also be listed, closed, cancelled, retried, deleted and exported (see
`FilebatchClient`). Also a command line: `python -m filebatch_sdk submit FILE...` (see
`filebatch_sdk.cli`). On asyncio: `AsyncFilebatchClient` (`filebatch_sdk.aio`), the same surface
awaited, over httpx.
Dependencies: requests, and rich for the command line's display; httpx for the async client
(`pip install "./sdk[async]"`), imported only when `AsyncFilebatchClient` is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from filebatch_sdk.aio import AsyncFilebatchClient
from filebatch_sdk._version import __version__
from filebatch_sdk.client import FilebatchClient
from filebatch_sdk.errors import (
    API_ERRORS,
    BatchEndedError,
    BatchNotEndedError,
    BatchNotFoundError,
    BatchNotOpenError,
    BatchTimeoutError,
    ConflictError,
    DownloadError,
    ExportNotReadyError,
    FilebatchApiError,
    FilebatchConnectionError,
    FilebatchError,
    IdempotencyKeyReusedError,
    InvalidFileError,
    NameTakenError,
    NothingToRetryError,
    RequestInProgressError,
    RetryInProgressError,
    RunFailedError,
    StateFileError,
    StateFileMismatchError,
    UploadError,
    UploadFailure,
)
from filebatch_sdk.models import (
    TERMINAL_BATCH_STATES,
    TERMINAL_FILE_STATES,
    BatchCounts,
    BatchesPage,
    BatchRetry,
    BatchRun,
    BatchState,
    BatchStatus,
    CreatedBatch,
    CreatedFile,
    DeletedBatch,
    Description,
    DescriptionOptions,
    DescriptionSettings,
    ExportInfo,
    FileError,
    FileResult,
    FileSpec,
    FileState,
    HeldPart,
    MultipartInstruction,
    PartsPage,
    ResultsPage,
    SubmitRun,
    TokenUsage,
    UploadInstruction,
    UploadPart,
    UploadProgress,
    WebhookSecret,
    guess_content_type,
    iter_export_file,
    to_json,
)

__all__ = [
    "API_ERRORS",
    "TERMINAL_BATCH_STATES",
    "TERMINAL_FILE_STATES",
    "AsyncFilebatchClient",
    "BatchCounts",
    "BatchEndedError",
    "BatchNotEndedError",
    "BatchNotFoundError",
    "BatchNotOpenError",
    "BatchRetry",
    "BatchRun",
    "BatchState",
    "BatchStatus",
    "BatchTimeoutError",
    "BatchesPage",
    "ConflictError",
    "CreatedBatch",
    "CreatedFile",
    "DeletedBatch",
    "Description",
    "DescriptionOptions",
    "DescriptionSettings",
    "DownloadError",
    "ExportInfo",
    "ExportNotReadyError",
    "FileError",
    "FileResult",
    "FileSpec",
    "FileState",
    "FilebatchApiError",
    "FilebatchClient",
    "FilebatchConnectionError",
    "FilebatchError",
    "HeldPart",
    "IdempotencyKeyReusedError",
    "InvalidFileError",
    "MultipartInstruction",
    "NameTakenError",
    "NothingToRetryError",
    "PartsPage",
    "RequestInProgressError",
    "ResultsPage",
    "RetryInProgressError",
    "RunFailedError",
    "StateFileError",
    "StateFileMismatchError",
    "SubmitRun",
    "TokenUsage",
    "UploadError",
    "UploadFailure",
    "UploadInstruction",
    "UploadPart",
    "UploadProgress",
    "WebhookSecret",
    "__version__",
    "guess_content_type",
    "iter_export_file",
    "to_json",
]


def __getattr__(name: str) -> Any:
    # The async client needs httpx, an optional dependency: imported when first asked for.
    if name == "AsyncFilebatchClient":
        from filebatch_sdk.aio import AsyncFilebatchClient

        return AsyncFilebatchClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
