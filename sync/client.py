"""The field client: a local outbox and the push/pull loop, over HTTP only.

`Outbox` is a SQLite file (WAL, synchronous=FULL). `Outbox.add` returns only after the op's
row is committed and on disk: that is the moment an entry may be shown to the user as saved
("confirmed"), and from then on a crash, a kill -9 or a flat battery cannot lose it. The op
stays in the outbox until the server gives it a final verdict; it is sent again (same op_id,
same body) as often as needed, which the server answers as a duplicate once applied.

`SyncClient` pushes the outbox and pulls changes, retrying transport errors and 5xx/429
with exponential backoff and jitter. The pull cursor is stored in the same local transaction
as the tasks the answer carried, so a crash mid-pull repeats the pull instead of skipping
it. No engine imports: the Kivy app and the tests use this as a device would.

Photos: an op may be added with photo files (paths, or camera bytes that are saved under the
outbox's photo directory first); each photo's sha256, path, type and upload state are recorded
in the op's own transaction, and the op's `attachments` are those sha256s. Ops go first: the
server answers an op whose photos it lacks 'waiting' (kept, applied when they arrive); then
the client uploads the photos (resumably, from the server's offset) and sends the waiting ops
again for their final verdicts. An op whose photo file is gone or changed is not sent but
kept, with a state the app can show (`Outbox.photo_problems()`), and tried again at the next
sync.

    box = Outbox("outbox.db")
    op_id = box.add("complete_task", {"action": "fixed"}, task_id=t["id"], based_on_version=t["version"],
                    photos={"after_photos": ["/sdcard/DCIM/1.jpg", camera_bytes]})
    with SyncClient("http://server:8000", token, box, device="tablet-7", on_progress=bar.update) as c:
        c.sync()
"""
from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import httpx

from sync import photos as ph
from sync.protocol import PROTOCOL_VERSION
from sync.uploads_client import UploadFailed, upload

__all__ = ["Outbox", "PULLED", "RETRY_STATUS", "SyncClient", "SyncError", "is_final", "outcome"]

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
PULLED = ("crews", "households", "reference")   # pulled data sent whole, only when changed (Outbox.value)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS op (seq INTEGER PRIMARY KEY AUTOINCREMENT, op_id TEXT NOT NULL UNIQUE, body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending', verdict TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ix_op_state ON op (state, seq);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS task (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS removed (task_id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS photo (sha256 TEXT PRIMARY KEY, path TEXT NOT NULL, content_type TEXT NOT NULL,
    size INTEGER NOT NULL, state TEXT NOT NULL DEFAULT 'pending', error TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS op_photo (op_id TEXT NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY (op_id, sha256));
CREATE INDEX IF NOT EXISTS ix_op_photo_sha ON op_photo (sha256);
"""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def outcome(verdict: dict) -> str:
    """What became of the op: the verdict, or for a duplicate the original's ('applied' when an
    op sent again is found applied, e.g. one that waited for its photos)."""
    v = verdict.get("verdict")
    return verdict.get("original") or v if v == "duplicate" else v


def is_final(verdict: dict) -> bool:
    """Settled for good: anything but 'waiting' (or a duplicate of a waiting op)."""
    v = verdict.get("verdict")
    return v != "waiting" and not (v == "duplicate" and verdict.get("original") == "waiting")


class SyncError(Exception):
    """The server refused a request (a 4xx), or kept failing after every retry."""

    def __init__(self, message: str, status: int | None = None, body: Any = None):
        self.status, self.body = status, body
        super().__init__(message)


class Outbox(ph.PhotoRecords):
    def __init__(self, path: str, clock: Callable[[], datetime] = _now, photo_dir: str | None = None):
        self.path, self.clock = str(path), clock
        self.photo_dir = Path(photo_dir) if photo_dir else Path(self.path).absolute().parent / (Path(self.path).name
                                                                                               + ".photos")
        self._lock = threading.RLock()
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")   # a commit is on disk before add() returns
        self.db.execute("PRAGMA busy_timeout=30000")
        for statement in filter(str.strip, _SCHEMA.split(";")):
            self.db.execute(statement)

    def _tx(self):
        box = self

        class _Tx:
            def __enter__(self):
                box._lock.acquire()
                box.db.execute("BEGIN IMMEDIATE")
                return box.db

            def __exit__(self, exc_type, *_):
                try:
                    box.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
                finally:
                    box._lock.release()
        return _Tx()

    # ---- writing ops ---------------------------------------------------------------------
    def add(self, kind: str, payload: dict | None = None, *, task_id: str | None = None,
            based_on_version: int | None = None, attachments: Iterable[str] = (), gps: dict | None = None,
            device_time: datetime | None = None, op_id: str | None = None,
            photos: Iterable | Mapping[str, Iterable] | None = None) -> str:
        """Record an op durably; returns its op_id once committed (then tell the user 'saved').

        `photos`: a list of photos (file paths, bytes, or (either, content_type)) that become
        the op's attachments, or {payload field: [photos]} to also set form file fields such as
        after_photos to their sha256s (an inspect_household op's form fields are in its payload's
        "data"). Raises sync.photos.PhotoError (nothing recorded) for a photo that cannot be read
        or is not an image."""
        shots, fields = ph.prepare_all(photos, self.photo_dir)
        body = dict(payload or {})
        if kind == "inspect_household" and fields:
            body["data"] = {**(body.get("data") or {}), **fields}
        else:
            body.update(fields)
        op = {"op_id": op_id or str(uuid.uuid4()), "kind": kind, "task_id": task_id,
              "based_on_version": based_on_version, "payload": body,
              "device_time": (device_time or self.clock()).isoformat(), "gps": gps,
              "attachments": list(dict.fromkeys([*attachments, *(p.sha256 for p in shots)]))}
        now = self.clock().isoformat()
        with self._tx() as db:
            db.execute("INSERT INTO op (op_id, body, created_at, updated_at) VALUES (?, ?, ?, ?)",
                       (op["op_id"], json.dumps(op, ensure_ascii=False), now, now))
            for p in shots:   # a photo seen before keeps its upload; a troubled one takes the new file
                db.execute("INSERT INTO photo (sha256, path, content_type, size, updated_at) VALUES (?, ?, ?, ?, ?) "
                           "ON CONFLICT (sha256) DO UPDATE SET path = excluded.path, updated_at = excluded.updated_at, "
                           "state = 'pending', error = NULL WHERE state != 'uploaded'",
                           (p.sha256, p.path, p.content_type, p.size, now))
                db.execute("INSERT OR IGNORE INTO op_photo (op_id, sha256) VALUES (?, ?)", (op["op_id"], p.sha256))
        return op["op_id"]

    def unsettled(self, limit: int = 1_000_000) -> list[dict]:
        """Ops without a final verdict, oldest first."""
        with self._lock:
            rows = self.db.execute("SELECT body FROM op WHERE state IN ('pending', 'waiting') ORDER BY seq LIMIT ?",
                                   (limit,)).fetchall()
        return [json.loads(b) for (b,) in rows]

    def settle(self, verdicts: list[dict]) -> None:
        now = self.clock().isoformat()
        with self._tx() as db:
            for v in verdicts:
                if not v.get("op_id"):
                    continue
                state = "done" if is_final(v) else "waiting"
                db.execute("UPDATE op SET state = ?, verdict = ?, attempts = attempts + 1, updated_at = ? "
                           "WHERE op_id = ? AND state != 'done'", (state, json.dumps(v, ensure_ascii=False), now,
                                                                  v["op_id"]))

    def op(self, op_id: str) -> dict | None:
        with self._lock:
            row = self.db.execute("SELECT body, state, verdict, attempts FROM op WHERE op_id = ?", (op_id,)).fetchone()
        if row is None:
            return None
        return {"op": json.loads(row[0]), "state": row[1], "verdict": json.loads(row[2]) if row[2] else None,
                "attempts": row[3], "photos": self.photos(op_id)}

    def refused(self, since_seq: int = 0, limit: int = 1000) -> list[dict]:
        """Ops the server settled without applying them (conflict, invalid, mismatch), oldest
        first: [{seq, op, verdict, outcome}]. The server keeps conflicts for a supervisor; the
        app shows each with what happened and what to do."""
        with self._lock:   # applied ones (most of a shift) are left out by SQLite, not parsed here
            rows = self.db.execute(
                "SELECT seq, body, verdict FROM op WHERE state = 'done' AND seq > ? AND coalesce("
                "json_extract(verdict, '$.original'), json_extract(verdict, '$.verdict')) IS NOT 'applied' "
                "ORDER BY seq", (since_seq,)).fetchall()
        out = []
        for seq, body, verdict in rows:
            v = json.loads(verdict) if verdict else {}
            what = outcome(v)
            if what not in ("applied", None):
                out.append({"seq": seq, "op": json.loads(body), "verdict": v, "outcome": what})
                if len(out) >= limit:
                    break
        return out

    def op_ids(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self.db.execute("SELECT op_id FROM op ORDER BY seq")]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.db.execute("SELECT state, count(*) FROM op GROUP BY state").fetchall())

    # ---- pulled state ----------------------------------------------------------------------
    def cursor(self) -> str | None:
        with self._lock:
            row = self.db.execute("SELECT value FROM kv WHERE key = 'cursor'").fetchone()
        return row[0] if row else None

    def apply_pull(self, answer: dict) -> None:
        """Tasks, removals, crews, households, reference data and the new cursor: all or nothing."""
        with self._tx() as db:
            if answer.get("reset"):
                db.execute("DELETE FROM task")
            for t in answer.get("tasks", []):
                db.execute("INSERT OR REPLACE INTO task (id, body) VALUES (?, ?)", (t["id"], json.dumps(t)))
                db.execute("DELETE FROM removed WHERE task_id = ?", (t["id"],))
            for r in answer.get("removed", []):
                db.execute("DELETE FROM task WHERE id = ?", (r["task_id"],))
                db.execute("INSERT OR REPLACE INTO removed (task_id, body) VALUES (?, ?)",
                           (r["task_id"], json.dumps(r)))
            for key in PULLED:
                if answer.get(key) is not None:
                    db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, json.dumps(answer[key])))
            db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES ('cursor', ?)", (answer["cursor"],))

    def tasks(self) -> list[dict]:
        with self._lock:
            return [json.loads(b) for (b,) in self.db.execute("SELECT body FROM task ORDER BY id")]

    def removed(self) -> dict[str, dict]:
        with self._lock:
            return {t: json.loads(b) for t, b in self.db.execute("SELECT task_id, body FROM removed")}

    def value(self, key: str) -> Any:
        """Pulled data kept as a whole: 'crews', 'households' or 'reference' (None until first
        pulled)."""
        if key not in PULLED:
            raise KeyError(key)
        with self._lock:
            row = self.db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def close(self) -> None:
        with self._lock:
            self.db.close()


class SyncClient:
    def __init__(self, base_url: str | None, token: str, outbox: Outbox, device: str | None = None, *,
                 http: httpx.Client | None = None, timeout: float = 30.0, retries: int = 6, backoff: float = 0.2,
                 max_backoff: float = 10.0, batch_size: int = 100, page_size: int = 100,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], datetime] = _now,
                 on_progress: Callable[[int, int], None] | None = None, upload_attempts: int = 8):
        self.outbox, self.device = outbox, device
        self.http = http or httpx.Client(base_url=base_url, timeout=timeout)
        self._owns_http = http is None
        self.headers = {"Authorization": f"Bearer {token}"}
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        self.batch_size, self.page_size, self.sleep, self.clock = batch_size, page_size, sleep, clock
        self.attempts = 0   # requests sent, retries included (for tests and the status screen)
        self.on_progress, self.upload_attempts = on_progress, upload_attempts
        self.last_uploads: dict = {"uploaded": [], "problems": [], "failed": None}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def _post(self, path: str, body: dict) -> dict:
        """POST with retries: the same body each time, so a retried push is idempotent."""
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                self.sleep(delay * (0.5 + random.random() / 2))
            self.attempts += 1
            try:
                r = self.http.post(path, json=body, headers=self.headers)
            except httpx.TransportError as exc:
                last = exc
                continue
            if r.status_code in RETRY_STATUS:
                last = SyncError(f"{path}: server answered {r.status_code}", r.status_code, r.text[:500])
                continue
            try:
                data = r.json()
            except ValueError:
                raise SyncError(f"{path}: not JSON ({r.status_code})", r.status_code, r.text[:500]) from None
            if r.status_code >= 400:
                raise SyncError(f"{path}: {data.get('message', r.status_code)}", r.status_code, data)
            return data
        raise SyncError(f"{path}: gave up after {self.retries + 1} attempts: {last}") from last

    def upload_photos(self, op_ids: Iterable[str], on_progress: Callable[[int, int], None] | None = None) -> dict:
        """Upload the photos these ops need, resuming from the server's offset, and mark each
        uploaded locally. A file gone or changed is marked (missing / changed) and the others go
        on; a refusal retrying cannot fix (not an image, too large) marks it refused; a transport
        failure that outlasts the retries stops the round (the next sync tries again).
        `on_progress(sent, total)` counts the bytes of this round's photos. Returns
        {uploaded: [sha256], problems: [photo with message], failed: message or None}."""
        todo = self.outbox.photos_to_upload(op_ids)
        total, done, shown = sum(p["size"] for p in todo), 0, -1
        report: dict = {"uploaded": [], "problems": [], "failed": None}
        progress = on_progress or self.on_progress

        def show(sent: int) -> None:
            nonlocal shown
            if progress is not None and sent > shown:   # never backwards, even when a resume re-sends
                shown = sent
                progress(sent, total)

        show(0)
        for photo in todo:
            state, data, why = ph.read_checked(photo)
            if data is None:
                self.outbox.mark_photo(photo["sha256"], state, why)
                report["problems"].append(ph.describe({**photo, "state": state, "error": why}))
                total -= photo["size"]
                continue
            try:
                upload(self.http, data, photo["content_type"], headers=self.headers, attempts=self.upload_attempts,
                       backoff=self.backoff, on_progress=lambda offset, size, base=done: show(base + offset))
            except UploadFailed as exc:
                if exc.status in (401, 403):
                    raise SyncError(f"photo upload refused: {exc}", exc.status) from exc
                if exc.status is None or exc.status in RETRY_STATUS or exc.status in (404, 409):
                    self.outbox.mark_photo(photo["sha256"], "pending", str(exc))
                    report["failed"] = str(exc)
                    break   # the server is unreachable or struggling: the next sync goes on from here
                self.outbox.mark_photo(photo["sha256"], "refused", str(exc))
                report["problems"].append(ph.describe({**photo, "state": "refused", "error": str(exc)}))
                total -= photo["size"]
                continue
            self.outbox.mark_photo(photo["sha256"], "uploaded")
            report["uploaded"].append(photo["sha256"])
            done += photo["size"]
            show(done)
        self.last_uploads = report
        return report

    def push(self, on_progress: Callable[[int, int], None] | None = None) -> list[dict]:
        """Ops first, photos after: send every unsettled op (in batches) whose photo files are
        still the attached ones; the server keeps an op whose photos it lacks as 'waiting' and
        applies it when they arrive, so the work is acknowledged at once even on a connection
        that drops before the photos are through. Then upload the photos those ops need, and
        send the ops still waiting again to collect their final verdicts. Returns the verdicts."""
        ids = [o["op_id"] for o in self.outbox.unsettled()]
        problems = self.check_photos(ids)
        verdicts = self._push_ready(ids)
        self.outbox.photos_lost(verdicts)   # ones we recorded as uploaded that the server lacks
        uploads = self.upload_photos([o["op_id"] for o in self.outbox.unsettled()], on_progress)
        uploads["problems"] = problems + uploads["problems"]
        self.last_uploads = uploads
        if uploads["uploaded"]:
            later = {v["op_id"]: v for v in self._push_ready(ids, uploaded_only=True)}
            verdicts = [later.pop(v.get("op_id"), v) for v in verdicts] + list(later.values())
        self.outbox.prune_photos()
        return verdicts

    def check_photos(self, op_ids: Iterable[str]) -> list[dict]:
        """Before ops are sent: mark photos whose file is gone or changed (their ops are held
        back, so the server is never left waiting for a photo this tablet no longer has) and
        clear a mark whose file came back. Returns the problems, as the app shows them."""
        problems = []
        for photo in self.outbox.photos_to_upload(op_ids):
            state, _, why = ph.read_checked(photo)
            if state != photo["state"] or (state != "pending" and why != photo["error"]):
                self.outbox.mark_photo(photo["sha256"], state, why if state != "pending" else photo["error"])
            if state != "pending":
                problems.append(ph.describe({**photo, "state": state, "error": why}))
        return problems

    def _push_ready(self, op_ids: Iterable[str], uploaded_only: bool = False) -> list[dict]:
        """Send these ops, except those held back by a photo problem (and with uploaded_only,
        those with a photo not uploaded yet)."""
        wanted, held = set(op_ids), self.outbox.held_back(until_uploaded=uploaded_only)
        todo = [o for o in self.outbox.unsettled() if o["op_id"] in wanted and o["op_id"] not in held]
        verdicts: list[dict] = []
        for i in range(0, len(todo), self.batch_size):
            batch = todo[i:i + self.batch_size]
            answer = self._post("/sync/v1/push", {"protocol": PROTOCOL_VERSION, "device": self.device,
                                                  "sent_at": self.clock().isoformat(), "ops": batch})
            self.outbox.settle(answer["verdicts"])
            verdicts.extend(answer["verdicts"])
        return verdicts

    def pull(self, max_pages: int = 1000) -> dict:
        """Pull until has_more is false. Returns what changed: counts of tasks and removals."""
        summary = {"tasks": 0, "removed": 0, "pages": 0, "reset": False}
        for _ in range(max_pages):
            answer = self._post("/sync/v1/pull", {"protocol": PROTOCOL_VERSION, "cursor": self.outbox.cursor(),
                                                  "device": self.device, "page_size": self.page_size})
            self.outbox.apply_pull(answer)
            summary["tasks"] += len(answer["tasks"])
            summary["removed"] += len(answer["removed"])
            summary["pages"] += 1
            summary["reset"] = summary["reset"] or bool(answer["reset"])
            if not answer["has_more"]:
                break
        return summary

    def sync(self, on_progress: Callable[[int, int], None] | None = None) -> dict:
        """Upload photos and push first (so the pull reflects our work), then pull. `photos`
        tells what was uploaded, what holds ops back (with messages) and a failure that ended
        the uploads early."""
        verdicts = self.push(on_progress)
        return {"verdicts": verdicts, "pull": self.pull(),
                "photos": {**self.last_uploads, "held_back": self.outbox.photo_problems()}}

    def run(self, stop: threading.Event, interval: float = 30.0, on_error: Callable[[Exception], None] | None = None):
        """Sync every `interval` seconds until `stop` is set; errors are reported, not fatal."""
        while not stop.is_set():
            try:
                self.sync()
            except (SyncError, httpx.HTTPError, OSError) as exc:
                if on_error is not None:
                    on_error(exc)
            stop.wait(interval)
