"""Content type detection from magic bytes, and whether a declared type is honest."""

from __future__ import annotations

import gzip
import io
import zipfile

import pytest
from PIL import Image
from pypdf import PdfWriter

from filebatch.media.detect import detect_content_type, is_compatible, normalize_content_type


def _image(image_format: str, mode: str = "RGB", size: tuple[int, int] = (6, 4), **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, "red" if mode != "L" else 128).save(buffer, image_format, **options)
    return buffer.getvalue()


def _pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=300)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "hello")
    return buffer.getvalue()


def _empty_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w"):
        pass
    return buffer.getvalue()


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    """The start of an ISO-BMFF file (HEIF, AVIF): an ftyp box, then some other box."""
    body = b"ftyp" + major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return (4 + len(body)).to_bytes(4, "big") + body + b"\x00\x00\x00\x08meta"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(_image("JPEG"), "image/jpeg", id="jpeg"),
        pytest.param(_image("PNG"), "image/png", id="png"),
        pytest.param(_image("PNG", "RGBA"), "image/png", id="png-rgba"),
        pytest.param(_image("GIF"), "image/gif", id="gif89a"),
        pytest.param(b"GIF87a" + _image("GIF")[6:], "image/gif", id="gif87a"),
        pytest.param(_image("WEBP"), "image/webp", id="webp"),
        pytest.param(_image("TIFF"), "image/tiff", id="tiff-little-endian"),
        pytest.param(b"MM\x00*\x00\x00\x00\x08" + b"\x00" * 16, "image/tiff", id="tiff-big-endian"),
        pytest.param(_image("BMP"), "image/bmp", id="bmp"),
        pytest.param(_image("BMP", "L"), "image/bmp", id="bmp-greyscale"),
        pytest.param(_ftyp(b"heic", b"mif1", b"heic"), "image/heic", id="heic"),
        pytest.param(_ftyp(b"heix", b"mif1"), "image/heic", id="heix"),
        pytest.param(_ftyp(b"mif1", b"mif1", b"heic"), "image/heic", id="heif-mif1"),
        pytest.param(_ftyp(b"avif", b"mif1", b"avif"), "image/avif", id="avif"),
        pytest.param(_ftyp(b"mif1", b"mif1", b"avif"), "image/avif", id="avif-with-mif1-major-brand"),
        pytest.param(_pdf(), "application/pdf", id="pdf"),
        pytest.param(_zip(), "application/zip", id="zip"),
        pytest.param(_empty_zip(), "application/zip", id="zip-empty"),
        pytest.param(gzip.compress(b"hello", mtime=0), "application/gzip", id="gzip"),
        pytest.param(b"hello world\n", "text/plain", id="text-ascii"),
        pytest.param("naïve café ✓ 日本\n".encode(), "text/plain", id="text-utf8-multibyte"),
        pytest.param(b"\xef\xbb\xbfname,age\r\nAda,36\r\n", "text/plain", id="text-utf8-bom-crlf"),
        pytest.param(b"a\tb\x0cc\rd\n", "text/plain", id="text-tab-formfeed-cr"),
        pytest.param(b"BMW,Audi\n", "text/plain", id="text-starting-with-BM"),
        pytest.param(b"", "application/x-empty", id="empty"),
        pytest.param(b"hello\x00world", "application/octet-stream", id="nul-byte"),
        pytest.param(b"\x1b[31mred\x1b[0m", "application/octet-stream", id="escape-control"),
        pytest.param(b"vertical\x0btab", "application/octet-stream", id="vertical-tab-control"),
        pytest.param("café".encode("latin-1"), "application/octet-stream", id="latin1-not-utf8"),
        pytest.param(bytes(range(256)), "application/octet-stream", id="binary"),
        pytest.param(b"RIFF\x24\x00\x00\x00WAVEfmt ", "application/octet-stream", id="riff-wave-not-webp"),
        pytest.param(b"\x1f\x8b", "application/octet-stream", id="gzip-magic-without-method"),
    ],
)
def test_detects_type_from_magic_bytes(content: bytes, expected: str) -> None:
    # Given bytes of a known format (made in memory by the real encoder where there is one)
    # When the type is detected
    detected = detect_content_type(content)
    # Then it is the format's MIME type
    assert detected == expected


def test_detection_ignores_what_the_bytes_are_called() -> None:
    # Given a PNG whose bytes would be uploaded under a misleading name such as "photo.jpg"
    png = _image("PNG")
    # When it is detected (the function takes bytes only: a name cannot influence it)
    detected = detect_content_type(png)
    # Then it is a PNG
    assert detected == "image/png"


@pytest.mark.parametrize(
    ("declared", "detected", "compatible"),
    [
        ("image/jpeg", "image/jpeg", True),
        ("IMAGE/JPEG", "image/jpeg", True),
        ("image/jpg", "image/jpeg", True),
        ("image/pjpeg", "image/jpeg", True),
        ("image/x-png", "image/png", True),
        ("image/heif", "image/heic", True),
        ("image/heic", "image/heic", True),
        ("image/tif", "image/tiff", True),
        ("image/x-ms-bmp", "image/bmp", True),
        ("application/x-pdf", "application/pdf", True),
        ("application/x-zip-compressed", "application/zip", True),
        ("application/x-gzip", "application/gzip", True),
        ("application/octet-stream", "image/png", True),
        ("application/octet-stream", "application/octet-stream", True),
        ("application/octet-stream", "application/x-empty", True),
        ("text/plain", "text/plain", True),
        ("text/plain; charset=utf-8", "text/plain", True),
        ("text/csv", "text/plain", True),
        ("text/markdown", "text/plain", True),
        ("application/json", "text/plain", True),
        ("application/ld+json", "text/plain", True),
        ("image/svg+xml", "text/plain", True),
        ("text/csv", "application/x-empty", True),
        ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "application/zip", True),
        ("application/epub+zip", "application/zip", True),
        ("image/png", "image/jpeg", False),
        ("image/jpeg", "image/png", False),
        ("image/heic", "image/avif", False),
        ("image/png", "text/plain", False),
        ("application/pdf", "text/plain", False),
        ("text/plain", "image/png", False),
        ("text/csv", "application/octet-stream", False),
        ("application/json", "application/zip", False),
        ("image/png", "application/x-empty", False),
        ("application/pdf", "application/zip", False),
        ("video/mp4", "application/octet-stream", False),
        ("application/zip", "application/gzip", False),
    ],
)
def test_compatibility_matrix(declared: str, detected: str, compatible: bool) -> None:
    # Given what the client declared and what the bytes are
    # When their compatibility is judged
    result = is_compatible(declared, detected)
    # Then an honest declaration passes and a dishonest one does not
    assert result is compatible


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ("Image/JPG; quality=high", "image/jpeg"),
        (" text/CSV ;charset=UTF-8", "text/csv"),
        ("image/x-png", "image/png"),
        ("application/pdf", "application/pdf"),
    ],
)
def test_normalize_content_type_drops_parameters_and_resolves_aliases(declared: str, expected: str) -> None:
    # Given a declared content type with odd case, parameters or an alias
    # When it is normalised
    normalised = normalize_content_type(declared)
    # Then only the canonical essence remains
    assert normalised == expected


def test_every_detected_type_is_compatible_with_itself_and_with_octet_stream() -> None:
    # Given one real sample of each format the detector knows
    samples = [_image(fmt) for fmt in ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP")]
    samples += [_pdf(), _zip(), gzip.compress(b"x", mtime=0), b"text\n", b"", b"\x00\x01"]
    for content in samples:
        # When its detected type is declared back, or "application/octet-stream" is declared
        detected = detect_content_type(content)
        # Then both declarations are honest
        assert is_compatible(detected, detected), detected
        assert is_compatible("application/octet-stream", detected), detected
