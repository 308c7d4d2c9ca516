"""Python client of the filebatch REST API: submit files, follow the batch, read the results.

    from filebatch_sdk import FilebatchClient

    with FilebatchClient(api_url, api_key) as client:
        run = client.submit(["cat.jpg", "invoice.pdf"])
    print(run.summary())  # {"completed": 1, "failed": 1}
    for result in run.failed():
        print(result.filename, result.error.code if result.error else "")

Also a command line: `python -m filebatch_sdk submit FILE...` (see `filebatch_sdk.cli`).
Only dependency: requests.
"""

from __future__ import annotations

from filebatch_sdk._version import __version__
from filebatch_sdk.client import FilebatchClient
from filebatch_sdk.errors import (
    BatchTimeoutError,
    FilebatchApiError,
    FilebatchConnectionError,
    FilebatchError,
    InvalidFileError,
    UploadError,
    UploadFailure,
)
from filebatch_sdk.models import (
    BatchCounts,
    BatchRun,
    BatchState,
    BatchStatus,
    CreatedBatch,
    CreatedFile,
    Description,
    DescriptionOptions,
    DescriptionSettings,
    FileError,
    FileResult,
    FileSpec,
    FileState,
    ResultsPage,
    TokenUsage,
    UploadInstruction,
    UploadProgress,
    guess_content_type,
    to_json,
)

__all__ = [
    "BatchCounts",
    "BatchRun",
    "BatchState",
    "BatchStatus",
    "BatchTimeoutError",
    "CreatedBatch",
    "CreatedFile",
    "Description",
    "DescriptionOptions",
    "DescriptionSettings",
    "FileError",
    "FileResult",
    "FileSpec",
    "FileState",
    "FilebatchApiError",
    "FilebatchClient",
    "FilebatchConnectionError",
    "FilebatchError",
    "InvalidFileError",
    "ResultsPage",
    "TokenUsage",
    "UploadError",
    "UploadFailure",
    "UploadInstruction",
    "UploadProgress",
    "__version__",
    "guess_content_type",
    "to_json",
]
