"""Bearer tokens and roles: agent < supervisor < admin."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from softswitch.config import ApiToken

ROLES = ("agent", "supervisor", "admin")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: a role and, for agents (and optionally supervisors), a user id."""

    role: str
    agent: str | None = None

    def at_least(self, role: str) -> bool:
        """Whether this principal's role is `role` or above it."""
        return ROLES.index(self.role) >= ROLES.index(role)

    def may_act_for(self, agent: str) -> bool:
        """Agents act only for themselves; supervisors and admins for anyone."""
        return self.at_least("supervisor") or self.agent == agent


class TokenTable:
    """Looks tokens up in constant time per candidate (no early exit on a matching prefix)."""

    def __init__(self, tokens: Iterable[ApiToken]) -> None:
        self._tokens = [(t.token.encode(), Principal(t.role, t.agent)) for t in tokens]

    def lookup(self, token: str | None) -> Principal | None:
        """The principal of `token`, or None when it is missing or unknown."""
        if not token:
            return None
        given = token.encode()
        found: Principal | None = None
        for secret, principal in self._tokens:
            if hmac.compare_digest(secret, given):
                found = principal
        return found


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None
