"""Fault tests with a real server process over real HTTP (uvicorn, 2 workers):
(2) the server commits but the answer is lost on the way: the retry gets the same result;
(3) the same op sent 10 times at once: applied once;
(5) a client killed -9 while writing its outbox (and syncing) loses nothing it confirmed,
    and nothing is applied twice when a new client process finishes the job."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import httpx
import pytest
from sqlmodel import func, select

from engine.db.models import AuditEvent
from engine.domain.records import Comment
from sync.client import Outbox, SyncClient
from sync.server.models import SyncConflict, SyncOp
from tests.sync.servers import ROOT, ServerProcess, pump
from tests.sync.syncing import east_order, paired_tablet, rectify_task

pytestmark = pytest.mark.slow     # real two-worker server processes, clients killed


def _count(system, model, *where) -> int:
    with system.transaction(write=False) as s:
        return s.exec(select(func.count()).select_from(model).where(*where)).one()


@pytest.fixture
def field(system, tmp_path, db_url):
    """The seeded district, a tablet paired to a clean-east worker, and the real server."""
    token = paired_tablet(system, "tablet 7")
    server = ServerProcess(db_url, tmp_path / "server", workers=2).start()
    yield server, token
    server.stop()
    assert "Traceback" not in server.log_tail(20000), server.log_tail()


class LosingProxy:
    """A TCP proxy in front of the server that, for its first `lose` connections, lets the
    request through, reads the server's whole answer and then hangs up on the client
    without passing the answer on: the server committed, the client never heard."""

    def __init__(self, port: int, lose: int = 1):
        self.port, self.lose, self.lost = port, lose, []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, client: socket.socket):
        upstream = socket.create_connection(("127.0.0.1", self.port))
        with self._lock:
            losing = self.lose > 0
            self.lose -= losing
        threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
        if not losing:
            pump(upstream, client)
            return
        answer = _read_response(upstream)
        self.lost.append(answer)
        for sock in (client, upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)   # wakes the pump thread and sends the client a FIN now
            except OSError:                       # the pump thread may have shut it down first
                pass
            sock.close()

    def close(self):
        self.listener.close()


def _read_response(sock: socket.socket) -> dict:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return json.loads(body)


def test_a_lost_answer_is_retried_and_gets_the_same_result(field, system, tmp_path):
    server, token = field
    number = east_order(system)
    task = rectify_task(system, number)
    proxy = LosingProxy(server.port, lose=1)
    box = Outbox(tmp_path / "outbox.db")
    op_id = box.add("complete_task", {"action": "not_ours", "reason": "it is a road defect"}, task_id=task["id"],
                    based_on_version=task["version"])
    with SyncClient(proxy.address, token, box, device="tablet-7", backoff=0.05) as c:
        [verdict] = c.push()
        assert c.attempts == 2                              # the first answer was lost, the retry got through
    proxy.close()
    [lost] = proxy.lost[0]["verdicts"]
    assert (lost["op_id"], lost["verdict"]) == (op_id, "applied")  # the server had committed
    assert (verdict["verdict"], verdict["original"], verdict["result"]) == ("duplicate", "applied", lost["result"])
    assert box.op(op_id)["state"] == "done" and box.unsettled() == []
    assert _count(system, AuditEvent, AuditEvent.business_key == number, AuditEvent.kind == "task_completed") == 1
    assert _count(system, SyncOp) == 1


def test_a_lost_pull_answer_is_pulled_again(field, system, tmp_path):
    server, token = field
    number = east_order(system)
    proxy = LosingProxy(server.port, lose=1)
    box = Outbox(tmp_path / "outbox.db")
    with SyncClient(proxy.address, token, box, device="tablet-7", backoff=0.05) as c:
        summary = c.pull()
    proxy.close()
    assert [t["business_key"] for t in proxy.lost[0]["tasks"]] == [number]
    assert summary["tasks"] == 1 and [t["business_key"] for t in box.tasks()] == [number]


def test_the_same_op_ten_times_at_once_is_applied_once(field, system):
    server, token = field
    number = east_order(system)
    task = rectify_task(system, number)
    op = {"op_id": str(uuid.uuid4()), "kind": "complete_task", "task_id": task["id"],
          "based_on_version": task["version"], "payload": {"action": "not_ours", "reason": "roads"},
          "device_time": datetime.now(timezone.utc).isoformat()}
    gate = threading.Barrier(10)

    def send(_):
        with httpx.Client(base_url=server.base_url, timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as http:
            gate.wait()
            r = http.post("/sync/v1/push", json={"protocol": 1, "ops": [op]})
            return r.status_code, r.json()["verdicts"][0], r.headers["x-cityloop-worker"]

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(send, range(10)))
    assert {status for status, _, _ in answers} == {200}
    verdicts = sorted(v["verdict"] for _, v, _ in answers)
    assert verdicts == ["applied"] + ["duplicate"] * 9
    results = {json.dumps(v["result"], sort_keys=True) for _, v, _ in answers}
    assert len(results) == 1                                   # every copy got the one stored result
    assert _count(system, AuditEvent, AuditEvent.business_key == number, AuditEvent.kind == "task_completed") == 1
    assert _count(system, SyncOp) == 1 and _count(system, SyncConflict) == 0


CHILD = r"""
import sys
from sync.client import Outbox, SyncClient
box = Outbox(sys.argv[1])
client = SyncClient(sys.argv[2], sys.argv[3], box, device="tablet-7", backoff=0.05)
i = 0
while True:
    op_id = box.add("comment", {"work_order": sys.argv[4], "text": f"note {sys.argv[5]}.{i}"})
    print(op_id, flush=True)          # shown to the user as saved only now
    i += 1
    if i % 7 == 0:
        client.push()
"""


def test_a_client_killed_while_writing_loses_nothing_it_confirmed(field, system, tmp_path):
    server, token = field
    number = east_order(system)
    path = tmp_path / "outbox.db"
    confirmed: list[str] = []
    for round_ in range(3):   # killed three times, mid-write or mid-push, each at a different moment
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), server.base_url, token, number, str(round_)],
                                 cwd=ROOT, stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)})
        for _ in range(40 + 23 * round_):
            confirmed.append(child.stdout.readline().strip())
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
        confirmed.extend(line.strip() for line in child.stdout.read().splitlines() if line.strip())
    assert len(confirmed) == len(set(confirmed)) >= 40 + 63 + 86
    box = Outbox(path)
    assert box.db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    kept = set(box.op_ids())
    assert set(confirmed) <= kept                  # nothing the user was told is saved is lost
    with SyncClient(server.base_url, token, box, device="tablet-7") as c:
        c.push()
        assert box.unsettled() == [] and c.push() == []
    states = {box.op(o)["verdict"]["verdict"] for o in kept}
    assert states <= {"applied", "duplicate"}
    with system.transaction(write=False) as s:
        texts = s.exec(select(Comment.text)).all()
    assert len(texts) == len(set(texts)) == len(kept)   # each op applied exactly once
    assert _count(system, SyncOp) == len(kept)
