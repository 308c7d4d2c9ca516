"""The local description provider and basic metadata: everything they say must be true of the bytes.

Truth is checked against Pillow's and pypdf's own reading of the same bytes, on the real sample files
in samples/ and on files generated here with known content.
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import pytest
from PIL import ExifTags, Image, ImageOps
from PIL.TiffImagePlugin import IFDRational
from pypdf import PdfReader, PdfWriter

from filebatch.errors import FileRejectedError, PermanentDescriptionError, RetryableDescriptionError
from filebatch.media.detect import detect_content_type
from filebatch.media.inspect import MAX_IMAGE_PIXELS, basic_metadata, inspect_stream
from filebatch.media.local_provider import COLOUR_NAMES, LocalDescriptionProvider, colour_name
from filebatch.media.source import BytesMedia
from filebatch.models.domain import Description, FileFacts
from filebatch.runtime import PROVIDERS
from filebatch.services.description import provider_named

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
# samples/ also holds its README and the scripts that rebuild it; those are not demo files (as for
# `make demo`, which skips them the same way).
SAMPLE_FILES = sorted(
    path
    for path in SAMPLES.iterdir()
    if path.is_file() and path.name != "README.md" and path.suffix != ".py" and not path.name.startswith(".")
)
# The multiplication sign descriptions use between dimensions, written as an escape so that it is not
# mistaken for an "x" when editing.
TIMES = "\u00d7"
IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp", "image/tiff", "image/bmp"}


# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def provider() -> LocalDescriptionProvider:
    return LocalDescriptionProvider()


def _facts(content: bytes) -> FileFacts:
    """What the process step verifies about `content` (the provider is given these facts)."""
    return inspect_stream(BytesMedia(content, chunk_size=100).chunks(), io.BytesIO())


def _describe(content: bytes, filename: str = "upload.bin") -> Description:
    return LocalDescriptionProvider().describe(BytesMedia(content), _facts(content), filename)


def _metadata(content: bytes, detected: str) -> dict[str, object]:
    return basic_metadata(io.BytesIO(content), detected)


def _encode(image: Image.Image, image_format: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def _solid(size: tuple[int, int], colour: tuple[int, ...] | str, image_format: str = "PNG") -> bytes:
    mode = "RGBA" if isinstance(colour, tuple) and len(colour) == 4 else "RGB"
    return _encode(Image.new(mode, size, colour), image_format)


def _camera_exif(*, orientation: int | None = None, gps: bool = False) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Canon"
    exif[ExifTags.Base.Model] = "Canon EOS 5D"
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    # Sub-IFDs assigned as dicts: older Pillow (10.4) does not write ones filled in through get_ifd().
    exif[ExifTags.IFD.Exif] = {
        ExifTags.Base.DateTimeOriginal: "2019:05:03 14:22:11",
        ExifTags.Base.ExposureTime: IFDRational(1, 250),
        ExifTags.Base.FNumber: IFDRational(28, 10),
        ExifTags.Base.ISOSpeedRatings: 100,
        ExifTags.Base.FocalLength: IFDRational(50, 1),
    }
    if gps:
        exif[ExifTags.IFD.GPSInfo] = {
            ExifTags.GPS.GPSLatitudeRef: "N",
            ExifTags.GPS.GPSLatitude: (IFDRational(52, 1), IFDRational(22, 1), IFDRational(0, 1)),
        }
    return exif


def _text_pdf(
    pages: list[str], *, title: str | None = None, media_box: tuple[int, int] = (595, 842)
) -> bytes:
    """A minimal PDF with one line of Helvetica text per page, written object by object."""
    page_ids = [4 + 2 * index for index in range(len(pages))]
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (b" ".join(b"%d 0 R" % page for page in page_ids), len(pages)),
        3: b"<< /Title (%s) >>" % title.encode() if title else b"<< >>",
    }
    for page_id, text in zip(page_ids, pages, strict=True):
        stream = b"BT /F1 12 Tf 72 700 Td (%s) Tj ET" % text.encode()
        objects[page_id] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Contents %d 0 R /Resources "
            b"<< /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >> >>"
            % (*media_box, page_id + 1)
        )
        objects[page_id + 1] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)
    out = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for object_id in sorted(objects):
        offsets[object_id] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (object_id, objects[object_id])
    xref = len(out)
    size = max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    out += b"".join(b"%010d 00000 n \n" % offsets[object_id] for object_id in range(1, size))
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 3 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref)
    return bytes(out)


def _png_with_header_size(width: int, height: int) -> bytes:
    """A PNG whose header claims widthxheight pixels (what a decompression bomb looks like at open)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def _pillow_has_transparency(content: bytes) -> bool:
    with Image.open(io.BytesIO(content)) as image:
        if not image.has_transparency_data:
            return False
        lowest = image.convert("RGBA").getchannel("A").getextrema()[0]
        return isinstance(lowest, int) and lowest < 255


# --- the sample files ---------------------------------------------------------------------------


def test_samples_cover_the_formats_the_demo_needs() -> None:
    # Given the demo's sample files
    # When their types are detected
    detected = {detect_content_type(path.read_bytes()) for path in SAMPLE_FILES}
    # Then there are JPEG and PNG photos and at least one PDF and one text file
    assert {"image/jpeg", "image/png", "application/pdf", "text/plain"} <= detected
    assert sum((SAMPLES / name).stat().st_size for name in (p.name for p in SAMPLE_FILES)) < 2_500_000


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda path: path.name)
def test_sample_description_is_true(path: Path) -> None:
    # Given a real sample file
    content = path.read_bytes()
    detected = detect_content_type(content)
    # When the local provider describes it
    description = _describe(content, path.name)
    attributes = description.attributes
    # Then it says only what Pillow, pypdf or plain counting independently confirm
    assert description.provider == "local"
    assert attributes["content_type"] == detected
    assert attributes["size_bytes"] == len(content)
    if detected in IMAGE_TYPES:
        with Image.open(io.BytesIO(content)) as image:
            shown = ImageOps.exif_transpose(image)
            assert (attributes["width"], attributes["height"]) == shown.size
            assert attributes["format"] == image.format
            assert attributes["frames"] == getattr(image, "n_frames", 1)
            assert attributes["has_exif"] is (len(image.getexif()) > 0)
        assert attributes["has_transparency"] is _pillow_has_transparency(content)
        width, height = attributes["width"], attributes["height"]
        assert attributes["orientation"] == (
            "landscape" if width > height else "portrait" if height > width else "square"
        )
        colours = attributes["dominant_colors"]
        assert 1 <= len(colours) <= 5
        assert all(colour["name"] in COLOUR_NAMES for colour in colours)
        shares = [colour["share_percent"] for colour in colours]
        assert shares == sorted(shares, reverse=True)
        assert sum(shares) <= 100.05
        assert (
            f"{attributes['width']}{TIMES}{attributes['height']} {attributes['orientation']}"
            in description.text
        )
        assert colours[0]["name"] in description.text
    elif detected == "application/pdf":
        reader = PdfReader(io.BytesIO(content))
        assert attributes["page_count"] == len(reader.pages)
        assert f"{len(reader.pages)}-page PDF" in description.text
        if reader.metadata is not None and reader.metadata.title:
            assert attributes["title"] == reader.metadata.title
            assert reader.metadata.title in description.text
        first_words = reader.pages[0].extract_text().split()[:5]
        assert attributes["excerpt"].split()[:5] == first_words
    elif detected == "text/plain":
        text = content.decode("utf-8-sig")
        assert attributes["line_count"] == len(text.splitlines())
        assert attributes["word_count"] == len(text.split())
        assert attributes["character_count"] == len(text)
        assert attributes["excerpt"].split()[0] == text.split()[0]


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda path: path.name)
def test_sample_description_is_deterministic_and_ignores_the_file_name(path: Path) -> None:
    # Given a real sample file
    content = path.read_bytes()
    # When it is described twice, under different names
    first = _describe(content, path.name)
    second = _describe(content, "renamed.dat")
    # Then both descriptions are identical, attributes and text alike
    assert first == second
    assert first.model_dump_json() == second.model_dump_json()


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda path: path.name)
def test_basic_metadata_of_samples_matches_the_description(path: Path) -> None:
    # Given a real sample file
    content = path.read_bytes()
    detected = detect_content_type(content)
    # When the process step's metadata and the provider's description are both computed
    metadata = _facts(content).metadata | _metadata(content, detected)
    attributes = _describe(content).attributes
    # Then they agree on every fact they share
    shared = set(metadata) & set(attributes)
    assert shared, "basic metadata and description share no fact"
    assert {key: metadata[key] for key in shared} == {key: attributes[key] for key in shared}


def test_sample_with_real_exif_reports_only_the_fields_present() -> None:
    # Given the Hubble image, whose EXIF names software and a date but no camera
    content = (SAMPLES / "hubble-extreme-deep-field.jpg").read_bytes()
    # When it is described
    description = _describe(content)
    exif = description.attributes["exif"]
    # Then the software and date are reported and no camera is invented
    assert exif["software"] == "Adobe Photoshop CS5 Macintosh"
    assert exif["modified_at"] == "2012-09-17T15:53:45-04:00"
    assert "make" not in exif
    assert "model" not in exif
    assert exif["gps_present"] is False
    assert "Taken with" not in description.text


# --- colours, orientation, brightness -----------------------------------------------------------


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "BMP", "WEBP", "GIF", "TIFF"])
def test_solid_red_image_is_entirely_red(image_format: str) -> None:
    # Given a solid red 100x50 image in each supported format
    content = _solid((100, 50), (255, 0, 0), image_format)
    # When it is described
    description = _describe(content)
    colours = description.attributes["dominant_colors"]
    # Then red is the dominant colour at (about) 100%
    assert colours[0]["name"] == "red"
    assert colours[0]["share_percent"] >= 99.0
    assert description.attributes["width"] == 100
    assert description.attributes["height"] == 50
    assert f"100{TIMES}50 landscape" in description.text
    assert "red" in description.text


@pytest.mark.parametrize(
    ("rgb", "name"),
    [
        ((255, 0, 0), "red"),
        ((0, 0, 255), "blue"),
        ((0, 0, 128), "dark blue"),
        ((135, 206, 235), "light blue"),
        ((0, 128, 0), "green"),
        ((255, 255, 0), "yellow"),
        ((255, 165, 0), "orange"),
        ((139, 69, 19), "brown"),
        ((128, 0, 128), "purple"),
        ((255, 182, 193), "pink"),
        ((0, 128, 128), "teal"),
        ((0, 0, 0), "black"),
        ((255, 255, 255), "white"),
        ((128, 128, 128), "grey"),
        ((52, 64, 90), "dark blue"),
    ],
)
def test_colour_names(rgb: tuple[int, int, int], name: str) -> None:
    # Given an sRGB colour a person would name without hesitation
    # When it is named
    # Then the name is the everyday one, and from the provider's vocabulary
    assert colour_name(rgb) == name
    assert name in COLOUR_NAMES


def test_two_colour_image_reports_both_shares() -> None:
    # Given an image that is three quarters blue and one quarter white
    image = Image.new("RGB", (80, 40), (0, 0, 255))
    image.paste((255, 255, 255), (60, 0, 80, 40))
    # When it is described
    colours = _describe(_encode(image)).attributes["dominant_colors"]
    # Then both colours are reported with their shares
    assert [(colour["name"], round(colour["share_percent"])) for colour in colours] == [
        ("blue", 75),
        ("white", 25),
    ]
    assert colours[0]["hex"] == "#0000ff"


@pytest.mark.parametrize(
    ("size", "orientation"),
    [((120, 80), "landscape"), ((80, 120), "portrait"), ((90, 90), "square")],
)
def test_orientation_word(size: tuple[int, int], orientation: str) -> None:
    # Given a generated image of known shape
    content = _solid(size, (0, 128, 0))
    # When it is described
    description = _describe(content)
    # Then the orientation word matches the shape
    assert description.attributes["orientation"] == orientation
    assert f"{size[0]}{TIMES}{size[1]} {orientation}" in description.text


def test_exif_orientation_gives_displayed_dimensions() -> None:
    # Given a 120x80 JPEG whose EXIF says "rotate 90°" (orientation 6), as phones write them
    content = _encode(
        Image.new("RGB", (120, 80), "white"), "JPEG", exif=_camera_exif(orientation=6).tobytes()
    )
    # When it is described and its basic metadata read
    attributes = _describe(content).attributes
    metadata = _metadata(content, "image/jpeg")
    # Then both give the dimensions as displayed: 80x120, portrait
    assert (attributes["width"], attributes["height"], attributes["orientation"]) == (80, 120, "portrait")
    assert (metadata["width"], metadata["height"]) == (80, 120)
    assert attributes["exif"]["orientation_tag"] == 6


@pytest.mark.parametrize(
    ("colour", "brightness"),
    [
        ((10, 10, 10), "dark"),
        ((128, 128, 128), "medium"),
        ((250, 250, 250), "bright"),
        ((255, 0, 0), "medium"),
    ],
)
def test_brightness(colour: tuple[int, int, int], brightness: str) -> None:
    # Given a solid image of known lightness
    content = _solid((10, 10), colour)
    # When it is described
    description = _describe(content)
    # Then the brightness word follows its perceived lightness
    assert description.attributes["brightness"] == brightness


@pytest.mark.parametrize(
    ("mode", "value", "name"),
    [
        pytest.param("I;16", 32768, "grey", id="16-bit-grey-png"),
        pytest.param("I;16", 65535, "white", id="16-bit-white-png"),
        pytest.param("CMYK", (0, 255, 255, 0), "red", id="cmyk-jpeg"),
    ],
)
def test_high_bit_depth_and_cmyk_images_keep_their_colour(mode: str, value: object, name: str) -> None:
    # Given a 16-bit greyscale PNG (values up to 65535) or a CMYK JPEG
    image_format = "JPEG" if mode == "CMYK" else "PNG"
    content = _encode(Image.new(mode, (16, 16), value), image_format)  # type: ignore[arg-type]
    # When it is described
    colours = _describe(content).attributes["dominant_colors"]
    # Then the colour is scaled to 8 bits (a mid grey is not clipped to white) or converted from CMYK
    assert colours[0]["name"] == name
    assert colours[0]["share_percent"] >= 99.0


# --- transparency and animation -----------------------------------------------------------------


def test_transparent_pixels_are_left_out_of_colours() -> None:
    # Given an image whose left half is opaque blue and right half fully transparent red
    image = Image.new("RGBA", (40, 20), (0, 0, 255, 255))
    image.paste((255, 0, 0, 0), (20, 0, 40, 20))
    # When it is described
    description = _describe(_encode(image))
    # Then transparency is reported and the colours are those of the visible half only
    assert description.attributes["has_transparency"] is True
    assert [colour["name"] for colour in description.attributes["dominant_colors"]] == ["blue"]
    assert "with transparency" in description.text


def test_opaque_rgba_image_has_no_transparency() -> None:
    # Given an RGBA image whose every pixel is opaque
    content = _solid((10, 10), (0, 255, 0, 255))
    # When it is described
    # Then an alpha channel alone is not called transparency
    assert _describe(content).attributes["has_transparency"] is False


def test_fully_transparent_image() -> None:
    # Given an image with no visible pixel
    content = _solid((10, 10), (255, 0, 0, 0))
    # When it is described
    description = _describe(content)
    # Then it has no colours and says so
    assert description.attributes["dominant_colors"] == []
    assert description.attributes["brightness"] is None
    assert "fully transparent" in description.text


def test_animated_gif_frames() -> None:
    # Given a 3-frame animated GIF
    frames = [Image.new("RGB", (30, 20), colour) for colour in ("red", "green", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    content = buffer.getvalue()
    # When it is described
    description = _describe(content)
    # Then the frame count and animation are reported
    assert description.attributes["frames"] == 3
    assert description.attributes["animated"] is True
    assert "animated GIF image (3 frames)" in description.text
    assert _metadata(content, "image/gif")["frames"] == 3


# --- EXIF ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_exif_camera_is_reported_when_written(image_format: str) -> None:
    # Given an image carrying camera EXIF, with a GPS position
    content = _encode(
        Image.new("RGB", (64, 48), "white"), image_format, exif=_camera_exif(gps=True).tobytes()
    )
    # When it is described
    description = _describe(content)
    exif = description.attributes["exif"]
    # Then make, model, date, exposure settings and GPS presence are reported, and the sentence says so
    assert exif["make"] == "Canon"
    assert exif["model"] == "Canon EOS 5D"
    assert exif["taken_at"] == "2019-05-03 14:22:11"
    assert exif["exposure_time_s"] == pytest.approx(1 / 250)
    assert exif["f_number"] == pytest.approx(2.8)
    assert exif["iso"] == 100
    assert exif["focal_length_mm"] == pytest.approx(50)
    assert exif["gps_present"] is True
    assert description.attributes["has_exif"] is True
    assert (
        "Taken with a Canon EOS 5D on 2019-05-03 14:22:11 at 1/250 s, f/2.8, ISO 100, 50 mm"
        in description.text
    )
    assert "Canon Canon" not in description.text
    assert "GPS" in description.text


def test_png_exif_after_the_pixels_is_read_without_decoding_them() -> None:
    # Given a PNG whose eXIf chunk follows its pixel data, and whose pixel data is corrupt
    exif = _camera_exif(orientation=6).tobytes()[len(b"Exif\x00\x00") :]
    header = struct.pack(">IIBBBBB", 120, 80, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    content = b"".join(
        (b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", header), chunk(b"IDAT", b"not zlib"), chunk(b"eXIf", exif))
    )
    content += chunk(b"IEND", b"")
    # When the process step reads its metadata
    metadata = _metadata(content, "image/png")
    # Then the EXIF is found and applied (displayed 80x120), which proves the pixels were not decoded
    assert metadata["has_exif"] is True
    assert (metadata["width"], metadata["height"]) == (80, 120)


def test_no_exif_means_no_exif_claims() -> None:
    # Given an image without EXIF
    content = _solid((64, 48), (0, 0, 255), "JPEG")
    # When it is described
    description = _describe(content)
    # Then nothing about a camera, a date or a position is said
    assert description.attributes["has_exif"] is False
    assert "exif" not in description.attributes
    assert "Taken" not in description.text
    assert "EXIF" not in description.text
    assert "GPS" not in description.text


def test_exif_without_gps_says_no_gps() -> None:
    # Given camera EXIF without a GPS position
    content = _encode(Image.new("RGB", (64, 48), "white"), "JPEG", exif=_camera_exif().tobytes())
    # When it is described
    description = _describe(content)
    # Then GPS is reported absent
    assert description.attributes["exif"]["gps_present"] is False
    assert "GPS" not in description.text


# --- PDF, text and the rest ---------------------------------------------------------------------


def test_pdf_description() -> None:
    # Given a 3-page A4 PDF with a title and text on each page
    content = _text_pdf(
        ["Quarterly report for the filebatch project", "Second page text", "Third page text"],
        title="Quarterly report",
    )
    # When it is described
    description = _describe(content)
    attributes = description.attributes
    # Then page count, title, page size and words match what pypdf reads
    reader = PdfReader(io.BytesIO(content))
    assert attributes["page_count"] == len(reader.pages) == 3
    assert attributes["title"] == "Quarterly report"
    assert attributes["page_size_name"] == "A4"
    assert (attributes["page_width_mm"], attributes["page_height_mm"]) == (210, 297)
    assert attributes["word_count_scanned"] == 12
    assert (
        attributes["excerpt"] == "Quarterly report for the filebatch project Second page text Third page text"
    )
    assert description.text.startswith("A 3-page PDF document titled “Quarterly report”")
    assert "A4 portrait" in description.text


def test_pdf_letter_landscape_and_no_text() -> None:
    # Given a 1-page US Letter landscape PDF with no text
    writer = PdfWriter()
    writer.add_blank_page(width=792, height=612)
    buffer = io.BytesIO()
    writer.write(buffer)
    # When it is described
    description = _describe(buffer.getvalue())
    # Then the page size is named and the lack of text is said, not hidden
    assert description.attributes["page_size_name"] == "US Letter"
    assert description.attributes["page_orientation"] == "landscape"
    assert description.attributes["word_count_scanned"] == 0
    assert "excerpt" not in description.attributes
    assert "its only page has no extractable text" in description.text


def test_encrypted_pdf_is_reported_not_rejected() -> None:
    # Given a PDF encrypted with a user password
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    content = buffer.getvalue()
    # When it is described and its basic metadata read
    description = _describe(content)
    metadata = _metadata(content, "application/pdf")
    # Then it is reported as encrypted and unreadable, with no invented page count
    assert description.attributes["encrypted"] is True
    assert "page_count" not in description.attributes
    assert "encrypted" in description.text
    assert metadata == {"encrypted": True, "page_count": None}


def test_text_description() -> None:
    # Given UTF-8 text with a byte order mark, CRLF line ends and no final line break
    content = "\ufeffalpha beta\r\ngamma\r\ndelta epsilon zeta".encode()
    # When it is described
    description = _describe(content)
    # Then lines, words and characters are counted on the text (without the BOM)
    attributes = description.attributes
    assert (attributes["line_count"], attributes["word_count"], attributes["character_count"]) == (3, 6, 37)
    assert attributes["excerpt"] == "alpha beta gamma delta epsilon zeta"
    assert description.text == (
        "A plain-text file of 3 lines, 6 words and 37 characters, beginning: "
        "“alpha beta gamma delta epsilon zeta”."
    )


def test_text_excerpt_is_bounded() -> None:
    # Given a long text
    content = " ".join(f"word{index}" for index in range(100)).encode()
    # When it is described
    excerpt = _describe(content).attributes["excerpt"]
    # Then only the first 20 words are quoted, with an ellipsis
    assert excerpt.endswith("…")
    assert excerpt.removesuffix("…").split() == [f"word{index}" for index in range(20)]


def test_zip_is_described_by_type_and_size_only() -> None:
    # Given a ZIP archive
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("secret-plans.txt", "x" * 20_000)
    content = buffer.getvalue()
    # When it is described
    description = _describe(content)
    # Then only its type and size are stated, and nothing about what is inside
    assert description.attributes == {
        "kind": "other",
        "content_type": "application/zip",
        "size_bytes": len(content),
    }
    assert description.text == (
        f"A {len(content):,}-byte ZIP archive; the local provider does not look inside archives."
    )
    assert "secret" not in description.text


@pytest.mark.parametrize(
    ("content", "text"),
    [
        (b"", "An empty file (0 bytes)."),
        (b"\x00\x01\x02" * 300, "A 900-byte file in a format the local provider does not recognise."),
        (
            b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 776,
            "An 800-byte HEIF/HEIC image; the local provider cannot decode HEIF images.",
        ),
    ],
)
def test_other_types_are_described_honestly(content: bytes, text: str) -> None:
    # Given bytes the provider cannot look into
    # When they are described
    description = _describe(content)
    # Then the sentence names the type and size and nothing more
    assert description.text == text


def test_article_follows_the_sound_of_numbers() -> None:
    # Given an 800x600 image (read "an eight hundred")
    content = _solid((800, 600), (255, 255, 255), "JPEG")
    # When it is described
    # Then the sentence starts with "An"
    assert _describe(content).text.startswith(f"An 800{TIMES}600 landscape JPEG image")


# --- failures -----------------------------------------------------------------------------------


def _truncated_jpeg_header() -> bytes:
    return _solid((64, 64), (255, 0, 0), "JPEG")[:30]


def _truncated_jpeg_data() -> bytes:
    noisy = Image.effect_noise((256, 256), 64).convert("RGB")
    content = _encode(noisy, "JPEG", quality=95)
    return content[: len(content) // 2]


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(_truncated_jpeg_header(), id="jpeg-truncated-header"),
        pytest.param(_truncated_jpeg_data(), id="jpeg-truncated-data"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, id="png-garbage"),
        pytest.param(b"GIF89a" + b"\xff" * 5, id="gif-truncated"),
        pytest.param(b"%PDF-1.7\nthis is not a pdf at all\n", id="pdf-garbage"),
    ],
)
def test_corrupt_media_is_a_permanent_error(content: bytes) -> None:
    # Given bytes that claim a format (by magic) but do not parse as it
    # When they are described
    with pytest.raises(PermanentDescriptionError) as caught:
        _describe(content)
    # Then the failure is permanent (never retryable: it cannot pass on retry) and says corrupt_media
    assert caught.value.code == "corrupt_media"
    assert caught.value.message
    assert not isinstance(caught.value, RetryableDescriptionError)


def test_basic_metadata_rejects_truncated_jpeg() -> None:
    # Given a JPEG cut off inside its header
    content = _truncated_jpeg_header()
    assert detect_content_type(content) == "image/jpeg"
    # When the process step reads its metadata
    with pytest.raises(FileRejectedError) as caught:
        _metadata(content, "image/jpeg")
    # Then the file is rejected as corrupt media
    assert caught.value.code == "corrupt_media"


def test_basic_metadata_rejects_unreadable_pdf() -> None:
    # Given bytes that start like a PDF and are not one
    content = b"%PDF-1.7\nthis is not a pdf at all\n"
    # When the process step reads its metadata
    with pytest.raises(FileRejectedError) as caught:
        _metadata(content, "application/pdf")
    # Then the file is rejected as corrupt media
    assert caught.value.code == "corrupt_media"


@pytest.mark.parametrize(
    "size",
    [
        pytest.param((12_000, 10_000), id="over-the-limit"),
        pytest.param((20_000, 20_000), id="over-twice-the-limit"),
    ],
)
def test_decompression_bombs_are_refused(size: tuple[int, int]) -> None:
    # Given a PNG whose header claims more pixels than the limit
    content = _png_with_header_size(*size)
    assert size[0] * size[1] > MAX_IMAGE_PIXELS
    # When the process step reads it, and when the provider describes it
    with pytest.raises(FileRejectedError) as rejected:
        _metadata(content, "image/png")
    with pytest.raises(PermanentDescriptionError) as refused:
        _describe(content)
    # Then both refuse it as too large, with a message that says why
    assert rejected.value.code == "image_too_large"
    assert "pixel limit" in rejected.value.message
    assert refused.value.code == "unsupported_media"
    assert "pixel limit" in refused.value.message


# --- basic metadata, speed, wiring --------------------------------------------------------------


def test_basic_metadata_by_type() -> None:
    # Given one file of each kind
    png = _encode(Image.new("RGBA", (30, 20), (1, 2, 3, 4)))
    pdf = _text_pdf(["one", "two"], title="Two pages")
    text = b"one two\nthree\n"
    # When their basic metadata is read
    # Then each gets its own cheap, JSON-serialisable facts
    assert _metadata(png, "image/png") == {
        "format": "PNG",
        "width": 30,
        "height": 20,
        "mode": "RGBA",
        "frames": 1,
        "has_exif": False,
    }
    assert _metadata(pdf, "application/pdf") == {
        "encrypted": False,
        "page_count": 2,
        "title": "Two pages",
    }
    assert _facts(text).metadata == {"line_count": 2, "word_count": 3, "character_count": 14}
    assert _metadata(b"PK\x05\x06" + b"\x00" * 18, "application/zip") == {}


def test_a_twelve_megapixel_jpeg_is_decoded_at_a_reduced_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a 12-megapixel (4000x3000) photo-sized JPEG, and a spy on the frame the colours come from
    import filebatch.media.local_provider as local_provider

    gradient = Image.linear_gradient("L").resize((4000, 3000))
    image = Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT), gradient))
    content = _encode(image, "JPEG", quality=90)
    decoded: list[tuple[int, int]] = []
    original = local_provider.to_rgba

    def spy(frame: Image.Image) -> Image.Image:
        decoded.append(frame.size)
        return original(frame)

    monkeypatch.setattr(local_provider, "to_rgba", spy)
    # When it is described
    description = _describe(content)
    # Then the dimensions reported are the full ones, but the pixels decoded are at most 1/8 per side
    # (JPEG draft mode): the work does not grow with the photo's resolution
    assert (description.attributes["width"], description.attributes["height"]) == (4000, 3000)
    assert decoded and all(width <= 500 and height <= 375 for width, height in decoded), decoded


def test_provider_is_registered_as_local(provider: LocalDescriptionProvider) -> None:
    # Given the provider registry
    # When the "local" provider is asked for
    chosen = provider_named("local", PROVIDERS)
    # Then it is this provider, and its descriptions carry its name
    assert isinstance(chosen, LocalDescriptionProvider)
    assert chosen.name == provider.name == "local"
    assert provider.describe(BytesMedia(b"x\n"), _facts(b"x\n"), "x.txt").provider == "local"


def test_importing_media_modules_does_not_load_pillow_pypdf_or_the_ocr_engine() -> None:
    # Given a fresh interpreter (so nothing is loaded yet)
    code = (
        "import sys\n"
        "import filebatch.media.detect, filebatch.media.inspect, filebatch.media.local_provider\n"
        "import filebatch.media.ocr\n"
        "loaded = ('PIL', 'pypdf', 'rapidocr_onnxruntime', 'onnxruntime', 'cv2', 'numpy')\n"
        "print(sorted(name for name in loaded if name in sys.modules))\n"
    )
    # When the media modules are imported
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(REPO / "layers" / "filebatch")},
    )
    # Then none of them is imported: cold starts of functions that never describe stay fast, and the
    # OCR engine (~0.5 s) is loaded by the first image described, not by an import
    assert result.stdout.strip() == "[]"
