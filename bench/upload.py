"""Upload benchmark: MB/s of one 1 GiB file sent in parts (N at a time) against one PUT, in one run.

    .venv/bin/python bench/upload.py [--size-mib 1024] [--parts 1,4,8]

Starts its own local stack from template.yaml with MaxFileBytes raised (2 GiB) and
MultipartThresholdBytes lowered (512 MiB) by parameter overrides, writes a file of --size-mib MiB
(random blocks every 16 MiB, zeros between) and times:

- one PUT: the whole file streamed to a presigned PUT signed as the API signs one
  (S3ObjectStorage.presign_put), under uploads/ but outside any batch (its upload event is ignored);
- multipart, for each N of --parts: a batch declaring the file (a MULTIPART instruction, from the
  API), then the SDK's upload with N parts in flight at a time (the parts route, each part streamed
  from its byte range, then POST .../complete), timed from the first part request to the complete's
  answer. The batch is then processed to its end before the next run, so that processing does not
  share the CPU with the next upload.

Prints MB/s (10^6 bytes per second) for each; figures also go to bench/out/upload.json. They say
what the local emulation (moto's S3 in one Python process, on this machine's cores) sustains, not
what S3 does: there, parallel parts also spread over connections and S3's front ends.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


def write_file(path: Path, size: int) -> None:
    with path.open("wb") as file:
        zeros = bytes(MIB)
        for mib in range(size // MIB):
            file.write(os.urandom(MIB) if mib % 16 == 0 else zeros)


def put_once(stack: Any, path: Path) -> float:
    """Seconds for one presigned PUT of the whole file (streamed from disk)."""
    from filebatch.adapters.s3 import S3ObjectStorage

    storage = S3ObjectStorage(stack.physical_ids["UploadBucket"], stack.client("s3"))
    size = path.stat().st_size
    url, headers = storage.presign_put(
        "uploads/bench/single-put", content_type="application/octet-stream", size=size, expires_in=3600
    )
    started = time.perf_counter()
    with path.open("rb") as body:
        response = requests.put(url, data=body, headers=headers, timeout=3600)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed


def multipart_once(stack: Any, key: str, path: Path, parts: int) -> tuple[float, int]:
    """Seconds for the SDK's multipart upload of the file with `parts` parts in flight; the part count."""
    from filebatch_sdk import FilebatchClient, FileSpec, MultipartInstruction

    with FilebatchClient(stack.api_url, key, timeout=600) as client:
        spec = FileSpec(filename=path.name, size=path.stat().st_size, content_type="application/octet-stream")
        created = client.create_batch([spec])
        instruction = created.files[0].upload
        assert isinstance(instruction, MultipartInstruction), instruction
        started = time.perf_counter()
        client.upload(created, [path], concurrency=1, part_concurrency=parts)
        elapsed = time.perf_counter() - started
        # Processed before the next run starts (its hashing would share the CPU with that upload).
        status = client.wait(created.batch_id, timeout=1800, poll_interval=1.0)
        assert status.status == "completed", status
    return elapsed, instruction.part_count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--parts", default="1,4,8", help="parts in flight at a time, one run each")
    args = parser.parse_args(argv)
    size = args.size_mib * MIB
    runs = [int(n) for n in args.parts.split(",") if n.strip()]

    from filebatch_local.stack import LocalStack

    state = ROOT / ".local" / "bench-upload"
    state.mkdir(parents=True, exist_ok=True)
    path = state / "bench-upload.bin"
    write_file(path, size)
    overrides = {"MaxFileBytes": str(2 * 1024 * MIB), "MultipartThresholdBytes": str(512 * MIB)}
    figures: dict[str, Any] = {"file_mib": args.size_mib, "runs": []}
    try:
        with LocalStack(ROOT, api_port=0, parameter_overrides=overrides, state_dir=state) as stack:
            key = stack.create_api_key("bench")
            seconds = put_once(stack, path)
            figures["runs"].append({"upload": "one PUT", "seconds": round(seconds, 2)})
            for parts in runs:
                seconds, count = multipart_once(stack, key, path, parts)
                figures["runs"].append(
                    {
                        "upload": f"multipart, {parts} parts at a time ({count} parts)",
                        "seconds": round(seconds, 2),
                    }
                )
    finally:
        path.unlink(missing_ok=True)
    for run in figures["runs"]:
        run["mb_per_second"] = round(size / 1e6 / run["seconds"], 1)
    print(f"one file of {args.size_mib} MiB ({size / 1e6:.0f} MB) to the local stack's S3")
    for run in figures["runs"]:
        print(f"  {run['upload']:<45} {run['seconds']:>7} s  {run['mb_per_second']:>7} MB/s")
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "upload.json").write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
