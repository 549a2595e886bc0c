"""The sync client uploads the photos its ops name, against a real server process (uvicorn on
the test database, real HTTP): a completion with two photos applied end to end, a connection
cut in the middle of a photo resumed from the server's offset, a photo file gone from the
tablet kept as a state the app shows, and an op the server answers 'waiting' sent again
after its photo is uploaded again."""
from __future__ import annotations

import hashlib
import os

import pytest
from sqlmodel import select

from engine.domain.models import WorkOrder
from engine.domain.records import Attachment, Comment, WorkOrderAttachment
from sync.client import Outbox, SyncClient, outcome
from sync.photos import PhotoError
from sync.server.models import SyncOp
from tests.sync.servers import CuttingProxy, ServerProcess
from tests.sync.syncing import WORKER, east_order, paired_tablet, rectify_task, sha


def jpeg(n: int, seed: int) -> bytes:
    body = hashlib.sha256(f"tablet photo {seed}".encode()).digest() * (n // 32 + 1)
    return (b"\xff\xd8\xff\xe0" + body)[:n]


def rows(system, model, *where):
    with system.transaction(write=False) as s:
        return s.exec(select(model).where(*where)).all()


@pytest.fixture
def field(system, tmp_path, db_url):
    """The seeded district, a tablet paired to a clean-east worker, and the real server."""
    token = paired_tablet(system, "tablet 9")
    server = ServerProcess(db_url, tmp_path / "server").start()
    yield server, token
    server.stop()
    assert "Traceback" not in server.log_tail(100_000), server.log_tail()


def linked(system, number: str) -> dict[str, str]:
    [order] = rows(system, WorkOrder, WorkOrder.number == number)
    return {a.sha256: a.kind for a in rows(system, WorkOrderAttachment, WorkOrderAttachment.work_order_id == order.id)}


@pytest.mark.slow
def test_a_completion_with_two_photos_is_applied_end_to_end(field, system, tmp_path):
    server, token = field
    number = east_order(system)
    task = rectify_task(system, number)
    on_disk, from_camera = jpeg(300_000, 1), jpeg(50_000, 2)
    (tmp_path / "dcim").mkdir()
    (tmp_path / "dcim" / "IMG_0001.jpg").write_bytes(on_disk)
    (tmp_path / "tablet").mkdir()
    box = Outbox(tmp_path / "tablet" / "outbox.db")
    op_id = box.add("complete_task", {"action": "fixed", "note": "bins emptied / 已清理"}, task_id=task["id"],
                    based_on_version=task["version"],
                    photos={"after_photos": [tmp_path / "dcim" / "IMG_0001.jpg", from_camera]})
    saved = box.op(op_id)
    assert saved["op"]["attachments"] == saved["op"]["payload"]["after_photos"] == [sha(on_disk), sha(from_camera)]
    assert [(p["sha256"], p["state"]) for p in saved["photos"]] == [(sha(on_disk), "pending"),
                                                                    (sha(from_camera), "pending")]
    camera_file = next(p["path"] for p in saved["photos"] if p["sha256"] == sha(from_camera))
    assert open(camera_file, "rb").read() == from_camera          # camera bytes were saved before the op
    box.close()                                                    # the app is closed (or killed) here ...
    box = Outbox(tmp_path / "tablet" / "outbox.db")                # ... and the link to the photos survived
    progress: list[tuple[int, int]] = []
    with SyncClient(server.base_url, token, box, device="tablet-9", backoff=0.05,
                    on_progress=lambda sent, total: progress.append((sent, total))) as c:
        result = c.sync()
        [v] = result["verdicts"]
        assert (v["op_id"], outcome(v)) == (op_id, "applied"), v   # (waited for its photos, then applied)
        assert sorted(result["photos"]["uploaded"]) == sorted([sha(on_disk), sha(from_camera)])
        assert result["photos"]["held_back"] == [] and result["photos"]["failed"] is None
        assert progress[0] == (0, 350_000) and progress[-1] == (350_000, 350_000)
        assert [s for s, _ in progress] == sorted({s for s, _ in progress})   # only forwards
        assert c.push() == [] and box.unsettled() == []
    assert box.op(op_id)["state"] == "done"
    assert [p["state"] for p in box.photos(op_id)] == ["uploaded", "uploaded"]
    # the copy the outbox saved is deleted once settled; the gallery's own file is left alone
    assert not os.path.exists(camera_file) and (tmp_path / "dcim" / "IMG_0001.jpg").exists()
    assert linked(system, number) == {sha(on_disk): "after", sha(from_camera): "after"}
    assert rows(system, WorkOrder, WorkOrder.number == number)[0].state == "in_review"
    stored = {a.sha256: (a.size, a.created_by) for a in rows(system, Attachment)}
    assert stored == {sha(on_disk): (300_000, WORKER), sha(from_camera): (50_000, WORKER)}
    blob = server.data_dir / "attachments" / sha(on_disk)[:2] / sha(on_disk)[2:4] / sha(on_disk)
    assert blob.read_bytes() == on_disk


@pytest.mark.slow
def test_a_connection_cut_mid_photo_resumes_from_the_servers_offset(field, system, tmp_path):
    server, token = field
    number = east_order(system)
    task = rectify_task(system, number)
    small, big = jpeg(200_000, 3), jpeg(3 * 1024 * 1024, 4)
    proxy = CuttingProxy(server.port, after=1_800_000)   # the line drops inside the big photo's 2nd chunk
    box = Outbox(tmp_path / "outbox.db")
    op_id = box.add("complete_task", {"action": "fixed"}, task_id=task["id"], based_on_version=task["version"],
                    photos={"after_photos": [small, big]})
    progress: list[int] = []
    try:
        with SyncClient(proxy.base_url, token, box, device="tablet-9", backoff=0.05) as c:
            [v] = c.push(on_progress=lambda sent, total: progress.append(sent))
    finally:
        proxy.close()
    assert proxy.cut == 1
    assert (v["op_id"], outcome(v)) == (op_id, "applied"), v
    total = len(small) + len(big)
    # only what the server had not kept went again: a restart from zero would re-send > 1.6 MB
    assert total < proxy.bytes_up < total + 1_000_000, proxy.bytes_up
    assert progress[-1] == total and progress == sorted(progress)
    assert linked(system, number) == {sha(small): "after", sha(big): "after"}
    assert {a.sha256: a.size for a in rows(system, Attachment)} == {sha(small): len(small), sha(big): len(big)}
    assert not any(p.suffix == ".part" for p in (server.data_dir / "uploads").rglob("*"))


@pytest.mark.slow
def test_a_photo_gone_from_the_tablet_keeps_its_op_with_a_clear_state(field, system, tmp_path):
    server, token = field
    number = east_order(system)
    task = rectify_task(system, number)
    picture = jpeg(80_000, 5)
    path = tmp_path / "IMG_0002.jpg"
    path.write_bytes(picture)
    box = Outbox(tmp_path / "outbox.db")
    held = box.add("complete_task", {"action": "fixed"}, task_id=task["id"], based_on_version=task["version"],
                   photos={"after_photos": [path]})
    note = box.add("comment", {"work_order": number, "text": "on my way / 正在处理"})
    path.unlink()                                             # cleaned up by the gallery app before the sync
    with SyncClient(server.base_url, token, box, device="tablet-9", backoff=0.05) as c:
        result = c.sync()
        assert [(v["op_id"], v["verdict"]) for v in result["verdicts"]] == [(note, "applied")]
        [problem] = result["photos"]["held_back"]
        assert (problem["op_id"], problem["kind"]) == (held, "complete_task")
        [photo] = problem["photos"]
        assert (photo["sha256"], photo["state"]) == (sha(picture), "missing")
        assert "IMG_0002.jpg" in photo["message"] and "no longer on this tablet" in photo["message"]
        assert "已不在本机" in photo["message_zh"]
        assert box.photo_problems() == result["photos"]["held_back"]
        assert box.op(held)["state"] == "pending" and [o["op_id"] for o in box.unsettled()] == [held]
        assert rows(system, SyncOp, SyncOp.op_id == held) == []     # the server never saw the held op
        assert [c.text for c in rows(system, Comment)] == ["on my way / 正在处理"]
        # other bytes under the same name are not the photo that was attached
        path.write_bytes(jpeg(80_000, 6))
        assert c.push() == []
        assert box.photo_problems()[0]["photos"][0]["state"] == "changed"
        # the original is back (restored from the SD card): the next sync sends it and the op
        path.write_bytes(picture)
        [v] = c.push()
    assert (v["op_id"], outcome(v)) == (held, "applied")
    assert box.photo_problems() == [] and box.op(held)["state"] == "done"
    assert linked(system, number) == {sha(picture): "after"}


@pytest.mark.slow
def test_an_op_the_server_answers_waiting_is_sent_again_after_its_photo(field, system, tmp_path):
    """The tablet believes the photo is uploaded but the server does not hold it (restored from
    a backup): the push is answered 'waiting', the photo goes again and the op is settled."""
    server, token = field
    number = east_order(system)
    picture = jpeg(120_000, 7)
    box = Outbox(tmp_path / "outbox.db")
    op_id = box.add("attach", {"work_order": number, "kind": "evidence"}, photos=[picture])
    box.mark_photo(sha(picture), "uploaded")
    with SyncClient(server.base_url, token, box, device="tablet-9", backoff=0.05) as c:
        [v] = c.push()
        assert c.last_uploads["uploaded"] == [sha(picture)]
    assert v["op_id"] == op_id and (v["verdict"], v.get("original")) in {("applied", None), ("duplicate", "applied")}
    assert box.op(op_id)["state"] == "done"
    [row] = rows(system, SyncOp, SyncOp.op_id == op_id)
    assert row.verdict == "applied"
    assert linked(system, number) == {sha(picture): "evidence"}


def test_a_photo_that_cannot_be_attached_records_nothing(tmp_path):
    box = Outbox(tmp_path / "outbox.db")
    with pytest.raises(PhotoError, match="cannot be read") as exc:
        box.add("attach", {"work_order": "WO-1"}, photos=[tmp_path / "nope.jpg"])
    assert "无法读取" in exc.value.message_zh
    (tmp_path / "notes.txt").write_bytes(b"not a photo at all")
    with pytest.raises(PhotoError, match="not a JPEG, PNG or WebP"):
        box.add("attach", {"work_order": "WO-1"}, photos=[tmp_path / "notes.txt"])
    with pytest.raises(PhotoError, match="not image/png"):
        box.add("attach", {"work_order": "WO-1"}, photos=[(jpeg(100, 8), "image/png")])
    assert box.op_ids() == [] and box.db.execute("SELECT count(*) FROM photo").fetchone() == (0,)
    # the same photo in two ops is one photo to upload
    first = box.add("attach", {"work_order": "WO-1"}, photos=[jpeg(1000, 9)])
    second = box.add("comment", {"work_order": "WO-1", "text": "see photo"}, photos=[jpeg(1000, 9)])
    assert len(box.photos_to_upload([first, second])) == 1 and box.discard(second) is True
    assert box.photos(first)[0]["sha256"] == sha(jpeg(1000, 9)) and box.op_ids() == [first]


@pytest.mark.slow
def test_ops_go_before_their_photos_so_a_sync_cut_during_the_upload_still_leaves_the_work_on_the_server(
        field, system, tmp_path):
    """The signal goes after the small push but before the 400 KB photo is through: the
    completion is already on the server, kept 'waiting', and applies on the next sync."""
    server, token = field
    number = east_order(system)
    task = rectify_task(system, number)
    picture = jpeg(400_000, 7)
    box = Outbox(tmp_path / "outbox.db")
    op_id = box.add("complete_task", {"action": "fixed"}, task_id=task["id"], based_on_version=task["version"],
                    photos={"after_photos": [picture]})
    proxy = CuttingProxy(server.port, after=30_000, cuts=1000)   # every connection dies after 30 KB
    try:
        with SyncClient(proxy.base_url, token, box, device="tablet-9", backoff=0.01, upload_attempts=2) as c:
            [v] = c.push()
            assert c.last_uploads["failed"] and c.last_uploads["uploaded"] == []
    finally:
        proxy.close()
    assert (v["op_id"], v["verdict"], v["result"]["missing"]) == (op_id, "waiting", [sha(picture)])
    assert [r.verdict for r in rows(system, SyncOp, SyncOp.op_id == op_id)] == ["waiting"]   # kept by the server
    assert box.op(op_id)["state"] == "waiting"
    assert rows(system, WorkOrder, WorkOrder.number == number)[0].state == "at_unit"
    with SyncClient(server.base_url, token, box, device="tablet-9", backoff=0.05) as c:
        [v] = c.push()
    assert (v["op_id"], outcome(v)) == (op_id, "applied")
    assert rows(system, WorkOrder, WorkOrder.number == number)[0].state == "in_review"
    assert box.op(op_id)["state"] == "done"
