"""End-to-end benchmark: push N files through the local stack and print what it costs.

    .venv/bin/python bench/e2e.py [--files 1000] [--upload-concurrency 16] [--api-url URL --api-key KEY]

Prints files/second (first upload started → batch terminal), p50/p95 per-file latency from the end
of a file's upload to its recorded result, and the ratio of end-to-end time to the time the same
per-file work (process + describe) takes called directly in a loop. Two phases apart: upload events/s
(files / first PUT answered → last file recorded `uploaded`, the upload consumer's rate) and
processing files/s (files / last file recorded `uploaded` → last result). Without --api-url it starts
its own local stack from template.yaml and also prints CPU ms per file: the stack's process (moto,
the Step Functions interpreter, the API, the SQS pollers, and this script's HTTP client) and each
function's environments. Figures go to stdout and bench/out/e2e-<N>.json.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
# One create answer carries 1,000 upload URLs: the bench keeps each batch to that (no paging).
FILES_PER_BATCH = 1000


def make_files(count: int, seed: int = 7) -> list[tuple[str, bytes, str]]:
    """Small, varied, real images (PNG and JPEG, different shapes and colours), deterministic."""
    rng = random.Random(seed)
    files = []
    for index in range(count):
        width, height = rng.randint(16, 160), rng.randint(16, 160)
        image = Image.new("RGB", (width, height), tuple(rng.randint(0, 255) for _ in range(3)))
        for _ in range(3):
            x, y = rng.randint(0, width - 1), rng.randint(0, height - 1)
            image.paste(
                tuple(rng.randint(0, 255) for _ in range(3)), (x, y, min(width, x + 20), min(height, y + 20))
            )
        buffer = io.BytesIO()
        if index % 2:
            image.save(buffer, format="JPEG", quality=85)
            files.append((f"bench-{index:05d}.jpg", buffer.getvalue(), "image/jpeg"))
        else:
            image.save(buffer, format="PNG")
            files.append((f"bench-{index:05d}.png", buffer.getvalue(), "image/png"))
    return files


def direct_loop_seconds(files: list[tuple[str, bytes, str]]) -> float:
    """The per-file work (what process + describe compute) called directly, no AWS in between."""
    from filebatch.media.detect import detect_content_type
    from filebatch.media.inspect import basic_metadata
    from filebatch.media.local_provider import LocalDescriptionProvider
    from filebatch.media.source import BytesMedia
    from filebatch.models.domain import FileFacts

    provider = LocalDescriptionProvider()
    started = time.perf_counter()
    for name, content, _ in files:
        detected = detect_content_type(content)
        facts = FileFacts(
            size_bytes=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
            detected_content_type=detected,
            metadata=basic_metadata(io.BytesIO(content), detected),
        )
        provider.describe(BytesMedia(content), facts, name)
    return time.perf_counter() - started


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run(
    api_url: str,
    api_key: str,
    files: list[tuple[str, bytes, str]],
    concurrency: int,
    *,
    poll_seconds: float = 0.5,
) -> dict[str, Any]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {api_key}"
    uploaded_at: dict[tuple[str, str], float] = {}
    batches: list[str] = []
    started = time.time()

    def put(batch_id: str, file: dict[str, Any], content: bytes) -> None:
        upload = file["upload"]
        response = requests.put(upload["url"], data=content, headers=upload["headers"], timeout=60)
        response.raise_for_status()
        uploaded_at[(batch_id, file["file_id"])] = time.time()

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for offset in range(0, len(files), FILES_PER_BATCH):
            chunk = files[offset : offset + FILES_PER_BATCH]
            body = {"files": [{"filename": n, "size": len(c), "content_type": t} for n, c, t in chunk]}
            response = session.post(f"{api_url}/v1/batches", json=body, timeout=120)
            response.raise_for_status()
            created = response.json()
            batches.append(created["batch_id"])
            batch_id = created["batch_id"]
            futures = [
                pool.submit(put, batch_id, file, content)
                for file, content in zip(created["files"], [c for _, c, _ in chunk], strict=True)
            ]
            for future in futures:
                future.result()
    uploads_done = time.time()

    for batch_id in batches:
        while not session.get(f"{api_url}/v1/batches/{batch_id}", timeout=30).json()["is_terminal"]:
            time.sleep(poll_seconds)
    finished = time.time()

    latencies, statuses, recorded_uploads, results = [], {}, [], []
    for batch_id in batches:
        cursor = None
        while True:
            params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
            page = session.get(f"{api_url}/v1/batches/{batch_id}/results", params=params, timeout=60).json()
            for item in page["items"]:
                statuses[item["status"]] = statuses.get(item["status"], 0) + 1
                if item["uploaded_at"]:
                    recorded_uploads.append(datetime.fromisoformat(item["uploaded_at"]).timestamp())
                if item["finished_at"]:
                    results.append(datetime.fromisoformat(item["finished_at"]).timestamp())
                    done = datetime.fromisoformat(item["finished_at"]).timestamp()
                    latencies.append(done - uploaded_at[(batch_id, item["file_id"])])
            cursor = page["next_cursor"]
            if not cursor:
                break
    # The upload phase: S3's first event is sent once the first PUT is answered; it ends when the
    # consumer has recorded the last file. Processing starts there (the last file starts the run).
    first_put = min(uploaded_at.values())
    last_recorded = max(recorded_uploads)
    return {
        "files": len(files),
        "batches": len(batches),
        "statuses": statuses,
        "upload_seconds": round(uploads_done - started, 2),
        "upload_events_per_second": round(len(recorded_uploads) / (last_recorded - first_put), 2),
        "last_recorded_after_last_put_seconds": round(last_recorded - max(uploaded_at.values()), 2),
        "processing_files_per_second": round(len(results) / (max(results) - last_recorded), 2),
        "end_to_end_seconds": round(finished - started, 2),
        "files_per_second": round(len(files) / (finished - started), 2),
        "latency_p50_seconds": round(percentile(latencies, 0.50), 2),
        "latency_p95_seconds": round(percentile(latencies, 0.95), 2),
    }


def cpu_ms_per_file(
    files: int,
    process_before: Any,
    process_after: Any,
    functions_before: dict[str, tuple[int, float]],
    functions_after: dict[str, tuple[int, float]],
) -> dict[str, Any]:
    """CPU spent during the run, per file: the stack's process, then each function's environments
    (with how many environments it started during the run, whose inits are part of its CPU)."""
    own = (process_after.ru_utime + process_after.ru_stime) - (
        process_before.ru_utime + process_before.ru_stime
    )
    figures: dict[str, Any] = {"stack process": round(1000 * own / files, 1)}
    for logical_id, (started, cpu) in sorted(functions_after.items()):
        started_before, cpu_before = functions_before.get(logical_id, (0, 0.0))
        if cpu - cpu_before >= 0.01:
            figures[f"{logical_id} ({started - started_before} started)"] = round(
                1000 * (cpu - cpu_before) / files, 1
            )
    figures["total"] = round(
        own * 1000 / files
        + sum(
            1000 * (cpu - functions_before.get(lid, (0, 0.0))[1]) / files
            for lid, (_, cpu) in functions_after.items()
        ),
        1,
    )
    return figures


def save_figures(name: str, figures: dict[str, Any], run_figures: dict[str, Any]) -> int:
    """Write the figures to bench/out/<name>.json; the exit status says whether every file completed."""
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(figures, indent=2))
    return 0 if run_figures["statuses"].get("completed") == run_figures["files"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--upload-concurrency", type=int, default=16)
    parser.add_argument("--api-url")
    parser.add_argument("--api-key")
    args = parser.parse_args(argv)

    files = make_files(args.files)
    direct = direct_loop_seconds(files)
    if args.api_url:
        figures = run(args.api_url, args.api_key, files, args.upload_concurrency)
    else:
        from filebatch_local.stack import LocalStack

        with LocalStack(ROOT, api_port=0, state_dir=ROOT / ".local" / "bench") as stack:
            key = stack.create_api_key("bench")
            # Measured warm: the environments the template's concurrency asks for are started
            # ahead, as a stack that has been up a while has them.
            warm_started = time.perf_counter()
            stack.wait_warm()
            figures_warm_s = time.perf_counter() - warm_started
            functions_before = stack.cpu_seconds_by_function()
            process_before = resource.getrusage(resource.RUSAGE_SELF)
            figures = run(stack.api_url, key, files, args.upload_concurrency)
            process_after = resource.getrusage(resource.RUSAGE_SELF)
            functions_after = stack.cpu_seconds_by_function()
        figures["warm_up_seconds"] = round(figures_warm_s, 1)
        figures["environments_ahead"] = sum(stack.environments_ahead.values())
        figures["cpu_ms_per_file"] = cpu_ms_per_file(
            len(files), process_before, process_after, functions_before, functions_after
        )
    figures["direct_loop_seconds"] = round(direct, 2)
    figures["end_to_end_over_direct"] = round(figures["end_to_end_seconds"] / direct, 1)
    figures["total_megabytes"] = round(sum(len(c) for _, c, _ in files) / 1e6, 2)

    mb = figures["total_megabytes"]
    print(f"files                      {figures['files']} in {figures['batches']} batch(es), {mb} MB")
    print(f"outcome                    {figures['statuses']}")
    if "warm_up_seconds" in figures:
        ahead, warm_s = figures["environments_ahead"], figures["warm_up_seconds"]
        print(f"warm-up before the run     {ahead} environments, {warm_s} s")
    print(f"uploads done after         {figures['upload_seconds']} s")
    print(f"upload events recorded     {figures['upload_events_per_second']} events/s")
    print(f"  last recorded after PUTs {figures['last_recorded_after_last_put_seconds']} s")
    print(f"processing phase           {figures['processing_files_per_second']} files/s")
    print(f"end to end                 {figures['end_to_end_seconds']} s")
    print(f"throughput                 {figures['files_per_second']} files/s")
    print(f"latency upload→result p50  {figures['latency_p50_seconds']} s")
    print(f"latency upload→result p95  {figures['latency_p95_seconds']} s")
    print(f"direct loop (same work)    {figures['direct_loop_seconds']} s")
    print(f"end-to-end / direct        {figures['end_to_end_over_direct']}x")
    for component, ms in (figures.get("cpu_ms_per_file") or {}).items():
        print(f"CPU ms/file {component:<40} {ms}")
    return save_figures(f"e2e-{args.files}", figures, figures)


if __name__ == "__main__":
    sys.exit(main())
