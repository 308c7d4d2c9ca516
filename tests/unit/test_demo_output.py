"""What `make demo` prints for one file: the description, and all the text OCR read in an image."""

from __future__ import annotations

from typing import Any

from filebatch_local.demo import _result_block
from filebatch_sdk import FileResult


def _result(attributes: dict[str, Any], text: str = "A 702\u00d7764 portrait JPEG image.") -> FileResult:
    return FileResult.from_json(
        {
            "file_id": "f00001",
            "filename": "receipt-scan.jpg",
            "status": "completed",
            "declared_size": 70622,
            "declared_content_type": "image/jpeg",
            "detected_content_type": "image/jpeg",
            "description": {"provider": "local", "text": text, "attributes": attributes},
        }
    )


def test_the_text_ocr_read_is_shown_in_full_one_line_after_another() -> None:
    # Given a result whose description holds three lines read by OCR
    result = _result(
        {
            "ocr": "rapidocr-onnxruntime 1.4.4",
            "text_in_image": "CORNER MARKET\n12 Harbour Street\nTOTAL 13.80",
        }
    )
    # When the demo prints it
    block = _result_block(result)
    # Then a "text read" field follows the description, with every line read
    assert block[3].split()[0] == "description"
    assert block[4].split()[:2] == ["text", "read"]
    assert block[4].endswith("CORNER MARKET / 12 Harbour Street / TOTAL 13.80")


def test_a_picture_where_ocr_found_nothing_gets_no_text_field() -> None:
    # Given a photo's result where OCR ran and read nothing
    result = _result({"ocr": "rapidocr-onnxruntime 1.4.4", "text_in_image": "", "text_lines": []})
    # When the demo prints it
    block = _result_block(result)
    # Then there is no "text read" field
    assert not any(line.split()[:2] == ["text", "read"] for line in block)


def test_without_ocr_the_demo_says_the_text_was_not_read() -> None:
    # Given a result from an environment without the OCR engine
    result = _result({"ocr": "unavailable"})
    # When the demo prints it
    text_field = [line for line in _result_block(result) if line.split()[:2] == ["text", "read"]]
    # Then it says the text was not read, and why
    assert len(text_field) == 1
    assert "not read" in text_field[0]
    assert "not installed" in text_field[0]


def test_results_of_other_kinds_are_unchanged() -> None:
    # Given a text file's result (no OCR attributes)
    result = _result({"kind": "text", "excerpt": "hello"}, text="A plain-text file of 1 line.")
    # When the demo prints it
    block = _result_block(result)
    # Then it is the file name, status, type and description
    assert [line.split()[0] for line in block] == ["receipt-scan.jpg", "status", "type", "description"]
