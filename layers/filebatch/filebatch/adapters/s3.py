"""ObjectStorage on one S3 bucket."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from filebatch.errors import NotFoundError, StorageUnavailableError

_MISSING = {"404", "NoSuchKey", "NotFound"}


class S3ObjectStorage:
    def __init__(self, bucket: str, client: Any) -> None:
        self._bucket = bucket
        self._client = client

    def presign_put(
        self, key: str, *, content_type: str, size: int, expires_in: int
    ) -> tuple[str, dict[str, str]]:
        # Content-Type and Content-Length are signed: S3 refuses a PUT whose headers differ.
        # The process step still re-checks size and type, since not every S3 emulation enforces it.
        url = self._client.generate_presigned_url(
            "put_object",
            Params={"Bucket": self._bucket, "Key": key, "ContentType": content_type, "ContentLength": size},
            ExpiresIn=expires_in,
            HttpMethod="PUT",
        )
        return url, {"Content-Type": content_type}

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

    def read(self, key: str) -> bytes:
        try:
            body: bytes = self._client.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except ClientError as error:
            if _code(error) in _MISSING:
                raise NotFoundError(f"object {key} does not exist", code="object_missing") from error
            raise StorageUnavailableError(f"S3 get {key} failed: {_code(error)}") from error
        return body


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "Unknown"))
