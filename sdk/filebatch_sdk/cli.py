"""Command line: `filebatch COMMAND` (the same as `python -m filebatch_sdk COMMAND`).

    filebatch submit photos/*.jpg            # upload, wait, print one line per file
    filebatch submit scans/ --chunk-size 500 # a directory, walked; batches of 500, pipelined
    filebatch submit --no-wait a.pdf         # print the batch ids once uploaded
    filebatch submit --quiet *.pdf           # no progress, no lines: errors only, the exit status says it
    filebatch submit --name june --metadata team=ops --webhook-url https://... *.pdf
    filebatch watch b-0123...                # follow a batch until it ends
    filebatch status b-0123...               # status and counts
    filebatch results b-0123... --json       # every result, as the API returns it
    filebatch results b-0123... --format csv # or jsonl (one result a line), table, text (default)
    filebatch results b-0123... --status failed
    filebatch ls --status processing         # the newest batches, one line each (alias: list)
    filebatch close b-0123...                # stop waiting for uploads
    filebatch cancel b-0123...
    filebatch retry b-0123... [--file-id f00002 ...]
    filebatch delete b-0123...               # a finished (or cancelled) batch
    filebatch export b-0123... --output results.jsonl
    filebatch webhook-secret rotate          # prints the new signing secret

Credentials, first found wins (per value): --api-url / --api-key, the file named by
--stack-file, the environment (FILEBATCH_API_URL, FILEBATCH_API_KEY), then .local/stack.json in
the current directory, which the local stack writes ({"api_url": ..., "api_key": ...}).

With --json, stdout carries exactly one JSON document; progress goes to stderr, and only when
stderr is a terminal is it drawn as live bars (bytes uploaded, files processed with the
server's ETA); otherwise it is one line per change. --quiet (submit, watch) shows no progress.

Exit status: 0 success; 1 the batch ended but not every file completed (submit, watch: failed
files, or the batch failed, was cancelled or expired); 2 bad usage, missing credentials or
unusable files; 3 the API refused or could not be reached, uploads or the export download
failed: among the refusals, the batch is not in a state for it (409, e.g. close after uploads
ended, delete before it ended, export before it ended; the error names the code) or it does not
exist (404); 4 gave up waiting (the batch carries on: follow it with `watch`); 130 interrupted
(Ctrl-C: the batches carry on; for submit, running the same command again resumes the run from its
state file, uploading only what is missing).
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich import filesize
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn
from rich.table import Table
from rich.text import Text

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
    CreatedBatch,
    FileResult,
    FileState,
    SubmitRun,
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
# What a shell reports for a process ended by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130
PROG = "filebatch"


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
        prog=PROG,
        description="Submit files to a filebatch API and read the results.",
        epilog="Exit status: 0 ok, 1 some files failed, 2 usage, 3 API error (a 409 when the batch is "
        "not in a state for the command) or upload/download error, 4 timed out, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"filebatch-sdk {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    submit = commands.add_parser(
        "submit", parents=[common], help="upload files (and directories, globs) in batches, wait for results"
    )
    submit.add_argument("files", nargs="+", metavar="PATH", help="a file, a directory (walked) or a glob")
    submit.add_argument("--no-wait", action="store_true", help="return once uploaded; print the batch ids")
    submit.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    submit.add_argument("--timeout", type=float, default=600, help="seconds to wait for results (600)")
    submit.add_argument("--poll-interval", type=float, default=1.0, help="seconds between polls (1)")
    submit.add_argument("--concurrency", type=_positive, default=8, help="files uploaded at a time (8)")
    submit.add_argument(
        "--part-concurrency", type=_positive, default=4, help="parts of a large file uploaded at a time (4)"
    )
    submit.add_argument("--chunk-size", type=_positive, default=100, help="files per batch (100)")
    submit.add_argument("--max-batches-in-flight", type=_positive, default=2, help="batches open at once (2)")
    submit.add_argument(
        "--state-file",
        type=Path,
        help="where the run is recorded so that running the same command again resumes it "
        "(default: one file per command under $XDG_CACHE_HOME/filebatch/runs, removed once the run ends)",
    )
    submit.add_argument(
        "--name", help="the first batch's name (unique among the API key's batches; then NAME-2, NAME-3...)"
    )
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
    submit.add_argument(
        "--skip-duplicates",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="files whose SHA-256 you already had described are not uploaded, they end skipped (default: on)",
    )
    submit.set_defaults(handler=_submit)

    status = commands.add_parser("status", parents=[common], help="show a batch's status")
    status.add_argument("batch_id", metavar="BATCH_ID")
    status.set_defaults(handler=_status)

    watch = commands.add_parser("watch", parents=[common], help="follow a batch until it ends")
    watch.add_argument("batch_id", metavar="BATCH_ID")
    watch.add_argument("--timeout", type=float, default=600, help="seconds to wait for the end (600)")
    watch.add_argument("--poll-interval", type=float, default=1.0, help="seconds between polls (1)")
    watch.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    watch.set_defaults(handler=_watch)

    results = commands.add_parser("results", parents=[common], help="list a batch's per-file results")
    results.add_argument("batch_id", metavar="BATCH_ID")
    results.add_argument("--page-size", type=int, default=100, help="results per request (100)")
    results.add_argument(
        "--status", choices=[state.value for state in FileState], help="only the files in this state"
    )
    results.add_argument(
        "--format",
        choices=["text", "jsonl", "csv", "table"],
        default="text",
        help="text: a line per file (default); jsonl: a result per line; csv: with a header; table",
    )
    results.set_defaults(handler=_results)

    listing = commands.add_parser(
        "ls", aliases=["list"], parents=[common], help="list batches, newest first (alias: list)"
    )
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
            _err(f"error: {error}; follow it with: {PROG} watch {error.batch_id}")
            return EXIT_TIMEOUT
        except KeyboardInterrupt:
            _err(_interrupted_message(args))
            return EXIT_INTERRUPTED
        except FilebatchApiError as error:
            _err(f"error: {error}")
            return EXIT_API
        except FilebatchError as error:
            _err(f"error: {error}")
            return EXIT_API


def _interrupted_message(args: argparse.Namespace) -> str:
    if args.command == "submit":
        batch_ids: list[str] = getattr(args, "batch_ids", [])
        if not batch_ids:
            return "interrupted before a batch was created: nothing was submitted"
        return (
            f"interrupted: {len(batch_ids)} batch(es) created ({', '.join(batch_ids)}); run the same "
            f"command again to resume: files already uploaded are not sent again (the run is recorded "
            f"in {args.state_path})"
        )
    batch_id: str | None = getattr(args, "batch_id", None)
    if batch_id is None:
        return "interrupted"
    return f"interrupted: batch {batch_id} carries on; follow it with `{PROG} watch {batch_id}`"


class _ProgressDisplay:
    """Progress of submit and watch on stderr: live rich bars when stderr is a terminal, else a
    line per change; nothing when quiet."""

    def __init__(self, *, quiet: bool, console: Console | None = None) -> None:
        self._console = console or Console(stderr=True)
        self._live = not quiet and self._console.is_terminal
        self._lines = not quiet and not self._live
        self._last_line = ""
        self._progress = Progress(
            TextColumn("{task.description:<9}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[detail]}"),
            console=self._console,
        )
        self._upload_task: TaskID | None = None
        self._files_task: TaskID | None = None
        # A run of several batches: the latest figures of each, added up.
        self._bytes_by_batch: dict[str, tuple[int, int, int, int]] = {}
        self._finished_by_batch: dict[str, tuple[int, int]] = {}

    def __enter__(self) -> _ProgressDisplay:
        if self._live:
            self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._live:
            self._progress.stop()

    def uploaded(self, progress: UploadProgress) -> None:
        before = self._bytes_by_batch.get(progress.batch_id, (0, 0, 0, 0))
        self._bytes_by_batch[progress.batch_id] = (
            progress.bytes_done,
            progress.bytes_total,
            progress.files_done,
            progress.files_total,
        )
        if self._lines and progress.files_done > before[2]:
            _err(f"uploaded {progress.files_done}/{progress.files_total}  {progress.filename}")
        if not self._live:
            return
        bytes_done, bytes_total, files_done, files_total = (
            sum(v) for v in zip(*self._bytes_by_batch.values(), strict=True)
        )
        detail = (
            f"{filesize.decimal(bytes_done)} of {filesize.decimal(bytes_total)}, "
            f"{files_done}/{files_total} files"
        )
        if self._upload_task is None:
            self._upload_task = self._progress.add_task("uploaded", total=bytes_total, detail="")
        # A total of 0 bytes (empty files only) would never read as done.
        self._progress.update(
            self._upload_task,
            total=max(bytes_total, 1),
            completed=bytes_done if bytes_total else 1,
            detail=detail,
        )

    def status(self, status: BatchStatus) -> None:
        # Polls repeat the same numbers most of the time; print only what changed.
        line = _status_line(status)
        if self._lines and line != self._last_line:
            self._last_line = line
            _err(line)
        if not self._live:
            return
        self._finished_by_batch[status.batch_id] = (status.counts.finished, status.counts.total)
        finished, total = (sum(v) for v in zip(*self._finished_by_batch.values(), strict=True))
        eta = (
            f", about {status.eta_seconds}s left"
            if status.eta_seconds is not None and not status.is_terminal
            else ""
        )
        batches = len(self._finished_by_batch)
        where = (
            f"{status.status}" if batches == 1 else f"{batches} batches, {status.batch_id} {status.status}"
        )
        detail = f"{finished}/{total} files, {where}{eta}"
        if self._files_task is None:
            self._files_task = self._progress.add_task("processed", total=total, detail="")
        self._progress.update(
            self._files_task,
            total=max(total, 1),
            completed=finished if total else 1,
            detail=detail,
        )


def _submit(client: FilebatchClient, args: argparse.Namespace) -> int:
    quiet = args.quiet or args.json
    paths = _expand(args.files)
    args.batch_ids = []
    args.state_path = args.state_file or _default_state_file(client.api_url, paths, args)

    def on_created(created: CreatedBatch) -> None:
        args.batch_ids.append(created.batch_id)

    with _ProgressDisplay(quiet=quiet) as display:
        run = client.submit(
            paths,
            chunk_size=args.chunk_size,
            max_batches_in_flight=args.max_batches_in_flight,
            name=args.name,
            metadata=dict(args.metadata) if args.metadata else None,
            webhook_url=args.webhook_url,
            upload_method=args.upload_method,
            skip_duplicates=args.skip_duplicates,
            wait=not args.no_wait,
            timeout=args.timeout,
            poll_interval=args.poll_interval,
            concurrency=args.concurrency,
            part_concurrency=args.part_concurrency,
            state_file=args.state_path,
            on_created=on_created,
            on_upload_progress=display.uploaded,
            on_batch_status=display.status,
        )
    # The run ended: nothing is left to resume.
    args.state_path.unlink(missing_ok=True)
    if args.no_wait:
        if args.json:
            _print_json(
                {"batches": [{"batch_id": b.batch_id, "status": b.batch.status} for b in run.batches]}
            )
        elif not args.quiet:
            for batch in run.batches:
                print(batch.batch_id)
        return EXIT_OK
    if args.json:
        _print_json(_run_json(run))
    elif not args.quiet:
        for result in run.results:
            print(_result_line(result))
        for batch in run.batches:
            print(_summary_line(batch))
    return EXIT_OK if run.ok else EXIT_FILES_FAILED


def _expand(arguments: Sequence[str]) -> list[Path]:
    """The paths to submit: each argument as it is, or, when no such file exists and it holds a
    wildcard, the sorted files it matches (for shells that do not expand globs, or quoted ones)."""
    paths: list[Path] = []
    for argument in arguments:
        if not os.path.lexists(argument) and glob.has_magic(argument):
            matches = sorted(glob.glob(argument, recursive=True))
            if not matches:
                raise InvalidFileError(f"{argument}: no file matches")
            paths += [Path(match) for match in matches]
        else:
            paths.append(Path(argument))
    return paths


def _default_state_file(api_url: str, paths: Sequence[Path], args: argparse.Namespace) -> Path:
    """One state file per command (the API, the paths and the options that shape the batches): the
    same command run again finds it and resumes."""
    command = json.dumps(
        [
            api_url,
            [str(path.resolve()) for path in paths],
            args.chunk_size,
            args.name,
            args.upload_method,
            args.skip_duplicates,
            sorted(args.metadata),
            args.webhook_url,
        ]
    )
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "filebatch" / "runs" / f"{hashlib.sha256(command.encode()).hexdigest()[:32]}.jsonl"


def _status(client: FilebatchClient, args: argparse.Namespace) -> int:
    return _show_status(client.get_batch(args.batch_id), args)


def _watch(client: FilebatchClient, args: argparse.Namespace) -> int:
    with _ProgressDisplay(quiet=args.quiet or args.json) as display:
        status = client.wait(
            args.batch_id, timeout=args.timeout, poll_interval=args.poll_interval, on_progress=display.status
        )
    if args.json:
        _print_json(to_json(status))
    elif not args.quiet:
        print(_status_line(status))
    return EXIT_OK if status.status == BatchState.COMPLETED else EXIT_FILES_FAILED


CSV_COLUMNS = ("file_id", "filename", "status", "error_code", "description")


def _results(client: FilebatchClient, args: argparse.Namespace) -> int:
    items = client.iter_results(args.batch_id, page_size=args.page_size, status=args.status)
    if args.json:
        _print_json({"batch_id": args.batch_id, "items": to_json(list(items))})
    elif args.format == "jsonl":
        for result in items:
            print(json.dumps(to_json(result), ensure_ascii=False))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(_result_row(result) for result in items)
    elif args.format == "table":
        table = Table(*CSV_COLUMNS)
        for result in items:
            # Text, not markup: a filename such as "[draft].pdf" is shown as it is.
            table.add_row(*(Text(cell) for cell in _result_row(result)))
        Console().print(table)
    else:
        for result in items:
            print(_result_line(result))
    return EXIT_OK


def _result_row(result: FileResult) -> tuple[str, str, str, str, str]:
    return (
        result.file_id,
        result.filename,
        result.status,
        result.error.code if result.error else "",
        result.description.text if result.description else "",
    )


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
        _err(f"follow it with: {PROG} watch {args.batch_id}")
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


def _run_json(run: SubmitRun) -> dict[str, Any]:
    return {
        "batches": [
            {"batch_id": batch.batch_id, "status": to_json(batch.status), "summary": batch.summary()}
            for batch in run.batches
        ],
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
    if result.duplicate_of is not None:
        detail = f"(as {result.duplicate_of.batch_id}/{result.duplicate_of.file_id}) {detail}"
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
