"""The S3 adapter reads a large object as ranged GETs, several at a time, in order, pinned to the
version the first GET opened; a reader that stops early starts no range at all."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from filebatch.adapters import s3 as s3_adapter
from filebatch.adapters.s3 import S3ObjectStorage

BUCKET = "ranged-reads"
KEY = "uploads/acme/b-1/f00001"
MIB = 1024 * 1024


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # Small ranges, so that a few MiB take the ranged path
    monkeypatch.setattr(s3_adapter, "RANGE_BYTES", MIB)
    monkeypatch.setattr(s3_adapter, "PARALLEL_RANGES", 3)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


def ranges_asked(client: Any) -> list[str]:
    asked: list[str] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        if "Range" in params:
            asked.append(params["Range"])

    client.meta.events.register("provide-client-params.s3.GetObject", record)
    return asked


def test_a_large_object_arrives_whole_and_in_order_from_parallel_ranges(s3: Any) -> None:
    # Given an object of 5 MiB and a bit, and a second version written after the read began
    content = os.urandom(5 * MIB + 123)
    first = s3.put_object(Bucket=BUCKET, Key=KEY, Body=content)["VersionId"]
    asked = ranges_asked(s3)
    stored = S3ObjectStorage(BUCKET, s3).stream(KEY, version_id=first)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"other bytes")
    # When it is read to the end
    read = b"".join(stored.chunks)
    # Then it is the first version's bytes, in order: the first MiB from the opening GET, the rest
    # from ranged GETs of that version
    assert (stored.size, stored.version_id) == (len(content), first)
    assert hashlib.sha256(read).digest() == hashlib.sha256(content).digest()
    # (the ranges are asked from several threads at once: in any order)
    assert sorted(asked, key=lambda asked_range: int(asked_range[6:].split("-")[0])) == [
        f"bytes={n * MIB}-{min((n + 1) * MIB, len(content)) - 1}" for n in range(1, 6)
    ]


def test_a_reader_that_stops_in_the_first_range_starts_no_other_request(s3: Any) -> None:
    # Given a large object
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=os.urandom(4 * MIB))
    asked = ranges_asked(s3)
    # When a reader takes its first chunk and stops (the describe step reading a text's first words)
    stored = S3ObjectStorage(BUCKET, s3).stream(KEY)
    first_chunk = next(stored.chunks)
    stored.chunks.close()
    # Then no ranged GET was made
    assert len(first_chunk) == s3_adapter.STREAM_CHUNK_BYTES
    assert asked == []


def test_a_small_object_is_one_get(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"x" * (MIB - 1))
    asked = ranges_asked(s3)
    stored = S3ObjectStorage(BUCKET, s3).stream(KEY)
    assert b"".join(stored.chunks) == b"x" * (MIB - 1)
    assert asked == []
