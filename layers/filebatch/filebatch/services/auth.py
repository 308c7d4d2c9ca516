"""API keys: issued once, stored only as a SHA-256 hash, resolved to a tenant and its plan per request.

Keys are 256-bit random tokens, so a plain SHA-256 is enough (no salt or slow hash needed: there is
nothing to brute-force that is cheaper than guessing the key itself).

Each key also gets an API Gateway API key (its "usage key") under the usage plan of the tenant's
plan; the authorizer names it as the request's usageIdentifierKey, so API Gateway throttles and
meters the request under that plan."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import NamedTuple

from filebatch.errors import UnauthorizedError
from filebatch.models.domain import Tenant
from filebatch.models.records import ApiKeyRecord, api_key_pk
from filebatch.plans import PlanName, plan_named
from filebatch.services.ports import BatchRepository, UsageKeys

KEY_PREFIX = "fbk_"


class Authenticated(NamedTuple):
    tenant: Tenant
    # The value the authorizer returns as usageIdentifierKey.
    usage_key: str


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def issue_api_key(
    repo: BatchRepository, usage_keys: UsageKeys, tenant_id: str, *, plan: str, now: datetime
) -> str:
    """Create a key for the tenant on the plan and return it. This is the only time the key exists
    in clear."""
    tenant = Tenant(tenant_id=tenant_id, plan=plan_named(plan).name)
    api_key = KEY_PREFIX + secrets.token_urlsafe(32)
    usage_key = secrets.token_urlsafe(30)  # API Gateway wants at least 20 characters
    usage_key_id = usage_keys.register(
        name=f"{tenant.tenant_id}-{api_key[:10]}", value=usage_key, plan=tenant.plan
    )
    repo.put_api_key(
        ApiKeyRecord(
            pk=api_key_pk(hash_api_key(api_key)),
            tenant_id=tenant.tenant_id,
            key_prefix=api_key[:10],
            created_at=now,
            plan=tenant.plan,
            usage_key=usage_key,
            usage_key_id=usage_key_id,
        )
    )
    return api_key


def bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedError("expected 'Authorization: Bearer <api key>'")
    return token.strip()


def authenticate(repo: BatchRepository, authorization: str | None) -> Authenticated:
    record = repo.get_api_key(hash_api_key(bearer_token(authorization)))
    if record is None or not record.enabled:
        raise UnauthorizedError("unknown or disabled API key")
    if record.usage_key is None:
        # Issued before plans existed: API Gateway would refuse it (no usage plan) with a 403 that
        # explains nothing. A new key from `filebatch.admin create-key --plan` replaces it.
        raise UnauthorizedError("API key has no plan; issue a new one")
    plan: PlanName = record.plan
    return Authenticated(Tenant(tenant_id=record.tenant_id, plan=plan), record.usage_key)
