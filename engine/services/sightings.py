"""Raw badge advertisements pushed by a gateway or a tablet: each is decoded and verified by
the server, routed to the open shift of its holder's crew and checked in, or flagged (clone,
replay, forged) and kept (engine.domain.sightings judges; this owns the transaction).

A badge gateway pushes for any crew; anyone else only for the crews they may see
(engine.services.access.crews_visible): others' badges are ignored."""
from __future__ import annotations

from datetime import datetime

from sqlmodel import select

from engine.domain import sightings
from engine.domain.badges import BadgePolicy
from engine.domain.models import Crew
from engine.runtime.errors import Actor, Conflict
from engine.services.access import Caller, crews_visible

__all__ = ["ATTEMPTS", "push"]

ATTEMPTS = 3     # batches tried while other check-ins move a shift's instance first


def push(engine, who: Caller, actor: Actor, source: str, items: list[sightings.Sighting | str], *,
         policy: BadgePolicy | None = None, now: datetime | None = None) -> list[sightings.Outcome]:
    """An Outcome per item, in order (a str item is one the caller could not read: its
    message). `source`: the gateway or tablet that heard them. The batch is judged and
    applied in one transaction; Conflict if the shifts stayed busy."""
    policy = policy if policy is not None else BadgePolicy.from_settings()
    now = now or engine.clock()
    for _attempt in range(ATTEMPTS):
        try:
            with engine.transaction() as s:
                crews = None
                if who.role != "gateway":
                    crews = set(s.exec(select(Crew.code).where(*crews_visible(who))).all())
                judge = sightings.Judge(s, now, policy, source, who.id, crews)
                out = judge.judge(items)
                judge.apply(engine, out, actor, source)
            return out
        except Conflict:
            continue
    raise Conflict("the shifts were busy; send the batch again / 班次繁忙，请重新发送")
