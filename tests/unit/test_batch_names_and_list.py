"""Batch names and metadata, the tenant's list of batches, key cursors, and the idempotency store's
answer keeping (issue 8, stream CREATE). Services with the in-memory fakes; models as such."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from filebatch.adapters.idempotency import MAX_KEPT_CHARS, _KeptAnswer
from filebatch.errors import ConflictError, InvalidRequestError, NotFoundError
from filebatch.models.api import BatchesQuery, CreateBatchRequest, CreateBatchResponse, FileSpec
from filebatch.models.domain import Batch, BatchStatus, Tenant
from filebatch.models.records import (
    BatchRecord,
    NameClaimRecord,
    batch_id_of_sort_key,
    created_sort_key,
)
from filebatch.services.batches import (
    BATCHES_CURSOR_SCOPE,
    UploadLimits,
    create_batch,
    get_batch_status,
    list_batches,
    replay_created_batch,
)
from filebatch.services.cursors import CursorSigner
from tests.unit.fakes import InMemoryRepository, InMemoryStorage, StaticCursorKeys

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
ACME = Tenant(tenant_id="acme", plan="enterprise")
GLOBEX = Tenant(tenant_id="globex", plan="enterprise")
LIMITS = UploadLimits(max_files=2000, max_file_bytes=1000, url_ttl_seconds=900)
RETENTION_DAYS = 30
KEYS = StaticCursorKeys()
CURSORS = CursorSigner(KEYS)
FILE = {"filename": "a.jpg", "size": 10, "content_type": "image/jpeg"}


def batch_id(n: int) -> str:
    return f"b-{n:032x}"


def make(
    repo: InMemoryRepository,
    *,
    tenant: Tenant = ACME,
    number: int = 1,
    name: str | None = None,
    metadata: dict[str, str] | None = None,
    now: datetime = NOW,
    files: int = 1,
    storage: InMemoryStorage | None = None,
) -> CreateBatchResponse:
    return create_batch(
        repo,
        storage or InMemoryStorage(),
        tenant,
        CreateBatchRequest(
            files=[FileSpec(filename=f"f{i}.jpg", size=10, content_type="image/jpeg") for i in range(files)],
            name=name,
            metadata=metadata,
        ),
        limits=LIMITS,
        retention_days=RETENTION_DAYS,
        cursors=CURSORS,
        now=now,
        make_batch_id=lambda: batch_id(number),
    )


# ------------------------------------------------------------------------------ models
@pytest.mark.parametrize(
    "extra",
    [
        {"name": ""},
        {"name": "x" * 129},
        {"name": "tab\there"},
        {"name": "nul\x00"},
        {"name": "del\x7f"},
        {"name": 7},
        {"name": "lone \udaf4 surrogate"},
        {"metadata": {f"k{i}": "v" for i in range(17)}},
        {"metadata": {"": "v"}},
        {"metadata": {"k" * 65: "v"}},
        {"metadata": {"k": "v" * 257}},
        {"metadata": {"k": 1}},
        {"metadata": {"k": None}},
        {"metadata": {"k": "line\nbreak"}},
        {"metadata": {"k\x01": "v"}},
        {"metadata": ["k", "v"]},
    ],
)
def test_names_and_metadata_outside_the_rules_are_refused(extra: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CreateBatchRequest.model_validate({"files": [FILE], **extra})


def test_names_and_metadata_at_the_limits_are_accepted() -> None:
    metadata = {f"{i:02d}" + "k" * 62: "v" * 256 for i in range(15)} | {"empty": ""}
    request = CreateBatchRequest.model_validate(
        {"files": [FILE], "name": "Nightly scans — 2026/11/22 #1 ✓" + "x" * 97, "metadata": metadata}
    )
    assert request.name is not None and len(request.name) == 128
    assert request.metadata == metadata
    # Both optional; null is as good as absent
    assert (
        CreateBatchRequest.model_validate({"files": [FILE], "name": None, "metadata": None}).metadata is None
    )


def test_a_named_batch_record_round_trips_and_carries_the_list_index_keys() -> None:
    batch = Batch(
        tenant_id="acme",
        batch_id=batch_id(3),
        status=BatchStatus.AWAITING_UPLOAD,
        total=1,
        created_at=NOW,
        updated_at=NOW,
        name="nightly",
        metadata={"team": "scans", "run": "42"},
    )
    item = BatchRecord.from_domain(batch).to_item()
    assert item["name"] == "nightly" and item["metadata"] == {"team": "scans", "run": "42"}
    assert item["tenant_pk"] == "TENANT#acme"
    assert item["created_sk"] == f"2026-11-22T02:00:00.000000Z#{batch.batch_id}"
    assert batch_id_of_sort_key(item["created_sk"]) == batch.batch_id
    read = BatchRecord.model_validate(item).to_domain()
    assert (read.name, read.metadata, read.batch_id) == (batch.name, batch.metadata, batch.batch_id)


def test_items_written_before_names_existed_still_read() -> None:
    # Given a batch item of an older version: no name, metadata or index keys
    item = {
        "pk": f"TENANT#acme#BATCH#{batch_id(4)}",
        "sk": "BATCH",
        "entity": "batch",
        "tenant_id": "acme",
        "batch_id": batch_id(4),
        "status": "processing",
        "total": 2,
        "created_at": NOW.isoformat(),
        "updated_at": NOW.isoformat(),
    }
    batch = BatchRecord.model_validate(item).to_domain()
    assert batch.name is None and batch.metadata == {}


def test_the_sort_key_orders_creation_times_as_text() -> None:
    # Whatever the fraction of a second or the time zone written, text order is time order
    times = [
        datetime(2026, 11, 22, 2, 0, 0, tzinfo=UTC),
        datetime(2026, 11, 22, 2, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 11, 22, 3, 0, 0, 500_000, tzinfo=timezone_plus(2)),  # 01:00:00.5 UTC
        datetime(2026, 11, 22, 2, 0, 1, tzinfo=UTC),
    ]
    keys = [created_sort_key(t, batch_id(1)) for t in times]
    assert sorted(keys) == [keys[2], keys[0], keys[1], keys[3]]


def timezone_plus(hours: int) -> Any:
    from datetime import timezone

    return timezone(timedelta(hours=hours))


def test_a_name_claim_carries_its_batch_and_expiry() -> None:
    batch = Batch(
        tenant_id="acme",
        batch_id=batch_id(5),
        status=BatchStatus.AWAITING_UPLOAD,
        total=1,
        created_at=NOW,
        updated_at=NOW,
        name="a#b",
        expires_at=NOW + timedelta(days=30),
    )
    item = NameClaimRecord.for_batch(batch).to_item()
    assert item["pk"] == "TENANT#acme#NAME#a#b" and item["sk"] == "NAME"
    assert item["batch_id"] == batch.batch_id
    assert item["expires_at"] == int((NOW + timedelta(days=30)).timestamp())


# ------------------------------------------------------------------------------ create
def test_a_named_batch_with_metadata_is_stored_and_echoed_by_create_and_status() -> None:
    repo = InMemoryRepository()
    created = make(repo, name="nightly", metadata={"team": "scans"})
    assert (created.name, created.metadata) == ("nightly", {"team": "scans"})
    status = get_batch_status(repo, ACME, created.batch_id, provider="local", now=NOW)
    assert (status.name, status.metadata) == ("nightly", {"team": "scans"})
    # And an unnamed batch has no name and empty metadata
    plain = make(repo, number=2)
    assert (plain.name, plain.metadata) == (None, {})


def test_a_name_is_unique_per_tenant_among_batches_that_still_exist() -> None:
    repo = InMemoryRepository()
    make(repo, name="nightly")
    usage_before = repo.get_usage("acme", month="2026-11")
    # When the tenant creates another batch with that name, it is refused before anything is counted
    with pytest.raises(ConflictError) as raised:
        make(repo, number=2, name="nightly")
    assert raised.value.code == "name_taken" and raised.value.http_status == 409
    assert repo.get_batch("acme", batch_id(2)) is None
    assert repo.get_usage("acme", month="2026-11") == usage_before
    # But another tenant may use it, and names differing in case are different names
    make(repo, tenant=GLOBEX, number=3, name="nightly")
    make(repo, number=4, name="Nightly")


def test_a_name_is_free_again_once_its_batch_expired_or_was_deleted() -> None:
    repo = InMemoryRepository()
    make(repo, name="nightly")
    # After the batch's retention the name is free (even if TTL has not removed the claim yet)
    later = NOW + timedelta(days=RETENTION_DAYS, seconds=1)
    make(repo, number=2, name="nightly", now=later)
    assert repo.name_holder("acme", "nightly", now=later) == batch_id(2)
    # Releasing for the old batch leaves the new batch's claim alone; releasing for its own frees it
    repo.release_name("acme", "nightly", batch_id=batch_id(1))
    assert repo.name_holder("acme", "nightly", now=later) == batch_id(2)
    repo.release_name("acme", "nightly", batch_id=batch_id(2))
    make(repo, number=3, name="nightly", now=later)


def test_a_name_lost_in_a_race_gives_back_the_plan_reservation() -> None:
    # Given a store where the name is claimed between the check and the write (another create won)
    class RacingRepository(InMemoryRepository):
        def name_holder(self, tenant_id: str, name: str, *, now: datetime) -> str | None:
            return None

    racing = RacingRepository()
    make(racing, name="nightly")
    with pytest.raises(ConflictError) as raised:
        make(racing, number=2, name="nightly")
    # Then the second create is refused and its reservation given back
    assert raised.value.code == "name_taken"
    assert racing.get_usage("acme", month="2026-11").open_batches == 1
    assert racing.get_batch("acme", batch_id(2)) is None


def test_a_replayed_create_answer_is_read_back_from_the_batch() -> None:
    # Given a batch of 1,001 files (two pages of uploads)
    repo, storage = InMemoryRepository(), InMemoryStorage()
    created = make(repo, name="big", metadata={"k": "v"}, files=1001, storage=storage)
    # When its answer is rebuilt a minute later
    replayed = replay_created_batch(
        repo,
        storage,
        ACME,
        created.batch_id,
        url_ttl_seconds=900,
        cursors=CURSORS,
        now=NOW + timedelta(minutes=1),
    )
    # Then it is the same batch, files, cursor, name and metadata, with upload URLs signed anew
    assert replayed.model_dump(exclude={"files"}) == created.model_dump(exclude={"files"})
    assert [f.model_dump(exclude={"upload"}) for f in replayed.files] == [
        f.model_dump(exclude={"upload"}) for f in created.files
    ]
    assert replayed.files[0].upload.expires_at == created.files[0].upload.expires_at + timedelta(minutes=1)
    # And another tenant cannot replay it
    with pytest.raises(NotFoundError):
        replay_created_batch(
            repo, storage, GLOBEX, created.batch_id, url_ttl_seconds=900, cursors=CURSORS, now=NOW
        )


# ------------------------------------------------------------------------------ list
def populate(repo: InMemoryRepository) -> list[str]:
    """Five acme batches a minute apart (newest last), two named nightly-*, one completed; one globex."""
    names = ["nightly-1", None, "weekly", "nightly-2", None]
    for number, name in enumerate(names, start=1):
        make(repo, number=number, name=name, now=NOW + timedelta(minutes=number))
    repo.finish_batch(
        "acme",
        batch_id(4),
        status=BatchStatus.COMPLETED,
        expected=frozenset({BatchStatus.AWAITING_UPLOAD}),
        at=NOW + timedelta(hours=1),
        due_at=None,
    )
    make(repo, tenant=GLOBEX, number=9, name="nightly-9", now=NOW + timedelta(minutes=9))
    return [batch_id(n) for n in (5, 4, 3, 2, 1)]


def page(repo: InMemoryRepository, tenant: Tenant = ACME, **query: Any) -> tuple[list[str], str | None]:
    listed = list_batches(repo, tenant, BatchesQuery(**query), cursors=CURSORS, provider="local", now=NOW)
    return [b.batch_id for b in listed.items], listed.next_cursor


def test_the_list_is_the_tenants_batches_newest_first_as_their_status_shows_them() -> None:
    repo = InMemoryRepository()
    newest_first = populate(repo)
    listed = list_batches(repo, ACME, BatchesQuery(), cursors=CURSORS, provider="local", now=NOW)
    assert [b.batch_id for b in listed.items] == newest_first and listed.next_cursor is None
    assert listed.items[1] == get_batch_status(repo, ACME, batch_id(4), provider="local", now=NOW)
    # And the other tenant sees only its own
    assert page(repo, GLOBEX) == ([batch_id(9)], None)


def test_the_list_pages_with_a_cursor_and_filters_by_status_and_name_prefix() -> None:
    repo = InMemoryRepository()
    newest_first = populate(repo)
    # Pages of two, until the cursor runs out
    seen, cursor = [], None
    while True:
        ids, cursor = page(repo, limit=2, cursor=cursor)
        seen += ids
        if cursor is None:
            break
    assert seen == newest_first
    # Filters
    assert page(repo, status=BatchStatus.COMPLETED) == ([batch_id(4)], None)
    assert page(repo, name="nightly-") == ([batch_id(4), batch_id(1)], None)
    assert page(repo, name="nightly-1") == ([batch_id(1)], None)
    assert page(repo, name="nightly-", status=BatchStatus.AWAITING_UPLOAD) == ([batch_id(1)], None)
    ids, cursor = page(repo, name="nightly-", limit=1)
    assert ids == [batch_id(4)] and page(repo, name="nightly-", limit=1, cursor=cursor) == (
        [batch_id(1)],
        None,
    )


@pytest.mark.parametrize("limit", [0, 101])
def test_the_list_limit_is_1_to_100(limit: int) -> None:
    with pytest.raises(ValidationError):
        BatchesQuery(limit=limit)


def test_a_list_cursor_only_works_for_its_tenant_and_list() -> None:
    repo = InMemoryRepository()
    populate(repo)
    _, cursor = page(repo, limit=2)
    assert cursor is not None
    # Another tenant's request with it is refused, as are forgeries and other lists' cursors
    results_cursor = CURSORS.encode("acme", batch_id(1), "f00001")
    forged = CursorSigner(StaticCursorKeys(b"x" * 32)).encode_key("acme", BATCHES_CURSOR_SCOPE, "z")
    for tenant, bad in [(GLOBEX, cursor), (ACME, results_cursor), (ACME, forged), (ACME, "x" * 30)]:
        with pytest.raises(InvalidRequestError) as raised:
            page(repo, tenant, cursor=bad)
        assert raised.value.code == "invalid_cursor"


# ------------------------------------------------------------------------------ key cursors
def test_key_cursors_round_trip_any_text_survive_a_rotation_and_stay_in_their_scope() -> None:
    keys = StaticCursorKeys()
    signer = CursorSigner(keys)
    position = "2026-11-22T02:00:00.000000Z#" + batch_id(1)
    cursor = signer.encode_key("acme", "batches", position)
    assert "=" not in cursor and position not in cursor
    assert signer.decode_key("acme", "batches", cursor) == position
    keys.rotate(b"n" * 32)
    assert signer.decode_key("acme", "batches", cursor) == position
    for tenant, scope in [("globex", "batches"), ("acme", "other")]:
        with pytest.raises(InvalidRequestError):
            signer.decode_key(tenant, scope, cursor)
    # A file cursor is not a key cursor, nor the other way round
    file_cursor = signer.encode("acme", batch_id(1), "f00001")
    with pytest.raises(InvalidRequestError):
        signer.decode_key("acme", "batches", file_cursor)
    with pytest.raises(InvalidRequestError):
        signer.decode("acme", "batches", signer.encode_key("acme", "batches", "f00001"))


# ------------------------------------------------------------------------------ idempotency store
def test_an_answer_is_kept_compressed_and_given_back_whole() -> None:
    kept = _KeptAnswer(brief=lambda answer: {"replay_batch_id": answer["batch_id"]})
    answer = {"batch_id": batch_id(1), "files": [{"url": f"https://x/{i}?sig={i:064x}"} for i in range(1000)]}
    stored = kept.to_dict(answer)
    assert set(stored) == {"zlib"} and len(json.dumps(stored)) < len(json.dumps(answer)) / 3
    assert kept.from_dict(json.loads(json.dumps(stored))) == answer


def test_an_answer_too_large_to_keep_is_kept_as_its_brief() -> None:
    import os

    kept = _KeptAnswer(brief=lambda answer: {"replay_batch_id": answer["batch_id"]})
    # Incompressible text over what an item may hold
    answer = {"batch_id": batch_id(1), "noise": os.urandom(MAX_KEPT_CHARS).hex()}
    stored = kept.to_dict(answer)
    assert stored == {"brief": {"replay_batch_id": batch_id(1)}}
    assert kept.from_dict(stored) == {"replay_batch_id": batch_id(1)}
