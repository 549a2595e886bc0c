"""A work order and its photos for the reviewer's tablet, kept for offline viewing. Plain Python
(httpx), no Kivy; call it off the UI thread (`app.bg.call(photos.fetch, number, ...)`).

    GET /api/v1/work-orders/{number}      the order, with `attachments`: [{sha256, kind, content_type, ...}]
    GET /api/v1/attachments/{sha256}      a photo's bytes

with the tablet's device token (its owner's rights). The order's JSON and each photo are cached
under `cache_dir` (`orders/<number>.json`, `photos/<sha256>.<ext>`); a cached photo is used only
if its bytes still hash to its name, and a downloaded one only if they hash to the sha256 the
server listed. Offline, the cached order and photos are shown; without a cache the view says
"photos available once online"."""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from sync.photos import write_atomically

__all__ = ["OrderError", "OrderPhoto", "OrderPhotos", "OrderView"]

log = logging.getLogger("cityloop.fieldapp.orders")

_EXT = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp"}
_SHA = re.compile(r"^[0-9a-f]{64}$")
_NUMBER = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class OrderError(Exception):
    """The server refused (not found, not allowed, token revoked): `status` and a message."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class OrderPhoto:
    sha256: str
    kind: str                   # report | evidence | after | snapshot (engine.domain.workorders.PhotoKind)
    content_type: str
    path: str | None            # a verified local copy, or None when not downloaded (yet)
    problem: str | None = None  # why there is no copy: offline | missing | corrupt | refused


@dataclass(frozen=True)
class OrderView:
    number: str
    order: dict | None          # the order's JSON (as last seen), None when never fetched
    photos: list[OrderPhoto] = field(default_factory=list)
    online: bool = False        # fetched from the server just now
    state: str = "ok"           # ok | cached (offline, from the cache) | offline_no_cache

    def photo(self, sha256: str) -> OrderPhoto | None:
        return next((p for p in self.photos if p.sha256 == sha256), None)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class OrderPhotos:
    def __init__(self, server: str | None, token: str | None, cache_dir: str | Path, *,
                 http: httpx.Client | None = None, timeout: float = 20.0):
        self.server, self.token, self.cache = server, token, Path(cache_dir)
        self.http, self.timeout = http, timeout

    # ---- cache ---------------------------------------------------------------------------------------
    def _order_path(self, number: str) -> Path:
        return self.cache / "orders" / f"{number}.json"

    def _photo_path(self, sha256: str, content_type: str) -> Path:
        return self.cache / "photos" / f"{sha256}{_EXT.get(content_type, '.img')}"

    def cached_photo(self, sha256: str, content_type: str) -> Path | None:
        """The cached copy if its bytes still are this photo; a damaged copy is removed."""
        path = self._photo_path(sha256, content_type)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if _sha(data) == sha256:
            return path
        log.warning("cached photo %s is damaged: removed", path)
        path.unlink(missing_ok=True)
        return None

    def cached_order(self, number: str) -> dict | None:
        try:
            return json.loads(self._order_path(number).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("cached order %s unreadable: %r", number, exc)
            return None

    def _from_cache(self, number: str, problem: str = "offline") -> OrderView:
        order = self.cached_order(number)
        if order is None:
            return OrderView(number, None, [], online=False, state="offline_no_cache")
        photos = []
        for a in order.get("attachments") or []:
            path = self.cached_photo(a["sha256"], a.get("content_type", ""))
            photos.append(OrderPhoto(a["sha256"], a.get("kind", "evidence"), a.get("content_type", ""),
                                     str(path) if path else None, None if path else problem))
        return OrderView(number, order, photos, online=False, state="cached")

    # ---- fetching ----------------------------------------------------------------------------------------
    def fetch(self, number: str) -> OrderView:
        """The order and its photos, from the server when it answers, else from the cache.
        Raises OrderError when the server refuses (404 not visible to this person, 401/403)."""
        if not _NUMBER.match(number or ""):
            raise OrderError(f"not a work order number: {number!r}")
        if not self.server or not self.token:
            return self._from_cache(number)
        client = self.http or httpx.Client(base_url=self.server, timeout=self.timeout)
        try:
            return self._fetch(client, number)
        except httpx.TransportError as exc:
            log.info("work order %s: server unreachable (%r), showing the cache", number, exc)
            return self._from_cache(number)
        finally:
            if self.http is None:
                client.close()

    def _fetch(self, client: httpx.Client, number: str) -> OrderView:
        headers = {"Authorization": f"Bearer {self.token}"}
        r = client.get(f"/api/v1/work-orders/{number}", headers=headers)
        if r.status_code >= 500:
            log.warning("work order %s: server error %s, showing the cache", number, r.status_code)
            return self._from_cache(number)
        if r.status_code != 200:
            raise OrderError(_detail(r), r.status_code)
        order = r.json()
        write_atomically(self._order_path(number), json.dumps(order, ensure_ascii=False).encode())
        photos = []
        for a in order.get("attachments") or []:
            sha, ctype = str(a.get("sha256", "")), str(a.get("content_type", ""))
            if not _SHA.match(sha):
                continue
            path, problem = self.cached_photo(sha, ctype), None
            if path is None:
                path, problem = self._download(client, headers, sha, ctype)
            photos.append(OrderPhoto(sha, str(a.get("kind", "evidence")), ctype, str(path) if path else None, problem))
        return OrderView(number, order, photos, online=True, state="ok")

    def _download(self, client: httpx.Client, headers: dict, sha: str, ctype: str) -> tuple[Path | None, str | None]:
        try:
            r = client.get(f"/api/v1/attachments/{sha}", headers=headers)
        except httpx.TransportError:
            return None, "offline"
        if r.status_code == 404:
            return None, "missing"
        if r.status_code != 200:
            return None, "refused"
        if _sha(r.content) != sha:
            log.warning("photo %s: the bytes received do not match their sha256; not kept", sha)
            return None, "corrupt"
        path = self._photo_path(sha, ctype)
        write_atomically(path, r.content)
        return path, None


def _detail(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return f"HTTP {r.status_code}"
    detail = body.get("detail") if isinstance(body, dict) else None
    return f"HTTP {r.status_code}: {detail if isinstance(detail, str) else json.dumps(detail)[:200]}"
