"""Resumable photo uploads for the field tablets (tus-like; the logic is sync.server.uploads).

    POST   /sync/v1/attachments            {sha256, size, content_type} -> the upload and its offset
    GET    /sync/v1/attachments/{sha256}   the offset held (also as Upload-Offset / Upload-Length headers)
    PATCH  /sync/v1/attachments/{sha256}   Upload-Offset: n, body = the bytes from n on (with
                                           Upload-Length and Upload-Type it creates the upload:
                                           a small photo in one request)
    DELETE /sync/v1/attachments/{sha256}   abandon an unfinished upload

A PATCH cut off in the middle keeps the bytes that arrived (fsynced), so the client asks the
offset and goes on from there. When the last byte is in, the bytes are hashed and checked and
stored as an attachment; operations pushed earlier that were waiting for this photo are then
released (sync.server.ops.release_waiting)."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from anyio import CapacityLimiter, to_thread
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from engine import settings
from engine.api.deps import allow, engine_of
from engine.api.errors import problem
from engine.auth.service import Principal
from engine.storage import StoreError, TooLarge, UnsupportedType, store_of
from sync.server import uploads as up

__all__ = ["router"]  # (the routes themselves are reached through the router)

router = APIRouter(prefix="/sync/v1/attachments", tags=["sync"])
log = logging.getLogger("cityloop.sync.uploads")
SHA = r"^[0-9a-f]{64}$"


class UploadIn(BaseModel):
    sha256: str = Field(pattern=SHA, description="SHA-256 of the whole file, lowercase hex")
    size: int = Field(gt=0, description="bytes in the whole file")
    content_type: str = Field(max_length=100, description="image/jpeg, image/png or image/webp")


class UploadOut(BaseModel):
    sha256: str
    size: int
    content_type: str
    offset: int
    complete: bool
    max_chunk: int
    released: int | None = None   # waiting operations released by this upload's completion


def uploads_of(request: Request) -> up.Uploads:
    """The app's upload area (`app.state.uploads`), beside its attachment store."""
    state = request.app.state
    area = getattr(state, "uploads", None)
    if area is None:
        area = state.uploads = up.Uploads(up.default_root(), store_of(request))
    return area


_STATUS = {up.NoUpload: 404, up.OffsetMismatch: 409, up.Busy: 409, up.Mismatch: 409, up.TooMany: 429,
           up.HashMismatch: 422, TooLarge: 413, UnsupportedType: 415}


def _refused(exc: StoreError):
    status = next((code for cls, code in _STATUS.items() if isinstance(exc, cls)), 422)
    headers = {"Cache-Control": "no-store"}
    if isinstance(exc, up.OffsetMismatch):
        headers["Upload-Offset"] = str(exc.offset)
    if isinstance(exc, (up.Busy, up.TooMany)):
        headers["Retry-After"] = "2"
    errors = {"offset": exc.offset} if isinstance(exc, up.OffsetMismatch) else None
    return problem(status, exc.code, str(exc), errors, headers=headers)


def _out(area: up.Uploads, st: up.Status, response: Response, released: int | None = None) -> UploadOut:
    response.headers.update({"Upload-Offset": str(st.offset), "Upload-Length": str(st.size),
                             "Cache-Control": "no-store"})
    return UploadOut(sha256=st.sha256, size=st.size, content_type=st.content_type, offset=st.offset,
                     complete=st.complete, max_chunk=area.max_chunk, released=released)


def _release(engine, area: up.Uploads, sha256: str) -> int | None:
    """Operations waiting for this photo go ahead (None if the sync server is not installed)."""
    try:
        from sync.server.ops import release_waiting
    except ImportError:
        return None
    return release_waiting(engine, sha256, exists=area.store.exists)


def _released_or_retry(engine, area: up.Uploads, sha256: str):
    """(released count, None) or (None, a 503 asking the client to POST again): the photo is
    stored, but ops waiting for it must not stay waiting because this step failed."""
    try:
        return _release(engine, area, sha256), None
    except Exception:  # noqa: BLE001 - anything: the client's re-POST retries the release
        log.exception("releasing operations waiting for %s failed", sha256)
        return None, problem(503, "release_failed", "the photo is stored, but operations waiting for it were not "
                             "released; create the upload again to retry / 照片已保存，请重新提交以继续",
                             headers={"Retry-After": "2"})


@router.post("", response_model=UploadOut, status_code=201,
             summary="Start (or find) a resumable photo upload / 开始或继续上传照片",
             responses={200: {"description": "the upload exists already (or the photo is stored)"},
                        413: {"description": "larger than allowed"}, 415: {"description": "not JPEG/PNG/WebP"},
                        429: {"description": "too many unfinished uploads on this device"}})
def create_upload(body: UploadIn, request: Request, response: Response, principal: Principal = allow("sync.upload")):
    """Idempotent per sha256 and caller: the same request again answers the same upload with
    the offset received so far (200). A photo already stored answers complete at once."""
    engine, area = engine_of(request), uploads_of(request)
    try:
        st = area.create(engine, principal.id, principal.device_id, body.sha256, body.size, body.content_type,
                         engine.clock())
    except StoreError as exc:
        return _refused(exc)
    released = None
    if st.complete:
        released, retry = _released_or_retry(engine, area, st.sha256)
        if retry is not None:
            return retry
    if not st.created:
        response.status_code = 200
    response.headers["Location"] = f"{router.prefix}/{st.sha256}"
    return _out(area, st, response, released)


@router.get("/{sha256}", response_model=UploadOut, summary="How much of an upload the server holds / 查询上传进度")
def upload_status(sha256: str, request: Request, response: Response, principal: Principal = allow("sync.upload")):
    engine, area = engine_of(request), uploads_of(request)
    try:
        st = area.status(engine, principal.id, sha256)
    except StoreError as exc:
        return _refused(exc)
    return _out(area, st, response)


@router.delete("/{sha256}", status_code=204, summary="Abandon an unfinished upload / 放弃上传")
def delete_upload(sha256: str, request: Request, principal: Principal = allow("sync.upload")):
    try:
        found = uploads_of(request).delete(principal.id, sha256)
    except StoreError as exc:
        return _refused(exc)
    if not found:
        return _refused(up.NoUpload(f"no upload of {sha256} is in progress / 没有进行中的上传"))
    return Response(status_code=204)


@router.patch("/{sha256}", response_model=UploadOut,
              summary="Append bytes at the server's offset / 追加上传数据",
              responses={409: {"description": "Upload-Offset is not where the upload stands "
                                               "(header has the right one)"},
                         422: {"description": "the finished bytes do not hash to sha256 (upload discarded)"}})
async def append_chunk(sha256: str, request: Request, response: Response,
                       principal: Principal = allow("sync.upload")) -> Any:
    """Send `Upload-Offset: n` and the bytes from n on (any content type). The reply has the new
    offset; with the last byte it is `complete` (hash verified, photo stored). A small photo can
    go in one request: with `Upload-Offset: 0`, `Upload-Length: <size>` and `Upload-Type:
    image/jpeg|png|webp`, an upload that does not exist yet is created first."""
    raw = request.headers.get("upload-offset", "")
    if not raw.isdigit() or len(raw) > 12:
        return problem(400, "bad_offset",
                       "send the header Upload-Offset: <bytes already uploaded> / 缺少 Upload-Offset")
    length = request.headers.get("upload-length", "")
    create = (int(length), request.headers.get("upload-type", "")) if length.isdigit() and len(length) < 13 else None
    engine, area = engine_of(request), uploads_of(request)
    limiter = _upload_limiter(request)
    try:
        chunk = await to_thread.run_sync(_begin, engine, area, principal, sha256, int(raw), create, limiter=limiter)
    except StoreError as exc:
        return _refused(exc)
    if isinstance(chunk, up.Status):   # created just now, and the photo was stored already
        released, retry = await to_thread.run_sync(_released_or_retry, engine, area, sha256, limiter=limiter)
        return retry if retry is not None else _out(area, chunk, response, released)
    try:
        cut = await _receive_into(request, chunk)
    except StoreError as exc:
        await to_thread.run_sync(_undo, chunk, exc, limiter=limiter)
        return _refused(exc)
    try:
        st, released, retry = await to_thread.run_sync(_settle, engine, area, chunk, cut, limiter=limiter)
    except StoreError as exc:
        return _refused(exc)
    return retry if retry is not None else _out(area, st, response, released)


def _upload_limiter(request: Request) -> CapacityLimiter:
    """Photo uploads get threads of their own (CITYLOOP_UPLOAD_THREADS, default 3 per worker),
    apart from the pool every other request uses: when hundreds of tablets upload at once,
    their photos queue here, and a push (a tablet's work, small) or any other request does
    not wait behind them."""
    state = request.app.state
    limiter = getattr(state, "upload_limiter", None)
    if limiter is None:
        limiter = state.upload_limiter = CapacityLimiter(settings.current().upload_threads)
    return limiter


def _begin(engine, area: up.Uploads, principal: Principal, sha256: str, offset: int, create):
    """The locked chunk to write, creating the upload first when asked and it does not exist."""
    try:
        return area.begin_chunk(principal.id, sha256, offset)
    except up.NoUpload:
        if create is None or offset != 0:
            raise
    whole = create[0] <= area.max_chunk   # the whole photo is in this request: no need to ask if it is stored
    st = area.create(engine, principal.id, principal.device_id, sha256, create[0], create[1], engine.clock(),
                     check_stored=not whole)
    return st if st.complete else area.begin_chunk(principal.id, sha256, offset)


def _undo(chunk: up.Chunk, exc: StoreError) -> None:
    try:
        chunk.discard() if isinstance(exc, UnsupportedType) else chunk.abort()
    finally:
        chunk.release()


def _settle(engine, area: up.Uploads, chunk: up.Chunk, cut: bool):
    """After the body: make the bytes durable; if the file is whole, verify and store it and
    release the ops waiting for it. (status, released, a 503 to answer instead or None)."""
    try:
        if cut or not chunk.full:  # (if the client is gone, nobody reads this answer)
            chunk.commit()
            return up.Status(chunk.sha256, chunk.size, chunk.content_type, chunk.offset, False), None, None
        st = chunk.complete(engine, engine.clock())
    finally:
        chunk.release()
    released, retry = _released_or_retry(engine, area, chunk.sha256)
    return st, released, retry


async def _receive_into(request: Request, chunk: up.Chunk) -> bool:
    """Stream the body into the chunk. True if the client went away (or went silent) first;
    the bytes that did arrive are kept."""
    stream = request.stream().__aiter__()
    idle = settings.current().upload_idle_seconds   # without a byte this long, the PATCH counts as cut off
    while True:
        try:
            async with asyncio.timeout(idle):   # (no task per chunk, as wait_for makes)
                piece = await stream.__anext__()
        except StopAsyncIteration:
            return False
        except (ClientDisconnect, TimeoutError):
            return True
        chunk.write(piece)
