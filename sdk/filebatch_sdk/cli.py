"""Command line: `python -m filebatch_sdk COMMAND`.

    python -m filebatch_sdk submit photos/*.jpg            # upload, wait, print one line per file
    python -m filebatch_sdk submit --no-wait a.pdf         # print the batch id once uploaded
    python -m filebatch_sdk submit --name june --metadata team=ops --webhook-url https://... *.pdf
    python -m filebatch_sdk status b-0123...               # status and counts
    python -m filebatch_sdk results b-0123... --json       # every result, as the API returns it
    python -m filebatch_sdk results b-0123... --status failed
    python -m filebatch_sdk list --status processing       # the newest batches, one line each
    python -m filebatch_sdk close b-0123...                # stop waiting for uploads
    python -m filebatch_sdk cancel b-0123...
    python -m filebatch_sdk retry b-0123... [--file-id f00002 ...]
    python -m filebatch_sdk delete b-0123...               # a finished (or cancelled) batch
    python -m filebatch_sdk export b-0123... --output results.jsonl
    python -m filebatch_sdk webhook-secret rotate          # prints the new signing secret

Credentials, first found wins (per value): --api-url / --api-key, the file named by
--stack-file, the environment (FILEBATCH_API_URL, FILEBATCH_API_KEY), then .local/stack.json in
the current directory, which the local stack writes ({"api_url": ..., "api_key": ...}).

With --json, stdout carries exactly one JSON document; progress goes to stderr either way.

Exit status: 0 success; 1 the batch finished but not every file completed (submit); 2 bad usage,
missing credentials or unusable files; 3 the API refused or could not be reached, uploads or the
export download failed: among the refusals, the batch is not in a state for it (409, e.g. close
after uploads ended, delete before it ended, export before it ended; the error names the code)
or it does not exist (404); 4 gave up waiting (the batch carries on: follow it with `status`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filebatch_sdk._version import __version__
from filebatch_sdk.client import FilebatchClient
from filebatch_sdk.errors import (
    BatchTimeoutError,
    FilebatchApiError,
    FilebatchError,
    InvalidFileError,
    UploadError,
)
from filebatch_sdk.models import (
    BatchRun,
    BatchState,
    BatchStatus,
    FileResult,
    FileState,
    UploadProgress,
    to_json,
)

ENV_API_URL = "FILEBATCH_API_URL"
ENV_API_KEY = "FILEBATCH_API_KEY"
DEFAULT_STACK_FILE = Path(".local") / "stack.json"

EXIT_OK = 0
EXIT_FILES_FAILED = 1
EXIT_USAGE = 2
EXIT_API = 3
EXIT_TIMEOUT = 4


class CredentialsError(Exception):
    """No usable API URL and key could be found."""


@dataclass(frozen=True, slots=True)
class Credentials:
    api_url: str
    api_key: str


def load_stack_file(path: Path) -> dict[str, str]:
    """The api_url / api_key a stack file holds (missing keys are simply absent)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CredentialsError(f"cannot read stack file {path}: {error.strerror or error}") from error
    except ValueError as error:
        raise CredentialsError(f"stack file {path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise CredentialsError(f"stack file {path} should hold a JSON object")
    return {key: str(data[key]) for key in ("api_url", "api_key") if data.get(key)}


def resolve_credentials(
    *,
    api_url: str | None = None,
    api_key: str | None = None,
    stack_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Credentials:
    """Find the API URL and key: flags, then an explicit stack file, the environment, ./.local/stack.json."""
    env = os.environ if environ is None else environ
    sources: list[Mapping[str, str]] = [{"api_url": api_url or "", "api_key": api_key or ""}]
    if stack_file is not None:
        # Named on purpose, so a missing file is an error rather than a silent fallback.
        sources.append(load_stack_file(stack_file))
    sources.append({"api_url": env.get(ENV_API_URL, ""), "api_key": env.get(ENV_API_KEY, "")})
    default_file = (cwd or Path.cwd()) / DEFAULT_STACK_FILE
    if stack_file is None and default_file.is_file():
        sources.append(load_stack_file(default_file))

    def first(key: str) -> str:
        return next((source[key] for source in sources if source.get(key)), "")

    url, key = first("api_url"), first("api_key")
    if not url or not key:
        missing = " and ".join(name for name, value in (("API URL", url), ("API key", key)) if not value)
        raise CredentialsError(
            f"no {missing}: pass --api-url/--api-key, set {ENV_API_URL}/{ENV_API_KEY}, "
            f"or start the local stack (`make up`) so {DEFAULT_STACK_FILE} exists"
        )
    return Credentials(api_url=url, api_key=key)


def _build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    auth = common.add_argument_group("credentials")
    auth.add_argument("--api-url", help=f"API base URL (default: ${ENV_API_URL} or the stack file)")
    auth.add_argument("--api-key", help=f"API key (default: ${ENV_API_KEY} or the stack file)")
    auth.add_argument(
        "--stack-file",
        type=Path,
        help=f"JSON file with api_url and api_key (default: ./{DEFAULT_STACK_FILE})",
    )
    common.add_argument("--json", action="store_true", help="print one JSON document on stdout")

    parser = argparse.ArgumentParser(
        prog="python -m filebatch_sdk",
        description="Submit files to a filebatch API and read the results.",
        epilog="Exit status: 0 ok, 1 some files failed, 2 usage, 3 API error (a 409 when the batch is "
        "not in a state for the command) or upload/download error, 4 timed out.",
    )
    parser.add_argument("--version", action="version", version=f"filebatch-sdk {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    submit = commands.add_parser("submit", parents=[common], help="upload files as one batch")
    submit.add_argument("files", nargs="+", type=Path, metavar="FILE")
    submit.add_argument("--no-wait", action="store_true", help="return once uploaded; print the batch id")
    submit.add_argument("--timeout", type=float, default=600, help="seconds to wait for results (600)")
    submit.add_argument("--poll-interval", type=float, default=1.0, help="seconds between polls (1)")
    submit.add_argument("--concurrency", type=int, default=8, help="parallel uploads (8)")
    submit.add_argument("--name", help="the batch's name (unique among the API key's batches)")
    submit.add_argument(
        "--metadata",
        action="append",
        type=_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="a metadata pair stored with the batch (repeatable; the last value of a key wins)",
    )
    submit.add_argument("--webhook-url", help="https URL called when the batch ends")
    submit.add_argument(
        "--upload-method",
        choices=["PUT", "POST"],
        default="PUT",
        help="presigned PUTs (default) or browser-style form POSTs",
    )
    submit.set_defaults(handler=_submit)

    status = commands.add_parser("status", parents=[common], help="show a batch's status")
    status.add_argument("batch_id", metavar="BATCH_ID")
    status.set_defaults(handler=_status)

    results = commands.add_parser("results", parents=[common], help="list a batch's per-file results")
    results.add_argument("batch_id", metavar="BATCH_ID")
    results.add_argument("--page-size", type=int, default=100, help="results per request (100)")
    results.add_argument(
        "--status", choices=[state.value for state in FileState], help="only the files in this state"
    )
    results.set_defaults(handler=_results)

    listing = commands.add_parser("list", parents=[common], help="list batches, newest first")
    listing.add_argument(
        "--status", choices=[state.value for state in BatchState], help="only batches in this state"
    )
    listing.add_argument("--name", help="only the batch with this name")
    listing.add_argument("--limit", type=_positive, default=20, help="show at most this many (20)")
    listing.add_argument("--all", action="store_true", help="show every batch (ignores --limit)")
    listing.set_defaults(handler=_list)

    close = commands.add_parser(
        "close", parents=[common], help="stop waiting for uploads; process what arrived"
    )
    close.add_argument("batch_id", metavar="BATCH_ID")
    close.set_defaults(handler=_close)

    cancel = commands.add_parser("cancel", parents=[common], help="cancel a batch")
    cancel.add_argument("batch_id", metavar="BATCH_ID")
    cancel.set_defaults(handler=_cancel)

    retry = commands.add_parser("retry", parents=[common], help="run a finished batch's failed files again")
    retry.add_argument("batch_id", metavar="BATCH_ID")
    retry.add_argument(
        "--file-id",
        action="append",
        dest="file_ids",
        metavar="FILE_ID",
        help="retry only this file (repeatable; default: every failed file)",
    )
    retry.set_defaults(handler=_retry)

    delete = commands.add_parser("delete", parents=[common], help="delete a finished batch and its files")
    delete.add_argument("batch_id", metavar="BATCH_ID")
    delete.set_defaults(handler=_delete)

    export = commands.add_parser(
        "export", parents=[common], help="download a finished batch's results as JSON Lines"
    )
    export.add_argument("batch_id", metavar="BATCH_ID")
    export.add_argument("--output", "-o", type=Path, help="where to write it (default: ./BATCH_ID.jsonl)")
    export.set_defaults(handler=_export)

    webhook_secret = commands.add_parser("webhook-secret", help="manage the webhook signing secret")
    secret_actions = webhook_secret.add_subparsers(dest="action", required=True, metavar="ACTION")
    rotate = secret_actions.add_parser(
        "rotate", parents=[common], help="create or replace the secret (the old one signs for 24 h more)"
    )
    rotate.set_defaults(handler=_rotate_webhook_secret)
    return parser


def _key_value(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return number


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status instead of exiting (handy in tests)."""
    args = _build_parser().parse_args(argv)
    try:
        credentials = resolve_credentials(
            api_url=args.api_url, api_key=args.api_key, stack_file=args.stack_file
        )
    except CredentialsError as error:
        _err(f"error: {error}")
        return EXIT_USAGE
    handler: Callable[[FilebatchClient, argparse.Namespace], int] = args.handler
    with FilebatchClient(credentials.api_url, credentials.api_key) as client:
        try:
            return handler(client, args)
        except InvalidFileError as error:
            _err(f"error: {error}")
            return EXIT_USAGE
        except UploadError as error:
            _err(f"error: {error}")
            for failure in error.failures:
                _err(f"  {failure.filename}: {failure.reason}")
            return EXIT_API
        except BatchTimeoutError as error:
            _err(f"error: {error}; follow it with: python -m filebatch_sdk status {error.batch_id}")
            return EXIT_TIMEOUT
        except FilebatchApiError as error:
            _err(f"error: {error}")
            return EXIT_API
        except FilebatchError as error:
            _err(f"error: {error}")
            return EXIT_API


def _submit(client: FilebatchClient, args: argparse.Namespace) -> int:
    show_progress = not args.json
    last_line = ""

    def on_upload(progress: UploadProgress) -> None:
        if show_progress:
            _err(f"uploaded {progress.files_done}/{progress.files_total}  {progress.filename}")

    def on_status(status: BatchStatus) -> None:
        nonlocal last_line
        # Polls repeat the same numbers most of the time; print only what changed.
        line = _status_line(status)
        if show_progress and line != last_line:
            last_line = line
            _err(line)

    run = client.submit(
        args.files,
        name=args.name,
        metadata=dict(args.metadata) if args.metadata else None,
        webhook_url=args.webhook_url,
        upload_method=args.upload_method,
        wait=not args.no_wait,
        timeout=args.timeout,
        poll_interval=args.poll_interval,
        concurrency=args.concurrency,
        on_upload_progress=on_upload,
        on_progress=on_status,
    )
    if args.no_wait:
        if args.json:
            _print_json({"batch_id": run.batch_id, "status": run.batch.status})
        else:
            print(run.batch_id)
        return EXIT_OK
    if args.json:
        _print_json(_run_json(run))
    else:
        for result in run.results:
            print(_result_line(result))
        print(_summary_line(run))
    return EXIT_OK if run.ok else EXIT_FILES_FAILED


def _status(client: FilebatchClient, args: argparse.Namespace) -> int:
    return _show_status(client.get_batch(args.batch_id), args)


def _results(client: FilebatchClient, args: argparse.Namespace) -> int:
    items = client.iter_results(args.batch_id, page_size=args.page_size, status=args.status)
    if args.json:
        _print_json({"batch_id": args.batch_id, "items": to_json(list(items))})
    else:
        for result in items:
            print(_result_line(result))
    return EXIT_OK


def _list(client: FilebatchClient, args: argparse.Namespace) -> int:
    batches = client.list_batches(status=args.status, name=args.name, limit=None if args.all else args.limit)
    if args.json:
        _print_json({"items": to_json(list(batches))})
        return EXIT_OK
    shown = 0
    for batch in batches:
        print(_status_line(batch))
        shown += 1
    if not shown:
        _err("no batches")
    return EXIT_OK


def _close(client: FilebatchClient, args: argparse.Namespace) -> int:
    return _show_status(client.close_batch(args.batch_id), args)


def _cancel(client: FilebatchClient, args: argparse.Namespace) -> int:
    status = _show_status(client.cancel_batch(args.batch_id), args)
    if not args.json:
        _err(f"follow it with: python -m filebatch_sdk status {args.batch_id}")
    return status


def _retry(client: FilebatchClient, args: argparse.Namespace) -> int:
    retry = client.retry_batch(args.batch_id, args.file_ids)
    if args.json:
        _print_json(to_json(retry))
    else:
        print(
            f"{retry.batch_id}  {retry.status}  retry {retry.retry}: {len(retry.file_ids)} file(s) "
            f"({retry.execution_name})"
        )
    return EXIT_OK


def _delete(client: FilebatchClient, args: argparse.Namespace) -> int:
    deleted = client.delete_batch(args.batch_id)
    if args.json:
        _print_json(to_json(deleted))
    else:
        print(f"{deleted.batch_id}  {deleted.status}")
    return EXIT_OK


def _export(client: FilebatchClient, args: argparse.Namespace) -> int:
    output: Path = args.output or Path(f"{args.batch_id}.jsonl")
    info = client.download_export(args.batch_id, output)
    if args.json:
        _print_json({"batch_id": info.batch_id, "files": info.files, "path": str(output)})
    else:
        print(f"{output}  ({info.files} results of {info.batch_id})")
    return EXIT_OK


def _rotate_webhook_secret(client: FilebatchClient, args: argparse.Namespace) -> int:
    secret = client.rotate_webhook_secret()
    if args.json:
        _print_json(to_json(secret))
    else:
        print(secret.secret)
        _err("store it now, it is not shown again; the previous secret keeps signing for 24 hours")
    return EXIT_OK


def _show_status(status: BatchStatus, args: argparse.Namespace) -> int:
    if args.json:
        _print_json(to_json(status))
    else:
        print(_status_line(status))
    return EXIT_OK


def _run_json(run: BatchRun) -> dict[str, Any]:
    return {
        "batch_id": run.batch_id,
        "status": to_json(run.status),
        "summary": run.summary(),
        "results": to_json(run.results),
    }


def _status_line(status: BatchStatus) -> str:
    counts, usage = status.counts, status.usage
    states = ", ".join(f"{state} {n}" for state, n in counts.by_state().items())
    details = [f"{counts.total} file(s)" + (f": {states}" if states else "")]
    if status.retries:
        details.append(f"retry {status.retries}")
    if status.eta_seconds is not None and not status.is_terminal:
        details.append(f"about {status.eta_seconds}s left")
    if usage.input_tokens or usage.output_tokens:
        details.append(f"{usage.input_tokens:,} input / {usage.output_tokens:,} output tokens")
    name = f"  {status.name!r}" if status.name else ""
    return (
        f"{status.batch_id}  {status.status}  {status.progress_percentage:g}%{name}  ({'; '.join(details)})"
    )


def _result_line(result: FileResult) -> str:
    kind = result.detected_content_type or result.declared_content_type
    if result.description is not None:
        detail = result.description.text
    elif result.error is not None:
        retry = " (retryable)" if result.error.retryable else ""
        detail = f"{result.error.code}: {result.error.message}{retry}"
    else:
        detail = ""
    return f"{result.file_id}  {result.status:<9}  {result.filename}  [{kind}]  {detail}".rstrip()


def _summary_line(run: BatchRun) -> str:
    counts = ", ".join(f"{n} {status}" for status, n in run.summary().items()) or "no files"
    final = run.status.status if run.status else BatchState.AWAITING_UPLOAD
    retryable = len(run.retryable())
    extra = f"; {retryable} retryable" if retryable else ""
    return f"batch {run.batch_id} {final}: {counts}{extra}"


def _print_json(document: Any) -> None:
    json.dump(document, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _err(message: str) -> None:
    print(message, file=sys.stderr)
