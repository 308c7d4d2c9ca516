"""`make demo`: send the sample files through a running stack with the SDK and show what came back.

It uses only the public SDK, exactly as a user of the product would, so the demo doubles as a
check that the SDK, the API and the workflow agree. Output, for a person at a terminal::

    Submitting 8 files (1.5 MB) from samples to http://127.0.0.1:3000
      uploaded 8/8 files in 0.4s
      processing: 5/8 files finished
      processing: 8/8 files finished
    Batch b-3f... completed in 6.1s

    grace-hopper.jpg
      status       completed
      type         image/jpeg
      description  A 512x600 portrait JPEG image, ...

    receipt-scan.jpg
      status       completed
      type         image/jpeg
      description  A 702x764 portrait JPEG image, ... OCR read 20 lines of text in it: “CORNER MARKET ...”.
      text read    CORNER MARKET / 12 Harbour Street / ...

    Summary: 8 files, 8 completed, 0 failed (batch b-3f..., 6.1s)
"""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Protocol, TextIO

from filebatch_sdk import (
    BatchStatus,
    FilebatchApiError,
    FilebatchClient,
    FilebatchError,
    FileResult,
    FileState,
    UploadError,
    UploadProgress,
)

# Documentation and the generator script live next to the samples but are not samples.
SKIPPED_NAMES = frozenset({"readme.md"})
SKIPPED_SUFFIXES = frozenset({".py"})
LABEL_WIDTH = 12
TEXT_WIDTH = 100


class StackEndpoint(Protocol):
    """What the demo needs of a running stack (read-only, so any object with these attributes fits)."""

    @property
    def api_url(self) -> str: ...

    @property
    def api_key(self) -> str | None: ...


def sample_files(samples_dir: Path) -> list[Path]:
    """The files to submit, in name order: everything but hidden files, README.md and scripts."""
    return sorted(
        path
        for path in samples_dir.iterdir()
        if path.is_file()
        and not path.name.startswith(".")
        and path.name.lower() not in SKIPPED_NAMES
        and path.suffix.lower() not in SKIPPED_SUFFIXES
    )


def run_demo(
    stack: StackEndpoint,
    samples_dir: Path,
    *,
    out: TextIO = sys.stdout,
    timeout: float = 300.0,
    poll_interval: float = 0.5,
) -> int:
    """Submit every sample file, print one block per file and a summary line.

    Returns 0 only if every file completed; 1 if any failed or the demo could not run.
    """

    def say(line: str = "") -> None:
        print(line, file=out, flush=True)

    files = sample_files(samples_dir)
    if not files:
        say(f"No sample files in {samples_dir}: nothing to demo.")
        return 1
    if not stack.api_key:
        say("The stack has no API key to call its API with: start it with an API key issued.")
        return 1

    total_bytes = sum(path.stat().st_size for path in files)
    say(f"Submitting {len(files)} files ({_size(total_bytes)}) from {samples_dir} to {stack.api_url}")
    started = time.monotonic()
    last_finished = -1

    def on_upload(progress: UploadProgress) -> None:
        # One line once everything is up: per-file lines would scroll the interesting part away.
        if progress.files_done == progress.files_total:
            say(f"  uploaded {progress.files_total}/{progress.files_total} files in {_since(started)}")

    def on_status(status: BatchStatus) -> None:
        nonlocal last_finished
        finished = status.counts.finished
        if finished != last_finished:
            last_finished = finished
            say(f"  processing: {finished}/{status.counts.total} files finished")

    try:
        with FilebatchClient(stack.api_url, stack.api_key) as client:
            run = client.submit(
                files,
                # The demo shows files being described: never answered from earlier runs.
                skip_duplicates=False,
                timeout=timeout,
                poll_interval=poll_interval,
                on_upload_progress=on_upload,
                on_batch_status=on_status,
            )
    except UploadError as error:
        say(f"Upload failed for batch {error.batch_id}:")
        for failure in error.failures:
            say(f"  {failure.filename}: {failure.reason}")
        return 1
    except FilebatchApiError as error:
        say(f"The API refused the demo: {error}")
        return 1
    except FilebatchError as error:
        say(f"The demo could not finish: {error}")
        return 1

    elapsed = _since(started)
    # The sample files fit one batch.
    (batch,) = run.batches
    final = batch.status.status if batch.status else "unknown"
    say(f"Batch {batch.batch_id} {final} in {elapsed}")
    for result in run.results:
        say()
        for line in _result_block(result):
            say(line)

    summary = run.summary()
    completed = summary.get(FileState.COMPLETED, 0)
    failed = summary.get(FileState.FAILED, 0)
    retryable = len(run.retryable())
    retry_note = f" ({retryable} retryable)" if retryable else ""
    say()
    say(
        f"Summary: {len(files)} files, {completed} completed, {failed} failed{retry_note} "
        f"(batch {batch.batch_id}, {elapsed})"
    )
    # Every file must have come back completed: a missing result is a failure too.
    all_completed = run.ok and len(run.results) == len(files) and completed == len(files)
    return 0 if all_completed else 1


def _result_block(result: FileResult) -> list[str]:
    detected = result.detected_content_type or "unknown"
    if result.detected_content_type and result.detected_content_type != result.declared_content_type:
        detected += f" (declared {result.declared_content_type})"
    lines = [result.filename, _field("status", result.status), _field("type", detected)]
    if result.description is not None:
        lines.append(_field("description", result.description.text))
        text_read = _text_read(result.description.attributes)
        if text_read:
            lines.append(_field("text read", text_read))
    elif result.error is not None:
        retry = " (retryable)" if result.error.retryable else ""
        lines.append(_field("error", f"{result.error.code}: {result.error.message}{retry}"))
    return lines


def _text_read(attributes: dict[str, Any]) -> str | None:
    """What the local provider's OCR read, all of it (the description quotes only its beginning), or why
    nothing was read when OCR did not run; None for pictures where it ran and found no text."""
    engine = attributes.get("ocr")
    if engine is None:
        return None
    if engine == "unavailable":
        return "not read: text recognition (rapidocr-onnxruntime) is not installed in this environment"
    if str(engine).startswith("failed"):
        return f"not read: text recognition {engine}"
    text = str(attributes.get("text_in_image") or "")
    return " / ".join(text.splitlines()) or None


def _field(label: str, text: str) -> str:
    prefix = f"  {label:<{LABEL_WIDTH}} "
    # Long descriptions wrap under their own column, so the labels stay easy to scan.
    return textwrap.fill(
        text or "-", width=TEXT_WIDTH, initial_indent=prefix, subsequent_indent=" " * len(prefix)
    )


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / (1024 * 1024):.1f} MB"


def _since(started: float) -> str:
    return f"{time.monotonic() - started:.1f}s"
