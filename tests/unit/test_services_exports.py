"""A batch's results export: written at finalize, served as a presigned GET (service level, with fakes)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from filebatch.errors import ConflictError, NotFoundError
from filebatch.models.api import CreateBatchRequest, FileResult, FileSpec
from filebatch.models.domain import BatchStatus, Description, FileError, FileStatus, Tenant, export_key
from filebatch.services.batches import UploadLimits, create_batch
from filebatch.services.cursors import CursorSigner
from filebatch.services.exports import get_export, write_export
from filebatch.services.processing import finalize_batch
from tests.unit.fakes import InMemoryRepository, InMemoryStorage, RecordingEvents, StaticCursorKeys

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
ACME = Tenant(tenant_id="acme", plan="enterprise")
BATCH_ID = "b-" + "3" * 32


def make(files: int, repo: InMemoryRepository | None = None) -> tuple[InMemoryRepository, InMemoryStorage]:
    repo, storage = repo or InMemoryRepository(), InMemoryStorage()
    create_batch(
        repo,
        storage,
        ACME,
        CreateBatchRequest(
            files=[FileSpec(filename=f"{i}.txt", size=1, content_type="text/plain") for i in range(files)]
        ),
        limits=UploadLimits(max_files=10_000, max_file_bytes=10, url_ttl_seconds=60),
        retention_days=30,
        cursors=CursorSigner(StaticCursorKeys()),
        now=NOW,
        make_batch_id=lambda: BATCH_ID,
    )
    return repo, storage


class CountingRepository(InMemoryRepository):
    """Remembers the largest page it was asked for (an export must not read the batch at once) and
    whether every read was consistent (the finalize step's sweep wrote some files a moment before)."""

    largest_page = 0
    all_consistent = True

    def list_files(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        self.largest_page = max(self.largest_page, int(kwargs["limit"]))  # type: ignore[call-overload]
        self.all_consistent &= kwargs.get("consistent") is True
        return super().list_files(*args, **kwargs)  # type: ignore[arg-type]


def test_the_export_has_every_result_in_file_order_read_a_page_at_a_time() -> None:
    # Given a batch of 1,201 files, one completed with a description, one failed
    counting = CountingRepository()
    _, storage = make(1201, counting)
    counting.move_file(
        "acme",
        BATCH_ID,
        "f00002",
        expected=FileStatus.AWAITING_UPLOAD,
        to=FileStatus.COMPLETED,
        at=NOW,
        facts=None,
        description=Description(provider="local", text="a note", attributes={"words": 2}),
        error=None,
    )
    counting.move_file(
        "acme",
        BATCH_ID,
        "f01201",
        expected=FileStatus.AWAITING_UPLOAD,
        to=FileStatus.FAILED,
        at=NOW,
        facts=None,
        description=None,
        error=FileError(code="size_mismatch", message="no", retryable=False),
    )
    # When its export is written in pages of 500
    written = write_export(counting, storage, "acme", BATCH_ID, page_size=500)
    # Then it holds one FileResult per line, every file once, in file order
    lines = storage.versions[export_key("acme", BATCH_ID)][-1].decode().splitlines()
    results = [FileResult.model_validate_json(line) for line in lines]
    assert written == len(results) == 1201
    assert [r.file_id for r in results] == [f"f{i:05d}" for i in range(1, 1202)]
    assert results[1].description is not None and results[1].description.text == "a note"
    assert results[-1].error is not None and results[-1].error.code == "size_mismatch"
    assert results[0].status is FileStatus.AWAITING_UPLOAD
    # And each line is the same JSON the results route returns for that file
    assert json.loads(lines[1]) == results[1].model_dump(mode="json")
    assert counting.largest_page == 500 and counting.all_consistent


def test_the_export_of_an_ended_batch_is_a_presigned_download() -> None:
    # Given a batch finalized (its export written)
    repo, storage = make(3)
    repo.start_run("acme", BATCH_ID, files=3, at=NOW)
    finalize_batch(
        repo, "acme", BATCH_ID, storage=storage, now=NOW, events=RecordingEvents(), provider="local"
    )
    # When its export is asked for
    export = get_export(repo, storage, ACME, BATCH_ID, ttl_seconds=600, now=NOW)
    # Then the answer is a presigned GET of the export, valid for the setting's seconds
    assert export.batch_id == BATCH_ID and export.files == 3
    assert export.url == f"https://downloads.example/{export_key('acme', BATCH_ID)}?expires=600"
    assert export.expires_at == NOW + timedelta(seconds=600)


def test_no_export_before_the_batch_ends_or_before_it_is_written() -> None:
    # Given a batch still awaiting uploads
    repo, storage = make(2)
    with pytest.raises(ConflictError) as raised:
        get_export(repo, storage, ACME, BATCH_ID, ttl_seconds=60, now=NOW)
    assert raised.value.code == "export_not_ready"
    # And one ended without an export (ended before exports existed)
    repo.finish_batch(
        "acme",
        BATCH_ID,
        status=BatchStatus.FAILED,
        expected=frozenset({BatchStatus.AWAITING_UPLOAD}),
        at=NOW,
        due_at=None,
    )
    with pytest.raises(ConflictError) as raised:
        get_export(repo, storage, ACME, BATCH_ID, ttl_seconds=60, now=NOW)
    assert raised.value.code == "export_not_ready"


@pytest.mark.parametrize("batch_id", ["b-" + "4" * 32, "nonsense"])
def test_the_export_of_an_unknown_batch_is_a_404(batch_id: str) -> None:
    repo, storage = make(1)
    with pytest.raises(NotFoundError):
        get_export(repo, storage, ACME, batch_id, ttl_seconds=60, now=NOW)
    with pytest.raises(NotFoundError):
        get_export(repo, storage, Tenant(tenant_id="other"), BATCH_ID, ttl_seconds=60, now=NOW)
