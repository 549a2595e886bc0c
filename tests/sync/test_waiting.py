"""GET /sync/v1/waiting: the ops the server holds for photos that have not come, for the
people who follow them up, in their scope; over the in-process app."""
from __future__ import annotations

import pytest

from engine.storage import AttachmentStore
from sync.server import ops
from tests.api.conftest import app, bearer, client, token_for, tokens  # noqa: F401  (fixtures)
from tests.sync.syncing import PUSH, WORKER, batch, complete_op, east_order, photo, rectify_task, sha, store_photo

WAITING = "/sync/v1/waiting"


@pytest.fixture
def store(app, tmp_path):  # noqa: F811
    store = app.state.attachments = AttachmentStore(tmp_path / "attachments")
    return store


def test_a_waiting_op_is_listed_in_scope_until_its_photo_arrives(client, system, store, tokens):  # noqa: F811
    task = rectify_task(system, east_order(system))
    data = photo(7)
    o = complete_op(system, task, {"action": "fixed", "after_photos": [sha(data)]})
    r = client.post(PUSH, headers=bearer(tokens["unit_worker"]), json=batch(o))
    assert r.json()["verdicts"][0]["verdict"] == "waiting"

    leader = bearer(tokens["unit_leader"])          # clean-east, as the worker
    [item] = client.get(WAITING, headers=leader).json()["items"]
    assert (item["op_id"], item["actor"], item["kind"], item["task_id"], item["missing"]) == (
        o["op_id"], WORKER, "complete_task", task["id"], [sha(data)])
    assert item["waiting_minutes"] == 0
    assert client.get(WAITING, headers=leader, params={"older_than_minutes": 30}).json()["items"] == []
    system.clock.advance(minutes=45)                # (access tokens are short-lived: new ones from here)
    leader = bearer(token_for(system, "leader.clean-east", "unit_leader", "clean-east"))
    [late] = client.get(WAITING, headers=leader, params={"older_than_minutes": 30}).json()["items"]
    assert late["op_id"] == o["op_id"] and late["waiting_minutes"] == 45

    dispatcher = bearer(token_for(system, "dispatcher1", "dispatcher"))
    assert client.get(WAITING, headers=dispatcher).json()["items"][0]["op_id"] == o["op_id"]
    west = bearer(token_for(system, "leader.clean-west", "unit_leader", "clean-west"))
    assert client.get(WAITING, headers=west).json()["items"] == []
    assert client.get(WAITING, headers=bearer(token_for(system, "super1", "supervisor"))).json()["items"] == []
    worker = bearer(token_for(system, WORKER, "unit_worker", "clean-east"))
    assert client.get(WAITING, headers=worker).status_code == 403

    store_photo(system, store, data)
    assert ops.release_waiting(system, sha(data), exists=store.exists) == 1
    assert client.get(WAITING, headers=leader).json()["items"] == []


def test_pages_and_bad_parameters(client, system, store, tokens):  # noqa: F811
    worker, admin = bearer(tokens["unit_worker"]), bearer(tokens["admin"])
    pushed = []
    for i in range(3):
        task = rectify_task(system, east_order(system))
        o = complete_op(system, task, {"action": "fixed", "after_photos": [sha(photo(100 + i))]})
        assert client.post(PUSH, headers=worker, json=batch(o)).json()["verdicts"][0]["verdict"] == "waiting"
        pushed.append(o["op_id"])
        system.clock.advance(minutes=1)
    first = client.get(WAITING, headers=admin, params={"limit": 2}).json()
    rest = client.get(WAITING, headers=admin, params={"limit": 2, "offset": 2}).json()
    assert [i["op_id"] for i in first["items"] + rest["items"]] == pushed      # oldest first
    assert (first["has_more"], rest["has_more"]) == (True, False)
    for bad in ({"older_than_minutes": -1}, {"limit": 0}, {"limit": "many"}):
        r = client.get(WAITING, headers=admin, params=bad)
        assert r.status_code == 422, (bad, r.text)
