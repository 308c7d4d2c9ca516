"""UsageKeys on API Gateway: an API key under the usage plan of a plan, for one stage of one API.

The usage plan of a plan is found by its `filebatch:plan` tag among the usage plans attached to the
stage (the template declares one per plan), so operators only pass the API id and stage."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from filebatch.errors import FilebatchError, StorageUnavailableError
from filebatch.plans import PLAN_TAG, PlanName


class ApiGatewayUsageKeys:
    def __init__(self, client: Any, *, api_id: str, stage: str) -> None:
        self._client = client
        self._api_id = api_id
        self._stage = stage

    def register(self, *, name: str, value: str, plan: PlanName) -> str:
        usage_plan_id = self.usage_plan_ids().get(plan)
        if usage_plan_id is None:
            raise FilebatchError(
                f"no usage plan tagged {PLAN_TAG}={plan} on API {self._api_id} stage {self._stage}",
                code="misconfigured",
            )
        try:
            key = self._client.create_api_key(name=name, value=value, enabled=True, tags={PLAN_TAG: plan})
            self._client.create_usage_plan_key(usagePlanId=usage_plan_id, keyId=key["id"], keyType="API_KEY")
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "Unknown")
            raise StorageUnavailableError(f"API Gateway create usage key failed: {code}") from error
        return str(key["id"])

    def usage_plan_ids(self) -> dict[str, str]:
        """Plan name → usage plan id, for the usage plans attached to this API's stage."""
        found: dict[str, str] = {}
        try:
            for page in self._client.get_paginator("get_usage_plans").paginate():
                for usage_plan in page.get("items", []):
                    stages = usage_plan.get("apiStages", [])
                    plan = usage_plan.get("tags", {}).get(PLAN_TAG)
                    if plan and any(
                        s.get("apiId") == self._api_id and s.get("stage") == self._stage for s in stages
                    ):
                        found[plan] = usage_plan["id"]
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "Unknown")
            raise StorageUnavailableError(f"API Gateway get usage plans failed: {code}") from error
        return found
