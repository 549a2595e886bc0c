"""End to end, as people use it: the real app in child processes (real offscreen windows,
real touches), the real server over HTTP, killed and restarted.

A gas deliverer pulls their work while online, then loses the network: completes the due
inspection from My work, starts a delivery inspection at a household without a task (the
hazard preview turns severe), and the app is killed mid-form. Restarted, still offline, the
outbox and the draft are there; the draft is offered, finished and saved. The network
returns, the deliverer syncs, and the server has each inspection exactly once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import select

from engine.db.models import Instance
from engine.domain import gas
from engine.domain.models import Household, Inspection
from engine.runtime.errors import Actor
from fieldapp import session
from fieldapp.store import LocalStore
from sync.server.models import SyncOp
from tests.fieldapp.conftest import register_tablet
from tests.fieldapp.driver import make_config
from tests.fieldapp.form_child import png

ROOT = Path(__file__).resolve().parents[2]


class Child:
    """The app in a child process, spoken to step by step."""

    def __init__(self, mode: str, data_dir: Path, photo: Path):
        command = [sys.executable, "-m", "tests.fieldapp.e2e_child", mode, str(data_dir), str(photo)]
        self.log = data_dir.parent / f"{mode}.log"        # a file: an undrained stderr pipe would stall the app
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                         text=True, bufsize=1, env={**os.environ, "SDL_VIDEODRIVER": "offscreen"})

    def step(self, name: str) -> dict:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("STEP "):
                _, got, body = line.rstrip("\n").split(" ", 2)
                assert got == name, f"expected step {name}, the app reported {got}: {body}"
                return json.loads(body)
        self.proc.wait(30)
        raise AssertionError(f"the app ended (rc {self.proc.returncode}) before step {name}:\n"
                             + self.log.read_text()[-4000:])

    def tell(self, word: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()

    def end(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.mark.slow
def test_a_deliverer_works_offline_is_killed_restarts_and_the_server_gets_it_exactly_once(field_server, system,
                                                                                          tmp_path):
    from tests.api.conftest import PASSWORD as ACCOUNT_PASSWORD
    with system.transaction() as s:
        homes = {h.address_code: h.id for h in s.exec(select(Household)).all()}
    due = homes["DC01-001-01"]
    gas.start_inspection(system, due, "deliverer1", "due_list", Actor("scheduler"))
    data_dir, photo = tmp_path / "tablet", png(tmp_path / "plate.png")
    config = make_config(data_dir)
    store = LocalStore(config.store_path)
    device_id, code = register_tablet(system, owner="deliverer1")
    session.pair(config, store, field_server.url, device_id, code)
    session.sign_in(config, store, "deliverer1", ACCOUNT_PASSWORD)
    store.close()

    first = Child("deliverer-offline", data_dir, photo)
    pulled = first.step("pulled")
    assert pulled["tasks"] == 1 and pulled["households"] >= 2 and pulled["screen"] == "tasks" and pulled["online"]
    field_server.stop()                                             # the network is gone
    first.tell("offline")
    saved = first.step("first_saved")
    assert saved["waiting"] == 1 and not saved["online"] and ("离线" in saved["status"])
    half = first.step("half_filled")
    assert half["hazard"]["level"] == "severe" and "停止向该住户供气" in half["hazard"]["follows"]
    assert "整改工单" in half["hazard"]["follows"]
    assert half["draft"] == {"hose_ok": "cracked", "valve_leak_test": "leak"}
    assert first.end() == -signal.SIGKILL

    second = Child("deliverer-resume", data_dir, photo)
    again = second.step("restarted")
    assert again["waiting"] == 1 and not again["online"] and half["draft_key"] in again["drafts"]
    done = second.step("offline_done")
    assert "草稿" in done["asked"] and done["restored"] == {"hose_ok": "cracked", "valve_leak_test": "leak"}
    kinds = sorted(o["kind"] for o in done["ops"])
    assert kinds == ["complete_task", "inspect_household"]
    field_server.start()                                            # the network returns
    second.tell("online")
    synced = second.step("synced")
    assert second.end() == 0
    assert synced["refused"] == 0 and synced["online"]
    assert {v["verdict"] for v in synced["verdicts"].values()} <= {"applied", "duplicate"}

    with system.transaction(write=False) as s:
        by_home = {h: s.exec(select(Inspection).where(Inspection.household_id == h)).all() for h in homes.values()}
        applied = s.exec(select(SyncOp).where(SyncOp.op_id.in_([o["op_id"] for o in done["ops"]]))).all()
        started = s.exec(select(Instance).where(Instance.business_key == f"household:{homes['DC01-001-02']}")).all()
    assert len(by_home[due]) == 1 and by_home[due][0].hazard_level == "none"
    [delivered] = by_home[homes["DC01-001-02"]]
    assert delivered.hazard_level == "severe" and delivered.work_order_number      # rectification order opened
    assert len(started) == 1 and len(applied) == 2
    assert sum(len(v) for v in by_home.values()) == 2
