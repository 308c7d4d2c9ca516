"""API keys: issued once, stored only as a SHA-256 hash, resolved to a tenant per request.

Keys are 256-bit random tokens, so a plain SHA-256 is enough (no salt or slow hash needed: there is
nothing to brute-force that is cheaper than guessing the key itself)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from filebatch.errors import UnauthorizedError
from filebatch.models.domain import Tenant
from filebatch.models.records import ApiKeyRecord, api_key_pk
from filebatch.services.ports import BatchRepository

KEY_PREFIX = "fbk_"


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def issue_api_key(repo: BatchRepository, tenant_id: str, *, now: datetime) -> str:
    """Create a key for the tenant and return it. This is the only time the key exists in clear."""
    tenant = Tenant(tenant_id=tenant_id)
    api_key = KEY_PREFIX + secrets.token_urlsafe(32)
    repo.put_api_key(
        ApiKeyRecord(
            pk=api_key_pk(hash_api_key(api_key)),
            tenant_id=tenant.tenant_id,
            key_prefix=api_key[:10],
            created_at=now,
        )
    )
    return api_key


def bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedError("expected 'Authorization: Bearer <api key>'")
    return token.strip()


def authenticate(repo: BatchRepository, authorization: str | None) -> Tenant:
    record = repo.get_api_key(hash_api_key(bearer_token(authorization)))
    if record is None or not record.enabled:
        raise UnauthorizedError("unknown or disabled API key")
    return Tenant(tenant_id=record.tenant_id)
