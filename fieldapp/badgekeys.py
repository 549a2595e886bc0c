"""The day's derived badge keys on the tablet, so a supervisor can verify badges offline.

`GET /api/v1/attendance/badge-keys?crew=` gives, for the crew's rotating badges, the epoch
keys of today and tomorrow (UTC days), never a master key. `BadgeKeys.fetch` asks for them
with the tablet's device token (which acts for its owner, the supervisor) and keeps them in
the LocalStore, merged with what it had and without the days already over; `state(crew, at)`
says whether the tablet can verify a frame heard at `at`:

- ok: a key of that day for every rotating badge the server gave keys for;
- missing: never fetched for this crew;
- stale: fetched, but no key of that day (the tablet has been offline too long).

Without a key a frame is shown "unverified", never "verified". Plain Python: no Kivy."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import httpx

from devices import token
from fieldapp import i18n
from fieldapp.store import LocalStore

__all__ = ["BadgeKeys", "KeyState", "KeysUnavailable", "STORE_PREFIX"]

log = logging.getLogger("cityloop.fieldapp.badgekeys")
STORE_PREFIX = "badgekeys."

i18n.add({
    "badgekeys.ok": ("已有今日工牌密钥（{when} 更新），可离线验证", "Today's badge keys are here (updated {when}): "
                                                        "badges are verified offline"),
    "badgekeys.missing": ("没有此班组的工牌密钥：联网后会自动下载；在此之前工牌显示为“未验证”",
                          "No badge keys for this crew yet: they are fetched when online; until then badges "
                          "show as unverified"),
    "badgekeys.stale": ("工牌密钥已过期（{when} 下载）：联网后会自动更新；在此之前工牌显示为“未验证”",
                        "The badge keys are out of date (fetched {when}): they are renewed when online; until "
                        "then badges show as unverified"),
    "badgekeys.offline": ("无法下载工牌密钥：{error}", "Cannot fetch the badge keys: {error}"),
    "badgekeys.refused": ("服务器拒绝提供工牌密钥（HTTP {status}）：{error}",
                          "The server refused the badge keys (HTTP {status}): {error}"),
})


class KeysUnavailable(RuntimeError):
    """The keys could not be fetched; `text(lang)` says why, for the screen."""

    def __init__(self, key: str, **values):
        super().__init__(i18n.t(key, "en", **values))
        self.key, self.values = key, values

    def text(self, lang: str | None = None) -> str:
        return i18n.t(self.key, lang, **self.values)


@dataclass(frozen=True)
class KeyState:
    status: str                     # "ok", "missing" or "stale"
    fetched_at: datetime | None = None
    skew_steps: int = token.SKEW_STEPS

    @property
    def usable(self) -> bool:
        return self.status == "ok"

    def text(self, lang: str | None = None) -> str:
        when = self.fetched_at.astimezone().strftime("%m-%d %H:%M") if self.fetched_at else "-"
        return i18n.t(f"badgekeys.{self.status}", lang, when=when)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class BadgeKeys:
    """The crews' epoch keys kept in the LocalStore under `badgekeys.<crew>`:
    {"fetched_at": iso, "skew_steps": int, "keys": {badge_id: {epoch: key hex}}}."""

    def __init__(self, store: LocalStore, clock: Callable[[], datetime] = _now):
        self.store, self.clock = store, clock

    # ---- fetching (a worker thread: it blocks on the network) -----------------------------------
    def fetch(self, server: str, device_token: str, crew: str, *, http: httpx.Client | None = None,
              timeout: float = 10.0) -> int:
        """Fetch and keep the crew's keys; returns how many keys are kept. Raises
        KeysUnavailable (the server cannot be reached, or refused) and keeps what it had."""
        url = f"{server.rstrip('/')}/api/v1/attendance/badge-keys"
        headers = {"Authorization": f"Bearer {device_token}"}
        try:
            if http is not None:
                r = http.get(url, params={"crew": crew}, headers=headers, timeout=timeout)
            else:
                r = httpx.get(url, params={"crew": crew}, headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            raise KeysUnavailable("badgekeys.offline", error=str(exc)[:200] or type(exc).__name__) from None
        try:
            body = r.json()
        except ValueError:
            body = {}
        if r.status_code != 200:
            message = body.get("message") if isinstance(body, dict) else None
            raise KeysUnavailable("badgekeys.refused", status=r.status_code, error=str(message or r.text)[:200])
        return self.keep(crew, body)

    def keep(self, crew: str, body: dict) -> int:
        """Merge an answer of the badge-keys route into what is kept; days over are dropped."""
        today = token.epoch_at(self.clock())
        kept = self._load(crew) or {"keys": {}}
        keys: dict[str, dict[str, str]] = {b: {e: k for e, k in by.items() if int(e) >= today}
                                           for b, by in kept["keys"].items()}
        for item in body.get("keys", []):
            if int(item["epoch"]) >= today:
                keys.setdefault(item["badge_id"], {})[str(int(item["epoch"]))] = str(item["key"])
        keys = {b: by for b, by in keys.items() if by}
        self.store.put(STORE_PREFIX + crew, {"fetched_at": self.clock().isoformat(), "keys": keys,
                                             "skew_steps": int(body.get("skew_steps", token.SKEW_STEPS))})
        return sum(len(by) for by in keys.values())

    # ---- reading -----------------------------------------------------------------------------------
    def _load(self, crew: str) -> dict | None:
        value = self.store.get(STORE_PREFIX + crew)
        return value if isinstance(value, dict) and isinstance(value.get("keys"), dict) else None

    def epoch_keys(self, crew: str, badge_id: str) -> dict[int, bytes]:
        """{epoch: key} of one badge (empty when the tablet has none)."""
        return self.crew_keys(crew).get(badge_id, {})

    def crew_keys(self, crew: str) -> dict[str, dict[int, bytes]]:
        """{badge_id: {epoch: key}} of the crew, read once (a screen keeps it while it scans)."""
        kept = self._load(crew)
        return {b: {int(e): bytes.fromhex(k) for e, k in by.items()} for b, by in (kept or {}).get("keys", {}).items()}

    def state(self, crew: str, at: datetime | None = None) -> KeyState:
        kept = self._load(crew)
        if kept is None:
            return KeyState("missing")
        fetched = datetime.fromisoformat(kept["fetched_at"])
        skew = int(kept.get("skew_steps", token.SKEW_STEPS))
        epoch = str(token.epoch_at(at or self.clock()))
        keys = kept["keys"]
        if not keys or not all(epoch in by for by in keys.values()):
            return KeyState("stale", fetched, skew)
        return KeyState("ok", fetched, skew)
