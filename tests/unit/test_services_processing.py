"""The workflow's per-file steps and the batch's finalisation (service level, with fakes)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from PIL import Image

from filebatch.errors import (
    FileNotRunnableError,
    FileRejectedError,
    InvalidRequestError,
    RetryableDescriptionError,
)
from filebatch.media.source import MediaSource
from filebatch.models.api import CreateBatchRequest, DescriptionOptions, FileResult, FileSpec
from filebatch.models.domain import (
    BatchStatus,
    Description,
    FileFacts,
    FileStatus,
    Tenant,
    export_key,
    upload_key,
)
from filebatch.models.workflow import (
    DescribedFile,
    DescribeFileInput,
    FailedFile,
    FileTask,
    RecordFailureInput,
    StepFunctionsError,
)
from filebatch.services.batches import UploadLimits, create_batch
from filebatch.services.cursors import CursorSigner
from filebatch.services.description import FaultInjection
from filebatch.services.processing import (
    describe,
    failure_from,
    finalize_batch,
    process_file,
    record_failure,
    record_success,
)
from filebatch.services.uploads import record_upload
from tests.conftest import PROJECT_ROOT, load_event
from tests.unit.fakes import (
    InMemoryRepository,
    InMemoryStorage,
    RecordingEvents,
    RecordingStarter,
    StaticCursorKeys,
)

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
BATCH_ID = "b-0123456789abcdef0123456789abcdef"


def png_bytes(width: int = 40, height: int = 20) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def batch_with(
    *specs: tuple[str, int, str], description: DescriptionOptions | None = None, uploaded: bool = True
) -> tuple[InMemoryRepository, InMemoryStorage]:
    repo, storage = InMemoryRepository(), InMemoryStorage()
    create_batch(
        repo,
        storage,
        Tenant(tenant_id="acme"),
        CreateBatchRequest(
            files=[FileSpec(filename=n, size=s, content_type=t) for n, s, t in specs], description=description
        ),
        limits=UploadLimits(max_files=100, max_file_bytes=10**7, url_ttl_seconds=60),
        retention_days=30,
        cursors=CursorSigner(StaticCursorKeys()),
        now=NOW,
        make_batch_id=lambda: BATCH_ID,
    )
    if not uploaded:
        return repo, storage
    # Where the workflow finds a batch: every file uploaded, the run started.
    for position in range(1, len(specs) + 1):
        repo.mark_uploaded("acme", BATCH_ID, f"f{position:05d}", size=1, version_id=None, at=NOW)
    repo.start_run("acme", BATCH_ID, files=len(specs), at=NOW)
    return repo, storage


def task(file_id: str = "f00001") -> FileTask:
    return FileTask(tenant_id="acme", batch_id=BATCH_ID, file_id=file_id)


def test_process_verifies_size_hash_and_type_of_the_stored_bytes() -> None:
    # Given a declared PNG whose exact bytes were uploaded
    content = png_bytes()
    repo, storage = batch_with(("red.png", len(content), "image/png"))
    storage.put(upload_key("acme", BATCH_ID, "f00001"), content)
    # When the process step runs
    processed = process_file(repo, storage, task(), now=NOW)
    # Then it reports the real size, SHA-256, type from magic bytes and dimensions
    assert processed.filename == "red.png"
    assert processed.facts.size_bytes == len(content)
    assert processed.facts.sha256 == hashlib.sha256(content).hexdigest()
    assert processed.facts.detected_content_type == "image/png"
    assert (processed.facts.metadata["width"], processed.facts.metadata["height"]) == (40, 20)


@pytest.mark.parametrize(
    ("declared_size", "declared_type", "code"),
    [
        (999, "image/png", "size_mismatch"),
        (None, "image/jpeg", "type_mismatch"),
        (None, "application/pdf", "type_mismatch"),
    ],
)
def test_process_rejects_bytes_that_do_not_match_the_declaration(
    declared_size: int | None, declared_type: str, code: str
) -> None:
    # Given a PNG was uploaded under a different size or type than declared
    content = png_bytes()
    repo, storage = batch_with(("x", declared_size or len(content), declared_type))
    storage.put(upload_key("acme", BATCH_ID, "f00001"), content)
    # When the process step runs
    # Then the file is rejected (not retryable) with a clear code
    with pytest.raises(FileRejectedError) as raised:
        process_file(repo, storage, task(), now=NOW)
    assert raised.value.code == code


class EchoProvider:
    """Describes the bytes it is given by their first bytes, so a test can tell which it got."""

    name = "echo"

    def describe(
        self, media: MediaSource, facts: FileFacts, filename: str, instructions: object = None
    ) -> Description:
        with media.open() as file:
            content = file.read()
        return Description(provider=self.name, text=repr(content[:8]), attributes={"size": len(content)})


def test_describe_reads_the_version_that_was_verified_not_bytes_written_since() -> None:
    # Given a PNG uploaded and recorded with the version its upload event announced
    content = png_bytes()
    repo, storage = batch_with(("photo.png", len(content), "image/png"), uploaded=False)
    key = upload_key("acme", BATCH_ID, "f00001")
    announced = storage.put(key, content)
    repo.mark_uploaded("acme", BATCH_ID, "f00001", size=len(content), version_id=announced, at=NOW)
    # And other bytes of the same length written to the key before processing
    swapped = b"plain text, not a picture".ljust(len(content), b".")
    storage.put(key, swapped)
    # When the process step verifies it, then more bytes are written, then it is described
    processed = process_file(repo, storage, task(), now=NOW)
    storage.put(key, swapped)
    described = describe(storage, EchoProvider(), DescribeFileInput(file=processed))
    # Then both steps worked on the announced version: the PNG's facts and the PNG's description
    assert processed.version_id == announced
    assert processed.facts.sha256 == hashlib.sha256(content).hexdigest()
    assert processed.facts.detected_content_type == "image/png"
    assert described.description.text == repr(content[:8])


def test_the_batch_instructions_reach_the_provider_through_the_execution_input() -> None:
    # Given a batch created with instructions, whose one file has arrived and started the workflow
    content = png_bytes()
    options = DescriptionOptions(prompt="Say the colour.", language="it", detail="brief")
    repo, storage = batch_with(("red.png", len(content), "image/png"), description=options, uploaded=False)
    storage.put(upload_key("acme", BATCH_ID, "f00001"), content)
    starter = RecordingStarter()
    key = upload_key("acme", BATCH_ID, "f00001")
    record_upload(repo, starter, key=key, size=len(content), version_id=None, now=NOW)
    execution_input = json.loads(json.dumps(starter.started[BATCH_ID]))
    seen: list[object] = []

    class RecordingProvider(EchoProvider):
        def describe(
            self, media: MediaSource, facts: FileFacts, filename: str, instructions: object = None
        ) -> Description:
            seen.append(instructions)
            return super().describe(media, facts, filename)

    # When the Distributed Map's BatchInput and its child's ItemSelector (as the ASL writes them)
    # build the file's task from the execution input, and the task is processed, then described
    # from the process step's output
    machine = json.loads((PROJECT_ROOT / "statemachine" / "process_batch.asl.json").read_text())
    distributed = machine["States"]["ProcessFiles"]
    inline = next(iter(distributed["ItemProcessor"]["States"].values()))
    item = {"file_id": "f00001"}

    def resolve(path: str, state_input: dict[str, Any]) -> Any:
        value: Any = item if path.startswith("$$.Map.Item.Value") else state_input
        for key in path.removeprefix("$$.Map.Item.Value").removeprefix("$").split(".")[1:]:
            value = value[key]
        return value

    batch_input = {
        name.removesuffix(".$"): resolve(path, execution_input)
        for name, path in distributed["ItemBatcher"]["BatchInput"].items()
    }
    child_input = {"Items": [item], "BatchInput": batch_input}
    task = FileTask.model_validate(
        {name.removesuffix(".$"): resolve(path, child_input) for name, path in inline["ItemSelector"].items()}
    )
    processed = process_file(repo, storage, task, now=NOW)
    payload = DescribeFileInput.model_validate_json(DescribeFileInput(file=processed).model_dump_json())
    describe(storage, RecordingProvider(), payload)
    # Then the provider was given the batch's instructions, read once when the workflow started
    assert seen == [options.to_domain()]


def test_without_an_announced_version_describe_still_reads_what_process_read() -> None:
    # Given an upload whose event carried no version (an unversioned bucket)
    content = png_bytes()
    repo, storage = batch_with(("photo.png", len(content), "image/png"))
    key = upload_key("acme", BATCH_ID, "f00001")
    storage.put(key, content)
    repo.mark_uploaded("acme", BATCH_ID, "f00001", size=len(content), version_id=None, at=NOW)
    # When it is processed, then overwritten, then described
    processed = process_file(repo, storage, task(), now=NOW)
    storage.put(key, b"x" * len(content))
    described = describe(storage, EchoProvider(), DescribeFileInput(file=processed))
    # Then describe read the version process read
    assert described.description.text == repr(content[:8])


def test_fault_injection_throttles_matching_files_for_the_first_attempts_only() -> None:
    # Given a processed file named like the fault injection's fragment
    content = png_bytes()
    repo, storage = batch_with(("flaky-red.png", len(content), "image/png"))
    storage.put(upload_key("acme", BATCH_ID, "f00001"), content)
    processed = process_file(repo, storage, task(), now=NOW)
    faults = FaultInjection.parse("throttle:flaky:2")

    class Provider:
        name = "fake"

        def describe(
            self, media: MediaSource, facts: FileFacts, filename: str, instructions: object = None
        ) -> Description:
            return Description(provider="fake", text=f"{media.size} bytes", attributes={})

    # When it is described on attempts 0, 1 and 2
    for attempt in (0, 1):
        with pytest.raises(RetryableDescriptionError):
            describe(storage, Provider(), DescribeFileInput(file=processed, attempt=attempt), faults=faults)
    described = describe(storage, Provider(), DescribeFileInput(file=processed, attempt=2), faults=faults)
    # Then the first two throttle and the third succeeds
    assert described.description.text == f"{len(content)} bytes"


def test_a_caught_lambda_error_becomes_a_coded_non_retryable_failure() -> None:
    # Given what Step Functions' Catch recorded for a FileRejectedError (real Cause format)
    failed = RecordFailureInput.model_validate(load_event("sfn_catch_lambda_error")).file
    # When it is turned into the file's error
    error = failure_from(failed)
    # Then the code and message come from the Lambda error, and it is not retryable
    assert error.code == "size_mismatch"
    assert error.message == "size_mismatch: uploaded 10 bytes but 1234 were declared"
    assert error.retryable is False


def test_exhausted_retryable_errors_are_recorded_as_retryable() -> None:
    failed = FailedFile(
        tenant_id="acme",
        batch_id=BATCH_ID,
        file_id="f00001",
        error=StepFunctionsError(
            Error="RetryableDescriptionError", Cause='{"errorMessage": "provider_throttled: slow down"}'
        ),
    )
    error = failure_from(failed)
    assert (error.code, error.retryable) == ("provider_throttled", True)


def test_results_are_recorded_once_and_finalize_sweeps_the_rest() -> None:
    # Given a batch of three uploaded files
    repo, storage = batch_with(*[(f"{i}.png", 1, "image/png") for i in range(3)])
    for file_id in ("f00001", "f00002", "f00003"):
        repo.mark_uploaded("acme", BATCH_ID, file_id, size=1, version_id=None, at=NOW)
    facts = FileFacts(size_bytes=1, sha256="0" * 64, detected_content_type="image/png")
    described = DescribedFile(
        **task().model_dump(),
        filename="0.png",
        facts=facts,
        description=Description(provider="local", text="t", attributes={}),
    )
    # When the first succeeds twice (a retried Lambda), the second fails, and the third never ran
    first = record_success(repo, described, now=NOW)
    replay = record_success(repo, described, now=NOW)
    record_failure(
        repo,
        FailedFile(**task("f00002").model_dump(), error=StepFunctionsError(Error="States.Timeout")),
        now=NOW,
    )
    outcome = finalize_batch(
        repo,
        "acme",
        BATCH_ID,
        storage=storage,
        now=NOW,
        events=RecordingEvents(),
        provider="local",
        page_size=2,
    )
    # Then each file has exactly one terminal state and the counters add up
    assert (first.recorded, replay.recorded) == (True, False)
    statuses = [repo.files[("acme", BATCH_ID, f)].status for f in ("f00001", "f00002", "f00003")]
    assert statuses == [FileStatus.COMPLETED, FileStatus.FAILED, FileStatus.FAILED]
    assert repo.files[("acme", BATCH_ID, "f00003")].error.code == "not_processed"  # type: ignore[union-attr]
    batch = repo.batches[("acme", BATCH_ID)]
    assert (batch.completed, batch.failed) == (1, 2)
    assert outcome.swept_files == 1
    assert batch.status is BatchStatus.COMPLETED_WITH_ERRORS
    # And the export holds every file's final result, one JSON per line, in file order (paged by 2)
    lines = storage.versions[export_key("acme", BATCH_ID)][-1].decode().splitlines()
    exported = [FileResult.model_validate_json(line) for line in lines]
    assert [(r.file_id, r.status) for r in exported] == list(
        zip(("f00001", "f00002", "f00003"), statuses, strict=True)
    )
    assert exported[2].error is not None and exported[2].error.code == "not_processed"
    assert storage.content_types[export_key("acme", BATCH_ID)] == "application/x-ndjson"


def test_a_result_for_a_file_in_processing_is_recorded_without_reading_the_file_first() -> None:
    # Given a file the process step moved to processing, in a store whose reads would fail
    repo, _ = batch_with(("a.png", 1, "image/png"))
    assert repo.move_file(
        "acme", BATCH_ID, "f00001", expected=FileStatus.UPLOADED, to=FileStatus.PROCESSING, at=NOW
    )

    def no_reads(*args: object, **kwargs: object) -> None:
        raise AssertionError("the result's hot path read the file")

    repo.get_file = no_reads  # type: ignore[method-assign, assignment]
    facts = FileFacts(size_bytes=1, sha256="0" * 64, detected_content_type="image/png")
    described = DescribedFile(
        **task().model_dump(),
        filename="a.png",
        facts=facts,
        description=Description(provider="local", text="t"),
    )
    # When its result is recorded, Then it is, with one conditional write
    assert record_success(repo, described, now=NOW).recorded
    assert repo.files[("acme", BATCH_ID, "f00001")].status is FileStatus.COMPLETED


def test_finalize_is_idempotent() -> None:
    repo, storage = batch_with(("a.png", 1, "image/png"))
    first = finalize_batch(
        repo, "acme", BATCH_ID, storage=storage, now=NOW, events=RecordingEvents(), provider="local"
    )
    second = finalize_batch(
        repo, "acme", BATCH_ID, storage=storage, now=NOW, events=RecordingEvents(), provider="local"
    )
    assert (first.status, first.swept_files) == ("failed", 1)
    assert (second.status, second.swept_files) == ("failed", 0)
    assert repo.batches[("acme", BATCH_ID)].failed == 1
    # The export was written by the run that ended the batch (a repeat finds it ended: no rewrite)
    [export] = storage.versions[export_key("acme", BATCH_ID)]
    assert export.count(b"\n") == 1


def test_fault_injection_spec_takes_several_rules_and_refuses_nonsense() -> None:
    faults = FaultInjection.parse("throttle:flaky:2,throttle:hopeless:99")
    assert faults is not None
    assert faults.rules == {"flaky": 2, "hopeless": 99}
    faults.check("calm.png", 0)
    with pytest.raises(RetryableDescriptionError):
        faults.check("hopeless.png", 50)
    assert FaultInjection.parse("") is None
    for bad in ("explode:x:1", "throttle::1", "throttle:x:many"):
        with pytest.raises(InvalidRequestError, match="fault injection"):
            FaultInjection.parse(bad)


@pytest.mark.parametrize(
    ("name", "cause", "code"),
    [
        ("PermanentDescriptionError", '{"errorMessage": "no code in front"}', "unsupported_media"),
        ("FileRejectedError", None, "file_rejected"),
        ("KeyError", '{"errorMessage": "\'facts\'"}', "internal_error"),
    ],
)
def test_errors_without_a_code_in_their_message_take_their_class_code(
    name: str, cause: str | None, code: str
) -> None:
    failed = FailedFile(
        tenant_id="acme",
        batch_id=BATCH_ID,
        file_id="f00001",
        error=StepFunctionsError(Error=name, Cause=cause),
    )
    assert failure_from(failed).code == code


@pytest.mark.parametrize(
    ("name", "message", "code"),
    [
        (
            "Runtime.ExitError",
            "RequestId: 1f2e Error: Runtime exited with error: signal: killed",
            "function_crashed",
        ),
        (
            "Lambda.Unknown",
            "The cause could not be determined because Lambda did not return an error type.",
            "function_crashed",
        ),
        (
            "Runtime.OutOfMemory",
            "RequestId: 1f2e Error: Runtime exited with error: signal: killed",
            "out_of_memory",
        ),
        ("Sandbox.Timedout", "RequestId: 1f2e Error: Task timed out after 120.00 seconds", "timeout"),
        ("States.Timeout", None, "timeout"),
    ],
)
def test_a_crashed_or_timed_out_environment_is_recorded_retryable_with_a_code_saying_so(
    name: str, message: str | None, code: str
) -> None:
    # Given what a Catch recorded after the state machine's retries of an infrastructure failure
    cause = None if message is None else f'{{"errorType": "{name}", "errorMessage": "{message}"}}'
    failed = FailedFile(
        tenant_id="acme",
        batch_id=BATCH_ID,
        file_id="f00001",
        error=StepFunctionsError(Error=name, Cause=cause),
    )
    # When it is turned into the file's error
    error = failure_from(failed)
    # Then it says what happened and that trying again may work
    assert (error.code, error.retryable) == (code, True)


def test_a_step_lambda_kept_throttling_past_its_retry_budget_is_recorded_retryable_as_throttled() -> None:
    # Given what a Catch recorded when Lambda kept refusing the function (its reserved concurrency in
    # use) for the whole Retry budget: Lambda's API error, whose text carries no code of ours
    cause = (
        "Rate Exceeded. (Service: AWSLambda; Status Code: 429; Error Code: TooManyRequestsException; "
        "Request ID: 1f2e; Proxy: null)"
    )
    failed = FailedFile(
        tenant_id="acme",
        batch_id=BATCH_ID,
        file_id="f00001",
        error=StepFunctionsError(Error="Lambda.TooManyRequestsException", Cause=cause),
    )
    # When it is turned into the file's error
    error = failure_from(failed)
    # Then it says the function was throttled, that trying again may work, and keeps Lambda's words
    assert (error.code, error.retryable) == ("function_throttled", True)
    assert error.message == cause


def test_a_file_larger_than_declared_is_refused_before_its_bytes_are_read() -> None:
    # Given a file whose stored size differs from the declared size
    content = b"x" * 10_000
    repo, storage = batch_with(("big.txt", 10, "text/plain"))
    storage.put(upload_key("acme", BATCH_ID, "f00001"), content)
    # When the process step runs
    with pytest.raises(FileRejectedError) as rejected:
        process_file(repo, storage, task(), now=NOW)
    # Then it is a size mismatch, and not one byte was downloaded to find out
    assert rejected.value.code == "size_mismatch"
    assert storage.bytes_streamed == 0


def test_the_local_provider_reads_only_what_it_needs() -> None:
    # Given a long text file and an opaque binary file, verified by the process step
    from filebatch.media.local_provider import LocalDescriptionProvider

    text = ("word " * 20_000).encode()
    binary = bytes(range(256)) * 40
    repo, storage = batch_with(
        ("long.txt", len(text), "text/plain"), ("blob.bin", len(binary), "application/octet-stream")
    )
    storage.put(upload_key("acme", BATCH_ID, "f00001"), text)
    storage.put(upload_key("acme", BATCH_ID, "f00002"), binary)
    processed = [process_file(repo, storage, task(file_id), now=NOW) for file_id in ("f00001", "f00002")]
    # When each is described
    storage.bytes_streamed = 0
    described_text = describe(storage, LocalDescriptionProvider(), DescribeFileInput(file=processed[0]))
    read_for_text = storage.bytes_streamed
    described_binary = describe(storage, LocalDescriptionProvider(), DescribeFileInput(file=processed[1]))
    # Then the text's description has its true counts and first words, read from its first chunks
    # only, and the binary file's took no read at all
    assert described_text.description.attributes["word_count"] == 20_000
    assert described_text.description.attributes["excerpt"].startswith("word word")
    assert 0 < read_for_text < len(text) // 100
    assert described_binary.description.attributes["size_bytes"] == len(binary)
    assert storage.bytes_streamed == read_for_text


@pytest.mark.parametrize("new_run", [False, True])
def test_a_retryable_failure_is_run_again_by_a_later_run_only(new_run: bool) -> None:
    # Given a file whose description failed retryably in the batch's run
    content = png_bytes()
    repo, storage = batch_with(("red.png", len(content), "image/png"))
    storage.put(upload_key("acme", BATCH_ID, "f00001"), content)
    error = StepFunctionsError(
        Error="RetryableDescriptionError", Cause='{"errorMessage": "provider_throttled"}'
    )
    record_failure(repo, FailedFile(**task().model_dump(), error=error), now=NOW)
    later = NOW.replace(minute=NOW.minute + 5)
    if new_run:
        # (a retry's claim starts a new run)
        repo.batches[("acme", BATCH_ID)].run_started_at = later
    # When its process step runs again: in a new run, or in the same one (its Express child again)
    if new_run:
        processed = process_file(repo, storage, task(), now=later)
        # Then a new run works on it
        assert processed.facts.size_bytes == len(content)
        assert repo.get_file("acme", BATCH_ID, "f00001").status is FileStatus.PROCESSING  # type: ignore[union-attr]
    else:
        # Then the same run leaves its result as it is
        with pytest.raises(FileNotRunnableError):
            process_file(repo, storage, task(), now=later)
        file = repo.get_file("acme", BATCH_ID, "f00001")
        assert file is not None and file.status is FileStatus.FAILED and file.finished_at == NOW


# -- issue 10, stream INTEGRITY: a declared SHA-256 is checked against the bytes ------------------
def declared_batch(content: bytes, sha256: str) -> tuple[InMemoryRepository, InMemoryStorage]:
    """A one-file batch declaring `sha256` for a PNG of len(content) bytes, `content` uploaded."""
    repo, storage = InMemoryRepository(), InMemoryStorage()
    create_batch(
        repo,
        storage,
        Tenant(tenant_id="acme"),
        CreateBatchRequest(
            files=[FileSpec(filename="x.png", size=len(content), content_type="image/png", sha256=sha256)]
        ),
        limits=UploadLimits(max_files=100, max_file_bytes=10**7, url_ttl_seconds=60),
        retention_days=30,
        cursors=CursorSigner(StaticCursorKeys()),
        now=NOW,
        make_batch_id=lambda: BATCH_ID,
    )
    storage.put(upload_key("acme", BATCH_ID, "f00001"), content)
    repo.mark_uploaded("acme", BATCH_ID, "f00001", size=len(content), version_id="v1", at=NOW)
    repo.start_run("acme", BATCH_ID, files=1, at=NOW)
    return repo, storage


def test_process_accepts_bytes_whose_sha256_is_the_declared_one_in_any_spelling() -> None:
    # Given a PNG whose SHA-256 was declared as upper-case hex, and another as base64
    content = png_bytes()
    digest = hashlib.sha256(content)
    for spelling in (digest.hexdigest().upper(), base64.b64encode(digest.digest()).decode()):
        repo, storage = declared_batch(content, spelling)
        # When the process step runs
        processed = process_file(repo, storage, task(), now=NOW)
        # Then the file goes on, its hash the declared one
        assert processed.facts.sha256 == digest.hexdigest()
        assert repo.get_file("acme", BATCH_ID, "f00001").declared_sha256 == digest.hexdigest()  # type: ignore[union-attr]


def test_process_fails_bytes_whose_sha256_differs_from_the_declared_one_permanently() -> None:
    # Given a file of the declared size and type whose bytes are not the ones whose hash was declared
    # (S3 would have refused them; an emulation that does not enforce checksums let them through)
    content = png_bytes()
    declared = hashlib.sha256(png_bytes(41, 20)).hexdigest()
    repo, storage = declared_batch(content, declared)
    # When the process step runs
    with pytest.raises(FileRejectedError) as raised:
        process_file(repo, storage, task(), now=NOW)
    # Then it is rejected with checksum_mismatch, naming both digests
    actual = hashlib.sha256(content).hexdigest()
    assert raised.value.code == "checksum_mismatch"
    assert declared in str(raised.value) and actual in str(raised.value)
    # And recorded from what the state machine's Catch hands on, the failure is coded and permanent
    cause = {"errorType": "FileRejectedError", "errorMessage": str(raised.value)}
    failed = FailedFile(
        **task().model_dump(), error=StepFunctionsError(Error="FileRejectedError", Cause=json.dumps(cause))
    )
    error = failure_from(failed)
    assert (error.code, error.retryable) == ("checksum_mismatch", False)
    assert record_failure(repo, failed, now=NOW).recorded
    file = repo.get_file("acme", BATCH_ID, "f00001")
    assert file is not None and file.status is FileStatus.FAILED
    assert file.error is not None and file.error.code == "checksum_mismatch"
