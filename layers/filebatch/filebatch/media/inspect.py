"""Cheap, verifiable facts about a file's bytes, for the process step (and the local provider).

Pillow and pypdf are imported inside the functions: a Lambda that never inspects media should not pay
for loading them at cold start.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

from filebatch.errors import FileRejectedError

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
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def basic_metadata(content: bytes, detected_content_type: str) -> dict[str, Any]:
    """JSON-serialisable facts about `content`, which has been detected as `detected_content_type`.

    Raises FileRejectedError (code "corrupt_media") when the bytes claim a format they do not parse
    as, and (code "image_too_large") for images over MAX_IMAGE_PIXELS.
    """
    if detected_content_type in PILLOW_FORMATS:
        return _image_metadata(content)
    if detected_content_type == "application/pdf":
        return _pdf_metadata(content)
    if detected_content_type == "text/plain":
        return text_statistics(decode_text(content))
    return {}


@contextmanager
def open_image(content: bytes) -> Iterator[Image.Image]:
    """Open `content` with Pillow, refusing decompression bombs, and close it afterwards.

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
            with Image.open(io.BytesIO(content)) as image:
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


def read_exif(image: Image.Image, content: bytes) -> Image.Exif:
    """The image's EXIF (plus an XMP orientation, which Pillow merges in) without decoding its pixels.

    Pillow's PNG plugin decodes the whole image to look for an eXIf chunk after the pixel data, so
    for PNG the chunks are walked here and the result handed to Pillow as if read at open.
    """
    if image.format == "PNG" and "exif" not in image.info:
        # An empty value still lets Pillow add the orientation an XMP packet may carry.
        image.info["exif"] = _png_chunk(content, b"eXIf") or b""
    return image.getexif()


def displayed_size(image: Image.Image, exif: Image.Exif) -> tuple[int, int]:
    """(width, height) as a viewer shows the image, i.e. after applying the EXIF orientation."""
    width, height = image.size
    if exif.get(_ORIENTATION_TAG) in _TRANSPOSING_ORIENTATIONS:
        return height, width
    return width, height


def frame_count(image: Image.Image) -> int:
    return int(getattr(image, "n_frames", 1))


class OpenedPdf(NamedTuple):
    reader: PdfReader
    # False for an encrypted document whose password is not the empty one: its objects are unreadable.
    readable: bool


@contextmanager
def open_pdf(content: bytes) -> Iterator[OpenedPdf]:
    """A pypdf reader over `content`; parse errors, here or in the `with` block, become corrupt_media.

    An encrypted document is decrypted with the empty user password when it has one (most "protected"
    PDFs only restrict printing or copying); otherwise it is reported as unreadable, not as corrupt.
    """
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(content))
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


def decode_text(content: bytes) -> str:
    """The text of bytes detected as text/plain (UTF-8, optional byte order mark)."""
    return content.decode("utf-8-sig")


def text_statistics(text: str) -> dict[str, int]:
    # Lines end in \n, \r\n or \r; a last line without its line break still counts.
    breaks = len(_LINE_BREAK.findall(text))
    unterminated = 1 if text and not text.endswith(("\n", "\r")) else 0
    return {
        "line_count": breaks + unterminated,
        "word_count": len(text.split()),
        "character_count": len(text),
    }


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


def _image_metadata(content: bytes) -> dict[str, Any]:
    with open_image(content) as image:
        exif = read_exif(image, content)
        width, height = displayed_size(image, exif)
        return {
            "format": image.format,
            "width": width,
            "height": height,
            "mode": image.mode,
            "frames": frame_count(image),
            "has_exif": len(exif) > 0,
        }


def _pdf_metadata(content: bytes) -> dict[str, Any]:
    with open_pdf(content) as pdf:
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


def _png_chunk(content: bytes, wanted: bytes) -> bytes | None:
    offset = _PNG_SIGNATURE_LENGTH
    while offset + 8 <= len(content):
        length = int.from_bytes(content[offset : offset + 4], "big")
        kind = content[offset + 4 : offset + 8]
        if kind == wanted:
            return content[offset + 8 : offset + 8 + length]
        if kind == b"IEND":
            return None
        # length, type, data and CRC.
        offset += 12 + length
    return None
