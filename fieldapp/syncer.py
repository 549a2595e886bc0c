"""Background sync for the tablet, and the state the top bar shows: online or offline, the
last sync, how many entries wait, how many came back refused (conflicts).

A daemon thread syncs every `interval` seconds and whenever poked (`sync_soon`, after each
submission); the UI thread never waits for it. State changes go to `on_state` through the
Background's `post` (the UI thread in the app). A 401 from the server means the tablet's
token was revoked (or replaced): the session is ended and the token forgotten, but the
outbox, drafts and photos stay on the tablet and are sent once it is paired again. Plain
Python: no Kivy."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Callable

import httpx

from devices.pairing import PairingFailed, load_token
from fieldapp import i18n
from fieldapp.background import Background
from fieldapp.config import FieldConfig
from fieldapp.presenters.syncstatus import entries_summary
from fieldapp.session import forget_token
from fieldapp.store import LocalStore
from sync.client import Outbox, SyncClient, SyncError

__all__ = ["SyncState", "Syncer"]

log = logging.getLogger("cityloop.fieldapp.sync")

i18n.add({
    "sync.online": ("在线", "Online"),
    "sync.offline": ("离线", "Offline"),
    "sync.signed_out": ("未登录", "Not signed in"),
    "sync.syncing": ("同步中…", "Syncing…"),
    "sync.waiting": ("待发 {n}", "{n} waiting"),
    "sync.conflicts": ("冲突 {n}", "{n} conflicts"),
    "sync.last": ("上次同步 {time}", "last sync {time}"),
    "sync.never": ("尚未同步", "never synced"),
    "sync.revoked": ("此平板已被管理员吊销，您已退出登录。未发送的 {n} 条记录（{what}）仍保存在平板上，"
                     "请向管理员申请新的设备编号和配对码，重新配对后会自动发送。",
                     "This tablet was revoked by an administrator and you have been signed out. Its {n} unsent "
                     "entries ({what}) are kept on the tablet: ask the administrator for a new device id and "
                     "pairing code; they are sent once the tablet is paired again."),
})


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class SyncState:
    signed_in: bool = False
    online: bool = False
    running: bool = False
    last_sync: datetime | None = None
    waiting: int = 0                # ops not settled yet (on the tablet, or waiting for photos)
    conflicts: int = 0              # ops the server refused that nobody has looked at yet
    error: str | None = None        # the last failure, as text
    revoked: bool = False
    last_result: dict = field(default_factory=dict)
    progress: tuple[int, int] | None = None   # photo bytes (sent, total) while a sync uploads

    def line(self, lang: str | None = None) -> str:
        def t(key, **kw):
            return (i18n.t(key, lang, **kw))
        if not self.signed_in:
            parts = [t("sync.signed_out")]
        else:
            parts = [t("sync.syncing") if self.running else t("sync.online" if self.online else "sync.offline")]
        if self.waiting:
            parts.append(t("sync.waiting", n=self.waiting))
        if self.conflicts:
            parts.append(t("sync.conflicts", n=self.conflicts))
        if self.signed_in:
            when = self.last_sync.astimezone().strftime("%H:%M") if self.last_sync else None
            parts.append(t("sync.last", time=when) if when else t("sync.never"))
        return " · ".join(parts)


class Syncer:
    def __init__(self, config: FieldConfig, store: LocalStore, outbox: Outbox, bg: Background,
                 on_state: Callable[[SyncState], None] | None = None, clock: Callable[[], datetime] = _now,
                 retries: int = 2):
        self.config, self.store, self.outbox, self.bg = config, store, outbox, bg
        self.on_state, self.clock, self.retries = on_state, clock, retries
        self._state = SyncState(signed_in=bool(store.get("session")), waiting=self._waiting(),
                                conflicts=self._conflicts(), revoked=store.get("revoked") is not None)
        self._poke, self._stop = threading.Event(), threading.Event()
        self._lock = threading.Lock()
        self._round = threading.Lock()      # one sync at a time (the thread's, or one asked for now)
        self._thread: threading.Thread | None = None
        self.rounds = 0     # finished sync attempts (tests wait on this)

    # ---- state -----------------------------------------------------------------------------
    @property
    def state(self) -> SyncState:
        return self._state

    def _waiting(self) -> int:
        counts = self.outbox.counts()
        return counts.get("pending", 0) + counts.get("waiting", 0)

    def _conflicts(self) -> int:
        return len(self.unseen_conflicts())

    def unseen_conflicts(self) -> list[dict]:
        """Refused ops the person has not marked as seen, newest first."""
        seen = set(self.store.get("conflicts_seen", []))
        return [r for r in reversed(self.outbox.refused()) if r["op"]["op_id"] not in seen]

    def mark_seen(self, op_id: str) -> None:
        seen = self.store.get("conflicts_seen", [])
        if op_id not in seen:
            self.store.put("conflicts_seen", seen + [op_id])
        self._set(conflicts=self._conflicts())

    def refresh(self) -> None:
        """Recount after a local change (a submission went to the outbox, someone paired,
        signed in or out)."""
        self._set(waiting=self._waiting(), conflicts=self._conflicts(), signed_in=bool(self.store.get("session")),
                  revoked=self.store.get("revoked") is not None)

    @property
    def busy(self) -> bool:
        """A sync round is running now (the thread's or one asked for)."""
        return self._round.locked()

    def photo_problems(self) -> list[dict]:
        """Entries held back by a photo (Outbox.photo_problems)."""
        return self.outbox.photo_problems()

    def _set(self, **changes) -> None:
        with self._lock:
            self._state = replace(self._state, **changes)
            state = self._state
        if self.on_state is not None and not self._stop.is_set():   # no news for an app that has stopped
            callback = self.on_state
            self.bg.post(lambda: callback(state))

    # ---- running ---------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="field-sync", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._poke.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def sync_soon(self) -> None:
        self.refresh()
        self._poke.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.store.get("session"):
                self.sync_once()
            self._poke.wait(self.config.sync_interval)
            self._poke.clear()

    def sync_once(self) -> dict | None:
        """One push and pull; returns its result, or None when offline or signed out. A sync
        asked for while one runs waits for it (ops are never sent twice at once)."""
        with self._round:
            return self._sync_once()

    def _progress(self, sent: int, total: int) -> None:
        self._set(progress=(sent, total) if total else None)

    def _sync_once(self) -> dict | None:
        session = self.store.get("session")
        if not session:
            self._set(signed_in=False, running=False)
            return None
        try:
            token = load_token(self.config.token_path)
        except PairingFailed as exc:
            self._set(signed_in=False, error=str(exc))
            return None
        self._set(running=True, signed_in=True)
        result = None
        try:
            with SyncClient(session["server"], token, self.outbox, device=session.get("device_id"),
                            retries=self.retries, timeout=20, on_progress=self._progress) as client:
                result = client.sync()
            self._set(online=True, running=False, last_sync=self.clock(), error=None, last_result=result,
                      waiting=self._waiting(), conflicts=self._conflicts(), progress=None)
        except SyncError as exc:
            if exc.status == 401:
                self._revoked(exc)
            elif exc.status is not None and exc.status < 500:
                log.warning("sync refused: %s", exc)
                self._set(online=True, running=False, error=str(exc), waiting=self._waiting(), progress=None)
            else:
                self._set(online=False, running=False, error=str(exc), waiting=self._waiting(), progress=None)
        except (httpx.HTTPError, OSError) as exc:
            self._set(online=False, running=False, error=str(exc), waiting=self._waiting(), progress=None)
        finally:
            self.rounds += 1
        return result

    def _revoked(self, exc: SyncError) -> None:
        log.warning("the server refused this tablet's token: %s", exc)
        forget_token(self.config, self.store, (self.store.get("session") or {}).get("device_id"))
        self._set(signed_in=False, online=True, running=False, revoked=True, error=str(exc),
                  waiting=self._waiting(), progress=None)

    def revoked_message(self, lang: str | None = None) -> str:
        """What the pair screen says after a revocation: the unsent entries kept, by kind."""
        kept = self.outbox.unsettled()
        return i18n.t("sync.revoked", lang, n=len(kept), what=entries_summary(kept, lang))
