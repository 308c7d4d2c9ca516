"""Write the text-bearing demo samples: a scanned receipt, a screenshot, and a scanned page.

    python samples/make_text_samples.py [--font-dir /usr/share/fonts/truetype/dejavu]

Every picture is drawn here with Pillow, with the DejaVu fonts (Debian/Ubuntu package fonts-dejavu-core;
free licence, see samples/README.md). The receipt and the screenshot are written for this project; the
page is the Gettysburg Address (Abraham Lincoln, 1863, public domain; the "Bliss copy" text). "Scanned"
means drawn, then turned by a degree or two, given paper and sensor noise and a slight blur, and saved as
greyscale JPEG, as a flatbed scanner would. The noise comes from a seeded generator, so the output is
the same on every run for a given Pillow (libjpeg, zlib) version.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import textwrap
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

SAMPLES = Path(__file__).resolve().parent
DEFAULT_FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")

RECEIPT_NAME = "receipt-scan.jpg"
SCREENSHOT_NAME = "screenshot-backup-dialog.png"
PAGE_NAME = "gettysburg-address-page-scan.jpg"

RECEIPT_LINES = (
    "CORNER MARKET",
    "12 Harbour Street",
    "Open daily 7:00-22:00",
    "",
    "Receipt 0042    2024-03-14 10:42",
    "",
    "Apples 1.5 kg               3.20",
    "Sourdough bread             2.40",
    "Milk 1 L                    1.15",
    "Coffee beans 250 g          4.95",
    "Free-range eggs x6          2.10",
    "",
    "TOTAL                      13.80",
    "Paid by card               13.80",
    "",
    "Thank you for shopping with us",
)

GETTYSBURG_TITLE = "Address delivered at the dedication of the Cemetery at Gettysburg."
GETTYSBURG_PARAGRAPHS = (
    "Four score and seven years ago our fathers brought forth on this continent, a new nation, "
    "conceived in Liberty, and dedicated to the proposition that all men are created equal.",
    "Now we are engaged in a great civil war, testing whether that nation, or any nation so conceived "
    "and so dedicated, can long endure. We are met on a great battle-field of that war. We have come "
    "to dedicate a portion of that field, as a final resting place for those who here gave their lives "
    "that that nation might live. It is altogether fitting and proper that we should do this.",
    "But, in a larger sense, we can not dedicate -- we can not consecrate -- we can not hallow -- this "
    "ground. The brave men, living and dead, who struggled here, have consecrated it, far above our poor "
    "power to add or detract. The world will little note, nor long remember what we say here, but it "
    "can never forget what they did here.",
)
GETTYSBURG_SIGNATURE = "Abraham Lincoln, November 19, 1863."


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--font-dir", type=Path, default=DEFAULT_FONT_DIR)
    parser.add_argument("--out", type=Path, default=SAMPLES)
    args = parser.parse_args(argv)
    fonts = Fonts(args.font_dir)
    outputs = {
        RECEIPT_NAME: lambda: save_scan(receipt(fonts), seed=42, angle=-1.6),
        SCREENSHOT_NAME: lambda: save_png(screenshot(fonts)),
        PAGE_NAME: lambda: save_scan(page(fonts), seed=1863, angle=0.8),
    }
    for name, make in outputs.items():
        content = make()
        (args.out / name).write_bytes(content)
        print(f"{name}: {len(content):,} bytes")
    return 0


# All four are in fonts-dejavu-core.
FONT_FILES = ("DejaVuSansMono.ttf", "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf")


class Fonts:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        missing = [name for name in FONT_FILES if not (directory / name).exists()]
        if missing:
            sys.exit(f"{', '.join(missing)} not in {directory}: install fonts-dejavu-core or pass --font-dir")

    def get(self, name: str, size: int) -> ImageFont.FreeTypeFont:
        return ImageFont.truetype(str(self.directory / name), size)


def receipt(fonts: Fonts) -> Image.Image:
    """Thermal-paper receipt, monospaced, on a scanner's grey lid."""
    font = fonts.get("DejaVuSansMono.ttf", 22)
    line_height = 34
    paper = Image.new("L", (520, 80 + line_height * len(RECEIPT_LINES)), 246)
    draw = ImageDraw.Draw(paper)
    for index, line in enumerate(RECEIPT_LINES):
        width = draw.textlength(line, font=font)
        # Header and footer centred, items left-aligned, as a receipt printer sets them.
        centred = index < 3 or index == len(RECEIPT_LINES) - 1
        x = (paper.width - width) / 2 if centred else 40
        draw.text((x, 40 + line_height * index), line, fill=40, font=font)
    bed = Image.new("L", (paper.width + 160, paper.height + 120), 205)
    bed.paste(paper, (80, 60))
    return bed


def screenshot(fonts: Fonts) -> Image.Image:
    """A desktop dialog at 100 % scale: title bar, message, details, two buttons."""
    image = Image.new("RGB", (960, 540), (45, 62, 80))
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = 80, 50, 880, 490
    draw.rectangle((left + 6, top + 6, right + 6, bottom + 6), fill=(30, 40, 52))  # shadow
    draw.rectangle((left, top, right, bottom), fill=(250, 250, 250))
    draw.rectangle((left, top, right, top + 44), fill=(31, 111, 178))
    draw.text((left + 20, top + 10), "Backup Assistant", fill="white", font=fonts.get("DejaVuSans.ttf", 20))
    draw.text(
        (left + 40, top + 80),
        "Backup finished with 2 warnings",
        fill=(20, 20, 20),
        font=fonts.get("DejaVuSans-Bold.ttf", 28),
    )
    body = fonts.get("DejaVuSans.ttf", 20)
    lines = (
        "1,284 files were copied to Archive (E:) in 6 minutes.",
        "2 files were skipped because access was denied:",
        "    Documents/taxes-2023.xlsx",
        "    Pictures/holiday/IMG_0412.HEIC",
        "Next backup: Sunday at 02:00",
    )
    for index, line in enumerate(lines):
        draw.text((left + 40, top + 140 + 38 * index), line, fill=(50, 50, 50), font=body)
    for label, x in (("View log", right - 300), ("Close", right - 150)):
        draw.rounded_rectangle((x, bottom - 70, x + 120, bottom - 28), radius=6, fill=(225, 228, 232))
        width = draw.textlength(label, font=body)
        draw.text((x + (120 - width) / 2, bottom - 61), label, fill=(20, 20, 20), font=body)
    return image


def page(fonts: Fonts) -> Image.Image:
    """An A5 page at 150 dpi (874 x 1240 px) set in a serif face, title, paragraphs and signature."""
    image = Image.new("L", (874, 1240), 250)
    draw = ImageDraw.Draw(image)
    body, title = fonts.get("DejaVuSerif.ttf", 21), fonts.get("DejaVuSerif.ttf", 22)
    y = 90
    for line in textwrap.wrap(GETTYSBURG_TITLE, 52):
        draw.text((90, y), line, fill=30, font=title)
        y += 36
    y += 24
    for paragraph in GETTYSBURG_PARAGRAPHS:
        for line in textwrap.wrap(paragraph, 60):
            draw.text((90, y), line, fill=35, font=body)
            y += 33
        y += 18
    signature_x = image.width - 90 - draw.textlength(GETTYSBURG_SIGNATURE, font=body)
    draw.text((signature_x, y + 20), GETTYSBURG_SIGNATURE, fill=35, font=body)
    return image


def save_scan(image: Image.Image, *, seed: int, angle: float) -> bytes:
    """Turned slightly, with seeded noise and a little blur, as greyscale JPEG."""
    turned = image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=205)
    rng = random.Random(seed)
    # Noise in 0..24, centred by the offset: each pixel moves by up to 12 grey levels either way.
    noise = Image.frombytes("L", turned.size, rng.randbytes(turned.width * turned.height)).point(
        lambda value: value * 24 // 255
    )
    noisy = ImageChops.add(turned, noise, scale=1.0, offset=-12)
    blurred = noisy.filter(ImageFilter.GaussianBlur(0.7))
    return _encode(blurred, "JPEG", quality=82, optimize=True)


def save_png(image: Image.Image) -> bytes:
    return _encode(image, "PNG", optimize=True)


def _encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
