"""The plan limits the service enforces (files per batch, open batches, files per month)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from filebatch.errors import InvalidRequestError, LimitExceededError, StorageUnavailableError
from filebatch.models.api import CreateBatchRequest, FileSpec
from filebatch.models.domain import BatchStatus, Tenant
from filebatch.plans import PLANS
from filebatch.services.batches import UploadLimits, create_batch
from filebatch.services.cursors import CursorSigner
from filebatch.services.limits import month_of, seconds_until_next_month
from tests.unit.fakes import InMemoryRepository, InMemoryStorage, StaticCursorKeys

NOW = datetime(2026, 11, 30, 23, 59, 0, tzinfo=UTC)
FREE = Tenant(tenant_id="acme", plan="free")
LIMITS = UploadLimits(max_files=10_000, max_file_bytes=1000, url_ttl_seconds=900)
_ids = itertools.count()


def create(
    repo: InMemoryRepository, tenant: Tenant, files: int, storage: InMemoryStorage | None = None
) -> str:
    request = CreateBatchRequest(
        files=[FileSpec(filename=f"f{i}.jpg", size=1, content_type="image/jpeg") for i in range(files)]
    )
    return create_batch(
        repo,
        storage or InMemoryStorage(),
        tenant,
        request,
        limits=LIMITS,
        retention_days=30,
        cursors=CursorSigner(StaticCursorKeys()),
        now=NOW,
        make_batch_id=lambda: f"b-{next(_ids):032x}",
    ).batch_id


def test_a_batch_larger_than_the_plan_allows_is_a_400_naming_the_plan() -> None:
    repo = InMemoryRepository()
    with pytest.raises(InvalidRequestError, match="at most 100 files on the free plan; got 101") as raised:
        create(repo, FREE, PLANS["free"].max_files_per_batch + 1)
    assert raised.value.code == "too_many_files"
    # And nothing was counted or written
    assert repo.batches == {} and repo.open_batches == {}


def test_open_batches_are_limited_and_a_slot_comes_back_when_a_batch_ends() -> None:
    # Given a free tenant with as many open batches as its plan allows
    repo = InMemoryRepository()
    batches = [create(repo, FREE, 1) for _ in range(PLANS["free"].max_open_batches or 0)]
    # When it creates one more
    with pytest.raises(LimitExceededError) as raised:
        create(repo, FREE, 1)
    # Then it is a 429 open_batch_limit with a retry hint and the limit
    error = raised.value
    assert (error.http_status, error.code) == (429, "open_batch_limit")
    assert error.headers["RateLimit-Limit"] == str(PLANS["free"].max_open_batches)
    assert error.headers["RateLimit-Remaining"] == "0"
    assert int(error.headers["Retry-After"]) > 0
    # And once a batch has ended (finalize), the next one is accepted
    assert repo.finish_batch(
        "acme",
        batches[0],
        status=BatchStatus.COMPLETED,
        expected=frozenset({BatchStatus.AWAITING_UPLOAD}),
        at=NOW,
        due_at=None,
    )
    create(repo, FREE, 1)
    # And a finalize that runs again gives nothing back twice
    assert not repo.finish_batch(
        "acme",
        batches[0],
        status=BatchStatus.COMPLETED,
        expected=frozenset({BatchStatus.AWAITING_UPLOAD}),
        at=NOW,
        due_at=None,
    )
    with pytest.raises(LimitExceededError):
        create(repo, FREE, 1)


def test_files_per_month_are_limited_until_the_month_ends() -> None:
    # Given a free tenant that declared all but 10 of its monthly files
    repo = InMemoryRepository()
    quota = PLANS["free"].monthly_files or 0
    repo.files_by_month[("acme", "2026-11")] = quota - 10
    # When it creates a batch of 11 files
    with pytest.raises(LimitExceededError) as raised:
        create(repo, FREE, 11)
    # Then it is a 429 monthly_file_quota saying what is left and when it resets (the next month, UTC)
    error = raised.value
    assert error.code == "monthly_file_quota"
    assert error.headers == {
        "Retry-After": "60",
        "RateLimit-Limit": str(quota),
        "RateLimit-Remaining": "10",
        "RateLimit-Reset": "60",
    }
    # And a batch of 10 still fits
    create(repo, FREE, 10)
    assert repo.get_usage("acme", month="2026-11").files_this_month == quota


def test_other_tenants_and_unlimited_plans_are_not_counted_against() -> None:
    repo = InMemoryRepository()
    for _ in range(PLANS["free"].max_open_batches or 0):
        create(repo, FREE, 1)
    create(repo, Tenant(tenant_id="globex", plan="free"), 1)
    for _ in range(20):
        create(repo, Tenant(tenant_id="initech", plan="enterprise"), 100)


def test_a_batch_that_fails_to_be_created_gives_its_reservation_back() -> None:
    # Given a store whose batch write fails
    class FailingRepository(InMemoryRepository):
        def create_batch(self, batch: object, files: object) -> None:
            raise StorageUnavailableError("DynamoDB create batch failed: ThrottlingException")

    repo = FailingRepository()
    # When a create fails
    with pytest.raises(StorageUnavailableError):
        create(repo, FREE, 5)
    # Then neither the open batch nor its files count
    usage = repo.get_usage("acme", month="2026-11")
    assert (usage.open_batches, usage.files_this_month) == (0, 0)


def test_months_are_utc_calendar_months() -> None:
    assert month_of(datetime(2026, 12, 31, 23, 0, tzinfo=UTC)) == "2026-12"
    assert seconds_until_next_month(datetime(2026, 12, 31, 23, 0, tzinfo=UTC)) == 3600
    assert seconds_until_next_month(datetime(2026, 11, 1, 0, 0, tzinfo=UTC)) == 30 * 86400
