"""The real server: `uvicorn --workers 2` on the suite's database (PostgreSQL in the CI's
second pass), reached over real HTTP from threads."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlmodel import Session

from engine.auth.models import Account
from engine.domain.models import Staff
from engine.system import build
from tests.api.conftest import ACCOUNTS, PASSWORD, _password_hash
from tests.district import seed

pytestmark = pytest.mark.slow     # a real two-worker uvicorn


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(db_url, tmp_path, clock):
    engine = build(db_url, clock=clock)
    seed(engine)
    with Session(engine.db) as s:
        for role, (sid, unit) in ACCOUNTS.items():
            if s.get(Staff, sid) is None:
                s.add(Staff(id=sid, name=sid, role=role, unit_code=unit))
        s.flush()
        for sid, _ in ACCOUNTS.values():
            s.merge(Account(staff_id=sid, password_hash=_password_hash(), changed_at=clock()))
        s.commit()
    engine.db.dispose()
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": db_url, "CITYLOOP_SCHEDULER": "1", "CITYLOOP_DATA": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "engine.api.app:create_app", "--factory",
                             "--workers", "2", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/openapi.json", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "uvicorn did not come up"
        time.sleep(0.2)
    yield base
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    assert "Traceback" not in out, out


def test_two_workers_serve_logins_and_agree_on_tokens(server):
    def login(i):
        r = httpx.post(f"{server}/api/v1/auth/login", json={"username": "dispatcher1", "password": PASSWORD},
                       timeout=30)
        return r.status_code, r.headers["X-Cityloop-Worker"], r.json().get("access_token")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(login, range(24)))
    assert {status for status, _, _ in results} == {200}
    # a token issued by one worker is accepted by the other: the signing key is shared
    workers_seen = set()
    with ThreadPoolExecutor(8) as pool:
        for r in pool.map(lambda t: httpx.get(f"{server}/api/v1/auth/me", headers={"Authorization": f"Bearer {t}"},
                                              timeout=30), [tok for _, _, tok in results] * 2):
            assert r.status_code == 200 and r.json()["id"] == "dispatcher1"
            workers_seen.add(r.headers["X-Cityloop-Worker"])
    workers_seen |= {w for _, w, _ in results}
    assert len(workers_seen) == 2, workers_seen


def test_bad_input_over_real_http_is_4xx(server):
    for body, headers in ((b"{not json", {"content-type": "application/json"}),
                          (b'{"username": 5, "password": []}', {"content-type": "application/json"}),
                          (b"x" * (17 * 1024 * 1024), {"content-type": "application/json"})):
        r = httpx.post(f"{server}/api/v1/auth/login", content=body, headers=headers, timeout=30)
        assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
        assert r.json()["error"]
