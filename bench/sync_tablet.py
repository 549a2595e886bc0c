"""One simulated tablet of bench.sync_push: what sync.client.SyncClient does when a tablet
gets signal back, over one keep-alive http.client connection (about 0.5 ms of client CPU per
request; httpx cost 1-2 ms, taken from the server's two cores): push the ops first (the server
acknowledges those whose photos it lacks as 'waiting', durably), upload one photo per op,
then push the ops again to collect their final verdicts."""
from __future__ import annotations

import hashlib
import http.client
import json
import time
import uuid
from datetime import datetime, timezone


class Conn(http.client.HTTPConnection):
    """One tablet's keep-alive connection (http.client: a fraction of httpx's CPU per request,
    see bench.http_client), counting every byte it puts on the wire: request line, headers, body."""

    def __init__(self, port: int):
        super().__init__("127.0.0.1", port, timeout=300)
        self.sent = 0

    def send(self, data) -> None:
        self.sent += len(data)
        super().send(data)

    def call(self, method: str, path: str, body: bytes, headers: dict, out: dict) -> tuple[int, dict, bytes]:
        """(status, headers, body); a request cut by a transport error is sent again on a new
        connection (every request here is idempotent)."""
        for attempt in range(5):
            try:
                self.request(method, path, body=body, headers=headers)
                r = self.getresponse()
                return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
            except (OSError, http.client.HTTPException):
                out["retries"] += 1
                self.close()
                if attempt == 4:
                    raise
                time.sleep(0.2 * 2 ** attempt)
        raise AssertionError("unreachable")


def upload(conn: Conn, auth: str, data: bytes, out: dict) -> str | None:
    """As sync.uploads_client.upload does it: a photo this small in one PATCH that creates the
    upload; after a failure, ask the offset (POST) and send the rest."""
    sha = hashlib.sha256(data).hexdigest()
    path = f"/sync/v1/attachments/{sha}"
    status, _, body = conn.call("PATCH", path, data, {"Authorization": auth, "Upload-Offset": "0",
                                                      "Upload-Length": str(len(data)), "Upload-Type": "image/jpeg"},
                                out)
    for _ in range(5):
        if status == 200 and json.loads(body)["complete"]:
            return sha
        status, _, body = conn.call("POST", "/sync/v1/attachments", json.dumps(
            {"sha256": sha, "size": len(data), "content_type": "image/jpeg"}).encode(),
            {"Authorization": auth, "Content-Type": "application/json"}, out)
        if status not in (200, 201):
            break
        state = json.loads(body)
        if state["complete"]:
            return sha
        status, _, body = conn.call("PATCH", path, data[state["offset"]:],
                                    {"Authorization": auth, "Upload-Offset": str(state["offset"])}, out)
    out["errors"].append(f"upload {status}: {body[:120]!r}")
    return None


def _push(conn: Conn, auth: str, ops: list[dict], out: dict, kind: str) -> list[dict] | None:
    body = json.dumps({"protocol": 1, "sent_at": datetime.now(timezone.utc).isoformat(), "ops": ops}).encode()
    t0 = time.perf_counter()
    status, _, reply = conn.call("POST", "/sync/v1/push", body, {"Authorization": auth,
                                                                  "Content-Type": "application/json"}, out)
    out["batch"].append(time.perf_counter() - t0)
    out[kind].append(time.perf_counter() - t0)
    if status != 200:
        out["errors"].append(f"push {status}: {reply[:120]!r}")
        return None
    return json.loads(reply)["verdicts"]


def sync_device(port: int, token: str, tasks: list[tuple[str, int]], photo_bytes: int, base: bytes,
                out: dict) -> None:
    """What a tablet does when it gets signal back (as sync.client.SyncClient.push): push its
    ops (one batch), upload their photos, push the ops still waiting again for their verdicts."""
    conn, auth = Conn(port), f"Bearer {token}"
    s0 = time.perf_counter()
    try:
        ops, photos = [], []
        for task_id, version in tasks:
            data = b"\xff\xd8\xff\xe0" + uuid.uuid4().bytes + base[:photo_bytes - 20]   # a distinct photo each
            sha = hashlib.sha256(data).hexdigest()
            photos.append(data)
            ops.append({"op_id": str(uuid.uuid4()), "kind": "complete_task", "task_id": task_id,
                        "based_on_version": version, "payload": {"action": "fixed", "after_photos": [sha]},
                        "device_time": datetime.now(timezone.utc).isoformat(), "attachments": [sha],
                        "gps": {"lat": 31.2, "lon": 121.4, "accuracy": 8}})
        verdicts = _push(conn, auth, ops, out, "ack")
        if verdicts is None:
            return
        waiting = {v["op_id"] for v in verdicts if v["verdict"] == "waiting"}
        for data in photos:
            u0 = time.perf_counter()
            if upload(conn, auth, data, out) is not None:
                out["upload"].append(time.perf_counter() - u0)
        if waiting:
            final = {v["op_id"]: v for v in _push(conn, auth, [o for o in ops if o["op_id"] in waiting], out,
                                                  "final") or []}
            verdicts = [final.get(v["op_id"], v) for v in verdicts]
        out["device"].append(time.perf_counter() - s0)
        for v in verdicts:
            key = v["verdict"] if v["verdict"] != "duplicate" else f"duplicate of {v.get('original')}"
            with out["lock"]:
                out["verdicts"][key] = out["verdicts"].get(key, 0) + 1
    except Exception as exc:  # noqa: BLE001 - counted and shown, the run goes on
        out["errors"].append(f"{exc.__class__.__name__}: {exc}")
    finally:
        conn.close()
        with out["lock"]:
            out["bytes"] += conn.sent
