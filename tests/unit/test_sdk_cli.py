"""The command line's commands and display (issue 11) against the SDK tests' fake API.

The fake is an HTTP server on 127.0.0.1, so the command line runs in-process (stderr is then
pytest's capture, not a terminal) or as a subprocess under a pseudo-terminal, which is how a
person sees its live progress.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from filebatch_sdk import FilebatchClient
from filebatch_sdk._protocol import Protocol
from filebatch_sdk.cli import CSV_COLUMNS, EXIT_INTERRUPTED
from tests.unit import test_sdk
from tests.unit.test_sdk import API_KEY, FakeApi, _cli, _finished_batch

# The SDK tests' fixtures, shared rather than copied.
fake_api = test_sdk.fake_api
sleeps = test_sdk.sleeps
client = test_sdk.client
sample_files = test_sdk.sample_files
private_cache = test_sdk.private_cache

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# ---- ls / watch / results ------------------------------------------------------------------------


def test_ls_is_the_list_command_and_list_stays_its_alias(
    fake_api: FakeApi, client: FilebatchClient, sample_files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a batch
    batch_id = client.create_batch(sample_files[:1]).batch_id
    # When batches are listed by both names
    assert _cli(fake_api, "ls") == 0
    by_ls = capsys.readouterr().out
    assert _cli(fake_api, "list") == 0
    by_list = capsys.readouterr().out
    # Then both print the same line for it
    assert by_ls == by_list
    assert by_ls.startswith(f"{batch_id}  ")


@pytest.mark.parametrize(
    ("files", "code", "final"),
    [(slice(0, 2), 0, "completed"), (slice(0, 3), 1, "completed_with_errors")],
)
def test_watch_follows_the_batch_to_its_end_and_exits_by_how_it_ended(
    fake_api: FakeApi,
    client: FilebatchClient,
    sample_files: list[Path],
    capsys: pytest.CaptureFixture[str],
    files: slice,
    code: int,
    final: str,
) -> None:
    # Given an uploaded batch still processing (with a failing file in the second case)
    created = client.create_batch(sample_files[files])
    client.upload(created, sample_files[files])
    # When it is watched
    exit_code = _cli(fake_api, "watch", created.batch_id, "--poll-interval", "0")
    output = capsys.readouterr()
    # Then the command polled until the end: progress lines on stderr, the final status on stdout
    assert exit_code == code
    assert output.out.startswith(f"{created.batch_id}  {final}  100%")
    assert "processing" in output.err
    assert "about 42s left" in output.err
    assert len(fake_api.calls("GET", f"/v1/batches/{created.batch_id}")) == fake_api.polls_until_done


def test_watch_gives_up_after_its_timeout_with_exit_4_and_says_how_to_follow(
    fake_api: FakeApi, client: FilebatchClient, sample_files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a batch that does not end
    fake_api.polls_until_done = 1000
    batch_id = client.create_batch(sample_files[:1]).batch_id
    # When it is watched with no time to wait
    exit_code = _cli(fake_api, "watch", batch_id, "--timeout", "0", "--json")
    output = capsys.readouterr()
    # Then it gives up at once: exit 4, nothing on stdout, the way to follow it on stderr
    assert exit_code == 4
    assert output.out == ""
    assert f"filebatch watch {batch_id}" in output.err


def test_results_as_csv_has_a_header_and_a_row_per_file(
    fake_api: FakeApi, client: FilebatchClient, sample_files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an ended batch with a failed file
    batch_id = _finished_batch(client, sample_files)
    # When its results are printed as CSV
    assert _cli(fake_api, "results", batch_id, "--format", "csv") == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    # Then the header names the columns and each file has its row, the failure with its code
    assert tuple(rows[0]) == CSV_COLUMNS == ("file_id", "filename", "status", "error_code", "description")
    by_name = {row[1]: row for row in rows[1:]}
    assert set(by_name) == {path.name for path in sample_files}
    assert by_name["flaky-notes.txt"][2:4] == ["failed", "provider_unavailable"]
    assert by_name["cat.png"][2:4] == ["completed", ""]
    assert by_name["cat.png"][4]


def test_results_as_jsonl_are_the_json_items_one_a_line(
    fake_api: FakeApi, client: FilebatchClient, sample_files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an ended batch
    batch_id = _finished_batch(client, sample_files)
    # When its results are printed as JSON Lines and as one JSON document
    assert _cli(fake_api, "results", batch_id, "--format", "jsonl", "--status", "completed") == 0
    lines = capsys.readouterr().out.splitlines()
    assert _cli(fake_api, "results", batch_id, "--json", "--status", "completed") == 0
    document = json.loads(capsys.readouterr().out)
    # Then each line is one of the document's items, in order
    assert [json.loads(line) for line in lines] == document["items"]
    assert len(lines) == 2


def test_results_as_a_table_show_each_file_verbatim(
    fake_api: FakeApi, client: FilebatchClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an ended batch whose file name looks like console markup
    odd = tmp_path / "[bold]draft.txt"
    odd.write_bytes(b"text")
    batch_id = _finished_batch(client, [odd])
    # When its results are printed as a table
    assert _cli(fake_api, "results", batch_id, "--format", "table") == 0
    table = capsys.readouterr().out
    # Then the table has the columns and the name as it is
    assert "file_id" in table
    assert "error_code" in table
    assert "[bold]draft.txt" in table


# ---- submit: --quiet, --json, Ctrl-C -------------------------------------------------------------


def test_submit_quiet_prints_nothing_and_the_exit_status_tells(
    fake_api: FakeApi, sample_files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # When files (one of which fails) are submitted quietly
    code = _cli(fake_api, "submit", *map(str, sample_files), "--quiet", "--poll-interval", "0")
    output = capsys.readouterr()
    # Then nothing is printed and the exit status says a file failed
    assert code == 1
    assert (output.out, output.err) == ("", "")


def test_submit_json_prints_one_document_and_no_escape_codes(
    fake_api: FakeApi, sample_files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # When files are submitted with --json (stderr is not a terminal)
    code = _cli(fake_api, "submit", *map(str, sample_files[:2]), "--json", "--poll-interval", "0")
    output = capsys.readouterr()
    # Then stdout is exactly one JSON document, and neither stream holds an escape code
    assert code == 0
    assert json.loads(output.out)["summary"] == {"completed": 2}
    assert "\x1b" not in output.out + output.err


def test_submit_without_a_terminal_prints_plain_progress_lines(
    fake_api: FakeApi, sample_files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code = _cli(fake_api, "submit", *map(str, sample_files[:2]), "--poll-interval", "0")
    output = capsys.readouterr()
    assert code == 0
    assert "uploaded 2/2" in output.err
    assert "\x1b" not in output.out + output.err
    assert output.out.splitlines()[-1].endswith("completed: 2 completed")


def test_ctrl_c_while_waiting_exits_130_naming_the_batch_and_watch(
    fake_api: FakeApi,
    sample_files: list[Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a wait that the user interrupts
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    wait = Protocol.wait
    monkeypatch.setattr(Protocol, "wait", interrupted)
    # When files are submitted
    code = _cli(fake_api, "submit", str(sample_files[0]))
    output = capsys.readouterr()
    # Then it stops with 130, names the batch (which carries on) and says how to resume
    (batch_id,) = fake_api.batches
    assert code == EXIT_INTERRUPTED == 130
    assert output.out == ""
    assert batch_id in output.err
    assert "run the same command again to resume" in output.err
    assert "Traceback" not in output.err
    # And when the same command runs again, it follows that batch instead of creating another
    monkeypatch.setattr(Protocol, "wait", wait)
    assert _cli(fake_api, "submit", str(sample_files[0])) == 0
    assert list(fake_api.batches) == [batch_id]
    assert len(fake_api.calls("PUT", f"/upload/{batch_id}/f00001")) == 1


def test_ctrl_c_while_uploading_resumes_with_the_same_command_uploading_only_what_is_missing(
    fake_api: FakeApi,
    sample_files: list[Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    private_cache: Path,
) -> None:
    # Given uploads that the user interrupts at the second file (the first is stored)
    upload_file = Protocol.upload_file

    def interrupted_at_the_second(
        self: Protocol, batch_id: str, created: Any, *args: Any, **kwargs: Any
    ) -> Any:
        if created.file_id == "f00002":
            raise KeyboardInterrupt
        return (yield from upload_file(self, batch_id, created, *args, **kwargs))

    monkeypatch.setattr(Protocol, "upload_file", interrupted_at_the_second)
    files = [str(p) for p in sample_files[:2]]
    # When they are submitted, one at a time
    code = _cli(fake_api, "submit", *files, "--concurrency", "1")
    (batch_id,) = fake_api.batches
    err = capsys.readouterr().err
    # Then it stops with 130, saying how to resume, and the run is recorded in the cache
    assert code == 130
    assert "run the same command again to resume" in err
    (state_file,) = (private_cache / "filebatch" / "runs").iterdir()
    assert str(state_file) in err
    # And when the same command runs again, only the missing file is uploaded, to the same batch
    monkeypatch.setattr(Protocol, "upload_file", upload_file)
    assert _cli(fake_api, "submit", *files, "--concurrency", "1") == 0
    assert list(fake_api.batches) == [batch_id]
    puts = [r.path for r in fake_api.requests if r.method == "PUT"]
    assert puts == [f"/upload/{batch_id}/f00001", f"/upload/{batch_id}/f00002"]
    # And the finished run's state file is gone
    assert not state_file.exists()


# ---- under a pseudo-terminal ---------------------------------------------------------------------


def _run_in_pty(args: list[str], *, interrupt_after: str | None = None) -> tuple[int, str, str]:
    """Run `python -m filebatch_sdk ARGS` with stderr on a pseudo-terminal; its exit status,
    stdout and everything the terminal received. With `interrupt_after`, the process gets a
    SIGINT (Ctrl-C) once the terminal has shown that text."""
    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in {"FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE"}}
    # The SDK of this checkout, whatever the interpreter's own path holds.
    sdk_dir = str(Path(__file__).resolve().parents[2] / "sdk")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [sdk_dir, env.get("PYTHONPATH")]))
    env.update(TERM="xterm-256color", COLUMNS="120", LINES="40")
    process = subprocess.Popen(
        [sys.executable, "-m", "filebatch_sdk", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=terminal,
        env=env,
    )
    os.close(terminal)
    received = bytearray()
    while True:
        if interrupt_after is not None and interrupt_after.encode() in received:
            process.send_signal(signal.SIGINT)
            interrupt_after = None
        # A bounded wait, so that a process that never writes again fails the test instead of hanging it.
        readable, _, _ = select.select([controller], [], [], 60)
        if not readable:
            process.kill()
            break
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the terminal's last writer has gone
            break
        if not chunk:
            break
        received += chunk
    os.close(controller)
    assert process.stdout is not None
    stdout = process.stdout.read().decode()
    process.stdout.close()
    return process.wait(), stdout, received.decode(errors="replace")


def test_submit_under_a_terminal_draws_bars_that_reach_100_percent(
    fake_api: FakeApi, sample_files: list[Path]
) -> None:
    # When files (one of which fails) are submitted from a terminal
    code, stdout, screen = _run_in_pty(
        [
            "submit",
            *map(str, sample_files),
            "--poll-interval",
            "0.01",
            "--api-url",
            fake_api.base_url,
            "--api-key",
            API_KEY,
        ]
    )
    # Then the terminal got live bars (escape codes), and their final frame shows both at 100 %
    assert "\x1b[" in screen
    plain = ANSI_ESCAPE.sub("", screen)
    final_frame = [line for line in plain.replace("\r", "\n").splitlines() if line.strip()][-2:]
    assert final_frame[0].startswith("uploaded")
    assert final_frame[1].startswith("processed")
    assert all("100%" in line for line in final_frame)
    assert "3/3 files" in final_frame[0]
    assert "3/3 files, completed_with_errors" in final_frame[1]
    # And stdout has the results and the summary line, and the exit status says a file failed
    assert code == 1
    assert re.search(
        r"batch b-\S+ completed_with_errors: 2 completed, 1 failed; 1 retryable$", stdout.strip()
    )
    assert "\x1b" not in stdout


def test_ctrl_c_under_a_terminal_stops_watch_cleanly_with_130(
    fake_api: FakeApi, client: FilebatchClient, sample_files: list[Path]
) -> None:
    # Given a batch that goes on processing
    fake_api.polls_until_done = 10**9
    batch_id = client.create_batch(sample_files[:1]).batch_id
    # When it is watched from a terminal and the user presses Ctrl-C once the bar is shown
    code, stdout, screen = _run_in_pty(
        ["watch", batch_id, "--poll-interval", "0.05", "--api-url", fake_api.base_url, "--api-key", API_KEY],
        interrupt_after="processed",
    )
    # Then it exits 130 without a traceback and says how to follow the batch
    plain = ANSI_ESCAPE.sub("", screen)
    assert code == 130
    assert stdout == ""
    assert "Traceback" not in plain
    assert f"filebatch watch {batch_id}" in plain
