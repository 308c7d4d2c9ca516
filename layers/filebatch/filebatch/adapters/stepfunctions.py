"""WorkflowStarter on one Step Functions state machine."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from filebatch.errors import StorageUnavailableError


class StepFunctionsStarter:
    def __init__(self, state_machine_arn: str, client: Any) -> None:
        self._state_machine_arn = state_machine_arn
        self._client = client

    def start(self, name: str, payload: dict[str, Any]) -> bool:
        try:
            self._client.start_execution(
                stateMachineArn=self._state_machine_arn, name=name, input=json.dumps(payload, sort_keys=True)
            )
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "Unknown")
            if code == "ExecutionAlreadyExists":
                return False
            raise StorageUnavailableError(f"Step Functions start {name} failed: {code}") from error
        return True
