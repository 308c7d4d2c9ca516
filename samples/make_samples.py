"""Rebuild the demo sample files from the matplotlib and scikit-image wheels, offline.

    pip download --no-deps -d /tmp/dl matplotlib==3.11.2 scikit-image==0.26.0
    python samples/make_samples.py /tmp/dl

Only public-domain / CC0 pictures are taken (see README.md for each one's licence). The photographs
are copied byte for byte, so their EXIF and other metadata stay as published; one is converted to
WebP and named "-converted" to say so. The PDF and the CSV are written by this script. The output is
deterministic for a given Pillow (libwebp) version. Neither package becomes a project dependency:
the wheels are read as zip files.
"""

from __future__ import annotations

import csv
import hashlib
import io
import sys
import zipfile
from pathlib import Path

from PIL import Image

SAMPLES = Path(__file__).resolve().parent

# Output name → (wheel name prefix, path inside the wheel). Copied unchanged.
COPIED: dict[str, tuple[str, str]] = {
    "grace-hopper.jpg": ("matplotlib-", "matplotlib/mpl-data/sample_data/grace_hopper.jpg"),
    "falcon9-dscovr-launch.jpg": ("scikit_image-", "skimage/data/rocket.jpg"),
    "hubble-extreme-deep-field.jpg": ("scikit_image-", "skimage/data/hubble_deep_field.jpg"),
    "astronaut-eileen-collins.png": ("scikit_image-", "skimage/data/astronaut.png"),
    "horse-silhouette.png": ("scikit_image-", "skimage/data/horse.png"),
}
# Output name → (wheel name prefix, path inside the wheel). Re-encoded as lossy WebP.
CONVERTED_TO_WEBP: dict[str, tuple[str, str]] = {
    "chelsea-the-cat-converted.webp": ("scikit_image-", "skimage/data/chelsea.png"),
}
WEBP_QUALITY = 80

PDF_NAME = "filebatch-overview.pdf"
INVENTORY_NAME = "sample-inventory.csv"

PDF_TITLE = "filebatch - serverless batch file processing"
PDF_AUTHOR = "The filebatch project"
PDF_PAGES: tuple[tuple[str, ...], ...] = (
    (
        "filebatch: an overview",
        "",
        "filebatch processes batches of files on AWS without servers to manage.",
        "A client creates a batch by listing its files: a name, a size and a content",
        "type for each. The API answers with one presigned upload URL per file, and",
        "the client sends the bytes straight to S3.",
        "",
        "Once the files are uploaded, a Step Functions state machine takes over",
        "the batch. A Distributed Map reads the batch manifest from S3 and runs one",
        "child workflow per file, so a batch of a thousand files never has to fit",
        "in a single execution's state.",
        "",
        "Each file goes through two steps. The process step checks the stored size",
        "against the declared one, computes a SHA-256 digest, detects the real type",
        "from the first bytes, and reads cheap metadata such as image dimensions",
        "or a PDF's page count.",
    ),
    (
        "Describing files",
        "",
        "The describe step asks a description provider for a sentence about the",
        "file and a set of attributes that programs can use. The default provider",
        "is local: it runs offline, is deterministic, and only reports what it can",
        "measure, such as dimensions, dominant colours, EXIF fields, page counts",
        "and the first words of a text.",
        "",
        "Failures are sorted in two kinds. A retryable failure, like throttling, is",
        "retried by the state machine with exponential backoff and jitter. A",
        "permanent one, like a corrupt file, is recorded against that file alone,",
        "and the rest of the batch carries on.",
        "",
        "When every file has finished, the batch is marked completed, completed",
        "with errors, or failed, and its results can be listed file by file.",
    ),
)


def main(download_dir: Path) -> None:
    wheels = {
        prefix: _wheel(download_dir, prefix) for prefix, _ in (*COPIED.values(), *CONVERTED_TO_WEBP.values())
    }
    rows: list[list[str | int]] = []
    for name, (prefix, member) in COPIED.items():
        data = wheels[prefix].read(member)
        (SAMPLES / name).write_bytes(data)
        rows.append(_row(name, data, _source(wheels[prefix], member), "copied unchanged"))
    for name, (prefix, member) in CONVERTED_TO_WEBP.items():
        with Image.open(io.BytesIO(wheels[prefix].read(member))) as image:
            buffer = io.BytesIO()
            image.save(buffer, "WEBP", quality=WEBP_QUALITY, method=6)
        data = buffer.getvalue()
        (SAMPLES / name).write_bytes(data)
        derivation = f"converted from PNG to WebP, quality {WEBP_QUALITY}"
        rows.append(_row(name, data, _source(wheels[prefix], member), derivation))
    pdf = build_pdf(PDF_PAGES, title=PDF_TITLE, author=PDF_AUTHOR)
    (SAMPLES / PDF_NAME).write_bytes(pdf)
    rows.append(_row(PDF_NAME, pdf, "samples/make_samples.py", "hand-written PDF objects, Helvetica text"))
    with (SAMPLES / INVENTORY_NAME).open("w", newline="", encoding="utf-8") as inventory:
        writer = csv.writer(inventory, lineterminator="\n")
        writer.writerow(["file", "bytes", "sha256", "width", "height", "source", "derivation"])
        writer.writerows(rows)
    for row in rows:
        print(f"{row[0]:36} {row[1]:>9,} bytes")


def build_pdf(pages: tuple[tuple[str, ...], ...], *, title: str, author: str) -> bytes:
    """A minimal, valid PDF 1.4: A4 pages of Helvetica text (the first line of each page as a heading)
    and an Info dictionary. The cross-reference table is computed, so any text can go in."""
    font_id = 3
    info_id = 4
    first_page_id = 5
    page_ids = [first_page_id + 2 * index for index in range(len(pages))]
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (b" ".join(b"%d 0 R" % page_id for page_id in page_ids), len(pages)),
        font_id: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        info_id: b"<< /Title (%s) /Author (%s) /Producer (filebatch samples/make_samples.py) >>"
        % (_pdf_string(title), _pdf_string(author)),
    }
    for page_id, lines in zip(page_ids, pages, strict=True):
        heading, *body = lines
        stream = b"BT /F1 18 Tf 72 770 Td (%s) Tj /F1 11 Tf 0 -30 Td 15 TL\n" % _pdf_string(heading)
        stream += b"".join(b"(%s) Tj T*\n" % _pdf_string(line) for line in body)
        stream += b"ET"
        objects[page_id] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
            b"/Resources << /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>" % (font_id, page_id + 1)
        )
        objects[page_id + 1] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for object_id in sorted(objects):
        offsets[object_id] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (object_id, objects[object_id])
    xref_offset = len(out)
    size = max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    out += b"".join(b"%010d 00000 n \n" % offsets[object_id] for object_id in range(1, size))
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        size,
        info_id,
        xref_offset,
    )
    return bytes(out)


def _pdf_string(text: str) -> bytes:
    return text.encode("cp1252").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def _wheel(download_dir: Path, prefix: str) -> zipfile.ZipFile:
    found = sorted(download_dir.glob(f"{prefix}*.whl"))
    if not found:
        sys.exit(f"no {prefix}*.whl in {download_dir}: run the pip download line in this file's docstring")
    return zipfile.ZipFile(found[-1])


def _source(wheel: zipfile.ZipFile, member: str) -> str:
    # "scikit_image-0.26.0-cp311-...whl" → "scikit_image 0.26.0": the platform tags do not matter.
    distribution, version = Path(wheel.filename or "").name.split("-")[:2]
    return f"{distribution} {version} wheel: {member}"


def _row(name: str, data: bytes, source: str, derivation: str) -> list[str | int]:
    width: str | int = ""
    height: str | int = ""
    if not name.endswith(".pdf"):
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    return [name, len(data), hashlib.sha256(data).hexdigest(), width, height, source, derivation]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python samples/make_samples.py DOWNLOAD_DIR (where the two wheels are)")
    main(Path(sys.argv[1]))
