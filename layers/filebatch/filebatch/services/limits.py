"""The limits of a tenant's plan that API Gateway cannot count (filebatch.plans): files per batch,
open batches, files per month. Requests per second and per month are the gateway's usage plans."""

from __future__ import annotations

from datetime import UTC, datetime

from filebatch.errors import InvalidRequestError, LimitExceededError
from filebatch.models.domain import Tenant
from filebatch.plans import plan_named
from filebatch.services.ports import BatchRepository

# How long a client told "too many open batches" waits before asking again: a batch ends when its
# files are processed, which takes seconds to minutes; there is no reset time to give.
OPEN_BATCH_RETRY_AFTER_S = 30


def month_of(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m")


def seconds_until_next_month(now: datetime) -> int:
    now = now.astimezone(UTC)
    start = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=UTC)
    return max(1, int((start - now).total_seconds() + 0.999))


def check_batch_size(tenant: Tenant, files: int, *, deployment_max: int) -> None:
    """400 `too_many_files` for a batch larger than the plan or the deployment allows: it could
    never pass, whenever it is retried."""
    plan = plan_named(tenant.plan)
    limit = min(plan.max_files_per_batch, deployment_max)
    if files > limit:
        where = f" on the {plan.name} plan" if plan.max_files_per_batch < deployment_max else ""
        raise InvalidRequestError(
            f"a batch holds at most {limit} files{where}; got {files}", code="too_many_files"
        )


def reserve_batch(repo: BatchRepository, tenant: Tenant, files: int, *, now: datetime) -> str:
    """Count a new batch of `files` files against the plan, or raise LimitExceededError (429) with
    the headers that say when to retry. Returns the month the files were counted in (for a release
    should the batch not be created after all)."""
    plan = plan_named(tenant.plan)
    month = month_of(now)
    for _ in range(2):  # a second look only if the usage changed between the write and the read
        fits = plan.monthly_files is None or files <= plan.monthly_files
        if fits and repo.reserve_batch(
            tenant.tenant_id,
            month=month,
            files=files,
            max_open_batches=plan.max_open_batches,
            monthly_files=plan.monthly_files,
        ):
            return month
        usage = repo.get_usage(tenant.tenant_id, month=month)
        if plan.max_open_batches is not None and usage.open_batches >= plan.max_open_batches:
            raise LimitExceededError(
                f"the {plan.name} plan allows {plan.max_open_batches} open batches at a time; "
                "retry when one has ended",
                code="open_batch_limit",
                headers={
                    "Retry-After": str(OPEN_BATCH_RETRY_AFTER_S),
                    "RateLimit-Limit": str(plan.max_open_batches),
                    "RateLimit-Remaining": "0",
                },
            )
        if plan.monthly_files is not None and usage.files_this_month + files > plan.monthly_files:
            reset = seconds_until_next_month(now)
            remaining = max(0, plan.monthly_files - usage.files_this_month)
            raise LimitExceededError(
                f"the {plan.name} plan allows {plan.monthly_files} files a month; {remaining} are left "
                f"this month and this batch has {files}",
                code="monthly_file_quota",
                headers={
                    "Retry-After": str(reset),
                    "RateLimit-Limit": str(plan.monthly_files),
                    "RateLimit-Remaining": str(remaining),
                    "RateLimit-Reset": str(reset),
                },
            )
    raise LimitExceededError(
        "the plan's usage is changing too fast to reserve a batch; retry",
        code="open_batch_limit",
        headers={"Retry-After": "1"},
    )
