"""Multipart, resumable uploads for files above the deployment's multipart threshold (issue 10).

A file declared larger than `MultipartThresholdBytes` gets a MULTIPART instruction instead of one
presigned PUT: an S3 multipart upload (its id kept on the file's record), a part size, and presigned
UploadPart URLs a page at a time. The client PUTs the parts (in parallel, in any order), can ask
which parts S3 already holds (GET .../parts) to resume after an interruption, and completes the
upload (POST .../complete), which S3 turns into one object: its "Object Created" event
(reason CompleteMultipartUpload) goes through the same record path as a PUT's.

A file that declares its SHA-256 uploads with part checksums: its upload is created with
ChecksumAlgorithm SHA256, and each part URL signs that part's digest, which only the client knows
(it hashes each part before sending it), so its part URLs come from POST .../parts with the digests,
never unsigned: S3 itself refuses a part whose bytes are not the ones the client hashed. SHA-256 is a
COMPOSITE checksum on S3 (a digest of the parts' digests; FULL_OBJECT exists for CRCs only), so the
whole file's SHA-256 stays the process step's check (`checksum_mismatch`).

Work per request is bounded (API Gateway answers within 29 s, a Lambda response is at most 6 MB):
at most PART_URLS_PER_PAGE part URLs per file (~1.5 KB each) and at most MULTIPART_FILES_PER_PAGE
multipart files per page of upload instructions, whose CreateMultipartUpload calls run
CREATE_UPLOAD_THREADS at a time (docs/uploads.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from filebatch.errors import ConflictError, FilebatchError, InvalidRequestError, NotFoundError
from filebatch.models.api import (
    AbortUploadResponse,
    CompleteUploadRequest,
    CompleteUploadResponse,
    HeldPart,
    MultipartUpload,
    PartsPage,
    SignedParts,
    SignPartsRequest,
    UploadPart,
)
from filebatch.models.domain import FILE_ID_PATTERN, Batch, BatchFile, FileStatus, Tenant
from filebatch.services.cursors import CursorSigner
from filebatch.services.ports import BatchRepository, ObjectStorage, StoredPart

if TYPE_CHECKING:
    from filebatch.services.batches import UploadLimits

MIB = 1024 * 1024
# S3's limits (Amazon S3 user guide, "Amazon S3 multipart upload limits"): at most 10,000 parts, each
# 5 MiB to 5 GiB except the last, which may be smaller; an object of at most 5 TiB.
MAX_PARTS = 10_000
S3_MIN_PART_BYTES = 5 * MIB
S3_MAX_PART_BYTES = 5 * 1024 * MIB
# Our smallest part: 16 MiB. Fewer, larger requests (a 1 GiB file is 64 parts, not 205) keep
# per-request overhead (TLS, signing, latency) small next to the transfer, while a part lost to a
# broken connection costs at most 16 MiB to resend. Parts grow (in whole MiB) only when a file
# would otherwise need more than 10,000 of them: above 156.25 GiB.
MIN_PART_BYTES = 16 * MIB
# Part URLs per file per response (a page of GET .../parts), ~150 KB of URLs: 1.6 GiB of parts at
# the smallest part size, more than most clients have in flight.
PART_URLS_PER_PAGE = 100
# Multipart files per page of upload instructions (create, GET .../uploads): each costs one
# CreateMultipartUpload call (~50-100 ms on AWS) and PART_URLS_PER_PAGE URLs (~150 KB). 10 files:
# 1.5 MB of part URLs next to at most 1,000 PUT instructions (~1.6 MB), well under the 6 MB
# response limit, and 10 S3 calls in 2-3 rounds of CREATE_UPLOAD_THREADS.
MULTIPART_FILES_PER_PAGE = 10
CREATE_UPLOAD_THREADS = 4
# Part cursors page one file's parts; the scope names the file (a cursor of another file is refused).
PARTS_CURSOR_SCOPE = "parts"


def part_size_for(size: int) -> int:
    """The part size of a `size`-byte file: a whole number of MiB, at least MIN_PART_BYTES, and large
    enough that the file needs at most MAX_PARTS parts (S3 refuses part number 10,001)."""
    if size < 1:
        raise ValueError("a file has at least one byte")
    needed = math.ceil(size / MAX_PARTS)
    return max(MIN_PART_BYTES, math.ceil(needed / MIB) * MIB)


def part_count_for(size: int) -> int:
    return math.ceil(size / part_size_for(size))


def part_length(size: int, part_number: int) -> int:
    """How many bytes part `part_number` (1-based) of a `size`-byte file holds: the part size, or
    what is left for the last part."""
    part_size = part_size_for(size)
    return min(part_size, size - (part_number - 1) * part_size)


@dataclass(frozen=True)
class MultipartPolicy:
    """Which files upload in parts: those declared larger than `threshold_bytes`."""

    threshold_bytes: int

    def applies_to(self, file: BatchFile) -> bool:
        return file.declared_size > self.threshold_bytes


def part_checksum_of(file: BatchFile) -> Literal["SHA256"] | None:
    """ "SHA256" when each part of the file's upload carries its SHA-256 (the file declares one)."""
    return "SHA256" if file.declared_sha256 is not None else None


def _create_upload(storage: ObjectStorage, file: BatchFile) -> str:
    return storage.create_multipart_upload(
        file.object_key,
        content_type=file.declared_content_type,
        part_checksums=part_checksum_of(file) is not None,
    )


def ensure_upload(repo: BatchRepository, storage: ObjectStorage, file: BatchFile) -> str:
    """The file's multipart upload id: the one on its record, or a new one claimed for it. Two
    requests racing for a file both create an upload, one claim wins (a conditional write), and the
    loser aborts its own and uses the winner's: a file never has two live uploads we know of."""
    if file.multipart_upload_id is not None:
        return file.multipart_upload_id
    upload_id = _create_upload(storage, file)
    if repo.claim_multipart_upload(file.tenant_id, file.batch_id, file.file_id, upload_id=upload_id):
        file.multipart_upload_id = upload_id
        return upload_id
    storage.abort_multipart_upload(file.object_key, upload_id)
    current = repo.get_file(file.tenant_id, file.batch_id, file.file_id)
    if current is None or current.multipart_upload_id is None:
        # The claim failed because the file is no longer awaiting upload.
        raise _not_awaiting(current or file)
    file.multipart_upload_id = current.multipart_upload_id
    return current.multipart_upload_id


def ensure_uploads(repo: BatchRepository, storage: ObjectStorage, files: Sequence[BatchFile]) -> None:
    """ensure_upload for several files (those of a page of instructions), concurrently."""
    _concurrently(
        [f for f in files if f.multipart_upload_id is None], lambda f: ensure_upload(repo, storage, f)
    )


def start_uploads(storage: ObjectStorage, files: Sequence[BatchFile]) -> None:
    """Start the multipart uploads of files not written yet (a batch being created), concurrently:
    each file gets its upload id before its record is written, so no claim is needed."""

    def start(file: BatchFile) -> None:
        file.multipart_upload_id = _create_upload(storage, file)

    _concurrently(files, start)


def _concurrently(files: Sequence[BatchFile], call: Callable[[BatchFile], object]) -> None:
    """`call` for each file, CREATE_UPLOAD_THREADS at a time (boto3 clients are thread-safe). The
    first failure is raised once every call has finished (nothing is left running)."""
    if not files:
        return
    with ThreadPoolExecutor(max_workers=min(CREATE_UPLOAD_THREADS, len(files))) as pool:
        list(pool.map(call, files))


def abort_uploads(storage: ObjectStorage, files: Sequence[BatchFile]) -> None:
    """Abort the uploads start_uploads began, for a create that failed after them. Best effort: an
    upload left behind is aborted by the bucket's lifecycle rule a day later."""
    for file in files:
        if file.multipart_upload_id is not None:
            with suppress(FilebatchError):
                storage.abort_multipart_upload(file.object_key, file.multipart_upload_id)


def sign_parts(
    storage: ObjectStorage,
    file: BatchFile,
    upload_id: str,
    part_numbers: Sequence[int],
    *,
    ttl_seconds: int,
    digests: Mapping[int, str] | None = None,
) -> list[UploadPart]:
    """Presigned UploadPart URLs, each signed for its part's exact length (Content-Length is signed:
    S3 refuses a part of another size) and, given `digests` (part number → SHA-256 hex), its digest."""
    parts = []
    for number in part_numbers:
        url, headers = storage.presign_upload_part(
            file.object_key,
            upload_id,
            number,
            size=part_length(file.declared_size, number),
            expires_in=ttl_seconds,
            sha256=digests[number] if digests is not None else None,
        )
        parts.append(UploadPart(part_number=number, url=url, headers=headers))
    return parts


def multipart_instruction(
    storage: ObjectStorage,
    cursors: CursorSigner,
    file: BatchFile,
    *,
    ttl_seconds: int,
    now: datetime,
) -> MultipartUpload:
    """The MULTIPART instruction of a file whose upload exists (ensure_upload): the first page of
    part URLs, and the cursor of GET .../parts for the rest. A file with part checksums gets no URL
    here: its client POSTs the parts' digests to .../parts for them."""
    assert file.multipart_upload_id is not None
    count = part_count_for(file.declared_size)
    first = range(1, min(count, PART_URLS_PER_PAGE) + 1)
    part_checksum = part_checksum_of(file)
    return MultipartUpload(
        upload_id=file.multipart_upload_id,
        part_size=part_size_for(file.declared_size),
        part_count=count,
        part_checksum=part_checksum,
        parts=[]
        if part_checksum is not None
        else sign_parts(storage, file, file.multipart_upload_id, first, ttl_seconds=ttl_seconds),
        next_parts_cursor=_parts_cursor(cursors, file, PART_URLS_PER_PAGE + 1)
        if count > PART_URLS_PER_PAGE
        else None,
        expires_at=now + timedelta(seconds=ttl_seconds),
    )


@dataclass(frozen=True)
class MultipartUploads:
    """What a page of upload instructions needs to hand out MULTIPART ones."""

    repo: BatchRepository
    cursors: CursorSigner
    policy: MultipartPolicy

    def instructions(
        self, storage: ObjectStorage, files: Sequence[BatchFile], *, ttl_seconds: int, now: datetime
    ) -> dict[str, MultipartUpload]:
        """file id → MULTIPART instruction, for the files of `files` above the threshold (the page
        was cut by page_cut, so there are at most MULTIPART_FILES_PER_PAGE of them)."""
        # A skipped duplicate (in a create's page) has nothing to upload.
        in_parts = [f for f in files if self.policy.applies_to(f) and f.status is FileStatus.AWAITING_UPLOAD]
        ensure_uploads(self.repo, storage, in_parts)
        return {
            f.file_id: multipart_instruction(storage, self.cursors, f, ttl_seconds=ttl_seconds, now=now)
            for f in in_parts
        }


def page_cut(files: Sequence[BatchFile], policy: MultipartPolicy | None) -> int:
    """How many of `files` (a page of upload instructions) to answer: all of them, or up to and
    including the MULTIPART_FILES_PER_PAGE-th multipart one still awaiting upload (the page's
    cursor continues after it)."""
    if policy is None:
        return len(files)
    seen = 0
    for index, file in enumerate(files):
        if policy.applies_to(file) and file.status is FileStatus.AWAITING_UPLOAD:
            seen += 1
            if seen == MULTIPART_FILES_PER_PAGE:
                return index + 1
    return len(files)


# -- the routes -------------------------------------------------------------------------------------
def _multipart_file(
    repo: BatchRepository, tenant: Tenant, batch_id: str, file_id: str, policy: MultipartPolicy
) -> tuple[Batch, BatchFile]:
    """The caller's batch and its multipart file: 404 for an unknown batch or file, 409
    not_multipart for a file that uploads with one PUT."""
    from filebatch.services.batches import require_batch

    batch = require_batch(repo, tenant, batch_id)
    file = repo.get_file(tenant.tenant_id, batch_id, file_id) if _is_file_id(file_id) else None
    if file is None:
        raise NotFoundError(f"file {file_id} of batch {batch_id} not found", code="file_not_found")
    if not policy.applies_to(file):
        raise ConflictError(
            f"file {file_id} uploads with one PUT, not in parts (its size is at most "
            f"{policy.threshold_bytes} bytes)",
            code="not_multipart",
        )
    return batch, file


def _require_awaiting_upload(batch: Batch, file: BatchFile) -> None:
    """409 when the file takes no upload: its batch ended or was closed (as GET .../uploads says),
    or the file itself is past awaiting upload."""
    from filebatch.services.batches import require_open_for_uploads

    require_open_for_uploads(batch)
    if file.status is not FileStatus.AWAITING_UPLOAD:
        raise _not_awaiting(file)


def _require_multipart_file(
    repo: BatchRepository, tenant: Tenant, batch_id: str, file_id: str, policy: MultipartPolicy
) -> BatchFile:
    batch, file = _multipart_file(repo, tenant, batch_id, file_id, policy)
    _require_awaiting_upload(batch, file)
    return file


def list_parts(
    repo: BatchRepository,
    storage: ObjectStorage,
    tenant: Tenant,
    batch_id: str,
    file_id: str,
    *,
    cursor: str | None,
    cursors: CursorSigner,
    policy: MultipartPolicy,
    limits: UploadLimits,
    now: datetime,
) -> PartsPage:
    """One page of a multipart file's parts (PART_URLS_PER_PAGE part numbers): the parts S3 already
    holds (ListParts), and fresh URLs for the others, so that an interrupted upload resumes without
    re-sending what arrived. Starts the file's upload when it has none (or after an abort). The
    batch's upload window lasts as long as the new URLs (as GET .../uploads does): a large file
    still arriving, page after page, is not expired under its client."""
    file = _require_multipart_file(repo, tenant, batch_id, file_id, policy)
    ttl_seconds = limits.url_ttl_seconds
    repo.extend_upload_window(tenant.tenant_id, batch_id, due_at=limits.upload_deadline(now))
    first = int(cursors.decode_key(tenant.tenant_id, _parts_scope(file), cursor)) if cursor else 1
    count = part_count_for(file.declared_size)
    numbers = range(first, min(count, first + PART_URLS_PER_PAGE - 1) + 1)
    upload_id = ensure_upload(repo, storage, file)
    try:
        held = storage.list_parts(file.object_key, upload_id, after=first - 1, limit=len(numbers))
    except NotFoundError:
        # The upload is gone (completed, aborted behind our back, or expired by the bucket's
        # lifecycle rule): completed if the object is there, else start a fresh one.
        if storage.head(file.object_key) is not None:
            raise _already_uploaded(file.file_id) from None
        repo.release_multipart_upload(tenant.tenant_id, batch_id, file_id, upload_id=upload_id)
        file.multipart_upload_id = None
        upload_id = ensure_upload(repo, storage, file)
        held = []
    held_numbers = {part.part_number for part in held}
    # A part with a checksum is signed only with its digest (POST .../parts): none signed here.
    part_checksum = part_checksum_of(file)
    missing = [n for n in numbers if n not in held_numbers] if part_checksum is None else []
    return PartsPage(
        batch_id=batch_id,
        file_id=file_id,
        upload_id=upload_id,
        part_size=part_size_for(file.declared_size),
        part_count=count,
        part_checksum=part_checksum,
        uploaded=[
            HeldPart(part_number=p.part_number, etag=p.etag, size=p.size, checksum_sha256=p.checksum_sha256)
            for p in held
            if p.part_number in numbers
        ],
        parts=sign_parts(storage, file, upload_id, missing, ttl_seconds=ttl_seconds),
        next_cursor=_parts_cursor(cursors, file, numbers[-1] + 1) if numbers[-1] < count else None,
        expires_at=now + timedelta(seconds=ttl_seconds),
    )


def sign_upload_parts(
    repo: BatchRepository,
    storage: ObjectStorage,
    tenant: Tenant,
    batch_id: str,
    file_id: str,
    request: SignPartsRequest,
    *,
    policy: MultipartPolicy,
    limits: UploadLimits,
    now: datetime,
) -> SignedParts:
    """Presigned UploadPart URLs for exactly the requested parts of a file with part checksums, each
    signing the part's SHA-256 as the client computed it (S3 refuses other bytes). Starts the file's
    upload when it has none (after an abort) and keeps the batch's upload window open as long as the
    URLs, as GET .../parts does."""
    file = _require_multipart_file(repo, tenant, batch_id, file_id, policy)
    if part_checksum_of(file) is None:
        raise ConflictError(
            f"file {file_id} declares no sha256, so its parts carry no checksum: GET .../parts signs them",
            code="no_part_checksums",
        )
    count = part_count_for(file.declared_size)
    digests: dict[int, str] = {}
    for part in request.parts:
        if part.part_number > count:
            raise InvalidRequestError(
                f"the file has {count} parts; there is no part {part.part_number}", code="invalid_part"
            )
        if part.part_number in digests:
            raise InvalidRequestError(f"part {part.part_number} is listed twice", code="invalid_part")
        digests[part.part_number] = part.sha256
    ttl_seconds = limits.url_ttl_seconds
    repo.extend_upload_window(tenant.tenant_id, batch_id, due_at=limits.upload_deadline(now))
    upload_id = ensure_upload(repo, storage, file)
    return SignedParts(
        batch_id=batch_id,
        file_id=file_id,
        upload_id=upload_id,
        parts=sign_parts(storage, file, upload_id, list(digests), ttl_seconds=ttl_seconds, digests=digests),
        expires_at=now + timedelta(seconds=ttl_seconds),
    )


def complete_upload(
    repo: BatchRepository,
    storage: ObjectStorage,
    tenant: Tenant,
    batch_id: str,
    file_id: str,
    request: CompleteUploadRequest,
    *,
    policy: MultipartPolicy,
) -> CompleteUploadResponse:
    """CompleteMultipartUpload, after checking the parts against what S3 holds and the declared size
    (a wrong list is refused with a code before S3 is asked). Idempotent: completing again after a
    success answers the same success."""
    batch, file = _multipart_file(repo, tenant, batch_id, file_id, policy)
    upload_id = file.multipart_upload_id
    if upload_id is None:
        raise ConflictError(
            f"file {file_id} has no upload in progress: ask GET .../parts for one",
            code="no_upload_in_progress",
        )
    done = _completed(storage, file, upload_id)
    if done is not None:
        return done
    _require_awaiting_upload(batch, file)
    try:
        held = {p.part_number: p for p in storage.list_parts(file.object_key, upload_id)}
    except NotFoundError:
        done = _completed(storage, file, upload_id, upload_gone=True)
        if done is not None:
            return done
        raise ConflictError(
            f"the upload {upload_id} of file {file_id} no longer exists (aborted or expired): ask "
            "GET .../parts for a new one",
            code="upload_not_found",
        ) from None
    _check_part_checksums(file, request)
    _check_parts(file, request, held)
    try:
        etag = storage.complete_multipart_upload(
            file.object_key,
            upload_id,
            [(p.part_number, p.etag, p.checksum_sha256) for p in request.parts],
        )
    except ConflictError:
        # A concurrent complete of this upload won the key (If-None-Match): the same success.
        done = _completed(storage, file, upload_id, upload_gone=True)
        if done is None:
            raise
        return done
    return CompleteUploadResponse(
        batch_id=batch_id, file_id=file_id, upload_id=upload_id, size=file.declared_size, etag=etag
    )


def abort_upload(
    repo: BatchRepository,
    storage: ObjectStorage,
    tenant: Tenant,
    batch_id: str,
    file_id: str,
    *,
    policy: MultipartPolicy,
) -> AbortUploadResponse:
    """AbortMultipartUpload: S3 drops the parts; the file stays awaiting upload and the next parts
    (or uploads) request starts a fresh upload. Aborting a file with no upload is a no-op."""
    file = _require_multipart_file(repo, tenant, batch_id, file_id, policy)
    upload_id = file.multipart_upload_id
    if upload_id is not None:
        # S3 first: if the record's release fails after it, the next request finds the upload gone
        # (NoSuchUpload) and starts a fresh one all the same.
        storage.abort_multipart_upload(file.object_key, upload_id)
        repo.release_multipart_upload(tenant.tenant_id, batch_id, file_id, upload_id=upload_id)
    return AbortUploadResponse(batch_id=batch_id, file_id=file_id, aborted_upload_id=upload_id)


def _completed(
    storage: ObjectStorage, file: BatchFile, upload_id: str, *, upload_gone: bool = False
) -> CompleteUploadResponse | None:
    """The success of an earlier complete of this upload, when the object is there: the file has
    been recorded uploaded, or the upload is gone and the key holds the file's bytes."""
    if file.status is FileStatus.AWAITING_UPLOAD and not upload_gone:
        return None
    head = storage.head(file.object_key)
    if head is None:
        return None
    return CompleteUploadResponse(
        batch_id=file.batch_id, file_id=file.file_id, upload_id=upload_id, size=head.size, etag=head.etag
    )


def _check_parts(file: BatchFile, request: CompleteUploadRequest, held: dict[int, StoredPart]) -> None:
    count = part_count_for(file.declared_size)
    numbers = [p.part_number for p in request.parts]
    if numbers != sorted(set(numbers)):
        raise InvalidRequestError(
            "list the parts once each, in ascending part number", code="invalid_part_order"
        )
    beyond = [n for n in numbers if n > count]
    if beyond:
        raise InvalidRequestError(
            f"the file has {count} parts; there is no part {beyond[0]}", code="invalid_part"
        )
    absent = [n for n in range(1, count + 1) if n not in held or n not in numbers]
    if absent:
        raise InvalidRequestError(
            f"{len(absent)} of the file's {count} parts are missing (not listed, or not uploaded), "
            f"e.g. {', '.join(str(n) for n in absent[:10])}",
            code="parts_missing",
        )
    for part in request.parts:
        stored = held[part.part_number]
        if _unquoted(part.etag) != _unquoted(stored.etag):
            raise InvalidRequestError(
                f"part {part.part_number}: the ETag is not the one S3 returned for it", code="invalid_part"
            )
        if part.checksum_sha256 and stored.checksum_sha256 and part.checksum_sha256 != stored.checksum_sha256:
            raise InvalidRequestError(
                f"part {part.part_number}: the checksum is not the one S3 holds for it", code="invalid_part"
            )
        if part.part_number < count and stored.size < S3_MIN_PART_BYTES:
            raise InvalidRequestError(
                f"part {part.part_number} has {stored.size} bytes; every part but the last needs at "
                f"least {S3_MIN_PART_BYTES}",
                code="part_too_small",
            )
    total = sum(held[n].size for n in numbers)
    if total != file.declared_size:
        raise InvalidRequestError(
            f"the parts hold {total} bytes but {file.declared_size} were declared", code="size_mismatch"
        )


def _check_part_checksums(file: BatchFile, request: CompleteUploadRequest) -> None:
    """An upload created with part checksums completes only with every part's (S3 refuses it too)."""
    if part_checksum_of(file) is None:
        return
    unchecked = [p.part_number for p in request.parts if p.checksum_sha256 is None]
    if unchecked:
        raise InvalidRequestError(
            f"the file's parts carry SHA-256 checksums: give each part's checksum_sha256 (missing for "
            f"{len(unchecked)} parts, e.g. {', '.join(str(n) for n in unchecked[:10])})",
            code="part_checksum_missing",
        )


def _unquoted(etag: str) -> str:
    return etag.strip().strip('"')


def _already_uploaded(file_id: str) -> ConflictError:
    return ConflictError(f"file {file_id} is already uploaded", code="already_uploaded")


def _not_awaiting(file: BatchFile) -> ConflictError:
    if file.status is FileStatus.UPLOADED or file.uploaded_at is not None:
        return _already_uploaded(file.file_id)
    return ConflictError(
        f"file {file.file_id} takes no upload ({file.status.value})", code="file_not_awaiting_upload"
    )


def _is_file_id(file_id: str) -> bool:
    return re.match(FILE_ID_PATTERN, file_id) is not None


def _parts_scope(file: BatchFile) -> str:
    return f"{PARTS_CURSOR_SCOPE}/{file.batch_id}/{file.file_id}"


def _parts_cursor(cursors: CursorSigner, file: BatchFile, next_part: int) -> str:
    return cursors.encode_key(file.tenant_id, _parts_scope(file), str(next_part))
