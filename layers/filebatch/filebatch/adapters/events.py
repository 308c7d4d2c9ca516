"""BatchEvents on the stack's EventBridge bus."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from filebatch.errors import StorageUnavailableError
from filebatch.models.events import EVENT_SOURCE


class EventBridgeBatchEvents:
    def __init__(self, bus_name: str, client: Any) -> None:
        self._bus_name = bus_name
        self._client = client

    def announce(self, *, event_id: str, detail_type: str, detail: str, at: datetime) -> None:
        try:
            response = self._client.put_events(
                Entries=[
                    {
                        "EventBusName": self._bus_name,
                        "Source": EVENT_SOURCE,
                        "DetailType": detail_type,
                        "Detail": detail,
                        "Time": at,
                    }
                ]
            )
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "Unknown")
            raise StorageUnavailableError(f"EventBridge put {event_id} failed: {code}") from error
        # PutEvents answers 200 even when an entry was not accepted: each entry says so itself.
        if response.get("FailedEntryCount"):
            entry = (response.get("Entries") or [{}])[0]
            raise StorageUnavailableError(
                f"EventBridge refused {event_id}: {entry.get('ErrorCode')} {entry.get('ErrorMessage')}"
            )
