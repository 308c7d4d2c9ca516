"""Creating batches, reading status and paginating results (service level, with fakes)."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import pytest

from filebatch.errors import InvalidRequestError, NotFoundError
from filebatch.models.api import CreateBatchRequest, FileSpec, PageQuery, PostUpload, PutUpload
from filebatch.models.domain import BatchStatus, FileStatus, Tenant, manifest_key, sha256_base64
from filebatch.services.batches import (
    UploadLimits,
    create_batch,
    get_batch_status,
    list_results,
    list_uploads,
)
from filebatch.services.cursors import CursorSigner
from tests.unit.fakes import InMemoryRepository, InMemoryStorage, StaticCursorKeys

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
ACME = Tenant(tenant_id="acme")
LIMITS = UploadLimits(max_files=10, max_file_bytes=1000, url_ttl_seconds=900)
RETENTION_DAYS = 30
BATCH_ID = "b-" + "0" * 32
CURSORS = CursorSigner(StaticCursorKeys())


def request(*sizes: int) -> CreateBatchRequest:
    return CreateBatchRequest(
        files=[
            FileSpec(filename=f"photo-{i}.jpg", size=s, content_type="image/jpeg")
            for i, s in enumerate(sizes)
        ]
    )


def make(repo: InMemoryRepository, storage: InMemoryStorage, *sizes: int) -> str:
    created = create_batch(
        repo,
        storage,
        ACME,
        request(*sizes),
        limits=LIMITS,
        retention_days=RETENTION_DAYS,
        cursors=CURSORS,
        now=NOW,
        make_batch_id=lambda: BATCH_ID,
    )
    return created.batch_id


def test_create_batch_records_files_in_order_and_returns_presigned_puts() -> None:
    # Given an empty store
    repo, storage = InMemoryRepository(), InMemoryStorage()
    # When a tenant creates a batch of three files
    created = create_batch(
        repo,
        storage,
        ACME,
        request(10, 20, 30),
        limits=LIMITS,
        retention_days=RETENTION_DAYS,
        cursors=CURSORS,
        now=NOW,
        make_batch_id=lambda: BATCH_ID,
    )
    # Then every file gets an id in submission order and a PUT with the declared content type
    assert [f.file_id for f in created.files] == ["f00001", "f00002", "f00003"]
    assert all(
        f.upload.method == "PUT" and f.upload.headers == {"Content-Type": "image/jpeg", "If-None-Match": "*"}
        for f in created.files
    )
    assert created.files[0].upload.url.endswith(f"uploads/acme/{BATCH_ID}/f00001?expires=900")
    assert created.files[0].upload.expires_at == datetime(2026, 11, 22, 2, 15, tzinfo=UTC)
    # And the batch, its files and the workflow's manifest are stored
    batch = repo.get_batch("acme", BATCH_ID)
    assert batch is not None and batch.total == 3 and batch.status is BatchStatus.AWAITING_UPLOAD
    assert storage.documents[manifest_key("acme", BATCH_ID)] == [
        {"file_id": "f00001"},
        {"file_id": "f00002"},
        {"file_id": "f00003"},
    ]


def test_created_batch_and_files_expire_after_the_retention_in_whole_seconds() -> None:
    # Given an empty store and a creation time with a fraction of a second
    repo, storage = InMemoryRepository(), InMemoryStorage()
    now = datetime(2026, 11, 22, 2, 0, 0, 750_000, tzinfo=UTC)
    # When a batch of two files is created with a 7-day retention
    create_batch(
        repo,
        storage,
        ACME,
        request(10, 20),
        limits=LIMITS,
        retention_days=7,
        cursors=CURSORS,
        now=now,
        make_batch_id=lambda: BATCH_ID,
    )
    # Then the batch and every file expire 7 days after creation, on a whole second
    expected = datetime(2026, 11, 29, 2, 0, 0, tzinfo=UTC)
    batch = repo.get_batch("acme", BATCH_ID)
    assert batch is not None and batch.expires_at == expected
    files, _ = repo.list_files("acme", BATCH_ID, limit=10)
    assert [f.expires_at for f in files] == [expected, expected]


@pytest.mark.parametrize(
    ("sizes", "code"),
    [((1,) * 11, "too_many_files"), ((10, 1001), "file_too_large")],
)
def test_create_batch_refuses_requests_beyond_the_limits_and_writes_nothing(
    sizes: tuple[int, ...], code: str
) -> None:
    # Given an empty store
    repo, storage = InMemoryRepository(), InMemoryStorage()
    # When the request breaks a limit
    with pytest.raises(InvalidRequestError) as raised:
        make(repo, storage, *sizes)
    # Then it is refused with a code and nothing was half-written
    assert raised.value.code == code
    assert repo.batches == {} and repo.files == {} and storage.documents == {}


def test_status_reports_counts_and_progress() -> None:
    # Given a batch of four files, one completed and one failed
    repo, storage = InMemoryRepository(), InMemoryStorage()
    batch_id = make(repo, storage, 1, 2, 3, 4)
    for file_id in ("f00001", "f00002"):
        repo.mark_uploaded("acme", batch_id, file_id, size=1, version_id=None, at=NOW)
    repo.move_file("acme", batch_id, "f00001", expected=FileStatus.UPLOADED, to=FileStatus.COMPLETED, at=NOW)
    repo.move_file("acme", batch_id, "f00002", expected=FileStatus.UPLOADED, to=FileStatus.FAILED, at=NOW)
    # When its status is read
    status = get_batch_status(repo, ACME, batch_id, provider="local", now=NOW)
    # Then there is a count per file state, adding up to the total, and progress reflects them
    assert status.counts.model_dump() == {
        "total": 4,
        "awaiting_upload": 2,
        "uploaded": 0,
        "processing": 0,
        "completed": 1,
        "failed": 1,
        "cancelled": 0,
        "upload_expired": 0,
        "skipped": 0,
    }
    assert status.progress_percentage == 50.0
    assert status.is_terminal is False


@pytest.mark.parametrize("batch_id", [BATCH_ID, "b-" + "f" * 32, "not-a-batch-id", "../../etc"])
def test_another_tenants_or_unknown_batch_is_not_found(batch_id: str) -> None:
    # Given a batch that belongs to acme
    repo, storage = InMemoryRepository(), InMemoryStorage()
    make(repo, storage, 1)
    # When another tenant (or anyone, for unknown ids) asks for it
    # Then it does not exist for them
    with pytest.raises(NotFoundError):
        get_batch_status(
            repo,
            Tenant(tenant_id="globex") if batch_id == BATCH_ID else ACME,
            batch_id,
            provider="local",
            now=NOW,
        )


def test_results_paginate_with_an_opaque_cursor_until_exhausted() -> None:
    # Given a batch of five files
    repo, storage = InMemoryRepository(), InMemoryStorage()
    batch_id = make(repo, storage, 1, 2, 3, 4, 5)
    # When results are read two at a time following next_cursor
    seen, cursor, pages = [], None, 0
    while True:
        page = list_results(repo, ACME, batch_id, PageQuery(limit=2, cursor=cursor), cursors=CURSORS)
        seen += [item.file_id for item in page.items]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    # Then every file comes exactly once, in order, over three pages
    assert seen == ["f00001", "f00002", "f00003", "f00004", "f00005"]
    assert pages == 3


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        CURSORS.encode("acme", "b-" + "1" * 32, "f00001"),  # another batch's
        CURSORS.encode("globex", BATCH_ID, "f00001"),  # another tenant's
        CursorSigner(StaticCursorKeys(b"not our key" * 3)).encode("acme", BATCH_ID, "f00001"),  # forged
        CURSORS.encode("acme", BATCH_ID, "f00001").replace("f00001", "f00002"),  # tampered
        "[" * 1000,
    ],
)
def test_a_cursor_not_issued_for_this_batch_is_refused(cursor: str) -> None:
    # Given a cursor that is corrupt, forged, tampered with, or issued for another batch or tenant
    # When it is decoded for acme's batch
    # Then it is refused with invalid_cursor
    with pytest.raises(InvalidRequestError) as raised:
        CURSORS.decode("acme", BATCH_ID, cursor)
    assert raised.value.code == "invalid_cursor"


def test_cursor_round_trips_and_survives_a_key_rotation() -> None:
    # Given a cursor issued before the signing key is rotated
    keys = StaticCursorKeys()
    cursors = CursorSigner(keys)
    issued = cursors.encode("acme", BATCH_ID, "f00042")
    # When the key rotates
    keys.rotate(b"n" * 32)
    # Then the old cursor still decodes, and new cursors are signed with the new key
    assert cursors.decode("acme", BATCH_ID, issued) == "f00042"
    assert cursors.encode("acme", BATCH_ID, "f00042") != issued
    # And once the old key is gone, the old cursor is refused
    keys.rotate(b"m" * 32)
    with pytest.raises(InvalidRequestError):
        cursors.decode("acme", BATCH_ID, issued)


# -- stream PURGE: results filtered by status -------------------------------------------------------
def test_results_filtered_by_status_page_through_only_those_files() -> None:
    # Given a batch of seven files, three of them failed
    repo, storage = InMemoryRepository(), InMemoryStorage()
    batch_id = make(repo, storage, *([1] * 7))
    failed = ["f00002", "f00005", "f00007"]
    for file_id in ("f00001", "f00002", "f00005", "f00007"):
        repo.move_file(
            "acme",
            batch_id,
            file_id,
            expected=FileStatus.AWAITING_UPLOAD,
            to=FileStatus.FAILED if file_id in failed else FileStatus.COMPLETED,
            at=NOW,
            facts=None,
            description=None,
            error=None,
        )
    # When the failed results are read two at a time
    seen: list[str] = []
    cursor = None
    while True:
        page = list_results(
            repo, ACME, batch_id, PageQuery(limit=2, cursor=cursor), cursors=CURSORS, status=FileStatus.FAILED
        )
        seen += [r.file_id for r in page.items]
        assert all(r.status is FileStatus.FAILED for r in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    # Then exactly the failed files come back, in file order
    assert seen == failed
    # And without a status every file does
    every = list_results(repo, ACME, batch_id, PageQuery(limit=10), cursors=CURSORS)
    assert len(every.items) == 7


# -- issue 10, stream INTEGRITY: declared checksums are signed; browser POST uploads ---------------
def test_a_declared_sha256_is_signed_into_each_files_put() -> None:
    # Given a batch whose first file declares its SHA-256 (base64) and whose second does not
    digest = hashlib.sha256(b"0123456789")
    files = [
        FileSpec(
            filename="a.jpg",
            size=10,
            content_type="image/jpeg",
            sha256=base64.b64encode(digest.digest()).decode(),
        ),
        FileSpec(filename="b.jpg", size=10, content_type="image/jpeg"),
    ]
    # When it is created
    created = create_batch(
        InMemoryRepository(),
        InMemoryStorage(),
        ACME,
        CreateBatchRequest(files=files),
        limits=LIMITS,
        retention_days=RETENTION_DAYS,
        cursors=CURSORS,
        now=NOW,
        make_batch_id=lambda: BATCH_ID,
    )
    # Then the first file's PUT carries the checksum header S3 checks, and echoes the hash as hex;
    # the second's PUT is as before
    first, second = (f.upload for f in created.files)
    assert isinstance(first, PutUpload) and isinstance(second, PutUpload)
    assert first.headers["x-amz-checksum-sha256"] == base64.b64encode(digest.digest()).decode()
    assert created.files[0].sha256 == digest.hexdigest()
    assert second.headers == {"Content-Type": "image/jpeg", "If-None-Match": "*"}
    assert created.files[1].sha256 is None


def test_a_post_batch_gets_browser_form_uploads_at_create_and_when_uploads_are_asked_again() -> None:
    # Given a batch created for POST uploads, one file declaring its SHA-256
    repo, storage = InMemoryRepository(), InMemoryStorage()
    digest = hashlib.sha256(b"abc").hexdigest()
    created = create_batch(
        repo,
        storage,
        ACME,
        CreateBatchRequest(
            files=[
                FileSpec(filename="a.png", size=3, content_type="image/png", sha256=digest),
                FileSpec(filename="b.png", size=5, content_type="image/png"),
            ],
            upload_method="POST",
        ),
        limits=LIMITS,
        retention_days=RETENTION_DAYS,
        cursors=CURSORS,
        now=NOW,
        make_batch_id=lambda: BATCH_ID,
    )
    # When the first file is uploaded and the client asks for fresh instructions
    repo.mark_uploaded("acme", BATCH_ID, "f00001", size=3, version_id="v1", at=NOW)
    page = list_uploads(repo, storage, ACME, BATCH_ID, PageQuery(), cursors=CURSORS, limits=LIMITS, now=NOW)
    # Then every instruction, at create and again, is a form POST whose fields were signed for the
    # file's key, type and (when declared) checksum, expiring with the URL's lifetime
    for created_file in [*created.files, *page.items]:
        upload = created_file.upload
        assert isinstance(upload, PostUpload)
        assert upload.fields["key"] == f"uploads/acme/{BATCH_ID}/{created_file.file_id}"
        assert upload.fields["Content-Type"] == "image/png"
        assert upload.fields["policy"] == f"size={created_file.size}"
        assert upload.expires_at == datetime(2026, 11, 22, 2, 15, tzinfo=UTC)
    assert created.files[0].upload.fields["x-amz-checksum-sha256"] == sha256_base64(digest)  # type: ignore[union-attr]
    assert "x-amz-checksum-sha256" not in created.files[1].upload.fields  # type: ignore[union-attr]
    assert [f.file_id for f in page.items] == ["f00002"]
    batch = repo.get_batch("acme", BATCH_ID)
    assert batch is not None and batch.upload_method == "POST"
