"""Badge sightings: the server decodes and re-verifies every advertisement a gateway or
tablet pushes (a client's "verified" is never believed), flags clones, replays and forgeries
(kept with the raw frame as BadgeSighting rows, never counted as present), routes each good
sighting to the open shift of the badge holder's crew and checks it in through the shift's
attendance process.

Clone rule: one badge seen at two places at least policy.clone_distance_m apart within
policy.clone_window is cloned. Both sightings are flagged, and the badge is not counted
present for that shift on any token: a check-in it already gave is withdrawn (back to
expected, or absent if the shift has closed) until a supervisor checks the person in by hand.
Counter rule: along the time a badge is seen, its counter never goes back (a sighting seen
later with a lower counter is a replay); sightings synced late (seen earlier) are not."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlmodel import Session, or_, select

from devices import token
from engine.clock import from_db, to_db
from engine.domain import attendance
from engine.domain.badges import BadgePolicy, master_key
from engine.domain.models import Attendance, Badge, BadgeSighting, Cleaner, Shift
from engine.runtime.errors import Actor, NotFound

__all__ = ["Judge", "KEEP", "MESSAGES", "Outcome", "RANK", "Sighting", "flags", "prune"]

RANK = {"expected": 0, "absent": 0, "unverified": 1, "late": 2, "present": 3}
MESSAGES = {
    "unknown_badge": "no such badge registered / 未登记的工牌",
    "badge_inactive": "badge deactivated / 工牌已停用",
    "not_issued": "badge not issued to anyone / 工牌未发放",
    "not_your_crew": "badge of a crew that is not yours / 非本班组工牌",
    "no_key": "badge has no key provisioned / 工牌未配置密钥",
    "not_on_roster": "holder not on this shift's roster / 持有人不在本班次名单中",
    "no_open_shift": "no open shift of the holder's crew at that time / 该时间没有持有人班组的开放班次",
    "already_checked_in": "already checked in / 已打卡",
    "shift_closed": "the shift's check-in period is over / 班次打卡已结束",
    "duplicate": "this frame from this source was received before / 该信号已收到过",
    "cloned_in_shift": "badge already flagged as cloned in this shift / 该工牌在本班次已被标记为克隆",
}


@dataclass
class Sighting:
    company_id: int
    data: bytes
    seen_at: datetime
    rssi: int | None = None
    lat: float | None = None
    lon: float | None = None
    source: str | None = None         # overrides the batch's source (a check-in item's own)


@dataclass
class Outcome:
    index: int
    verdict: str = "ignored"          # applied | ignored | flagged | invalid
    badge_id: str | None = None
    status: str | None = None
    reason: str | None = None
    message: str | None = None
    shift_id: int | None = None
    verified: bool = False            # the server's own verification of the frame
    # internal: a good sighting waiting for its check-in
    _seen_at: datetime | None = field(default=None, repr=False)
    _row: BadgeSighting | None = field(default=None, repr=False)
    _cleaner: str | None = field(default=None, repr=False)

    @property
    def sighting_id(self) -> int | None:
        """The id of the row the frame was stored as (once flushed); None if not stored."""
        return self._row.id if self._row is not None else None

    def set(self, verdict: str, reason: str, message: str | None = None, **extra) -> "Outcome":
        self.verdict, self.reason, self.message = verdict, reason, message or MESSAGES.get(reason, reason)
        for k, v in extra.items():
            setattr(self, k, v)
        if self._row is not None:
            self._row.verdict, self._row.reason = verdict, reason if verdict == "flagged" else None
            self._row.detail = (self.message or "")[:255] if verdict == "flagged" else None
        return self


class Judge:
    """One batch of sightings from one source, in the caller's write transaction."""

    def __init__(self, s: Session, now: datetime, policy: BadgePolicy, source: str, sent_by: str,
                 crews: set[str] | None = None, fixed_shift: Shift | None = None):
        self.s, self.now, self.policy, self.source, self.sent_by = s, now, policy, source, sent_by
        self.crews, self.fixed_shift = crews, fixed_shift
        self.withdraw: set[tuple[int, str]] = set()      # (shift id, badge id) whose check-in is withdrawn
        self.cloned: set[tuple[int, str]] = set()        # (shift id, badge id) flagged as cloned
        self.keys: dict[str, bytes | None] = {}          # master keys, unsealed once per batch

    # ---- loading -------------------------------------------------------------------------------
    def _load(self, frames: list[tuple[int, Sighting, token.Frame]]) -> None:
        ids = {f.badge_id for _, _, f in frames if not f.legacy}
        beacons = {f.badge_id for _, _, f in frames if f.legacy}
        q = select(Badge).where(or_(Badge.id.in_(ids), Badge.beacon.in_(beacons))).order_by(Badge.id)
        badges = list(self.s.exec(q.with_for_update())) if frames else []   # one batch per badge at a time
        self.by_id = {b.id: b for b in badges}
        self.by_beacon = {b.beacon: b for b in badges if b.beacon}
        holders = self.s.exec(select(Cleaner.badge_id, Cleaner.id, Cleaner.crew_code)
                              .where(Cleaner.badge_id.in_(list(self.by_id)))).all() if badges else []
        self.holders = {b: (c, crew) for b, c, crew in holders}
        seen = [x.seen_at for _, x, _ in frames] or [self.now]
        lo, hi = min(seen), max(seen)
        crews = {crew for _, crew in self.holders.values()}
        self.shifts: dict[str, list[Shift]] = {}
        if crews and self.fixed_shift is None:
            for sh in self.s.exec(select(Shift).where(Shift.crew_code.in_(crews), Shift.closed == False,  # noqa: E712
                                                      Shift.starts_at <= to_db(hi + self.policy.opens_before),
                                                      Shift.grace_ends_at >= to_db(lo)).order_by(Shift.starts_at)):
                self.shifts.setdefault(sh.crew_code, []).append(sh)
        w = self.policy.clone_window
        self.recent: dict[str, list[BadgeSighting]] = {}
        if badges:
            for row in self.s.exec(select(BadgeSighting).where(BadgeSighting.badge_id.in_(list(self.by_id)),
                                                               BadgeSighting.seen_at >= to_db(lo - w),
                                                               BadgeSighting.seen_at <= to_db(hi + w))):
                self.recent.setdefault(row.badge_id, []).append(row)
                if row.reason == "clone" and row.shift_id is not None:
                    self.cloned.add((row.shift_id, row.badge_id))

    def _shift_for(self, crew: str, seen: datetime) -> Shift | None:
        if self.fixed_shift is not None:
            return self.fixed_shift
        for sh in self.shifts.get(crew, []):
            if from_db(sh.starts_at) - self.policy.opens_before <= seen <= from_db(sh.grace_ends_at):
                return sh
        return None

    # ---- judging ----------------------------------------------------------------------------------
    def judge(self, items: list[Sighting | str]) -> list[Outcome]:
        """An Outcome per item (a str item is already invalid: its message). Good sightings
        are left with verdict "ignored" and reason "pending" for apply()."""
        out: list[Outcome] = []
        frames = []
        for i, item in enumerate(items):
            o = Outcome(index=i)
            out.append(o)
            if isinstance(item, str):
                o.set("invalid", "invalid", item)
                continue
            if item.seen_at > self.now + self.policy.max_device_skew:
                o.set("invalid", "future", f"seen_at is in the future (server time {self.now.isoformat()}) "
                                           "/ 时间晚于服务器时间")
                continue
            try:
                frames.append((i, item, token.decode(item.data, item.company_id)))
            except token.TokenError as exc:
                o.set("invalid", "invalid_frame", f"{exc} / 无效的工牌信号")
        self._load(frames)
        for i, item, frame in frames:
            self._one(out[i], item, frame)
        return out

    def _one(self, o: Outcome, item: Sighting, frame: token.Frame) -> None:
        badge = (self.by_beacon if frame.legacy else self.by_id).get(frame.badge_id)
        if badge is None:
            o.badge_id = None if frame.legacy else frame.badge_id
            o.set("ignored", "unknown_badge")
            return
        o.badge_id = badge.id
        cleaner, crew = self.holders.get(badge.id, (None, None))
        if not badge.active or cleaner is None:
            o.set("ignored", "badge_inactive" if not badge.active else "not_issued")
            return
        if self.crews is not None and crew not in self.crews:
            o.set("ignored", "not_your_crew")
            return
        shift = self._shift_for(crew, item.seen_at)
        o.shift_id, o._seen_at, o._cleaner = (shift.id if shift else None), item.seen_at, cleaner
        if frame.legacy:
            o.set("ignored", "pending")
            return
        source = item.source or self.source
        earlier = [r for r in self.recent.get(badge.id, []) if r.counter == frame.counter and r.source == source
                   and r.data == item.data.hex()]
        if earlier:
            prev = earlier[0]
            if prev.verdict == "flagged":
                o.set("flagged", prev.reason, prev.detail)
            else:
                o.set("ignored", "duplicate")
            return
        o._row = row = BadgeSighting(badge_id=badge.id, shift_id=o.shift_id, company_id=item.company_id,
                                     data=item.data.hex(), counter=frame.counter, source=source,
                                     sent_by=self.sent_by, lat=item.lat, lon=item.lon, rssi=item.rssi,
                                     seen_at=to_db(item.seen_at), received_at=to_db(self.now), verdict="ignored")
        self.s.add(row)
        self.recent.setdefault(badge.id, []).append(row)
        last = badge.last_counter if badge.last_seen_at is None or from_db(badge.last_seen_at) <= item.seen_at else None
        if badge.id not in self.keys:
            self.keys[badge.id] = master_key(self.s, badge)
        v = token.verify(frame, item.seen_at, key=self.keys[badge.id], skew_steps=self.policy.skew_steps,
                         last_counter=last)
        if v.reason == token.FORGED:
            o.set("flagged", "forged", v.message)
        elif v.reason in (token.OUTSIDE_WINDOW, token.COUNTER_BACK):
            o.set("flagged", "replay", v.message)
        elif not v.ok:
            o.set("ignored", "no_key")
        else:
            o.verified = True
            if badge.last_counter is None or frame.counter > badge.last_counter:
                badge.last_counter, badge.last_seen_at = frame.counter, to_db(item.seen_at)
            self._clone_check(o, row, item)

    def _clone_check(self, o: Outcome, row: BadgeSighting, item: Sighting) -> None:
        far = []
        if item.lat is not None and item.lon is not None:
            for other in self.recent.get(row.badge_id, []):
                if (other is row or other.lat is None or other.lon is None or other.reason in ("forged", "replay")
                        or abs(from_db(other.seen_at) - item.seen_at) > self.policy.clone_window):
                    continue
                d = token.distance_m(other.lat, other.lon, item.lat, item.lon)
                if d >= self.policy.clone_distance_m:
                    far.append((other, d))
        if far:
            self.s.flush()          # ids for the pair
            other, d = far[0]
            msg = (f"cloned: the same badge was seen {d:.0f} m away by {other.source} at "
                   f"{from_db(other.seen_at).isoformat()} / 疑似克隆：同一工牌在相距{d:.0f}米处同时出现")
            o.set("flagged", "clone", msg)
            row.related_id = other.id
            for other, _ in far:
                other.verdict, other.reason, other.related_id = "flagged", "clone", other.related_id or row.id
                other.detail = msg[:255]
                if other.shift_id is not None:
                    self.cloned.add((other.shift_id, other.badge_id))
            if o.shift_id is not None:
                self.cloned.add((o.shift_id, row.badge_id))
            self.withdraw |= {(sid, b) for sid, b in self.cloned if b == row.badge_id}
            return
        o.set("ignored", "pending")

    # ---- checking in ---------------------------------------------------------------------------------
    def apply(self, engine, out: list[Outcome], actor: Actor, source: str) -> None:
        """Check the good sightings in, one step per shift; withdraw cloned check-ins."""
        by_shift: dict[int, list[Outcome]] = {}
        for o in out:
            if o.reason != "pending":
                continue
            if o.shift_id is None:
                o.set("ignored", "no_open_shift")
            elif (o.shift_id, o.badge_id) in self.cloned:
                o.set("flagged", "clone", MESSAGES["cloned_in_shift"])
            else:
                by_shift.setdefault(o.shift_id, []).append(o)
        for shift_id, group in by_shift.items():
            shift = self.fixed_shift if self.fixed_shift is not None else self.s.get(Shift, shift_id)
            status = dict(self.s.exec(select(Attendance.cleaner_id, Attendance.status)
                                      .where(Attendance.shift_id == shift_id)).all())
            pending = []
            for o in group:
                new = ("present" if o._seen_at <= from_db(shift.starts_at) else "late") if o.verified else "unverified"
                current = status.get(o._cleaner)
                if current is None:
                    o.set("ignored", "not_on_roster")
                elif RANK[new] <= RANK.get(current, 0):
                    o.set("ignored", "already_checked_in", f"already checked in as {current} / 已打卡（{current}）",
                          status=current)
                else:
                    status[o._cleaner] = new
                    o.status = new
                    pending.append(o)
            if not pending:
                continue
            try:
                taken = attendance.check_in_many(engine, shift_id, [(o.badge_id, o._seen_at, o.verified, source)
                                                                    for o in pending], actor, session=self.s)
            except NotFound:     # the shift's process is over
                taken = 0
            for k, o in enumerate(pending):
                if k < taken:
                    o.set("applied", None, None)
                    o.message = None
                    if o._row is not None:
                        o._row.verdict = "applied"
                else:
                    o.set("ignored", "shift_closed", status=None)
        self.withdraw_cloned()

    def withdraw_cloned(self) -> None:
        """A badge flagged as cloned is not counted present for that shift on any token."""
        for shift_id, badge_id in sorted(self.withdraw):
            shift = self.s.get(Shift, shift_id)
            self.s.execute(update(Attendance).where(
                Attendance.shift_id == shift_id, Attendance.badge_id == badge_id,
                Attendance.status.in_(["present", "late", "unverified"]))
                .values(status="absent" if shift.closed else "expected", checked_in_at=None, badge_id=None,
                        source=None).execution_options(synchronize_session=False))


def flags(s: Session, shift_id: int) -> list[BadgeSighting]:
    """The flagged sightings of a shift, in the order they were seen."""
    return list(s.exec(select(BadgeSighting).where(BadgeSighting.shift_id == shift_id,
                                                   BadgeSighting.verdict == "flagged")
                       .order_by(BadgeSighting.seen_at, BadgeSighting.id)))


KEEP = timedelta(days=7)


def prune(s: Session, now: datetime, keep: timedelta = KEEP) -> int:
    """Forget good sightings older than `keep` (they only serve the two-places check and
    duplicate detection); flagged ones are evidence and stay. For a daily calendar job."""
    result = s.execute(delete(BadgeSighting).where(BadgeSighting.verdict != "flagged",
                                                   BadgeSighting.seen_at < to_db(now - keep)))
    return result.rowcount or 0
