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

    def stop(self, name: str, *, cause: str) -> bool:
        # arn:<partition>:states:<region>:<account>:stateMachine:<machine> → its execution <name>.
        execution_arn = self._state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{name}"
        try:
            described = self._client.describe_execution(executionArn=execution_arn)
            if described.get("status") != "RUNNING":
                return False
            self._client.stop_execution(executionArn=execution_arn, error="BatchCancelled", cause=cause)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "Unknown")
            if code == "ExecutionDoesNotExist":
                return False
            raise StorageUnavailableError(f"Step Functions stop {name} failed: {code}") from error
        return True
