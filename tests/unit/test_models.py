"""Models refuse what the API does not accept and keep the wire shapes stable."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from filebatch.config import settings_from
from filebatch.models.api import CreateBatchRequest
from filebatch.models.domain import Batch, BatchStatus, parse_upload_key, upload_key
from filebatch.models.records import BatchRecord


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


def test_batch_record_round_trips() -> None:
    now = datetime(2026, 11, 22, tzinfo=UTC)
    batch = Batch(
        tenant_id="acme",
        batch_id="b-" + "d" * 32,
        status=BatchStatus.PROCESSING,
        total=3,
        uploaded=3,
        created_at=now,
        updated_at=now,
    )
    item = BatchRecord.from_domain(batch).to_item()
    assert item["pk"] == f"TENANT#acme#BATCH#{batch.batch_id}" and item["sk"] == "BATCH"
    assert BatchRecord.model_validate(item).to_domain() == batch


@pytest.mark.parametrize(
    ("completed", "failed", "status"),
    [(3, 0, BatchStatus.COMPLETED), (0, 3, BatchStatus.FAILED), (2, 1, BatchStatus.COMPLETED_WITH_ERRORS)],
)
def test_final_status_follows_the_counts(completed: int, failed: int, status: BatchStatus) -> None:
    now = datetime(2026, 11, 22, tzinfo=UTC)
    batch = Batch(
        tenant_id="a",
        batch_id="b",
        status=BatchStatus.PROCESSING,
        total=3,
        completed=completed,
        failed=failed,
        created_at=now,
        updated_at=now,
    )
    assert batch.final_status() is status
    assert batch.progress_percentage == 100.0


def test_settings_read_only_known_variables_and_validate_them() -> None:
    settings = settings_from({"TABLE_NAME": "t", "BUCKET_NAME": "b", "MAX_FILE_BYTES": "5", "PATH": "/bin"})
    assert (settings.table_name, settings.bucket_name, settings.max_file_bytes) == ("t", "b", 5)
    with pytest.raises(ValidationError):
        settings_from({"TABLE_NAME": "t"})
