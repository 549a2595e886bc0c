"""The live badge check-in of a crew's shift, for the cleaning supervisor's tablet.

`CheckinRoster(crew, shift, ...)` takes a pulled crew (sync/server/pull.py `_crews`: code,
roster [{id, name, badge_id}], shifts [{id, starts_at, grace_ends_at}]) and one of its
shifts. Every badge sighting the scanner posts goes to `add(sighting)`, where the frame is
decoded and verified ON THE TABLET with the day's epoch keys (devices.token.verify):

- verified, seen at or before the shift start: present; after it: late (as the server's
  attendance process decides);
- no key for the badge and day (keys missing or stale), or a static iBeacon: unverified,
  never verified;
- flagged: forged (the MAC does not match the key), replayed (outside its time window, or
  its counter went back), cloned (the same token heard from two radio addresses, or heard
  again far from where it was first heard: devices.token.CloneWatch), unknown (a badge not on
  this crew's roster). A cloned badge is not counted for the shift at all; a forged or
  replayed frame is listed but does not undo a genuine one (the server judges the same way).

`rows(lang)`, `flags(lang)` and `counts()` are display data; `confirm(outbox)` puts one
`check_in` op with the badge frame per counted cleaner into the outbox, never for a flagged
one, and never twice for the same cleaner and shift (a better status later, e.g. unverified
then verified, does send again: the server only ever raises a status). Plain Python: no Kivy."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping

from devices import token
from devices.scanner import Sighting
from fieldapp import i18n

__all__ = ["CONFIRMED_PREFIX", "CheckinRoster", "FLAG_REASONS", "OPENS_BEFORE", "STATUSES", "crew_choices",
           "shift_label", "signal_level"]

STATUSES = ("expected", "unverified", "late", "present", "flagged")
_RANK = {"expected": 0, "unverified": 1, "late": 2, "present": 3}
FLAG_REASONS = ("unknown", "forged", "replayed", "cloned", "legacy")
CONFIRMED_PREFIX = "checkin.confirmed."
OPENS_BEFORE = timedelta(hours=2)   # as the server's check-in window (engine.domain.attendance.OPENS_BEFORE)

i18n.add({
    "checkin.status.expected": ("未到", "Expected"),
    "checkin.status.present": ("已到（已验证）", "Present (verified)"),
    "checkin.status.late": ("迟到（已验证）", "Late (verified)"),
    "checkin.status.unverified": ("已到（未验证）", "Present (unverified)"),
    "checkin.status.flagged": ("可疑", "Flagged"),
    "checkin.flag.unknown": ("未知工牌：不在此班组名单上", "Unknown badge: not on this crew's roster"),
    "checkin.flag.forged": ("伪造信号：校验码与工牌密钥不符", "Forged: the code does not match the badge's key"),
    "checkin.flag.replayed": ("重放信号：令牌不在有效时间窗口内", "Replayed: the token is outside its time window"),
    "checkin.flag.counter_back": ("重放信号：计数器倒退", "Replayed: the badge's counter went back"),
    "checkin.flag.cloned": ("克隆工牌：同一令牌来自两个无线地址 {addresses}",
                            "Cloned: the same token came from two radio addresses {addresses}"),
    "checkin.flag.cloned_far": ("克隆工牌：同一令牌在 {distance} 米外再次出现",
                                "Cloned: the same token was heard again {distance} m away"),
    "checkin.flag.legacy": ("静态信标工牌：无法与名单对应，未验证", "Static iBeacon badge: not matched to the roster, "
                                                      "unverified"),
    "checkin.status.flagged_why": ("可疑：{why}", "Flagged: {why}"),
    "checkin.short.forged": ("伪造", "forged"),
    "checkin.short.replayed": ("重放", "replayed"),
    "checkin.short.counter_back": ("重放", "replayed"),
    "checkin.short.cloned": ("克隆", "cloned"),
    "checkin.short.cloned_far": ("克隆", "cloned"),
    "checkin.no_badge": ("无工牌", "no badge"),
    "checkin.never": ("—", "—"),
    "checkin.confirmed": ("已确认", "confirmed"),
    "checkin.window.before": ("此班次 {opens} 起才能打卡：现在听到的工牌不计入",
                              "Check-in for this shift opens at {opens}: badges heard now are not counted"),
    "checkin.window.closed": ("此班次的打卡已于 {closes} 截止：之后听到的工牌不计入",
                              "Check-in for this shift closed at {closes}: badges heard since are not counted"),
    "checkin.shift": ("{date} {start} 开始（{grace} 截止）", "{date} starts {start} (until {grace})"),
})


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def signal_level(rssi: int | None) -> float:
    """0 (none, -100 dBm or weaker) .. 1 (-40 dBm or stronger), for a signal bar."""
    if rssi is None:
        return 0.0
    return max(0.0, min(1.0, (rssi + 100) / 60))


def shift_label(shift: dict, lang: str | None = None) -> str:
    start, grace = _time(shift["starts_at"]).astimezone(), _time(shift["grace_ends_at"]).astimezone()
    return i18n.t("checkin.shift", lang, date=start.strftime("%m-%d"), start=start.strftime("%H:%M"),
                  grace=grace.strftime("%H:%M"))


def crew_choices(crews: list[dict] | None) -> list[dict]:
    """The crews the tablet knows (pulled), each with its shifts, for the choosers."""
    return [c for c in (crews or []) if isinstance(c, dict) and c.get("code")]


@dataclass
class _Heard:
    """What the tablet heard of one badge during this scan."""
    badge_id: str
    rssi: int | None = None
    last_seen: datetime | None = None
    addresses: set[str] = field(default_factory=set)
    status: str = "expected"                   # best of the good sightings
    best: Sighting | None = None               # the sighting that gave `status` (earliest of that rank)
    last_counter: int | None = None
    flags: dict[str, str] = field(default_factory=dict)   # reason -> detail key/values (i18n key)
    flag_values: dict[str, dict] = field(default_factory=dict)
    cloned: bool = False


class CheckinRoster:
    """The live check-in of `shift` for `crew`.

    keys_for(badge_id) -> {epoch: key}: the tablet's epoch keys (fieldapp.badgekeys); an empty
    mapping makes that badge's frames unverified. place: (lat, lon) of the tablet, if known."""

    def __init__(self, crew: dict, shift: dict, keys_for: Callable[[str], Mapping[int, bytes]], *,
                 skew_steps: int = token.SKEW_STEPS, place: tuple[float, float] | None = None,
                 clone_distance_m: float = token.CLONE_DISTANCE_M, store: Any = None):
        self.crew, self.shift, self.keys_for, self.skew_steps = crew, shift, keys_for, skew_steps
        self.place, self.store = place, store
        self.starts_at = _time(shift["starts_at"])
        self.opens_at, self.closes_at = self.starts_at - OPENS_BEFORE, _time(shift["grace_ends_at"])
        self.outside = 0                        # sightings outside the shift's check-in window (not counted)
        self.by_badge = {c["badge_id"]: c for c in crew.get("roster", []) if c.get("badge_id")}
        self.heard: dict[str, _Heard] = {}
        self.clones = token.CloneWatch(clone_distance_m)
        self._token_addresses: dict[str, set[str]] = {}
        self.sightings = 0
        self._confirmed_local: dict[str, int] = {}

    # ---- feeding ---------------------------------------------------------------------------------
    def add(self, s: Sighting) -> str | None:
        """Take one sighting; returns the badge id whose row changed (None if nothing did).
        Outside the shift's check-in window a sighting is only counted in `outside` (the server
        would refuse it)."""
        self.sightings += 1
        if self.window(s.seen_at) != "open":
            self.outside += 1
            return None
        if s.company_id == token.IBEACON_COMPANY_ID or s.legacy:
            h = self._heard(s)
            if s.badge_id not in self.by_badge:
                self._flag(h, "legacy")
            else:
                self._good(h, s, "unverified")
            return s.badge_id
        keys = dict(self.keys_for(s.badge_id) or {}) if s.badge_id in self.by_badge else {}
        h = self._heard(s)
        if s.badge_id not in self.by_badge:
            self._flag(h, "unknown")
            return s.badge_id
        v = token.verify(s.data, s.seen_at, epoch_keys=keys, company_id=s.company_id, skew_steps=self.skew_steps,
                         last_counter=h.last_counter)
        if v.reason == token.INVALID or v.frame is None:
            return None
        frame = v.frame
        if v.reason == token.FORGED:
            self._flag(h, "forged")
            return s.badge_id
        if v.reason == token.OUTSIDE_WINDOW:
            self._flag(h, "replayed")
            return s.badge_id
        if v.reason == token.COUNTER_BACK:
            self._flag(h, "counter_back")
            return s.badge_id
        if self._clone_check(h, s, frame):
            return s.badge_id
        if v.ok:
            h.last_counter = max(h.last_counter or 0, frame.counter)
            self._good(h, s, "present" if s.seen_at <= self.starts_at else "late")
        else:   # NO_KEY: the tablet cannot say
            self._good(h, s, "unverified")
        return s.badge_id

    def _heard(self, s: Sighting) -> _Heard:
        h = self.heard.get(s.badge_id)
        if h is None:
            h = self.heard[s.badge_id] = _Heard(s.badge_id)
        h.rssi, h.last_seen = s.rssi, s.seen_at
        if s.address:
            h.addresses.add(s.address)
        return h

    def _flag(self, h: _Heard, reason: str, **values) -> None:
        h.flags[reason] = reason
        h.flag_values[reason] = values

    def _clone_check(self, h: _Heard, s: Sighting, frame: token.Frame) -> bool:
        if h.cloned:
            return True
        addresses = self._token_addresses.setdefault(frame.token, set())
        if s.address:
            addresses.add(s.address)
        if len(addresses) > 1:
            self._flag(h, "cloned", addresses=" / ".join(sorted(addresses)))
        elif self.place is not None:
            earlier = self.clones.seen(frame, token.Place(self.place[0], self.place[1], s.seen_at, "tablet"))
            if earlier is not None:
                d = token.distance_m(earlier.lat, earlier.lon, *self.place)
                self._flag(h, "cloned_far", distance=f"{d:.0f}")
        if "cloned" in h.flags or "cloned_far" in h.flags:
            h.cloned, h.status, h.best = True, "expected", None    # a cloned badge counts for nothing
            return True
        return False

    def _good(self, h: _Heard, s: Sighting, status: str) -> None:
        if h.cloned:
            return
        if _RANK[status] > _RANK[h.status]:
            h.status, h.best = status, s
        elif status == h.status and h.best is not None and s.rssi > h.best.rssi and s.seen_at <= h.best.seen_at:
            h.best = s

    # ---- display ------------------------------------------------------------------------------------
    def window(self, at: datetime) -> str:
        """"before", "open" or "closed": the shift's check-in window at `at`."""
        return "before" if at < self.opens_at else ("closed" if at > self.closes_at else "open")

    def window_text(self, at: datetime, lang: str | None = None) -> str:
        """Why badges heard at `at` do not count ("" while check-in is open)."""
        state = self.window(at)
        if state == "open":
            return ""
        return i18n.t(f"checkin.window.{state}", lang, opens=self.opens_at.astimezone().strftime("%m-%d %H:%M"),
                      closes=self.closes_at.astimezone().strftime("%m-%d %H:%M"))

    def status_of(self, badge_id: str) -> str:
        h = self.heard.get(badge_id)
        if h is None:
            return "expected"
        if h.cloned or (h.flags and h.status == "expected"):
            return "flagged"
        return h.status

    @staticmethod
    def _status_text(h: _Heard | None, status: str, lang: str | None) -> str:
        if status != "flagged" or h is None:
            return i18n.t(f"checkin.status.{status}", lang)
        why = dict.fromkeys(i18n.t(f"checkin.short.{r}", lang) for r in h.flags if r not in ("unknown", "legacy"))
        return i18n.t("checkin.status.flagged_why", lang, why="、".join(why) if lang == "zh" else ", ".join(why))

    def _flag_texts(self, h: _Heard, lang: str | None) -> list[str]:
        return [i18n.t(f"checkin.flag.{r}", lang, **h.flag_values.get(r, {})) for r in h.flags]

    def rows(self, lang: str | None = None) -> list[dict]:
        """One row per cleaner on the roster, in roster order."""
        confirmed = self.confirmed()
        out = []
        for c in self.crew.get("roster", []):
            badge = c.get("badge_id")
            h = self.heard.get(badge) if badge else None
            status = self.status_of(badge) if badge else "expected"
            rssi = h.rssi if h else None
            out.append({
                "cleaner_id": c["id"], "cleaner": c.get("name") or c["id"],
                "badge": badge or i18n.t("checkin.no_badge", lang), "status": status,
                "status_text": self._status_text(h, status, lang),
                "rssi": rssi, "rssi_text": f"{rssi} dBm" if rssi is not None else i18n.t("checkin.never", lang),
                "signal": signal_level(rssi),
                "last_seen": h.last_seen.astimezone().strftime("%H:%M:%S") if h and h.last_seen else "",
                "reason": "; ".join(self._flag_texts(h, lang)) if h else "",
                "confirmed": bool(badge and badge in confirmed),
            })
        return out

    def flags(self, lang: str | None = None) -> list[dict]:
        """Every flagged badge with its reasons, roster ones first."""
        out = []
        for badge, h in sorted(self.heard.items(), key=lambda kv: (kv[0] not in self.by_badge, kv[0])):
            if not h.flags:
                continue
            holder = self.by_badge.get(badge)
            out.append({"badge": badge, "cleaner": (holder.get("name") or holder["id"]) if holder else "",
                        "reasons": sorted(h.flags), "text": "; ".join(self._flag_texts(h, lang)),
                        "rssi": h.rssi, "counted": not h.cloned and h.status != "expected",
                        "last_seen": h.last_seen.astimezone().strftime("%H:%M:%S") if h.last_seen else ""})
        return out

    def counts(self) -> dict[str, int]:
        statuses = [self.status_of(c["badge_id"]) if c.get("badge_id") else "expected"
                    for c in self.crew.get("roster", [])]
        out = {s: statuses.count(s) for s in STATUSES}
        out["roster"] = len(statuses)
        out["here"] = out["present"] + out["late"] + out["unverified"]
        out["flagged_badges"] = sum(1 for h in self.heard.values() if h.flags)
        return out

    # ---- confirming -------------------------------------------------------------------------------------
    def _confirmed_key(self) -> str:
        return f"{CONFIRMED_PREFIX}{self.shift['id']}"

    def confirmed(self) -> dict[str, int]:
        """badge id -> rank already confirmed for this shift (kept in the store across restarts)."""
        if self.store is None:
            return dict(self._confirmed_local)
        return dict(self.store.get(self._confirmed_key(), {}))

    def to_confirm(self) -> list[tuple[str, Sighting, str]]:
        """(badge, sighting, status) of each counted cleaner not yet confirmed at this status."""
        done = self.confirmed()
        out = []
        for c in self.crew.get("roster", []):
            badge = c.get("badge_id")
            h = self.heard.get(badge) if badge else None
            if h is None or h.cloned or h.best is None or h.status not in ("present", "late", "unverified"):
                continue
            if done.get(badge, -1) >= _RANK[h.status]:
                continue
            out.append((badge, h.best, h.status))
        return out

    def payload(self, badge: str, s: Sighting, status: str) -> dict:
        lat, lon = self.place if self.place is not None else (None, None)
        return {"shift_id": int(self.shift["id"]), "badge_id": badge,
                "seen_at": s.seen_at.astimezone(timezone.utc).isoformat(),
                "verified": status in ("present", "late"), "source": "tablet",
                "frame": {"company_id": s.company_id, "data": s.data.hex(), "rssi": int(s.rssi), "lat": lat,
                          "lon": lon}}

    def confirm(self, outbox, gps: dict | None = None, items: list[tuple[str, Sighting, str]] | None = None
                ) -> list[str]:
        """One check_in op per counted, not yet confirmed cleaner (or per one of `items`, taken
        from to_confirm() earlier); returns the op ids (empty if there is nothing new). Each op
        is on disk before the cleaner is marked confirmed, so a crash in between can at worst
        send one again (the server keeps the best status, so that is harmless)."""
        ops = []
        done_before = self.confirmed()
        for badge, s, status in (self.to_confirm() if items is None else items):
            if done_before.get(badge, -1) >= _RANK[status]:
                continue
            ops.append(outbox.add("check_in", self.payload(badge, s, status), gps=gps))
            done = self.confirmed()
            done[badge] = _RANK[status]
            if self.store is None:
                self._confirmed_local = done
            else:
                self.store.put(self._confirmed_key(), done)
        return ops
