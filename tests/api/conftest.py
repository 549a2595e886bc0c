"""HTTP fixtures: the app in-process over real ASGI/HTTP semantics (httpx TestClient),
with one logged-in account per role."""
from __future__ import annotations

import functools

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from engine.api.app import create_app
from engine.auth import service
from engine.auth.models import Account
from engine.domain.models import Staff
from tests.district import seed

PASSWORD = "correct horse battery"
ACCOUNTS = {  # role -> (staff id, unit)
    "admin": ("admin1", None), "designer": ("designer1", None), "dispatcher": ("dispatcher1", None),
    "reviewer": ("reviewer1", None), "unit_worker": ("worker.clean-east.1", "clean-east"),
    "unit_leader": ("leader.clean-east", "clean-east"), "deliverer": ("deliverer1", None),
    "supervisor": ("super1", None),
}


def add_accounts(engine) -> None:
    """One log-in account per role (ACCOUNTS), all with PASSWORD."""
    with Session(engine.db) as s:
        for role, (sid, unit) in ACCOUNTS.items():
            if s.get(Staff, sid) is None:
                s.add(Staff(id=sid, name=sid, role=role, unit_code=unit))
            else:
                s.get(Staff, sid).role = role
        s.flush()
        for sid, _ in ACCOUNTS.values():  # one Argon2 hash for all: hashing is slow by design
            s.merge(Account(staff_id=sid, password_hash=_password_hash(), changed_at=engine.clock()))
        s.commit()


@pytest.fixture
def app(system):
    seed(system)
    add_accounts(system)
    return create_app(system, scheduler=False)


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


def login(client, username, password=PASSWORD):
    return client.post("/api/v1/auth/login", json={"username": username, "password": password})


@functools.lru_cache(maxsize=1)
def _password_hash() -> str:
    return service.hash_password(PASSWORD)


@pytest.fixture
def tokens(app, system):
    """An access token per role, issued directly (log-in itself is tested in test_auth)."""
    with system.transaction() as s:
        return {role: service.issue_token(s, s.get(Staff, sid), system.clock()) for role, (sid, _) in ACCOUNTS.items()}


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def token_for(system, staff_id: str, role: str, unit: str | None = None) -> str:
    """An extra account (e.g. a worker of another unit) and its access token."""
    with system.transaction() as s:
        if s.get(Staff, staff_id) is None:
            s.add(Staff(id=staff_id, name=staff_id, role=role, unit_code=unit))
            s.flush()
        return service.issue_token(s, s.get(Staff, staff_id), system.clock())
