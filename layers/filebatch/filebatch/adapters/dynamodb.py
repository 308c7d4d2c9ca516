"""BatchRepository on one DynamoDB table (key design in filebatch.models.records)."""

from __future__ import annotations

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
    FileError,
    FileFacts,
    FileStatus,
    TenantUsage,
)
from filebatch.models.records import (
    API_KEY_SK,
    BATCH_SK,
    BY_TENANT_INDEX,
    NAME_CLAIM_SK,
    USAGE_SK,
    ApiKeyRecord,
    BatchRecord,
    FileRecord,
    NameClaimRecord,
    api_key_pk,
    batch_id_of_sort_key,
    batch_pk,
    file_sk,
    month_files_attribute,
    name_claim_pk,
    tenant_batches_pk,
    to_epoch_seconds,
    usage_pk,
)

_TERMINAL_FILE = [FileStatus.COMPLETED.value, FileStatus.FAILED.value]
_TERMINAL_BATCH = [s.value for s in BatchStatus if s.is_terminal]


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

    def get_batch(self, tenant_id: str, batch_id: str, *, consistent: bool = False) -> Batch | None:
        with _storage_errors("get batch"):
            item = self._table.get_item(
                Key={"pk": batch_pk(tenant_id, batch_id), "sk": BATCH_SK}, ConsistentRead=consistent
            ).get("Item")
        return BatchRecord.model_validate(item).to_domain() if item else None

    def get_file(self, tenant_id: str, batch_id: str, file_id: str) -> BatchFile | None:
        with _storage_errors("get file"):
            item = self._table.get_item(
                Key={"pk": batch_pk(tenant_id, batch_id), "sk": file_sk(file_id)}, ConsistentRead=True
            ).get("Item")
        return FileRecord.model_validate(item).to_domain() if item else None

    def list_files(
        self, tenant_id: str, batch_id: str, *, limit: int, after_file_id: str | None = None
    ) -> tuple[list[BatchFile], str | None]:
        pk = batch_pk(tenant_id, batch_id)
        query: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :files)",
            "ExpressionAttributeValues": {":pk": pk, ":files": "FILE#"},
            "Limit": limit,
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

    # -- helpers -------------------------------------------------------------------------------
    def _transact(self, action: str, items: list[dict[str, Any]]) -> bool:
        return _conditional(action, lambda: self._client.transact_write_items(TransactItems=items))

    def _conditional_update(self, action: str, **update: Any) -> bool:
        return _conditional(action, lambda: self._table.update_item(**update))


# Queries of the index per list page at most (and BatchGetItem retries of unprocessed keys).
_LIST_ROUNDS = 5
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
