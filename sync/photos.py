"""Photos an outbox op names: read, hashed and (for bytes from the camera) saved on the tablet
before the op is recorded, and the states the app shows while they wait to be uploaded.

Pure client side: no engine imports. `sync.client.Outbox` records each photo's sha256, path,
content type, size and upload state in the same local transaction as its op.

States: pending (to upload) -> uploaded; or missing (the file is gone), changed (its bytes are
no longer the ones attached), refused (the server will not take it: not an image, too large).
missing and changed are checked again at every sync (the file may come back); refused stays
until the app discards the entry."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

__all__ = ["PROBLEMS", "Photo", "PhotoError", "PhotoRecords", "STATES", "describe", "prepare", "prepare_all",
           "read_checked", "sniff", "waiting", "write_atomically"]

STATES = ("pending", "uploaded", "missing", "changed", "refused")
PROBLEMS = ("missing", "changed", "refused")
_EXT = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp"}


class PhotoError(ValueError):
    """A photo that cannot be attached (no such file, not an image): nothing was recorded."""

    def __init__(self, message: str, message_zh: str):
        self.message_zh = message_zh
        super().__init__(message)


@dataclass(frozen=True)
class Photo:
    sha256: str
    path: str
    content_type: str
    size: int


def sniff(head: bytes) -> str | None:
    """The image type by magic number (the types the server accepts), else None."""
    if head[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def write_atomically(path: Path, data: bytes) -> None:
    """Write a file so that a kill leaves the old file or the new one, never half of one: a
    temporary file beside it, fsynced, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save(data: bytes, directory: Path, sha: str, content_type: str) -> Path:
    """Write camera bytes to `<directory>/<sha256>.<ext>`, fsynced, before the op is committed
    (content-addressed: saving the same photo twice is harmless)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{sha}{_EXT.get(content_type, '.img')}"
    if target.exists() and target.stat().st_size == len(data):
        return target
    write_atomically(target, data)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return target


def prepare(source: Any, directory: Path) -> Photo:
    """One photo for an op: a path on the tablet's disk, bytes (saved under `directory`), or a
    (path or bytes, content_type) pair. Raises PhotoError if it cannot be attached."""
    content_type = None
    if isinstance(source, tuple) and len(source) == 2:
        source, content_type = source
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, path = bytes(source), None
    elif isinstance(source, (str, os.PathLike)):
        path = Path(os.fspath(source)).absolute()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise PhotoError(f"the photo {path} cannot be read: {exc.strerror or exc}",
                             f"无法读取照片 {path}") from None
    else:
        raise PhotoError(f"a photo is a file path or bytes, not {type(source).__name__}", "照片须为文件路径或字节")
    if not data:
        raise PhotoError("the photo is empty", "照片为空")
    real = sniff(data[:12])
    if real is None:
        raise PhotoError("the photo is not a JPEG, PNG or WebP image", "照片不是 JPEG、PNG 或 WebP 图片")
    if content_type is not None and content_type != real:
        raise PhotoError(f"the photo is {real}, not {content_type}", f"照片类型为 {real}，而非 {content_type}")
    sha = hashlib.sha256(data).hexdigest()
    if path is None:
        path = _save(data, directory, sha, real)
    return Photo(sha, str(path), real, len(data))


def prepare_all(photos: Iterable | Mapping[str, Iterable] | None, directory: Path) -> tuple[list[Photo], dict]:
    """Photos given as a list (the op's attachments) or as {payload field: [photos]} (form file
    fields such as after_photos, which also become attachments). Returns the photos and the
    payload fields to set to their sha256s."""
    if not photos:
        return [], {}
    fields: dict[str, list[str]] = {}
    out: list[Photo] = []
    groups = photos.items() if isinstance(photos, Mapping) else [(None, photos)]
    for field, items in groups:
        if isinstance(items, (str, bytes, os.PathLike, tuple)):
            items = [items]
        prepared = [prepare(item, directory) for item in items]
        out.extend(prepared)
        if field is not None:
            fields[field] = list(dict.fromkeys(p.sha256 for p in prepared))
    return out, fields


def read_checked(photo: dict) -> tuple[str, bytes | None, str | None]:
    """Read a recorded photo for upload: ('pending', bytes, None) when its file still holds the
    attached bytes, else ('missing' | 'changed', None, the reason)."""
    try:
        data = Path(photo["path"]).read_bytes()
    except FileNotFoundError:
        return "missing", None, "no such file"
    except OSError as exc:
        return "missing", None, str(exc.strerror or exc)
    if hashlib.sha256(data).hexdigest() != photo["sha256"]:
        return "changed", None, f"the file now holds other bytes ({len(data)} bytes)"
    return "pending", data, None


def describe(photo: dict) -> dict:
    """A photo row as the app shows it, with a message in English and Chinese for a problem."""
    state, path, error = photo["state"], photo["path"], photo.get("error")
    name = Path(path).name
    messages = {
        "missing": (f"the photo {name} is no longer on this tablet ({path}); put it back or take it again",
                    f"照片 {name} 已不在本机（{path}）；请恢复文件或重新拍摄"),
        "changed": (f"the photo {name} was changed after it was attached; put the original back or take it again",
                    f"照片 {name} 在添加后被修改；请恢复原文件或重新拍摄"),
        "refused": (f"the server refused the photo {name}: {error}", f"服务器拒收照片 {name}：{error}"),
        "pending": ((f"the photo {name} is not uploaded yet: {error}; it will be tried again",
                     f"照片 {name} 尚未上传：{error}；将自动重试") if error else
                    (f"the photo {name} waits to be uploaded", f"照片 {name} 等待上传")),
        "uploaded": (f"the photo {name} is uploaded", f"照片 {name} 已上传"),
    }
    message, message_zh = messages.get(state, (state, state))
    return {**photo, "message": message, "message_zh": message_zh}


def waiting(verdict: dict) -> bool:
    """Not settled yet: 'waiting', or a duplicate of an op that is still waiting."""
    v = verdict.get("verdict")
    return v == "waiting" or (v == "duplicate" and verdict.get("original") == "waiting")


class PhotoRecords:
    """The photo half of sync.client.Outbox (tables photo and op_photo, created with the rest
    of its schema); needs the outbox's `db`, `_lock`, `_tx` and `clock`."""

    _PHOTO = "p.sha256, p.path, p.content_type, p.size, p.state, p.error, p.attempts"

    def _photo_rows(self, where: str, args: tuple) -> list[dict]:
        keys = ("sha256", "path", "content_type", "size", "state", "error", "attempts")
        with self._lock:
            rows = self.db.execute(f"SELECT DISTINCT {self._PHOTO} FROM photo p JOIN op_photo l ON l.sha256 = p.sha256 "
                                   f"JOIN op o ON o.op_id = l.op_id WHERE {where} ORDER BY o.seq, l.rowid",
                                   args).fetchall()
        return [dict(zip(keys, r)) for r in rows]

    def photos(self, op_id: str) -> list[dict]:
        """An op's photos with their upload state and a message (en/zh) for the app."""
        return [describe(p) for p in self._photo_rows("l.op_id = ?", (op_id,))]

    def photo_problems(self) -> list[dict]:
        """Unsettled ops held back by a photo (missing, changed, refused) or whose upload did not
        finish yet: [{op_id, kind, photos: [photo with message, message_zh]}], oldest first."""
        out: dict[str, dict] = {}
        with self._lock:
            rows = self.db.execute(
                f"SELECT o.op_id, o.body, {self._PHOTO} FROM op o JOIN op_photo l ON l.op_id = o.op_id "
                "JOIN photo p ON p.sha256 = l.sha256 WHERE o.state IN ('pending', 'waiting') "
                "AND (p.state != 'pending' OR p.error IS NOT NULL) AND p.state != 'uploaded' ORDER BY o.seq").fetchall()
        keys = ("sha256", "path", "content_type", "size", "state", "error", "attempts")
        for op_id, body, *photo in rows:
            entry = out.setdefault(op_id, {"op_id": op_id, "kind": json.loads(body)["kind"], "photos": []})
            entry["photos"].append(describe(dict(zip(keys, photo))))
        return list(out.values())

    def photos_to_upload(self, op_ids: Iterable[str]) -> list[dict]:
        """Photos these ops need that are not uploaded (refused ones excluded), in op order."""
        ids = list(op_ids)
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        return self._photo_rows(f"l.op_id IN ({marks}) AND p.state IN ('pending', 'missing', 'changed')", tuple(ids))

    def held_back(self, until_uploaded: bool = False) -> set[str]:
        """Unsettled ops not to send: those with a photo problem (missing, changed, refused);
        with until_uploaded, every one with a photo not uploaded yet."""
        blocking = "p.state != 'uploaded'" if until_uploaded else "p.state IN ('missing', 'changed', 'refused')"
        with self._lock:
            return {r[0] for r in self.db.execute(
                "SELECT DISTINCT l.op_id FROM op_photo l JOIN photo p ON p.sha256 = l.sha256 "
                f"JOIN op o ON o.op_id = l.op_id WHERE o.state IN ('pending', 'waiting') AND {blocking}")}

    def mark_photo(self, sha256: str, state: str, error: str | None = None) -> None:
        if state not in STATES:
            raise ValueError(state)
        with self._tx() as db:
            db.execute("UPDATE photo SET state = ?, error = ?, attempts = attempts + 1, updated_at = ? "
                       "WHERE sha256 = ?", (state, error and error[:500], self.clock().isoformat(), sha256))

    def photos_lost(self, verdicts: list[dict]) -> list[str]:
        """'waiting' verdicts name photos the server does not hold. Those we recorded as uploaded
        go back to pending (the server lost them, or never kept them). Returns the op_ids that
        wait for a photo we can send again."""
        again = []
        now = self.clock().isoformat()
        with self._tx() as db:
            for v in verdicts:
                missing = (v.get("result") or {}).get("missing") or []
                if not waiting(v) or not v.get("op_id") or not missing:
                    continue
                marks = ",".join("?" * len(missing))
                ours = db.execute(f"SELECT sha256 FROM op_photo WHERE op_id = ? AND sha256 IN ({marks})",
                                  (v["op_id"], *missing)).fetchall()
                for (sha,) in ours:
                    db.execute("UPDATE photo SET state = 'pending', error = NULL, updated_at = ? "
                               "WHERE sha256 = ? AND state = 'uploaded'", (now, sha))
                if ours:
                    again.append(v["op_id"])
        return again

    def prune_photos(self) -> int:
        """Delete the files this outbox saved itself (camera bytes, under `photo_dir`) once they
        are uploaded and every op naming them is settled; files the app owns are never touched.
        Returns how many were deleted."""
        with self._lock:
            rows = self.db.execute(
                "SELECT p.path FROM photo p WHERE p.state = 'uploaded' AND NOT EXISTS (SELECT 1 FROM op_photo l "
                "JOIN op o ON o.op_id = l.op_id WHERE l.sha256 = p.sha256 AND o.state != 'done')").fetchall()
        gone, own = 0, Path(self.photo_dir).absolute()
        for (path,) in rows:
            file = Path(path)
            if file.parent == own and file.exists():
                file.unlink(missing_ok=True)
                gone += 1
        return gone

    def discard(self, op_id: str) -> bool:
        """Drop an op the server never saw (e.g. held back by a lost photo), with its photo links.
        False if it was ever pushed (its verdict is on the way) or is not here."""
        with self._tx() as db:
            done = db.execute("DELETE FROM op WHERE op_id = ? AND attempts = 0 AND state = 'pending'", (op_id,))
            if done.rowcount:
                db.execute("DELETE FROM op_photo WHERE op_id = ?", (op_id,))
                db.execute("DELETE FROM photo WHERE state != 'uploaded' AND sha256 NOT IN "
                           "(SELECT sha256 FROM op_photo)")
            return bool(done.rowcount)
