"""Applying pushed ops: each once, in its own transaction, with a durable verdict.

The sync_op row is written in the same transaction as the op's effect, so an op is either
applied and recorded or neither. Its primary key is the device-made op_id: a retry finds the
row and gets the stored result back ("duplicate"); a concurrent copy of the same op fails on
the key, its transaction (effect included) rolls back, and it is answered as a duplicate
too. The same op_id with another body is a "mismatch" (409) and the original stands.

An op naming photos the server does not have yet is stored as "waiting" and applied by
`release_waiting` when the last photo arrives (or when the device pushes it again).
Plain Python: no HTTP here."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy import exists as exists_
from sqlalchemy.exc import DataError as DBAPIDataError
from sqlalchemy.exc import IntegrityError

from engine import settings
from engine.clock import from_db, to_db
from engine.db import direct
from engine.domain.groups import groups_of
from engine.domain.models import Staff
from engine.domain.records import Attachment
from engine.runtime.errors import Actor
from sync.protocol import CODES, SHA256, InvalidOp, Op, PushBatch, Verdict, body_hash
from sync.server.models import SyncConflict, SyncOp, SyncOpWait

__all__ = ["Pusher", "Refused", "Taken", "Timing", "apply", "missing_photos", "needed_photos", "push", "push_one",
           "read_op", "release_stranded", "release_waiting", "settled_elsewhere", "skew_limit", "timing_of"]


def skew_limit() -> timedelta:
    """A device clock further off than this is flagged (never refused): CITYLOOP_SYNC_SKEW_SECONDS."""
    return timedelta(seconds=settings.current().sync_skew_seconds)
_SHA = re.compile(SHA256)


@dataclass(frozen=True)
class Pusher:
    """Who pushes: a person (through their tablet's token or their own)."""
    id: str
    role: str
    unit_code: str | None = None
    device: str | None = None

    @property
    def actor(self) -> Actor:
        return Actor(self.id, groups_of(self.role, self.unit_code))


@dataclass(frozen=True)
class Timing:
    server_time: datetime
    device_time: datetime
    skew: float            # seconds the device clock is ahead of the server's (negative: behind)
    flagged: bool

    def fields(self) -> dict:
        return {"server_time": self.server_time, "skew_seconds": round(self.skew, 3), "skew_flagged": self.flagged}


class Refused(Exception):
    """An op the server will not apply: 'conflict' (kept for a supervisor) or 'invalid'."""

    def __init__(self, verdict: str, message: str, message_zh: str, *, reason: str | None = None,
                 errors: dict | None = None, code: int | None = None, server_side: dict | None = None):
        self.verdict, self.message, self.message_zh = verdict, message, message_zh
        self.reason, self.errors, self.server_side = reason, errors, server_side
        self.code = code or CODES[verdict]
        super().__init__(message)


class Taken(Exception):
    """Another copy of this op was recorded first. A handler raises it too when it finds so
    (settled_elsewhere) before an effect it could not take back: the op is then answered
    with the stored verdict."""


Recorder = Callable[[object, Verdict], None]
# Core statements built once (rows with the columns as attributes, no ORM bookkeeping, no
# statement built per call: read on every push and every photo)
_OPS = select(*SyncOp.__table__.columns)
_INSERT_OP, _INSERT_WAIT = insert(SyncOp), insert(SyncOpWait)
_OPS_BY_ID = _OPS.where(SyncOp.op_id.in_(bindparam("ids", expanding=True)))
_OP_BY_ID = _OPS.where(SyncOp.op_id == bindparam("id"))
_WAITING_FOR = (_OPS.join(SyncOpWait, SyncOpWait.op_id == SyncOp.op_id)
                .where(SyncOpWait.sha256 == bindparam("sha"), SyncOp.verdict == "waiting")
                .order_by(SyncOp.created_at, SyncOp.op_id))
_STORED = select(Attachment.sha256).where(Attachment.sha256.in_(bindparam("shas", expanding=True)))
_STORED_ONE = select(Attachment.sha256).where(Attachment.sha256 == bindparam("sha"))
_SETTLE = (update(SyncOp).where(SyncOp.op_id == bindparam("id"), SyncOp.verdict == "waiting")
           .values(verdict=bindparam("new_verdict"), code=bindparam("new_code"), result=bindparam("new_result"),
                   settled_at=bindparam("at")))
_UNWAIT = delete(SyncOpWait).where(SyncOpWait.op_id == bindparam("id"))
_STAFF = select(Staff.role, Staff.unit_code, Staff.active).where(Staff.id == bindparam("id"))


# ---- entry points -------------------------------------------------------------------------------
def push(engine, who: Pusher, batch: PushBatch, *, exists: Callable[[str], bool] | None = None,
         sent_at: datetime | None = None, skew_threshold: timedelta | None = None) -> list[Verdict]:
    """One verdict per op, in order. Ops are independent: each has its own transaction. What
    the batch's ops were sent before and which of their photos are stored is read once."""
    ops = [o for o in batch.ops if isinstance(o, Op)]
    known: dict[str, SyncOp] = {}
    stored: set[str] = set()
    if ops:
        shas = sorted({sha for o in ops for sha in needed_photos(o)})
        with engine.reading() as conn:
            known = {r.op_id: r for r in conn.execute(_OPS_BY_ID, {"ids": [o.op_id for o in ops]})}
            if shas:
                stored = set(conn.execute(_STORED, {"shas": shas}).scalars())
    early = _wait_together(engine, who, ops, known, stored, exists, sent_at, skew_threshold)
    return [early.get(item.op_id) or push_one(engine, who, item, exists=exists, sent_at=sent_at,
                                              skew_threshold=skew_threshold, prefetched=(known, stored))
            for item in batch.ops]


def _wait_together(engine, who: Pusher, ops: list[Op], known: dict[str, SyncOp], stored: set[str], exists,
                   sent_at: datetime | None, threshold: timedelta) -> dict[str, Verdict]:
    """New ops of a batch whose photos are not all here yet, recorded 'waiting' in one
    transaction (a tablet pushes its ops before their photos: the ops are acknowledged at
    once, durably, and applied as the photos arrive). Each op's record is whole either way;
    if any of them collides with a concurrent copy, nothing is written here and every op
    goes its own way (push_one). Returns {op_id: verdict}."""
    new: dict[str, tuple[Op, list[str]]] = {}
    for op in ops:
        if op.op_id in known or op.op_id in new:
            continue
        missing = [sha for sha in needed_photos(op) if sha not in stored or (exists is not None and not exists(sha))]
        if missing:
            new[op.op_id] = (op, missing)
    if len(new) < 2:
        return {}
    now = engine.clock()
    out: dict[str, Verdict] = {}
    try:
        with engine.transaction() as s:
            conn, rows, waits = s.connection(), [], []
            for op, missing in new.values():
                timing = timing_of(op, sent_at, now, threshold)
                verdict = _waiting_verdict(op, timing, missing)
                rows.append(_row(who, op, body_hash(op), timing, verdict,
                                 verdict.model_dump(mode="json", exclude={"op_id", "verdict"})))
                waits += [{"op_id": op.op_id, "sha256": sha} for sha in missing]
                out[op.op_id] = verdict
            direct.execute_many(conn, _INSERT_OP, rows)     # (executemany: a multi-row VALUES of 20 x 19
            direct.execute_many(conn, _INSERT_WAIT, waits)  # values measured slower, compiled anew each time)
    except IntegrityError:
        return {}
    # A photo that landed between the check and the commit found nothing to release: the op
    # is settled when the device sends it again (it does, after its uploads), or by the
    # server's sweep (release_stranded), not by another query on every push.
    return out


def release_stranded(engine, exists: Callable[[str], bool] | None = None, limit: int = 500) -> int:
    """Apply waiting ops whose photos are all stored: the safety net for one whose last photo
    landed while the op was being recorded, or whose release a crash cut off. Run by the
    scheduler. Returns how many ops reached their final verdict."""
    with engine.reading() as conn:
        rows = conn.execute(
            _OPS.where(SyncOp.verdict == "waiting", ~exists_().where(   # no photo of it still missing
                SyncOpWait.op_id == SyncOp.op_id,
                ~exists_().where(Attachment.sha256 == SyncOpWait.sha256)))
            .order_by(SyncOp.created_at).limit(limit)).all()
    return sum(1 for row in rows if _settle_stored(engine, row, exists) is not None)


def push_one(engine, who: Pusher, item: Op | InvalidOp, *, exists=None, sent_at: datetime | None = None,
             skew_threshold: timedelta | None = None,
             prefetched: tuple[dict[str, SyncOp], set[str]] | None = None) -> Verdict:
    """`prefetched`: (sync_op rows by op_id, stored photo ids) read beforehand for a batch;
    a race with a concurrent copy is still caught by the sync_op key."""
    if isinstance(item, InvalidOp):
        return Verdict(op_id=item.op_id, verdict="invalid", code=422, errors=item.errors,
                       message="the op is not valid: " + "; ".join(f"{k}: {v}" for k, v in item.errors.items())[:500],
                       message_zh="操作内容无效，请检查后重新提交", server_time=engine.clock())
    op, digest = item, body_hash(item)
    for attempt in range(5):
        row = prefetched[0].get(op.op_id) if prefetched and not attempt else read_op(engine, op.op_id)
        if row is not None:
            if (prefetched and not attempt and row.verdict == "waiting" and row.body_hash == digest
                    and row.actor == who.id and any(sha not in prefetched[1] for sha in needed_photos(op))):
                return _stored_verdict(row, "waiting")   # its photos are still not all here
            return _again(engine, who, op, digest, row, exists)
        timing = timing_of(op, sent_at, engine.clock(), skew_threshold)
        try:
            if prefetched and not attempt:
                missing = [sha for sha in needed_photos(op)
                           if sha not in prefetched[1] or (exists is not None and not exists(sha))]
            else:
                missing = missing_photos(engine, needed_photos(op), exists)
            if missing:
                waiting = _wait(engine, who, op, digest, timing, missing)
                # the photo may have landed (and been released) between the check and the insert
                if not missing_photos(engine, missing, exists):
                    row = read_op(engine, op.op_id)
                    return (_settle_stored(engine, row, exists) if row.verdict == "waiting" else None) or waiting
                return waiting
            return apply(engine, who, op, digest, timing, stored=False)
        except Taken:
            continue
    raise RuntimeError(f"op {op.op_id} kept colliding with itself")


def release_waiting(engine, sha256: str, exists: Callable[[str], bool] | None = None) -> int:
    """A photo arrived: apply every waiting op that no longer misses one. Returns how many
    ops reached their final verdict. Safe to call twice, or from several workers at once."""
    with engine.reading() as conn:
        rows = direct.execute(conn, _WAITING_FOR, {"sha": sha256}).all()
    return sum(1 for row in rows if _settle_stored(engine, row, exists) is not None)


# ---- reading --------------------------------------------------------------------------------------
def settled_elsewhere(s, op_id: str) -> bool:
    """Whether a copy of this op already has its final verdict, as the session `s` sees it."""
    row = direct.execute(s.connection(), _OP_BY_ID, {"id": op_id}).first()
    return row is not None and row.verdict != "waiting"


def read_op(engine, op_id: str):
    """The op's sync_op row (columns as attributes), or None."""
    with engine.reading() as conn:
        return direct.execute(conn, _OP_BY_ID, {"id": op_id}).first()


def needed_photos(op: Op) -> list[str]:
    """Photos an op depends on: its `attachments`, and any sha256 in the payload's lists
    (form file fields such as after_photos; an inspect_household op's are in its `data`)."""
    found = list(op.attachments)
    values = list(op.payload.values())
    if op.kind == "inspect_household" and isinstance(op.payload.get("data"), dict):
        values += list(op.payload["data"].values())
    for value in values:
        if isinstance(value, list):
            found.extend(v for v in value if isinstance(v, str) and _SHA.fullmatch(v))
    return list(dict.fromkeys(found))


def missing_photos(engine, shas: list[str], exists: Callable[[str], bool] | None = None) -> list[str]:
    """The photos not stored yet: no attachment row, or (with `exists`) no bytes."""
    if not shas:
        return []
    with engine.reading() as conn:
        return _missing(conn, shas, exists)


def _missing(conn, shas: list[str], exists: Callable[[str], bool] | None) -> list[str]:
    if not shas:
        return []
    if len(shas) == 1:   # (the common case; an expanding IN is compiled on every call)
        stored = set(direct.execute(conn, _STORED_ONE, {"sha": shas[0]}).scalars())
    else:
        stored = set(conn.execute(_STORED, {"shas": list(shas)}).scalars())
    return [sha for sha in shas if sha not in stored or (exists is not None and not exists(sha))]


def timing_of(op: Op, sent_at: datetime | None, now: datetime, threshold: timedelta | None = None) -> Timing:
    """The device clock's offset, from the batch's sent_at when given (an op made offline
    hours ago is not a clock error), else from the op's own time. Flagged, never refused."""
    skew = ((sent_at or op.device_time) - now).total_seconds()
    limit = (threshold or skew_limit()).total_seconds()
    return Timing(now, op.device_time, skew, abs(skew) > limit)


# ---- the verdict of an op seen before ---------------------------------------------------------------
def _again(engine, who: Pusher, op: Op, digest: str, row: SyncOp, exists) -> Verdict:
    if row.body_hash != digest or row.actor != who.id:
        return Verdict(op_id=op.op_id, verdict="mismatch", code=409,
                       original=row.verdict if row.actor == who.id else None,
                       message="this op_id was already used for a different op; the original stands. "
                               "Make a new op_id for a new op.",
                       message_zh="该操作编号已用于另一项操作，原操作保持不变；新操作请使用新的编号。",
                       server_time=engine.clock())
    if row.verdict == "waiting":
        settled = _settle_stored(engine, row, exists)
        if settled is not None:
            return settled
        row = read_op(engine, op.op_id) or row  # settled by someone else meanwhile?
        return _stored_verdict(row, "waiting" if row.verdict == "waiting" else "duplicate")
    return _stored_verdict(row, "duplicate")


def _stored_verdict(row: SyncOp, verdict: str) -> Verdict:
    stored = json.loads(row.result)
    stored.update(op_id=row.op_id, verdict=verdict)
    if verdict == "duplicate":
        stored.update(original=row.verdict, code=200)
    return Verdict.model_validate(stored)


def _settle_stored(engine, row: SyncOp, exists) -> Verdict | None:
    """Apply a waiting op whose photos are all here now; None if it must still wait or
    someone else settled it first."""
    op = Op.model_validate(json.loads(row.body))
    with engine.reading() as conn:
        if _missing(conn, needed_photos(op), exists):
            return None
        staff = direct.execute(conn, _STAFF, {"id": row.actor}).first()
    who = Pusher(row.actor, staff.role if staff else "none", staff.unit_code if staff else None, row.device)
    timing = Timing(from_db(row.server_time), from_db(row.device_time) or op.device_time,
                    row.skew_seconds or 0.0, row.skew_flagged)
    try:
        if staff is None or not staff.active:
            raise Refused("invalid", "the account that made this op is no longer active",
                          "提交该操作的账号已停用", code=403, errors={"actor": "account not active"})
        return apply(engine, who, op, row.body_hash, timing, stored=True)
    except Refused as refusal:
        try:
            return _refuse(engine, who, op, row.body_hash, timing, refusal, stored=True)
        except Taken:
            return None
    except Taken:
        return None


# ---- applying ---------------------------------------------------------------------------------------
def apply(engine, who: Pusher, op: Op, digest: str, timing: Timing, stored: bool) -> Verdict:
    """Run the op's effect and record its verdict in the same transaction; a refusal is
    recorded on its own (with a conflict row when it is a conflict)."""
    from sync.server.handlers import HANDLERS
    record = _recorder(who, op, digest, timing, stored)
    try:
        return HANDLERS[op.kind](engine, who, op, timing, record)
    except Refused as refusal:
        return _refuse(engine, who, op, digest, timing, refusal, stored)
    except IntegrityError:
        _raise_if_taken(engine, op.op_id, stored)
        raise
    except DBAPIDataError:  # a value the database will not take (out of range, ...): this op only
        refusal = Refused("invalid", "a value in this op cannot be stored", "操作中有无法保存的数值",
                          errors={"payload": "a value cannot be stored"})
        return _refuse(engine, who, op, digest, timing, refusal, stored)


def _raise_if_taken(engine, op_id: str, stored: bool) -> None:
    row = read_op(engine, op_id)
    if row is not None and (not stored or row.verdict != "waiting"):
        raise Taken()


def _refuse(engine, who: Pusher, op: Op, digest: str, timing: Timing, refusal: Refused, stored: bool) -> Verdict:
    verdict = Verdict(op_id=op.op_id, verdict=refusal.verdict, code=refusal.code, errors=refusal.errors,
                      reason=refusal.reason, message=refusal.message, message_zh=refusal.message_zh,
                      **timing.fields())
    try:
        with engine.transaction() as s:
            _recorder(who, op, digest, timing, stored)(s, verdict)
            if refusal.verdict == "conflict":
                s.connection().execute(insert(SyncConflict), {
                    "op_id": op.op_id, "actor": who.id, "unit_code": who.unit_code, "kind": op.kind,
                    "task_id": op.task_id, "reason": refusal.reason or "conflict",
                    "device_side": json.dumps(op.body(), ensure_ascii=False),
                    "server_side": json.dumps(refusal.server_side or {"message": refusal.message}, ensure_ascii=False,
                                              default=str),
                    "created_at": to_db(engine.clock())})
    except IntegrityError:
        _raise_if_taken(engine, op.op_id, stored)
        raise
    return verdict


def _recorder(who: Pusher, op: Op, digest: str, timing: Timing, stored: bool) -> Recorder:
    def record(s, verdict: Verdict) -> None:
        result = verdict.model_dump(mode="json", exclude={"op_id", "verdict"})
        conn = s.connection()
        if stored:
            done = direct.execute(conn, _SETTLE, {"id": op.op_id, "new_verdict": verdict.verdict,
                                                  "new_code": verdict.code, "new_result": json.dumps(result),
                                                  "at": to_db(timing.server_time)})
            if done.rowcount != 1:
                raise Taken()  # settled by someone else meanwhile: roll this effect back
            direct.execute(conn, _UNWAIT, {"id": op.op_id})
            return
        direct.execute(conn, _INSERT_OP, _row(who, op, digest, timing, verdict, result))
    return record


def _row(who: Pusher, op: Op, digest: str, timing: Timing, verdict: Verdict, result: dict) -> dict:
    gps = op.gps
    return {"op_id": op.op_id, "actor": who.id[:64], "device": (who.device or None) and who.device[:64],
            "kind": op.kind, "task_id": op.task_id, "body_hash": digest,
            "body": json.dumps(op.body(), ensure_ascii=False), "verdict": verdict.verdict, "code": verdict.code,
            "result": json.dumps(result, ensure_ascii=False), "device_time": to_db(timing.device_time),
            "server_time": to_db(timing.server_time), "skew_seconds": round(timing.skew, 3),
            "skew_flagged": timing.flagged, "lat": gps.lat if gps else None, "lon": gps.lon if gps else None,
            "accuracy": gps.accuracy if gps else None, "created_at": to_db(timing.server_time),
            "settled_at": None if verdict.verdict == "waiting" else to_db(timing.server_time)}


def _waiting_verdict(op: Op, timing: Timing, missing: list[str]) -> Verdict:
    return Verdict(op_id=op.op_id, verdict="waiting", code=202, result={"missing": missing},
                   message=f"received; waiting for {len(missing)} photo(s) to be uploaded before it is applied",
                   message_zh=f"已收到；待 {len(missing)} 张照片上传后处理", **timing.fields())


def _wait(engine, who: Pusher, op: Op, digest: str, timing: Timing, missing: list[str]) -> Verdict:
    verdict = _waiting_verdict(op, timing, missing)
    try:
        with engine.transaction() as s:
            _recorder(who, op, digest, timing, False)(s, verdict)
            s.connection().execute(insert(SyncOpWait), [{"op_id": op.op_id, "sha256": sha} for sha in missing])
    except IntegrityError:
        _raise_if_taken(engine, op.op_id, False)
        raise
    return verdict
