"""Roles: who may manage which keys and tenants (pure decisions in core/roles.py)."""

from __future__ import annotations

import pytest

from batchd.core import roles
from batchd.domain import errors
from batchd.domain.limits import DEFAULT_TIERS, UNLIMITED, Limits
from batchd.domain.models import ApiKey, Principal, Role

PRO = DEFAULT_TIERS["pro"]
FREE = DEFAULT_TIERS["free"]
NO_LIMITS = Limits(max_batch_size=UNLIMITED, api_calls=UNLIMITED, items=UNLIMITED,
                   cost_usd=UNLIMITED)


def who(role: str, tenant: str = "acme") -> Principal:
    return Principal(key_id=f"key_{role}", tenant_id=f"ten_{tenant}", tenant_name=tenant,
                     role=role, tier="pro", owner="o")


def key(role: str, tenant: str = "acme") -> ApiKey:
    return ApiKey(id="key_x", tenant_id=f"ten_{tenant}", tenant_name=tenant, role=role,
                  tier="pro", owner="o", prefix="bd_", created_at=0.0)


def test_roles_rank_in_order_and_unknown_ranks_lowest() -> None:
    assert [roles.rank(r) for r in ("user", "supervisor", "admin", "operator")] == [0, 1, 2, 3]
    assert roles.rank("root") < roles.rank("user")
    assert roles.at_least(who("operator"), Role.ADMIN)
    assert not roles.at_least(who("admin"), Role.OPERATOR)


def test_roles_every_role_from_supervisor_sees_the_whole_tenant() -> None:
    assert [who(r).sees_all_of_tenant for r in Role] == [False, True, True, True]


@pytest.mark.parametrize("role", ["user", "supervisor"])
def test_roles_below_admin_manage_no_keys(role: str) -> None:
    with pytest.raises(errors.Forbidden):
        roles.key_scope(who(role))
    with pytest.raises(errors.Forbidden):
        roles.check_key_tenant(who(role), "acme")
    with pytest.raises(errors.Forbidden):
        roles.check_revoke(who(role), key("user"))


def test_roles_key_scope_is_the_admins_tenant_and_every_tenant_for_the_operator() -> None:
    assert roles.key_scope(who("admin")) == "ten_acme"
    assert roles.key_scope(who("operator", "default")) is None


def test_roles_admin_creates_keys_only_in_its_own_tenant() -> None:
    roles.check_key_tenant(who("admin"), "acme")
    for other in ("globex", "default", "new-tenant"):
        with pytest.raises(errors.Forbidden):
            roles.check_key_tenant(who("admin"), other)
        roles.check_key_tenant(who("operator", "default"), other)


def test_roles_admin_grants_at_most_its_own_role() -> None:
    for role in ("user", "supervisor", "admin"):
        roles.check_key_grant(who("admin"), role=role, limits=FREE, own_limits=PRO)
    with pytest.raises(errors.Forbidden, match="operator"):
        roles.check_key_grant(who("admin"), role="operator", limits=FREE, own_limits=PRO)
    roles.check_key_grant(who("operator"), role="operator", limits=NO_LIMITS, own_limits=FREE)
    with pytest.raises(errors.InvalidInput):
        roles.check_key_grant(who("operator"), role="root", limits=FREE, own_limits=FREE)


def test_roles_admin_grants_no_larger_limits_than_its_own() -> None:
    assert roles.exceeded_limits(FREE, PRO) == []
    assert roles.exceeded_limits(PRO, PRO) == []
    assert roles.exceeded_limits(NO_LIMITS, NO_LIMITS) == []
    assert roles.exceeded_limits(PRO, NO_LIMITS) == []
    assert roles.exceeded_limits(PRO, FREE) == ["max_batch_size", "api_calls", "items",
                                                "cost_usd"]
    assert roles.exceeded_limits(PRO.with_overrides({"items": UNLIMITED}), PRO) == ["items"]
    with pytest.raises(errors.Forbidden, match="items"):
        roles.check_key_grant(who("admin"), role="user",
                              limits=FREE.with_overrides({"items": 101}), own_limits=FREE)


def test_roles_revoking_another_tenants_key_is_not_found_to_an_admin() -> None:
    roles.check_revoke(who("admin"), key("user"))
    roles.check_revoke(who("admin"), key("admin"))
    with pytest.raises(errors.NotFound):
        roles.check_revoke(who("admin"), key("user", "globex"))
    with pytest.raises(errors.NotFound):
        roles.check_revoke(who("admin"), None)
    with pytest.raises(errors.Forbidden):
        roles.check_revoke(who("admin", "default"), key("operator", "default"))
    roles.check_revoke(who("operator", "default"), key("admin", "globex"))
    roles.check_revoke(who("operator", "default"), key("operator", "default"))


def test_roles_tenants_and_task_definitions_need_the_operator() -> None:
    roles.require_operator(who("operator"))
    with pytest.raises(errors.Forbidden, match="operator"):
        roles.require_operator(who("admin"), "creating a tenant")
    roles.require_supervisor(who("operator"))
    roles.require_supervisor(who("admin"))
    with pytest.raises(errors.Forbidden, match="supervisor"):
        roles.require_supervisor(who("user"), "the internal routes")
