"""API keys are stored hashed and resolve to their tenant."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from filebatch.errors import UnauthorizedError
from filebatch.services.auth import authenticate, hash_api_key, issue_api_key
from tests.unit.fakes import InMemoryRepository

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def test_issued_key_authenticates_and_is_never_stored_in_clear() -> None:
    # Given a key issued to acme
    repo = InMemoryRepository()
    key = issue_api_key(repo, "acme", now=NOW)
    # When a request presents it
    tenant = authenticate(repo, f"Bearer {key}")
    # Then it resolves to acme, and the store only knows its hash
    assert tenant.tenant_id == "acme"
    stored = next(iter(repo.api_keys.values()))
    assert key not in stored.model_dump_json()
    assert stored.pk == f"APIKEY#{hash_api_key(key)}"


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", "Bearer fbk_unknown", "bearer  "])
def test_missing_malformed_or_unknown_keys_are_unauthorized(header: str | None) -> None:
    repo = InMemoryRepository()
    issue_api_key(repo, "acme", now=NOW)
    with pytest.raises(UnauthorizedError):
        authenticate(repo, header)


def test_disabled_key_is_unauthorized() -> None:
    repo = InMemoryRepository()
    key = issue_api_key(repo, "acme", now=NOW)
    record = next(iter(repo.api_keys.values()))
    repo.api_keys[record.pk] = record.model_copy(update={"enabled": False})
    with pytest.raises(UnauthorizedError):
        authenticate(repo, f"Bearer {key}")


def test_tenant_ids_are_validated() -> None:
    with pytest.raises(ValueError, match="tenant_id"):
        issue_api_key(InMemoryRepository(), "Not A Tenant/..", now=NOW)
