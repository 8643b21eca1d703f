"""Roles and what each may do: pure decisions that raise Forbidden or NotFound.

``user`` < ``supervisor`` < ``admin`` < ``operator``; each may do what the ones below it
may. An admin manages its own tenant's keys and settings. The operator (the bootstrap
key) manages tenants, every tenant's keys and the task catalog, which all tenants share.
"""

from __future__ import annotations

from batchd.domain import errors
from batchd.domain.limits import LIMIT_NAMES, Limits, is_limited
from batchd.domain.models import ApiKey, Principal, Role

RANKS: dict[str, int] = {role.value: n for n, role in enumerate(Role)}


def rank(role: str) -> int:
    """The role's place in the order; an unknown role ranks below a user."""
    return RANKS.get(role, -1)


def at_least(principal: Principal, role: Role) -> bool:
    return rank(principal.role) >= rank(role)


def is_operator(principal: Principal) -> bool:
    return at_least(principal, Role.OPERATOR)


def _require(principal: Principal, role: Role, what: str) -> None:
    if not at_least(principal, role):
        raise errors.Forbidden(f"{what} needs {'an' if role[0] in 'aeiou' else 'a'} "
                               f"{role.value} key")


def require_supervisor(principal: Principal, what: str = "this") -> None:
    _require(principal, Role.SUPERVISOR, what)


def require_admin(principal: Principal, what: str = "managing keys") -> None:
    _require(principal, Role.ADMIN, what)


def require_operator(principal: Principal, what: str = "this") -> None:
    _require(principal, Role.OPERATOR, what)


def key_scope(principal: Principal) -> str | None:
    """The tenant (id) whose keys ``principal`` manages; None: every tenant's."""
    require_admin(principal)
    return None if is_operator(principal) else principal.tenant_id


def check_key_tenant(principal: Principal, tenant: str) -> None:
    """May ``principal`` create a key in the tenant named ``tenant``? (Only an operator
    may name a new tenant: creating its key creates it.)"""
    require_admin(principal)
    if not is_operator(principal) and tenant != principal.tenant_name:
        # 403, not 404: the answer is the same whether that tenant exists or not.
        raise errors.Forbidden(
            f"an admin key creates keys for its own tenant ({principal.tenant_name}) only; "
            "other tenants' keys need an operator key"
        )


def exceeded_limits(limits: Limits, ceiling: Limits) -> list[str]:
    """The names of the limits in which ``limits`` is more generous than ``ceiling``."""
    over = []
    for name in LIMIT_NAMES:
        value, most = getattr(limits, name), getattr(ceiling, name)
        if is_limited(most) and (not is_limited(value) or value > most):
            over.append(name)
    return over


def check_key_grant(principal: Principal, *, role: str, limits: Limits,
                    own_limits: Limits) -> None:
    """May ``principal`` mint a key of ``role`` held to ``limits`` (``own_limits``: its
    own)? An admin gives no more than it has: no higher role, no larger limits."""
    require_admin(principal)
    if role not in RANKS:
        raise errors.InvalidInput(f"unknown role {role!r}; known: {', '.join(RANKS)}",
                                  details={"field": "role", "problem": "unknown role"})
    if is_operator(principal):
        return
    if rank(role) > rank(principal.role):
        raise errors.Forbidden(f"an {principal.role} key cannot create a key of role {role}; "
                               "that needs an operator key")
    over = exceeded_limits(limits, own_limits)
    if over:
        raise errors.Forbidden(
            f"an admin key cannot give a key larger limits than its own ({', '.join(over)}); "
            "that needs an operator key"
        )


def check_revoke(principal: Principal, key: ApiKey | None) -> None:
    """May ``principal`` revoke ``key`` (None: no such key)? Another tenant's key is
    missing to an admin; a key of a higher role than the caller's is refused."""
    require_admin(principal)
    if key is None or (not is_operator(principal) and key.tenant_id != principal.tenant_id):
        raise errors.NotFound("key not found")
    if rank(key.role) > rank(principal.role):
        raise errors.Forbidden(f"an {principal.role} key cannot revoke a key of role "
                               f"{key.role}")
