"""What a file really is, from its first bytes, and whether the client's declared type is honest.

Detection never looks at the file name: the name is client-chosen text, the bytes are the fact. The
tables below are the whole policy; add a row rather than a branch.
"""

from __future__ import annotations

from filebatch.media.text import scan_text

EMPTY = "application/x-empty"
UNKNOWN = "application/octet-stream"
TEXT = "text/plain"

# (offset, signature, content type), first match wins. Signatures that need more than a prefix test
# (WebP, BMP, ISO-BMFF brands, text) are handled by the functions below.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    # BigTIFF.
    (0, b"II+\x00", "image/tiff"),
    (0, b"MM\x00+", "image/tiff"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"PK\x03\x04", "application/zip"),
    # An empty archive and a spanned one start with a different record.
    (0, b"PK\x05\x06", "application/zip"),
    (0, b"PK\x07\x08", "application/zip"),
    # Method byte 8 (deflate) is the only one defined, and it makes "\x1f\x8b" far less likely by chance.
    (0, b"\x1f\x8b\x08", "application/gzip"),
)

# ISO base media file format brands (bytes 8..12 after "ftyp"). HEIF's generic "mif1"/"msf1" brands
# are also used by AVIF, which is told apart by its compatible-brand list.
_HEIF_BRANDS: dict[bytes, str] = {
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"heim": "image/heic",
    b"heis": "image/heic",
    b"hevc": "image/heic",
    b"hevx": "image/heic",
    b"mif1": "image/heic",
    b"msf1": "image/heic",
    b"avif": "image/avif",
    b"avis": "image/avif",
}
_HEIF_BOX_MAX = 256

# "BM" alone is too weak (a text file may start with it); the DIB header size at offset 14 is one of
# a handful of values for every BMP variant in use.
_BMP_DIB_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})

# Alternative spellings clients send → the name detection uses.
_ALIASES: dict[str, str] = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "image/heif": "image/heic",
    "image/heic-sequence": "image/heic",
    "image/heif-sequence": "image/heic",
    "image/avif-sequence": "image/avif",
    "image/tif": "image/tiff",
    "image/x-tiff": "image/tiff",
    "image/x-bmp": "image/bmp",
    "image/x-ms-bmp": "image/bmp",
    "application/x-pdf": "application/pdf",
    "application/x-zip": "application/zip",
    "application/x-zip-compressed": "application/zip",
    "application/x-gzip": "application/gzip",
}

# Types whose bytes are plain text, beyond text/*. Structured suffixes (+json, +xml) are text too.
_TEXTUAL_TYPES = frozenset(
    {
        "application/json",
        "application/x-ndjson",
        "application/xml",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
        "application/sql",
        "application/x-sh",
        "application/x-python",
        "application/csv",
        "application/x-csv",
        "application/x-subrip",
        "application/rtf",
    }
)
_TEXTUAL_SUFFIXES = ("+json", "+xml", "+yaml")

# Formats that are containers of a detected type: an .xlsx is honestly a ZIP archive, a .tgz a gzip
# stream. Without these, every office document would be rejected as a lie.
_CONTAINED_IN: dict[str, frozenset[str]] = {
    "application/zip": frozenset(
        {
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            "application/vnd.oasis.opendocument.text",
            "application/vnd.oasis.opendocument.spreadsheet",
            "application/vnd.oasis.opendocument.presentation",
            "application/epub+zip",
            "application/java-archive",
            "application/vnd.android.package-archive",
        }
    ),
    "application/gzip": frozenset({"application/x-tar+gzip", "application/x-gtar", "application/x-tgz"}),
}


# Every signature and probe below looks at most this far into a file.
SIGNATURE_BYTES = _HEIF_BOX_MAX


def detect_content_type(content: bytes) -> str:
    """The MIME type the bytes prove, or "application/octet-stream" when they prove nothing we know."""
    if not content:
        return EMPTY
    return signature_type(content) or (TEXT if scan_text(content) is not None else UNKNOWN)


def signature_type(head: bytes) -> str | None:
    """The type a file's first bytes (at least SIGNATURE_BYTES of them, when it has that many) prove
    by a signature; None for text and unknown data, which only the whole file can tell apart."""
    for offset, signature, content_type in _SIGNATURES:
        if head.startswith(signature, offset):
            return content_type
    for probe in (_riff, _iso_bmff, _bmp):
        found = probe(head)
        if found is not None:
            return found
    return None


def normalize_content_type(content_type: str) -> str:
    """Lower case, parameters (";charset=...") dropped, aliases resolved."""
    essence = content_type.split(";", 1)[0].strip().lower()
    return _ALIASES.get(essence, essence)


def is_textual(content_type: str) -> bool:
    """Whether a declared type promises plain text bytes (text/csv, application/json, image/svg+xml...)."""
    essence = normalize_content_type(content_type)
    return essence.startswith("text/") or essence in _TEXTUAL_TYPES or essence.endswith(_TEXTUAL_SUFFIXES)


def is_compatible(declared: str, detected: str) -> bool:
    """True when `declared` (what the client said) is an honest name for bytes detected as `detected`."""
    declared_type = normalize_content_type(declared)
    detected_type = normalize_content_type(detected)
    if declared_type in (UNKNOWN, detected_type):
        return True
    # An empty file is a valid (empty) text file, and nothing else.
    if detected_type in (TEXT, EMPTY):
        return is_textual(declared_type)
    return declared_type in _CONTAINED_IN.get(detected_type, frozenset())


def _riff(content: bytes) -> str | None:
    if content.startswith(b"RIFF") and content[8:12] == b"WEBP":
        return "image/webp"
    return None


def _iso_bmff(content: bytes) -> str | None:
    if content[4:8] != b"ftyp":
        return None
    box_size = int.from_bytes(content[0:4], "big")
    major = content[8:12]
    # Compatible brands follow the minor version (bytes 12..16), four bytes each, to the box's end.
    end = min(box_size, len(content), _HEIF_BOX_MAX)
    compatible = {content[i : i + 4] for i in range(16, end - 3, 4)}
    if major in (b"mif1", b"msf1") and compatible & {b"avif", b"avis"}:
        return "image/avif"
    return _HEIF_BRANDS.get(major)


def _bmp(content: bytes) -> str | None:
    if len(content) >= 18 and content.startswith(b"BM"):
        dib_header_size = int.from_bytes(content[14:18], "little")
        if dib_header_size in _BMP_DIB_HEADER_SIZES:
            return "image/bmp"
    return None
