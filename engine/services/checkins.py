"""Badge check-ins to one shift, for the HTTP batch route and the sync op handler alike: a
verdict per check-in.

Each check-in is judged against the shift (closed, the check-in window, a time in the
future), its badge (unknown, deactivated, not on the roster) and, when the badge's frame
comes with it, by the server itself (engine.domain.sightings: decoded, verified, clones,
replays and forgeries flagged and kept); without a frame it is somebody's word (a person's
stands, recorded as "manual"; a device acting for itself has none: unverified). The best
check-in of each cleaner counts; the good ones go to the shift's process in one step
(attendance.check_in_many), and if that step fails as a whole each goes on its own, so that
only the bad one is refused.

The object rule is engine.services.access.shift_for: another's shift is a NotFound."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Callable, Sequence, cast

from sqlalchemy import update
from sqlmodel import Session, col, select

from devices import token
from engine.clock import from_db
from engine.domain import attendance, sightings
from engine.domain.badges import BadgePolicy
from engine.domain.models import Attendance, Badge, BadgeSighting, Cleaner, Shift
from engine.runtime.errors import Actor, Conflict, EngineError, NotFound, ProcessError
from engine.services.access import Caller, shift_for

__all__ = ["MAX_SKEW", "NO_FRAME", "Frame", "Checkin", "Invalid", "Result", "Batch", "check_in"]

log = logging.getLogger("cityloop.services")
MAX_SKEW = timedelta(minutes=5)       # a device clock this far ahead of the server's is not believed
ATTEMPTS = 4                          # steps tried while other check-ins move the shift's instance first
RANK = {"expected": 0, "unverified": 1, "late": 2, "present": 3, "absent": 0}
NO_FRAME = ("no badge frame: a device's check-in without one counts as unverified "
            "/ 无工牌信号：设备未附信号的打卡记为未验证")
VERDICTS = ("applied", "ignored", "invalid", "conflict", "flagged")


@dataclass(frozen=True)
class Frame:
    """The badge's advertisement as the client received it."""
    company_id: int
    data: bytes                       # manufacturer data (without the company id)
    rssi: int | None = None
    lat: float | None = None
    lon: float | None = None


@dataclass(frozen=True)
class Checkin:
    """A badge seen at the muster point. Without a frame, `verified` is the sender's word;
    with one, the server decides it."""
    badge_id: str
    seen_at: datetime
    verified: bool | None = None
    source: str = ""
    frame: Frame | None = None


@dataclass(frozen=True)
class Invalid:
    """An item the caller could not read: it gets an "invalid" verdict with this message."""
    message: str
    badge_id: str | None = None


@dataclass
class Result:
    """The verdict of one check-in: applied (with the status it gave), ignored, flagged,
    invalid or conflict, with an HTTP-like code. `reason` says why in one word (closed,
    window, future, unknown_badge, badge_inactive, not_on_roster, already_checked_in,
    invalid_frame, not_this_badge, busy, process_ended, process_error, refused, or the
    frame judge's reason); `element`: the process element that failed (process_error)."""
    index: int
    badge_id: str | None
    verdict: str
    code: int
    status: str | None = None
    message: str | None = None
    reason: str | None = None
    element: str | None = None


@dataclass
class Batch:
    shift_id: int
    opens_at: datetime
    grace_ends_at: datetime
    closed: bool                      # the shift's process has closed it (its grace timer fired)
    shut: bool                        # it took no check-ins any more when the batch came (closed, or grace over)
    results: list[Result] = field(default_factory=list)

    def tally(self) -> dict[str, int]:
        return {k: sum(r.verdict == k for r in self.results) for k in VERDICTS}


def check_in(engine, who: Caller, actor: Actor, shift_id: int, items: Sequence[Checkin | Invalid], *,
             vouches: bool = True, policy: BadgePolicy | None = None, now: datetime | None = None,
             also: Callable[[Session, Batch], None] | None = None) -> Batch:
    """Check badges in to a shift of `who`'s (NotFound otherwise); a Result per item, in order.

    `vouches`: whether the caller's word counts without a frame (a person, or a tablet acting
    for its owner); a device acting for itself (a badge gateway) has no word of its own.
    `policy`: for judging frames (default: from the settings). `now`: the server time the
    batch is taken at. `also(session, batch)`, if given, runs once with the final verdicts, in
    the transaction that applies the check-ins when they go in one step (always so for a
    single check-in), else in a transaction of its own: a caller's record of the outcome
    commits with it."""
    run = _Run(engine, who, actor, now or engine.clock(), vouches, policy)
    with engine.transaction(write=False) as s:
        shift = shift_for(s, who, shift_id)
        ids = sorted({c.badge_id for c in items if isinstance(c, Checkin)})
        run.badges = {b.id: b for b in s.exec(select(Badge).where(col(Badge.id).in_(ids)))} if ids else {}
        run.holders = dict(s.exec(select(Cleaner.badge_id, Cleaner.id).where(col(Cleaner.badge_id).in_(ids))).all()) \
            if ids else {}
        run.status = dict(s.exec(select(Attendance.cleaner_id, Attendance.status)
                                 .where(Attendance.shift_id == shift.id)).all())
    run.start(shift, items)
    run.screen(items)
    run.judge_frames()
    run.rank()
    run.apply(also)
    return run.batch


class _Run:
    """One call of check_in: the shift, what was read of it, and the verdicts so far."""

    def __init__(self, engine, who: Caller, actor: Actor, now: datetime, vouches: bool, policy: BadgePolicy | None):
        self.engine, self.who, self.actor, self.now, self.vouches = engine, who, actor, now, vouches
        self.policy = policy
        self.badges: dict[str, Badge] = {}
        self.holders: dict[str, str] = {}
        self.status: dict[str, str] = {}
        self.candidates: list[tuple[int, Checkin, str]] = []   # (index, check-in, cleaner) still to decide
        self.pending: list[tuple[int, Checkin, str]] = []      # (index, check-in, new status) to apply
        self.rows: dict[int, int] = {}                         # index -> id of its stored sighting
        self.notes: dict[int, str] = {}

    def start(self, shift: Shift, items: Sequence) -> None:
        self.shift = shift
        opens, grace_end = attendance.checkin_window(shift)
        assert shift.id is not None   # (a stored row)
        # every slot gets its Result before check_in returns; None marks one not decided yet
        self.batch = Batch(shift.id, opens, grace_end, closed=shift.closed,
                           shut=shift.closed or self.now > grace_end,
                           results=cast("list[Result]", [None] * len(items)))
        self.closed_msg = (f"the grace period of shift {shift.id} ended at {grace_end.isoformat()}; check-ins are "
                           "closed / 宽限期已过，打卡已关闭")

    def set(self, i: int, badge_id: str | None, verdict: str, code: int, reason: str | None, message=None,
            **extra) -> None:
        self.batch.results[i] = Result(i, badge_id, verdict, code, message=message, reason=reason, **extra)

    # ---- judging ------------------------------------------------------------------------------------
    def screen(self, items: Sequence[Checkin | Invalid]) -> None:
        """What can be told from the item, the shift and the badge alone."""
        b = self.batch
        for i, item in enumerate(items):
            if isinstance(item, Invalid):
                self.set(i, item.badge_id, "invalid", 422, "invalid", item.message)
                continue
            bid = item.badge_id
            if b.shut:
                self.set(i, bid, "conflict", 409, "closed", self.closed_msg)
            elif item.seen_at > self.now + MAX_SKEW:
                self.set(i, bid, "invalid", 422, "future", f"seen_at is in the future (server time "
                         f"{self.now.isoformat()})")
            elif not b.opens_at <= item.seen_at <= b.grace_ends_at:
                self.set(i, bid, "invalid", 422, "window", "seen_at is outside this shift's check-in window "
                         f"({attendance.window_text(self.shift)})")
            else:
                badge, cleaner = self.badges.get(bid), self.holders.get(bid)
                if badge is None:
                    self.set(i, bid, "ignored", 200, "unknown_badge", "unknown badge")
                elif not badge.active:
                    self.set(i, bid, "ignored", 200, "badge_inactive", "badge deactivated")
                elif cleaner not in self.status:
                    self.set(i, bid, "ignored", 200, "not_on_roster", "badge not on this shift's roster")
                else:
                    self.candidates.append((i, item, cleaner))

    def judge_frames(self) -> None:
        """Check-ins that carry the badge's frame are verified here, by the server (the
        sender's `verified` is replaced); clones, replays and forgeries are flagged and
        stored for the shift."""
        framed: list[tuple[int, int, Checkin, Frame]] = []   # (candidate, index, check-in, its frame)
        for k, (i, item, _cleaner) in enumerate(self.candidates):
            f = item.frame
            if f is None:
                continue
            try:
                decoded = token.decode(f.data, f.company_id)
            except token.TokenError as exc:
                self.set(i, item.badge_id, "invalid", 422, "invalid_frame", f"{exc} / 无效的工牌信号")
                continue
            if decoded.badge_id != (self.badges[item.badge_id].beacon if decoded.legacy else item.badge_id):
                self.set(i, item.badge_id, "invalid", 422, "not_this_badge",
                         f"the frame is not badge {item.badge_id!r}'s / 信号不属于该工牌")
                continue
            framed.append((k, i, item, f))
        if not framed:
            return
        policy = self.policy if self.policy is not None else BadgePolicy.from_settings()
        with self.engine.transaction() as s:
            judge = sightings.Judge(s, self.now, policy, self.who.role, self.who.id, fixed_shift=self.shift)
            judged = judge.judge([sightings.Sighting(fr.company_id, fr.data, it.seen_at, fr.rssi,
                                                     fr.lat, fr.lon, it.source or None)
                                  for _, _, it, fr in framed])
            judge.withdraw_cloned()
            s.flush()
            for (k, i, item, _fr), out in zip(framed, judged):
                if out.verdict == "invalid":
                    self.set(i, item.badge_id, "invalid", 422, out.reason, out.message)
                elif out.verdict == "flagged":
                    self.set(i, item.badge_id, "flagged", 200, out.reason, f"{out.reason}: {out.message}")
                elif out.reason != "pending":
                    self.set(i, item.badge_id, "ignored", 200, out.reason, out.message)
                else:
                    self.candidates[k] = (i, replace(item, verified=out.verified), self.candidates[k][2])
                    if out.sighting_id is not None:
                        self.rows[i] = out.sighting_id

    def _take_word(self, i: int, item: Checkin) -> Checkin:
        """A check-in without the badge's frame is somebody's word, and attendance is paid
        for. A person's word stands, recorded with source "manual" so that it is never
        mistaken for a verified badge; a device acting for itself has no word: unverified."""
        if item.frame is not None:
            return item
        if not self.vouches:
            self.notes[i] = NO_FRAME
            return replace(item, verified=False)
        return replace(item, source=attendance.MANUAL) if item.verified else item

    def rank(self) -> None:
        """The best check-in of each cleaner counts: one no better than theirs so far is ignored."""
        start = from_db(self.shift.starts_at)
        for i, item, cleaner in self.candidates:
            if self.batch.results[i] is not None:
                continue
            item = self._take_word(i, item)
            new = ("present" if item.seen_at <= start else "late") if item.verified else "unverified"
            current = self.status[cleaner]
            if RANK[new] <= RANK.get(current, 0):
                self.set(i, item.badge_id, "ignored", 200, "already_checked_in",
                         f"already checked in as {current}", status=current)
                continue
            self.status[cleaner] = new
            self.pending.append((i, item, new))

    # ---- applying -----------------------------------------------------------------------------------
    def apply(self, also) -> None:
        """All good check-ins in one step of the shift's process. The process takes them in
        order until its grace period ends; the rest are a conflict. If the step fails as a
        whole, each goes on its own (a single one gets the step's own verdict)."""
        if self.pending:
            role = self.who.role
            sent = [(item.badge_id, item.seen_at, bool(item.verified), item.source or role)
                    for _, item, _ in self.pending]
            for _attempt in range(ATTEMPTS):
                try:
                    with self.engine.transaction() as s:
                        taken = attendance.check_in_many(self.engine, self.batch.shift_id, sent, self.actor, session=s)
                        self._settle(s, taken)
                        if also is not None:
                            also(s, self.batch)
                    return
                except NotFound:        # the shift's process is over
                    self._settle(None, 0)
                    break
                except Conflict:
                    continue            # another check-in moved the shift's instance first: apply on top of it
                except EngineError as exc:
                    if len(self.pending) == 1:
                        i, item, _ = self.pending[0]
                        self.batch.results[i] = self._failed(i, item, exc)
                    else:
                        self._one_by_one()
                    break
            else:
                for i, item, _ in self.pending:
                    self.set(i, item.badge_id, "conflict", 409, "busy", "the shift was busy; send this check-in again")
        self._note()
        if also is not None:
            with self.engine.transaction() as s:
                also(s, self.batch)

    def _settle(self, s: Session | None, taken: int) -> None:
        for k, (i, item, new) in enumerate(self.pending):
            if k < taken:
                self.set(i, item.badge_id, "applied", 200, None, status=new)
            else:
                self.set(i, item.badge_id, "conflict", 409, "process_ended", self.closed_msg)
        self._note()
        if s is not None:
            _mark_applied(s, [self.rows[i] for i, _, _ in self.pending[:taken] if i in self.rows])

    def _one_by_one(self) -> None:
        for i, item, new in self.pending:
            try:
                with self.engine.transaction() as s:
                    if attendance.check_in_many(self.engine, self.batch.shift_id, [(item.badge_id, item.seen_at,
                                                bool(item.verified), item.source or self.who.role)],
                                                self.actor, session=s):
                        self.set(i, item.badge_id, "applied", 200, None, status=new)
                        _mark_applied(s, [self.rows[i]] if i in self.rows else [])
                    else:
                        self.set(i, item.badge_id, "conflict", 409, "process_ended", self.closed_msg)
            except EngineError as exc:
                self.batch.results[i] = self._failed(i, item, exc)

    def _failed(self, i: int, item: Checkin, exc: EngineError) -> Result:
        bid = item.badge_id
        if isinstance(exc, NotFound):
            return Result(i, bid, "conflict", 409, message=f"shift {self.shift.id} is closed / 班次已关闭",
                          reason="process_ended")
        if isinstance(exc, ProcessError):   # not the sender's fault, and the process's text is not theirs to see
            log.error("shift %s could not take a check-in of %s: %s", self.shift.id, bid, exc)
            return Result(i, bid, "conflict", 500, message="the shift's process could not take this check-in; "
                          "administrators were told / 班次流程无法处理此打卡，已通知管理员", reason="process_error",
                          element=exc.element)
        conflict = isinstance(exc, Conflict)
        return Result(i, bid, "conflict" if conflict else "invalid", 409 if conflict else 422, message=str(exc),
                      reason="refused")

    def _note(self) -> None:
        for i, note in self.notes.items():
            r = self.batch.results[i]
            if r is not None and r.message is None:
                r.message = note


def _mark_applied(s: Session, sighting_ids: list[int]) -> None:
    if sighting_ids:
        s.execute(update(BadgeSighting).where(col(BadgeSighting.id).in_(sighting_ids)).values(verdict="applied"))
