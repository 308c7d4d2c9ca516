"""The default description provider: offline, deterministic, and limited to what it can measure.

It cannot see what a picture shows, so it never says: every word of a description is a fact computed
from the bytes (dimensions, colours, EXIF tags, page counts, words). The one reading of an image's
content is text recognition (media/ocr.py), where it is installed: what OCR read is quoted as what OCR
read, with the engine named in the attributes, and "unavailable" where it is not installed (the Lambda
layer). The description depends on the bytes alone, not on the client-chosen file name, so the same
bytes always get the same description from the same environment.

It reads only what it needs: nothing for types it does not look into, the first words of a text
(whose counts the process step measured on the same object version), and the whole file, from a
local spool, for images and PDFs.
"""

from __future__ import annotations

import math
import re
from contextlib import closing
from typing import TYPE_CHECKING, Any, BinaryIO

from filebatch.errors import FileRejectedError, PermanentDescriptionError
from filebatch.media.detect import EMPTY, TEXT, UNKNOWN
from filebatch.media.inspect import (
    PILLOW_FORMATS,
    clean_text,
    displayed_size,
    frame_count,
    open_image,
    open_pdf,
    pdf_title,
    read_exif,
    to_rgba,
)
from filebatch.media.ocr import read_text
from filebatch.media.source import MediaSource
from filebatch.media.text import FIRST_WORDS, TextScanner
from filebatch.models.domain import DEFAULT_INSTRUCTIONS, Description, DescriptionInstructions, FileFacts

if TYPE_CHECKING:
    from PIL import Image
    from pypdf import PageObject, PdfReader

# Colour statistics are taken on a thumbnail no larger than this: 4,096 pixels are plenty for shares
# rounded to whole percents, and keep the work per image constant.
ANALYSIS_SIZE = 64
DOMINANT_COLOURS = 5
EXCERPT_WORDS = 20
_EXCERPT_CHARACTERS = 160
PDF_TEXT_PAGES = 3
# A pixel at least half opaque counts as visible; colours and brightness describe visible pixels only.
_VISIBLE_ALPHA = 128
# Mean CIELAB lightness (L*, 0 to 100) bounds: perceptual, so a vivid red is not called dark.
_DARK_BELOW = 35
_BRIGHT_FROM = 65
# Written as an escape: the character itself is easily mistaken for an "x" when editing.
_TIMES = "\u00d7"

# Every name colour_name() can give: the vocabulary of descriptions.
COLOUR_NAMES = (
    "black",
    "dark grey",
    "grey",
    "light grey",
    "white",
    "dark red",
    "red",
    "pink",
    "orange",
    "brown",
    "beige",
    "yellow",
    "olive",
    "dark green",
    "green",
    "light green",
    "teal",
    "cyan",
    "dark blue",
    "blue",
    "light blue",
    "purple",
    "magenta",
)
# Below this CIELAB chroma a colour reads as a grey.
_GREY_CHROMA = 14

_FORMAT_LABELS: dict[str, str] = {
    "JPEG": "JPEG",
    "MPO": "JPEG",
    "PNG": "PNG",
    "GIF": "GIF",
    "WEBP": "WebP",
    "TIFF": "TIFF",
    "BMP": "BMP",
}

# Types the provider reports by name and size only: (what it is, why nothing more is said).
_OPAQUE_TYPES: dict[str, tuple[str, str]] = {
    "application/zip": ("ZIP archive", "the local provider does not look inside archives"),
    "application/gzip": ("gzip-compressed file", "the local provider does not decompress it"),
    "image/heic": ("HEIF/HEIC image", "the local provider cannot decode HEIF images"),
    "image/avif": ("AVIF image", "the local provider cannot decode AVIF images"),
}

# Paper sizes in millimetres (portrait), for naming a PDF page size.
_PAPER_SIZES_MM: tuple[tuple[str, float, float], ...] = (
    ("A3", 297.0, 420.0),
    ("A4", 210.0, 297.0),
    ("A5", 148.0, 210.0),
    ("US Letter", 215.9, 279.4),
    ("US Legal", 215.9, 355.6),
)
_PAPER_TOLERANCE_MM = 2.0
_POINTS_PER_MM = 72 / 25.4

# EXIF tags (IFD0, Exif IFD, GPS IFD pointers) the description reads.
_TAG_MAKE = 0x010F
_TAG_MODEL = 0x0110
_TAG_ORIENTATION = 0x0112
_TAG_SOFTWARE = 0x0131
_TAG_DATETIME = 0x0132
_IFD_EXIF = 0x8769
_IFD_GPS = 0x8825
_TAG_EXPOSURE_TIME = 0x829A
_TAG_F_NUMBER = 0x829D
_TAG_ISO = 0x8827
_TAG_DATETIME_ORIGINAL = 0x9003
_TAG_FOCAL_LENGTH = 0x920A
_TAG_LENS_MAKE = 0xA433
_TAG_LENS_MODEL = 0xA434
_EXIF_DATE = re.compile(r"^(\d{4}):(\d{2}):(\d{2})([ T].*)?$")


class LocalDescriptionProvider:
    name = "local"

    def describe(
        self,
        media: MediaSource,
        facts: FileFacts,
        filename: str,
        instructions: DescriptionInstructions = DEFAULT_INSTRUCTIONS,
    ) -> Description:
        """Describe `media` from its bytes and the facts the process step verified on exactly these
        bytes (type, size, text counts); the client-chosen `filename` is not used. It measures and
        writes English: it follows no instruction (PROVIDER_ABILITIES says so to the client)."""
        detected = facts.detected_content_type
        try:
            if detected in PILLOW_FORMATS:
                with media.open() as file:
                    text, attributes = _describe_image(file, detected, media.size)
                    # After the measurements, whose decoded frame is released by then: the two decodes
                    # are never held at once.
                    file.seek(0)
                    reading = read_text(file)
                attributes.update(reading)
                text = _with_text_read(text, reading)
            elif detected == "application/pdf":
                with media.open() as file:
                    text, attributes = _describe_pdf(file, media.size)
            elif detected == TEXT:
                text, attributes = _describe_text(media, facts)
            else:
                text, attributes = _describe_opaque(media.size, detected)
        except FileRejectedError as exc:
            # Nothing in a local computation is transient: media that cannot be read now never will be.
            code = "unsupported_media" if exc.code == "image_too_large" else "corrupt_media"
            raise PermanentDescriptionError(exc.message, code=code) from exc
        return Description(provider=self.name, text=text, attributes=attributes)


# --- images -------------------------------------------------------------------------------------


def _describe_image(file: BinaryIO, detected: str, size: int) -> tuple[str, dict[str, Any]]:
    from PIL import Image

    with open_image(file) as image:
        exif = read_exif(image, file)
        # Inside the block: a TIFF's EXIF sub-directories are read from the open file.
        exif_facts = _exif_facts(exif)
        width, height = displayed_size(image, exif)
        frames = frame_count(image)
        image_format = image.format or PILLOW_FORMATS[detected]
        mode = image.mode
        # On a JPEG, decode at a reduced DCT scale (up to 1/8): a 12 MP photo then decodes in tens of ms.
        image.draft(None, (ANALYSIS_SIZE * 4, ANALYSIS_SIZE * 4))
        rgba = to_rgba(image)
        lowest_alpha = rgba.getchannel("A").getextrema()[0] if image.has_transparency_data else 255
        has_transparency = isinstance(lowest_alpha, int) and lowest_alpha < 255
        thumbnail = rgba.resize(
            (min(rgba.width, ANALYSIS_SIZE), min(rgba.height, ANALYSIS_SIZE)), Image.Resampling.BOX
        )

    colours, mean_lightness = _colour_statistics(thumbnail)
    animated = frames > 1 and image_format != "TIFF"
    attributes: dict[str, Any] = {
        "kind": "image",
        "content_type": detected,
        "size_bytes": size,
        "format": image_format,
        "width": width,
        "height": height,
        "orientation": _orientation(width, height),
        "mode": mode,
        "frames": frames,
        "animated": animated,
        "has_transparency": has_transparency,
        "dominant_colors": colours,
        "mean_lightness": mean_lightness,
        "brightness": _brightness(mean_lightness),
        "has_exif": len(exif) > 0,
    }
    if exif_facts:
        attributes["exif"] = exif_facts

    sentences = [_image_sentence(attributes)]
    exif_sentence = _exif_sentence(exif_facts)
    if exif_sentence:
        sentences.append(exif_sentence)
    return " ".join(sentences), attributes


def _colour_statistics(thumbnail: Image.Image) -> tuple[list[dict[str, Any]], float | None]:
    """The most common colour names among visible pixels, each with the average colour of its pixels
    and its share, and the pixels' mean CIELAB lightness L* (0 to 100); ([], None) when no pixel is
    visible.

    Each pixel is named before counting: clustering first (median cut, k-means) averages a blue sky
    and a face into a grey that is in neither.
    """
    data = thumbnail.tobytes()
    # name → [pixels, sum of red, sum of green, sum of blue]
    totals: dict[str, list[int]] = {}
    # Photos repeat colours, and naming one costs a colour-space conversion.
    seen: dict[tuple[int, int, int], tuple[str, float]] = {}
    visible = 0
    lightness_total = 0.0
    for offset in range(0, len(data), 4):
        red, green, blue, alpha = data[offset : offset + 4]
        if alpha < _VISIBLE_ALPHA:
            continue
        rgb = (red, green, blue)
        known = seen.get(rgb)
        if known is None:
            lab = _lab(rgb)
            known = seen[rgb] = (_name_of(lab), lab[0])
        name, lightness = known
        total = totals.setdefault(name, [0, 0, 0, 0])
        total[0] += 1
        total[1] += red
        total[2] += green
        total[3] += blue
        visible += 1
        lightness_total += lightness
    if visible == 0:
        return [], None
    # Ties broken by name so that the order never depends on dictionary order.
    ranked = sorted(totals.items(), key=lambda item: (-item[1][0], item[0]))[:DOMINANT_COLOURS]
    colours = [
        {
            "name": name,
            "hex": "#" + "".join(f"{round(channel / count):02x}" for channel in sums),
            "share_percent": round(100 * count / visible, 1),
        }
        for name, (count, *sums) in ranked
    ]
    return colours, round(lightness_total / visible, 1)


def colour_name(rgb: tuple[int, int, int]) -> str:
    """The everyday name of an sRGB colour, from its CIELAB lightness, chroma and hue.

    Hue, lightness and chroma are judged separately because a nearest-reference-colour rule calls
    every muted colour (a dusk sky, a wooden table) grey.
    """
    return _name_of(_lab(rgb))


def _name_of(lab: tuple[float, float, float]) -> str:
    lightness, a, b = lab
    chroma = math.hypot(a, b)
    hue = math.degrees(math.atan2(b, a)) % 360
    if lightness < 12 and chroma < 25:
        return "black"
    if chroma < _GREY_CHROMA or (lightness > 93 and chroma < 15):
        return _grey(lightness)
    # Hue angles in CIELAB: red is near 40, orange 65, yellow 100, green 135, cyan 195, blue 305.
    if hue < 20 or hue >= 350:
        return "dark red" if lightness < 35 else "pink" if lightness > 60 else "red"
    if hue < 50:
        if lightness > 65:
            return "pink" if hue < 40 else "beige"
        return "dark red" if lightness < 35 else "red" if chroma > 55 else "brown"
    if hue < 80:
        if lightness > 70 and chroma < 45:
            return "beige"
        return "brown" if lightness < 70 and chroma < 60 else "orange"
    if hue < 110:
        if lightness < 55:
            return "olive" if chroma > 25 else "brown"
        return "beige" if chroma < 50 else "yellow"
    if hue < 170:
        if lightness < 40:
            return "dark green"
        return "light green" if lightness > 80 and chroma < 80 else "green"
    if hue < 235:
        if lightness < 55:
            return "teal"
        return "cyan" if chroma > 30 else "light blue"
    if hue < 312:
        return "dark blue" if lightness < 28 else "light blue" if lightness > 68 else "blue"
    if lightness > 65:
        return "pink"
    return "magenta" if chroma > 60 and lightness >= 45 else "purple"


def _lab(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """sRGB to CIELAB (D65): a space where equal distances look like equal differences."""

    def linear(channel: int) -> float:
        value = channel / 255
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    red, green, blue = (linear(channel) for channel in rgb)
    x = (0.4124 * red + 0.3576 * green + 0.1805 * blue) / 0.95047
    y = 0.2126 * red + 0.7152 * green + 0.0722 * blue
    z = (0.0193 * red + 0.1192 * green + 0.9505 * blue) / 1.08883
    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def _grey(lightness: float) -> str:
    if lightness < 12:
        return "black"
    if lightness < 38:
        return "dark grey"
    if lightness < 68:
        return "grey"
    return "light grey" if lightness < 90 else "white"


def _orientation(width: int, height: int) -> str:
    if width > height:
        return "landscape"
    return "portrait" if height > width else "square"


def _brightness(mean_lightness: float | None) -> str | None:
    if mean_lightness is None:
        return None
    if mean_lightness < _DARK_BELOW:
        return "dark"
    return "bright" if mean_lightness >= _BRIGHT_FROM else "medium"


def _image_sentence(attributes: dict[str, Any]) -> str:
    label = _FORMAT_LABELS.get(attributes["format"], attributes["format"])
    frames = attributes["frames"]
    if attributes["animated"]:
        kind = f"animated {label} image ({frames} frames)"
    elif frames > 1:
        kind = f"{label} image ({frames} pages)"
    else:
        kind = f"{label} image"
    if attributes["has_transparency"]:
        kind += " with transparency"
    head = f"{attributes['width']}{_TIMES}{attributes['height']} {attributes['orientation']} {kind}"
    if not attributes["dominant_colors"]:
        return f"{_opening(head)}, fully transparent."
    brightness = {"dark": "dark overall", "medium": "of medium brightness", "bright": "bright overall"}
    return (
        f"{_opening(head)}, {_colour_phrase(attributes['dominant_colors'])}, "
        f"{brightness[attributes['brightness']]}."
    )


def _colour_phrase(colours: list[dict[str, Any]]) -> str:
    named = [f"{colour['name']} ({_percent(colour['share_percent'])})" for colour in colours[:3]]
    top = colours[0]
    if top["share_percent"] >= 99.5:
        return f"entirely {top['name']}"
    if top["share_percent"] >= 60:
        return f"mostly {named[0]} with {_join(named[1:])}"
    return f"a mix of {_join(named)}"


def _percent(share: float) -> str:
    return f"{round(share)}%" if share >= 0.5 else "<1%"


def _with_text_read(text: str, reading: dict[str, Any]) -> str:
    """The image's sentences, then what OCR read, quoted; nothing more when it read nothing (the
    attributes say whether it ran)."""
    lines = reading.get("text_lines")
    if not lines:
        return text
    found, read = reading["text_lines_found"], len(lines)
    words = " ".join(line["text"] for line in lines).split()
    quoted = _excerpt(words)
    if found == read:
        return f"{text} OCR read {_plural(read, 'line')} of text in it: “{quoted}”."
    return f"{text} OCR found {_plural(found, 'line')} of text in it and read {read}: “{quoted}”."


# --- EXIF ---------------------------------------------------------------------------------------


def _exif_facts(exif: Image.Exif) -> dict[str, Any]:
    """The EXIF fields a person cares about, only those present, as JSON values."""
    if len(exif) == 0:
        return {}
    details = _sub_directory(exif, _IFD_EXIF)
    facts: dict[str, Any] = {}
    for key, value in (
        ("make", exif.get(_TAG_MAKE)),
        ("model", exif.get(_TAG_MODEL)),
        ("lens_make", details.get(_TAG_LENS_MAKE)),
        ("lens", details.get(_TAG_LENS_MODEL)),
        ("software", exif.get(_TAG_SOFTWARE)),
    ):
        text = clean_text(value, limit=80)
        if text:
            facts[key] = text
    for key, value in (
        ("taken_at", details.get(_TAG_DATETIME_ORIGINAL)),
        ("modified_at", exif.get(_TAG_DATETIME)),
    ):
        date = _exif_date(value)
        if date:
            facts[key] = date
    for key, value in (
        ("exposure_time_s", details.get(_TAG_EXPOSURE_TIME)),
        ("f_number", details.get(_TAG_F_NUMBER)),
        ("focal_length_mm", details.get(_TAG_FOCAL_LENGTH)),
    ):
        number = _positive_number(value)
        if number is not None:
            facts[key] = number
    iso = _positive_number(details.get(_TAG_ISO))
    if iso is not None:
        facts["iso"] = int(iso)
    orientation = exif.get(_TAG_ORIENTATION)
    if isinstance(orientation, int) and orientation != 1:
        facts["orientation_tag"] = orientation
    facts["gps_present"] = len(_sub_directory(exif, _IFD_GPS)) > 0
    return facts


def _sub_directory(exif: Image.Exif, tag: int) -> dict[int, Any]:
    try:
        return dict(exif.get_ifd(tag))
    except Exception:
        # A broken pointer to a sub-directory loses that directory's fields, not the whole description.
        return {}


def _exif_date(value: object) -> str | None:
    text = clean_text(value, limit=40)
    if text is None:
        return None
    match = _EXIF_DATE.match(text)
    # EXIF writes dates as 2019:05:03 14:22:11; ISO-style dashes read better and sort the same.
    return f"{match[1]}-{match[2]}-{match[3]}{match[4] or ''}" if match else text


def _positive_number(value: object) -> float | None:
    if isinstance(value, tuple):
        value = value[0] if value else None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    # IFDRational with a zero denominator is NaN; zero means "unknown" in EXIF.
    return round(number, 6) if math.isfinite(number) and number > 0 else None


def _exif_sentence(facts: dict[str, Any]) -> str | None:
    if not facts:
        return None
    camera = _camera(facts.get("make"), facts.get("model"))
    settings = []
    if "exposure_time_s" in facts:
        exposure = facts["exposure_time_s"]
        settings.append(f"1/{round(1 / exposure)} s" if exposure < 1 else f"{exposure:g} s")
    if "f_number" in facts:
        settings.append(f"f/{facts['f_number']:g}")
    if "iso" in facts:
        settings.append(f"ISO {facts['iso']}")
    if "focal_length_mm" in facts:
        settings.append(f"{facts['focal_length_mm']:g} mm")

    taken = "taken"
    if camera:
        taken += f" with {_article(camera)} {camera}"
    if "lens" in facts:
        taken += f" and {_article(facts['lens'])} {facts['lens']} lens"
    if "taken_at" in facts:
        taken += f" on {facts['taken_at']}"
    if settings:
        taken += f" at {', '.join(settings)}"

    extras = []
    if facts["gps_present"]:
        extras.append("includes a GPS position")
    if "software" in facts:
        extras.append(f"names the software {facts['software']}")
    if "modified_at" in facts and "taken_at" not in facts:
        extras.append(f"is dated {facts['modified_at']}")

    clauses = []
    if taken != "taken":
        clauses.append(taken)
    if extras:
        clauses.append(f"its EXIF data {_join(extras)}")
    if not clauses:
        return None
    sentence = "; ".join(clauses)
    return sentence[0].upper() + sentence[1:] + "."


def _camera(make: str | None, model: str | None) -> str | None:
    if not model:
        return make
    # Models usually repeat the make ("Canon" + "Canon EOS 5D"; "NIKON CORPORATION" + "NIKON D750").
    if not make or model.lower().startswith(make.split()[0].lower()):
        return model
    return f"{make} {model}"


# --- PDF ----------------------------------------------------------------------------------------


def _describe_pdf(file: BinaryIO, size_bytes: int) -> tuple[str, dict[str, Any]]:
    with open_pdf(file) as pdf:
        reader = pdf.reader
        attributes: dict[str, Any] = {
            "kind": "document",
            "content_type": "application/pdf",
            "size_bytes": size_bytes,
            "format": "PDF",
            "encrypted": bool(reader.is_encrypted),
        }
        if not pdf.readable:
            return (
                f"An encrypted {size_bytes:,}-byte PDF document; the local provider cannot open it "
                "without its password.",
                attributes,
            )
        page_count = len(reader.pages)
        attributes["page_count"] = page_count
        attributes.update(_pdf_document_info(reader))
        if page_count:
            attributes.update(_page_size(reader.pages[0]))
            attributes.update(_pdf_text(reader, page_count))

    head = f"{page_count}-page PDF document" if page_count else "PDF document with no pages"
    parts = [_opening(head)]
    if "title" in attributes:
        parts.append(f" titled “{attributes['title']}”")
    if "author" in attributes:
        parts.append(f" by {attributes['author']}")
    if page_count:
        paper = attributes.get("page_size_name")
        size = f"{attributes['page_width_mm']:g}{_TIMES}{attributes['page_height_mm']:g} mm"
        parts.append(
            f", first page {paper} {attributes['page_orientation']} ({size})"
            if paper
            else f", first page {size}"
        )
        parts.append("; " + _pdf_text_phrase(attributes))
    return "".join(parts) + ".", attributes


def _pdf_document_info(reader: PdfReader) -> dict[str, str]:
    info = reader.metadata
    if info is None:
        return {}
    found = {
        "title": pdf_title(reader),
        "author": clean_text(info.author),
        "producer": clean_text(info.producer),
    }
    return {key: value for key, value in found.items() if value}


def _page_size(page: PageObject) -> dict[str, Any]:
    width_pt, height_pt = abs(float(page.mediabox.width)), abs(float(page.mediabox.height))
    # A page rotated by a quarter turn is displayed with its sides swapped.
    if page.rotation % 180 == 90:
        width_pt, height_pt = height_pt, width_pt
    width_mm, height_mm = round(width_pt / _POINTS_PER_MM), round(height_pt / _POINTS_PER_MM)
    facts: dict[str, Any] = {
        "page_width_pt": round(width_pt, 1),
        "page_height_pt": round(height_pt, 1),
        "page_width_mm": width_mm,
        "page_height_mm": height_mm,
        "page_orientation": _orientation(round(width_pt), round(height_pt)),
    }
    short, long = sorted((width_pt / _POINTS_PER_MM, height_pt / _POINTS_PER_MM))
    for name, paper_short, paper_long in _PAPER_SIZES_MM:
        if abs(short - paper_short) <= _PAPER_TOLERANCE_MM and abs(long - paper_long) <= _PAPER_TOLERANCE_MM:
            facts["page_size_name"] = name
            break
    return facts


def _pdf_text(reader: PdfReader, page_count: int) -> dict[str, Any]:
    scanned = min(page_count, PDF_TEXT_PAGES)
    words: list[str] = []
    failed_pages = []
    for number in range(scanned):
        try:
            words.extend(reader.pages[number].extract_text().split())
        except Exception:
            # A content stream pypdf cannot interpret leaves that page's text unknown; the document as a
            # whole was readable, so this is reported rather than raised.
            failed_pages.append(number + 1)
    facts: dict[str, Any] = {"text_pages_scanned": scanned, "word_count_scanned": len(words)}
    if words:
        facts["excerpt"] = _excerpt(words)
    if failed_pages:
        facts["text_unreadable_pages"] = failed_pages
    return facts


def _pdf_text_phrase(attributes: dict[str, Any]) -> str:
    scanned, total = attributes["text_pages_scanned"], attributes["page_count"]
    if total == 1:
        pages = "its only page"
    elif scanned == total:
        pages = f"its {scanned} pages"
    else:
        pages = f"its first {scanned} pages"
    singular = scanned == 1
    words = attributes["word_count_scanned"]
    if not words:
        return f"{pages} {'has' if singular else 'have'} no extractable text"
    verb = "holds" if singular else "hold"
    return f"{pages} {verb} {_plural(words, 'word')} of text, beginning: “{attributes['excerpt']}”"


# --- text and the rest --------------------------------------------------------------------------


def _describe_text(media: MediaSource, facts: FileFacts) -> tuple[str, dict[str, Any]]:
    statistics = {key: int(facts.metadata[key]) for key in ("line_count", "word_count", "character_count")}
    attributes: dict[str, Any] = {
        "kind": "text",
        "content_type": TEXT,
        "size_bytes": media.size,
        "encoding": "utf-8",
        **statistics,
    }
    words = _first_words(media)
    lines, characters = statistics["line_count"], statistics["character_count"]
    head = (
        f"A plain-text file of {_plural(lines, 'line')}, {_plural(statistics['word_count'], 'word')} "
        f"and {_plural(characters, 'character')}"
    )
    if not words:
        return f"{head}, all of them whitespace.", attributes
    attributes["excerpt"] = _excerpt(words, more=statistics["word_count"] > len(words))
    return f"{head}, beginning: “{attributes['excerpt']}”.", attributes


def _first_words(media: MediaSource) -> list[str]:
    """The first words of the text, reading only as many chunks as they take."""
    scanner = TextScanner()
    with closing(media.chunks()) as chunks:
        for chunk in chunks:
            scanner.feed(chunk)
            if len(scanner.first_words) >= FIRST_WORDS:
                break
    return scanner.first_words


def _describe_opaque(size: int, detected: str) -> tuple[str, dict[str, Any]]:
    attributes: dict[str, Any] = {"kind": "other", "content_type": detected, "size_bytes": size}
    if detected == EMPTY:
        return "An empty file (0 bytes).", attributes
    if detected == UNKNOWN or detected not in _OPAQUE_TYPES:
        return (
            f"A {size:,}-byte file in a format the local provider does not recognise.",
            attributes,
        )
    label, reason = _OPAQUE_TYPES[detected]
    head = f"{size:,}-byte {label}"
    return f"{_opening(head)}; {reason}.", attributes


# --- wording ------------------------------------------------------------------------------------


def _excerpt(words: list[str], *, more: bool = False) -> str:
    """The first EXCERPT_WORDS words, bounded in characters too: a CSV line or a URL is one "word".
    `more`: the text goes on beyond `words`."""
    kept: list[str] = []
    length = 0
    for word in words[:EXCERPT_WORDS]:
        if length + len(word) > _EXCERPT_CHARACTERS:
            kept.append(word[: max(_EXCERPT_CHARACTERS - length, 1)])
            break
        kept.append(word)
        length += len(word) + 1
    excerpt = clean_text(" ".join(kept), limit=_EXCERPT_CHARACTERS * 2) or ""
    cut = more or len(kept) < len(words) or excerpt != " ".join(words[: len(kept)])
    return excerpt + ("…" if cut else "")


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _opening(phrase: str) -> str:
    """The start of a sentence about `phrase`: "A 12-page PDF...", "An 800..."."""
    return f"{_article(phrase).capitalize()} {phrase}"


def _article(phrase: str) -> str:
    """ "a" or "an" by sound: "an 800 by 600 image", "an 11-page PDF", "a 1,100-byte file", "an EF lens".

    Letters are judged as written, which is right for the names that occur here (camera makes and
    models, lenses) except initialisms read letter by letter, which are rare enough to accept.
    """
    number = re.match(r"[\d,]+", phrase)
    if number:
        groups = number[0].split(",")
        leading = groups[0] if len(groups) > 1 else _leading_group(groups[0])
        return "an" if leading.startswith("8") or leading in ("11", "18") else "a"
    return "an" if phrase[:1].lower() in ("a", "e", "i", "o") else "a"


def _leading_group(digits: str) -> str:
    # Read aloud in thousands: 11000 starts with "eleven", 110 with "one hundred".
    return digits[: (len(digits) - 1) % 3 + 1]
