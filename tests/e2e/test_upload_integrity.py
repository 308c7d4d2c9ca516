"""Declared checksums and browser POST uploads over HTTP against the local stack, uploaded with plain
curl exactly as the instructions say. moto accepts any presigned request (wrong checksum included),
so a wrong hash reaches the workflow here: the process step's own check is what fails it (on AWS,
S3 refuses the upload first; tests/unit/test_upload_signing.py reads what it signs)."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.conftest import Stack
from tests.e2e.test_batch_lifecycle import png

pytestmark = pytest.mark.e2e


def create(stack: Stack, files: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    response = requests.post(
        f"{stack.api_url}/v1/batches", json={"files": files, **options}, headers=stack.headers(), timeout=30
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def curl(*args: str) -> str:
    """Run curl; returns the HTTP status it got (the body is discarded)."""
    done = subprocess.run(
        ["curl", "--silent", "--show-error", "--output", "/dev/null", "--write-out", "%{http_code}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def curl_put(upload: dict[str, Any], path: Path) -> str:
    headers = [arg for name, value in upload["headers"].items() for arg in ("-H", f"{name}: {value}")]
    return curl("-X", "PUT", *headers, "--data-binary", f"@{path}", upload["url"])


def curl_form(upload: dict[str, Any], path: Path, content_type: str) -> str:
    # A real multipart/form-data body, as an HTML form sends it: the fields (as literal strings), then
    # the file.
    fields = [arg for name, value in upload["fields"].items() for arg in ("--form-string", f"{name}={value}")]
    return curl(*fields, "-F", f"file=@{path};type={content_type}", upload["url"])


def test_a_wrong_declared_hash_fails_checksum_mismatch_and_right_ones_in_hex_or_base64_complete(
    stack: Stack, tmp_path: Path
) -> None:
    # Given three PNGs: one declares the SHA-256 of other bytes, one its own in hex, one in base64
    pictures = {name: png(20 + i, 10, (30 * i, 90, 160)) for i, name in enumerate(("liar", "hex", "b64"))}
    other = hashlib.sha256(png(99, 10)).hexdigest()
    declared = {
        "liar": other,
        "hex": hashlib.sha256(pictures["hex"]).hexdigest(),
        "b64": base64.b64encode(hashlib.sha256(pictures["b64"]).digest()).decode(),
    }
    created = create(
        stack,
        [
            {
                "filename": f"{name}.png",
                "size": len(content),
                "content_type": "image/png",
                "sha256": declared[name],
            }
            for name, content in pictures.items()
        ],
    )
    # When each is uploaded with plain curl and exactly the instruction's headers (moto takes the
    # liar's bytes, which S3 would refuse with BadDigest)
    for file, (name, content) in zip(created["files"], pictures.items(), strict=True):
        assert {"x-amz-checksum-sha256", "x-amz-sdk-checksum-algorithm"} <= set(file["upload"]["headers"])
        path = tmp_path / f"{name}.png"
        path.write_bytes(content)
        assert curl_put(file["upload"], path) == "200"
    status = stack.wait_terminal(str(created["batch_id"]))
    # Then the liar failed permanently with checksum_mismatch naming both digests, the others completed
    assert status["status"] == "completed_with_errors"
    results = {r["filename"]: r for r in stack.results(str(created["batch_id"]))}
    liar = results["liar.png"]
    assert liar["status"] == "failed"
    assert (liar["error"]["code"], liar["error"]["retryable"]) == ("checksum_mismatch", False)
    assert other in liar["error"]["message"]
    assert hashlib.sha256(pictures["liar"]).hexdigest() in liar["error"]["message"]
    for name in ("hex", "b64"):
        result = results[f"{name}.png"]
        assert result["status"] == "completed", result
        assert result["sha256"] == result["declared_sha256"] == hashlib.sha256(pictures[name]).hexdigest()


def test_a_browser_style_post_upload_with_curl_form_completes(stack: Stack, tmp_path: Path) -> None:
    # Given a batch created for POST uploads, its file declaring its SHA-256
    picture = png(32, 18, (10, 200, 90))
    created = create(
        stack,
        [
            {
                "filename": "form.png",
                "size": len(picture),
                "content_type": "image/png",
                "sha256": hashlib.sha256(picture).hexdigest(),
            }
        ],
        upload_method="POST",
    )
    upload = created["files"][0]["upload"]
    assert upload["method"] == "POST" and "headers" not in upload
    # When the file is posted as a real multipart/form-data body by plain curl -F
    path = tmp_path / "form.png"
    path.write_bytes(picture)
    assert curl_form(upload, path, "image/png") == "204"
    # Then the S3 event is recorded and the file is verified and described
    status = stack.wait_terminal(str(created["batch_id"]))
    assert status["status"] == "completed", status
    [result] = stack.results(str(created["batch_id"]))
    assert result["sha256"] == hashlib.sha256(picture).hexdigest()
    assert "32\u00d718" in result["description"]["text"]
    # And the ended batch hands out no more upload instructions
    again = requests.get(
        f"{stack.api_url}/v1/batches/{created['batch_id']}/uploads", headers=stack.headers(), timeout=30
    )
    assert again.status_code == 409  # the batch has ended


def test_the_local_bucket_answers_a_browser_preflight_with_the_templates_cors_rule(stack: Stack) -> None:
    # Given the local stack's upload bucket (created from template.yaml)
    bucket = stack.local.outputs["UploadBucketName"]
    # When a browser on another origin asks whether it may PUT with the checksum headers
    response = requests.options(
        f"{stack.local.moto_endpoint}/{bucket}/uploads/x",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type,if-none-match,x-amz-checksum-sha256",
        },
        timeout=10,
    )
    # Then the answer carries the template's rule: PUT and POST, the instructions' headers, ETag
    # (moto answers with the rule as it is; S3 also matches the request against it)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert response.headers["Access-Control-Allow-Methods"] == "PUT, POST"
    assert response.headers["Access-Control-Allow-Headers"] == (
        "content-type, if-none-match, x-amz-checksum-sha256, x-amz-sdk-checksum-algorithm"
    )
    assert response.headers["Access-Control-Expose-Headers"] == "ETag"
