"""Skipping duplicates by content hash (issue 10; design in docs/duplicates.md).

A batch created with `skip_duplicates` has a *fingerprint*: the deployment's description provider
(and model) and the batch's description instructions, hashed. The hash index holds, per tenant,
fingerprint and SHA-256, one item: either the claim of the file being described now, or the file
that completed with that description (its facts and description copied into the item, so a lookup
is one read). A duplicate is a file of the same tenant, the same fingerprint and the same bytes.

- At create: files whose declared sha256 has a completed entry are created `skipped`, with the
  entry's facts and description and `duplicate_of` naming the file it came from; they are never
  uploaded.
- After upload (the process step computed the hash): the describe step claims the entry before it
  calls the provider. The claim's winner describes; a file that finds the entry completed reuses its
  description (`completed`, `duplicate_of`); one that finds it claimed by another file waits
  (DuplicateInProgressError, retried by the state machine) until that file completes (it reuses its
  description), fails (the claim is released: it takes the claim over) or stops answering (its
  lease runs out: it takes the claim over).
- The record step publishes a completed file's description to the entry, or releases the claim of a
  file that did not complete. A purge removes the entries its batch's files own.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from filebatch.errors import DuplicateInProgressError
from filebatch.models.domain import (
    Batch,
    BatchFile,
    DescriptionInstructions,
    DuplicateOf,
    FileStatus,
    KnownResult,
)
from filebatch.models.workflow import DescribedFile, FailedFile, ProcessedFile
from filebatch.services.ports import BatchRepository

# How long a claim holds without being renewed: one describe invocation at most (the describe
# function's Timeout, 120 s in template.yaml) with a margin. A claimant whose environment died is
# taken over after this; a live one renews it on each of its attempts.
CLAIM_LEASE = timedelta(seconds=150)
# Files read per page when a purge looks for the entries its batch owns.
PAGE = 1000


def provider_identity(provider: str, model_id: str | None) -> str:
    """What makes a description: the provider, and for a hosted model which model."""
    return provider if provider == "local" or not model_id else f"{provider}:{model_id}"


def fingerprint(provider: str, instructions: DescriptionInstructions) -> str:
    """The description settings a duplicate must share: `provider` (provider_identity) and every
    instruction (prompt, language, detail), hashed. Equal settings give equal fingerprints."""
    settings = {"provider": provider, "instructions": instructions.model_dump(mode="json")}
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


# -- at create ----------------------------------------------------------------------------------
def skip_known(
    repo: BatchRepository, files: Sequence[BatchFile], *, fingerprint: str, now: datetime
) -> list[BatchFile]:
    """The files with those whose declared sha256 the tenant has a completed result for turned
    `skipped`: that result's facts and description, `duplicate_of` its file. One read per distinct
    hash (BatchGetItem, 100 keys a call)."""
    declared = sorted({f.declared_sha256 for f in files if f.declared_sha256})
    if not declared:
        return list(files)
    known = repo.known_results(files[0].tenant_id, fingerprint, declared, now=now)
    return [
        _skipped(file, known[file.declared_sha256], now) if file.declared_sha256 in known else file
        for file in files
    ]


def _skipped(file: BatchFile, known: KnownResult, now: datetime) -> BatchFile:
    return file.model_copy(
        update={
            "status": FileStatus.SKIPPED,
            "facts": known.facts,
            "description": known.description,
            "duplicate_of": DuplicateOf(batch_id=known.batch_id, file_id=known.file_id),
            "finished_at": now,
        }
    )


# -- the describe step ---------------------------------------------------------------------------
def reuse_or_claim(repo: BatchRepository, file: ProcessedFile, *, now: datetime) -> DescribedFile | None:
    """For a file of a batch that skips duplicates: its description reused from the file of the
    same bytes that completed (a DescribedFile with `duplicate_of`), or None when this file holds
    the claim and is to be described. DuplicateInProgressError while another file holds it."""
    assert file.dedup_fingerprint is not None
    claim = KnownResult(
        tenant_id=file.tenant_id,
        fingerprint=file.dedup_fingerprint,
        sha256=file.facts.sha256,
        batch_id=file.batch_id,
        file_id=file.file_id,
        state="claimed",
        lease_until=now + CLAIM_LEASE,
        expires_at=file.expires_at,
    )
    holder = repo.claim_description(claim, now=now)
    if holder is None:
        return None
    if holder.state == "completed" and holder.description is not None:
        mine = (holder.batch_id, holder.file_id) == (file.batch_id, file.file_id)
        return DescribedFile(
            **file.model_dump(),
            description=holder.description,
            duplicate_of=None if mine else DuplicateOf(batch_id=holder.batch_id, file_id=holder.file_id),
        )
    raise DuplicateInProgressError(
        f"file {holder.file_id} of batch {holder.batch_id} has the same content and is being described; "
        "this file takes its description when it is done",
    )


# -- the record step -----------------------------------------------------------------------------
def settle_claim(repo: BatchRepository, described: DescribedFile, *, completed: bool, now: datetime) -> None:
    """After the record step: a file that completed with its own description publishes it (later
    duplicates reuse it); one that did not (cancelled meanwhile) gives its claim up."""
    if described.dedup_fingerprint is None or described.duplicate_of is not None:
        return
    if not completed:
        release_claim(repo, described)
        return
    repo.publish_result(
        KnownResult(
            tenant_id=described.tenant_id,
            fingerprint=described.dedup_fingerprint,
            sha256=described.facts.sha256,
            batch_id=described.batch_id,
            file_id=described.file_id,
            state="completed",
            facts=described.facts,
            description=described.description,
            finished_at=now,
            expires_at=described.expires_at,
        ),
        now=now,
    )


def release_claim(repo: BatchRepository, file: FailedFile | DescribedFile) -> None:
    """A file that will not complete gives up its claim (if it holds one): a file waiting for its
    description takes the claim over at its next attempt instead of waiting for the lease."""
    if file.dedup_fingerprint is None or file.facts is None:
        return
    repo.release_claim(
        file.tenant_id,
        file.dedup_fingerprint,
        file.facts.sha256,
        batch_id=file.batch_id,
        file_id=file.file_id,
    )


# -- purge ---------------------------------------------------------------------------------------
def forget_batch_results(repo: BatchRepository, batch: Batch) -> int:
    """Remove the index entries the batch's files own (completed or claimed), so that a deleted
    batch's files are nobody's duplicate target. Idempotent: run before the file items go."""
    if batch.dedup_fingerprint is None:
        return 0
    forgotten = 0
    after: str | None = None
    while True:
        files, after = repo.list_files(batch.tenant_id, batch.batch_id, limit=PAGE, after_file_id=after)
        forgotten += repo.forget_results(
            batch.tenant_id, batch.dedup_fingerprint, _owned_hashes(files), batch_id=batch.batch_id
        )
        if after is None:
            return forgotten


def _owned_hashes(files: Iterable[BatchFile]) -> list[str]:
    """Hashes of the files that may own an entry: verified by the process step, not reused."""
    return sorted({f.facts.sha256 for f in files if f.facts is not None and f.duplicate_of is None})
