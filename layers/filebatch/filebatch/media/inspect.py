"""Cheap, verifiable facts about a file's bytes, for the process step (and the local provider).

Files are read as a stream of chunks, once: memory stays bounded by a chunk (plus what Pillow or pypdf
hold while parsing an image's header or a PDF's page tree), whatever the file's size.

Pillow and pypdf are imported inside the functions: a Lambda that never inspects media should not pay
for loading them at cold start.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

from filebatch.errors import FileRejectedError
from filebatch.media.detect import EMPTY, SIGNATURE_BYTES, TEXT, UNKNOWN, signature_type
from filebatch.media.text import TextScanner
from filebatch.models.domain import FileFacts

if TYPE_CHECKING:
    from PIL import Image
    from pypdf import PdfReader

# Above this many pixels an image is refused rather than decoded: 100 MP covers every camera in
# common use, and decoding it as RGB already takes ~300 MB of a Lambda's memory.
MAX_IMAGE_PIXELS = 100_000_000

# Detected type → Pillow format name. Only these are opened with Pillow; other image types (HEIC,
# AVIF) need codecs the layer does not ship, so they get no image facts rather than a false "corrupt".
PILLOW_FORMATS: dict[str, str] = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
    "image/tiff": "TIFF",
    "image/bmp": "BMP",
}

# EXIF orientations 5 to 8 rotate by 90° or 270°: the image is displayed with width and height swapped.
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_ORIENTATION_TAG = 0x0112

_PNG_SIGNATURE_LENGTH = 8
_MAX_EXIF_BYTES = 1024 * 1024

# Types whose parsers need to seek in the file: their bytes are kept (in a local temporary file, not in
# memory) while they stream past; every other type is inspected on the fly.
RANDOM_ACCESS_TYPES = frozenset({*PILLOW_FORMATS, "application/pdf"})


def inspect_stream(chunks: Iterable[bytes], spool: BinaryIO) -> FileFacts:
    """One pass over a file's bytes, in order: size, SHA-256, type from magic bytes (text from every
    byte), and a text's counts. Images and PDFs are written to `spool`, a seekable local file, as they
    pass, for `basic_metadata` to parse afterwards; nothing else is kept.
    """
    digest = hashlib.sha256()
    size = 0
    head = b""
    undecided: list[bytes] | None = []  # chunks seen before the first bytes decided the type
    signature: str | None = None
    scanner = TextScanner()

    def take(chunk: bytes) -> None:
        if signature in RANDOM_ACCESS_TYPES:
            spool.write(chunk)
        elif signature is None:
            scanner.feed(chunk)

    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        if undecided is None:
            take(chunk)
            continue
        head += chunk[: SIGNATURE_BYTES - len(head)]
        undecided.append(chunk)
        if len(head) >= SIGNATURE_BYTES:
            signature = signature_type(head)
            for held in undecided:
                take(held)
            undecided = None
    if undecided is not None:
        signature = signature_type(head) if head else None
        for held in undecided:
            take(held)
    statistics = scanner.finish() if signature is None else None
    detected = EMPTY if size == 0 else signature or (TEXT if statistics is not None else UNKNOWN)
    spool.seek(0)
    return FileFacts(
        size_bytes=size,
        sha256=digest.hexdigest(),
        detected_content_type=detected,
        metadata=statistics.as_metadata() if statistics is not None and detected == TEXT else {},
    )


def basic_metadata(file: BinaryIO, detected_content_type: str) -> dict[str, Any]:
    """JSON-serialisable facts about an image or a PDF, read from a seekable file (other types: {}).

    Raises FileRejectedError (code "corrupt_media") when the bytes claim a format they do not parse
    as, and (code "image_too_large") for images over MAX_IMAGE_PIXELS.
    """
    if detected_content_type in PILLOW_FORMATS:
        return _image_metadata(file)
    if detected_content_type == "application/pdf":
        return _pdf_metadata(file)
    return {}


@contextmanager
def open_image(file: BinaryIO) -> Iterator[Image.Image]:
    """Open a seekable image file with Pillow, refusing decompression bombs, and close it afterwards.

    Both Pillow's bomb warning and its error become FileRejectedError: a warning that a caller might
    filter away is no protection. Decoding errors raised inside the `with` block become
    FileRejectedError("corrupt_media") too, since only the bytes can cause them.
    """
    from PIL import Image

    # Pillow's limit is module state; setting it on each use keeps it ours even if other code changed it.
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(file) as image:
                yield image
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise FileRejectedError(
                f"image is larger than the {MAX_IMAGE_PIXELS:,}-pixel limit: {exc}", code="image_too_large"
            ) from exc
        except FileRejectedError:
            raise
        except Exception as exc:
            # Pillow's plugins raise OSError, SyntaxError, ValueError, struct.error, EOFError... on
            # malformed input; all of them mean the same thing here.
            raise FileRejectedError(
                f"the image cannot be read: {type(exc).__name__}: {exc}", code="corrupt_media"
            ) from exc


def read_exif(image: Image.Image, file: BinaryIO) -> Image.Exif:
    """The image's EXIF (plus an XMP orientation, which Pillow merges in) without decoding its pixels.

    Pillow's PNG plugin decodes the whole image to look for an eXIf chunk after the pixel data, so
    for PNG the chunks are walked here and the result handed to Pillow as if read at open.
    """
    if image.format == "PNG" and "exif" not in image.info:
        # An empty value still lets Pillow add the orientation an XMP packet may carry.
        image.info["exif"] = _png_chunk(file, b"eXIf") or b""
    return image.getexif()


def displayed_size(image: Image.Image, exif: Image.Exif) -> tuple[int, int]:
    """(width, height) as a viewer shows the image, i.e. after applying the EXIF orientation."""
    width, height = image.size
    if exif.get(_ORIENTATION_TAG) in _TRANSPOSING_ORIENTATIONS:
        return height, width
    return width, height


def frame_count(image: Image.Image) -> int:
    return int(getattr(image, "n_frames", 1))


def to_rgba(image: Image.Image) -> Image.Image:
    """Eight bits per channel, with alpha; 16-bit and float images are scaled, not clipped to white."""
    if image.mode.startswith("I;16"):
        image = image.convert("I").point(lambda value: value * (1 / 256))
    elif image.mode in ("I", "F"):
        highest = image.getextrema()[1]
        if isinstance(highest, (int, float)) and highest > 255:
            image = image.point(lambda value: value * (1 / 256))
        elif image.mode == "F" and isinstance(highest, (int, float)) and highest <= 1.0:
            image = image.point(lambda value: value * 255)
    if image.mode in ("I", "F"):
        image = image.convert("L")
    return image.convert("RGBA")


class OpenedPdf(NamedTuple):
    reader: PdfReader
    # False for an encrypted document whose password is not the empty one: its objects are unreadable.
    readable: bool


@contextmanager
def open_pdf(file: BinaryIO) -> Iterator[OpenedPdf]:
    """A pypdf reader over a seekable file; parse errors, here or in the `with` block, become corrupt_media.

    An encrypted document is decrypted with the empty user password when it has one (most "protected"
    PDFs only restrict printing or copying); otherwise it is reported as unreadable, not as corrupt.
    """
    from pypdf import PdfReader

    try:
        reader = PdfReader(file)
        yield OpenedPdf(reader, not reader.is_encrypted or _unlock_with_empty_password(reader))
    except FileRejectedError:
        raise
    except Exception as exc:
        # pypdf raises PdfReadError but also KeyError, ValueError, TypeError... on malformed files.
        raise FileRejectedError(
            f"the PDF cannot be read: {type(exc).__name__}: {exc}", code="corrupt_media"
        ) from exc


def pdf_title(reader: PdfReader) -> str | None:
    return clean_text(reader.metadata.title) if reader.metadata is not None else None


def clean_text(value: object, *, limit: int = 200) -> str | None:
    """A metadata string fit for a sentence: whitespace collapsed, control characters gone, bounded.

    Metadata is client-controlled text, so it is bounded and stripped of anything that could break a
    log line or a terminal; None when nothing printable is left.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in str(value)).split())
    if not text:
        return None
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _image_metadata(file: BinaryIO) -> dict[str, Any]:
    with open_image(file) as image:
        exif = read_exif(image, file)
        width, height = displayed_size(image, exif)
        return {
            "format": image.format,
            "width": width,
            "height": height,
            "mode": image.mode,
            "frames": frame_count(image),
            "has_exif": len(exif) > 0,
        }


def _pdf_metadata(file: BinaryIO) -> dict[str, Any]:
    with open_pdf(file) as pdf:
        facts: dict[str, Any] = {"encrypted": bool(pdf.reader.is_encrypted)}
        # An unreadable encrypted document hides even its page tree; None says "not known".
        facts["page_count"] = len(pdf.reader.pages) if pdf.readable else None
        title = pdf_title(pdf.reader) if pdf.readable else None
        if title:
            facts["title"] = title
        return facts


def _unlock_with_empty_password(reader: PdfReader) -> bool:
    from pypdf import PasswordType
    from pypdf.errors import DependencyError

    try:
        result: PasswordType = reader.decrypt("")
        return result != PasswordType.NOT_DECRYPTED
    except DependencyError:
        # AES needs the optional `cryptography` package, which the layer does not ship.
        return False


def _png_chunk(file: BinaryIO, wanted: bytes) -> bytes | None:
    """The data of the first chunk of type `wanted`, walking chunk headers only (the file is local)."""
    position = file.tell()
    try:
        offset = _PNG_SIGNATURE_LENGTH
        while True:
            file.seek(offset)
            header = file.read(8)
            if len(header) < 8:
                return None
            length, kind = int.from_bytes(header[:4], "big"), header[4:]
            if kind == wanted:
                # A chunk length is client-chosen: EXIF data is small, a claimed 4 GB is not read.
                return file.read(min(length, _MAX_EXIF_BYTES))
            if kind == b"IEND":
                return None
            # length, type, data and CRC.
            offset += 12 + length
    finally:
        file.seek(position)
