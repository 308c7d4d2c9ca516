"""Payloads between the state machine and its task Lambdas (statemachine/process_batch.asl.json),
and the messages of the background jobs queue (at the end).

Everything here stays small: the state machine never carries the file list (see docs/scaling.md).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from filebatch.models.domain import (
    BATCH_ID_PATTERN,
    TENANT_ID_PATTERN,
    Description,
    DescriptionInstructions,
    DuplicateOf,
    FileFacts,
)


class ExecutionInput(BaseModel):
    """Input of one execution, named after the batch."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: str
    batch_id: str
    manifest_key: str
    # Which run of the batch this is: 0 for the first, n for retry n (the execution `<batch>-r<n>`).
    retry: int = Field(default=0, ge=0)
    # The batch's description instructions: read once here, handed to every Map item.
    instructions: DescriptionInstructions = Field(default_factory=DescriptionInstructions)
    # Issue 10: the batch's fingerprint when it skips duplicates (Batch.dedup_fingerprint), else None.
    dedup_fingerprint: str | None = None


class FileTask(BaseModel):
    """One Map item: which file to work on (built by the Map's ItemSelector)."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: str
    batch_id: str
    file_id: str
    instructions: DescriptionInstructions = Field(default_factory=DescriptionInstructions)
    # Issue 10: set when the batch skips duplicates: the describe step looks the content up first.
    dedup_fingerprint: str | None = None


class ProcessedFile(FileTask):
    """Output of the process step: the verified facts about the stored bytes, and which version of
    the object they are about (the describe step reads exactly that version)."""

    filename: str
    version_id: str | None = None
    facts: FileFacts
    # The file's expiry: what an index entry it owns expires with (issue 10).
    expires_at: datetime | None = None


class DescribeFileInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: ProcessedFile
    # $$.State.RetryCount: 0 on the first attempt.
    attempt: int = Field(default=0, ge=0)


class DescribedFile(ProcessedFile):
    description: Description
    # Issue 10: the description was not made for this file but reused from this one (same bytes).
    duplicate_of: DuplicateOf | None = None


class StepFunctionsError(BaseModel):
    """What a Catch puts at its ResultPath: {"Error": <error name>, "Cause": <JSON text or text>}."""

    model_config = ConfigDict(extra="forbid")

    Error: str
    Cause: str | None = None


class FailedFile(FileTask):
    """A file whose processing or description failed: a Catch keeps the state's input (with the
    facts when the process step had produced them) and adds the error at $.error."""

    filename: str | None = None
    version_id: str | None = None
    facts: FileFacts | None = None
    expires_at: datetime | None = None
    error: StepFunctionsError


class RecordSuccessInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal["succeeded"]
    file: DescribedFile


class RecordFailureInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal["failed"]
    file: FailedFile


RecordResultInput = Annotated[RecordSuccessInput | RecordFailureInput, Field(discriminator="outcome")]


class RecordResultOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_id: str
    status: str
    recorded: bool


class FinalizeBatchInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: str
    batch_id: str
    # The run finalizing (ExecutionInput.retry): a late finalize of an earlier run changes nothing.
    retry: int = Field(default=0, ge=0)


class FinalizeBatchOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_id: str
    status: str
    swept_files: int


def error_cause(error: StepFunctionsError) -> dict[str, Any]:
    """Lambda puts {"errorType","errorMessage",...} as JSON text in Cause; other sources plain text."""
    if not error.Cause:
        return {}
    try:
        parsed = json.loads(error.Cause)
    except ValueError:
        return {"errorMessage": error.Cause}
    return parsed if isinstance(parsed, dict) else {"errorMessage": str(parsed)}


# ---------------------------------------------------------------- background jobs
# Messages of the BatchJobsQueue (template.yaml), consumed by functions/run_batch_job. Each kind is a
# model with its own `action`; a new kind is added to the BatchJob union and given its case in
# filebatch.services.jobs.run_job. Jobs are idempotent and resumable: a redelivered message finishes
# whatever an earlier delivery left undone.


class PurgeBatchJob(BaseModel):
    """Remove a deleted batch for good: every version of its objects, then its items."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["purge"] = "purge"
    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    batch_id: str = Field(pattern=BATCH_ID_PATTERN)


# Discriminated on `action` (a union of one kind for now; the lead adds close and cancel).
BatchJob = Annotated[PurgeBatchJob, Field(discriminator="action")]
