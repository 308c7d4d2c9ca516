"""BatchRepository on one DynamoDB table (key design in filebatch.models.records)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from filebatch.errors import StorageUnavailableError
from filebatch.models.domain import (
    Batch,
    BatchFile,
    BatchStatus,
    Description,
    FileError,
    FileFacts,
    FileStatus,
    TenantUsage,
)
from filebatch.models.records import (
    API_KEY_SK,
    BATCH_SK,
    FILE_SK_PREFIX,
    USAGE_SK,
    ApiKeyRecord,
    BatchRecord,
    FileRecord,
    api_key_pk,
    batch_pk,
    file_sk,
    month_files_attribute,
    usage_pk,
)

_TERMINAL_FILE = [FileStatus.COMPLETED.value, FileStatus.FAILED.value]
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
                        "UpdateExpression": "ADD uploaded :one SET updated_at = :at",
                        "ConditionExpression": "attribute_exists(pk)",
                        "ExpressionAttributeValues": {":one": 1, ":at": stamp},
                    }
                },
            ],
        )

    def mark_processing(self, tenant_id: str, batch_id: str, *, at: datetime) -> bool:
        return self._conditional_update(
            "mark processing",
            Key={"pk": batch_pk(tenant_id, batch_id), "sk": BATCH_SK},
            UpdateExpression="SET #status = :processing, updated_at = :at",
            ConditionExpression="#status = :awaiting",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":processing": BatchStatus.PROCESSING.value,
                ":awaiting": BatchStatus.AWAITING_UPLOAD.value,
                ":at": at.isoformat(),
            },
        )

    def record_file_result(
        self,
        tenant_id: str,
        batch_id: str,
        file_id: str,
        *,
        status: FileStatus,
        at: datetime,
        facts: FileFacts | None,
        description: Description | None,
        error: FileError | None,
    ) -> bool:
        pk = batch_pk(tenant_id, batch_id)
        stamp = at.isoformat()
        names = {"#status": "status"}
        values: dict[str, Any] = {
            ":status": status.value,
            ":at": stamp,
            ":t0": _TERMINAL_FILE[0],
            ":t1": _TERMINAL_FILE[1],
        }
        assignments = ["#status = :status", "finished_at = :at"]
        for attribute, value in (
            ("facts_json", facts),
            ("description_json", description),
            ("error_json", error),
        ):
            if value is not None:
                assignments.append(f"{attribute} = :{attribute}")
                values[f":{attribute}"] = value.model_dump_json()
        counter = "completed" if status is FileStatus.COMPLETED else "failed"
        batch_additions = f"ADD {counter} :one"
        batch_values: dict[str, Any] = {":one": 1, ":at": stamp}
        usage = description.invocation.usage if description and description.invocation else None
        if usage is not None:
            # In the transaction of the file's first terminal transition: counted exactly once.
            batch_additions += ", input_tokens :input_tokens, output_tokens :output_tokens"
            batch_values |= {":input_tokens": usage.input_tokens, ":output_tokens": usage.output_tokens}
        return self._transact(
            "record result",
            [
                {
                    "Update": {
                        "TableName": self._table_name,
                        "Key": {"pk": pk, "sk": file_sk(file_id)},
                        "UpdateExpression": "SET " + ", ".join(assignments),
                        # DynamoDB has no NOT IN: spell out the two terminal states.
                        "ConditionExpression": "attribute_exists(pk) AND NOT #status IN (:t0, :t1)",
                        "ExpressionAttributeNames": names,
                        "ExpressionAttributeValues": values,
                    }
                },
                {
                    "Update": {
                        "TableName": self._table_name,
                        "Key": {"pk": pk, "sk": BATCH_SK},
                        "UpdateExpression": f"{batch_additions} SET updated_at = :at",
                        "ConditionExpression": "attribute_exists(pk)",
                        "ExpressionAttributeValues": batch_values,
                    }
                },
            ],
        )

    def finish_batch(self, tenant_id: str, batch_id: str, *, status: BatchStatus, at: datetime) -> bool:
        # The batch's terminal status and the release of its open-batch slot, in one transaction:
        # a retried finalize finds the batch terminal and releases nothing twice.
        return self._transact(
            "finish batch",
            [
                {
                    "Update": {
                        "TableName": self._table_name,
                        "Key": {"pk": batch_pk(tenant_id, batch_id), "sk": BATCH_SK},
                        "UpdateExpression": "SET #status = :status, updated_at = :at, finished_at = :at",
                        "ConditionExpression": "attribute_exists(pk) AND NOT #status IN (:t0, :t1, :t2)",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": {
                            ":status": status.value,
                            ":at": at.isoformat(),
                            ":t0": _TERMINAL_BATCH[0],
                            ":t1": _TERMINAL_BATCH[1],
                            ":t2": _TERMINAL_BATCH[2],
                        },
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

    # -- helpers -------------------------------------------------------------------------------
    def _transact(self, action: str, items: list[dict[str, Any]]) -> bool:
        return _conditional(action, lambda: self._client.transact_write_items(TransactItems=items))

    def _conditional_update(self, action: str, **update: Any) -> bool:
        return _conditional(action, lambda: self._table.update_item(**update))

    def _conditional_delete(self, action: str, **delete: Any) -> bool:
        return _conditional(action, lambda: self._table.delete_item(**delete))


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
