"""Text recognition (OCR) for the local provider: what an image says, read offline and deterministically.

The engine is rapidocr-onnxruntime: PP-OCRv4 text detection and recognition (and a 0°/180° direction
classifier) as ONNX models inside its wheel, so nothing is downloaded at run time. It is a dependency of
the development environment and the local stack only (requirements-dev.txt), not of the Lambda layer:
with onnxruntime, OpenCV and numpy it adds 219 MB unzipped for arm64 even with a headless OpenCV, which
with the layer's own 56 MB is over Lambda's 250 MB for function and layers (`make sizes`, figures in the
README), and rapidocr-onnxruntime 1.4.4 does not install on Python 3.13, Lambda's runtime here. Where
it cannot be imported, `read_text` says so (`ocr: "unavailable"`) and reads nothing: the provider never
pretends.

The cost per image is bounded whatever the image: the text detector looks at the image scaled down to
at most OCR_MAX_PIXELS (detection time grows with pixels), and at most OCR_MAX_LINES detected lines are
recognised (recognition time grows with the number and length of lines). docs/scaling.md has the
measurements behind both numbers.

Nothing is imported or loaded at import time: the engine (~0.5 s to import and load, ~135 MB resident)
is built on first use and kept for the life of the process, like a Lambda execution environment's
clients.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, BinaryIO

from filebatch.media.inspect import clean_text, open_image, read_exif, to_rgba

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

# The detector sees at most this many pixels (a 4:3 image at 1154x866). On one core it then takes
# 0.05-0.3 s for a small photo or a 960x540 screenshot and ~0.7 s for a 12 MP photo, against ~2 s at
# 2 MP and ~5 s at 3 MP, and it still read every line of an A4 page of 10-point text rendered at 300 dpi.
OCR_MAX_PIXELS = 1_000_000
# Recognition costs ~0.03 s for a short receipt line and ~0.2 s for a line across an A4 page: a dense
# page (60 lines) took 13 s when every line was read. The first lines (top to bottom) are what a
# description quotes anyway; the description says how many lines were found and how many were read.
OCR_MAX_LINES = 20
# A line read with less confidence than this is left out: every line of real text in the samples read
# at 0.89 or more, and what read below 0.8 were photo details taken for text (a rocket photo's "米*" at
# 0.52, a silhouette's edge as "1" at 0.15).
MIN_CONFIDENCE = 0.8
MAX_LINE_CHARACTERS = 200
UNAVAILABLE = "unavailable"
_DISTRIBUTION = "rapidocr-onnxruntime"

# EXIF orientation → the transpose that turns the image upright (as Pillow's ImageOps.exif_transpose).
_ORIENTATION_TAG = 0x0112
_UPRIGHT: dict[int, str] = {
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}


@dataclass(frozen=True)
class OcrEngine:
    label: str  # what the description's `ocr` attribute says ran, e.g. "rapidocr-onnxruntime 1.4.4"
    recognise: Any  # a rapidocr_onnxruntime.RapidOCR


_load_lock = threading.Lock()


def engine() -> OcrEngine | None:
    """The OCR engine, built on first use and then kept; None when it cannot be imported or loaded."""
    # One build even if two threads ask at once: each build takes ~0.5 s and ~135 MB.
    with _load_lock:
        return _load_engine()


@cache
def _load_engine() -> OcrEngine | None:
    try:
        from importlib.metadata import version

        from rapidocr_onnxruntime import RapidOCR
    except (ImportError, OSError) as exc:
        # Not installed (the Lambda layer, Python 3.13), or OpenCV's shared libraries are missing.
        logger.info("text recognition unavailable: %s", exc)
        return None
    try:
        recognise = RapidOCR(
            # One thread each: the same image then always gives the same text, and one describe step
            # uses one core, as a Lambda environment of this size has roughly one.
            intra_op_num_threads=1,
            inter_op_num_threads=1,
            # "max": never scale an image up for detection (the default scales the short side up to
            # 736 px, which doubled the time for a 576x460 receipt and read nothing more).
            det_limit_type="max",
        )
    except Exception as exc:
        logger.warning("text recognition unavailable: the engine did not load: %s", exc)
        return None
    return OcrEngine(label=f"{_DISTRIBUTION} {version(_DISTRIBUTION)}", recognise=recognise)


def read_text(file: BinaryIO) -> dict[str, Any]:
    """Description attributes about the text OCR reads in the image in `file` (seekable, already known
    to be an image Pillow opens):

    - `ocr`: the engine that ran ("rapidocr-onnxruntime 1.4.4"), "unavailable", or "failed: <error>";
    - when it ran: `ocr_input` (the width and height the detector looked at), `text_lines_found`,
      `text_lines` (the lines read, top to bottom, each with its confidence) and `text_in_image` (those
      lines, one per line; "" when nothing was read).
    """
    ocr = engine()
    if ocr is None:
        return {"ocr": UNAVAILABLE}
    picture = _ocr_input(file)
    facts: dict[str, Any] = {
        "ocr": ocr.label,
        "ocr_input": {"width": picture.width, "height": picture.height},
    }
    try:
        found, lines = _recognise(ocr.recognise, picture)
    except Exception as exc:
        # The image itself decoded; an engine error is the engine's, not the file's, so the rest of the
        # description stands and says that text recognition failed.
        logger.warning("text recognition failed: %s: %s", type(exc).__name__, exc)
        return {"ocr": f"failed: {type(exc).__name__}", "ocr_input": facts["ocr_input"]}
    finally:
        _return_freed_memory()
    facts["text_lines_found"] = found
    facts["text_lines"] = lines
    facts["text_in_image"] = "\n".join(line["text"] for line in lines)
    return facts


def _return_freed_memory() -> None:
    """Hand the detector's freed working memory back to the operating system.

    Detection at OCR_MAX_PIXELS allocates ~300 MB of activations and frees them, but glibc keeps freed
    heap memory for reuse: an environment stayed at ~550 MB resident after its first photo, and a 100 MP
    PNG described next peaked at 1,546 MB of the function's 1,769. Trimmed: ~200 MB and 1,344 MB.
    malloc_trim takes about a millisecond. Elsewhere than glibc there is nothing to do.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@cache
def _malloc_trim() -> Any:
    import ctypes

    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _ocr_input(file: BinaryIO) -> Image.Image:
    """The image as the detector gets it: first frame, upright (EXIF orientation), transparent areas on
    white, RGB, scaled down to at most OCR_MAX_PIXELS."""
    from PIL import Image

    with open_image(file) as image:
        orientation = read_exif(image, file).get(_ORIENTATION_TAG)
        width, height = image.size
        scale = min(1.0, math.sqrt(OCR_MAX_PIXELS / (width * height)))
        target = (max(1, math.floor(width * scale)), max(1, math.floor(height * scale)))
        # A JPEG decodes at the smallest DCT scale still at least `target`: a 12 MP photo at 1/2 or 1/4.
        image.draft(None, target)
        if image.mode in ("RGB", "RGBA", "L", "LA"):
            # Scaled before converting: a 100 MP RGB image is not also held as a 400 MB RGBA copy.
            frame = to_rgba(image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0))
        else:
            frame = to_rgba(image).resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    # Dark text on a transparent background is usually meant to be seen on white; its transparent
    # pixels' colour values are often black, which would hide it.
    picture = Image.alpha_composite(Image.new("RGBA", frame.size, "white"), frame).convert("RGB")
    if isinstance(orientation, int) and orientation in _UPRIGHT:
        picture = picture.transpose(Image.Transpose[_UPRIGHT[orientation]])
    return picture


def _recognise(recognise: Any, picture: Image.Image) -> tuple[int, list[dict[str, Any]]]:
    """(lines detected, the first OCR_MAX_LINES of them that read as text with enough confidence).

    Detection first, alone; then recognition line by line on the detected quadrilaterals, so that a page
    of 60 lines costs 20 recognitions, not 60.
    """
    boxes, _ = recognise(picture, use_cls=False, use_rec=False)
    if not boxes:
        return 0, []
    lines: list[dict[str, Any]] = []
    for box in boxes[:OCR_MAX_LINES]:
        result, _ = recognise(_straighten(picture, box), use_det=False, use_cls=True, use_rec=True)
        if not result:
            continue
        text, confidence = clean_text(result[0][0], limit=MAX_LINE_CHARACTERS), float(result[0][1])
        # A "line" without a letter or digit is a texture the detector took for text.
        if text and confidence >= MIN_CONFIDENCE and any(character.isalnum() for character in text):
            lines.append({"text": text, "confidence": round(confidence, 3)})
    return len(boxes), lines


def _straighten(picture: Image.Image, box: list[list[float]]) -> Image.Image:
    """The detected quadrilateral (corners clockwise from top left) cut out as an upright rectangle."""
    from PIL import Image

    (left_x, left_y), (right_x, right_y), (bottom_right_x, bottom_right_y), (bottom_x, bottom_y) = box
    width = max(
        math.dist((left_x, left_y), (right_x, right_y)),
        math.dist((bottom_x, bottom_y), (bottom_right_x, bottom_right_y)),
    )
    height = max(
        math.dist((left_x, left_y), (bottom_x, bottom_y)),
        math.dist((right_x, right_y), (bottom_right_x, bottom_right_y)),
    )
    size = (max(1, round(width)), max(1, round(height)))
    # QUAD takes the source corners as upper left, lower left, lower right, upper right.
    quad = (left_x, left_y, bottom_x, bottom_y, bottom_right_x, bottom_right_y, right_x, right_y)
    crop = picture.transform(size, Image.Transform.QUAD, quad, Image.Resampling.BICUBIC)
    # As rapidocr's own pipeline does: a box much taller than wide is vertical text, turned to read.
    if crop.height >= 1.5 * crop.width:
        crop = crop.transpose(Image.Transpose.ROTATE_90)
    return crop
