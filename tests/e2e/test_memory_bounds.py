"""Memory is bounded by the functions' MemorySize, not by the file: a ~100 MiB text file and a 1 GiB
mostly-zero binary file go through the real path (create, presigned PUT, S3 event, state machine,
process and describe workers), and each step's Max Memory Used (its environment's peak RSS, as
Lambda's REPORT line gives it) stays under its function's MemorySize. So do the largest image the
describe step decodes (100 MP) and a 12 MP photo, with text recognition where it is installed.

A stack of its own: the environments' peaks are then about these files, and MaxFileBytes can allow
a 1 GiB declaration."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import Stack, started_stack

pytestmark = [pytest.mark.e2e, pytest.mark.own_stack]

MIB = 1024 * 1024
TEXT_BYTES = 100 * MIB
BINARY_BYTES = 1024 * MIB


@pytest.fixture(scope="module")
def big_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # One PUT per file (multipart uploads have their own e2e test, test_multipart_uploads.py): what
    # is measured here is the workflow's memory, which does not depend on how the bytes arrived.
    overrides = {"MaxFileBytes": str(2 * BINARY_BYTES), "MultipartThresholdBytes": str(2 * BINARY_BYTES)}
    with started_stack(tmp_path_factory.mktemp("big-stack"), overrides, "big") as stack:
        yield stack


def write_text_file(path: Path, size: int) -> tuple[str, int]:
    """Deterministic lines of words, exactly `size` bytes; returns their SHA-256 and line count."""
    line = b"the quick brown fox jumps over the lazy dog, again and again\n"
    block = line * (MIB // len(line))
    digest = hashlib.sha256()
    lines = 0
    with path.open("wb") as file:
        written = 0
        while written < size:
            piece = block[: size - written]
            file.write(piece)
            digest.update(piece)
            written += len(piece)
            lines += piece.count(b"\n")
    # The last line is cut short of its line break, and still counts.
    return digest.hexdigest(), lines + (0 if piece.endswith(b"\n") else 1)


def write_sparse_binary_file(path: Path, size: int) -> str:
    """Mostly zeros, with a random 64 KiB block every 64 MiB; returns the SHA-256."""
    zeros = bytes(MIB)
    digest = hashlib.sha256()
    with path.open("wb") as file:
        for mib in range(size // MIB):
            piece = os.urandom(64 * 1024) + zeros[64 * 1024 :] if mib % 64 == 0 else zeros
            file.write(piece)
            digest.update(piece)
    return digest.hexdigest()


def test_a_100_mib_text_file_and_a_1_gib_file_stay_within_each_functions_memory(
    big_stack: Stack, tmp_path: Path
) -> None:
    # Given a ~100 MiB text file and a 1 GiB binary file on disk
    text_path, binary_path = tmp_path / "big.txt", tmp_path / "big.bin"
    text_sha256, text_lines = write_text_file(text_path, TEXT_BYTES)
    expected = {"big.txt": text_sha256, "big.bin": write_sparse_binary_file(binary_path, BINARY_BYTES)}
    files = [("big.txt", text_path, "text/plain"), ("big.bin", binary_path, "application/octet-stream")]
    response = big_stack.post_batch(
        [{"filename": name, "size": path.stat().st_size, "content_type": kind} for name, path, kind in files]
    )
    assert response.status_code == 201, response.text
    created = response.json()
    # When each is uploaded, streamed from disk, through its presigned URL, and the batch is processed
    for (_, path, _), file in zip(files, created["files"], strict=True):
        upload = file["upload"]
        with path.open("rb") as body:
            put = requests.put(upload["url"], data=body, headers=upload["headers"], timeout=600)
        assert put.status_code == 200, put.text
    status = big_stack.wait_terminal(created["batch_id"], timeout=900)
    # Then both files completed with their true size and hash
    assert status["status"] == "completed", status
    results = {r["filename"]: r for r in big_stack.results(created["batch_id"])}
    for name, path, _ in files:
        assert results[name]["status"] == "completed", results[name]
        assert results[name]["size_bytes"] == path.stat().st_size
        assert results[name]["sha256"] == expected[name]
    assert results["big.txt"]["description"]["attributes"]["line_count"] == text_lines
    # And no process or describe environment went over its function's memory
    template = big_stack.local.template
    for function in ("ProcessFileFunction", "DescribeFileFunction"):
        peak = big_stack.local.peak_memory_used_mb(function)
        memory_size = template.function(function).memory_mb
        print(f"{function}: Max Memory Used {peak} MB of {memory_size} MB")
        assert 0 < peak < memory_size, f"{function} peaked at {peak} MB, over its {memory_size} MB"


def write_text_image(path: Path, size: tuple[int, int], image_format: str) -> None:
    """A light image of `size` with two lines of large dark text near its top left."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", size, (240, 240, 235))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=size[0] // 25)
    draw.text((size[0] // 20, size[1] // 10), "INVENTORY 2025", fill="black", font=font)
    draw.text((size[0] // 20, size[1] // 5), "TOTAL 9,120", fill="black", font=font)
    # Fast PNG compression: the test is about decoding, and the pixels are mostly one colour anyway.
    image.save(path, image_format, **({"compress_level": 1} if image_format == "PNG" else {"quality": 90}))


def test_the_largest_image_allowed_and_a_photo_are_described_within_the_functions_memory(
    big_stack: Stack, tmp_path: Path
) -> None:
    # Given a 12 MP JPEG and a 100 MP PNG (MAX_IMAGE_PIXELS, the largest the describe step decodes),
    # each with two lines of text
    from filebatch.media.inspect import MAX_IMAGE_PIXELS
    from filebatch.media.ocr import OCR_MAX_PIXELS

    side = int(MAX_IMAGE_PIXELS**0.5)
    files = [
        ("photo.jpg", (4032, 3024), "JPEG", "image/jpeg"),
        ("huge.png", (side, side), "PNG", "image/png"),
    ]
    for name, size, image_format, _ in files:
        write_text_image(tmp_path / name, size, image_format)
    response = big_stack.post_batch(
        [
            {"filename": name, "size": (tmp_path / name).stat().st_size, "content_type": kind}
            for name, _, _, kind in files
        ]
    )
    assert response.status_code == 201, response.text
    created = response.json()
    # When both are uploaded through their presigned URLs and the batch is processed (the photo first,
    # so that an environment may describe the huge image after OCR has run in it)
    for (name, _, _, _), file in zip(files, created["files"], strict=True):
        upload = file["upload"]
        put = requests.put(
            upload["url"], data=(tmp_path / name).read_bytes(), headers=upload["headers"], timeout=120
        )
        assert put.status_code == 200, put.text
    status = big_stack.wait_terminal(created["batch_id"], timeout=600)
    # Then both are described, with the text read where text recognition is installed
    assert status["status"] == "completed", status
    results = {r["filename"]: r for r in big_stack.results(created["batch_id"])}
    for name, size, _, _ in files:
        attributes = results[name]["description"]["attributes"]
        assert (attributes["width"], attributes["height"]) == size
        if attributes["ocr"] != "unavailable":
            assert attributes["ocr_input"]["width"] * attributes["ocr_input"]["height"] <= OCR_MAX_PIXELS
            assert "9,120" in attributes["text_in_image"], attributes["text_in_image"]
    # And no describe environment went over the function's memory
    peak = big_stack.local.peak_memory_used_mb("DescribeFileFunction")
    memory_size = big_stack.local.template.function("DescribeFileFunction").memory_mb
    print(f"DescribeFileFunction: Max Memory Used {peak} MB of {memory_size} MB")
    assert 0 < peak < memory_size, f"DescribeFileFunction peaked at {peak} MB, over its {memory_size} MB"
