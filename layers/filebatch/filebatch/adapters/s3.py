"""ObjectStorage on one S3 bucket."""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from filebatch.errors import NotFoundError, StorageUnavailableError
from filebatch.services.ports import StoredObject

# What a streamed read holds in memory at a time.
STREAM_CHUNK_BYTES = 1024 * 1024

_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchVersion"}


class S3ObjectStorage:
    def __init__(self, bucket: str, client: Any) -> None:
        self._bucket = bucket
        self._client = client

    def presign_put(
        self, key: str, *, content_type: str, size: int, expires_in: int
    ) -> tuple[str, dict[str, str]]:
        # Content-Type and Content-Length are signed: S3 refuses a PUT whose headers differ.
        # The process step still re-checks size and type, since not every S3 emulation enforces it.
        # If-None-Match: * is signed too: S3 refuses (412) a PUT to a key that already holds an
        # object, so the same URL cannot replace bytes once they are uploaded (and maybe verified).
        url = self._client.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": self._bucket,
                "Key": key,
                "ContentType": content_type,
                "ContentLength": size,
                "IfNoneMatch": "*",
            },
            ExpiresIn=expires_in,
            HttpMethod="PUT",
        )
        return url, {"Content-Type": content_type, "If-None-Match": "*"}

    def put_json(self, key: str, document: Any) -> None:
        try:
            self._client.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=json.dumps(document, separators=(",", ":")).encode(),
                ContentType="application/json",
            )
        except ClientError as error:
            raise StorageUnavailableError(f"S3 put {key} failed: {_code(error)}") from error

    def stream(self, key: str, *, version_id: str | None = None) -> StoredObject:
        request = {"Bucket": self._bucket, "Key": key}
        if version_id is not None:
            request["VersionId"] = version_id
        try:
            response = self._client.get_object(**request)
        except ClientError as error:
            if _code(error) in _MISSING:
                raise NotFoundError(f"object {key} does not exist", code="object_missing") from error
            raise StorageUnavailableError(f"S3 get {key} failed: {_code(error)}") from error
        return StoredObject(
            int(response["ContentLength"]), response.get("VersionId"), self._chunks(key, response["Body"])
        )

    @staticmethod
    def _chunks(key: str, body: Any) -> Generator[bytes, None, None]:
        # One GET streamed in bounded chunks (not ranged GETs: one request, one pass, no re-reads).
        try:
            yield from body.iter_chunks(STREAM_CHUNK_BYTES)
        except (BotoCoreError, OSError) as error:
            raise StorageUnavailableError(f"S3 read of {key} broke off: {error}") from error
        finally:
            body.close()


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "Unknown"))
