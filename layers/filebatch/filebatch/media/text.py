"""Plain text read as a stream of byte chunks: whether it is text at all, and its line, word and
character counts, in memory bounded by the chunk size whatever the file's size.

One scanner serves type detection (is it UTF-8 text without control bytes?) and the text facts, so
that a file is read once.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

# C0 controls other than \t \n \f \r, and DEL: their presence means binary, whatever UTF-8 says.
_BINARY_BYTES = re.compile(rb"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# Enough words for an excerpt (the local provider quotes the first twenty), bounded in characters.
FIRST_WORDS = 40
_FIRST_WORD_CHARACTERS = 2_000


@dataclass(frozen=True)
class TextStatistics:
    line_count: int
    word_count: int
    character_count: int

    def as_metadata(self) -> dict[str, int]:
        return {
            "line_count": self.line_count,
            "word_count": self.word_count,
            "character_count": self.character_count,
        }


class TextScanner:
    """Feed byte chunks in order, then `finish()`. `is_text` is False from the first binary byte or
    invalid UTF-8 sequence on (and nothing more is decoded then)."""

    def __init__(self) -> None:
        # utf-8-sig: a leading byte order mark is allowed and is not part of the text.
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.is_text = True
        self._lines = 0
        self._words = 0
        self._characters = 0
        # A "\r" at the end of a piece may be the first half of "\r\n": it is counted with the next.
        self._pending_cr = False
        # Whether the text so far ends inside a word (a word may span two chunks).
        self._in_word = False
        self._ended_with_break = False
        self.first_words: list[str] = []

    def feed(self, chunk: bytes) -> None:
        if not self.is_text:
            return
        if _BINARY_BYTES.search(chunk):
            self.is_text = False
            return
        try:
            piece = self._decoder.decode(chunk)
        except UnicodeDecodeError:
            self.is_text = False
            return
        self._count(piece)

    def finish(self) -> TextStatistics | None:
        """The counts, or None when the bytes were not UTF-8 text."""
        if self.is_text:
            try:
                self._count(self._decoder.decode(b"", final=True))
            except UnicodeDecodeError:
                self.is_text = False
        if not self.is_text:
            return None
        if self._pending_cr:
            self._lines += 1
            self._ended_with_break = True
        # A last line without its line break still counts.
        unterminated = 1 if self._characters and not self._ended_with_break else 0
        return TextStatistics(self._lines + unterminated, self._words, self._characters)

    def _count(self, piece: str) -> None:
        if not piece:
            return
        self._characters += len(piece)
        text = ("\r" if self._pending_cr else "") + piece
        self._pending_cr = text.endswith("\r")
        if self._pending_cr:
            text = text[:-1]
        self._lines += len(_LINE_BREAK.findall(text))
        if text:
            self._ended_with_break = text.endswith(("\n", "\r"))
        words = piece.split()
        if words:
            # A word cut by the chunk boundary was counted with the previous piece already.
            continues_word = self._in_word and not piece[0].isspace()
            self._words += len(words) - (1 if continues_word else 0)
            self._keep_first_words(words, continues_word)
        self._in_word = not piece[-1].isspace()

    def _keep_first_words(self, words: list[str], continues_word: bool) -> None:
        if len(self.first_words) >= FIRST_WORDS:
            return
        if continues_word and self.first_words:
            self.first_words[-1] = (self.first_words[-1] + words[0])[:_FIRST_WORD_CHARACTERS]
            words = words[1:]
        room = FIRST_WORDS - len(self.first_words)
        self.first_words.extend(word[:_FIRST_WORD_CHARACTERS] for word in words[:room])


def scan_text(content: bytes) -> TextStatistics | None:
    """The counts of `content` if it is UTF-8 text, else None."""
    scanner = TextScanner()
    scanner.feed(content)
    return scanner.finish()
