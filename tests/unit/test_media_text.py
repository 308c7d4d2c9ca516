"""Text read as a stream of chunks gives exactly the counts of the whole text read at once."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from filebatch.media.text import FIRST_WORDS, TextScanner, scan_text

# The definitions the counts must keep, on the whole text: lines end in \n, \r\n or \r and a last
# line without a break counts; words are what str.split() gives; characters after the byte order mark.
_BREAK = re.compile(r"\r\n|\r|\n")


def whole_text_counts(text: str) -> tuple[int, int, int]:
    unterminated = 1 if text and not text.endswith(("\n", "\r")) else 0
    return len(_BREAK.findall(text)) + unterminated, len(text.split()), len(text)


def streamed(content: bytes, chunk_size: int) -> TextScanner:
    scanner = TextScanner()
    for start in range(0, len(content), chunk_size):
        scanner.feed(content[start : start + chunk_size])
    return scanner


# Text rich in what chunk boundaries can cut: line breaks of every kind, multi-byte characters,
# Unicode whitespace, a byte order mark.
texts = st.text(
    alphabet=st.sampled_from(
        ["a", "b", " ", "\t", "\n", "\r", "\u00e9", "\u4e2d", "\U0001f600", "\u2003", "\x0c"]
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(text=texts, bom=st.booleans(), chunk_size=st.integers(min_value=1, max_value=17))
def test_streamed_counts_equal_whole_text_counts_at_any_chunk_size(
    text: str, bom: bool, chunk_size: int
) -> None:
    # Given UTF-8 text (maybe with a byte order mark) cut into chunks of any size
    content = ("\ufeff" if bom else "").encode() + text.encode()
    # When it is scanned chunk by chunk
    scanner = streamed(content, chunk_size)
    statistics = scanner.finish()
    # Then the counts are those of the whole text, and the first words are the text's first words
    assert statistics is not None
    assert (statistics.line_count, statistics.word_count, statistics.character_count) == whole_text_counts(
        text
    )
    assert scanner.first_words == text.split()[:FIRST_WORDS]


@settings(max_examples=200, deadline=None)
@given(
    text=texts, cut=st.integers(min_value=0, max_value=200), chunk_size=st.integers(min_value=1, max_value=9)
)
def test_invalid_utf8_or_a_control_byte_anywhere_means_not_text(text: str, cut: int, chunk_size: int) -> None:
    # Given text with one byte that text never has, at any position
    content = text.encode()
    position = min(cut, len(content))
    for intruder in (b"\x00", b"\xff", b"\x1b"):
        spoiled = content[:position] + intruder + content[position:]
        # When it is scanned chunk by chunk, Then it is not text
        assert streamed(spoiled, chunk_size).finish() is None


def test_a_multibyte_character_cut_at_the_end_of_the_file_is_not_text() -> None:
    assert scan_text("caf\u00e9".encode()[:-1]) is None
    assert scan_text(b"") is not None
