"""Upload instructions as botocore really signs them (no fake signer): what a presigned PUT signs,
what a presigned POST's policy pins, and the bucket's CORS and policy that let browsers use them.

moto accepts any presigned request (docs/local-stack.md), so what S3 would enforce is read off the
signature and the policy here, and re-checked by the product after upload (the process step)."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import boto3
import pytest
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from filebatch import runtime
from filebatch.adapters.s3 import S3ObjectStorage
from filebatch.models.domain import sha256_base64
from filebatch_local.template import load_template
from tests.conftest import PROJECT_ROOT

RESOURCES: dict[str, Any] = load_template(PROJECT_ROOT / "template.yaml")["Resources"]
BUCKET = "filebatch-uploads"
KEY = "uploads/acme/b-0123456789abcdef0123456789abcdef/f00001"
CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token")
CONTENT = b"\x89PNG\r\n\x1a\n" + b"pixels" * 100
DIGEST = hashlib.sha256(CONTENT).hexdigest()


def storage() -> S3ObjectStorage:
    # The deployed functions' client configuration (SigV4 for presigned URLs), offline credentials.
    client = boto3.client(
        "s3",
        region_name="eu-west-1",
        aws_access_key_id=CREDENTIALS.access_key,
        aws_secret_access_key=CREDENTIALS.secret_key,
        aws_session_token=CREDENTIALS.token,
        config=runtime._client_config("s3"),
    )
    return S3ObjectStorage(BUCKET, client)


def query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def resigned(url: str, headers: dict[str, str], *, size: int, monkeypatch: pytest.MonkeyPatch) -> str:
    """The signature botocore computes for a PUT of `size` bytes with `headers` to `url`'s object, at
    the URL's own time and expiry: equal to the URL's only when it signed exactly these values."""
    signed = query(url)
    parts = urlsplit(url)
    # The operation's own query parameters (an UploadPart's uploadId and partNumber) are signed too.
    operation_query = urlencode(
        {name: value for name, value in signed.items() if not name.startswith("X-Amz-")}
    )
    bare = urlunsplit((parts.scheme, parts.netloc, parts.path, operation_query, ""))
    signed_at = datetime.strptime(signed["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: signed_at.replace(tzinfo=None))
    request = AWSRequest(method="PUT", url=bare, headers={**headers, "Content-Length": str(size)})
    S3SigV4QueryAuth(CREDENTIALS, "s3", "eu-west-1", expires=int(signed["X-Amz-Expires"])).add_auth(request)
    return query(request.url)["X-Amz-Signature"]


def test_a_presigned_put_signs_the_declared_size_type_and_create_only_condition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a file declared as N bytes of type T, without a checksum
    # When its PUT is presigned
    url, headers = storage().presign_put(KEY, content_type="image/png", size=len(CONTENT), expires_in=900)
    # Then Content-Length, Content-Type and If-None-Match are signed headers, and the client is told
    # to send exactly the signed headers it can set (Host and Content-Length come with the request)
    signed_headers = query(url)["X-Amz-SignedHeaders"].split(";")
    assert signed_headers == ["content-length", "content-type", "host", "if-none-match"]
    assert {name.lower() for name in headers} | {"host", "content-length"} == set(signed_headers)
    assert headers == {"Content-Type": "image/png", "If-None-Match": "*"}
    # And the signature holds for exactly those values: another size or type is another signature
    assert resigned(url, headers, size=len(CONTENT), monkeypatch=monkeypatch) == query(url)["X-Amz-Signature"]
    assert (
        resigned(url, headers, size=len(CONTENT) + 1, monkeypatch=monkeypatch)
        != query(url)["X-Amz-Signature"]
    )
    other_type = {**headers, "Content-Type": "image/jpeg"}
    assert (
        resigned(url, other_type, size=len(CONTENT), monkeypatch=monkeypatch) != query(url)["X-Amz-Signature"]
    )


def test_a_declared_sha256_is_signed_as_checksum_headers_that_plain_http_clients_can_send(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a file that declares its SHA-256
    # When its PUT is presigned
    url, headers = storage().presign_put(
        KEY, content_type="image/png", size=len(CONTENT), expires_in=900, sha256=DIGEST
    )
    # Then the checksum (base64 of the digest) and its algorithm are signed headers, so S3 itself
    # refuses bytes whose SHA-256 differs; the instruction's headers are exactly those signed
    signed_headers = query(url)["X-Amz-SignedHeaders"].split(";")
    assert signed_headers == [
        "content-length",
        "content-type",
        "host",
        "if-none-match",
        "x-amz-checksum-sha256",
        "x-amz-sdk-checksum-algorithm",
    ]
    assert headers == {
        "Content-Type": "image/png",
        "If-None-Match": "*",
        "x-amz-checksum-sha256": base64.b64encode(hashlib.sha256(CONTENT).digest()).decode(),
        "x-amz-sdk-checksum-algorithm": "SHA256",
    }
    assert {name.lower() for name in headers} | {"host", "content-length"} == set(signed_headers)
    # And botocore's flexible checksums added nothing a plain client could not send: no checksum
    # hoisted into the query (S3 ignores it there), no CRC32 of its own, no streaming trailer
    assert not any("checksum" in name.lower() or "trailer" in name.lower() for name in query(url))
    assert "x-amz-content-sha256" not in signed_headers
    # And the signature holds for exactly this checksum: another digest is another signature
    signature = query(url)["X-Amz-Signature"]
    assert resigned(url, headers, size=len(CONTENT), monkeypatch=monkeypatch) == signature
    other_digest = {**headers, "x-amz-checksum-sha256": sha256_base64(hashlib.sha256(b"other").hexdigest())}
    assert resigned(url, other_digest, size=len(CONTENT), monkeypatch=monkeypatch) != signature


def test_a_part_url_signs_the_parts_length_and_the_sha256_the_client_gave_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given part 3 of a multipart upload with part checksums, and the SHA-256 the client computed
    # When its UploadPart is presigned with that digest
    url, headers = storage().presign_upload_part(
        KEY, "upload-1", 3, size=len(CONTENT), expires_in=900, sha256=DIGEST
    )
    # Then the URL is the part's, and the checksum (base64) and its algorithm are signed headers the
    # client is told to send, beside the signed length, so S3 refuses bytes of another digest
    assert (query(url)["uploadId"], query(url)["partNumber"]) == ("upload-1", "3")
    signed_headers = query(url)["X-Amz-SignedHeaders"].split(";")
    assert signed_headers == [
        "content-length",
        "host",
        "x-amz-checksum-sha256",
        "x-amz-sdk-checksum-algorithm",
    ]
    assert headers == {
        "x-amz-checksum-sha256": sha256_base64(DIGEST),
        "x-amz-sdk-checksum-algorithm": "SHA256",
    }
    assert not any("checksum" in name.lower() or "trailer" in name.lower() for name in query(url))
    # And the signature holds for exactly this digest and length
    signature = query(url)["X-Amz-Signature"]
    assert resigned(url, headers, size=len(CONTENT), monkeypatch=monkeypatch) == signature
    other_digest = {**headers, "x-amz-checksum-sha256": sha256_base64(hashlib.sha256(b"other").hexdigest())}
    assert resigned(url, other_digest, size=len(CONTENT), monkeypatch=monkeypatch) != signature
    assert resigned(url, headers, size=len(CONTENT) - 1, monkeypatch=monkeypatch) != signature


def test_a_part_url_without_a_digest_signs_its_length_only() -> None:
    url, headers = storage().presign_upload_part(KEY, "upload-1", 1, size=len(CONTENT), expires_in=900)
    assert query(url)["X-Amz-SignedHeaders"].split(";") == ["content-length", "host"]
    assert headers == {}


def policy_of(fields: dict[str, str]) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(fields["policy"])))


@pytest.mark.parametrize("sha256", [None, DIGEST])
def test_a_presigned_post_policy_pins_key_type_exact_size_and_a_declared_checksum(sha256: str | None) -> None:
    # Given a file declared as N bytes of type T (with or without its SHA-256)
    # When a browser POST upload is presigned for it
    url, fields = storage().presign_post(
        KEY, content_type="image/png", size=len(CONTENT), expires_in=900, sha256=sha256
    )
    # Then it posts to the bucket, and the signed policy pins the bucket, the key, the type and
    # exactly N bytes (content-length-range N..N), and the checksum when one was declared
    assert urlsplit(url).netloc.startswith(BUCKET) or urlsplit(url).path.strip("/") == BUCKET
    conditions = policy_of(fields)["conditions"]
    assert {"bucket": BUCKET} in conditions
    assert {"key": KEY} in conditions
    assert {"Content-Type": "image/png"} in conditions
    assert ["content-length-range", len(CONTENT), len(CONTENT)] in conditions
    assert [c for c in conditions if isinstance(c, list)] == [
        ["content-length-range", len(CONTENT), len(CONTENT)]
    ]
    checksum = {"x-amz-checksum-sha256": base64.b64encode(hashlib.sha256(CONTENT).digest()).decode()}
    assert (checksum in conditions) is (sha256 is not None)
    # And every field the form sends is one the policy names with its exact value (S3 refuses a
    # form with fields its policy does not name); the policy expires with the URL's lifetime
    named = {name.lower(): value for c in conditions if isinstance(c, dict) for name, value in c.items()}
    for name, value in fields.items():
        if name.lower() not in {"policy", "x-amz-signature"}:
            assert named[name.lower()] == value, name
    assert fields["key"] == KEY and fields["Content-Type"] == "image/png"
    assert ("x-amz-checksum-sha256" in fields) is (sha256 is not None)
    assert fields["x-amz-security-token"] == CREDENTIALS.token
    expiration = datetime.fromisoformat(policy_of(fields)["expiration"].replace("Z", "+00:00"))
    assert 890 <= (expiration - datetime.now(UTC)).total_seconds() <= 900


# ------------------------------------------------------------------------- the bucket browsers use
def cors_rule() -> dict[str, Any]:
    [rule] = RESOURCES["UploadBucket"]["Properties"]["CorsConfiguration"]["CorsRules"]
    return dict(rule)


def test_cors_allows_exactly_the_methods_and_headers_upload_instructions_use() -> None:
    # Given every kind of single-request upload instruction, with and without a checksum
    puts = [
        storage().presign_put(KEY, content_type="image/png", size=5, expires_in=60, sha256=digest)
        for digest in (None, DIGEST)
    ]
    # When the bucket's CORS rule is read
    rule = cors_rule()
    # Then it allows PUT and POST only, exactly the headers PUT instructions ask for (POST sends
    # form fields, no custom header), and exposes ETag (browsers read part ETags to complete a
    # multipart upload)
    assert rule["AllowedMethods"] == ["PUT", "POST"]
    asked = {name.lower() for _, headers in puts for name in headers}
    assert set(rule["AllowedHeaders"]) == asked
    assert rule["AllowedHeaders"] == sorted(rule["AllowedHeaders"])
    assert "*" not in rule["AllowedHeaders"]
    assert rule["ExposedHeaders"] == ["ETag"]


def test_the_bucket_policy_refuses_overwriting_puts_but_lets_browser_posts_and_upload_parts_through() -> None:
    # Given the bucket policy's statement that keeps uploads create-only
    statements = RESOURCES["UploadBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    [deny] = [s for s in statements if s.get("Sid") == "DenyUploadOverwrites"]
    # Then it denies PutObject on uploads/ without If-None-Match, except for POST uploads (which
    # cannot carry it: the pinned version of the first upload event protects them), and only for
    # operations that create the object: CreateMultipartUpload and UploadPart (also authorised as
    # s3:PutObject, and taking no conditional header) go through; CompleteMultipartUpload is sent
    # with If-None-Match (tests/integration/test_multipart_handlers.py)
    assert (deny["Effect"], deny["Action"]) == ("Deny", "s3:PutObject")
    assert deny["Condition"] == {
        "Null": {"s3:if-none-match": "true"},
        "StringNotEquals": {"s3:authType": "POST"},
        "Bool": {"s3:ObjectCreationOperation": "true"},
    }
