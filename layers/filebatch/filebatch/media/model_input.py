"""Fitting a file into what a hosted model accepts through Amazon Bedrock's Converse API: images as
image blocks, PDFs and text as document blocks, within the documented input limits (the figures and
their sources are in docs/providers.md).

Images over a limit are scaled down and re-encoded with Pillow, and the result lists what was done.
A document cannot be shrunk without changing what it says, so one over a limit is refused. Whatever
can be decided from the verified facts (type, size, page count) is decided before a byte is read.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from filebatch.errors import FileRejectedError, PermanentDescriptionError
from filebatch.media.detect import TEXT
from filebatch.media.inspect import frame_count, open_image, read_exif, to_rgba
from filebatch.models.domain import FileFacts

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class InputLimits:
    """What one Converse request may carry for one file. Defaults: the documented limits that hold
    for every model (docs/providers.md gives each one's source)."""

    # Converse Message: "Each image's size, height, and width must be no more than 3.75 MB, 8000 px,
    # and 8000 px". MB read as 10^6 bytes, the smaller reading.
    image_max_bytes: int = 3_750_000
    image_max_side: int = 8_000
    # Converse Message and Bedrock's API restrictions: "Each document's size must be no more than 4.5 MB".
    document_max_bytes: int = 4_500_000
    # Bedrock's API restrictions: "Claude requires PDF documents to be a maximum of 100 pages per request".
    pdf_max_pages: int = 100


DEFAULT_LIMITS = InputLimits()

# Detected type → Converse ImageFormat / DocumentFormat.
IMAGE_FORMATS: dict[str, str] = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
DOCUMENT_FORMATS: dict[str, str] = {"application/pdf": "pdf", TEXT: "txt"}

# Re-encoding: JPEG for opaque images (a photo at this quality is a tenth of its PNG), PNG when some
# pixel is transparent (JPEG has no alpha).
JPEG_QUALITY = 85
# Each further scaling aims a little under the byte limit: encoded size is not exactly proportional
# to the pixel count.
_SCALE_MARGIN = 0.9
_MAX_ENCODINGS = 8
# Below this many pixels on the long side a picture says too little to be worth describing.
MIN_IMAGE_SIDE = 64

_ORIENTATION_TAG = 0x0112
_TIMES = "\u00d7"

Kind = Literal["image", "document"]


@dataclass(frozen=True)
class ModelInput:
    """The bytes to send for one file, in a format Converse names, and what was done to fit them."""

    kind: Kind
    format: str
    content: bytes
    width: int | None = None
    height: int | None = None
    adjustments: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        """What was sent, for the result (never the bytes)."""
        facts: dict[str, Any] = {"kind": self.kind, "format": self.format, "bytes": len(self.content)}
        if self.width is not None and self.height is not None:
            facts |= {"width": self.width, "height": self.height}
        facts |= {"adjusted": bool(self.adjustments), "adjustments": list(self.adjustments)}
        return facts


def input_kind(facts: FileFacts, limits: InputLimits = DEFAULT_LIMITS) -> Kind:
    """Whether the file can go to the model, decided from the verified facts alone.

    Raises PermanentDescriptionError: `unsupported_for_provider` for types the model does not take,
    `too_large_for_provider` for documents over a limit."""
    detected = facts.detected_content_type
    if detected in IMAGE_FORMATS:
        return "image"
    if detected not in DOCUMENT_FORMATS:
        raise PermanentDescriptionError(
            f"{detected} files cannot be sent to the model: it takes PNG, JPEG, GIF and WebP images, "
            "PDFs and plain text",
            code="unsupported_for_provider",
        )
    if facts.size_bytes > limits.document_max_bytes:
        raise PermanentDescriptionError(
            f"the document has {facts.size_bytes:,} bytes; the model takes documents of at most "
            f"{limits.document_max_bytes:,}",
            code="too_large_for_provider",
        )
    if detected == "application/pdf":
        if "page_count" in facts.metadata and facts.metadata["page_count"] is None:
            raise PermanentDescriptionError(
                "the PDF is encrypted with a password; the model cannot read it",
                code="unsupported_for_provider",
            )
        pages = facts.metadata.get("page_count")
        if isinstance(pages, int) and pages > limits.pdf_max_pages:
            raise PermanentDescriptionError(
                f"the PDF has {pages:,} pages; the model takes at most {limits.pdf_max_pages}",
                code="too_large_for_provider",
            )
    return "document"


def prepare(file: BinaryIO, facts: FileFacts, limits: InputLimits = DEFAULT_LIMITS) -> ModelInput:
    """The model input for the file in `file` (seekable, holding exactly the verified bytes)."""
    kind = input_kind(facts, limits)
    detected = facts.detected_content_type
    file.seek(0)
    if kind == "document":
        return ModelInput("document", DOCUMENT_FORMATS[detected], file.read())
    try:
        return _fit_image(file, facts.size_bytes, IMAGE_FORMATS[detected], limits)
    except FileRejectedError as exc:
        # The process step read these bytes as this image type; failing to decode them is permanent.
        raise PermanentDescriptionError(exc.message, code="corrupt_media") from exc


def _fit_image(file: BinaryIO, size: int, image_format: str, limits: InputLimits) -> ModelInput:
    from PIL import Image

    with open_image(file) as image:
        width, height = image.size
        if size <= limits.image_max_bytes and max(width, height) <= limits.image_max_side:
            file.seek(0)
            return ModelInput("image", image_format, file.read(), width, height)

        adjustments: list[str] = []
        frames = frame_count(image)
        if frames > 1:
            adjustments.append(f"only the first of its {frames} frames was sent")
        orientation = read_exif(image, file).get(_ORIENTATION_TAG)
        # Fit the side limit first: JPEG decodes at a reduced scale when it can (draft mode), so a
        # large photo is never decoded at full size only to be shrunk.
        image.thumbnail((limits.image_max_side, limits.image_max_side), Image.Resampling.LANCZOS)
        if image.size != (width, height):
            adjustments.append(
                f"scaled from {width}{_TIMES}{height} to {image.width}{_TIMES}{image.height} "
                f"(at most {limits.image_max_side:,} px a side)"
            )
        upright, turned = _upright(image, orientation)
        if turned:
            adjustments.append("turned upright as its EXIF orientation says (the EXIF is not sent)")
        base = to_rgba(upright)

    transparent = base.getchannel("A").getextrema()[0] != 255
    encoding, encode = ("png", _png) if transparent else ("jpeg", _jpeg)
    reason = (
        f" (the file's {size:,} bytes are over {limits.image_max_bytes:,})"
        if size > limits.image_max_bytes
        else ""
    )
    adjustments.append(f"re-encoded as {encoding.upper()}{reason}")
    candidate = base
    for _ in range(_MAX_ENCODINGS):
        content = encode(candidate)
        if len(content) <= limits.image_max_bytes:
            if candidate is not base:
                adjustments.append(
                    f"scaled to {candidate.width}{_TIMES}{candidate.height} to fit "
                    f"{limits.image_max_bytes:,} bytes"
                )
            return ModelInput(
                "image", encoding, content, candidate.width, candidate.height, tuple(adjustments)
            )
        factor = math.sqrt(limits.image_max_bytes / len(content)) * _SCALE_MARGIN
        scaled = (max(1, int(candidate.width * factor)), max(1, int(candidate.height * factor)))
        if max(scaled) < MIN_IMAGE_SIDE:
            break
        candidate = base.resize(scaled, Image.Resampling.LANCZOS)
    raise PermanentDescriptionError(
        f"the image does not fit {limits.image_max_bytes:,} bytes even at {candidate.width}{_TIMES}"
        f"{candidate.height}, and is not shrunk below {MIN_IMAGE_SIDE} px a side",
        code="too_large_for_provider",
    )


def _upright(image: Image.Image, orientation: object) -> tuple[Image.Image, bool]:
    """The image as a viewer shows it, and whether that took a transposition."""
    from PIL import Image

    transpositions = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }
    method = transpositions.get(orientation) if isinstance(orientation, int) else None
    return (image.transpose(method), True) if method is not None else (image, False)


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return buffer.getvalue()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
