"""API keys are stored hashed and resolve to their tenant, its plan and its gateway usage key."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from filebatch.errors import UnauthorizedError
from filebatch.services.auth import authenticate, hash_api_key, issue_api_key
from tests.unit.fakes import InMemoryRepository, InMemoryUsageKeys

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def test_issued_key_authenticates_and_is_never_stored_in_clear() -> None:
    # Given a key issued to acme on the pro plan
    repo, usage_keys = InMemoryRepository(), InMemoryUsageKeys()
    key = issue_api_key(repo, usage_keys, "acme", plan="pro", now=NOW)
    # When a request presents it
    tenant, usage_key = authenticate(repo, f"Bearer {key}")
    # Then it resolves to acme on pro, and the store only knows its hash
    assert (tenant.tenant_id, tenant.plan) == ("acme", "pro")
    stored = next(iter(repo.api_keys.values()))
    assert key not in stored.model_dump_json()
    assert stored.pk == f"APIKEY#{hash_api_key(key)}"
    # And its usage key is a gateway key under the pro usage plan, distinct from the key itself
    [(name, value, plan)] = usage_keys.keys.values()
    assert (value, plan) == (usage_key, "pro")
    assert usage_key != key and len(usage_key) >= 20
    assert name.startswith("acme-") and key[:10] in name


def test_an_unknown_plan_issues_nothing() -> None:
    repo, usage_keys = InMemoryRepository(), InMemoryUsageKeys()
    with pytest.raises(ValueError, match="unknown plan"):
        issue_api_key(repo, usage_keys, "acme", plan="platinum", now=NOW)
    assert repo.api_keys == {} and usage_keys.keys == {}


def test_a_key_issued_before_plans_is_refused_with_a_reason() -> None:
    # Given a key record without a usage key (issued before plans existed)
    repo = InMemoryRepository()
    key = issue_api_key(repo, InMemoryUsageKeys(), "acme", plan="free", now=NOW)
    record = next(iter(repo.api_keys.values()))
    repo.api_keys[record.pk] = record.model_copy(update={"usage_key": None})
    # Then it is refused, saying why
    with pytest.raises(UnauthorizedError, match="no plan"):
        authenticate(repo, f"Bearer {key}")


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", "Bearer fbk_unknown", "bearer  "])
def test_missing_malformed_or_unknown_keys_are_unauthorized(header: str | None) -> None:
    repo = InMemoryRepository()
    issue_api_key(repo, InMemoryUsageKeys(), "acme", plan="free", now=NOW)
    with pytest.raises(UnauthorizedError):
        authenticate(repo, header)


def test_disabled_key_is_unauthorized() -> None:
    repo = InMemoryRepository()
    key = issue_api_key(repo, InMemoryUsageKeys(), "acme", plan="free", now=NOW)
    record = next(iter(repo.api_keys.values()))
    repo.api_keys[record.pk] = record.model_copy(update={"enabled": False})
    with pytest.raises(UnauthorizedError):
        authenticate(repo, f"Bearer {key}")


def test_tenant_ids_are_validated() -> None:
    with pytest.raises(ValueError, match="tenant_id"):
        issue_api_key(InMemoryRepository(), InMemoryUsageKeys(), "Not A Tenant/..", plan="free", now=NOW)
