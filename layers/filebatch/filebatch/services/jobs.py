"""Background jobs (BatchJobsQueue → functions/run_batch_job): one case per job kind.

Adding a kind: its model in filebatch.models.workflow (and in the BatchJob union), and its case
here. The handler passes every port a job may need; a job uses what it needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import assert_never

from filebatch.models.workflow import BatchJob, PurgeBatchJob
from filebatch.services.ports import BatchRepository, ObjectStorage
from filebatch.services.purge import purge_batch


@dataclass(frozen=True)
class JobOutcome:
    """What a job did, for the log."""

    action: str
    batch_id: str
    outcome: str
    counts: dict[str, int] = field(default_factory=dict)


def run_job(job: BatchJob, *, repo: BatchRepository, storage: ObjectStorage) -> JobOutcome:
    """Run one job to its end. Raises when it could not (the message comes back and the job resumes);
    a job with nothing (left) to do succeeds."""
    match job:
        case PurgeBatchJob():
            purged = purge_batch(repo, storage, job.tenant_id, job.batch_id)
            return JobOutcome(
                job.action,
                job.batch_id,
                purged.outcome,
                {"objects": purged.objects, "items": purged.items},
            )
        case _:
            assert_never(job)
