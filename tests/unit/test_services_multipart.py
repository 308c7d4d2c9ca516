"""Multipart uploads (issue 10): the part-size arithmetic, MULTIPART instructions in create and
uploads pages, and the parts / complete / abort services, with fakes."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from filebatch.errors import ConflictError, InvalidRequestError, NotFoundError, StorageUnavailableError
from filebatch.models.api import (
    MAX_SIGNED_PARTS,
    CompletedPart,
    CompleteUploadRequest,
    CreateBatchRequest,
    FileSpec,
    MultipartUpload,
    PageQuery,
    PutUpload,
    SignPartsRequest,
)
from filebatch.models.domain import FileStatus, Tenant, sha256_base64
from filebatch.services import multipart
from filebatch.services.batches import UploadLimits, create_batch, list_uploads, replay_created_batch
from filebatch.services.cursors import CursorSigner
from filebatch.services.multipart import (
    MAX_PARTS,
    MIB,
    MIN_PART_BYTES,
    MULTIPART_FILES_PER_PAGE,
    PART_URLS_PER_PAGE,
    S3_MAX_PART_BYTES,
    S3_MIN_PART_BYTES,
    MultipartPolicy,
    abort_upload,
    complete_upload,
    list_parts,
    part_count_for,
    part_length,
    part_size_for,
    sign_upload_parts,
)
from tests.unit.fakes import InMemoryRepository, InMemoryStorage, StaticCursorKeys

NOW = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)
ACME = Tenant(tenant_id="acme", plan="enterprise")
GIB = 1024 * MIB
MAX_FILE_BYTES = 50 * GIB
THRESHOLD = 100 * MIB
POLICY = MultipartPolicy(THRESHOLD)
LIMITS = UploadLimits(
    max_files=2000, max_file_bytes=MAX_FILE_BYTES, url_ttl_seconds=900, multipart_threshold_bytes=THRESHOLD
)
CURSORS = CursorSigner(StaticCursorKeys())
BATCH_ID = "b-" + "1" * 32
TTL = 900


# -- the part-size arithmetic -------------------------------------------------------------------------
@given(st.integers(min_value=1, max_value=5 * 1024 * GIB))
def test_every_size_up_to_s3s_largest_object_fits_10000_parts_of_allowed_sizes(size: int) -> None:
    # Given any file size up to S3's 5 TiB (MaxFileBytes' 50 GiB ceiling included)
    # When it is cut into parts
    part_size, count = part_size_for(size), part_count_for(size)
    # Then it needs at most 10,000 parts, of a whole number of MiB, at least our 16 MiB and at most
    # S3's 5 GiB
    assert count <= MAX_PARTS
    assert part_size % MIB == 0
    assert MIN_PART_BYTES <= part_size <= S3_MAX_PART_BYTES
    # and the parts cover the file exactly: every part but the last is the part size (>= 5 MiB), the
    # last holds the rest (at least a byte)
    lengths = [part_length(size, 1), part_length(size, count)]
    assert lengths[0] == min(part_size, size)
    assert 1 <= lengths[1] <= part_size
    assert (count - 1) * part_size + lengths[1] == size
    if count > 1:
        assert part_length(size, count - 1) == part_size >= S3_MIN_PART_BYTES


def test_part_sizes_at_landmark_sizes() -> None:
    # The threshold's first multipart file, a 1 GiB video, MaxFileBytes' ceiling, and where 16 MiB
    # parts stop sufficing (10,000 of them: 156.25 GiB)
    assert (part_size_for(THRESHOLD + 1), part_count_for(THRESHOLD + 1)) == (16 * MIB, 7)
    assert (part_size_for(GIB), part_count_for(GIB)) == (16 * MIB, 64)
    assert (part_size_for(MAX_FILE_BYTES), part_count_for(MAX_FILE_BYTES)) == (16 * MIB, 3200)
    assert (part_size_for(MAX_PARTS * 16 * MIB), part_count_for(MAX_PARTS * 16 * MIB)) == (
        16 * MIB,
        MAX_PARTS,
    )
    assert part_size_for(MAX_PARTS * 16 * MIB + 1) == 17 * MIB


# -- MULTIPART instructions ---------------------------------------------------------------------------
def create(repo: InMemoryRepository, storage: InMemoryStorage, *sizes: int, sha256: str | None = None):
    return create_batch(
        repo,
        storage,
        ACME,
        CreateBatchRequest(
            files=[
                FileSpec(filename=f"scan-{i}.tif", size=size, content_type="image/tiff", sha256=sha256)
                for i, size in enumerate(sizes)
            ]
        ),
        limits=LIMITS,
        retention_days=30,
        cursors=CURSORS,
        now=NOW,
        make_batch_id=lambda: BATCH_ID,
    )


def test_files_above_the_threshold_get_a_multipart_upload_and_the_rest_a_put() -> None:
    # Given a batch of a file at the threshold and one 20 GiB video
    repo, storage = InMemoryRepository(), InMemoryStorage()
    created = create(repo, storage, THRESHOLD, 20 * GIB)
    at_threshold, video = created.files
    # Then the first gets one PUT, the second a multipart upload kept on its record
    assert isinstance(at_threshold.upload, PutUpload)
    assert isinstance(video.upload, MultipartUpload)
    upload = video.upload
    assert repo.files[("acme", BATCH_ID, video.file_id)].multipart_upload_id == upload.upload_id
    assert (upload.part_size, upload.part_count) == (16 * MIB, 1280)
    # with the first page of part URLs, each signed for its part's length, and a cursor for the rest
    assert [p.part_number for p in upload.parts] == list(range(1, PART_URLS_PER_PAGE + 1))
    assert upload.parts[0].url.endswith(f"partNumber=1&size={16 * MIB}")
    assert upload.next_parts_cursor is not None
    assert upload.expires_at.isoformat() == "2026-11-23T20:15:00+00:00"


def test_a_small_multipart_file_has_all_its_parts_in_the_instruction_and_no_cursor() -> None:
    repo, storage = InMemoryRepository(), InMemoryStorage()
    [file] = create(repo, storage, THRESHOLD + 1).files
    assert isinstance(file.upload, MultipartUpload)
    assert [p.part_number for p in file.upload.parts] == list(range(1, 8))
    # the last part is signed for what is left: 100 MiB + 1 - 6 x 16 MiB
    assert file.upload.parts[-1].url.endswith(f"size={4 * MIB + 1}")
    assert file.upload.next_parts_cursor is None


def test_a_page_holds_at_most_ten_multipart_files_and_its_cursor_continues_after_the_tenth() -> None:
    # Given a batch of 30 files, alternating small and large
    repo, storage = InMemoryRepository(), InMemoryStorage()
    sizes = [1000 if i % 2 == 0 else GIB for i in range(30)]
    created = create(repo, storage, *sizes)
    # Then the create answer stops at the 10th multipart file (so 10 CreateMultipartUpload calls)
    assert len(created.files) == 2 * MULTIPART_FILES_PER_PAGE
    assert storage.multipart_created == MULTIPART_FILES_PER_PAGE
    assert created.next_uploads_cursor is not None
    # and the uploads pages go on from there, 10 multipart files at a time
    page = list_uploads(
        repo,
        storage,
        ACME,
        BATCH_ID,
        PageQuery(limit=1000, cursor=created.next_uploads_cursor),
        cursors=CURSORS,
        limits=LIMITS,
        now=NOW,
    )
    assert page.items[0].file_id == "f00021"
    assert len(page.items) == 10 and page.next_cursor is None
    assert storage.multipart_created == 15


def test_a_page_of_the_largest_files_fits_a_lambda_response() -> None:
    # Given 1,000 files, every one multipart, with the longest names
    repo, storage = InMemoryRepository(), InMemoryStorage()
    sizes = [MAX_FILE_BYTES] * 1000
    created = create(repo, storage, *sizes)
    # Then the answer (at a real presigned URL's ~1.5 KB each) stays well under Lambda's 6 MB
    urls = sum(len(f.upload.parts) for f in created.files if isinstance(f.upload, MultipartUpload))
    assert urls == MULTIPART_FILES_PER_PAGE * PART_URLS_PER_PAGE
    body = len(json.dumps(created.model_dump(mode="json")))
    assert body + urls * 1500 + len(created.files) * 1500 < 6_000_000 / 2


def test_uploads_pages_reuse_a_files_upload_instead_of_starting_another() -> None:
    repo, storage = InMemoryRepository(), InMemoryStorage()
    [file] = create(repo, storage, GIB).files
    assert isinstance(file.upload, MultipartUpload)
    # When the client asks for fresh instructions twice
    for _ in range(2):
        page = list_uploads(
            repo, storage, ACME, BATCH_ID, PageQuery(limit=10), cursors=CURSORS, limits=LIMITS, now=NOW
        )
        [again] = page.items
        assert isinstance(again.upload, MultipartUpload)
        # Then it is the same upload
        assert again.upload.upload_id == file.upload.upload_id
    assert storage.multipart_created == 1
    # and an idempotent create's replay reuses it too
    replayed = replay_created_batch(
        repo, storage, ACME, BATCH_ID, url_ttl_seconds=TTL, cursors=CURSORS, now=NOW, multipart=POLICY
    )
    assert isinstance(replayed.files[0].upload, MultipartUpload)
    assert replayed.files[0].upload.upload_id == file.upload.upload_id


def test_two_racing_requests_leave_one_live_upload_and_abort_the_losers() -> None:
    # Given a file with no upload yet, and S3 slow enough that two requests both start one
    repo, storage = InMemoryRepository(), InMemoryStorage()
    create(repo, storage, 1000)
    key, file = next(iter(repo.files.items()))
    file.declared_size = GIB
    both_started = threading.Barrier(2)
    original = storage.create_multipart_upload

    def slow_create(object_key: str, *, content_type: str, part_checksums: bool = False) -> str:
        upload_id = original(object_key, content_type=content_type, part_checksums=part_checksums)
        both_started.wait(timeout=5)
        return upload_id

    storage.create_multipart_upload = slow_create  # type: ignore[method-assign]
    got: list[str] = []
    threads = [
        threading.Thread(
            target=lambda: got.append(multipart.ensure_upload(repo, storage, repo.get_file(*key)))
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then both requests answer the same upload, the one on the record, and the other was aborted
    assert got[0] == got[1] == repo.files[key].multipart_upload_id
    assert storage.live_uploads(file.object_key) == [got[0]]
    assert len(storage.aborted) == 1 and storage.aborted[0] != got[0]


# -- GET .../parts --------------------------------------------------------------------------------------
def parts(repo: InMemoryRepository, storage: InMemoryStorage, file_id: str, cursor: str | None = None):
    return list_parts(
        repo,
        storage,
        ACME,
        BATCH_ID,
        file_id,
        cursor=cursor,
        cursors=CURSORS,
        policy=POLICY,
        limits=LIMITS,
        now=NOW,
    )


def test_the_parts_route_lists_held_parts_and_signs_only_the_missing_ones_page_by_page() -> None:
    # Given a 2 GiB file (128 parts) of which parts 1, 2 and 101 arrived
    repo, storage = InMemoryRepository(), InMemoryStorage()
    [file] = create(repo, storage, 2 * GIB).files
    assert isinstance(file.upload, MultipartUpload)
    upload_id = file.upload.upload_id
    etags = {n: storage.upload_part(upload_id, n, 16 * MIB) for n in (1, 2, 101)}
    # When the client asks for the first page
    first = parts(repo, storage, file.file_id)
    # Then it lists the held parts with their ETags and signs the other 98 of the page
    assert [(p.part_number, p.etag, p.size) for p in first.uploaded] == [
        (1, etags[1], 16 * MIB),
        (2, etags[2], 16 * MIB),
    ]
    assert [p.part_number for p in first.parts] == list(range(3, 101))
    assert (first.upload_id, first.part_count) == (upload_id, 128)
    # and the next page holds the rest
    second = parts(repo, storage, file.file_id, first.next_cursor)
    assert [p.part_number for p in second.uploaded] == [101]
    assert [p.part_number for p in second.parts] == list(range(102, 129))
    assert second.next_cursor is None


def test_a_parts_cursor_of_another_file_is_refused() -> None:
    repo, storage = InMemoryRepository(), InMemoryStorage()
    created = create(repo, storage, 2 * GIB, 2 * GIB)
    first = parts(repo, storage, created.files[0].file_id)
    with pytest.raises(InvalidRequestError) as refused:
        parts(repo, storage, created.files[1].file_id, first.next_cursor)
    assert refused.value.code == "invalid_cursor"


@pytest.mark.parametrize(
    ("file_id", "error", "code"),
    [
        ("f00009", NotFoundError, "file_not_found"),
        ("../x", NotFoundError, "file_not_found"),
        ("f00001", ConflictError, "not_multipart"),
    ],
)
def test_the_parts_route_refuses_unknown_and_single_put_files(file_id: str, error: type, code: str) -> None:
    repo, storage = InMemoryRepository(), InMemoryStorage()
    create(repo, storage, 1000, GIB)
    with pytest.raises(error) as refused:
        parts(repo, storage, file_id)
    assert refused.value.code == code


def test_the_parts_route_refuses_an_unknown_batch_an_uploaded_file_and_a_closed_batch() -> None:
    repo, storage = InMemoryRepository(), InMemoryStorage()
    [file] = create(repo, storage, GIB).files
    with pytest.raises(NotFoundError):
        list_parts(
            repo, storage, ACME, "b-" + "2" * 32, file.file_id, cursor=None, cursors=CURSORS,
            policy=POLICY, limits=LIMITS, now=NOW,
        )  # fmt: skip
    repo.batches[("acme", BATCH_ID)].closed_at = NOW
    with pytest.raises(ConflictError) as closed:
        parts(repo, storage, file.file_id)
    assert closed.value.code == "uploads_closed"
    # (in an open batch) a file already uploaded, and one that no longer takes an upload
    repo.batches[("acme", BATCH_ID)].closed_at = None
    record = repo.files[("acme", BATCH_ID, file.file_id)]
    record.status, record.uploaded_at = FileStatus.UPLOADED, NOW
    with pytest.raises(ConflictError) as uploaded:
        parts(repo, storage, file.file_id)
    assert uploaded.value.code == "already_uploaded"
    record.status, record.uploaded_at = FileStatus.CANCELLED, None
    with pytest.raises(ConflictError) as cancelled:
        parts(repo, storage, file.file_id)
    assert cancelled.value.code == "file_not_awaiting_upload"


def test_an_upload_gone_from_s3_is_replaced_by_a_fresh_one() -> None:
    # Given a file whose upload S3 no longer has (the bucket's lifecycle aborted it)
    repo, storage = InMemoryRepository(), InMemoryStorage()
    [file] = create(repo, storage, GIB).files
    assert isinstance(file.upload, MultipartUpload)
    storage.multipart.clear()
    # When the client asks for its parts
    page = parts(repo, storage, file.file_id)
    # Then a new upload is started and recorded, with every part to send
    assert page.upload_id != file.upload.upload_id
    assert repo.files[("acme", BATCH_ID, file.file_id)].multipart_upload_id == page.upload_id
    assert page.uploaded == [] and len(page.parts) == 64


# -- POST .../complete ------------------------------------------------------------------------------
def uploaded_file(size: int = 40 * MIB) -> tuple[InMemoryRepository, InMemoryStorage, str, str, list[str]]:
    """A multipart file (threshold lowered for small sizes) with every part uploaded."""
    repo, storage = InMemoryRepository(), InMemoryStorage()
    [file] = create(repo, storage, GIB).files
    record = repo.files[("acme", BATCH_ID, file.file_id)]
    record.declared_size = size
    upload_id = multipart.ensure_upload(repo, storage, record)
    etags = [
        storage.upload_part(upload_id, n, part_length(size, n)) for n in range(1, part_count_for(size) + 1)
    ]
    return repo, storage, file.file_id, upload_id, etags


def complete(repo: InMemoryRepository, storage: InMemoryStorage, file_id: str, listed: list[tuple[int, str]]):
    request = CompleteUploadRequest(parts=[CompletedPart(part_number=n, etag=e) for n, e in listed])
    return complete_upload(repo, storage, ACME, BATCH_ID, file_id, request, policy=MultipartPolicy(10 * MIB))


def test_complete_with_every_part_completes_and_again_answers_the_same() -> None:
    repo, storage, file_id, upload_id, etags = uploaded_file()
    listed = list(enumerate(etags, start=1))
    done = complete(repo, storage, file_id, listed)
    assert (done.upload_id, done.size) == (upload_id, 40 * MIB)
    # When the client completes again (its first answer was lost), before and after the upload event
    assert complete(repo, storage, file_id, listed) == done
    repo.files[("acme", BATCH_ID, file_id)].status = FileStatus.UPLOADED
    assert complete(repo, storage, file_id, listed) == done


@pytest.mark.parametrize(
    ("listed", "code"),
    [
        ([(1, "e1"), (2, "e2")], "parts_missing"),
        ([(1, "e1"), (3, "e3"), (2, "e2")], "invalid_part_order"),
        ([(1, "e1"), (2, "e2"), (3, "e3"), (4, "e4")], "invalid_part"),
        ([(1, "e1"), (2, "wrong"), (3, "e3")], "invalid_part"),
    ],
)
def test_complete_refuses_wrong_or_missing_parts_before_asking_s3(
    listed: list[tuple[int, str]], code: str
) -> None:
    repo, storage, file_id, upload_id, etags = uploaded_file()
    real = {f"e{n}": etag for n, etag in enumerate(etags, start=1)}
    with pytest.raises(InvalidRequestError) as refused:
        complete(repo, storage, file_id, [(n, real.get(e, e)) for n, e in listed])
    assert refused.value.code == code
    # and the upload is still there to complete properly
    assert storage.live_uploads(repo.files[("acme", BATCH_ID, file_id)].object_key) == [upload_id]


def test_complete_refuses_a_part_not_uploaded_and_a_small_part_and_a_wrong_total() -> None:
    repo, storage, file_id, upload_id, etags = uploaded_file()
    storage.multipart[upload_id][1].pop(2)
    with pytest.raises(InvalidRequestError) as missing:
        complete(repo, storage, file_id, list(enumerate(etags, start=1)))
    assert missing.value.code == "parts_missing"
    small = storage.upload_part(upload_id, 2, 4 * MIB)
    with pytest.raises(InvalidRequestError) as too_small:
        complete(repo, storage, file_id, [(1, etags[0]), (2, small), (3, etags[2])])
    assert too_small.value.code == "part_too_small"
    other = storage.upload_part(upload_id, 2, 17 * MIB)
    with pytest.raises(InvalidRequestError) as total:
        complete(repo, storage, file_id, [(1, etags[0]), (2, other), (3, etags[2])])
    assert total.value.code == "size_mismatch"


# -- POST .../abort --------------------------------------------------------------------------------
def test_abort_drops_the_upload_and_the_next_parts_request_starts_a_fresh_one() -> None:
    repo, storage = InMemoryRepository(), InMemoryStorage()
    [file] = create(repo, storage, GIB).files
    assert isinstance(file.upload, MultipartUpload)
    storage.upload_part(file.upload.upload_id, 1, 16 * MIB)
    aborted = abort_upload(repo, storage, ACME, BATCH_ID, file.file_id, policy=POLICY)
    assert aborted.aborted_upload_id == file.upload.upload_id
    record = repo.files[("acme", BATCH_ID, file.file_id)]
    assert (record.status, record.multipart_upload_id) == (FileStatus.AWAITING_UPLOAD, None)
    assert storage.live_uploads(record.object_key) == []
    # Completing the aborted upload is refused
    with pytest.raises(ConflictError) as refused:
        complete_upload(
            repo, storage, ACME, BATCH_ID, file.file_id, CompleteUploadRequest(parts=[
                CompletedPart(part_number=1, etag="x")]), policy=POLICY,
        )  # fmt: skip
    assert refused.value.code == "no_upload_in_progress"
    # and the next parts request has a new upload with nothing held
    page = parts(repo, storage, file.file_id)
    assert page.upload_id != file.upload.upload_id and page.uploaded == []
    # Aborting twice is harmless
    abort_upload(repo, storage, ACME, BATCH_ID, file.file_id, policy=POLICY)
    assert abort_upload(repo, storage, ACME, BATCH_ID, file.file_id, policy=POLICY).aborted_upload_id is None


def test_a_create_whose_upload_cannot_start_creates_nothing_and_aborts_the_uploads_it_started() -> None:
    # Given S3 starting the first multipart upload and failing the second
    repo, storage = InMemoryRepository(), InMemoryStorage()
    original = storage.create_multipart_upload
    calls: list[str] = []

    def flaky_create(key: str, *, content_type: str, part_checksums: bool = False) -> str:
        calls.append(key)
        if len(calls) == 2:
            raise StorageUnavailableError("S3 create multipart upload failed: SlowDown")
        return original(key, content_type=content_type, part_checksums=part_checksums)

    storage.create_multipart_upload = flaky_create  # type: ignore[method-assign]
    # When a batch of two large files is created
    with pytest.raises(StorageUnavailableError):
        create(repo, storage, GIB, GIB)
    # Then no batch exists (a retry creates it afresh), its plan reservation is given back, and the
    # upload that did start is aborted
    assert repo.batches == {} and repo.open_batches.get("acme", 0) == 0
    assert storage.multipart == {} and len(storage.aborted) == 1


def test_a_create_starts_its_uploads_before_the_batch_is_written() -> None:
    # The ids are on the file items as written: no claim after the commit
    repo, storage = InMemoryRepository(), InMemoryStorage()
    claims: list[str] = []
    repo.claim_multipart_upload = lambda *args, **kwargs: claims.append(args[2]) or True  # type: ignore[method-assign]
    created = create(repo, storage, GIB, 1000)
    assert claims == []
    upload = created.files[0].upload
    assert isinstance(upload, MultipartUpload)
    assert repo.files[("acme", BATCH_ID, "f00001")].multipart_upload_id == upload.upload_id


def test_the_parts_route_keeps_the_upload_window_open_while_a_large_file_arrives() -> None:
    # Given a batch whose upload window ends when its first URLs expire
    repo, storage = InMemoryRepository(), InMemoryStorage()
    [file] = create(repo, storage, 20 * GIB).files
    first_deadline = repo.batches[("acme", BATCH_ID)].due_at
    assert first_deadline is not None
    # When the client asks for the next page of parts ten minutes later
    later = NOW + timedelta(minutes=10)
    list_parts(
        repo, storage, ACME, BATCH_ID, file.file_id, cursor=None, cursors=CURSORS, policy=POLICY,
        limits=LIMITS, now=later,
    )  # fmt: skip
    # Then the window lasts as long as the URLs it was just given
    assert repo.batches[("acme", BATCH_ID)].due_at == LIMITS.upload_deadline(later) > first_deadline


# -- part checksums: files that declare sha256 -------------------------------------------------------
FILE_SHA256 = hashlib.sha256(b"the whole file").hexdigest()


def part_digest(number: int) -> str:
    return hashlib.sha256(f"part {number}".encode()).hexdigest()


def sign(repo: InMemoryRepository, storage: InMemoryStorage, file_id: str, numbers: list[int]):
    request = SignPartsRequest.model_validate(
        {"parts": [{"part_number": n, "sha256": part_digest(n)} for n in numbers]}
    )
    return sign_upload_parts(
        repo, storage, ACME, BATCH_ID, file_id, request, policy=POLICY, limits=LIMITS, now=NOW
    )


def test_a_file_with_a_declared_sha256_uploads_with_part_checksums_and_gets_no_unsigned_part_url() -> None:
    # Given a batch of a 2 GiB file that declares its SHA-256 and one that does not
    repo, storage = InMemoryRepository(), InMemoryStorage()
    checked = create(repo, storage, 2 * GIB, sha256=FILE_SHA256).files[0]
    plain = create(repo, InMemoryStorage(), 2 * GIB).files[0]
    # Then the first's upload was created with part checksums, and its instruction says so without
    # any part URL (each must sign its part's digest, which only the client knows)
    assert isinstance(checked.upload, MultipartUpload)
    assert checked.upload.part_checksum == "SHA256" and checked.upload.parts == []
    assert storage.checksummed_uploads == {checked.upload.upload_id}
    assert checked.upload.next_parts_cursor is not None
    # while a file without a declared hash keeps plain part URLs
    assert isinstance(plain.upload, MultipartUpload)
    assert plain.upload.part_checksum is None and len(plain.upload.parts) == PART_URLS_PER_PAGE


def test_the_parts_route_lists_held_parts_with_their_checksums_and_signs_none_for_a_checksummed_file() -> (
    None
):
    repo, storage = InMemoryRepository(), InMemoryStorage()
    [file] = create(repo, storage, 2 * GIB, sha256=FILE_SHA256).files
    assert isinstance(file.upload, MultipartUpload)
    checksum = sha256_base64(part_digest(1))
    storage.upload_part(file.upload.upload_id, 1, 16 * MIB, checksum)
    page = parts(repo, storage, file.file_id)
    assert page.part_checksum == "SHA256"
    assert [(p.part_number, p.checksum_sha256) for p in page.uploaded] == [(1, checksum)]
    assert page.parts == []


def test_signing_parts_signs_each_requested_part_with_its_digest() -> None:
    # Given a checksummed 2 GiB file (128 parts)
    repo, storage = InMemoryRepository(), InMemoryStorage()
    [file] = create(repo, storage, 2 * GIB, sha256=FILE_SHA256).files
    assert isinstance(file.upload, MultipartUpload)
    # When the client posts the digests of parts 5, 128 and 3 (hex or base64)
    signed = sign(repo, storage, file.file_id, [5, 128, 3])
    # Then each gets a URL of its upload and length, with its digest's checksum header to send
    assert signed.upload_id == file.upload.upload_id
    assert [p.part_number for p in signed.parts] == [5, 128, 3]
    for part in signed.parts:
        assert part.headers == {"x-amz-checksum-sha256": sha256_base64(part_digest(part.part_number))}
        assert f"size={part_length(2 * GIB, part.part_number)}" in part.url
    assert signed.expires_at == NOW + timedelta(seconds=TTL)
    # and a base64 digest is taken as its hex would be
    request = SignPartsRequest.model_validate(
        {"parts": [{"part_number": 1, "sha256": sha256_base64(part_digest(1))}]}
    )
    assert request.parts[0].sha256 == part_digest(1)


@pytest.mark.parametrize(("numbers", "code"), [([129], "invalid_part"), ([2, 2], "invalid_part")])
def test_signing_refuses_parts_beyond_the_file_or_listed_twice(numbers: list[int], code: str) -> None:
    repo, storage = InMemoryRepository(), InMemoryStorage()
    [file] = create(repo, storage, 2 * GIB, sha256=FILE_SHA256).files
    with pytest.raises(InvalidRequestError) as refused:
        sign(repo, storage, file.file_id, numbers)
    assert refused.value.code == code


def test_signing_refuses_a_file_without_part_checksums_and_the_states_the_parts_route_refuses() -> None:
    repo, storage = InMemoryRepository(), InMemoryStorage()
    [file] = create(repo, storage, 1000, GIB).files[1:]
    with pytest.raises(ConflictError) as plain:
        sign(repo, storage, file.file_id, [1])
    assert plain.value.code == "no_part_checksums"
    with pytest.raises(ConflictError) as single_put:
        sign(repo, storage, "f00001", [1])
    assert single_put.value.code == "not_multipart"
    with pytest.raises(NotFoundError):
        sign(repo, storage, "f00009", [1])


def test_signing_starts_a_fresh_checksummed_upload_after_an_abort_and_keeps_the_window_open() -> None:
    repo, storage = InMemoryRepository(), InMemoryStorage()
    [file] = create(repo, storage, 2 * GIB, sha256=FILE_SHA256).files
    abort_upload(repo, storage, ACME, BATCH_ID, file.file_id, policy=POLICY)
    later = NOW + timedelta(hours=1)
    request = SignPartsRequest.model_validate({"parts": [{"part_number": 1, "sha256": part_digest(1)}]})
    signed = sign_upload_parts(
        repo, storage, ACME, BATCH_ID, file.file_id, request, policy=POLICY, limits=LIMITS, now=later
    )
    assert signed.upload_id in storage.checksummed_uploads
    assert repo.files[("acme", BATCH_ID, file.file_id)].multipart_upload_id == signed.upload_id
    assert repo.batches[("acme", BATCH_ID)].due_at == LIMITS.upload_deadline(later)


def test_complete_of_a_checksummed_upload_needs_every_parts_checksum_and_the_held_ones() -> None:
    # Given a checksummed 40 MiB file (3 parts) whose parts arrived with their checksums
    repo, storage = InMemoryRepository(), InMemoryStorage()
    [file] = create(repo, storage, GIB, sha256=FILE_SHA256).files
    record = repo.files[("acme", BATCH_ID, file.file_id)]
    record.declared_size = 40 * MIB
    upload_id = multipart.ensure_upload(repo, storage, record)
    checksums = {n: sha256_base64(part_digest(n)) for n in (1, 2, 3)}
    etags = {n: storage.upload_part(upload_id, n, part_length(40 * MIB, n), checksums[n]) for n in (1, 2, 3)}

    def completing(given: dict[int, str | None]):
        request = CompleteUploadRequest(
            parts=[CompletedPart(part_number=n, etag=etags[n], checksum_sha256=given[n]) for n in (1, 2, 3)]
        )
        return complete_upload(
            repo, storage, ACME, BATCH_ID, file.file_id, request, policy=MultipartPolicy(10 * MIB)
        )

    # When a part's checksum is left out, or is not the one S3 holds, the upload is not completed
    with pytest.raises(InvalidRequestError) as missing:
        completing({**checksums, 2: None})
    assert missing.value.code == "part_checksum_missing"
    with pytest.raises(InvalidRequestError) as wrong:
        completing({**checksums, 3: sha256_base64(part_digest(9))})
    assert wrong.value.code == "invalid_part"
    assert storage.live_uploads(record.object_key) == [upload_id]
    # and with every part's checksum it completes
    assert completing(checksums).size == 40 * MIB


def test_the_sign_request_is_bounded_by_a_page_of_part_urls() -> None:
    assert MAX_SIGNED_PARTS == PART_URLS_PER_PAGE
    with pytest.raises(ValueError, match="at most 100"):
        SignPartsRequest.model_validate(
            {"parts": [{"part_number": n, "sha256": part_digest(n)} for n in range(1, 102)]}
        )
