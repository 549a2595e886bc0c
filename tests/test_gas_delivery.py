"""A deliverer inspects a household at a delivery, offline: the tablet's inspect_household op.

The server completes the household's open inspection task of this deliverer, or starts an
inspection (trigger "delivery") and completes its first task, all through one service
(engine.services.gas.inspect_household). Applied once whatever the retries; a severe hazard
answers with the rectification order and suspends supply; another's household is refused;
bad form data is invalid per field; photos are waited for as with complete_task ops. Over the
in-process app, and once end to end: the tablet's outbox against a real server process."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlmodel import func, select

from engine.db.models import Instance
from engine.domain import gas
from engine.domain.models import AddressCode, Household, Inspection, Staff, WorkOrder
from engine.runtime.errors import Actor
from engine.runtime.reassign import reassign
from engine.storage import AttachmentStore
from sync.server import ops
from sync.server.models import SyncConflict, SyncOp
from tests.api.conftest import app, bearer, client, token_for, tokens  # noqa: F401  (fixtures)
from tests.district import DELIVERER, GAS_OFFICE, REVIEWER, only_task
from tests.sync.syncing import PUSH, batch, op, photo, sha, store_photo

GOOD = {"hose_ok": "ok", "valve_leak_test": "pass", "ventilation": "adequate", "co_alarm": "working",
        "cylinder_inspection_date": "2027-05-01", "stove_flameout_protection": "present", "remarks": "all fine"}


@pytest.fixture
def store(app, tmp_path):  # noqa: F811
    store = app.state.attachments = AttachmentStore(tmp_path / "attachments")
    return store


@pytest.fixture
def deliverer(tokens):  # noqa: F811
    return bearer(tokens["deliverer"])


def push(client, headers, *ops_):  # noqa: F811
    r = client.post(PUSH, headers=headers, json=batch(*ops_, device="tab-gas"))
    assert r.status_code == 200, r.text
    return r.json()["verdicts"]


def inspect(system, household_id: int, data: dict, pics: list[str] = (), **fields) -> dict:
    """An inspect_household op as the tablet makes it, an hour ago (offline)."""
    return op("inspect_household", system.clock() - timedelta(hours=1),
              {"household_id": household_id, "data": {**data, "photos": list(pics)}}, attachments=list(pics),
              **fields)


def count(system, model, *where) -> int:
    with system.transaction(write=False) as s:
        return s.exec(select(func.count()).select_from(model).where(*where)).one()


def household(system, hid: int) -> Household:
    with system.transaction(write=False) as s:
        return s.get(Household, hid)


def test_an_offline_inspection_waits_for_its_photo_and_is_applied_once(client, system, store, deliverer):  # noqa: F811
    pic = photo(11)
    o = inspect(system, 1, GOOD, [sha(pic)])
    [v] = push(client, deliverer, o)
    assert (v["verdict"], v["result"]["missing"]) == ("waiting", [sha(pic)])
    assert count(system, Instance, Instance.business_key == "household:1") == 0, "nothing before its photo"
    store_photo(system, store, pic, by="deliverer1")
    assert ops.release_waiting(system, sha(pic), exists=store.exists) == 1
    [d] = push(client, deliverer, o)                     # the tablet sends it again (it never heard)
    assert (d["verdict"], d["original"]) == ("duplicate", "applied")
    r = d["result"]
    assert r["hazard_level"] == "none" and r["rectification_order"] is None and r["started"] is True
    assert r["business_key"] == "household:1" and r["household_id"] == 1
    [again] = push(client, deliverer, o)
    assert again["verdict"] == "duplicate" and again["result"] == r
    assert count(system, Instance, Instance.business_key == "household:1") == 1
    with system.transaction(write=False) as s:
        [insp] = s.exec(select(Inspection).where(Inspection.household_id == 1)).all()
        assert (insp.instance_id, insp.deliverer_id) == (r["instance_id"], "deliverer1")
        assert f'"photos": ["{sha(pic)}"]' in insp.checklist
        assert s.get(Instance, r["instance_id"]).state == "completed"
    assert household(system, 1).last_inspected_at is not None


def test_a_severe_hazard_answers_with_the_rectification_order_and_suspends_supply(
        client, system, store, deliverer):  # noqa: F811
    pic = store_photo(system, store, photo(12), by="deliverer1")
    [v] = push(client, deliverer, inspect(system, 2, {**GOOD, "valve_leak_test": "leak"}, [pic]))
    assert v["verdict"] == "applied", v
    r = v["result"]
    assert r["hazard_level"] == "severe" and "leak" in r["hazard_reason"].lower()
    with system.transaction(write=False) as s:
        order = s.exec(select(WorkOrder).where(WorkOrder.origin == f"gas_inspection:{r['instance_id']}")).one()
    assert r["rectification_order"] == order.number and order.category == "gas_hazard"
    assert household(system, 2).supply_suspended
    # the gas office rectifies (the called rectification process, under the order's number) and a
    # reviewer approves; then the re-inspection is the deliverer's open task
    rectify = only_task(system, GAS_OFFICE, business_key=order.number)
    system.complete(rectify["id"], GAS_OFFICE, {"action": "fixed", "after_photos": [pic]})
    system.complete(only_task(system, REVIEWER, business_key=order.number)["id"], REVIEWER, {"decision": "approve"})
    [again] = push(client, deliverer, inspect(system, 2, GOOD, [pic]))
    assert again["verdict"] == "applied" and again["result"]["instance_id"] == r["instance_id"]
    assert again["result"]["started"] is False and again["result"]["hazard_level"] == "none"
    assert not household(system, 2).supply_suspended
    assert count(system, Instance, Instance.business_key == "household:2") == 1


def test_a_household_with_a_due_list_task_has_that_task_completed(client, system, store, deliverer):  # noqa: F811
    assert gas.start_due_inspections(system) == 3
    [due] = [t for t in system.tasks.for_actor(DELIVERER) if t["business_key"] == "household:3"]
    pic = store_photo(system, store, photo(13), by="deliverer1")
    [v] = push(client, deliverer, inspect(system, 3, {**GOOD, "hose_ok": "aged"}, [pic]))
    assert v["verdict"] == "applied", v
    r = v["result"]
    assert (r["task_id"], r["instance_id"], r["started"]) == (due["id"], due["instance_id"], False)
    assert r["hazard_level"] == "minor" and r["rectification_order"]
    assert count(system, Instance, Instance.business_key == "household:3") == 1, "no second inspection"
    assert not household(system, 3).supply_suspended


def test_another_deliverers_household_and_other_roles_are_refused(client, system, store, deliverer,  # noqa: F811
                                                                  tokens):  # noqa: F811
    with system.transaction() as s:
        s.add(Staff(id="deliverer2", name="Deliverer Two", role="deliverer"))
        s.add(AddressCode(code="DC01-009", street_code="dc-01", label="9 East Road", lat=31.2, lon=121.4))
        s.flush()
        s.add(Household(id=9, address_code="DC01-009", holder="Holder Nine", deliverer_id="deliverer2"))
    pic = store_photo(system, store, photo(14), by="deliverer1")
    [theirs, missing] = push(client, deliverer, inspect(system, 9, GOOD, [pic]), inspect(system, 999, GOOD, [pic]))
    for v in (theirs, missing):
        assert (v["verdict"], v["code"]) == ("invalid", 404), v
        assert "not one of your households" in v["errors"]["payload.household_id"]
        assert "only its own deliverer" in v["message"] and "不属于您" in v["message_zh"]
    assert count(system, Instance, Instance.business_key == "household:9") == 0
    worker = bearer(tokens["unit_worker"])
    [v] = push(client, worker, inspect(system, 1, GOOD, [pic]))
    assert (v["verdict"], v["code"]) == ("invalid", 403) and "may not inspect" in v["message"]
    assert count(system, Instance, Instance.process_key == gas.PROCESS) == 0


def test_bad_form_data_is_invalid_per_field_and_starts_nothing(client, system, store, deliverer):  # noqa: F811
    pic = store_photo(system, store, photo(15), by="deliverer1")
    bad = {**GOOD, "hose_ok": "melted"}
    del bad["valve_leak_test"]
    [v, no_photo, shape] = push(client, deliverer, inspect(system, 1, bad, [pic]), inspect(system, 1, GOOD),
                                op("inspect_household", system.clock(), {"household_id": 1, "form": GOOD}))
    assert (v["verdict"], v["code"]) == ("invalid", 422)
    assert set(v["errors"]) == {"hose_ok", "valve_leak_test"}, v["errors"]
    assert v["message_zh"] == "安检表单有误，请修改后重新提交"
    assert no_photo["verdict"] == "invalid" and "photos" in no_photo["errors"]
    assert shape["verdict"] == "invalid" and {"payload.data", "payload.form"} <= set(shape["errors"])
    assert count(system, Instance, Instance.process_key == gas.PROCESS) == 0, "nothing started for a bad form"
    # the same household's existing task keeps its form rules too, and stays open
    gas.start_inspection(system, 1, "deliverer1", "due_list", DELIVERER)
    [v] = push(client, deliverer, inspect(system, 1, bad, [pic]))
    assert v["verdict"] == "invalid" and "hose_ok" in v["errors"]
    assert len([t for t in system.tasks.for_actor(DELIVERER) if t["business_key"] == "household:1"]) == 1


def test_an_inspection_open_with_someone_else_is_a_conflict_kept(client, system, store, deliverer):  # noqa: F811
    """The re-inspection after a severe hazard is open to the gas office too: once the
    office has claimed it, a deliverer's delivery inspection conflicts and is kept."""
    iid = gas.start_inspection(system, 2, "deliverer1", "delivery", DELIVERER)
    [task] = system.tasks.for_actor(DELIVERER, instance_id=iid)
    system.complete(task["id"], DELIVERER, {**GOOD, "valve_leak_test": "leak", "photos": ["ab" * 32]})
    [reinspect] = [t for t in system.tasks.for_actor(GAS_OFFICE, instance_id=iid)]
    reassign(system, reinspect["id"], "gasoffice1", Actor("admin1", {"admin"}))   # the office took it over
    pic = store_photo(system, store, photo(16), by="deliverer1")
    o = inspect(system, 2, GOOD, [pic])
    [v] = push(client, deliverer, o)
    assert (v["verdict"], v["reason"]) == ("conflict", "inspection_open"), v
    assert "kept for a supervisor" in v["message"] and "他人" in v["message_zh"]
    assert count(system, SyncConflict, SyncConflict.op_id == o["op_id"]) == 1
    assert count(system, Instance, Instance.business_key == "household:2") == 1
    assert count(system, SyncOp, SyncOp.op_id == o["op_id"], SyncOp.verdict == "conflict") == 1


def test_ten_copies_of_one_inspection_at_once_start_one_inspection_and_apply_once(system, store):  # noqa: F811
    # (the store fixture seeds the district through the app)
    """Ten threads push the same op at once straight into the server logic (real database):
    one inspection is started and completed; the other nine hear the stored result."""
    import threading

    from sync.protocol import decode_op
    pic = store_photo(system, store, photo(17), by="deliverer1")
    o = decode_op(inspect(system, 1, GOOD, [pic]))
    who = ops.Pusher("deliverer1", "deliverer", None, "tab-gas")
    gate, out = threading.Barrier(10), []

    def go():
        gate.wait()
        out.append(ops.push_one(system, who, o))

    threads = [threading.Thread(target=go) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(v.verdict for v in out) == ["applied"] + ["duplicate"] * 9, [v.message for v in out]
    assert len({json.dumps(v.result, sort_keys=True) for v in out}) == 1
    assert count(system, Instance, Instance.business_key == "household:1") == 1
    assert count(system, Inspection, Inspection.household_id == 1) == 1
    assert count(system, SyncConflict) == 0


# ---- end to end: the tablet's outbox, offline, then a real server process --------------------------
@pytest.mark.slow
def test_end_to_end_an_offline_delivery_inspection_reaches_the_server_once(system, db_url, tmp_path):
    import httpx

    from engine.auth import service
    from sync.client import Outbox, SyncClient
    from tests.district import seed
    from tests.sync.servers import ServerProcess
    seed(system)
    with system.transaction() as s:
        device, code = service.create_device(s, "gas tablet", "tablet", "deliverer1", "admin1", system.clock())
    with system.transaction() as s:
        token = service.pair(s, device.id, code, system.clock())
    (tmp_path / "tablet").mkdir()
    box = Outbox(tmp_path / "tablet" / "outbox.db")
    # offline: the deliverer inspects household 2 and finds a leak; the app takes the photo
    op_id = box.add("inspect_household", {"household_id": 2, "data": {**GOOD, "valve_leak_test": "leak"}},
                    photos={"photos": [photo(21)]})
    [queued] = box.unsettled()
    assert queued["payload"]["data"]["photos"] == [sha(photo(21))], "the photo's sha256 is in the form's field"
    assert queued["attachments"] == [sha(photo(21))] and set(queued["payload"]) == {"household_id", "data"}
    server = ServerProcess(db_url, tmp_path / "server").start()
    try:
        with SyncClient(server.base_url, token, box, device=device.id) as sync:
            first = sync.sync()
            [v] = [x for x in first["verdicts"] if x["op_id"] == op_id]
            # (pushed, held for its photo, applied when the upload landed; the push after the upload hears so)
            assert (v["verdict"], v.get("original")) in {("applied", None), ("duplicate", "applied")}, v
            assert v["result"]["hazard_level"] == "severe" and v["result"]["rectification_order"]
            assert box.op(op_id)["state"] == "done"
            assert sync.sync()["verdicts"] == [], "nothing left to send"
            assert [h["supply_suspended"] for h in box.value("households") if h["id"] == 2] == [True]
        # the answer was lost on the way: the tablet sends the same op again, and hears the stored result
        r = httpx.post(server.base_url + "/sync/v1/push", headers={"Authorization": f"Bearer {token}"},
                       json={"protocol": 1, "device": device.id, "ops": [queued]}, timeout=30)
        assert r.status_code == 200, r.text
        [again] = r.json()["verdicts"]
        assert (again["verdict"], again["result"]) == ("duplicate", v["result"])
    finally:
        server.stop()
        box.close()
    assert "Traceback" not in server.log_tail(20000), server.log_tail()
    assert count(system, Instance, Instance.business_key == "household:2") == 1
    assert count(system, SyncOp, SyncOp.op_id == op_id, SyncOp.verdict == "applied") == 1
