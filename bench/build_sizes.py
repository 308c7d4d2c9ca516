"""Sizes of what `sam build` produced, against Lambda's package limits.

    .venv/bin/python bench/build_sizes.py [--build-dir .aws-sam/build] [--with-ocr]

`make sizes` runs `sam build` first (as `make build` does: no Docker, arm64 wheels) and then this. For
the layer and each function directory under .aws-sam/build it prints the files, the bytes unzipped, and
the bytes of a deflate zip of it (how `sam deploy` packages it: an estimate of the upload), then each
function's unzipped total with its layers against Lambda's 250 MB limit for function and layers
together, and its own zip against the 50 MB direct-upload limit.

--with-ocr also measures what the layer would grow by with the local provider's text recognition
(rapidocr-onnxruntime 1.4.4 and its dependencies), for the layer's own runtime and architecture: the
wheels are installed with pip into a temporary directory, once with the opencv-python that
rapidocr-onnxruntime asks for and once with opencv-python-headless instead. It downloads ~150 MB of
wheels (pip's cache keeps them) and says first whether pip can install rapidocr-onnxruntime for that
Python at all, as `sam build` would have to.

Limits: https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html ("250 MB" unzipped,
function and all layers; "50 MB" zipped for a direct upload). Lambda's own error for the first counts
bytes: "Unzipped size must be smaller than 262144000 bytes", i.e. 250 x 2**20: MB here is 2**20 bytes.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "local"))

from filebatch_local.template import load_template  # noqa: E402 - needs the path above

UNZIPPED_LIMIT = 250 * 2**20  # 262,144,000 bytes: function + all its layers
ZIPPED_DIRECT_UPLOAD_LIMIT = 50 * 2**20
OCR_DISTRIBUTION = "rapidocr-onnxruntime==1.4.4"
# rapidocr-onnxruntime 1.4.4's Requires-Dist, without Pillow and six (the layer has both already).
OCR_DEPENDENCIES = (
    "pyclipper>=1.2.0",
    "numpy>=1.19.5,<3",
    "Shapely>=1.7.1,!=2.0.4",
    "PyYAML",
    "onnxruntime>=1.7.0",
)
OCR_TRAILING = ("tqdm",)
OPENCV_VARIANTS = {
    "opencv-python (as required)": "opencv-python>=4.5.1.48",
    "opencv-python-headless": "opencv-python-headless>=4.5.1.48",
}
# pip platform tags for a Lambda architecture (Amazon Linux 2023: glibc 2.34).
PLATFORMS = {
    "arm64": ("manylinux2014_aarch64", "manylinux_2_28_aarch64", "manylinux_2_34_aarch64"),
    "x86_64": ("manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64"),
}


@dataclass(frozen=True)
class Measured:
    files: int
    unzipped: int
    zipped: int


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=ROOT / ".aws-sam" / "build")
    parser.add_argument(
        "--with-ocr", action="store_true", help="also measure the layer with rapidocr-onnxruntime"
    )
    args = parser.parse_args(argv)
    template_path = args.build_dir / "template.yaml"
    if not template_path.exists():
        print(f"No sam build output in {args.build_dir}: run `make sizes` (or `make build` first).")
        return 1
    template = load_template(template_path)
    resources: dict[str, Any] = template.get("Resources", {})
    layers = {name: r for name, r in resources.items() if r.get("Type") == "AWS::Serverless::LayerVersion"}
    functions = {name: r for name, r in resources.items() if r.get("Type") == "AWS::Serverless::Function"}
    global_layers = template.get("Globals", {}).get("Function", {}).get("Layers", [])

    sizes = {name: measure(args.build_dir / name) for name in [*sorted(layers), *sorted(functions)]}
    runtime, architecture = _layer_build_target(next(iter(layers.values()))) if layers else ("?", "?")
    print(f"sam build output in {_relative(args.build_dir)} ({runtime}, {architecture})\n")
    print("| artifact | files | unzipped | zipped (deflate) | + layers, unzipped | of the 250 MB limit |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in sorted(layers):
        size = sizes[name]
        print(f"| {name} (layer) | {size.files:,} | {_bytes(size.unzipped)} | {_bytes(size.zipped)} | | |")
    worst = 0
    for name in sorted(functions):
        size = sizes[name]
        used = [_ref(layer) for layer in functions[name].get("Properties", {}).get("Layers", global_layers)]
        total = size.unzipped + sum(sizes[layer].unzipped for layer in used if layer in sizes)
        worst = max(worst, total)
        share = f"{100 * total / UNZIPPED_LIMIT:.0f} %"
        print(
            f"| {name} | {size.files:,} | {_bytes(size.unzipped)} | {_bytes(size.zipped)} | "
            f"{_bytes(total)} | {share} |"
        )
    biggest_zip = max((sizes[name].zipped for name in functions), default=0)
    print(
        f"\nLargest function + layers: {_bytes(worst)} of {_bytes(UNZIPPED_LIMIT)} unzipped "
        f"(room: {_bytes(UNZIPPED_LIMIT - worst)}); largest function zip {_bytes(biggest_zip)} "
        f"of {_bytes(ZIPPED_DIRECT_UPLOAD_LIMIT)} for a direct upload."
    )
    if args.with_ocr and layers:
        layer_name = sorted(layers)[0]
        return report_ocr(sizes[layer_name], layer_name, runtime, architecture, worst)
    return 0


def measure(directory: Path) -> Measured:
    """Files and bytes under `directory`, and the length of a deflate zip of them (level 6, as zipfile's
    default that SAM's packaging uses), computed without writing the zip anywhere."""
    files = sorted(path for path in directory.rglob("*") if path.is_file() and not path.is_symlink())
    sink = _CountingSink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:  # type: ignore[arg-type]
        for path in files:
            archive.write(path, path.relative_to(directory).as_posix())
    return Measured(len(files), sum(path.stat().st_size for path in files), sink.count)


def report_ocr(layer: Measured, layer_name: str, runtime: str, architecture: str, worst: int) -> int:
    python_version = runtime.removeprefix("python")
    print(f"\nText recognition in the layer ({OCR_DISTRIBUTION}, {runtime}, {architecture}):")
    with tempfile.TemporaryDirectory() as scratch:
        check = _pip(["download", "--no-deps", "-d", scratch, OCR_DISTRIBUTION], python_version, architecture)
        if check.returncode == 0:
            print(f"- pip can install {OCR_DISTRIBUTION} for Python {python_version}.")
        else:
            version = OCR_DISTRIBUTION.split("==")[1]
            # pip lists every version it ignored and why; the pinned one's reason is the one that matters.
            declared = re.search(rf"(?:^|[ ;:]){re.escape(version)} (Requires-Python [^;\n]+)", check.stderr)
            errors = [line for line in check.stderr.splitlines() if line.startswith("ERROR: No matching")]
            reason = f"{version} declares {declared[1]}" if declared else "; ".join(errors) or "(no message)"
            print(
                f"- pip cannot install {OCR_DISTRIBUTION} for Python {python_version}, so neither can "
                f"`sam build`: {reason}."
            )
            print("  Measured anyway with --ignore-requires-python, for the size alone:")
    print(
        "\n| layer variant | unzipped | zipped (deflate) | largest function + layers | of the 250 MB limit |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    print(
        f"| {layer_name} as built | {_bytes(layer.unzipped)} | {_bytes(layer.zipped)} | {_bytes(worst)} | "
        f"{100 * worst / UNZIPPED_LIMIT:.0f} % |"
    )
    functions_alone = worst - layer.unzipped
    for label, opencv in OPENCV_VARIANTS.items():
        with tempfile.TemporaryDirectory() as target:
            extra = _install_ocr(Path(target), opencv, python_version, architecture)
            if extra is None:
                print(f"| + OCR with {label} | (pip failed) | | | |")
                continue
            unzipped = layer.unzipped + extra.unzipped
            total = unzipped + functions_alone
            share = f"{100 * total / UNZIPPED_LIMIT:.0f} %"
            print(
                f"| + OCR with {label} (+{_bytes(extra.unzipped)}) | {_bytes(unzipped)} | "
                f"{_bytes(layer.zipped + extra.zipped)} | {_bytes(total)} | {share} |"
            )
    return 0


def _install_ocr(target: Path, opencv: str, python_version: str, architecture: str) -> Measured | None:
    steps = (
        ["install", "--no-deps", "--ignore-requires-python", OCR_DISTRIBUTION],
        # Its dependencies with theirs (onnxruntime's protobuf and flatbuffers...).
        ["install", opencv, *OCR_DEPENDENCIES, *OCR_TRAILING],
    )
    for step in steps:
        result = _pip(
            [*step, "--target", str(target), "--no-compile", "--upgrade"], python_version, architecture
        )
        if result.returncode != 0:
            print(result.stderr[-2000:], file=sys.stderr)
            return None
    # pip's console scripts are not part of a layer's python/ directory.
    bin_dir = target / "bin"
    for path in sorted(bin_dir.rglob("*"), reverse=True) if bin_dir.exists() else []:
        path.unlink() if path.is_file() else path.rmdir()
    if bin_dir.exists():
        bin_dir.rmdir()
    return measure(target)


def _pip(arguments: list[str], python_version: str, architecture: str) -> subprocess.CompletedProcess[str]:
    platforms = [flag for tag in PLATFORMS.get(architecture, ()) for flag in ("--platform", tag)]
    command = [
        sys.executable,
        "-m",
        "pip",
        *arguments,
        "--quiet",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        *platforms,
    ]
    return subprocess.run(command, capture_output=True, text=True, check=False, env={**os.environ})


def _layer_build_target(layer: dict[str, Any]) -> tuple[str, str]:
    metadata = layer.get("Metadata", {})
    method = str(metadata.get("BuildMethod", "?"))
    # A makefile build (the shared layer's) names no runtime: the layer's first compatible one.
    runtimes = layer.get("Properties", {}).get("CompatibleRuntimes") or [method]
    runtime = method if method.startswith("python") else str(runtimes[0])
    return runtime, str(metadata.get("BuildArchitecture", "x86_64"))


def _ref(value: Any) -> str:
    return str(value.get("Ref")) if isinstance(value, dict) else str(value)


def _bytes(count: int) -> str:
    """Exact bytes, and MB as Lambda's limits count them (2**20 bytes)."""
    return f"{count:,} B ({count / 2**20:,.1f} MB)" if count >= 2**20 else f"{count:,} B"


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


class _CountingSink:
    """A write-only file that only counts: zipfile writes to it as to an unseekable stream."""

    def __init__(self) -> None:
        self.count = 0

    def write(self, data: bytes) -> int:
        self.count += len(data)
        return len(data)

    def tell(self) -> int:
        return self.count

    def seek(self, *args: object) -> int:
        raise OSError("not seekable")

    def flush(self) -> None:
        pass


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
