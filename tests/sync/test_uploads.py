"""Resumable photo uploads over HTTP: /sync/v1/attachments (in-process app and a real uvicorn
server with a connection cut in the middle of a body)."""
from __future__ import annotations

import hashlib
import os
import socket
import time

import httpx
import pytest
from sqlmodel import select

from engine.auth import service
from engine.domain.records import Attachment
from engine.storage import AttachmentStore
from sync.server.uploads import Uploads
from sync.uploads_client import UploadFailed, upload
from tests.api.conftest import app, bearer, client, tokens  # noqa: F401  (fixtures)
from tests.sync.servers import ServerProcess
from tests.waiting import wait_until

URL = "/sync/v1/attachments"


def jpeg(n: int, seed: int = 0) -> bytes:
    """n bytes that sniff as a JPEG (the store checks magic bytes, not the whole format)."""
    body = hashlib.sha256(str(seed).encode()).digest() * (n // 32 + 1)
    return (b"\xff\xd8\xff\xe0" + body)[:n]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def area(app, tmp_path):  # noqa: F811
    store = app.state.attachments = AttachmentStore(tmp_path / "attachments")
    app.state.uploads = Uploads(tmp_path / "uploads", store, max_chunk=64 * 1024, max_partial=3)
    return app.state.uploads


@pytest.fixture
def worker(tokens):  # noqa: F811
    return bearer(tokens["unit_worker"])


def start(client, headers, data, content_type="image/jpeg", size=None):  # noqa: F811
    return client.post(URL, headers=headers, json={"sha256": sha(data), "size": len(data) if size is None else size,
                                                   "content_type": content_type})


def patch(client, headers, data, offset, body=None):  # noqa: F811
    return client.patch(f"{URL}/{sha(data)}", headers={**headers, "Upload-Offset": str(offset)},
                        content=data[offset:] if body is None else body)


def parts(area) -> list[str]:
    return sorted(p.name for p in area.root.rglob("*") if p.suffix in (".part", ".json"))


def stored_rows(system, digest):
    with system.transaction(write=False) as s:
        return s.exec(select(Attachment).where(Attachment.sha256 == digest)).all()


def test_full_upload_in_chunks_is_verified_and_stored(client, area, worker, system):  # noqa: F811
    data = jpeg(150_000)
    r = start(client, worker, data)
    assert r.status_code == 201, r.text
    assert r.json()["offset"] == 0 and not r.json()["complete"] and r.headers["upload-offset"] == "0"
    assert r.json()["max_chunk"] == 64 * 1024
    offset = 0
    while True:
        r = client.patch(f"{URL}/{sha(data)}", headers={**worker, "Upload-Offset": str(offset)},
                         content=data[offset:offset + 64 * 1024])
        assert r.status_code == 200, r.text
        offset = r.json()["offset"]
        head = client.get(f"{URL}/{sha(data)}", headers=worker)
        assert head.status_code == 200 and int(head.headers["upload-offset"]) == offset
        if r.json()["complete"]:
            break
    assert offset == len(data)
    rows = stored_rows(system, sha(data))
    assert [(a.size, a.content_type, a.created_by) for a in rows] == [(len(data), "image/jpeg", "worker.clean-east.1")]
    with area.store.open(sha(data)) as f:
        assert f.read() == data
    assert parts(area) == []                       # the part and its sidecar are gone
    again = start(client, worker, data)            # the same announcement: complete at once
    assert again.status_code == 200 and again.json()["complete"] and again.json()["offset"] == len(data)
    assert client.get(f"{URL}/{sha(data)}", headers=worker).json()["complete"] is True


def test_re_post_is_idempotent_and_reports_the_offset(client, area, worker):  # noqa: F811
    data = jpeg(100_000, seed=1)
    assert start(client, worker, data).status_code == 201
    assert patch(client, worker, data, 0, data[:40_000]).json()["offset"] == 40_000
    again = start(client, worker, data)
    assert again.status_code == 200 and again.json()["offset"] == 40_000 and not again.json()["complete"]
    other_size = start(client, worker, data, size=len(data) + 1)
    assert other_size.status_code == 409 and other_size.json()["error"] == "upload_mismatch"
    assert len(parts(area)) == 2                   # still one upload (part + sidecar)


def test_wrong_offset_is_409_with_the_right_one_and_changes_nothing(client, area, worker):  # noqa: F811
    data = jpeg(50_000, seed=2)
    start(client, worker, data)
    patch(client, worker, data, 0, data[:10_000])
    for wrong in (0, 5_000, 20_000):
        r = patch(client, worker, data, wrong, data[wrong:wrong + 1000])
        assert r.status_code == 409, r.text
        assert r.json()["error"] == "offset_mismatch" and r.json()["errors"]["offset"] == 10_000
        assert r.headers["upload-offset"] == "10000"
    assert client.get(f"{URL}/{sha(data)}", headers=worker).json()["offset"] == 10_000
    missing = client.patch(f"{URL}/{sha(data)}", headers=worker, content=b"x")
    assert missing.status_code == 400 and missing.json()["error"] == "bad_offset"


def test_wrong_hash_is_422_and_the_part_is_discarded(client, area, worker, system):  # noqa: F811
    data = jpeg(30_000, seed=3)
    start(client, worker, data)
    damaged = data[:-1] + bytes([data[-1] ^ 1])
    r = patch(client, worker, data, 0, damaged)
    assert r.status_code == 422 and r.json()["error"] == "hash_mismatch", r.text
    assert parts(area) == [] and stored_rows(system, sha(data)) == []
    assert client.get(f"{URL}/{sha(data)}", headers=worker).status_code == 404
    assert not area.store.exists(sha(damaged)) and not area.store.exists(sha(data))


def test_oversize_is_refused_before_and_while_sending(client, area, worker):  # noqa: F811
    too_big = start(client, worker, jpeg(1000), size=area.max_size + 1)
    assert too_big.status_code == 413 and too_big.json()["error"] == "too_large"
    data = jpeg(20_000, seed=4)
    start(client, worker, data)
    patch(client, worker, data, 0, data[:5_000])
    r = patch(client, worker, data, 5_000, data[5_000:] + b"extra bytes")   # more than declared
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    assert client.get(f"{URL}/{sha(data)}", headers=worker).json()["offset"] == 5_000   # the chunk was undone
    big = jpeg(200_000, seed=5)
    start(client, worker, big)
    r = patch(client, worker, big, 0, big[:64 * 1024 + 1])                  # over max_chunk
    assert r.status_code == 413
    assert client.get(f"{URL}/{sha(big)}", headers=worker).json()["offset"] == 0


def test_unsupported_types_are_415(client, area, worker, system):  # noqa: F811
    text = b"just some text, not a photo at all" * 10
    r = start(client, worker, text, content_type="text/plain")
    assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type"
    r = start(client, worker, text, content_type="image/jpeg")                # declared an image ...
    assert r.status_code == 201
    r = patch(client, worker, text, 0)                                        # ... but is not one
    assert r.status_code == 415 and "not a JPEG, PNG or WebP" in r.json()["message"]
    assert parts(area) == []                                                  # discarded at once
    png_declared = jpeg(10_000, seed=6)
    start(client, worker, png_declared, content_type="image/png")
    r = patch(client, worker, png_declared, 0)
    assert r.status_code == 415 and "image/png" in r.json()["message"]
    assert stored_rows(system, sha(png_declared)) == [] and parts(area) == []


def test_uploads_are_scoped_per_owner(client, area, worker, tokens):  # noqa: F811
    other = bearer(tokens["deliverer"])
    data = jpeg(40_000, seed=7)
    start(client, worker, data)
    patch(client, worker, data, 0, data[:10_000])
    assert client.get(f"{URL}/{sha(data)}", headers=other).status_code == 404
    assert patch(client, other, data, 10_000, data[10_000:]).status_code == 404
    mine = start(client, other, data)                                         # their own, from zero
    assert mine.status_code == 201 and mine.json()["offset"] == 0
    assert patch(client, worker, data, 10_000).json()["complete"] is True     # the first owner finishes
    done = start(client, other, data)                                         # stored: complete for all
    assert done.status_code == 200 and done.json()["complete"]
    assert parts(area) == []
    assert client.post(URL, headers=bearer(tokens["dispatcher"]),
                       json={"sha256": sha(data), "size": 1, "content_type": "image/jpeg"}).status_code == 403


def test_a_device_may_hold_only_so_many_unfinished_uploads(client, area, system, app):  # noqa: F811
    with system.transaction() as s:
        device, code = service.create_device(s, "tablet 7", "tablet", "deliverer1", "admin1", system.clock())
    with system.transaction() as s:
        tablet = bearer(service.pair(s, device.id, code, system.clock()))
    photos = [jpeg(1000, seed=10 + i) for i in range(4)]
    assert [start(client, tablet, p).status_code for p in photos] == [201, 201, 201, 429]
    assert start(client, tablet, photos[3]).headers["retry-after"] == "2"
    assert client.delete(f"{URL}/{sha(photos[0])}", headers=tablet).status_code == 204
    assert client.delete(f"{URL}/{sha(photos[0])}", headers=tablet).status_code == 404
    assert start(client, tablet, photos[3]).status_code == 201


def test_stale_uploads_are_swept_and_a_lost_sidecar_is_recovered(client, area, worker):  # noqa: F811
    old, kept = jpeg(20_000, seed=14), jpeg(20_000, seed=15)
    start(client, worker, old)
    patch(client, worker, old, 0, old[:5_000])
    start(client, worker, kept)
    patch(client, worker, kept, 0, kept[:7_000])
    long_ago = time.time() - area.ttl.total_seconds() - 60
    for p in area.root.rglob(f"{sha(old)}.*"):
        os.utime(p, (long_ago, long_ago))
    (next(area.root.rglob(f"{sha(kept)}.json"))).unlink()          # as if a power cut lost the sidecar
    assert client.get(f"{URL}/{sha(kept)}", headers=worker).status_code == 404
    again = start(client, worker, kept)                              # the device announces it again ...
    assert again.status_code == 201 and again.json()["offset"] == 7_000   # ... and the bytes were kept
    assert client.get(f"{URL}/{sha(old)}", headers=worker).status_code == 404   # swept by that creation
    assert not list(area.root.rglob(f"{sha(old)}.*"))
    assert patch(client, worker, kept, 7_000).json()["complete"] is True


def test_malformed_requests_are_4xx(client, area, worker):  # noqa: F811
    for body in ({}, {"sha256": "AB" * 32, "size": 1, "content_type": "image/jpeg"},
                 {"sha256": "ab" * 32, "size": 0, "content_type": "image/jpeg"},
                 {"sha256": "ab" * 32, "size": "x", "content_type": "image/jpeg"}):
        assert client.post(URL, headers=worker, json=body).status_code == 422
    assert client.get(f"{URL}/not-a-hash", headers=worker).status_code == 422
    assert client.patch(f"{URL}/{'ab' * 32}", headers={**worker, "Upload-Offset": "-1"},
                        content=b"x").status_code == 400
    assert client.patch(f"{URL}/{'ab' * 32}", headers={**worker, "Upload-Offset": "0"}, content=b"x").status_code == 404
    one_shot = {**worker, "Upload-Offset": "0", "Upload-Length": "10"}
    assert client.patch(f"{URL}/{'ab' * 32}", headers={**one_shot, "Upload-Type": "text/plain"},
                        content=b"0123456789").status_code == 415
    assert client.patch(f"{URL}/{'ab' * 32}", headers={**one_shot, "Upload-Offset": "5", "Upload-Type": "image/png"},
                        content=b"56789").status_code == 404       # creating starts at offset 0 only
    assert client.patch(f"{URL}/{'ab' * 32}", headers={**one_shot, "Upload-Type": "image/png"},
                        content=b"0123456789").status_code == 415  # created, then its bytes are not a PNG
    assert parts(area) == []


def test_client_helper_uploads_and_is_idempotent(client, area, worker, system):  # noqa: F811
    data = jpeg(200_000, seed=8)
    client.headers.update(worker)
    requests = []
    client.event_hooks["request"].append(lambda r: requests.append((r.method, len(r.content))))
    seen = []
    assert upload(client, data, "image/jpeg", chunk_size=64 * 1024,
                  on_progress=lambda o, n: seen.append(o)) == sha(data)
    assert seen[-1] == len(data) and len(seen) == 4            # 64 KiB chunks
    assert [m for m, _ in requests] == ["POST"] + ["PATCH"] * 4
    requests.clear()
    assert upload(client, data, "image/jpeg", chunk_size=64 * 1024) == sha(data)
    assert requests == [("POST", requests[0][1])]              # already stored: no byte sent again
    requests.clear()
    small = jpeg(30_000, seed=12)
    assert upload(client, small, "image/jpeg") == sha(small)
    assert requests == [("PATCH", 30_000)]                      # a small photo: one request
    assert [a.size for a in stored_rows(system, sha(small))] == [30_000]
    requests.clear()
    assert upload(client, data, "image/jpeg") == sha(data)     # stored: complete at once (the bytes went, though)
    assert [m for m, _ in requests] == ["PATCH"]
    requests.clear()
    bigger = jpeg(100_000, seed=13)                             # over the server's 64 KiB chunks: refused (413) ...
    assert upload(client, bigger, "image/jpeg") == sha(bigger)
    assert [m for m, _ in requests] == ["PATCH", "POST", "PATCH", "PATCH"]   # ... so it asks and sends 2 chunks
    with pytest.raises(UploadFailed) as exc:
        upload(client, b"GIF89a not allowed here", "image/gif")
    assert exc.value.status == 415
    assert parts(area) == []


# ---- a real server, a real socket cut ----------------------------------------------------------
@pytest.fixture
def tablet_server(system, tmp_path, db_url):
    from tests.district import seed
    seed(system)
    with system.transaction() as s:
        device, code = service.create_device(s, "tablet 1", "tablet", "deliverer1", "admin1", system.clock())
    with system.transaction() as s:
        token = service.pair(s, device.id, code, system.clock())
    server = ServerProcess(db_url, tmp_path / "server").start()
    yield server, token
    server.stop()


def _cut_patch(port: int, token: str, digest: str, offset: int, total: int, sent: bytes) -> None:
    """Send a PATCH announcing `total` body bytes, send only `sent`, then drop the connection."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        head = (f"PATCH {URL}/{digest} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                f"Upload-Offset: {offset}\r\nContent-Type: application/offset+octet-stream\r\n"
                f"Content-Length: {total}\r\n\r\n").encode()
        sock.sendall(head + sent)
        sock.shutdown(socket.SHUT_WR)   # the body ends early: the connection is cut mid-body


def _settled_offset(c: httpx.Client, digest: str, size: int) -> int:
    """The offset once the server has finished with the cut request: bytes of it arrived, and
    the upload is no longer locked by it (a probe PATCH at a wrong offset is told where the
    upload stands, not that it is busy). Not "the offset stopped changing for a while": a
    busy machine can pause longer than any while."""
    def finished() -> int:
        if c.get(f"{URL}/{digest}").json()["offset"] == 0:
            return 0                          # the cut request has not begun writing yet
        probe = c.patch(f"{URL}/{digest}", headers={"Upload-Offset": str(size)}, content=b"")
        assert probe.status_code == 409, probe.text
        if probe.json()["error"] == "upload_busy":
            return 0                          # still writing what it received
        assert probe.json()["error"] == "offset_mismatch", probe.text
        return int(probe.headers["upload-offset"])
    return wait_until(finished, 30, every=0.05, what="the server to finish with the cut request")


@pytest.mark.slow
def test_a_body_cut_mid_way_keeps_what_arrived_and_resumes(tablet_server, system):
    server, token = tablet_server
    data = jpeg(3 * 1024 * 1024, seed=9)
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.base_url, headers=auth, timeout=30) as c:
        assert c.post(URL, json={"sha256": sha(data), "size": len(data),
                                 "content_type": "image/jpeg"}).status_code == 201
        half = 1_300_000
        _cut_patch(server.port, token, sha(data), 0, len(data), data[:half])
        kept = _settled_offset(c, sha(data), len(data))
        # What the server had read before the cut is kept (uvicorn drops what it still buffered).
        assert 0 < kept <= half
        sent = []
        assert upload(c, data, "image/jpeg", on_progress=lambda o, n: sent.append(o)) == sha(data)
    assert sent[0] == kept + 1024 * 1024 and sent[-1] == len(data)       # resumed at the kept offset
    assert [a.size for a in stored_rows(system, sha(data))] == [len(data)]
    blob = server.data_dir / "attachments" / sha(data)[:2] / sha(data)[2:4] / sha(data)
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == sha(data)
    assert not any(p.suffix == ".part" for p in (server.data_dir / "uploads").rglob("*"))
    assert "Traceback" not in server.log_tail(100_000)


def test_completing_an_upload_releases_ops_waiting_for_the_photo(client, area, worker, system):  # noqa: F811
    from engine.domain.models import WorkOrder
    from sync.server.models import SyncOp
    from tests.sync.syncing import complete_op, east_order, rectify_task
    number = east_order(system)
    data = jpeg(120_000, seed=11)
    op = complete_op(system, rectify_task(system, number), {"action": "fixed", "after_photos": [sha(data)]})
    r = client.post("/sync/v1/push", headers=worker, json={"protocol": 1, "ops": [op]})
    assert r.status_code == 200 and r.json()["verdicts"][0]["verdict"] == "waiting", r.text
    start(client, worker, data)
    assert patch(client, worker, data, 0, data[:60_000]).json()["released"] is None   # not complete yet
    done = patch(client, worker, data, 60_000)
    assert done.status_code == 200 and done.json()["complete"] and done.json()["released"] == 1
    with system.transaction(write=False) as s:
        assert s.get(SyncOp, op["op_id"]).verdict == "applied"
        assert s.exec(select(WorkOrder.state).where(WorkOrder.number == number)).one() == "in_review"
    again = start(client, worker, data)                       # announcing it again releases nothing more
    assert again.json()["complete"] and again.json()["released"] == 0


def test_a_completion_whose_row_a_crash_lost_is_finished_by_the_next_upload(client, area, worker, system):  # noqa: F811
    """A completion moves the verified part file into the store, then records the row. Killed
    between the two, the blob is there without its row and the sidecar without its part: the
    tablet's next try is answered from offset 0 and completes (one blob, one row)."""
    data = jpeg(60_000, seed=7)
    assert start(client, worker, data).status_code == 201
    (part,) = [p for p in area.root.rglob("*.part")]
    part.unlink()
    area.store.blobs.write(sha(data), data)            # what the move left before the kill
    assert stored_rows(system, sha(data)) == []
    again = start(client, worker, data)
    assert again.status_code == 200 and again.json()["offset"] == 0 and not again.json()["complete"]
    r = patch(client, worker, data, 0)
    assert r.status_code == 200 and r.json()["complete"], r.text
    assert [a.size for a in stored_rows(system, sha(data))] == [len(data)]
    with area.store.open(sha(data)) as f:
        assert f.read() == data
    assert parts(area) == [] and len(list((area.store.blobs.root).rglob("*"))) == 3   # ab/, ab/cd/, the blob


def test_a_patch_that_goes_silent_keeps_what_arrived_and_answers_its_offset(app, client, area, worker,  # noqa: F811
                                                                            setenv):
    """A tablet whose connection hangs mid-photo (no bytes, no close): after the idle timeout
    the server keeps the bytes it got, fsynced, and the upload resumes from there."""
    import asyncio

    setenv(CITYLOOP_UPLOAD_IDLE_SECONDS="0.3")   # (30 s in service)
    data = jpeg(40_000, 9)

    async def hangs():
        yield data[:10_000]
        await asyncio.Event().wait()          # silent for good: only the idle timeout can end it
        yield data[10_000:]

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            r = await c.post(URL, headers=worker, json={"sha256": sha(data), "size": len(data),
                                                        "content_type": "image/jpeg"})
            assert r.status_code == 201, r.text
            # (the 10 s only bound a failure; the answer comes from the 0.3 s idle timeout)
            return await asyncio.wait_for(c.patch(f"{URL}/{sha(data)}", headers={**worker, "Upload-Offset": "0"},
                                                  content=hangs()), 10)

    r = asyncio.run(scenario())
    assert r.status_code == 200 and r.json()["offset"] == 10_000 and not r.json()["complete"], r.text
    done = patch(client, worker, data, 10_000)
    assert done.status_code == 200 and done.json()["complete"], done.text
