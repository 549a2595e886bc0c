"""The `cityloop` command, run for real in a subprocess, and the demo district it seeds.

Runs on an empty database of the run (module_empty_db_url, empty_db_url: a temporary SQLite
file, or a database of the test PostgreSQL in the PostgreSQL pass; see conftest.py).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from lxml import etree
from sqlmodel import Session, select

from engine.clock import from_db, utcnow
from engine.db.models import AuditEvent, Definition, Instance
from engine.db.session import make_engine
from engine.demo import DEMO_PASSWORD
from engine.domain import badges
from engine.domain.common import add_months
from engine.domain.models import (
    AddressCode,
    Badge,
    Cleaner,
    Contract,
    Crew,
    Household,
    Inspection,
    Shift,
    Staff,
    Unit,
    WorkOrder,
)
from engine.domain.registry import build_registry

ROOT = Path(__file__).resolve().parent.parent
HOUSEHOLDS = 60
BAD_BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="Defs_bad"
                  targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="evil" isExecutable="true">
    <bpmn:startEvent id="Start_1"><bpmn:outgoing>Flow_1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:scriptTask id="Script_pwn" scriptFormat="python">
      <bpmn:incoming>Flow_1</bpmn:incoming><bpmn:outgoing>Flow_2</bpmn:outgoing>
      <bpmn:script>__import__("os").system("touch /tmp/pwned")</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:endEvent id="End_1"><bpmn:incoming>Flow_2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="Flow_1" sourceRef="Start_1" targetRef="Script_pwn"/>
    <bpmn:sequenceFlow id="Flow_2" sourceRef="Script_pwn" targetRef="End_1"/>
  </bpmn:process>
</bpmn:definitions>
"""


def _command() -> list[str]:
    """The installed console script; `python -m engine.cli` (the same main) if not installed."""
    script = shutil.which("cityloop", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "engine.cli"]


def _env(db_url: str, workdir: Path) -> dict:
    env = dict(os.environ, DATABASE_URL=db_url, CITYLOOP_DATA=str(workdir / "data"), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("CITYLOOP_DEBUG", None)
    return env


def cityloop(db_url: str, workdir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(_command() + list(args), cwd=workdir, env=_env(db_url, workdir), capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, module_empty_db_url):
    workdir = tmp_path_factory.mktemp("cli")
    url = module_empty_db_url
    started = time.monotonic()
    result = cityloop(url, workdir, "demo", "seed", "--households", str(HOUSEHOLDS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "seeded" in result.stdout and "households" in result.stdout
    assert time.monotonic() - started < 60
    return url, workdir


@pytest.fixture(scope="module")
def seeded_db(seeded):
    db = make_engine(seeded[0])
    yield db
    db.dispose()


@pytest.fixture
def session(seeded_db):
    # Per test: an open transaction would block the schema reset of the next test on PostgreSQL.
    with Session(seeded_db) as s:
        yield s


def _dmn_units() -> set[str]:
    root = etree.parse(str(ROOT / "workflows" / "dmn" / "dispatch_rules.dmn")).getroot()
    ns = {"d": etree.QName(root).namespace}
    outputs = root.findall(".//d:decisionTable/d:output", ns)
    index = [o.get("name") for o in outputs].index("unit")
    units = set()
    for rule in root.findall(".//d:decisionTable/d:rule", ns):
        text = rule.findall("d:outputEntry", ns)[index].findtext("d:text", namespaces=ns)
        units.add(text.strip().strip('"'))
    return units


# ---- the command ----------------------------------------------------------------------------
def test_seed_refuses_a_seeded_database(seeded):
    url, workdir = seeded
    result = cityloop(url, workdir, "demo", "seed", "--households", "5")
    assert result.returncode == 1
    assert "already" in result.stderr and "Traceback" not in result.stderr


def test_processes_lists_versions_and_instances(seeded):
    result = cityloop(*seeded, "processes")
    assert result.returncode == 0, result.stderr
    rows = {tuple(line.split()[:3]): line for line in result.stdout.splitlines()[1:]}
    for key in ("work_order", "gas_inspection", "crew_attendance"):
        assert ("bpmn", key, "v1") in rows
    assert re.search(r"\d+ completed, \d+ running", rows[("bpmn", "work_order", "v1")])
    assert ("dmn", "dispatch_rules", "v1") in rows and ("form", "wo_review", "v1") in rows


def test_operations_lists_the_registry(seeded):
    result = cityloop(*seeded, "operations")
    assert result.returncode == 0, result.stderr
    for name, doc in build_registry().describe().items():
        assert re.search(rf"^{name}\s+{re.escape(doc)}$", result.stdout, re.M)


def test_tasks_for_a_dispatcher_and_a_unit_worker(seeded):
    result = cityloop(*seeded, "tasks", "--user", "dispatcher1", "--group", "dispatcher")
    assert result.returncode == 0, result.stderr
    assert "1 open task(s) for dispatcher1" in result.stdout and "Re-route" in result.stdout
    result = cityloop(*seeded, "tasks", "--user", "reviewer2", "--group", "reviewer")
    assert result.stdout.count("Review") >= 6
    result = cityloop(*seeded, "tasks", "--user", "nobody")
    assert result.returncode == 0 and "0 open task(s)" in result.stdout


def test_deploy_refuses_a_script_task_naming_it(seeded, tmp_path):
    bad = tmp_path / "evil.bpmn"
    bad.write_text(BAD_BPMN)
    result = cityloop(*seeded, "deploy", str(bad))
    assert result.returncode == 2
    assert "Script_pwn" in result.stderr and "script" in result.stderr and "Traceback" not in result.stderr
    assert not Path("/tmp/pwned").exists()
    listed = cityloop(*seeded, "processes").stdout
    assert "evil" not in listed


def test_deploy_unchanged_file_keeps_its_version(seeded):
    result = cityloop(*seeded, "deploy", str(ROOT / "workflows" / "bpmn" / "work_order.bpmn"))
    assert result.returncode == 0, result.stderr
    assert re.search(r"bpmn\s+work_order\s+v1\s+unchanged", result.stdout)


def test_errors_are_one_line(seeded, tmp_path):
    result = cityloop(*seeded, "deploy", str(tmp_path / "missing.bpmn"))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "missing.bpmn" in result.stderr
    result = cityloop("postgresql://nobody:secret@127.0.0.1:1/none", tmp_path, "processes")
    assert result.returncode == 1 and "Traceback" not in result.stderr and "secret" not in result.stderr


def test_timers_fire_and_db_upgrade(seeded):
    result = cityloop(*seeded, "timers", "fire")
    assert result.returncode == 0 and re.search(r"fired timers on \d+ instance", result.stdout)
    result = cityloop(*seeded, "db", "upgrade")
    assert result.returncode == 0 and "revision" in result.stdout


# ---- what the demo seeded ----------------------------------------------------------------------
def test_every_unit_the_dispatch_table_names_exists_with_a_leader(session):
    from engine.demo_data import DMN_UNITS
    dmn_units = _dmn_units()
    assert dmn_units == set(DMN_UNITS)
    units = {u.code: u for u in session.exec(select(Unit))}
    assert dmn_units <= set(units)
    for u in units.values():
        assert u.name and u.name_zh
        leader = session.get(Staff, u.leader_id)
        assert leader is not None and leader.role == "unit_leader" and leader.unit_code == u.code
        assert session.exec(select(Staff).where(Staff.unit_code == u.code, Staff.role == "unit_worker")).first()


def test_staff_for_every_role(session):
    roles = {}
    for st in session.exec(select(Staff)):
        roles.setdefault(st.role, []).append(st.id)
    for role in ("admin", "designer", "dispatcher", "reviewer", "unit_worker", "unit_leader", "deliverer",
                 "supervisor"):
        assert roles.get(role), role
    assert "dispatcher1" in roles["dispatcher"] and "worker.clean-east.1" in roles["unit_worker"]
    assert len(roles["deliverer"]) == 10


def test_households_on_flats_with_deliverers_and_due_dates(session):
    households = list(session.exec(select(Household)))
    assert len(households) == HOUSEHOLDS
    now = utcnow()
    due = never = 0
    for hh in households:
        flat = session.get(AddressCode, hh.address_code)
        assert flat.parent is not None and session.get(AddressCode, flat.parent) is not None
        assert 31.1 < flat.lat < 31.3 and 121.3 < flat.lon < 121.5
        assert session.get(Staff, hh.deliverer_id).role == "deliverer"
        if hh.last_inspected_at is None:
            never += 1
            continue
        last, next_due = from_db(hh.last_inspected_at), from_db(hh.next_due_at)
        assert next_due == add_months(last, 4)
        assert now - last < timedelta(days=190)
        due += next_due <= now
    assert never >= 1 and 0 < due < HOUSEHOLDS
    assert len(session.exec(select(Inspection)).all()) == 3
    assert len([h for h in households if h.supply_suspended]) == 1


def test_work_orders_in_every_state(session):
    orders = list(session.exec(select(WorkOrder)))
    assert 30 <= len(orders) <= 60
    states = {o.state for o in orders}
    assert {"at_unit", "in_review", "rerouting", "closed"} <= states
    assert any(o.state == "at_unit" and o.reject_count >= 1 for o in orders)       # rejected, back at the unit
    assert any(o.state == "at_unit" and o.reroute_count == 1 for o in orders)      # re-routed by a dispatcher
    assert sum(1 for o in orders if o.state == "closed") >= 8
    assert sum(1 for o in orders if o.overdue and o.state != "closed") >= 2
    assert any(o.category == "gas_hazard" and o.source == "inspection" for o in orders)
    for o in orders:
        instance = session.get(Instance, o.instance_id)
        if o.source == "inspection":   # rectified in its inspection's instance, by the called rectification
            assert instance.process_key == "gas_inspection" and o.origin == f"gas_inspection:{instance.id}"
            assert o.state == "closed" or instance.state == "running"
            continue
        assert instance.business_key == o.number
        assert instance.state == ("completed" if o.state == "closed" else "running")
        assert o.unit_code and session.get(Unit, o.unit_code) is not None
    kinds = set(session.exec(select(AuditEvent.kind)).all())
    assert {"dispatched", "rejected", "rerouted", "closed", "task_completed"} <= kinds
    # escalate() audits only when notify() reports the first notice as new.
    assert "escalated" in kinds, "overdue orders but no 'escalated' audit event: did notify() return False?"


def test_contracts_crews_and_badges(session):
    contracts = list(session.exec(select(Contract)))
    assert len(contracts) == 3 and {c.unit_code for c in contracts} == {"clean-east", "clean-west"}
    for c in contracts:
        crews = list(session.exec(select(Crew).where(Crew.contract_code == c.code)))
        assert len(crews) == 2
        for crew in crews:
            assert session.get(Staff, crew.supervisor_id).role == "supervisor"
            cleaners = list(session.exec(select(Cleaner).where(Cleaner.crew_code == crew.code)))
            assert len(cleaners) == 8
            for cl in cleaners:
                badge = session.get(Badge, cl.badge_id)
                assert badge is not None and badge.active
                if badge.kind == "rotating":   # a sealed 32-byte master key (engine.domain.badges)
                    assert badge.secret.startswith("k1:") and len(badges.master_key(session, badge)) == 32
                else:
                    assert badge.kind == "legacy" and badge.secret is None
    rows = list(session.exec(select(Badge)))
    assert len(rows) == 48 and sum(b.kind == "legacy" for b in rows) == 1
    assert len({badges.master_key(session, b) for b in rows if b.secret}) == 47


def test_todays_shifts_are_planned(session):
    shifts = list(session.exec(select(Shift)))
    assert len(shifts) == 6 and all(s.instance_id for s in shifts)
    assert session.exec(select(Definition).where(Definition.key == "crew_attendance")).first()


# ---- serve ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_serve_prints_its_summary_and_stops_on_sigterm(tmp_path, empty_db_url):
    url = empty_db_url
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(_command() + ["serve", "--demo", "--sweep-seconds", "0.5", "--port", str(port)],
                            cwd=tmp_path, env=_env(url, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while not any("Press Ctrl-C" in line for line in lines):
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "no summary in time:\n" + "".join(lines)
            time.sleep(0.1)
        # the summary is printed before the HTTP server binds: wait until it answers (on a
        # slow machine that took over 2 s), while the timer sweep already runs every 0.5 s
        base = f"http://127.0.0.1:{port}"
        while True:
            try:
                answer = httpx.get(f"{base}/openapi.json", timeout=10)
                break
            except httpx.ConnectError:
                assert proc.poll() is None, "".join(lines)
                assert time.monotonic() < deadline, "the server did not answer in time:\n" + "".join(lines)
                time.sleep(0.1)
        assert answer.status_code == 200
        me = httpx.get(f"{base}/api/v1/auth/me", timeout=10)
        assert me.status_code == 401 and me.json()["error"] == "unauthorized"
        token = httpx.post(f"{base}/api/v1/auth/login", json={"username": "dispatcher1", "password": DEMO_PASSWORD},
                           timeout=10).json()["access_token"]
        me = httpx.get(f"{base}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert me.json()["role"] == "dispatcher"
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - stopping < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    out = "".join(lines)
    assert "seeding the demo district" in out
    for needle in ("cityloop engine is running", "引擎运行中", "work_order v1", "open tasks / 待办任务",
                   "overdue orders / 超时工单", "households due", "shifts today", "stopped / 已停止"):
        assert needle in out, needle
    assert "Traceback" not in out and "ERROR" not in out
