"""Text recognition in the local provider: it quotes what an image says when the OCR engine is installed,
says "unavailable" when it is not, and never pretends.

Images are drawn here with Pillow's bundled font (ImageFont.load_default(size=...)), so the tests need no
system font. Assertions are on words the engine reads reliably, compared without spaces and case: the
recognition model sometimes joins words ("CORNERMARKET"), which is the model's reading, not a bug here.

Tests that need the engine are skipped where it is not installed (Python 3.13, where rapidocr-onnxruntime
does not install); the test of its absence runs everywhere.
"""

from __future__ import annotations

import importlib.util
import io
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import ExifTags, Image, ImageDraw, ImageFont

from filebatch.media import ocr
from filebatch.media.inspect import inspect_stream
from filebatch.media.local_provider import LocalDescriptionProvider
from filebatch.media.source import BytesMedia
from filebatch.models.domain import Description

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
HAS_OCR = importlib.util.find_spec("rapidocr_onnxruntime") is not None
needs_ocr = pytest.mark.skipif(not HAS_OCR, reason="rapidocr-onnxruntime is not installed (Python 3.13)")


@pytest.fixture(autouse=True)
def fresh_engine() -> Iterator[None]:
    """Each test finds the engine as its own setup leaves it; the cached engine is rebuilt afterwards."""
    yield
    ocr._load_engine.cache_clear()


def _text_image(
    lines: list[str],
    *,
    size: int = 32,
    colour: str | tuple[int, ...] = "white",
    mode: str = "RGB",
    width: int = 720,
) -> Image.Image:
    font = ImageFont.load_default(size=size)
    line_height = int(size * 1.8)
    image = Image.new(mode, (width, 40 + line_height * len(lines)), colour)
    draw = ImageDraw.Draw(image)
    for index, line in enumerate(lines):
        draw.text((30, 20 + line_height * index), line, fill="black", font=font)
    return image


def _encode(image: Image.Image, image_format: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def _describe(content: bytes) -> Description:
    facts = inspect_stream(BytesMedia(content).chunks(), io.BytesIO())
    return LocalDescriptionProvider().describe(BytesMedia(content), facts, "upload.bin")


def _squashed(text: str) -> str:
    return "".join(text.split()).upper()


RECEIPT_LINES = ["INVOICE 2024-117", "Total due 42.50 EUR", "Thank you"]


@needs_ocr
def test_an_image_of_text_is_quoted_with_the_engine_named() -> None:
    # Given a PNG of three lines of text
    content = _encode(_text_image(RECEIPT_LINES))
    # When the local provider describes it
    description = _describe(content)
    attributes = description.attributes
    # Then the attributes name the engine that ran and hold the lines it read, top to bottom
    assert attributes["ocr"].startswith("rapidocr-onnxruntime ")
    read = _squashed(attributes["text_in_image"])
    for word in ("INVOICE", "2024-117", "42.50", "EUR", "THANK"):
        assert word in read, attributes["text_in_image"]
    assert read.index("INVOICE") < read.index("42.50") < read.index("THANK")
    assert attributes["text_lines_found"] >= len(attributes["text_lines"]) >= 3
    assert all(line["confidence"] >= ocr.MIN_CONFIDENCE for line in attributes["text_lines"])
    assert attributes["text_in_image"] == "\n".join(line["text"] for line in attributes["text_lines"])
    # And the sentence quotes it, after the measured facts
    assert description.text.startswith("A 720\u00d7")
    assert "OCR read" in description.text
    assert "INVOICE" in _squashed(description.text.split("OCR", 1)[1])


@needs_ocr
def test_the_same_image_gives_the_same_text_from_a_fresh_engine() -> None:
    # Given an image of text, described once
    content = _encode(_text_image(RECEIPT_LINES), "JPEG", quality=90)
    first = _describe(content)
    # When the engine is built anew and the same bytes are described again
    ocr._load_engine.cache_clear()
    second = _describe(content)
    # Then the descriptions are identical, down to each line's confidence
    assert first.attributes["text_lines"], "nothing was read: the comparison would prove nothing"
    assert first.model_dump_json() == second.model_dump_json()


def test_without_the_engine_the_description_says_ocr_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an environment where the OCR package cannot be imported (as on the Lambda layer)
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)
    ocr._load_engine.cache_clear()
    content = _encode(_text_image(RECEIPT_LINES))
    # When an image of text is described
    description = _describe(content)
    # Then it says text recognition is unavailable, reads nothing and claims nothing about text
    assert description.attributes["ocr"] == ocr.UNAVAILABLE
    assert not {"text_in_image", "text_lines", "text_lines_found", "ocr_input"} & set(description.attributes)
    assert "OCR" not in description.text
    assert "INVOICE" not in description.text.upper()
    # And the rest of the description is the measured one
    assert description.attributes["width"] == 720
    assert description.attributes["dominant_colors"][0]["name"] == "white"


@needs_ocr
def test_an_engine_error_is_reported_and_the_rest_of_the_description_stands(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an engine that fails on every image
    loaded = ocr.engine()
    assert loaded is not None

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("onnxruntime exploded")

    monkeypatch.setattr(ocr, "engine", lambda: ocr.OcrEngine(label=loaded.label, recognise=broken))
    # When an image of text is described
    description = _describe(_encode(_text_image(RECEIPT_LINES)))
    # Then the description says OCR failed, quotes nothing, and still gives the measured facts
    assert description.attributes["ocr"] == "failed: RuntimeError"
    assert "text_in_image" not in description.attributes
    assert "OCR" not in description.text
    assert description.attributes["width"] == 720


@needs_ocr
@pytest.mark.parametrize(
    "name",
    ["astronaut-eileen-collins.png", "hubble-extreme-deep-field.jpg", "chelsea-the-cat-converted.webp"],
)
def test_a_photo_without_writing_gets_no_quoted_text(name: str) -> None:
    # Given a real photo with nothing written in it
    content = (SAMPLES / name).read_bytes()
    # When it is described
    description = _describe(content)
    # Then OCR ran, read nothing, and the sentence says nothing about text
    assert description.attributes["ocr"].startswith("rapidocr-onnxruntime ")
    assert description.attributes["text_in_image"] == ""
    assert description.attributes["text_lines"] == []
    assert "OCR" not in description.text


@needs_ocr
def test_a_large_image_is_read_from_a_copy_of_at_most_the_pixel_budget() -> None:
    # Given a 12-megapixel JPEG (4000x3000) with large text on it
    image = Image.new("RGB", (4000, 3000), (250, 250, 250))
    text = _text_image(["RECEIPT 7781", "TOTAL 19.99"], size=40, width=520).resize((2080, 520))
    image.paste(text, (600, 900))
    content = _encode(image, "JPEG", quality=90)
    # When it is described
    description = _describe(content)
    attributes = description.attributes
    # Then the dimensions are the full ones, the detector saw at most OCR_MAX_PIXELS in the same shape,
    # and the text is still read
    assert (attributes["width"], attributes["height"]) == (4000, 3000)
    seen = attributes["ocr_input"]
    assert seen["width"] * seen["height"] <= ocr.OCR_MAX_PIXELS
    assert abs(seen["width"] / seen["height"] - 4 / 3) < 0.01
    read = _squashed(attributes["text_in_image"])
    assert "7781" in read
    assert "19.99" in read


@needs_ocr
def test_at_most_the_line_budget_is_read_and_the_sentence_says_how_many_were_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a line budget of 2 and an image of four lines
    monkeypatch.setattr(ocr, "OCR_MAX_LINES", 2)
    content = _encode(_text_image(["ALPHA 1111", "BRAVO 2222", "CHARLIE 3333", "DELTA 4444"]))
    # When it is described
    description = _describe(content)
    attributes = description.attributes
    # Then four lines were found, the first two read, and the sentence says both numbers
    assert attributes["text_lines_found"] == 4
    assert len(attributes["text_lines"]) == 2
    read = _squashed(attributes["text_in_image"])
    assert "ALPHA" in read
    assert "BRAVO" in read
    assert "CHARLIE" not in read
    assert "OCR found 4 lines of text in it and read 2:" in description.text


@needs_ocr
def test_text_in_a_photo_stored_sideways_is_read_upright() -> None:
    # Given an image of text stored turned a quarter, with the EXIF orientation (6) that displays it upright
    upright = _text_image(RECEIPT_LINES)
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    content = _encode(stored, "JPEG", quality=90, exif=exif.tobytes())
    # When it is described
    attributes = _describe(content).attributes
    # Then the detector saw it upright, and read it
    assert (attributes["ocr_input"]["width"], attributes["ocr_input"]["height"]) == upright.size
    assert "INVOICE" in _squashed(attributes["text_in_image"])
    assert "42.50" in _squashed(attributes["text_in_image"])


@needs_ocr
def test_dark_text_on_a_transparent_background_is_read() -> None:
    # Given black text on a fully transparent PNG (its transparent pixels are black too)
    content = _encode(_text_image(RECEIPT_LINES, colour=(0, 0, 0, 0), mode="RGBA"))
    # When it is described
    attributes = _describe(content).attributes
    # Then the text is read as it is shown on a page: on white
    assert "INVOICE" in _squashed(attributes["text_in_image"])


@needs_ocr
@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("receipt-scan.jpg", ["CORNER", "MARKET", "TOTAL", "13.80", "THANKYOU"]),
        ("screenshot-backup-dialog.png", ["BACKUPASSISTANT", "BACKUPFINISHEDWITH2WARNINGS", "1,284"]),
        ("gettysburg-address-page-scan.jpg", ["GETTYSBURG", "FOURSCOREANDSEVENYEARSAGO", "1863"]),
    ],
)
def test_the_text_samples_are_quoted(name: str, words: list[str]) -> None:
    # Given a text-bearing sample (drawn by samples/make_text_samples.py)
    content = (SAMPLES / name).read_bytes()
    # When it is described
    description = _describe(content)
    # Then what it says is in the attributes and the sentence quotes its beginning
    read = _squashed(description.attributes["text_in_image"])
    for word in words:
        assert word in read, description.attributes["text_in_image"]
    assert words[0] in _squashed(description.text)
