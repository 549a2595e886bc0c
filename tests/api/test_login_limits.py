"""Log-in cannot be used to burn the server: failed log-ins are limited per address (any user
names) and per account at an address, read from the database before any Argon2 work, with
the true Retry-After; old attempts are pruned; password checks run in a few slots per
process. Over HTTP (the app in-process, each client with its own address), on the engine's
clock."""
from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import func, select

from engine.auth import service
from engine.auth.models import LoginAttempt
from tests.api.conftest import PASSWORD
from tests.api.test_uvicorn_workers import server  # noqa: F401 - the real server fixture

WINDOW = int(service.FAILURE_WINDOW.total_seconds())


@pytest.fixture
def from_address(app):
    """`from_address(host)`: a client whose requests come from `host`."""
    clients: dict[str, TestClient] = {}

    def client(host: str) -> TestClient:
        if host not in clients:
            clients[host] = TestClient(app, client=(host, 40000))
        return clients[host]

    yield client
    for c in clients.values():
        c.close()


def _login(client: TestClient, username: str, password: str = PASSWORD):
    return client.post("/api/v1/auth/login", json={"username": username, "password": password})


def _attempts(system, address: str | None = None) -> int:
    with system.transaction(write=False) as s:
        q = select(func.count()).select_from(LoginAttempt)
        if address is not None:
            q = q.where(LoginAttempt.address == address)
        return s.exec(q).one()


def _hold_every_hashing_slot():
    for _ in range(service.HASH_SLOTS):
        assert service.HASHING.acquire(timeout=30)


def _release_every_hashing_slot():
    for _ in range(service.HASH_SLOTS):
        service.HASHING.release()


def test_new_user_names_from_one_address_are_limited_before_any_password_check(from_address, clock):
    attacker = from_address("203.0.113.7")
    for i in range(service.MAX_ADDRESS_FAILURES):
        r = _login(attacker, f"guess-{i}", "not the password")
        assert r.status_code == 401, r.text
        clock.advance(seconds=10)
    # 20 failures at t0 .. t0+190 s, now t0+200 s: the oldest leaves the window in 700 s
    _hold_every_hashing_slot()        # a check that reached Argon2 would wait and answer 503
    try:
        r = _login(attacker, "dispatcher1")               # even an account's right password
    finally:
        _release_every_hashing_slot()
    assert r.status_code == 429, r.text
    assert r.headers["Retry-After"] == str(WINDOW - 200)
    assert r.json()["error"] == "rate_limited"
    assert f"{WINDOW - 200} s" in r.json()["message"] and f"{WINDOW - 200} 秒" in r.json()["message"]
    assert _login(from_address("203.0.113.8"), "dispatcher1").status_code == 200, "other addresses go on"
    assert _login(from_address("203.0.113.8"), "guess-0", "nope").status_code == 401


def test_retry_after_is_the_true_remaining_time_and_shrinks_with_the_clock(from_address, clock):
    attacker = from_address("198.51.100.20")
    for i in range(service.MAX_ADDRESS_FAILURES):
        assert _login(attacker, f"user-{i}", "wrong wrong").status_code == 401
        clock.advance(seconds=30)                  # failures at t0, t0+30 s, ... t0+570 s
    r = _login(attacker, "user-x")                 # now t0+600 s
    assert r.status_code == 429 and r.headers["Retry-After"] == str(WINDOW - 600)
    clock.advance(seconds=250)
    assert _login(attacker, "user-y").headers["Retry-After"] == str(WINDOW - 850)
    clock.advance(seconds=49, milliseconds=500)    # half a second before the oldest leaves
    r = _login(attacker, "user-z")
    assert r.status_code == 429 and r.headers["Retry-After"] == "1", "rounded up, never 0"
    clock.advance(milliseconds=500)                # t0+900 s: the failure at t0 no longer counts
    assert _login(attacker, "dispatcher1").status_code == 200
    assert _login(attacker, "user-20", "wrong again").status_code == 401   # the 20th in the window again
    r = _login(attacker, "dispatcher1")
    assert r.status_code == 429 and r.headers["Retry-After"] == "30", "until the failure at t0+30 s leaves"


def test_an_account_is_limited_at_an_address_and_a_success_clears_only_the_account_count(
        from_address, clock, system):
    office = from_address("192.0.2.50")
    for _ in range(service.MAX_FAILURES - 1):
        assert _login(office, "reviewer1", "typo typo").status_code == 401
        clock.advance(seconds=60)
    assert _login(office, "reviewer1").status_code == 200, "4 typos, then the right password"
    for _ in range(service.MAX_FAILURES - 1):      # the account's count started again
        assert _login(office, "reviewer1", "typo typo").status_code == 401
        clock.advance(seconds=60)
    assert _login(office, "reviewer1", "typo typo").status_code == 401      # the 5th since the success
    r = _login(office, "reviewer1")
    assert r.status_code == 429 and r.headers["Retry-After"] == str(WINDOW - 4 * 60), r.text
    assert _login(office, "dispatcher1").status_code == 200, "another account at the same address"
    assert _login(from_address("192.0.2.51"), "reviewer1").status_code == 200, "the account from elsewhere"
    # the success did not wipe the address's count: 9 failures here still count
    assert _attempts(system, "192.0.2.50") == 2 * (service.MAX_FAILURES - 1) + 1
    for i in range(service.MAX_ADDRESS_FAILURES - 9):
        assert _login(office, f"someone-{i}", "nope nope").status_code == 401
    assert _login(office, "dispatcher1").status_code == 429


def test_old_attempts_are_pruned(from_address, clock, system):
    assert _login(from_address("203.0.113.30"), "a", "wrong!").status_code == 401
    assert _login(from_address("203.0.113.31"), "b", "wrong!").status_code == 401
    assert _login(from_address("203.0.113.32"), "c", "wrong!").status_code == 401
    clock.advance(minutes=10)
    assert _login(from_address("203.0.113.32"), "c", "wrong!").status_code == 401
    assert _attempts(system) == 4
    clock.advance(minutes=5)
    # the first three are out of the window: the next failure from .30 deletes that address's
    assert _login(from_address("203.0.113.30"), "a", "wrong!").status_code == 401
    assert _attempts(system, "203.0.113.30") == 1
    assert _attempts(system) == 4
    # the periodic sweep (engine.scheduler, every 15 minutes) takes every expired row
    with system.transaction() as s:
        assert service.prune_login_attempts(s, clock()) == 2            # .31's and .32's first
    assert _attempts(system) == 2
    clock.advance(minutes=15)
    with system.transaction() as s:
        assert service.prune_login_attempts(s, clock()) == 2
    assert _attempts(system) == 0


def test_a_log_in_finding_every_hashing_slot_busy_is_a_503_and_counts_nothing(from_address, system):
    _hold_every_hashing_slot()
    try:
        r = _login(from_address("203.0.113.40"), "dispatcher1", "whatever it is")
    finally:
        _release_every_hashing_slot()
    assert r.status_code == 503 and r.json()["error"] == "overloaded", r.text
    assert r.headers["Retry-After"] == "1" and "稍后重试" in r.json()["message"]
    assert _attempts(system, "203.0.113.40") == 0
    assert _login(from_address("203.0.113.40"), "dispatcher1").status_code == 200


def test_an_ipv6_client_is_counted_by_its_64_network(from_address):
    for i in range(service.MAX_ADDRESS_FAILURES):
        assert _login(from_address(f"2001:db8:7:1::{i + 1:x}"), f"n{i}", "wrong!").status_code == 401
    assert _login(from_address("2001:db8:7:1:ffff::1"), "dispatcher1").status_code == 429
    assert _login(from_address("2001:db8:7:2::1"), "dispatcher1").status_code == 200


@pytest.mark.parametrize("host, counted_as", [
    ("203.0.113.9", "203.0.113.9"),
    ("2001:db8:aa:bb:1:2:3:4", "2001:db8:aa:bb::/64"),
    ("::ffff:203.0.113.9", "203.0.113.9"),
    ("testclient", "testclient"),
])
def test_client_address(host, counted_as):
    assert service.client_address(host) == counted_as


def test_behind_a_proxy_the_forwarded_client_address_is_the_one_limited(server):  # noqa: F811
    """The real server as deployed (uvicorn, 2 workers on one database, proxy headers on and
    trusting 127.0.0.1 by default): requests arrive from 127.0.0.1 as from a reverse proxy on
    this host, and each client is counted by the address the proxy puts in X-Forwarded-For."""
    def attempt(forwarded_for: str, username: str, password: str = "wrong wrong"):
        return httpx.post(f"{server}/api/v1/auth/login", json={"username": username, "password": password},
                          headers={"X-Forwarded-For": forwarded_for}, timeout=30)

    for i in range(service.MAX_ADDRESS_FAILURES):
        assert attempt("198.51.100.77", f"who-{i}").status_code == 401
    r = attempt("198.51.100.77", "dispatcher1", PASSWORD)
    assert r.status_code == 429 and 0 < int(r.headers["Retry-After"]) <= WINDOW, r.text
    # uvicorn takes the right-most address its trusted proxies did not add: one the client
    # wrote itself further left changes nothing
    assert attempt("10.9.9.9, 198.51.100.77", "dispatcher1", PASSWORD).status_code == 429
    assert attempt("198.51.100.78", "dispatcher1", PASSWORD).status_code == 200, "the proxy's other clients"
