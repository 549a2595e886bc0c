"""Content-addressed attachments: files named by the SHA-256 of their bytes.

`AttachmentStore` checks what comes in (size, and the type by its magic bytes, not by what
the client declares), keeps the bytes in a `Blobs` backend and records an `Attachment` row.
`FileBlobs` writes `root/ab/cd/<sha256>` atomically (temp file, fsync, rename); an object
store can replace it by implementing the same three methods. Storing the same bytes twice
is one file and one row."""
from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol

from sqlmodel import Session

from engine import settings
from engine.clock import to_db
from engine.db.upsert import insert_if_new
from engine.domain.records import Attachment
from engine.runtime.errors import ClientError

__all__ = ["ALLOWED_TYPES", "AttachmentStore", "Blobs", "FileBlobs", "MAX_BYTES", "SHA256_RE", "StoreError",
           "TooLarge", "UnsupportedType", "app_store", "check_id", "default_root", "sniff", "store_of"]

MAX_BYTES = 10 * 1024 * 1024
SHA256_RE = re.compile(r"[0-9a-f]{64}", re.ASCII)
ALLOWED_TYPES = ("image/jpeg", "image/png", "image/webp")
_UNDECLARED = (None, "", "application/octet-stream")


class StoreError(ClientError):
    """An attachment refused for what it is (the sender's mistake)."""
    code = "bad_attachment"
    status = 422


class TooLarge(StoreError):
    code = "too_large"
    status = 413


class UnsupportedType(StoreError):
    code = "unsupported_media_type"
    status = 415


def sniff(data: bytes) -> str | None:
    """The image type the bytes really are, by magic number (None if none we accept)."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def check_id(sha256: str) -> str:
    if not isinstance(sha256, str) or not SHA256_RE.fullmatch(sha256):
        raise StoreError("an attachment id is 64 lowercase hex characters (its sha256)")
    return sha256


class Blobs(Protocol):
    """Where the bytes live: a directory here, an object store elsewhere."""

    def write(self, sha256: str, data: bytes) -> None: ...

    def open(self, sha256: str) -> BinaryIO: ...

    def exists(self, sha256: str) -> bool: ...


class FileBlobs:
    """Blobs under a directory, fanned out as ab/cd/<sha256>."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        check_id(sha256)
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def open(self, sha256: str) -> BinaryIO:
        try:
            return self.path(sha256).open("rb")
        except FileNotFoundError:
            raise KeyError(sha256) from None

    def write(self, sha256: str, data: bytes) -> None:
        final = self.path(sha256)
        if final.is_file() and final.stat().st_size == len(data):
            return  # content-addressed: the same name is the same bytes
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=final.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        _fsync_dir(final.parent)

    def adopt(self, sha256: str, path: Path) -> None:
        """Move in a file the caller has fsynced and verified to hash to sha256 (an upload's
        part file): a rename, not a second copy of the bytes. Another filesystem: copied."""
        final = self.path(sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.is_file() and final.stat().st_size == path.stat().st_size:
            path.unlink()
            return
        try:
            os.replace(path, final)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            self.write(sha256, path.read_bytes())
            path.unlink()
            return
        _fsync_dir(final.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AttachmentStore:
    def __init__(self, root: str | os.PathLike | None = None, blobs: Blobs | None = None,
                 max_bytes: int = MAX_BYTES):
        if blobs is None:
            blobs = FileBlobs(root if root is not None else default_root())
        self.blobs, self.max_bytes = blobs, max_bytes

    def check(self, data: bytes, content_type: str | None, size: int | None = None) -> str:
        """The stored content type, or raise TooLarge / UnsupportedType. (`size`: the whole
        file's when `data` is only its first bytes.)"""
        size = len(data) if size is None else size
        if size > self.max_bytes:
            raise TooLarge(f"an attachment may have at most {self.max_bytes} bytes ({size} sent)")
        if not data:
            raise StoreError("the file is empty")
        actual = sniff(data)
        if actual is None:
            raise UnsupportedType(f"the content is not a {', '.join(ALLOWED_TYPES)} image (its magic bytes do not "
                                  f"match any of them)")
        declared = (content_type or "").split(";")[0].strip().lower()
        if declared not in _UNDECLARED and declared != actual:
            raise UnsupportedType(f"declared as {declared} but the content is {actual}")
        return actual

    def put(self, data: bytes, content_type: str | None, by: str, session: Session, now: datetime) -> str:
        """Store the bytes (once) and record them; returns their sha256."""
        stored_type = self.check(data, content_type)
        sha = hashlib.sha256(data).hexdigest()
        self.blobs.write(sha, data)
        values = dict(sha256=sha, size=len(data), content_type=stored_type, created_at=to_db(now), created_by=by[:64])
        insert_if_new(session, Attachment, values)
        return sha

    def put_file(self, path: Path, sha256: str, content_type: str | None, by: str, session: Session,
                 now: datetime) -> str:
        """Store a file whose bytes the caller has fsynced and hashed to sha256 (checked like
        put's, from the file): moved in, not copied, when the backend can."""
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(12)
        stored_type = self.check(head, content_type, size)
        adopt = getattr(self.blobs, "adopt", None)
        if adopt is not None:
            adopt(sha256, path)
        else:
            self.blobs.write(sha256, path.read_bytes())
            path.unlink()
        values = dict(sha256=sha256, size=size, content_type=stored_type, created_at=to_db(now), created_by=by[:64])
        insert_if_new(session, Attachment, values)
        return sha256

    def open(self, sha256: str) -> BinaryIO:
        """The bytes; KeyError if they are not stored."""
        return self.blobs.open(check_id(sha256))

    def exists(self, sha256: str) -> bool:
        try:
            return self.blobs.exists(check_id(sha256))
        except StoreError:
            return False


def default_root() -> Path:
    return settings.current().data / "attachments"


def store_of(request) -> AttachmentStore:
    """The app's attachment store (`app.state.attachments`), made from the environment once."""
    return app_store(request.app)


def app_store(app) -> AttachmentStore:
    state = app.state
    store = getattr(state, "attachments", None)
    if store is None:
        store = state.attachments = AttachmentStore(default_root())
    return store
