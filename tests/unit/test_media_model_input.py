"""Fitting files to what Converse takes: images scaled and re-encoded when over a documented limit
(and the result says so), files that cannot fit refused with a code."""

from __future__ import annotations

import io
import os
import tempfile
from typing import Any

import pytest
from PIL import Image

from filebatch.errors import PermanentDescriptionError
from filebatch.media.inspect import RANDOM_ACCESS_TYPES, basic_metadata, inspect_stream
from filebatch.media.model_input import DEFAULT_LIMITS, MIN_IMAGE_SIDE, InputLimits, ModelInput, prepare
from filebatch.models.domain import FileFacts


def encoded(image: Image.Image, image_format: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def noise(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """Random pixels: the worst case for every encoder, so sizes are predictable."""
    return Image.frombytes(mode, (width, height), os.urandom(width * height * len(mode)))


def prepared(content: bytes, limits: InputLimits = DEFAULT_LIMITS) -> ModelInput:
    with tempfile.TemporaryFile() as spool:
        facts = inspect_stream([content], spool)
        if facts.detected_content_type in RANDOM_ACCESS_TYPES:
            facts.metadata = basic_metadata(spool, facts.detected_content_type)
    return prepare(io.BytesIO(content), facts, limits)


def decoded(model_input: ModelInput) -> Image.Image:
    image = Image.open(io.BytesIO(model_input.content))
    image.load()
    return image


def test_an_image_within_every_limit_is_sent_byte_for_byte() -> None:
    content = encoded(noise(300, 200), "WEBP", quality=80)
    model_input = prepared(content)
    assert (model_input.kind, model_input.format, model_input.content) == ("image", "webp", content)
    assert model_input.adjustments == ()


def test_an_image_over_the_byte_limit_is_reencoded_as_jpeg_at_full_size_when_that_fits() -> None:
    # Given a 1400x1400 PNG of noise: ~5.9 MB, over 3.75 MB, but ~1.4 MB as a JPEG
    content = encoded(noise(1400, 1400), "PNG")
    assert len(content) > DEFAULT_LIMITS.image_max_bytes
    # When it is prepared
    model_input = prepared(content)
    # Then a JPEG of the same size is sent, under the limit, and the result says why
    image = decoded(model_input)
    assert (image.format, image.size) == ("JPEG", (1400, 1400))
    assert len(model_input.content) <= DEFAULT_LIMITS.image_max_bytes
    assert model_input.adjustments == (
        f"re-encoded as JPEG (the file's {len(content):,} bytes are over 3,750,000)",
    )
    assert model_input.summary()["adjusted"] is True


def test_a_transparent_image_stays_transparent_and_is_scaled_until_it_fits() -> None:
    # Given a PNG with an alpha channel that no lossless encoding of its size brings under the limit
    content = encoded(noise(1100, 1100, "RGBA"), "PNG")
    # When it is prepared
    model_input = prepared(content)
    # Then a smaller PNG with its alpha channel is sent, under the limit, and the result says so
    image = decoded(model_input)
    assert (image.format, image.mode) == ("PNG", "RGBA")
    assert image.width < 1100 and image.width == image.height
    assert len(model_input.content) <= DEFAULT_LIMITS.image_max_bytes
    assert (
        model_input.adjustments[-1] == f"scaled to {image.width}\u00d7{image.height} to fit 3,750,000 bytes"
    )


def test_a_rotated_photo_is_sent_upright_when_it_has_to_be_reencoded() -> None:
    # Given a landscape-stored JPEG whose EXIF says "rotate 90° clockwise to view" (orientation 6),
    # over the side limit
    exif = Image.Exif()
    exif[0x0112] = 6
    content = encoded(Image.new("RGB", (8200, 40), (200, 10, 10)), "JPEG", exif=exif.tobytes())
    # When it is prepared
    model_input = prepared(content)
    # Then it is sent upright (portrait), since re-encoding drops the EXIF that said how to turn it
    assert decoded(model_input).size == (39, 8000)
    assert "turned upright as its EXIF orientation says (the EXIF is not sent)" in model_input.adjustments


def test_an_animated_image_that_must_be_reencoded_sends_its_first_frame_and_says_so() -> None:
    frames = [Image.new("RGB", (8100, 20), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    model_input = prepared(buffer.getvalue())
    assert "only the first of its 2 frames was sent" in model_input.adjustments
    image = decoded(model_input)
    assert image.size == (8000, 20)
    assert image.convert("RGB").getpixel((10, 10))[0] > 200  # red, the first frame


def test_an_image_that_cannot_fit_is_refused_with_a_code() -> None:
    # Given limits no picture of at least MIN_IMAGE_SIDE px can meet
    limits = InputLimits(image_max_bytes=100)
    content = encoded(noise(512, 512), "PNG")
    # When it is prepared
    with pytest.raises(PermanentDescriptionError) as refused:
        prepared(content, limits)
    # Then it is refused permanently, saying why
    assert refused.value.code == "too_large_for_provider"
    assert refused.value.message.startswith("the image does not fit 100 bytes even at ")
    assert f"not shrunk below {MIN_IMAGE_SIDE} px a side" in refused.value.message


def test_bytes_that_do_not_decode_as_the_image_they_claim_are_corrupt_media() -> None:
    # Given a PNG signature over bytes that are not a PNG, and facts that say PNG
    content = b"\x89PNG\r\n\x1a\n" + bytes(5_000_000)
    facts = FileFacts(size_bytes=len(content), sha256="0" * 64, detected_content_type="image/png")
    # When it is prepared (too big to send as it is, so it must be decoded)
    with pytest.raises(PermanentDescriptionError) as refused:
        prepare(io.BytesIO(content), facts)
    # Then it is corrupt media, permanently
    assert refused.value.code == "corrupt_media"
