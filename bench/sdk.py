"""SDK benchmark: `submit`'s upload throughput against a plain httpx loop, and `submit`'s peak RSS.

    .venv/bin/python bench/sdk.py [--small-files 2000] [--small-kb 100] [--large-files 4]
        [--large-mib 256] [--repeat 2] [--rss-files 1000,10000] [--rss-kib 10] [--rss-large-mib 2048]
        [--rss-wait] [--skip-throughput] [--skip-rss]

Starts its own local stack from template.yaml with MaxFileBytes raised (4 GiB) and upload URLs
valid for an hour by parameter overrides (the multipart threshold stays at its 100 MiB default, so
the large files upload in 16 MiB parts), then measures:

1. Upload throughput, on (a) --small-files files of --small-kb KB (10^3 bytes) and (b) --large-files
   files of --large-mib MiB, in one interleaved run per workload: plain, SDK, plain, SDK, ...
   (--repeat pairs). Both clients upload the same files, declared the same way (name, size,
   application/octet-stream and their SHA-256, computed once before the runs: the SDK's
   `FileSpec.from_path`), with skip_duplicates off (the same bytes are sent on every run).

   - plain: the seed-style client. One `httpx.AsyncClient`, an `asyncio.Semaphore(20)` over files.
     It creates the batch (POST /v1/batches, then GET .../uploads while a cursor says there are
     more), then sends each file in one presigned PUT (the file read whole), or, for a MULTIPART
     instruction, its parts one after another: each part read, hashed (the instruction asks for
     part checksums, since the file declares its SHA-256), signed through POST .../parts and PUT,
     then POST .../complete.
   - SDK: `FilebatchClient.create_batch(paths, skip_duplicates=False)`, then `upload` of that batch
     with the SDK's defaults (8 files at a time, 4 parts of a large file at a time): the code that
     `submit` runs for each of its batches (one batch, as the plain loop makes).

   Each timed run is a child process of its own (this script with `upload-child`): the local
   stack's moto S3 runs in threads of the bench's process, and a client in that process would
   share their GIL, which favours a client with more threads (the SDK's pool) over one with a
   single event loop (the plain loop): run in the bench's process, the plain loop took 49 s on (a),
   23-27 s in a child.

   Timed: the upload phase only, from the first upload request to the last upload's answer. For
   the plain loop that is from the first PUT (or part request) to the last answer (complete for a
   multipart file). For the SDK it is the `upload` call. Creating the batch and declaring the files
   (hashing them) are outside both. After each timed run the batch is cancelled and the bench waits
   until the stack's process tree is idle (the upload events of that run recorded, any processing
   stopped), so that no run shares the 2 cores with the previous run's work.

   Prints the median MB/s (10^6 bytes per second) and files/s of each client, the ratio SDK/plain
   and whether the issue's targets are met (>= 1.2x on (a), >= 2x on (b)).

2. Peak RSS of `submit`, each case in a child process of its own (this script with `rss-child`),
   which reads its own peak resident set size when it ends: VmHWM of /proc/self/status, the
   kernel's high-water mark of the process's memory (the peak over its life, not the current
   value). Not `getrusage(RUSAGE_SELF).ru_maxrss`: Linux carries that over an exec from the
   process that forked the child, here the bench with a whole local stack in it (~1.2 GB).
   Cases: N files of --rss-kib KiB for each N of --rss-files, and one file of
   --rss-large-mib MiB (multipart). The child calls `submit(paths, chunk_size=100,
   max_batches_in_flight=2)` once.
   By default the child does not wait for results (`wait=False`): the local stack processes a few
   files a second, so waiting for 10,000 results would take half an hour; the figure then covers
   declaring (hashing), creating and uploading. --rss-wait waits for every result too (and holds
   them). Target: <= 150 MB (MB = 10^6 bytes here too) and flat in N.

Figures go to stdout and bench/out/sdk.json. They say what the local emulation sustains (moto's S3
in one local Python process, sharing this machine's 2 cores with the API, the Lambda handlers, the
workflow and both clients), not what S3 does.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
MB = 1_000_000
PLAIN_CONCURRENCY = 20
RSS_CHUNK_SIZE = 100
RSS_BATCHES_IN_FLIGHT = 2
RSS_TARGET_MB = 150
TARGETS = {"small": 1.2, "large": 2.0}
CONTENT_TYPE = "application/octet-stream"


# ---- files ---------------------------------------------------------------------------------------


def write_small_files(directory: Path, count: int, size: int) -> list[Path]:
    """`count` files of `size` random bytes (every file different)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = directory / f"small-{index:05d}.bin"
        path.write_bytes(os.urandom(size))
        paths.append(path)
    return paths


def write_large_files(directory: Path, count: int, size: int) -> list[Path]:
    """`count` sparse files of `size` bytes: one random MiB (every file different), zeros after."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = directory / f"large-{index}.bin"
        with path.open("wb") as file:
            file.write(os.urandom(min(MIB, size)))
            file.truncate(size)
        paths.append(path)
    return paths


# ---- the stack between runs ----------------------------------------------------------------------


def _tree_cpu_seconds() -> float:
    """CPU seconds used so far by this process and every live descendant (the stack's moto, API,
    handlers and workflow run in it or under it)."""
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        # The command name (field 2) may hold spaces: the other fields follow its closing ")".
        fields = raw[raw.rindex(")") + 2 :].split()
        stats[int(entry.name)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, pending = 0, [os.getpid()]
    while pending:
        pid = pending.pop()
        if pid in stats:
            total += int(stats[pid][11]) + int(stats[pid][12])  # utime, stime
        pending += children.get(pid, [])
    return total / ticks


def wait_until_idle(*, window: float = 3.0, busy: float = 0.15, timeout: float = 900) -> float:
    """Wait until the process tree uses under `busy` of one core over `window` seconds; the wait.

    Idle is not zero: the stack's SQS pollers alone keep it at ~5 % of a core."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = _tree_cpu_seconds()
        time.sleep(window)
        if (_tree_cpu_seconds() - before) / window < busy:
            break
    return time.monotonic() - started


def cancel(client: Any, batch_id: str) -> None:
    from filebatch_sdk import FilebatchApiError

    try:
        client.cancel_batch(batch_id)
    except FilebatchApiError as error:  # it ended already (e.g. every file failed fast)
        if error.code != "batch_ended":
            raise


def settle(client: Any, batch_ids: Sequence[str]) -> None:
    """Cancel the run's batches (their processing would share the CPU with the next run) and wait
    until the stack is idle."""
    for batch_id in batch_ids:
        cancel(client, batch_id)
    print(f"    (cancelled; the stack was idle again {wait_until_idle():.0f} s later)", flush=True)


def open_batches(client: Any) -> list[str]:
    """The key's batches that have not ended."""
    return [batch.batch_id for batch in client.list_batches() if not batch.is_terminal]


# ---- the plain loop ------------------------------------------------------------------------------


async def plain_upload(
    api_url: str, api_key: str, paths: Sequence[Path], declared: list[dict[str, Any]]
) -> tuple[str, float]:
    """The seed-style client: create the batch, then upload with 20 files in flight. Returns the
    batch id and the upload phase's seconds."""
    import httpx

    auth = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(timeout=600) as http:

        async def api(method: str, path: str, **kwargs: Any) -> Any:
            response = await http.request(method, api_url + path, headers=auth, **kwargs)
            response.raise_for_status()
            return response.json()

        created = await api("POST", "/v1/batches", json={"files": declared})
        batch_id = created["batch_id"]
        instructions = list(created["files"])
        cursor = created.get("next_uploads_cursor")
        while cursor:
            page = await api(
                "GET", f"/v1/batches/{batch_id}/uploads", params={"cursor": cursor, "limit": 1000}
            )
            instructions += page["items"]
            cursor = page.get("next_cursor")
        by_name = {path.name: path for path in paths}
        semaphore = asyncio.Semaphore(PLAIN_CONCURRENCY)

        async def put(url: str, headers: dict[str, str], body: bytes) -> httpx.Response:
            response = await http.put(url, content=body, headers=headers)
            response.raise_for_status()
            return response

        async def upload_in_parts(file_id: str, path: Path, upload: dict[str, Any]) -> None:
            route = f"/v1/batches/{batch_id}/files/{file_id}/parts"
            size, part_size = path.stat().st_size, upload["part_size"]
            urls = {part["part_number"]: part for part in upload.get("parts") or []}
            parts_cursor = upload.get("next_parts_cursor")
            held = []
            with path.open("rb") as file:
                for number in range(1, upload["part_count"] + 1):
                    body = file.read(min(part_size, size - (number - 1) * part_size))
                    checksum = None
                    if upload.get("part_checksum"):
                        # Each URL signs its part's digest: hash the part, then ask for its URL.
                        checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()
                        signed = await api(
                            "POST", route, json={"parts": [{"part_number": number, "sha256": checksum}]}
                        )
                        urls[number] = signed["parts"][0]
                    while number not in urls and parts_cursor:
                        page = await api("GET", route, params={"cursor": parts_cursor})
                        urls |= {part["part_number"]: part for part in page["parts"]}
                        parts_cursor = page.get("next_cursor")
                    response = await put(urls[number]["url"], urls[number].get("headers") or {}, body)
                    held.append(
                        {"part_number": number, "etag": response.headers["ETag"].strip('"')}
                        | ({"checksum_sha256": checksum} if checksum else {})
                    )
            await api("POST", f"/v1/batches/{batch_id}/files/{file_id}/complete", json={"parts": held})

        async def upload_one(item: dict[str, Any]) -> None:
            path, upload = by_name[item["filename"]], item["upload"]
            async with semaphore:
                if upload["method"] == "MULTIPART":
                    await upload_in_parts(item["file_id"], path, upload)
                else:
                    await put(upload["url"], upload.get("headers") or {}, path.read_bytes())

        started = time.perf_counter()
        await asyncio.gather(*(upload_one(item) for item in instructions))
        return batch_id, time.perf_counter() - started


# ---- the SDK -------------------------------------------------------------------------------------


def sdk_upload(client: Any, paths: Sequence[Path]) -> tuple[str, float]:
    """The SDK's upload of one batch of `paths` (what `submit` runs for each of its batches:
    `FilebatchClient.upload`, the same code): the batch id and the seconds the upload took, from
    after the create to the last file's answer, as the plain loop is timed."""
    created = client.create_batch(paths, skip_duplicates=False)
    started = time.perf_counter()
    client.upload(created, paths)
    return created.batch_id, time.perf_counter() - started


# ---- 1. throughput -------------------------------------------------------------------------------


def upload_child(argv: list[str]) -> int:
    """In its own process (away from the stack's moto, whose threads share a GIL with whatever runs
    in the bench's process): one timed upload by the plain loop or the SDK; prints the batch id and
    the seconds."""
    which, api_url, key, listing, declarations = argv[0], argv[1], argv[2], Path(argv[3]), Path(argv[4])
    from filebatch_sdk import FilebatchClient

    paths = [Path(line) for line in listing.read_text().splitlines()]
    if which == "plain":
        declared = json.loads(declarations.read_text())
        batch_id, seconds = asyncio.run(plain_upload(api_url, key, paths, declared))
    else:
        with FilebatchClient(api_url, key, timeout=600) as client:
            batch_id, seconds = sdk_upload(client, paths)
    # The client's own CPU over its whole life (reading and hashing the files included): with the
    # stack's share (see `throughput`) it says which side the 2 cores were busy on.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps({"batch_id": batch_id, "seconds": seconds, "client_cpu": usage.ru_utime + usage.ru_stime})
    )
    return 0


def run_child(*args: str) -> dict[str, Any]:
    """This script in a child process (`args` name what it does); the JSON it prints last."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "sdk"), os.environ.get("PYTHONPATH", "")])}
    answer = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True, env=env
    )
    figures: dict[str, Any] = json.loads(answer.stdout.strip().splitlines()[-1])
    return figures


def throughput(
    stack: Any, key: str, label: str, paths: list[Path], repeat: int, scratch: Path
) -> dict[str, Any]:
    from filebatch_sdk import FilebatchClient, FileSpec

    total_bytes = sum(path.stat().st_size for path in paths)
    listing, declarations = scratch / f"{label}.txt", scratch / f"{label}.json"
    listing.write_text("\n".join(str(path) for path in paths))
    declared = [FileSpec.from_path(path, content_type=CONTENT_TYPE).to_json() for path in paths]
    declarations.write_text(json.dumps(declared))
    seconds: dict[str, list[float]] = {"plain": [], "sdk": []}
    # Cores the stack (moto's S3, the API, the handlers: this process and its other descendants)
    # used per second of the whole child run: near 2, the server side is what bounds the figures.
    stack_cores: dict[str, list[float]] = {"plain": [], "sdk": []}
    with FilebatchClient(stack.api_url, key, timeout=600) as client:
        for round_number in range(repeat):
            for name in ("plain", "sdk"):
                cpu_before, wall_before = _tree_cpu_seconds(), time.perf_counter()
                run = run_child("upload-child", name, stack.api_url, key, str(listing), str(declarations))
                wall = time.perf_counter() - wall_before
                # An ended child's CPU is not in the tree any more: what grew is the stack's.
                stack_cores[name].append(round((_tree_cpu_seconds() - cpu_before) / wall, 2))
                seconds[name].append(run["seconds"])
                print(
                    f"  {label} run {round_number + 1} {name:<5} {run['seconds']:8.2f} s"
                    f"  (stack {stack_cores[name][-1]:.2f} cores, client {run['client_cpu'] / wall:.2f} cores"
                    f" over the child's {wall:.1f} s)",
                    flush=True,
                )
                settle(client, [run["batch_id"]])
    figures: dict[str, Any] = {
        "files": len(paths),
        "bytes": total_bytes,
        "seconds": seconds,
        "stack_cores": stack_cores,
    }
    for name, runs in seconds.items():
        median = statistics.median(runs)
        figures[name] = {
            "median_seconds": round(median, 3),
            "mb_per_second": round(total_bytes / MB / median, 1),
            "files_per_second": round(len(paths) / median, 1),
        }
    figures["ratio"] = round(figures["plain"]["median_seconds"] / figures["sdk"]["median_seconds"], 2)
    return figures


# ---- 2. peak RSS ---------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (VmHWM, in kB), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / MB
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def rss_child(argv: list[str]) -> int:
    """In its own process: submit the files listed in argv[2] and print what the process peaked at."""
    api_url, key, listing, wait = argv[0], argv[1], Path(argv[2]), argv[3] == "wait"
    from filebatch_sdk import FilebatchClient

    baseline = peak_rss_mb()
    paths = [Path(line) for line in listing.read_text().splitlines()]
    started = time.perf_counter()
    with FilebatchClient(api_url, key, timeout=600) as client:
        client.submit(
            paths,
            chunk_size=RSS_CHUNK_SIZE,
            max_batches_in_flight=RSS_BATCHES_IN_FLIGHT,
            skip_duplicates=False,
            wait=wait,
            timeout=7200,
        )
    how = f"submit(chunk_size={RSS_CHUNK_SIZE}, max_batches_in_flight={RSS_BATCHES_IN_FLIGHT})"
    peak = peak_rss_mb()
    print(
        json.dumps(
            {
                "peak_mb": round(peak, 1),
                "after_imports_mb": round(baseline, 1),
                "seconds": round(time.perf_counter() - started, 1),
                "submit": how,
                "waited_for_results": wait,
            }
        )
    )
    return 0


def peak_rss(
    stack: Any, key: str, label: str, paths: list[Path], wait: bool, scratch: Path
) -> dict[str, Any]:
    from filebatch_sdk import FilebatchClient

    listing = scratch / f"{label}.txt"
    listing.write_text("\n".join(str(path) for path in paths))
    figures = run_child("rss-child", stack.api_url, key, str(listing), "wait" if wait else "no-wait")
    figures["case"] = label
    print(f"  {label:<32} peak {figures['peak_mb']:7.1f} MB ({figures['seconds']} s)", flush=True)
    # Without waiting, the child leaves its batches processing: stopped before the next case.
    with FilebatchClient(stack.api_url, key, timeout=600) as client:
        settle(client, open_batches(client))
    return figures


# ---- main ----------------------------------------------------------------------------------------


def verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"


def report(figures: dict[str, Any], say: Callable[[str], None] = print) -> None:
    for label, workload in figures.get("throughput", {}).items():
        target, ratio = TARGETS[label], workload["ratio"]
        say(
            f"upload ({label}): {workload['files']} files, {workload['bytes'] / MB:.1f} MB, "
            f"median of {len(workload['seconds']['sdk'])} interleaved runs each"
        )
        for name in ("plain", "sdk"):
            run = workload[name]
            cores = workload.get("stack_cores", {}).get(name)
            busy = f"  stack busy {statistics.median(cores):.2f} cores" if cores else ""
            say(
                f"  {name:<5} {run['median_seconds']:8.2f} s  {run['mb_per_second']:7.1f} MB/s"
                f"  {run['files_per_second']:8.1f} files/s{busy}"
            )
        say(f"  SDK/plain {ratio:.2f}x (target >= {target}x): {verdict(ratio >= target)}")
    rss = figures.get("rss")
    if rss:
        first = rss["cases"][0]
        say(f"peak RSS of submit ({first['submit']}; waited for results: {first['waited_for_results']})")
        for case in rss["cases"]:
            peak, imports = case["peak_mb"], case["after_imports_mb"]
            say(f"  {case['case']:<32} {peak:7.1f} MB (imports alone: {imports} MB)")
        say(
            f"  <= {RSS_TARGET_MB} MB: {verdict(rss['within_target'])}; "
            f"flat in N: {verdict(rss['flat'])} ({rss['flat_rule']})"
        )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["rss-child"]:
        return rss_child(argv[1:])
    if argv[:1] == ["upload-child"]:
        return upload_child(argv[1:])
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small-files", type=int, default=2000)
    parser.add_argument("--small-kb", type=int, default=100, help="size of each small file, in 10^3 bytes")
    parser.add_argument("--large-files", type=int, default=4)
    parser.add_argument("--large-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=2, help="plain/SDK pairs per workload")
    parser.add_argument("--rss-files", default="1000,10000", help="file counts of the RSS cases")
    parser.add_argument("--rss-kib", type=int, default=10, help="size of each file of the RSS cases")
    parser.add_argument("--rss-large-mib", type=int, default=2048)
    parser.add_argument("--rss-wait", action="store_true", help="the RSS cases also wait for every result")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.rss_files.split(",") if n.strip()]

    from filebatch_local.stack import LocalStack

    state = ROOT / ".local" / "bench-sdk"
    state.mkdir(parents=True, exist_ok=True)
    overrides = {"MaxFileBytes": str(4 * 1024 * MIB), "UploadUrlTtlSeconds": "3600"}
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-sdk-", dir=state) as scratch_name:
        scratch = Path(scratch_name)
        with LocalStack(ROOT, api_port=0, parameter_overrides=overrides, state_dir=state) as stack:
            key = stack.create_api_key("bench")
            wait_until_idle()
            if not args.skip_throughput:
                figures["throughput"] = {}
                workloads: dict[str, Callable[[], list[Path]]] = {
                    "small": lambda: write_small_files(
                        scratch / "small", args.small_files, args.small_kb * 1000
                    ),
                    "large": lambda: write_large_files(
                        scratch / "large", args.large_files, args.large_mib * MIB
                    ),
                }
                for label, make in workloads.items():
                    figures["throughput"][label] = throughput(stack, key, label, make(), args.repeat, scratch)
            if not args.skip_rss:
                cases = []
                for count in counts:
                    paths = write_small_files(scratch / f"rss-{count}", count, args.rss_kib * 1024)
                    cases.append(
                        peak_rss(
                            stack, key, f"{count} files of {args.rss_kib} KiB", paths, args.rss_wait, scratch
                        )
                    )
                large = write_large_files(scratch / "rss-large", 1, args.rss_large_mib * MIB)
                cases.append(
                    peak_rss(stack, key, f"1 file of {args.rss_large_mib} MiB", large, args.rss_wait, scratch)
                )
                small = [case for case in cases[:-1]]
                spread = max(c["peak_mb"] for c in small) - min(c["peak_mb"] for c in small) if small else 0.0
                figures["rss"] = {
                    "cases": cases,
                    "within_target": all(case["peak_mb"] <= RSS_TARGET_MB for case in cases),
                    # Flat: the largest N peaks within 10 % (or 10 MB) of the smallest.
                    "flat": spread <= max(10.0, 0.1 * min(c["peak_mb"] for c in small)) if small else True,
                    "flat_rule": "peaks of the N cases within 10 % (at least 10 MB) of each other",
                }
    print()
    report(figures)
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "sdk.json").write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
