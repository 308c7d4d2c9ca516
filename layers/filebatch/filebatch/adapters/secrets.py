"""CursorKeys from one Secrets Manager secret: its current value signs, its previous value (kept by
Secrets Manager across a rotation) still verifies."""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

from filebatch.errors import StorageUnavailableError

# A rotated key reaches every warm function within this many seconds; until then the previous value
# keeps verifying, so no cursor in flight is refused.
KEYS_MAX_AGE_S = 300.0


class SecretsManagerCursorKeys:
    def __init__(self, secret_id: str, client: Any) -> None:
        self._secret_id = secret_id
        self._client = client
        self._keys: list[bytes] = []
        self._fetched_at = float("-inf")

    def signing_keys(self) -> list[bytes]:
        if time.monotonic() - self._fetched_at > KEYS_MAX_AGE_S:
            current = self._value("AWSCURRENT")
            if current is None:
                raise StorageUnavailableError(f"secret {self._secret_id} has no current value")
            previous = self._value("AWSPREVIOUS")
            self._keys = [current] if previous is None or previous == current else [current, previous]
            self._fetched_at = time.monotonic()
        return list(self._keys)

    def _value(self, stage: str) -> bytes | None:
        try:
            response = self._client.get_secret_value(SecretId=self._secret_id, VersionStage=stage)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", "Unknown"))
            if code == "ResourceNotFoundException" and stage != "AWSCURRENT":
                return None  # no rotation yet: no previous value
            raise StorageUnavailableError(f"Secrets Manager get {self._secret_id} failed: {code}") from error
        return str(response["SecretString"]).encode()
