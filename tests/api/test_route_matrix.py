"""Every route of the app has exactly one permission, and every role gets exactly what the
policy grants: a new route without a rule, or a rule that is not enforced, fails here."""
from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute

from engine.auth.policy import ANONYMOUS, PERMISSIONS, STAFF
from tests.api.conftest import bearer


def _permissions(dependant) -> list[str]:
    found = []
    for dep in dependant.dependencies:
        perm = getattr(dep.call, "permission", None)
        if perm is not None:
            found.append(perm)
        found.extend(_permissions(dep))
    return found


def api_routes(app) -> list[APIRoute]:
    """All API routes, including those of included routers (FastAPI keeps those nested)."""
    out, stack = [], list(app.routes)
    while stack:
        r = stack.pop(0)
        if isinstance(r, APIRoute):
            out.append(r)
        elif hasattr(r, "original_router"):
            assert not r.include_context.prefix, "routers carry their own prefix"
            stack.extend(r.original_router.routes)
    return out


def test_every_route_declares_exactly_one_permission(app):
    missing = {f"{sorted(r.methods)} {r.path}": _permissions(r.dependant) for r in api_routes(app)
               if len(_permissions(r.dependant)) != 1}
    assert missing == {}, f"routes without exactly one allow(...): {missing}"
    assert len(api_routes(app)) >= 10


def _call(client, route: APIRoute, method: str, headers: dict):
    path = re.sub(r"\{[^}]+\}", "00000000", route.path)
    return client.request(method, path, headers=headers, json={})


@pytest.mark.parametrize("role", sorted(STAFF) + [ANONYMOUS])
def test_each_role_gets_what_the_policy_grants(app, client, tokens, role):
    headers = bearer(tokens[role]) if role != ANONYMOUS else {}
    wrong = []
    for route in api_routes(app):
        permission = _permissions(route.dependant)[0]
        for method in sorted(route.methods):
            r = _call(client, route, method, headers)
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else None
            code = body.get("error") if isinstance(body, dict) else None
            granted = role in PERMISSIONS[permission]
            if granted and (r.status_code == 401 or code == "role_forbidden"):
                wrong.append(f"{method} {route.path}: {role} refused ({r.status_code})")
            if not granted:
                expected = 401 if role == ANONYMOUS else 403
                if r.status_code != expected:
                    wrong.append(f"{method} {route.path}: {role} got {r.status_code}, expected {expected}")
            if r.status_code >= 500:
                wrong.append(f"{method} {route.path}: {role} got a server error {r.status_code}")
    assert wrong == []
