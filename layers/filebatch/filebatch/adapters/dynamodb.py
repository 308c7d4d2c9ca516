"""BatchRepository on one DynamoDB table (key design in filebatch.models.records)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from filebatch.errors import ConflictError, StorageUnavailableError
from filebatch.models.domain import (
    Batch,
    BatchFile,
    BatchStatus,
    Description,
    DuplicateOf,
    FileError,
    FileFacts,
    FileStatus,
    KnownResult,
    TenantUsage,
    WebhookSecret,
)
from filebatch.models.records import (
    API_KEY_SK,
    BATCH_SK,
    BY_TENANT_INDEX,
    DUE_INDEX,
    DUE_PK,
    FILE_SK_PREFIX,
    KNOWN_RESULT_SK,
    NAME_CLAIM_SK,
    USAGE_SK,
    WEBHOOK_SECRET_SK,
    ApiKeyRecord,
    BatchRecord,
    FileRecord,
    KnownResultRecord,
    NameClaimRecord,
    WebhookSecretRecord,
    api_key_pk,
    batch_id_of_sort_key,
    batch_pk,
    due_stamp,
    file_sk,
    known_result_pk,
    month_files_attribute,
    name_claim_pk,
    tenant_batches_pk,
    to_epoch_seconds,
    usage_pk,
)

log = logging.getLogger(__name__)
# A transaction holds at most 100 actions: this many files, and their batch's counters.
_FILES_PER_TRANSACTION = 99
_TERMINAL_BATCH = [s.value for s in BatchStatus if s.is_terminal]
# Results filtered by status: the most Queries one page reads, and the fewest files each reads (a
# page of 1 failed file among 10,000 should not take 10,000 queries). At most ~10 x 1 MB per page.
FILTERED_QUERIES_PER_PAGE = 10
FILTERED_QUERY_MIN_READ = 200


def _is_condition_failure(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    if code == "ConditionalCheckFailedException":
        return True
    if code == "TransactionCanceledException":
        reasons = error.response.get("CancellationReasons") or []
        codes = {r.get("Code") for r in reasons if r.get("Code") not in (None, "None")}
        if codes:
            return codes <= {"ConditionalCheckFailed"}
        # Some emulations omit the reasons; the message still names the condition.
        return "ConditionalCheckFailed" in error.response.get("Error", {}).get("Message", "")
    return False


@contextmanager
def _storage_errors(action: str) -> Iterator[None]:
    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "Unknown")
        raise StorageUnavailableError(f"DynamoDB {action} failed: {code}") from error


class DynamoBatchRepository:
    def __init__(self, table: Any) -> None:
        """`table` is a boto3 DynamoDB Table resource (Python types in and out)."""
        self._table = table
        self._client = table.meta.client
        self._table_name = table.name

    # -- batches and files -------------------------------------------------------------------
    def create_batch(self, batch: Batch, files: Sequence[BatchFile]) -> None:
        with _storage_errors("create batch"), self._table.batch_writer() as writer:
            for file in files:
                writer.put_item(Item=FileRecord.from_domain(file).to_item())
        # Written last and only if new: until it exists the batch is invisible (GET → 404) and
        # upload events for its files change nothing (their batch counter update fails).
        if batch.name is not None:
            self._create_named_batch(batch)
            return
        with _storage_errors("create batch"):
            self._table.put_item(
                Item=BatchRecord.from_domain(batch).to_item(),
                ConditionExpression="attribute_not_exists(pk)",
            )

    def get_batch(
        self, tenant_id: str, batch_id: str, *, consistent: bool = False, include_deleted: bool = False
    ) -> Batch | None:
        with _storage_errors("get batch"):
            item = self._table.get_item(
                Key={"pk": batch_pk(tenant_id, batch_id), "sk": BATCH_SK}, ConsistentRead=consistent
            ).get("Item")
        batch = BatchRecord.model_validate(item).to_domain() if item else None
        # A deleted batch is gone for every caller but the purge: every route answers 404.
        if batch is not None and batch.deleted_at is not None and not include_deleted:
            return None
        return batch

    def get_file(self, tenant_id: str, batch_id: str, file_id: str) -> BatchFile | None:
        with _storage_errors("get file"):
            item = self._table.get_item(
                Key={"pk": batch_pk(tenant_id, batch_id), "sk": file_sk(file_id)}, ConsistentRead=True
            ).get("Item")
        return FileRecord.model_validate(item).to_domain() if item else None

    def list_files(
        self,
        tenant_id: str,
        batch_id: str,
        *,
        limit: int,
        after_file_id: str | None = None,
        status: FileStatus | None = None,
        consistent: bool = False,
    ) -> tuple[list[BatchFile], str | None]:
        if status is not None:
            return self._list_files_in_status(tenant_id, batch_id, status, limit=limit, after=after_file_id)
        pk = batch_pk(tenant_id, batch_id)
        query: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :files)",
            "ExpressionAttributeValues": {":pk": pk, ":files": "FILE#"},
            "Limit": limit,
            "ConsistentRead": consistent,
        }
        if after_file_id:
            query["ExclusiveStartKey"] = {"pk": pk, "sk": file_sk(after_file_id)}
        with _storage_errors("list files"):
            page = self._table.query(**query)
        files = [FileRecord.model_validate(item).to_domain() for item in page.get("Items", [])]
        more = "LastEvaluatedKey" in page and files
        return files, files[-1].file_id if more else None

    def mark_uploaded(
        self,
        tenant_id: str,
        batch_id: str,
        file_id: str,
        *,
        size: int,
        version_id: str | None,
        at: datetime,
    ) -> bool:
        pk = batch_pk(tenant_id, batch_id)
        stamp = at.isoformat()
        assignments = "SET #status = :uploaded, uploaded_at = :at, uploaded_size = :size"
        values: dict[str, Any] = {
            ":uploaded": FileStatus.UPLOADED.value,
            ":awaiting": FileStatus.AWAITING_UPLOAD.value,
            ":at": stamp,
            ":size": size,
        }
        if version_id is not None:
            assignments += ", uploaded_version_id = :version"
            values[":version"] = version_id
        return self._transact(
            "mark uploaded",
            [
                {
                    "Update": {
                        "TableName": self._table_name,
                        "Key": {"pk": pk, "sk": file_sk(file_id)},
                        "UpdateExpression": assignments,
                        "ConditionExpression": "#status = :awaiting",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": values,
                    }
                },
                {
                    "Update": {
                        "TableName": self._table_name,
                        "Key": {"pk": pk, "sk": BATCH_SK},
                        "UpdateExpression": f"ADD arrived :one, {FileStatus.UPLOADED.counter} :one, "
                        f"{FileStatus.AWAITING_UPLOAD.counter} :minus_one SET updated_at = :at",
                        # Once the upload window is closed (or the batch cancelled) an upload changes
                        # nothing: the file stays as the close left it.
                        "ConditionExpression": "#status = :awaiting AND attribute_not_exists(closed_at)",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": {
                            ":one": 1,
                            ":minus_one": -1,
                            ":at": stamp,
                            ":awaiting": BatchStatus.AWAITING_UPLOAD.value,
                        },
                    }
                },
            ],
        )

    def start_run(self, tenant_id: str, batch_id: str, *, files: int, at: datetime) -> bool:
        return self._conditional_update(
            "start run",
            Key={"pk": batch_pk(tenant_id, batch_id), "sk": BATCH_SK},
            UpdateExpression="SET #status = :processing, updated_at = :at, run_started_at = :at, "
            "run_files = :files REMOVE due_pk, due_at",
            ConditionExpression="#status = :awaiting",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":processing": BatchStatus.PROCESSING.value,
                ":awaiting": BatchStatus.AWAITING_UPLOAD.value,
                ":at": at.isoformat(),
                ":files": files,
            },
        )

    def move_file(
        self,
        tenant_id: str,
        batch_id: str,
        file_id: str,
        *,
        expected: FileStatus,
        to: FileStatus,
        at: datetime,
        facts: FileFacts | None = None,
        description: Description | None = None,
        error: FileError | None = None,
        while_batch_runs: bool = False,
        duplicate_of: DuplicateOf | None = None,
    ) -> bool:
        pk = batch_pk(tenant_id, batch_id)
        stamp = at.isoformat()
        values: dict[str, Any] = {":to": to.value, ":expected": expected.value, ":at": stamp}
        assignments = ["#status = :to"]
        removals: list[str] = []
        if to.is_terminal:
            assignments.append("finished_at = :at")
        else:
            # Back to work (a retry): the earlier attempt's outcome is no longer the file's.
            removals += ["finished_at", "error_json", "description_json"]
        for attribute, value in (
            ("facts_json", facts),
            ("description_json", description),
            ("error_json", error),
            ("duplicate_of_json", duplicate_of),
        ):
            if value is not None:
                assignments.append(f"{attribute} = :{attribute}")
                values[f":{attribute}"] = value.model_dump_json()
        update = "SET " + ", ".join(assignments) + (" REMOVE " + ", ".join(removals) if removals else "")
        batch_additions = f"ADD {to.counter} :one, {expected.counter} :minus_one"
        batch_values: dict[str, Any] = {":one": 1, ":minus_one": -1, ":at": stamp}
        usage = description.invocation.usage if description and description.invocation else None
        if usage is not None and duplicate_of is None:
            # In the transaction of the file's terminal transition: counted exactly once.
            batch_additions += ", input_tokens :input_tokens, output_tokens :output_tokens"
            batch_values |= {":input_tokens": usage.input_tokens, ":output_tokens": usage.output_tokens}
        batch_condition = "attribute_exists(pk)"
        batch_names: dict[str, str] = {}
        if while_batch_runs:
            # Not once the batch is being cancelled: a cancelled batch starts no more work.
            batch_condition = "#status IN (:awaiting, :processing)"
            batch_names = {"#status": "status"}
            batch_values |= {
                ":awaiting": BatchStatus.AWAITING_UPLOAD.value,
                ":processing": BatchStatus.PROCESSING.value,
            }
        return self._transact(
            "move file",
            [
                {
                    "Update": {
                        "TableName": self._table_name,
                        "Key": {"pk": pk, "sk": file_sk(file_id)},
                        "UpdateExpression": update,
                        "ConditionExpression": "#status = :expected",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": values,
                    }
                },
                {
                    "Update": {
                        "TableName": self._table_name,
                        "Key": {"pk": pk, "sk": BATCH_SK},
                        "UpdateExpression": f"{batch_additions} SET updated_at = :at",
                        "ConditionExpression": batch_condition,
                        **({"ExpressionAttributeNames": batch_names} if batch_names else {}),
                        "ExpressionAttributeValues": batch_values,
                    }
                },
            ],
        )

    def move_files(
        self,
        tenant_id: str,
        batch_id: str,
        files: Sequence[tuple[str, FileStatus]],
        *,
        to: FileStatus,
        at: datetime,
        error: FileError | None = None,
    ) -> int:
        moved = 0
        # A transaction holds 100 actions: 99 files and their batch's counters.
        for start in range(0, len(files), _FILES_PER_TRANSACTION):
            chunk = files[start : start + _FILES_PER_TRANSACTION]
            if self._move_chunk(tenant_id, batch_id, chunk, to=to, at=at, error=error):
                moved += len(chunk)
                continue
            # Some file moved on meanwhile (a result landed): one by one, each against its state now.
            for file_id, expected in chunk:
                moved += self.move_file(
                    tenant_id, batch_id, file_id, expected=expected, to=to, at=at, error=error
                )
        return moved

    def _move_chunk(
        self,
        tenant_id: str,
        batch_id: str,
        chunk: Sequence[tuple[str, FileStatus]],
        *,
        to: FileStatus,
        at: datetime,
        error: FileError | None,
    ) -> bool:
        pk = batch_pk(tenant_id, batch_id)
        stamp = at.isoformat()
        values: dict[str, Any] = {":to": to.value, ":at": stamp}
        assignments = "SET #status = :to, finished_at = :at"
        if error is not None:
            assignments += ", error_json = :error"
            values[":error"] = error.model_dump_json()
        items: list[dict[str, Any]] = []
        leaving: dict[FileStatus, int] = {}
        for file_id, expected in chunk:
            leaving[expected] = leaving.get(expected, 0) + 1
            items.append(
                {
                    "Update": {
                        "TableName": self._table_name,
                        "Key": {"pk": pk, "sk": file_sk(file_id)},
                        "UpdateExpression": assignments,
                        "ConditionExpression": "#status = :expected",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": values | {":expected": expected.value},
                    }
                }
            )
        counter_values: dict[str, Any] = {":at": stamp, ":arriving": len(chunk)}
        additions = [f"{to.counter} :arriving"]
        for index, (status, count) in enumerate(sorted(leaving.items())):
            additions.append(f"{status.counter} :leaving{index}")
            counter_values[f":leaving{index}"] = -count
        items.append(
            {
                "Update": {
                    "TableName": self._table_name,
                    "Key": {"pk": pk, "sk": BATCH_SK},
                    "UpdateExpression": "ADD " + ", ".join(additions) + " SET updated_at = :at",
                    "ConditionExpression": "attribute_exists(pk)",
                    "ExpressionAttributeValues": counter_values,
                }
            }
        )
        return self._transact("move files", items)

    def finish_batch(
        self,
        tenant_id: str,
        batch_id: str,
        *,
        status: BatchStatus,
        expected: frozenset[BatchStatus],
        at: datetime,
        due_at: datetime | None,
    ) -> bool:
        # The batch's terminal status and the release of its open-batch slot, in one transaction:
        # a retried finish finds the batch terminal and releases nothing twice. The same write
        # makes the end's announcement due (a watchdog time), so an end is never left unannounced.
        placeholders = {f":from{i}": s.value for i, s in enumerate(sorted(expected))}
        due: dict[str, Any] = {":due_pk": DUE_PK, ":due_at": due_stamp(due_at)} if due_at else {}
        update = (
            "SET #status = :status, updated_at = :at, finished_at = :at, due_pk = :due_pk, "
            "due_at = :due_at REMOVE announced_at"
            if due_at
            else "SET #status = :status, updated_at = :at, finished_at = :at REMOVE due_pk, due_at"
        )
        return self._transact(
            "finish batch",
            [
                {
                    "Update": {
                        "TableName": self._table_name,
                        "Key": {"pk": batch_pk(tenant_id, batch_id), "sk": BATCH_SK},
                        "UpdateExpression": update,
                        "ConditionExpression": f"#status IN ({', '.join(placeholders)})",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": {":status": status.value, ":at": at.isoformat()}
                        | placeholders
                        | due,
                    }
                },
                {
                    "Update": {
                        "TableName": self._table_name,
                        "Key": {"pk": usage_pk(tenant_id), "sk": USAGE_SK},
                        "UpdateExpression": "ADD open_batches :minus_one",
                        "ExpressionAttributeValues": {":minus_one": -1},
                    }
                },
            ],
        )

    def mark_announced(
        self, tenant_id: str, batch_id: str, *, status: BatchStatus, retries: int, at: datetime
    ) -> bool:
        return self._conditional_update(
            "mark announced",
            Key={"pk": batch_pk(tenant_id, batch_id), "sk": BATCH_SK},
            UpdateExpression="SET announced_at = :at REMOVE due_pk, due_at",
            # This very end: not a retry's run that started since (items of batches never retried
            # may lack `retries`, as in claim_retry).
            ConditionExpression="#status = :status AND "
            "(retries = :retries OR (attribute_not_exists(retries) AND :retries = :zero))",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":at": at.isoformat(),
                ":status": status.value,
                ":retries": retries,
                ":zero": 0,
            },
        )

    def close_uploads(self, tenant_id: str, batch_id: str, *, at: datetime, due_at: datetime) -> bool:
        return self._conditional_update(
            "close uploads",
            Key={"pk": batch_pk(tenant_id, batch_id), "sk": BATCH_SK},
            UpdateExpression="SET closed_at = :at, updated_at = :at, due_pk = :due_pk, due_at = :due_at",
            ConditionExpression="#status = :awaiting AND attribute_not_exists(closed_at)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":at": at.isoformat(),
                ":awaiting": BatchStatus.AWAITING_UPLOAD.value,
                ":due_pk": DUE_PK,
                ":due_at": due_stamp(due_at),
            },
        )

    def extend_upload_window(self, tenant_id: str, batch_id: str, *, due_at: datetime) -> bool:
        return self._conditional_update(
            "extend upload window",
            Key={"pk": batch_pk(tenant_id, batch_id), "sk": BATCH_SK},
            UpdateExpression="SET due_at = :due_at",
            ConditionExpression="#status = :awaiting AND attribute_not_exists(closed_at) "
            "AND due_at < :due_at",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":awaiting": BatchStatus.AWAITING_UPLOAD.value,
                ":due_at": due_stamp(due_at),
            },
        )

    def begin_cancel(self, tenant_id: str, batch_id: str, *, at: datetime, due_at: datetime) -> bool:
        return self._conditional_update(
            "begin cancel",
            Key={"pk": batch_pk(tenant_id, batch_id), "sk": BATCH_SK},
            # closed_at too: from now on no upload is recorded.
            UpdateExpression="SET #status = :cancelling, updated_at = :at, "
            "closed_at = if_not_exists(closed_at, :at), due_pk = :due_pk, due_at = :due_at",
            ConditionExpression="#status IN (:awaiting, :processing)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":cancelling": BatchStatus.CANCELLING.value,
                ":awaiting": BatchStatus.AWAITING_UPLOAD.value,
                ":processing": BatchStatus.PROCESSING.value,
                ":at": at.isoformat(),
                ":due_pk": DUE_PK,
                ":due_at": due_stamp(due_at),
            },
        )

    def claim_retry(
        self, tenant_id: str, batch_id: str, *, expected: BatchStatus, retry: int, files: int, at: datetime
    ) -> bool:
        # The batch is open again: it takes back an open-batch slot, which its next end gives back.
        return self._transact(
            "claim retry",
            [
                {
                    "Update": {
                        "TableName": self._table_name,
                        "Key": {"pk": batch_pk(tenant_id, batch_id), "sk": BATCH_SK},
                        "UpdateExpression": "SET #status = :processing, retries = :retry, updated_at = :at, "
                        "run_started_at = :at, run_files = :files REMOVE finished_at",
                        "ConditionExpression": "#status = :expected AND "
                        "(retries = :previous OR (attribute_not_exists(retries) AND :previous = :zero))",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": {
                            ":processing": BatchStatus.PROCESSING.value,
                            ":expected": expected.value,
                            ":retry": retry,
                            ":previous": retry - 1,
                            ":zero": 0,
                            ":files": files,
                            ":at": at.isoformat(),
                        },
                    }
                },
                {
                    "Update": {
                        "TableName": self._table_name,
                        "Key": {"pk": usage_pk(tenant_id), "sk": USAGE_SK},
                        "UpdateExpression": "ADD open_batches :one",
                        "ExpressionAttributeValues": {":one": 1},
                    }
                },
            ],
        )

    def list_due(self, *, now: datetime, limit: int) -> list[tuple[str, str]]:
        with _storage_errors("list due batches"):
            page = self._table.query(
                IndexName=DUE_INDEX,
                KeyConditionExpression="due_pk = :due AND due_at <= :now",
                ExpressionAttributeValues={":due": DUE_PK, ":now": due_stamp(now)},
                Limit=limit,
            )
        return [(item["tenant_id"], item["batch_id"]) for item in page.get("Items", [])]

    def _list_files_in_status(
        self, tenant_id: str, batch_id: str, status: FileStatus, *, limit: int, after: str | None
    ) -> tuple[list[BatchFile], str | None]:
        """A FilterExpression on the files' Query: DynamoDB applies Limit before the filter, so a
        query can return few matches or none while files remain. Queries continue until the page is
        full, the files end, or FILTERED_QUERIES_PER_PAGE queries were read; the cursor is then the
        last file read (returned or not), so the next page starts after it."""
        pk = batch_pk(tenant_id, batch_id)
        found: list[BatchFile] = []
        for _ in range(FILTERED_QUERIES_PER_PAGE):
            query: dict[str, Any] = {
                "KeyConditionExpression": "pk = :pk AND begins_with(sk, :files)",
                "FilterExpression": "#status = :status",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {":pk": pk, ":files": FILE_SK_PREFIX, ":status": status.value},
                "Limit": max(limit - len(found), FILTERED_QUERY_MIN_READ),
            }
            if after:
                query["ExclusiveStartKey"] = {"pk": pk, "sk": file_sk(after)}
            with _storage_errors("list files"):
                page = self._table.query(**query)
            found += [FileRecord.model_validate(item).to_domain() for item in page.get("Items", [])]
            last_read = page.get("LastEvaluatedKey")
            if len(found) >= limit:
                # Full (maybe over: the read was at least FILTERED_QUERY_MIN_READ): continue after
                # the last file returned, unless nothing is left after it.
                more = len(found) > limit or last_read is not None
                found = found[:limit]
                return found, found[-1].file_id if more else None
            if last_read is None:
                return found, None
            after = str(last_read["sk"]).removeprefix(FILE_SK_PREFIX)
        return found, after

    # -- plan usage ----------------------------------------------------------------------------
    def reserve_batch(
        self,
        tenant_id: str,
        *,
        month: str,
        files: int,
        max_open_batches: int | None,
        monthly_files: int | None,
    ) -> bool:
        conditions: list[str] = []
        values: dict[str, Any] = {":one": 1, ":files": files}
        if max_open_batches is not None:
            conditions.append("(attribute_not_exists(open_batches) OR open_batches < :max_open)")
            values[":max_open"] = max_open_batches
        if monthly_files is not None:
            conditions.append("(attribute_not_exists(#month) OR #month <= :room)")
            values[":room"] = monthly_files - files
        update: dict[str, Any] = {
            "Key": {"pk": usage_pk(tenant_id), "sk": USAGE_SK},
            "UpdateExpression": "ADD open_batches :one, #month :files",
            "ExpressionAttributeNames": {"#month": month_files_attribute(month)},
            "ExpressionAttributeValues": values,
        }
        if conditions:
            update["ConditionExpression"] = " AND ".join(conditions)
        return self._conditional_update("reserve batch", **update)

    def release_batch(self, tenant_id: str, *, month: str, files: int) -> None:
        with _storage_errors("release batch"):
            self._table.update_item(
                Key={"pk": usage_pk(tenant_id), "sk": USAGE_SK},
                UpdateExpression="ADD open_batches :minus_one, #month :minus_files",
                ExpressionAttributeNames={"#month": month_files_attribute(month)},
                ExpressionAttributeValues={":minus_one": -1, ":minus_files": -files},
            )

    def get_usage(self, tenant_id: str, *, month: str) -> TenantUsage:
        with _storage_errors("get usage"):
            item = (
                self._table.get_item(
                    Key={"pk": usage_pk(tenant_id), "sk": USAGE_SK}, ConsistentRead=True
                ).get("Item")
                or {}
            )
        return TenantUsage(
            open_batches=int(item.get("open_batches", 0)),
            files_this_month=int(item.get(month_files_attribute(month), 0)),
        )

    # -- API keys ------------------------------------------------------------------------------
    def get_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        with _storage_errors("get api key"):
            item = self._table.get_item(Key={"pk": api_key_pk(key_hash), "sk": API_KEY_SK}).get("Item")
        return ApiKeyRecord.model_validate(item) if item else None

    def put_api_key(self, record: ApiKeyRecord) -> None:
        with _storage_errors("put api key"):
            self._table.put_item(Item=record.to_item(), ConditionExpression="attribute_not_exists(pk)")

    # -- stream EVENTS: webhook signing secrets ------------------------------------------------
    def get_webhook_secret(self, tenant_id: str) -> WebhookSecret | None:
        with _storage_errors("get webhook secret"):
            item = self._table.get_item(
                Key={"pk": usage_pk(tenant_id), "sk": WEBHOOK_SECRET_SK}, ConsistentRead=True
            ).get("Item")
        return WebhookSecretRecord.model_validate(item).to_domain() if item else None

    def put_webhook_secret(self, secret: WebhookSecret, *, replacing: datetime | None) -> bool:
        item = WebhookSecretRecord.from_domain(secret).to_item()
        if replacing is None:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            # Compared as stored: the record's own serialisation of the replaced secret's created_at.
            seen = WebhookSecretRecord.from_domain(secret.model_copy(update={"created_at": replacing}))
            condition = {
                "ConditionExpression": "created_at = :seen",
                "ExpressionAttributeValues": {":seen": seen.to_item()["created_at"]},
            }
        return _conditional("put webhook secret", lambda: self._table.put_item(Item=item, **condition))

    # -- stream PURGE: deletion ------------------------------------------------------------------
    def mark_deleted(self, tenant_id: str, batch_id: str, *, at: datetime) -> bool:
        terminal = {f":t{i}": status for i, status in enumerate(_TERMINAL_BATCH)}
        return self._conditional_update(
            "mark deleted",
            Key={"pk": batch_pk(tenant_id, batch_id), "sk": BATCH_SK},
            UpdateExpression="SET deleted_at = :at, updated_at = :at",
            ConditionExpression="attribute_exists(pk) AND attribute_not_exists(deleted_at) "
            f"AND #status IN ({', '.join(terminal)})",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":at": at.isoformat(), **terminal},
        )

    def unmark_deleted(self, tenant_id: str, batch_id: str, *, at: datetime) -> None:
        self._conditional_update(
            "unmark deleted",
            Key={"pk": batch_pk(tenant_id, batch_id), "sk": BATCH_SK},
            UpdateExpression="REMOVE deleted_at",
            ConditionExpression="deleted_at = :at",
            ExpressionAttributeValues={":at": at.isoformat()},
        )

    def delete_batch_items(self, tenant_id: str, batch_id: str) -> int:
        pk = batch_pk(tenant_id, batch_id)
        query: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": pk},
            "ProjectionExpression": "pk, sk",
        }
        deleted = 0
        # Every item of the batch's partition (files, and whatever else is kept there) but the batch
        # item, 25 per BatchWriteItem (the writer resends unprocessed items).
        with _storage_errors("delete batch items"), self._table.batch_writer() as writer:
            while True:
                page = self._table.query(**query)
                for item in page.get("Items", []):
                    if item["sk"] != BATCH_SK:
                        writer.delete_item(Key={"pk": item["pk"], "sk": item["sk"]})
                        deleted += 1
                if "LastEvaluatedKey" not in page:
                    break
                query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        # Last, and only while it is marked deleted: the batch item is what tells a redelivered purge
        # that work is left.
        if self._conditional_delete(
            "delete batch",
            Key={"pk": pk, "sk": BATCH_SK},
            ConditionExpression="attribute_exists(deleted_at)",
        ):
            deleted += 1
        return deleted

    # -- names and the tenant's list of batches (issue 8, stream CREATE) ---------------------------
    def _create_named_batch(self, batch: Batch) -> None:
        """The batch item and its name's claim in one transaction: no batch without its claim, no
        claim without its batch. A claim whose batch has expired (TTL may take days to delete it)
        is taken over."""
        assert batch.name is not None
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table_name,
                            "Item": BatchRecord.from_domain(batch).to_item(),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table_name,
                            "Item": NameClaimRecord.for_batch(batch).to_item(),
                            "ConditionExpression": "attribute_not_exists(pk) OR expires_at < :now",
                            "ExpressionAttributeValues": {":now": to_epoch_seconds(batch.created_at)},
                        }
                    },
                ]
            )
        except ClientError as error:
            reasons = error.response.get("CancellationReasons") or []
            claim_refused = len(reasons) < 2 or reasons[1].get("Code") == "ConditionalCheckFailed"
            if _is_condition_failure(error) and claim_refused:
                raise ConflictError(
                    f"another of your batches is named {batch.name!r}; names are unique among batches "
                    "that still exist",
                    code="name_taken",
                ) from error
            code = error.response.get("Error", {}).get("Code", "Unknown")
            raise StorageUnavailableError(f"DynamoDB create batch failed: {code}") from error

    def name_holder(self, tenant_id: str, name: str, *, now: datetime) -> str | None:
        with _storage_errors("get name"):
            item = self._table.get_item(
                Key={"pk": name_claim_pk(tenant_id, name), "sk": NAME_CLAIM_SK}, ConsistentRead=True
            ).get("Item")
        if not item:
            return None
        claim = NameClaimRecord.model_validate(item)
        expired = claim.expires_at is not None and claim.expires_at < int(now.timestamp())
        return None if expired else claim.batch_id

    def release_name(self, tenant_id: str, name: str, *, batch_id: str | None = None) -> None:
        request: dict[str, Any] = {"Key": {"pk": name_claim_pk(tenant_id, name), "sk": NAME_CLAIM_SK}}
        if batch_id is not None:
            request |= {
                "ConditionExpression": "batch_id = :batch",
                "ExpressionAttributeValues": {":batch": batch_id},
            }
        # False (held by another batch, or already gone) is as good as released.
        _conditional("release name", lambda: self._table.delete_item(**request))

    def list_batches(
        self,
        tenant_id: str,
        *,
        limit: int,
        after: str | None = None,
        status: BatchStatus | None = None,
        name_prefix: str | None = None,
    ) -> tuple[list[Batch], str | None]:
        # The index holds keys, status and name: one Query (more while filters drop what it reads,
        # up to _LIST_ROUNDS), then the page's batch items in one BatchGetItem (limit <= 100).
        query: dict[str, Any] = {
            "IndexName": BY_TENANT_INDEX,
            "KeyConditionExpression": "tenant_pk = :tenant",
            "ExpressionAttributeValues": {":tenant": tenant_batches_pk(tenant_id)},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        filters = []
        if status is not None:
            filters.append("#status = :status")
            query["ExpressionAttributeValues"][":status"] = status.value
        if name_prefix is not None:
            filters.append("begins_with(#name, :name)")
            query["ExpressionAttributeValues"][":name"] = name_prefix
        if filters:
            query["FilterExpression"] = " AND ".join(filters)
            query["ExpressionAttributeNames"] = {
                k: v
                for k, v in {"#status": "status", "#name": "name"}.items()
                if k in query["FilterExpression"]
            }
            # Filters apply after Limit: read more per round so that a page fills in few rounds.
            query["Limit"] = max(limit, _FILTERED_ROUND_ITEMS)
        start = _index_start(tenant_id, after) if after else None
        keys: list[str] = []
        for _ in range(_LIST_ROUNDS):
            if start is not None:
                query["ExclusiveStartKey"] = start
            with _storage_errors("list batches"):
                page = self._table.query(**query)
            keys += [str(item["created_sk"]) for item in page.get("Items", [])]
            start = page.get("LastEvaluatedKey")
            if len(keys) >= limit or start is None:
                break
        last: str | None
        if len(keys) > limit or (len(keys) == limit and start is not None):
            keys, last = keys[:limit], keys[limit - 1]
        else:
            # Fewer than a page: the list's end, or the rounds ran out where the index's read stopped.
            last = str(start["created_sk"]) if start is not None else None
        return self._get_batches(tenant_id, [batch_id_of_sort_key(k) for k in keys]), last

    def _get_batches(self, tenant_id: str, batch_ids: list[str]) -> list[Batch]:
        """The batch items, in the order asked (BatchGetItem answers in any order); a batch deleted
        since the index was read is left out."""
        wanted: list[dict[str, Any]] = [{"pk": batch_pk(tenant_id, b), "sk": BATCH_SK} for b in batch_ids]
        found: dict[str, Batch] = {}
        for _ in range(_LIST_ROUNDS):
            if not wanted:
                break
            with _storage_errors("get batches"):
                answer = self._client.batch_get_item(RequestItems={self._table_name: {"Keys": wanted}})
            for item in answer.get("Responses", {}).get(self._table_name, []):
                batch = BatchRecord.model_validate(item).to_domain()
                found[batch.batch_id] = batch
            # Keys DynamoDB did not get to (throttling, 16 MB): asked again.
            wanted = answer.get("UnprocessedKeys", {}).get(self._table_name, {}).get("Keys", [])
        if wanted:
            raise StorageUnavailableError("DynamoDB get batches failed: keys left unprocessed")
        return [found[b] for b in batch_ids if b in found]

    # -- issue 10: the hash index of results ------------------------------------------------------
    def known_results(
        self, tenant_id: str, fingerprint: str, sha256s: Sequence[str], *, now: datetime
    ) -> dict[str, KnownResult]:
        """BatchGetItem, 100 keys a call, strongly consistent; keys left unprocessed (throttling, the
        16 MB answer limit) are asked again with backoff within _KNOWN_RESULTS_BUDGET_S, then left
        out: a create of 10,000 files stays well inside API Gateway's 29 s."""
        deadline = time.monotonic() + _KNOWN_RESULTS_BUDGET_S
        found: dict[str, KnownResult] = {}
        for start in range(0, len(sha256s), _KEYS_PER_BATCH_GET):
            wanted: list[dict[str, Any]] = [
                {"pk": known_result_pk(tenant_id, fingerprint, sha256), "sk": KNOWN_RESULT_SK}
                for sha256 in sha256s[start : start + _KEYS_PER_BATCH_GET]
            ]
            pause = 0.05
            while wanted:
                with _storage_errors("get known results"):
                    answer = self._client.batch_get_item(
                        RequestItems={self._table_name: {"Keys": wanted, "ConsistentRead": True}}
                    )
                for item in answer.get("Responses", {}).get(self._table_name, []):
                    known = KnownResultRecord.model_validate(item).to_domain()
                    if known.state == "completed" and not _expired(known.expires_at, now):
                        found[known.sha256] = known
                wanted = answer.get("UnprocessedKeys", {}).get(self._table_name, {}).get("Keys", [])
                if wanted and time.monotonic() + pause > deadline:
                    log.warning("known results: %d keys left unread: not skipped", len(wanted))
                    break
                if wanted:
                    time.sleep(pause)
                    pause = min(pause * 2, 1.0)
        return found

    def claim_description(self, claim: KnownResult, *, now: datetime) -> KnownResult | None:
        epoch = to_epoch_seconds(now)
        request: dict[str, Any] = {
            "Item": KnownResultRecord.from_domain(claim).to_item(),
            "ConditionExpression": "attribute_not_exists(pk) OR expires_at < :now OR (#state = :claimed "
            "AND (lease_until < :now OR (batch_id = :batch AND file_id = :file)))",
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": {
                ":now": epoch,
                ":claimed": "claimed",
                ":batch": claim.batch_id,
                ":file": claim.file_id,
            },
            # The entry that holds it comes back with the refusal: no second read.
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        # A refusal without the entry means it was deleted since (released, purged): free again.
        for _ in range(_CLAIM_ATTEMPTS):
            try:
                self._table.put_item(**request)
            except ClientError as error:
                if not _is_condition_failure(error):
                    code = error.response.get("Error", {}).get("Code", "Unknown")
                    raise StorageUnavailableError(f"DynamoDB claim description failed: {code}") from error
                held: dict[str, Any] | None = error.response.get("Item")  # type: ignore[assignment]
                if held:
                    return KnownResultRecord.model_validate(_plain(held)).to_domain()
                continue
            return None
        raise StorageUnavailableError("DynamoDB claim description failed: the entry kept changing")

    def publish_result(self, result: KnownResult, *, now: datetime) -> bool:
        return _conditional(
            "publish result",
            lambda: self._table.put_item(
                Item=KnownResultRecord.from_domain(result).to_item(),
                ConditionExpression="attribute_not_exists(pk) OR #state = :claimed OR expires_at < :now",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={":claimed": "claimed", ":now": to_epoch_seconds(now)},
            ),
        )

    def release_claim(
        self, tenant_id: str, fingerprint: str, sha256: str, *, batch_id: str, file_id: str
    ) -> bool:
        return self._conditional_delete(
            "release claim",
            Key={"pk": known_result_pk(tenant_id, fingerprint, sha256), "sk": KNOWN_RESULT_SK},
            ConditionExpression="#state = :claimed AND batch_id = :batch AND file_id = :file",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={":claimed": "claimed", ":batch": batch_id, ":file": file_id},
        )

    def forget_results(
        self, tenant_id: str, fingerprint: str, sha256s: Sequence[str], *, batch_id: str
    ) -> int:
        return sum(
            self._conditional_delete(
                "forget result",
                Key={"pk": known_result_pk(tenant_id, fingerprint, sha256), "sk": KNOWN_RESULT_SK},
                ConditionExpression="batch_id = :batch",
                ExpressionAttributeValues={":batch": batch_id},
            )
            for sha256 in sha256s
        )

    # -- issue 10, stream MULTIPART ------------------------------------------------------------
    def claim_multipart_upload(self, tenant_id: str, batch_id: str, file_id: str, *, upload_id: str) -> bool:
        return self._conditional_update(
            "claim multipart upload",
            Key={"pk": batch_pk(tenant_id, batch_id), "sk": file_sk(file_id)},
            UpdateExpression="SET multipart_upload_id = :upload",
            ConditionExpression="#status = :awaiting AND attribute_not_exists(multipart_upload_id)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":upload": upload_id, ":awaiting": FileStatus.AWAITING_UPLOAD.value},
        )

    def release_multipart_upload(
        self, tenant_id: str, batch_id: str, file_id: str, *, upload_id: str
    ) -> bool:
        return self._conditional_update(
            "release multipart upload",
            Key={"pk": batch_pk(tenant_id, batch_id), "sk": file_sk(file_id)},
            UpdateExpression="REMOVE multipart_upload_id",
            ConditionExpression="multipart_upload_id = :upload",
            ExpressionAttributeValues={":upload": upload_id},
        )

    # -- helpers -------------------------------------------------------------------------------
    def _transact(self, action: str, items: list[dict[str, Any]]) -> bool:
        return _conditional(action, lambda: self._client.transact_write_items(TransactItems=items))

    def _conditional_update(self, action: str, **update: Any) -> bool:
        return _conditional(action, lambda: self._table.update_item(**update))

    def _conditional_delete(self, action: str, **delete: Any) -> bool:
        return _conditional(action, lambda: self._table.delete_item(**delete))


# Queries of the index per list page at most (and BatchGetItem retries of unprocessed keys).
_LIST_ROUNDS = 5
# BatchGetItem takes at most 100 keys; the known-results lookup of a create gives unprocessed keys
# this long in all (10,000 files are 100 calls of ~10 ms when nothing is throttled).
_KEYS_PER_BATCH_GET = 100
_KNOWN_RESULTS_BUDGET_S = 8.0
_CLAIM_ATTEMPTS = 3


def _expired(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is not None and expires_at < now


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    """An item in DynamoDB's JSON (what an error response carries) as Python values."""
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    return {name: deserializer.deserialize(value) for name, value in item.items()}


_FILTERED_ROUND_ITEMS = 100


def _index_start(tenant_id: str, created_sk: str) -> dict[str, Any]:
    """The ByTenant ExclusiveStartKey continuing after the batch of `created_sk`."""
    return {
        "tenant_pk": tenant_batches_pk(tenant_id),
        "created_sk": created_sk,
        "pk": batch_pk(tenant_id, batch_id_of_sort_key(created_sk)),
        "sk": BATCH_SK,
    }


def _conditional(action: str, write: Callable[[], Any]) -> bool:
    """Run a conditional write: True if applied, False if its condition did not hold."""
    try:
        write()
    except ClientError as error:
        if _is_condition_failure(error):
            return False
        code = error.response.get("Error", {}).get("Code", "Unknown")
        raise StorageUnavailableError(f"DynamoDB {action} failed: {code}") from error
    return True
