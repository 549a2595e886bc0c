"""Hostile input to every route, as a role that may call it: always a 4xx with a clear
message (or a success), never a server error."""
from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.auth.policy import ANONYMOUS, PERMISSIONS
from tests.api.conftest import bearer
from tests.api.test_route_matrix import _permissions, api_routes

NASTY_BODIES = [b"", b"{", b"null", b"[]", b'"x"', b"1e999", b'{"a": NaN}', b"\xff\xfe\x00", b'{"__proto__": {}}',
                b"[" * 5000 + b"]" * 5000, b'{"x": "' + b"A" * 200_000 + b'"}']
NASTY_IDS = ["..%2F..%2Fetc%2Fpasswd", "0", "-1", "99999999999999999999999", "%00", "x" * 300, "%E4%B8%AD"]
JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                       | st.text(max_size=20),
                       lambda inner: st.lists(inner, max_size=4)
                                     | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                       max_leaves=12)


def _granted_headers(tokens, permission):
    roles = sorted(PERMISSIONS[permission] - {ANONYMOUS})
    staff = [r for r in roles if r in tokens]
    return bearer(tokens[staff[0]]) if staff else {}


def _message(response) -> str | None:
    """Our error shape, or GeoReport v2's [{"code", "description"}] on /open311 routes."""
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else None
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return body[0].get("description")
    if isinstance(body, dict):
        return body.get("message")
    return response.text if "xml" in response.headers.get("content-type", "") else None


def _path(route, value):
    return re.sub(r"\{[^}]+\}", value, route.path)


def test_nasty_bodies_and_ids_never_give_a_server_error(app, client, tokens):
    errors = []
    for route in api_routes(app):
        headers = _granted_headers(tokens, _permissions(route.dependant)[0])
        for method in sorted(route.methods):
            for value in NASTY_IDS[:3] if "{" in route.path else ["-"]:
                for body in NASTY_BODIES:
                    r = client.request(method, _path(route, value), content=body,
                                       headers={**headers, "content-type": "application/json"})
                    if r.status_code >= 500:
                        errors.append(f"{method} {route.path} body={body[:20]!r}: {r.status_code}")
                    elif r.status_code >= 400 and not _message(r):
                        errors.append(f"{method} {route.path}: {r.status_code} without a message")
            for value in NASTY_IDS:
                if "{" in route.path:
                    r = client.request(method, _path(route, value), headers=headers, json={})
                    if r.status_code >= 500:
                        errors.append(f"{method} {route.path} id={value!r}: {r.status_code}")
    assert errors == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=JSONISH)
def test_random_json_to_every_writing_route(app, client, tokens, body):
    for route in api_routes(app):
        if not route.methods & {"POST", "PUT", "PATCH"}:
            continue
        headers = _granted_headers(tokens, _permissions(route.dependant)[0])
        for method in route.methods & {"POST", "PUT", "PATCH"}:
            r = client.request(method, _path(route, "1"), headers=headers, json=body)
            assert r.status_code < 500, (method, route.path, body, r.text[:300])


def test_a_client_gone_before_its_body_arrived_is_no_server_error(app, client, tokens, caplog):
    """A tablet that loses signal mid-request: the route finds the body cut off. Nothing is
    written, nothing logged as an error, and the app returns instead of raising into the
    server (which logged 'Exception in ASGI application' with a traceback)."""
    import asyncio
    import logging

    async def call(method: str, path: str, headers: dict) -> list[dict]:
        sent, queue = [], [{"type": "http.request", "body": b'{"ops": [', "more_body": True},
                           {"type": "http.disconnect"}]

        async def receive():
            return queue.pop(0) if queue else {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": [(k.lower().encode(), v.encode()) for k, v in
                             {**headers, "content-type": "application/json", "content-length": "100"}.items()],
                 "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000), "state": {}, "app": app}
        await app(scope, receive, send)
        return sent

    raised, logged = [], []
    caplog.set_level(logging.INFO)
    for route in api_routes(app):
        headers = _granted_headers(tokens, _permissions(route.dependant)[0])
        for method in sorted(route.methods & {"POST", "PUT", "PATCH"}):
            caplog.clear()
            try:
                sent = asyncio.run(call(method, _path(route, "1"), headers))
            except Exception as exc:  # noqa: BLE001 - what the server would have logged
                raised.append(f"{method} {route.path}: {type(exc).__name__}")
                continue
            starts = [m["status"] for m in sent if m["type"] == "http.response.start"]
            if any(status >= 500 for status in starts):
                raised.append(f"{method} {route.path}: {starts}")
            logged += [f"{method} {route.path}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]
    assert raised == [] and logged == []
