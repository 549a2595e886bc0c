"""Upload a photo to /sync/v1/attachments and survive broken connections (client half of
sync.server.uploads; httpx only, no server imports).

    sha = upload(client, "photo.jpg", "image/jpeg", headers={"Authorization": f"Bearer {token}"})

A photo no larger than one chunk goes in one request (PATCH creating the upload). Otherwise,
or when that fails, the file is announced by its sha256 and size and chunks are sent from the
offset the *server* reports, so after a cut connection only the missing bytes go again. Gives up (UploadFailed)
after `attempts` failures in a row without progress; a refusal that retrying cannot fix (not an
image, too large, wrong hash twice) raises at once."""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Callable

import httpx

__all__ = ["DEFAULT_CHUNK", "PATH", "RETRYABLE", "UploadFailed", "upload"]

PATH = "/sync/v1/attachments"
DEFAULT_CHUNK = 1024 * 1024
RETRYABLE = {404, 409, 429, 500, 502, 503, 504}   # 404/409: the upload moved on or vanished: ask again


class UploadFailed(Exception):
    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.code = status, code


def _read(path_or_bytes) -> bytes:
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(path_or_bytes)
    return Path(os.fspath(path_or_bytes)).read_bytes()


def _error(r: httpx.Response) -> tuple[str, str]:
    try:
        body = r.json()
        return body.get("error", "error"), body.get("message", r.text[:200])
    except ValueError:
        return "error", r.text[:200]


def upload(client: httpx.Client, path_or_bytes, content_type: str, *, chunk_size: int | None = None,
           attempts: int = 8, backoff: float = 0.2, on_progress: Callable[[int, int], None] | None = None,
           headers: dict | None = None) -> str:
    """Upload (or finish uploading) a file; returns its sha256 once the server has verified and
    stored it. `on_progress(offset, size)` is called after every chunk the server acknowledged.
    `headers` (e.g. Authorization) go with every request, beside the client's own."""
    extra = dict(headers or {})
    data = _read(path_or_bytes)
    sha = hashlib.sha256(data).hexdigest()
    size = len(data)
    failures, hash_refusals = 0, 0

    def fail(message: str, status: int | None = None, code: str | None = None):
        nonlocal failures
        failures += 1
        if failures >= attempts:
            raise UploadFailed(f"upload of {sha} gave up after {failures} failures: {message}", status, code)
        time.sleep(min(backoff * 2 ** (failures - 1), 5.0))

    offset = None
    if size <= (chunk_size or DEFAULT_CHUNK):  # a small photo: create and send it in one request
        try:
            r = client.patch(f"{PATH}/{sha}", content=data, headers={
                **extra, "Upload-Offset": "0", "Upload-Length": str(size), "Upload-Type": content_type,
                "Content-Type": "application/offset+octet-stream"})
            if r.status_code == 200 and r.json()["complete"]:
                if on_progress is not None:
                    on_progress(size, size)
                return sha
        except httpx.TransportError:
            pass  # the usual way below finds out where the server stands
    while True:
        try:
            if offset is None:  # (re)announce: the server tells where it stands
                r = client.post(PATH, json={"sha256": sha, "size": size, "content_type": content_type}, headers=extra)
                if r.status_code in (200, 201):
                    state = r.json()
                    if state["complete"]:
                        return sha
                    offset = state["offset"]
                    chunk_size = min(chunk_size or DEFAULT_CHUNK, state.get("max_chunk") or DEFAULT_CHUNK)
                    continue
                code, message = _error(r)
                if r.status_code in RETRYABLE:
                    fail(message, r.status_code, code)
                    continue
                raise UploadFailed(message, r.status_code, code)
            end = min(size, offset + (chunk_size or DEFAULT_CHUNK))
            r = client.patch(f"{PATH}/{sha}", content=data[offset:end], headers={
                **extra, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})
        except httpx.TransportError as exc:  # cut, refused, timed out: ask the server where it stands
            offset = None
            fail(f"{exc.__class__.__name__}: {exc}")
            continue
        if r.status_code == 200:
            state = r.json()
            if state["offset"] > offset:
                failures = 0
            offset = state["offset"]
            if on_progress is not None:
                on_progress(offset, size)
            if state["complete"]:
                return sha
            continue
        code, message = _error(r)
        if r.status_code == 409 and code == "offset_mismatch":
            offset = int(r.headers.get("upload-offset", 0))
            fail(message, 409, code)
            continue
        if r.status_code == 422 and code == "hash_mismatch" and hash_refusals == 0:
            hash_refusals, offset = 1, None  # bytes damaged on the way: start over once
            continue
        if r.status_code in RETRYABLE:
            offset = None
            fail(message, r.status_code, code)
            continue
        raise UploadFailed(message, r.status_code, code)
