"""An id taken by another request between a create's check and its insert is a conflict
(409), not a server error. On PostgreSQL the race is staged for real: another transaction
holds the same key, uncommitted, while the create runs; the create waits on the unique
index until that commits. (On SQLite writers queue on one lock, so the check itself sees
the other row: the same answer by the other path.)"""
from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from sqlalchemy import insert, text

from engine.domain.models import Contract, Staff
from engine.runtime.errors import Conflict
from engine.services import attendance, staff
from tests.district import seed
from tests.waiting import wait_until

ADMIN = SimpleNamespace(id="admin1", role="admin", unit_code=None)
CASES = {
    "staff": (Staff, {"id": "racer", "name": "Racer", "role": "dispatcher"},
              lambda e: staff.create(e, ADMIN, staff_id="racer", name="Racer", role="dispatcher",
                                     password="correct horse battery")),
    "contract": (Contract, {"code": "racer", "contractor": "Racer Co", "unit_code": "clean-east"},
                 lambda e: attendance.create_contract(e, ADMIN, code="racer", contractor="Racer Co",
                                                      unit_code="clean-east")),
}


@pytest.mark.parametrize("what", sorted(CASES))
def test_an_id_taken_meanwhile_is_a_conflict(system, what):
    seed(system)
    model, row, create = CASES[what]
    outcome: dict = {}

    def run():
        try:
            outcome["made"] = create(system)
        except Exception as exc:  # noqa: BLE001 - the test looks at what it was
            outcome["error"] = exc

    other = system.db.connect()
    try:
        tx = other.begin()
        other.execute(insert(model), row)
        if system.db.dialect.name == "postgresql":
            worker = threading.Thread(target=run)
            worker.start()
            wait_until(lambda: other.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar(),
                       what="the create to wait on the key the other transaction holds")
            tx.commit()
            worker.join(30)
            assert not worker.is_alive()
        else:
            tx.commit()
            run()
    finally:
        other.close()
    assert "made" not in outcome
    error = outcome["error"]
    assert isinstance(error, Conflict) and "already exists" in str(error), repr(error)
