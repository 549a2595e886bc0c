"""Simulated badges on the fake BlueZ: a crew walking in, a cloned badge, a replayed frame.

Used by `cityloop badge-sim` (so a person can watch the gateway, and later the tablet app,
without hardware), by the end-to-end test and by bench/badge_scan.py. The badges mint real
tokens (devices.token) with their own keys; the attacks are what an attacker with a radio
can do:
- clone: a relay at the depot re-broadcasts, frame for frame, what the genuine badge (worn
  by someone far away) advertises right now;
- replay: a frame recorded the day before, broadcast again.

Every badge mints with the scenario's `clock` (the wall clock unless one is given): a test
hands in a fixed or manual clock so that which token step it sees is its own choice, not
the wall clock's phase."""
from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from devices import token
from devices.bluez.fake import FakeBluez

__all__ = ["CrewWalkIn", "Plan", "address_for", "crowd", "relay", "replayed", "rotating", "utcnow", "wait_for"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def address_for(badge_id: str, salt: str = "") -> str:
    """A stable random-static BLE address for a simulated transmitter."""
    raw = bytearray(hashlib.sha256(f"{salt}/{badge_id}".encode()).digest()[:6])
    raw[0] |= 0xC0                       # random static address: two top bits set
    return ":".join(f"{b:02X}" for b in raw)


def rotating(badge_id: str, key: bytes, clock: Callable[[], datetime] = utcnow) -> Callable[[], dict[int, bytes]]:
    """A genuine rotating badge: a fresh token at every advertisement."""
    return lambda: {token.COMPANY_ID: token.mint(badge_id, key, clock())}


def relay(genuine: Callable[[], dict[int, bytes]]) -> Callable[[], dict[int, bytes]]:
    """A clone: re-broadcasts whatever the genuine badge advertises now."""
    return lambda: dict(genuine())


def replayed(badge_id: str, key: bytes, recorded_at: datetime) -> dict[int, bytes]:
    """A frame recorded at `recorded_at`, broadcast unchanged."""
    return {token.COMPANY_ID: token.mint(badge_id, key, recorded_at)}


@dataclass
class Plan:
    """Who does what in the crew scenario."""
    present: list[str]
    absent: list[str]
    cloned: str | None
    replayed: str | None
    events: list[str] = field(default_factory=list)


class CrewWalkIn:
    """A crew at a depot (adapter `depot`); the last `absent` badges stay away. Of those, the
    first is cloned (its genuine badge is heard by adapter `elsewhere`, while a relay at the
    depot re-broadcasts its frames) and the second is replayed from the day before."""

    def __init__(self, fake: FakeBluez, badges: list[tuple[str, bytes]], *, absent: int = 3,
                 depot: str = "hci0", elsewhere: str | None = "hci1", walk_in: float = 5.0,
                 clock: Callable[[], datetime] = utcnow, say: Callable[[str], None] = lambda line: None):
        self.fake, self.keys, self.depot, self.elsewhere = fake, dict(badges), depot, elsewhere
        self.walk_in, self.clock, self.say = walk_in, clock, say
        ids = [b for b, _ in badges]
        absent = max(0, min(absent, len(ids)))
        away = ids[len(ids) - absent:]
        self.plan = Plan(ids[:len(ids) - absent], away,
                         away[0] if away and elsewhere else None, away[1] if len(away) > 1 else None)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def _log(self, line: str) -> None:
        self.plan.events.append(line)
        self.say(line)

    def attacks(self) -> None:
        """The clone and the replay start at once."""
        p = self.plan
        if p.cloned:
            genuine = rotating(p.cloned, self.keys[p.cloned], self.clock)
            self.fake.add_badge(address_for(p.cloned), genuine, rssi=-58, adapter=self.elsewhere)
            self.fake.add_badge(address_for(p.cloned, "relay"), relay(genuine), rssi=-62, adapter=self.depot)
            self._log(f"{p.cloned}: genuine badge far away ({self.elsewhere}); a relay at the depot re-broadcasts it "
                      f"/ 真工牌在远处，仓库有中继转发（克隆）")
        if p.replayed:
            old = replayed(p.replayed, self.keys[p.replayed], self.clock() - timedelta(days=1))
            self.fake.add_badge(address_for(p.replayed, "replay"), old, rssi=-66, adapter=self.depot)
            self._log(f"{p.replayed}: yesterday's frame replayed at the depot / 重放昨天的信号")

    def walk(self) -> None:
        """The present badges come into range one after the other, getting nearer."""
        present = self.plan.present
        gap = self.walk_in / max(1, len(present))
        for i, badge in enumerate(present):
            if self._stop.is_set():
                return
            self.fake.add_badge(address_for(badge), rotating(badge, self.keys[badge], self.clock),
                                rssi=-92 + (i % 5), adapter=self.depot, name=f"badge-{badge}")
            self._log(f"{badge}: walks in / 到岗")
            if gap:
                self._stop.wait(gap / 2)
            self.fake.move(address_for(badge), -55 - (i % 10), adapter=self.depot)
            if gap:
                self._stop.wait(gap / 2)

    def leave(self, badge: str) -> None:
        self.fake.remove(address_for(badge), adapter=self.depot)
        self._log(f"{badge}: leaves / 离开")

    def start(self) -> "CrewWalkIn":
        self.attacks()
        self._thread = threading.Thread(target=self.walk, name="crew-walk-in", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        if self._thread:
            self._thread.join(timeout)

    def stop(self) -> None:
        self._stop.set()
        self.join(5)


def crowd(fake: FakeBluez, n: int, key: bytes, adapter: str = "hci0", prefix: str = "K",
          clock: Callable[[], datetime] = utcnow) -> list[str]:
    """`n` rotating badges in range at once (for the benchmark)."""
    ids = [f"{prefix}{i:04d}" for i in range(n)]
    for i, badge in enumerate(ids):
        fake.add_badge(address_for(badge, prefix), rotating(badge, key, clock), rssi=-50 - i % 40, adapter=adapter)
    return ids


def wait_for(predicate: Callable[[], bool], timeout: float, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True
