"""Tenant plans: the one configuration of every per-tenant limit.

Two kinds of limit, enforced in two places:
- requests per second, burst and requests per month are API Gateway usage plans (one per plan,
  generated into template.yaml from this module: `python -m filebatch_local usage-plans`; a test
  fails on drift). API Gateway answers 429 before any function runs.
- files per batch, open batches and files per month are what a gateway cannot count: the create
  handler checks them (services/limits.py).

`None` means unlimited. Edit the numbers here, regenerate the template, deploy.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PlanName = Literal["free", "starter", "pro", "enterprise"]
DEFAULT_PLAN: PlanName = "free"
# Tag on each usage plan that names its plan: how operators' tools find the usage plan of a plan.
PLAN_TAG = "filebatch:plan"


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: PlanName
    description: str
    # API Gateway usage plan (token bucket per key, and a monthly request quota).
    requests_per_second: float = Field(gt=0)
    burst: int = Field(ge=1)
    monthly_requests: int | None = Field(default=None, ge=1)
    # Checked by the service.
    max_files_per_batch: int = Field(ge=1, le=10_000)
    max_open_batches: int | None = Field(default=None, ge=1)
    monthly_files: int | None = Field(default=None, ge=1)


PLANS: dict[PlanName, Plan] = {
    plan.name: plan
    for plan in (
        Plan(
            name="free",
            description="Trying filebatch out.",
            requests_per_second=5,
            burst=10,
            monthly_requests=10_000,
            max_files_per_batch=100,
            max_open_batches=3,
            monthly_files=1_000,
        ),
        Plan(
            name="starter",
            description="A team's first workloads.",
            requests_per_second=20,
            burst=40,
            monthly_requests=200_000,
            max_files_per_batch=1_000,
            max_open_batches=10,
            monthly_files=25_000,
        ),
        Plan(
            name="pro",
            description="Production workloads.",
            requests_per_second=50,
            burst=100,
            monthly_requests=2_000_000,
            max_files_per_batch=10_000,
            max_open_batches=50,
            monthly_files=250_000,
        ),
        Plan(
            name="enterprise",
            description="No quotas; throttled only to protect the account.",
            requests_per_second=100,
            burst=200,
            max_files_per_batch=10_000,
        ),
    )
}


def plan_named(name: str) -> Plan:
    """The plan of that name; ValueError for any other (a key record or an operator's typo)."""
    try:
        return PLANS[name]  # type: ignore[index]
    except KeyError:
        raise ValueError(f"unknown plan {name!r}; plans are {', '.join(PLANS)}") from None
