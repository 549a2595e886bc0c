"""Request dependencies: the engine, the calling principal, and permission checks."""
from __future__ import annotations

from typing import Callable

from fastapi import Depends, Request

from engine.auth import service
from engine.auth.policy import ANONYMOUS, PERMISSIONS, allowed
from engine.auth.service import AuthError, Principal
from engine.domain.groups import groups_of
from engine.runtime.case_engine import CaseEngine
from engine.runtime.errors import Actor, Forbidden

__all__ = ["RoleForbidden", "actor_of", "allow", "bearer_token", "engine_of"]


class RoleForbidden(Forbidden):
    """The caller's role has no right to this route at all (object rules come later)."""
    code = "role_forbidden"


def engine_of(request: Request) -> CaseEngine:
    return request.app.state.engine


def bearer_token(request: Request) -> str | None:
    """The request's bearer token, if it sent one."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def allow(permission: str) -> Callable:
    """Dependency: authenticate (unless the permission admits anonymous callers) and check
    the role. Returns the Principal (None for an anonymous caller on a public route)."""
    if permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")

    def check(request: Request) -> Principal | None:
        token = bearer_token(request)
        if token is None:
            if allowed(permission, ANONYMOUS):
                return None
            raise AuthError("log in first: send Authorization: Bearer <token>")
        engine = engine_of(request)
        with engine.reading() as conn:  # a read: never queue behind writers
            principal = service.authenticate(conn, token, engine.clock())
        if principal.seen_due:                       # after the read, on one connection at a time
            service.mark_seen(engine.db, principal.device_id, engine.clock())
        if not allowed(permission, principal.role):
            raise RoleForbidden(f"role {principal.role!r} may not {permission.replace('.', ' ')}")
        request.state.principal = principal
        return principal

    check.permission = permission  # read by the route-matrix test
    return Depends(check)


def actor_of(principal: Principal) -> Actor:
    return Actor(principal.id, groups_of(principal.role, principal.unit_code))
