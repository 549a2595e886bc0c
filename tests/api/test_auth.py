"""Log-in, token expiry, rate limiting, device pairing and revocation over HTTP."""
from __future__ import annotations

from engine.auth import service
from engine.auth.policy import PERMISSIONS
from engine.domain.models import Staff
from tests.api.conftest import ACCOUNTS, PASSWORD, bearer, login


def test_login_and_me(client):
    r = login(client, "dispatcher1")
    assert r.status_code == 200 and r.json()["token_type"] == "bearer" and r.json()["expires_in"] == 1800
    me = client.get("/api/v1/auth/me", headers=bearer(r.json()["access_token"]))
    assert me.json() == {"id": "dispatcher1", "kind": "user", "role": "dispatcher", "unit_code": None,
                         "device_id": None, "groups": ["dispatcher"],
                         "permissions": sorted(p for p, roles in PERMISSIONS.items()
                                               if "dispatcher" in roles and p != "public")}


def test_wrong_password_and_unknown_user_look_the_same(client):
    a, b = login(client, "dispatcher1", "nope nope nope"), login(client, "nobody", "nope nope nope")
    assert a.status_code == b.status_code == 401 and a.json()["message"] == b.json()["message"]


def test_repeated_failures_are_rate_limited(client):
    for _ in range(5):
        assert login(client, "reviewer1", "wrong password!").status_code == 401
    r = login(client, "reviewer1")  # even the right password, for a while
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert login(client, "dispatcher1").status_code == 200, "other accounts are not affected"


def test_token_expires_on_the_engine_clock(client, system, clock):
    token = login(client, "dispatcher1").json()["access_token"]
    clock.advance(minutes=29)
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200
    clock.advance(minutes=2)
    r = client.get("/api/v1/auth/me", headers=bearer(token))
    assert r.status_code == 401 and "expired" in r.json()["message"]


def test_forged_or_garbage_tokens_are_refused(client, tokens):
    head, payload, sig = tokens["dispatcher"].split(".")
    for bad in ("garbage", f"{head}.{payload}.AAAA", "dev_" + "x" * 40, "Bearer", "x" * 5000):
        assert client.get("/api/v1/auth/me", headers=bearer(bad)).status_code == 401
    assert client.get("/api/v1/auth/me").status_code == 401


def test_device_pairing_and_revocation(client, tokens):
    admin = bearer(tokens["admin"])
    r = client.post("/api/v1/devices", json={"name": "Tablet 7", "kind": "tablet", "owner_id": "deliverer1"},
                    headers=admin)
    assert r.status_code == 201, r.text
    device_id, code = r.json()["id"], r.json()["pairing_code"]
    assert client.post("/api/v1/auth/pair", json={"device_id": device_id, "code": "00000000"}).status_code == 401
    paired = client.post("/api/v1/auth/pair", json={"device_id": device_id, "code": code})
    assert paired.status_code == 200
    token = paired.json()["access_token"]
    assert client.post("/api/v1/auth/pair", json={"device_id": device_id, "code": code}).status_code == 401, "one time"
    me = client.get("/api/v1/auth/me", headers=bearer(token)).json()
    assert {k: me[k] for k in ("id", "kind", "role", "unit_code", "device_id", "groups")} == {
        "id": "deliverer1", "kind": "device", "role": "deliverer", "unit_code": None, "device_id": device_id,
        "groups": ["deliverer"]}
    assert "gas.inspect" in me["permissions"] and "workorders.read" not in me["permissions"]
    assert client.post(f"/api/v1/devices/{device_id}/revoke", headers=admin).status_code == 200
    r = client.get("/api/v1/auth/me", headers=bearer(token))
    assert r.status_code == 401 and "revoked" in r.json()["message"]


def test_gateway_devices_have_their_own_role(client, tokens):
    admin = bearer(tokens["admin"])
    r = client.post("/api/v1/devices", json={"name": "East depot gateway", "kind": "gateway"}, headers=admin).json()
    token = client.post("/api/v1/auth/pair",
                        json={"device_id": r["id"], "code": r["pairing_code"]}).json()["access_token"]
    assert client.get("/api/v1/auth/me", headers=bearer(token)).json()["role"] == "gateway"
    assert client.get("/api/v1/staff", headers=bearer(token)).status_code == 403


def test_admin_manages_staff_with_clear_errors(client, tokens):
    admin = bearer(tokens["admin"])
    body = {"id": "worker.roads.9", "name": "Road Worker", "role": "unit_worker", "unit_code": "roads",
            "password": "a long enough one"}
    assert client.post("/api/v1/staff", json=body, headers=admin).status_code == 201
    assert client.post("/api/v1/staff", json=body, headers=admin).status_code == 409
    bad = client.post("/api/v1/staff", json={**body, "id": "x.y", "role": "king"}, headers=admin)
    assert bad.status_code == 422 and "role" in bad.json()["errors"]
    short = client.post("/api/v1/staff", json={**body, "id": "abc", "password": "short"}, headers=admin)
    assert short.status_code == 422 and "password" in short.json()["errors"]
    assert login(client, "worker.roads.9", "a long enough one").status_code == 200
    client.post("/api/v1/staff/worker.roads.9/disable", headers=admin)
    assert login(client, "worker.roads.9", "a long enough one").status_code == 401
    assert set(ACCOUNTS) and PASSWORD


def test_token_times_follow_the_engine_clock_not_the_wall_clock(client, system, clock):
    """A server whose clock runs ahead of this machine's (as tests' clocks do) still accepts
    the tokens it issues; one issued later than its own clock (+1 min) is refused."""
    clock.advance(days=400)                                   # well past the machine's date
    token = login(client, "dispatcher1").json()["access_token"]
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200
    with system.transaction() as s:
        staff = s.get(Staff, "dispatcher1")
        clock.advance(minutes=5)
        early = service.issue_token(s, staff, clock())        # issued 5 min after "now" below
    clock.advance(minutes=-5)
    refused = client.get("/api/v1/auth/me", headers=bearer(early))
    assert refused.status_code == 401 and "future" in refused.json()["message"]


def test_a_device_is_marked_seen_without_a_second_pooled_connection(app, client, tokens, system, db_url):
    """Recording a device's last-seen time used to open a second connection inside the
    authentication read: with every pooled connection held that way, requests waited on each
    other until the pool timed out. On a one-connection pool it must still answer."""
    from fastapi.testclient import TestClient

    from engine.api.app import create_app
    from engine.auth.models import Device
    from engine.db.session import make_engine
    from engine.domain.registry import build_registry
    from engine.runtime.case_engine import CaseEngine

    admin = bearer(tokens["admin"])
    d = client.post("/api/v1/devices", json={"name": "Gate 1", "kind": "gateway"}, headers=admin).json()
    token = client.post("/api/v1/auth/pair",
                        json={"device_id": d["id"], "code": d["pairing_code"]}).json()["access_token"]
    tight = CaseEngine(make_engine(db_url, pool_size=1, max_overflow=0, pool_timeout=3), build_registry(),
                       clock=system.clock)
    try:
        with TestClient(create_app(tight, scheduler=False)) as c:
            r = c.get("/api/v1/auth/me", headers=bearer(token))
        assert r.status_code == 200, r.text
        with system.transaction(write=False) as s:
            assert s.get(Device, d["id"]).last_seen_at is not None
    finally:
        tight.db.dispose()


def test_an_exhausted_connection_pool_is_a_503_to_retry_not_a_500(app, tokens, system, db_url):
    from fastapi.testclient import TestClient

    from engine.api.app import create_app
    from engine.db.session import make_engine
    from engine.domain.registry import build_registry
    from engine.runtime.case_engine import CaseEngine

    tight = CaseEngine(make_engine(db_url, pool_size=1, max_overflow=0, pool_timeout=0.5), build_registry(),
                       clock=system.clock)
    try:
        with TestClient(create_app(tight, scheduler=False)) as c, tight.db.connect():   # the only connection, held
            r = c.get("/api/v1/auth/me", headers=bearer(tokens["dispatcher"]))
        assert r.status_code == 503 and r.json()["error"] == "overloaded"
        assert r.headers["Retry-After"] == "2"
    finally:
        tight.db.dispose()


def test_a_connection_the_database_dropped_costs_one_503_then_the_worker_recovers(tokens, system, db_url):
    """Connections are not pinged before use (a round trip per checkout): one that the
    database dropped while it sat in the pool fails its request with a 503 to retry, the
    pool is renewed, and the next request is served."""
    from fastapi.testclient import TestClient

    from engine.api.app import create_app
    from engine.db.session import make_engine
    from engine.domain.registry import build_registry
    from engine.runtime.case_engine import CaseEngine

    one = CaseEngine(make_engine(db_url, pool_size=1, max_overflow=0, pool_timeout=3), build_registry(),
                     clock=system.clock)
    try:
        with TestClient(create_app(one, scheduler=False)) as c:
            assert c.get("/api/v1/auth/me", headers=bearer(tokens["dispatcher"])).status_code == 200
            with one.db.connect() as conn:   # the pool's only connection, then dropped under it
                if one.db.dialect.name == "postgresql":
                    pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
                else:
                    raw = conn.connection.dbapi_connection
            if one.db.dialect.name == "postgresql":
                with system.db.connect() as admin:
                    assert admin.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})").scalar()
            else:
                raw.close()
            lost = c.get("/api/v1/auth/me", headers=bearer(tokens["dispatcher"]))
            assert lost.status_code == 503 and lost.json()["error"] == "database_unavailable", lost.text
            assert lost.headers["Retry-After"] == "1"
            again = c.get("/api/v1/auth/me", headers=bearer(tokens["dispatcher"]))
            assert again.status_code == 200, again.text
    finally:
        one.db.dispose()
