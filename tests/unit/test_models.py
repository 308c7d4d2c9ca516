"""Models refuse what the API does not accept and keep the wire shapes stable."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from filebatch.config import settings_from
from filebatch.models.api import CreateBatchRequest
from filebatch.models.domain import (
    Batch,
    BatchFile,
    BatchStatus,
    FileStatus,
    parse_upload_key,
    sha256_base64,
    upload_key,
)
from filebatch.models.records import TTL_ATTRIBUTE, ApiKeyRecord, BatchRecord, FileRecord, api_key_pk


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"files": []},
        {"files": [{"filename": "a.jpg", "size": 0, "content_type": "image/jpeg"}]},
        {"files": [{"filename": "a.jpg", "size": 10, "content_type": "jpeg"}]},
        {"files": [{"filename": "", "size": 10, "content_type": "image/jpeg"}]},
        {"files": [{"filename": "a\x00.jpg", "size": 10, "content_type": "image/jpeg"}]},
        {"files": [{"filename": "a.jpg", "size": 10, "content_type": "image/jpeg", "colour": "red"}]},
        {"files": [{"filename": "a.jpg", "size": "ten", "content_type": "image/jpeg"}]},
        {"files": [{"filename": "a.jpg", "size": 10, "content_type": "image/jpeg"}] * 10_001},
        # A declared SHA-256 is 64 hex digits or the base64 of 32 bytes, nothing else.
        {"files": [{"filename": "a", "size": 1, "content_type": "text/plain", "sha256": "ab" * 31}]},
        {"files": [{"filename": "a", "size": 1, "content_type": "text/plain", "sha256": "zz" * 32}]},
        {"files": [{"filename": "a", "size": 1, "content_type": "text/plain", "sha256": "A" * 43 + "=="}]},
        {"files": [{"filename": "a", "size": 1, "content_type": "text/plain", "sha256": "A" * 43 + "!"}]},
        {"files": [{"filename": "a", "size": 1, "content_type": "text/plain"}], "upload_method": "GET"},
        {"files": [{"filename": "a", "size": 1, "content_type": "text/plain"}], "skip_duplicates": "yes"},
    ],
)
def test_create_request_refuses_bad_input(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CreateBatchRequest.model_validate(body)


def test_content_type_is_normalised() -> None:
    request = CreateBatchRequest.model_validate(
        {"files": [{"filename": "a", "size": 1, "content_type": " Image/JPEG "}]}
    )
    assert request.files[0].content_type == "image/jpeg"


def test_upload_keys_round_trip_and_other_keys_are_not_uploads() -> None:
    batch_id = "b-" + "c" * 32
    ref = parse_upload_key(upload_key("acme", batch_id, "f00007"))
    assert ref is not None and (ref.tenant_id, ref.batch_id, ref.file_id) == ("acme", batch_id, "f00007")
    for key in (
        "manifests/acme/x.json",
        f"uploads/acme/{batch_id}/f7",
        f"uploads/ACME/{batch_id}/f00007",
        "",
    ):
        assert parse_upload_key(key) is None


def test_a_declared_sha256_is_kept_as_lowercase_hex_whether_given_as_hex_or_base64() -> None:
    # Given the SHA-256 of b"abc" in three spellings
    digest = hashlib.sha256(b"abc")
    spellings = [digest.hexdigest().upper(), digest.hexdigest(), base64.b64encode(digest.digest()).decode()]
    # When each is declared, Then each reads as the same lowercase hex, and S3's form is the base64
    for spelling in spellings:
        request = CreateBatchRequest.model_validate(
            {"files": [{"filename": "a", "size": 3, "content_type": "text/plain", "sha256": spelling}]}
        )
        assert request.files[0].sha256 == digest.hexdigest()
    assert sha256_base64(digest.hexdigest()) == spellings[2]


def test_batch_record_round_trips() -> None:
    now = datetime(2026, 11, 22, tzinfo=UTC)
    batch = Batch(
        tenant_id="acme",
        batch_id="b-" + "d" * 32,
        status=BatchStatus.PROCESSING,
        total=3,
        counts={FileStatus.UPLOADED: 1, FileStatus.PROCESSING: 1, FileStatus.COMPLETED: 1},
        arrived=3,
        retries=2,
        due_at=datetime(2026, 11, 22, 0, 15, tzinfo=UTC),
        created_at=now,
        updated_at=now,
        upload_method="POST",
        skip_duplicates=True,
    )
    item = BatchRecord.from_domain(batch).to_item()
    # Counts are one attribute per file state; a due batch is in the sweep's sparse index
    assert (item["n_uploaded"], item["n_completed"], item["n_awaiting_upload"]) == (1, 1, 0)
    assert (item["due_pk"], item["due_at"]) == ("DUE", "2026-11-22T00:15:00Z")
    assert item["pk"] == f"TENANT#acme#BATCH#{batch.batch_id}" and item["sk"] == "BATCH"
    read = BatchRecord.model_validate(item).to_domain()
    assert read.model_copy(update={"counts": {}}) == batch.model_copy(update={"counts": {}})
    assert {s: n for s, n in read.counts.items() if n} == batch.counts


EXPIRES = datetime(2026, 12, 22, 3, 4, 5, tzinfo=UTC)


def test_batch_and_file_items_carry_their_expiry_as_epoch_seconds_for_the_ttl() -> None:
    # Given a batch and a file that expire at the same moment
    now = datetime(2026, 11, 22, tzinfo=UTC)
    batch = Batch(
        tenant_id="acme",
        batch_id="b-" + "d" * 32,
        status=BatchStatus.AWAITING_UPLOAD,
        total=1,
        created_at=now,
        updated_at=now,
        expires_at=EXPIRES,
    )
    file = BatchFile(
        tenant_id="acme",
        batch_id=batch.batch_id,
        file_id="f00001",
        filename="cat.png",
        declared_size=5,
        declared_content_type="image/png",
        declared_sha256="ab" * 32,
        status=FileStatus.AWAITING_UPLOAD,
        expires_at=EXPIRES,
    )
    # When they become DynamoDB items
    items = [BatchRecord.from_domain(batch).to_item(), FileRecord.from_domain(file).to_item()]
    # Then both carry the TTL attribute as an integer number of epoch seconds (DynamoDB's TTL
    # ignores anything else) ...
    for item in items:
        assert item[TTL_ATTRIBUTE] == 1797908645
        assert type(item[TTL_ATTRIBUTE]) is int
    # ... and read back as the same moment
    assert BatchRecord.model_validate(items[0]).to_domain().expires_at == batch.expires_at
    assert FileRecord.model_validate(items[1]).to_domain() == file


def test_items_written_before_retention_existed_still_read() -> None:
    # Given a batch item as stored before items had an expiry
    item = {
        "pk": "TENANT#acme#BATCH#b-" + "d" * 32,
        "sk": "BATCH",
        "entity": "batch",
        "tenant_id": "acme",
        "batch_id": "b-" + "d" * 32,
        "status": "completed",
        "total": 1,
        "n_completed": 1,
        "created_at": "2026-01-01T00:00:00+00:00",
        "updated_at": "2026-01-01T00:00:00+00:00",
    }
    # When it is read, then it is a batch without an expiry
    assert BatchRecord.model_validate(item).to_domain().expires_at is None


def test_api_key_items_never_expire() -> None:
    # Given an API key record
    record = ApiKeyRecord(
        pk=api_key_pk("0" * 64), tenant_id="acme", key_prefix="fbk_abcd", created_at=datetime.now(UTC)
    )
    # When it becomes an item, then it has no TTL attribute, and cannot be given one
    assert TTL_ATTRIBUTE not in record.to_item()
    with pytest.raises(ValidationError):
        ApiKeyRecord.model_validate({**record.to_item(), TTL_ATTRIBUTE: 1797908645})


@pytest.mark.parametrize(
    ("completed", "failed", "status"),
    [
        (3, 0, BatchStatus.COMPLETED),
        (0, 3, BatchStatus.FAILED),
        (2, 1, BatchStatus.COMPLETED_WITH_ERRORS),
        (0, 0, BatchStatus.EXPIRED),
    ],
)
def test_final_status_follows_the_counts(completed: int, failed: int, status: BatchStatus) -> None:
    now = datetime(2026, 11, 22, tzinfo=UTC)
    batch = Batch(
        tenant_id="a",
        batch_id="b",
        status=BatchStatus.PROCESSING,
        total=3,
        counts={
            FileStatus.COMPLETED: completed,
            FileStatus.FAILED: failed,
            FileStatus.UPLOAD_EXPIRED: 3 - completed - failed,
        },
        created_at=now,
        updated_at=now,
    )
    assert batch.final_status() is status
    assert batch.progress_percentage == 100.0


def test_eta_comes_from_the_observed_rate_of_the_current_run_once_it_has_run_a_while() -> None:
    started = datetime(2026, 11, 22, tzinfo=UTC)
    batch = Batch(
        tenant_id="a",
        batch_id="b",
        status=BatchStatus.PROCESSING,
        total=10,
        counts={FileStatus.COMPLETED: 4, FileStatus.PROCESSING: 2, FileStatus.UPLOADED: 4},
        run_started_at=started,
        run_files=10,
        created_at=started,
        updated_at=started,
    )
    # Given 4 of 10 files done in 20 s, then 6 more take 30 s
    assert batch.eta_seconds(started + timedelta(seconds=20)) == 30
    # Not before the run has gone on a few seconds, nor once it is not processing
    assert batch.eta_seconds(started + timedelta(seconds=2)) is None
    assert batch.model_copy(update={"status": BatchStatus.CANCELLING}).eta_seconds(started) is None


def test_settings_read_only_known_variables_and_validate_them() -> None:
    settings = settings_from({"TABLE_NAME": "t", "BUCKET_NAME": "b", "MAX_FILE_BYTES": "5", "PATH": "/bin"})
    assert (settings.table_name, settings.bucket_name, settings.max_file_bytes) == ("t", "b", 5)
    with pytest.raises(ValidationError):
        settings_from({"TABLE_NAME": "t"})


def test_a_failure_caught_after_the_process_step_parses_with_everything_that_step_produced() -> None:
    # Given the input of the describe step (the process step's output) with the Catch's error added
    from filebatch.models.domain import FileFacts
    from filebatch.models.workflow import FailedFile, ProcessedFile

    processed = ProcessedFile(
        tenant_id="acme",
        batch_id="b-" + "0" * 32,
        file_id="f00001",
        filename="a.png",
        version_id="ace4ffae-52d0-4c00-8450-b1b762aadadc",
        facts=FileFacts(size_bytes=1, sha256="0" * 64, detected_content_type="image/png"),
    )
    caught = {**processed.model_dump(mode="json"), "error": {"Error": "Runtime.ExitError", "Cause": None}}
    # When the record step parses it
    failed = FailedFile.model_validate(caught)
    # Then nothing the process step produced is refused as unknown
    assert failed.version_id == processed.version_id
    assert failed.facts == processed.facts


def test_settings_read_the_upload_retention() -> None:
    # Given the environment the template gives the create function
    environ = {"TABLE_NAME": "t", "BUCKET_NAME": "b", "RETENTION_DAYS": "7"}
    # When settings are read, then the retention is the template's number of days
    assert settings_from(environ).retention_days == 7
    # And a retention under a day is refused, as the template's parameter refuses it
    with pytest.raises(ValidationError):
        settings_from({"TABLE_NAME": "t", "BUCKET_NAME": "b", "RETENTION_DAYS": "0"})


def test_integers_in_request_bodies_may_be_written_as_integral_json_numbers() -> None:
    # Given JSON Schema's integers, which include 1332.0, in a create and a complete
    from filebatch.models.api import CompleteUploadRequest

    # When they are read, Then they are the integers they stand for
    complete = CompleteUploadRequest.model_validate({"parts": [{"part_number": 1332.0, "etag": "e"}]})
    assert complete.parts[0].part_number == 1332
    create = CreateBatchRequest.model_validate(
        {"files": [{"filename": "a", "size": 6.0, "content_type": "text/plain"}]}
    )
    assert create.files[0].size == 6
    # And a fraction is still refused
    with pytest.raises(ValidationError):
        CompleteUploadRequest.model_validate({"parts": [{"part_number": 1.5, "etag": "e"}]})
