"""Push: one verdict per op (applied, duplicate, mismatch, conflict, invalid, waiting), each
op applied once with its sync_op row in the same transaction; over the in-process app."""
from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from sqlmodel import func, select

from engine.db.models import AuditEvent
from engine.domain import attendance
from engine.domain.models import Attendance, WorkOrder
from engine.domain.records import Comment, WorkOrderAttachment
from engine.runtime.errors import Actor
from engine.runtime.reassign import reassign
from engine.storage import AttachmentStore
from sync.protocol import PushBatch, decode_op
from sync.server import ops
from sync.server.models import SyncConflict, SyncOp, SyncOpWait
from tests.api.conftest import app, bearer, client, token_for, tokens  # noqa: F401  (fixtures)
from tests.sync.syncing import PUSH, WORKER, batch, complete_op, east_order, op, photo, rectify_task, sha, store_photo


@pytest.fixture
def store(app, tmp_path):  # noqa: F811
    store = app.state.attachments = AttachmentStore(tmp_path / "attachments")
    return store


@pytest.fixture
def worker(tokens):  # noqa: F811
    return bearer(tokens["unit_worker"])


def push(client, headers, *ops_, **extra):  # noqa: F811
    r = client.post(PUSH, headers=headers, json=batch(*ops_, **extra))
    assert r.status_code == 200, r.text
    return r.json()["verdicts"]


def rows(system, model, *where):
    with system.transaction(write=False) as s:
        return s.exec(select(model).where(*where)).all()


def completions(system, number: str) -> int:
    with system.transaction(write=False) as s:
        return s.exec(select(func.count()).select_from(AuditEvent).where(AuditEvent.business_key == number,
                                                                         AuditEvent.kind == "task_completed")).one()


def test_applied_then_duplicate_returns_the_stored_result(client, system, store, worker):  # noqa: F811
    number = east_order(system)
    task = rectify_task(system, number)
    pic = store_photo(system, store, photo(1))
    o = complete_op(system, task, {"action": "fixed", "after_photos": [pic]},
                    gps={"lat": 31.2, "lon": 121.4, "accuracy": 8})
    [v] = push(client, worker, o)
    assert (v["verdict"], v["code"], v["op_id"]) == ("applied", 200, o["op_id"])
    assert v["result"]["version"] == task["version"] + 1 and v["result"]["business_key"] == number
    assert rows(system, WorkOrder, WorkOrder.number == number)[0].state == "in_review"
    [link] = rows(system, WorkOrderAttachment, WorkOrderAttachment.sha256 == pic)
    assert link.kind == "after" and link.added_by == WORKER
    [row] = rows(system, SyncOp, SyncOp.op_id == o["op_id"])
    assert (row.verdict, row.actor, row.kind, row.task_id, row.lat) == ("applied", WORKER, "complete_task",
                                                                         task["id"], 31.2)
    # the same op again (even spelled with another key order): the stored result, nothing applied twice
    again = dict(reversed(list(o.items())))
    [d] = push(client, worker, again)
    assert (d["verdict"], d["original"], d["result"]) == ("duplicate", "applied", v["result"])
    assert completions(system, number) == 1
    # the same comment twice in one batch: once
    c = op("comment", system.clock(), {"work_order": number, "text": "twice"})
    assert [x["verdict"] for x in push(client, worker, c, c)] == ["applied", "duplicate"]
    assert [x.text for x in rows(system, Comment)] == ["twice"]
    [blank] = push(client, worker, op("comment", system.clock(), {"work_order": number, "text": "   "}))
    assert (blank["verdict"], blank["errors"]) == ("invalid", {"payload.text": "empty"}) and blank["message_zh"]
    assert [x.text for x in rows(system, Comment)] == ["twice"]


def test_same_op_id_with_another_body_is_409_and_the_original_stays(client, system, store, worker):  # noqa: F811
    number = east_order(system)
    task = rectify_task(system, number)
    o = complete_op(system, task, {"action": "not_ours", "reason": "a road defect"})
    assert push(client, worker, o)[0]["verdict"] == "applied"
    changed = {**o, "payload": {"action": "not_ours", "reason": "something else"}}
    [v] = push(client, worker, changed)
    assert (v["verdict"], v["code"], v["original"]) == ("mismatch", 409, "applied")
    assert "different op" in v["message"] and v["message_zh"]
    [row] = rows(system, SyncOp, SyncOp.op_id == o["op_id"])
    assert json.loads(row.body)["payload"]["reason"] == "a road defect"


def test_completed_by_someone_else_is_a_conflict_kept_with_both_sides(client, system, store, worker, tokens):  # noqa: F811
    number = east_order(system)
    task = rectify_task(system, number)
    other = bearer(token_for(system, "worker.clean-east.2", "unit_worker", "clean-east"))
    first = complete_op(system, task, {"action": "not_ours", "reason": "not ours at all"})
    mine = complete_op(system, task, {"action": "not_ours", "reason": "mine too"})
    assert push(client, other, first)[0]["verdict"] == "applied"
    [v] = push(client, worker, mine)
    assert (v["verdict"], v["code"], v["reason"]) == ("conflict", 409, "completed")
    assert "worker.clean-east.2" in v["message"] and "完成" in v["message_zh"]
    [c] = rows(system, SyncConflict, SyncConflict.op_id == mine["op_id"])
    assert json.loads(c.device_side)["payload"]["reason"] == "mine too"
    server = json.loads(c.server_side)
    assert server["completed_by"] == "worker.clean-east.2" and server["instance"]["business_key"] == number
    # the conflict is listed for the unit's leader, resolved once
    leader = bearer(tokens["unit_leader"])
    listed = client.get("/sync/v1/conflicts", headers=leader).json()["items"]
    assert [x["op_id"] for x in listed] == [mine["op_id"]]
    assert client.get("/sync/v1/conflicts", headers=bearer(tokens["supervisor"])).json()["items"] == []
    r = client.post(f"/sync/v1/conflicts/{c.id}/resolve", headers=leader,
                    json={"resolution": "kept_server", "note": "ok"})
    assert r.status_code == 200 and r.json()["resolved_by"] == "leader.clean-east"
    assert client.post(f"/sync/v1/conflicts/{c.id}/resolve", headers=leader,
                       json={"resolution": "dismissed"}).status_code == 409
    assert client.get("/sync/v1/conflicts", headers=leader).json()["items"] == []
    # a duplicate of the conflicting op gets the same conflict back, and no second conflict row
    [d] = push(client, worker, mine)
    assert (d["verdict"], d["original"], d["reason"]) == ("duplicate", "conflict", "completed")
    assert len(rows(system, SyncConflict)) == 1


def test_reassigned_and_moved_on_are_conflicts_with_their_reason(client, system, store, worker):  # noqa: F811
    number = east_order(system)
    task = rectify_task(system, number)
    stale = complete_op(system, task, {"action": "not_ours", "reason": "roads"})
    stale["based_on_version"] = task["version"] - 1 if task["version"] > 1 else task["version"] + 5
    [v] = push(client, worker, stale)
    assert (v["verdict"], v["reason"]) == ("conflict", "version")
    token_for(system, "worker.clean-east.3", "unit_worker", "clean-east")
    reassign(system, task["id"], "worker.clean-east.3", Actor("dispatcher1", {"dispatcher"}), "nearer")
    [v] = push(client, worker, complete_op(system, task, {"action": "not_ours", "reason": "x y"}))
    assert (v["verdict"], v["reason"]) == ("conflict", "reassigned")
    ghost = {**complete_op(system, task, {"action": "not_ours", "reason": "x y"}), "task_id": "0" * 36}
    [v] = push(client, worker, ghost)
    assert (v["verdict"], v["reason"]) == ("conflict", "cancelled")   # gone without anyone completing it
    assert {c.reason for c in rows(system, SyncConflict)} == {"version", "reassigned", "cancelled"}


def test_invalid_ops_get_field_errors_and_do_not_stop_the_others(client, system, store, worker):  # noqa: F811
    number = east_order(system)
    task = rectify_task(system, number)
    bad_form = complete_op(system, task, {"action": "burn it"})
    no_time = {k: v for k, v in complete_op(system, task, {"action": "fixed"}).items() if k != "device_time"}
    not_uuid = {**complete_op(system, task, {}), "op_id": "seven"}
    comment = op("comment", system.clock(), {"work_order": number, "text": "bins emptied / 已清理"})
    verdicts = push(client, worker, bad_form, no_time, not_uuid, "not an op", comment)
    assert [v["verdict"] for v in verdicts] == ["invalid", "invalid", "invalid", "invalid", "applied"]
    assert "action" in verdicts[0]["errors"] and verdicts[0]["code"] == 422
    assert "device_time" in verdicts[1]["errors"] and verdicts[1]["op_id"] == no_time["op_id"]
    assert "op_id" in verdicts[2]["errors"]
    assert rows(system, Comment)[0].text == "bins emptied / 已清理"
    assert rectify_task(system, number)["id"] == task["id"]  # still open: nothing half-applied
    # a form-invalid op is stored: sending it again gives the same verdict
    [again] = push(client, worker, bad_form)
    assert (again["verdict"], again["original"], again["errors"]) == ("duplicate", "invalid", verdicts[0]["errors"])


def test_an_op_waits_for_its_photo_then_applies_when_it_arrives(client, system, store, worker):  # noqa: F811
    number = east_order(system)
    task = rectify_task(system, number)
    data = photo(2)
    o = complete_op(system, task, {"action": "fixed", "after_photos": [sha(data)]})
    [v] = push(client, worker, o)
    assert (v["verdict"], v["code"], v["result"]["missing"]) == ("waiting", 202, [sha(data)])
    assert rows(system, SyncOp, SyncOp.op_id == o["op_id"])[0].verdict == "waiting"
    assert rectify_task(system, number)["id"] == task["id"]
    [again] = push(client, worker, o)
    assert again["verdict"] == "waiting"
    store_photo(system, store, data)
    assert ops.release_waiting(system, sha(data), exists=store.exists) == 1
    assert ops.release_waiting(system, sha(data), exists=store.exists) == 0
    assert rows(system, WorkOrder, WorkOrder.number == number)[0].state == "in_review"
    assert rows(system, SyncOpWait) == []
    [d] = push(client, worker, o)
    assert (d["verdict"], d["original"]) == ("duplicate", "applied")
    assert completions(system, number) == 1


def test_a_waiting_op_pushed_again_after_the_upload_applies(client, system, store, worker):  # noqa: F811
    number = east_order(system)
    data = photo(3)
    o = op("attach", system.clock(), {"work_order": number, "kind": "evidence"}, attachments=[sha(data)])
    assert push(client, worker, o)[0]["verdict"] == "waiting"
    store_photo(system, store, data)
    [v] = push(client, worker, o)   # the device retries before anyone called release_waiting
    assert (v["verdict"], v["result"]["linked"]) == ("applied", [sha(data)])
    assert push(client, worker, o)[0]["original"] == "applied"


def test_clock_skew_is_flagged_and_stored_never_refused(client, system, store, worker):  # noqa: F811
    number = east_order(system)
    now = system.clock()
    fine = op("comment", now, {"work_order": number, "text": "on time"})
    ahead = op("comment", now + timedelta(hours=3), {"work_order": number, "text": "clock 3 h fast"})
    [v] = push(client, worker, fine, sent_at=now.isoformat())
    assert (v["verdict"], v["skew_flagged"]) == ("applied", False)
    [w] = push(client, worker, ahead, sent_at=(now + timedelta(hours=3)).isoformat())
    assert (w["verdict"], w["skew_flagged"], round(w["skew_seconds"])) == ("applied", True, 3 * 3600)
    [row] = rows(system, SyncOp, SyncOp.op_id == ahead["op_id"])
    assert row.skew_flagged and round(row.skew_seconds) == 10800 and row.device_time > row.server_time
    # an op made offline an hour ago and sent by a correct clock is not a skew
    old = op("comment", now - timedelta(hours=1), {"work_order": number, "text": "written offline"})
    assert push(client, worker, old, sent_at=now.isoformat())[0]["skew_flagged"] is False


def test_check_in_for_a_supervisors_shift_and_after_the_grace_period(client, system, store, tokens, clock):  # noqa: F811
    sup = bearer(tokens["supervisor"])
    shift = attendance.plan_shift(system, "crew-e1", clock() + timedelta(minutes=30))
    seen = clock()
    ok = op("check_in", seen, {"shift_id": shift.id, "badge_id": "B0003", "seen_at": seen.isoformat(),
                               "verified": True})
    stranger = op("check_in", seen, {"shift_id": shift.id + 99, "badge_id": "B0003", "seen_at": seen.isoformat(),
                                     "verified": True})
    assert [v["verdict"] for v in push(client, sup, ok, stranger)] == ["applied", "invalid"]
    [att] = rows(system, Attendance, Attendance.shift_id == shift.id, Attendance.cleaner_id == "cl003")
    assert (att.status, att.source) == ("present", "manual"), "a sync check-in has no frame: the supervisor's word"
    clock.advance(hours=2)
    sup = bearer(token_for(system, "super1", "supervisor"))  # the first token has expired meanwhile
    late = op("check_in", clock(), {"shift_id": shift.id, "badge_id": "B0004", "seen_at": clock().isoformat(),
                                    "verified": True})
    [v] = push(client, sup, late)
    assert (v["verdict"], v["reason"]) == ("conflict", "shift_closed")
    [v] = push(client, bearer(token_for(system, "deliverer1", "deliverer")), {**ok, "op_id": op("x", seen)["op_id"]})
    assert (v["verdict"], v["code"]) == ("invalid", 403)


def test_a_sync_check_in_has_the_batch_routes_rules(client, system, store, tokens, clock):  # noqa: F811
    """The op goes through the same check-in service as the batch route: a badge the shift
    does not count is applied with a note (nothing written), no better than an earlier
    check-in changes nothing, and a time outside the check-in window is invalid."""
    sup = bearer(tokens["supervisor"])
    shift = attendance.plan_shift(system, "crew-e1", clock() + timedelta(minutes=30))
    seen = clock()

    def check(badge, at, verified=True):
        return op("check_in", seen, {"shift_id": shift.id, "badge_id": badge, "seen_at": at.isoformat(),
                                     "verified": verified})

    v = push(client, sup, check("B0005", seen), check("B9999", seen), check("B0005", seen, verified=False),
             check("B0006", seen - timedelta(hours=3)))
    assert [x["verdict"] for x in v] == ["applied", "applied", "applied", "invalid"]
    assert v[0]["result"]["status"] == "present" and "ignored" not in v[0]["result"]
    assert v[1]["result"]["ignored"] == "unknown badge"
    assert "already checked in as present" in v[2]["result"]["ignored"]
    assert list(v[3]["errors"]) == ["payload.seen_at"] and "outside" in v[3]["errors"]["payload.seen_at"]
    found = {a.cleaner_id: (a.status, a.source) for a in rows(system, Attendance, Attendance.shift_id == shift.id)}
    assert found["cl005"] == ("present", "manual") and found["cl006"] == ("expected", None)


def test_comments_are_scoped_to_the_workers_unit(client, system, store, worker):  # noqa: F811
    from engine.domain import workorders
    from tests.district import DISPATCHER
    west = workorders.report(system, DISPATCHER, source="citizen", category="exposed_garbage", area="huaqiao").number
    west_unit = rows(system, WorkOrder, WorkOrder.number == west)[0].unit_code
    assert west_unit == "clean-west"
    [v] = push(client, worker, op("comment", system.clock(), {"work_order": west, "text": "hello"}))
    assert (v["verdict"], v["code"], list(v["errors"])) == ("invalid", 404, ["payload.work_order"])
    assert rows(system, Comment) == []


def test_concurrent_copies_of_one_op_apply_once(system, store):  # noqa: F811
    """Ten threads push the same op at once straight into the server logic (real database):
    the sync_op key lets exactly one apply; the others are duplicates."""
    from engine.domain.models import Staff
    number = east_order(system)
    with system.transaction() as s:
        if s.get(Staff, WORKER) is None:
            s.add(Staff(id=WORKER, name=WORKER, role="unit_worker", unit_code="clean-east"))
    task = rectify_task(system, number)
    o = decode_op(complete_op(system, task, {"action": "not_ours", "reason": "roads, not us"}))
    who = ops.Pusher(WORKER, "unit_worker", "clean-east", "tablet-1")
    gate, out = threading.Barrier(10), []

    def go():
        gate.wait()
        out.append(ops.push_one(system, who, o))

    threads = [threading.Thread(target=go) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(v.verdict for v in out) == ["applied"] + ["duplicate"] * 9
    assert {v.original for v in out if v.verdict == "duplicate"} == {"applied"}
    assert completions(system, number) == 1
    assert len(rows(system, SyncOp)) == 1 and rows(system, SyncConflict) == []


def test_a_batch_pushed_before_its_photos_is_acknowledged_waiting_then_each_op_applies_with_its_photo(
        client, system, store, worker):  # noqa: F811
    """Ops first, photos after (what the client does): the batch's new ops that miss photos
    are recorded 'waiting' together, in order with the others' verdicts; each applies when
    its own photo arrives, and pushing again gives the final verdicts."""
    numbers = [east_order(system) for _ in range(3)]
    tasks = [rectify_task(system, n) for n in numbers]
    pics = [photo(40 + i) for i in range(3)]
    ops_ = [complete_op(system, t, {"action": "fixed", "after_photos": [sha(p)]}) for t, p in zip(tasks, pics)]
    bad = complete_op(system, tasks[0], {"action": "fixed"}) | {"task_id": None}
    verdicts = push(client, worker, ops_[0], bad, ops_[1], ops_[2])
    assert [v["op_id"] for v in verdicts] == [ops_[0]["op_id"], bad["op_id"], ops_[1]["op_id"], ops_[2]["op_id"]]
    assert [v["verdict"] for v in verdicts] == ["waiting", "invalid", "waiting", "waiting"]
    assert [v["result"]["missing"] for v in verdicts if v["verdict"] == "waiting"] == [[sha(p)] for p in pics]
    assert len(rows(system, SyncOpWait)) == 3
    store_photo(system, store, pics[1])
    assert ops.release_waiting(system, sha(pics[1]), exists=store.exists) == 1
    assert [rows(system, WorkOrder, WorkOrder.number == n)[0].state for n in numbers] == \
        ["at_unit", "in_review", "at_unit"]
    for p in (pics[0], pics[2]):
        store_photo(system, store, p)
        assert ops.release_waiting(system, sha(p), exists=store.exists) == 1
    again = push(client, worker, *ops_)
    assert [(v["verdict"], v["original"]) for v in again] == [("duplicate", "applied")] * 3
    assert rows(system, SyncOpWait) == []
    assert [completions(system, n) for n in numbers] == [1, 1, 1]


def test_the_same_batch_pushed_twice_at_once_records_each_waiting_op_once(system, store):  # noqa: F811
    """Two copies of a batch race: one records its ops 'waiting' together, the other's
    transaction collides on the op keys and each of its ops then finds the stored record."""
    from engine.domain.models import Staff
    with system.transaction() as s:
        if s.get(Staff, WORKER) is None:
            s.add(Staff(id=WORKER, name=WORKER, role="unit_worker", unit_code="clean-east"))
    numbers = [east_order(system) for _ in range(4)]
    body = [complete_op(system, rectify_task(system, n), {"action": "fixed", "after_photos": [sha(photo(60 + i))]})
            for i, n in enumerate(numbers)]
    the_batch = PushBatch(protocol=1, ops=[decode_op(o) for o in body])
    who = ops.Pusher(WORKER, "unit_worker", "clean-east", "tablet-1")
    gate, out = threading.Barrier(2), []

    def go():
        gate.wait()
        out.append(ops.push(system, who, the_batch, exists=store.exists))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 2
    for verdicts in out:
        assert [v.op_id for v in verdicts] == [o["op_id"] for o in body]
        assert {v.verdict for v in verdicts} == {"waiting"}
    assert len(rows(system, SyncOp)) == 4 and len(rows(system, SyncOpWait)) == 4


def test_a_waiting_op_whose_photo_came_without_a_release_is_applied_by_the_sweep(client, system, store, worker):  # noqa: F811
    """A photo that lands while its op is being recorded (or whose release a crash cut off)
    leaves the op waiting with nothing to wake it but the device: the scheduler's sweep
    applies it. Ops still missing a photo stay waiting."""
    numbers = [east_order(system) for _ in range(2)]
    pics = [photo(70), photo(71)]
    ops_ = [complete_op(system, rectify_task(system, n), {"action": "fixed", "after_photos": [sha(p)]})
            for n, p in zip(numbers, pics)]
    assert [v["verdict"] for v in push(client, worker, *ops_)] == ["waiting", "waiting"]
    store_photo(system, store, pics[0])          # stored, but nobody called release_waiting
    assert ops.release_stranded(system, exists=store.exists) == 1
    assert ops.release_stranded(system, exists=store.exists) == 0
    assert [r.verdict for r in rows(system, SyncOp, SyncOp.op_id == ops_[0]["op_id"])] == ["applied"]
    assert [r.verdict for r in rows(system, SyncOp, SyncOp.op_id == ops_[1]["op_id"])] == ["waiting"]
    assert [rows(system, WorkOrder, WorkOrder.number == n)[0].state for n in numbers] == ["in_review", "at_unit"]


def test_the_scheduler_sweeps_stranded_ops_against_the_apps_own_store(client, system, store, worker):  # noqa: F811
    """The store here is not the default one under CITYLOOP_DATA: the sweep must look in it."""
    from engine.scheduler import start_scheduler
    number = east_order(system)
    pic = photo(72)
    o = complete_op(system, rectify_task(system, number), {"action": "fixed", "after_photos": [sha(pic)]})
    assert push(client, worker, o)[0]["verdict"] == "waiting"
    store_photo(system, store, pic)              # stored, but nobody called release_waiting
    sched = start_scheduler(system, sweep_seconds=60, calendar_jobs=False, photos_exist=store.exists,
                            stranded_seconds=0.1)
    try:
        deadline = time.monotonic() + 15
        while rows(system, SyncOp, SyncOp.op_id == o["op_id"])[0].verdict == "waiting" and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sched.shutdown()
    assert rows(system, SyncOp, SyncOp.op_id == o["op_id"])[0].verdict == "applied"
