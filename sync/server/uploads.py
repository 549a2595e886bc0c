"""Resumable photo uploads by sha256 (the server half, plain Python: no HTTP here).

The protocol is tus-like: create an upload {sha256, size, content_type}; append chunks at the
offset the server holds; when the last byte is in, the bytes are hashed, checked and handed to
`engine.storage.AttachmentStore` (content-addressed blob + Attachment row).

Bookkeeping is in files, not a table. An upload is `<root>/<owner key>/<sha256>.part` and a
sidecar `<sha256>.json` {size, content_type, owner, device, created_at}. The part file *is* the
state: its length is the offset, so after a crash (kill -9 mid-chunk) the offset reported is
exactly the bytes that reached the file; a table beside it could only disagree with it. Chunks
are appended under an exclusive `flock` on the part file, so two workers (or two requests of one)
never write the same upload at once; each chunk is fsynced before it is acknowledged. Part
files live on the server's own disk (the data directory), as do the blobs.

Uploads are per owner (the staff member a tablet acts for, or the device): another owner's part
is invisible. A blob that is already stored is complete for everyone at once (its sha256 names
its bytes)."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from engine import settings
from engine.clock import to_db
from engine.domain.records import Attachment
from engine.storage import ALLOWED_TYPES, AttachmentStore, StoreError, TooLarge, UnsupportedType, check_id, sniff

__all__ = ["Busy", "Chunk", "HashMismatch", "MAX_CHUNK", "MAX_PARTIAL", "Mismatch", "NoUpload", "OffsetMismatch",
           "PART_TTL", "SNIFF_BYTES", "Status", "TooMany", "UploadError", "Uploads", "default_root"]

MAX_CHUNK = 4 * 1024 * 1024        # bytes one PATCH may carry
MAX_PARTIAL = 20                   # unfinished uploads one device (or user) may hold at once
PART_TTL = timedelta(days=3)       # an upload untouched this long is discarded
SNIFF_BYTES = 12                   # enough to tell JPEG / PNG / WebP apart (engine.storage.sniff)


class UploadError(StoreError):
    code = "upload_error"


class NoUpload(UploadError):
    code = "no_upload"


class OffsetMismatch(UploadError):
    code = "offset_mismatch"

    def __init__(self, offset: int, sent: int):
        self.offset = offset
        super().__init__(f"this upload holds {offset} bytes; a chunk must start there (Upload-Offset {sent} sent) "
                         f"/ 偏移量不符，服务器已收到 {offset} 字节")


class Busy(UploadError):
    code = "upload_busy"


class Mismatch(UploadError):
    """An upload of this sha256 exists with another size or type."""
    code = "upload_mismatch"


class TooMany(UploadError):
    code = "too_many_uploads"


class HashMismatch(UploadError):
    code = "hash_mismatch"


@dataclass(frozen=True)
class Status:
    sha256: str
    size: int
    content_type: str
    offset: int
    complete: bool
    created: bool = False          # this call made the upload


def _owner_key(owner: str) -> str:
    return hashlib.sha256(owner.encode()).hexdigest()[:32]


def _declared_type(content_type: str) -> str:
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared not in ALLOWED_TYPES:
        raise UnsupportedType(f"content_type must be one of {', '.join(ALLOWED_TYPES)} ({declared[:64]!r} given) "
                              "/ 仅支持 JPEG、PNG、WebP 图片")
    return declared


class Uploads:
    def __init__(self, root: str | os.PathLike, store: AttachmentStore, max_chunk: int = MAX_CHUNK,
                 max_partial: int = MAX_PARTIAL, ttl: timedelta = PART_TTL):
        self.root, self.store = Path(root), store
        self.max_chunk, self.max_partial, self.ttl = max_chunk, max_partial, ttl

    @property
    def max_size(self) -> int:
        return self.store.max_bytes

    # ---- paths --------------------------------------------------------------------------
    def _dir(self, owner: str) -> Path:
        return self.root / _owner_key(owner)

    def _paths(self, owner: str, sha256: str) -> tuple[Path, Path]:
        d = self._dir(owner)
        return d / f"{sha256}.part", d / f"{sha256}.json"

    def _meta(self, meta_path: Path) -> dict | None:
        try:
            return json.loads(meta_path.read_text())
        except (FileNotFoundError, ValueError):
            return None

    # ---- status -------------------------------------------------------------------------
    def stored(self, engine, sha256: str) -> Attachment | None:
        """The Attachment row if the blob is stored completely (row and bytes)."""
        with engine.transaction(write=False) as s:
            row = s.get(Attachment, sha256)
        return row if row is not None and self.store.exists(sha256) else None

    def status(self, engine, owner: str, sha256: str) -> Status:
        check_id(sha256)
        row = self.stored(engine, sha256)
        if row is not None:
            return Status(sha256, row.size, row.content_type, row.size, True)
        part, meta_path = self._paths(owner, sha256)
        meta = self._meta(meta_path)
        if meta is None:
            raise NoUpload(f"no upload of {sha256} is in progress; create it first / 没有进行中的上传")
        try:
            offset = part.stat().st_size
        except FileNotFoundError:
            offset = 0
        return Status(sha256, meta["size"], meta["content_type"], offset, False)

    # ---- create -------------------------------------------------------------------------
    def create(self, engine, owner: str, device: str | None, sha256: str, size: int, content_type: str,
               now: datetime, check_stored: bool = True) -> Status:
        """Start (or find) the owner's upload of these bytes. Idempotent: the same call again
        answers the same upload with its current offset; stored bytes answer complete.
        check_stored=False skips that database read for a caller whose request carries the
        whole file anyway (it then completes as a no-op: one blob, one row)."""
        check_id(sha256)
        declared = _declared_type(content_type)
        if not isinstance(size, int) or size <= 0:
            raise UploadError("size must be a positive number of bytes")
        if size > self.max_size:
            raise TooLarge(f"an attachment may have at most {self.max_size} bytes ({size} declared) "
                           f"/ 文件过大，最多 {self.max_size} 字节")
        part, meta_path = self._paths(owner, sha256)
        row = self.stored(engine, sha256) if check_stored else None
        if row is not None:
            self._remove(part, meta_path)  # left over by a crash after the blob was stored
            return Status(sha256, row.size, row.content_type, row.size, True)
        d = self._dir(owner)
        d.mkdir(parents=True, exist_ok=True)
        with _locked(d / ".lock", blocking=True):
            meta = self._meta(meta_path)
            if meta is not None:
                if meta["size"] != size or meta["content_type"] != declared:
                    raise Mismatch(f"an upload of {sha256} with size {meta['size']} and type {meta['content_type']} "
                                   "is in progress; delete it first / 同一文件的另一上传正在进行")
                part.touch()  # (a part moved into the store by a completion whose row a crash lost)
                return self.status(engine, owner, sha256)
            self._sweep(d)
            mine = device or f"user:{owner}"
            held = sum(1 for m in d.glob("*.json") if (self._meta(m) or {}).get("holder") == mine)
            if held >= self.max_partial:
                raise TooMany(f"{held} unfinished uploads already; finish or delete one first "
                              f"/ 未完成的上传过多（最多 {self.max_partial} 个）")
            meta = {"sha256": sha256, "size": size, "content_type": declared, "owner": owner, "device": device,
                    "holder": mine, "created_at": to_db(now).isoformat()}
            part.touch()  # (keeps the bytes of a part whose sidecar a crash lost)
            _write_atomic(meta_path, json.dumps(meta).encode())
            offset = part.stat().st_size
        return Status(sha256, size, declared, offset, False, created=True)

    def _sweep(self, d: Path) -> None:
        """Discard uploads nobody touched for `ttl` (a tablet that never came back). File times
        are the operating system's, so this compares with its clock, not the engine's."""
        limit = time.time() - self.ttl.total_seconds()
        for part in d.glob("*.part"):
            meta_path = part.with_suffix(".json")
            try:
                touched = max(part.stat().st_mtime, meta_path.stat().st_mtime if meta_path.exists() else 0)
            except FileNotFoundError:
                continue
            if touched < limit:
                self._remove(part, meta_path)

    # ---- chunks -------------------------------------------------------------------------
    def begin_chunk(self, owner: str, sha256: str, offset: int) -> "Chunk":
        """Lock the owner's upload and check the chunk starts at its offset. The caller writes
        the chunk, then `commit()`s, `complete()`s if full, and always `release()`s."""
        check_id(sha256)
        part, meta_path = self._paths(owner, sha256)
        meta = self._meta(meta_path)
        if meta is None:
            raise NoUpload(f"no upload of {sha256} is in progress; create it first / 没有进行中的上传")
        gone = NoUpload(f"the upload of {sha256} was finished or discarded; create it again / 请重新创建上传")
        try:
            fd = os.open(part, os.O_RDWR)
        except FileNotFoundError:
            raise gone from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Busy("another request is writing this upload; ask its offset and try again "
                       "/ 该文件正在上传中，请稍后重试") from None
        chunk = Chunk(self, owner, sha256, meta, fd, part, meta_path)
        try:  # the file we locked must still be the upload (not one finished meanwhile)
            current = meta_path.exists() and part.stat().st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if not current or chunk.start != offset:
            chunk.release()
            if not current:
                raise gone
            raise OffsetMismatch(chunk.start, offset)
        return chunk

    def delete(self, owner: str, sha256: str) -> bool:
        check_id(sha256)
        part, meta_path = self._paths(owner, sha256)
        if not meta_path.exists():
            return False
        self._remove(part, meta_path)
        return True

    @staticmethod
    def _remove(part: Path, meta_path: Path) -> None:
        for p in (meta_path, part):
            try:
                p.unlink()
            except FileNotFoundError:
                pass


class Chunk:
    """One PATCH's bytes being appended to a locked part file."""

    def __init__(self, uploads: Uploads, owner: str, sha256: str, meta: dict, fd: int, part: Path, meta_path: Path):
        self.uploads, self.owner, self.sha256, self.meta = uploads, owner, sha256, meta
        self.fd, self.part, self.meta_path = fd, part, meta_path
        self.size, self.content_type = meta["size"], meta["content_type"]
        self.start = self.offset = os.fstat(fd).st_size
        self._hash = hashlib.sha256()   # of the whole file, fed as the bytes arrive
        at = 0
        while at < self.start:           # a resumed upload: the bytes already held first
            block = os.pread(fd, min(1 << 20, self.start - at), at)
            if not block:
                break
            self._hash.update(block)
            at += len(block)
        os.lseek(fd, self.start, os.SEEK_SET)
        self._head = b"" if self.start == 0 else None

    @property
    def full(self) -> bool:
        return self.offset == self.size

    def write(self, data: bytes) -> None:
        """Append; refuse (TooLarge) bytes beyond the declared size or the chunk limit, and
        (UnsupportedType) a file whose first bytes are not the declared image type."""
        if not data:
            return
        if self.offset + len(data) > self.size:
            raise TooLarge(f"more bytes than the {self.size} declared / 数据超过声明的大小")
        if self.offset + len(data) - self.start > self.uploads.max_chunk:
            raise TooLarge(f"a chunk may have at most {self.uploads.max_chunk} bytes / 分块过大")
        if self._head is not None:
            self._head += data[:SNIFF_BYTES]
            if len(self._head) >= min(SNIFF_BYTES, self.size):
                self._check_head()
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        self._hash.update(data)
        self.offset += len(data)

    def _check_head(self) -> None:
        actual, self._head = sniff(self._head), None
        if actual != self.content_type:
            raise UnsupportedType(f"declared as {self.content_type} but the content is "
                                  f"{actual or 'not a JPEG, PNG or WebP image'} / 文件类型与声明不符")

    def commit(self) -> None:
        """Make the bytes received durable before a partial offset is acknowledged. (A whole
        file needs none: it is acknowledged once stored, and the blob store fsyncs it.)"""
        os.fsync(self.fd)

    def abort(self) -> None:
        """Forget this chunk (a refused one): back to where it started."""
        os.ftruncate(self.fd, self.start)
        os.fsync(self.fd)
        self.offset = self.start

    def discard(self) -> None:
        """Drop the whole upload (wrong hash, not an image)."""
        Uploads._remove(self.part, self.meta_path)

    def complete(self, engine, now: datetime) -> Status:
        """All bytes are in: verify the hash (computed as they arrived), make the part file
        durable and move it into the blob store (no second copy), record it, drop the sidecar.
        A crash after the move leaves the blob without its row: `stored` does not count it and
        the next upload of the same bytes finds the blob already there."""
        if self.offset != self.size or self._hash.hexdigest() != self.sha256:
            self.discard()
            raise HashMismatch(f"the {self.offset} bytes received do not hash to {self.sha256}; the upload is "
                               "discarded, send the file again / 校验失败，请重新上传")
        os.fsync(self.fd)
        try:
            with engine.transaction() as s:
                self.uploads.store.put_file(self.part, self.sha256, self.content_type, self.owner, s, now)
        except (TooLarge, UnsupportedType):
            self.discard()
            raise
        self.discard()
        return Status(self.sha256, self.size, self.content_type, self.size, True)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing drops the flock
            self.fd = -1


class _locked:
    def __init__(self, path: Path, blocking: bool):
        self.path, self.blocking = path, blocking

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if self.blocking else fcntl.LOCK_NB))
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


def _write_atomic(path: Path, data: bytes) -> None:
    """Whole or not at all (rename), but not fsynced: a sidecar lost in a power cut only means
    the client's next announcement creates it again, and the part file's bytes are kept."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def default_root() -> Path:
    return settings.current().data / "uploads"
