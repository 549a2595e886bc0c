"""A small, realistic demo district, seeded deterministically (random.Random(seed)).

Reference data (units, staff, streets, address codes, gas households, contracts, crews,
cleaners and badges) is written directly. Everything that has a process - work orders,
gas inspections, crew shifts and check-ins - goes THROUGH THE ENGINE, replayed on a
ManualClock over the last days so the history, SLA timers and audit log are real:
orders are reported, rectified, reviewed, rejected, re-routed and closed by actors whose
groups match the tasks, and the SLA timers that ran out fire as escalations.

    seed_database(url, households=300)        # builds its own engine on a manual clock
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Callable
from uuid import UUID

from sqlmodel import select

from devices.token import legacy_id
from engine.auth.models import Account, Device
from engine.auth.service import hash_password
from engine.clock import ManualClock, to_db, utcnow
from engine.demo_data import (
    AREA_PREFIX,
    AREAS,
    CONTRACTS,
    DEPOTS,
    DESCRIPTIONS,
    GIVEN,
    LONG_SLA,
    NOT_OURS_REASONS,
    REJECT_REASONS,
    SLA_HOURS,
    STREETS,
    SURNAMES,
    UNITS,
)
from engine.domain import attendance, badges, gas, workorders
from engine.domain.common import add_months
from engine.domain.models import AddressCode, Badge, Cleaner, Contract, Crew, Household, Shift, Staff, Street, Unit
from engine.runtime.errors import Actor

__all__ = ["AlreadySeeded", "CLEANERS_PER_CREW", "DEFAULT_SEED", "DELIVERERS", "DEMO_BEACON", "DEMO_PASSWORD",
           "HISTORY", "is_seeded", "seed_database", "seed_engine"]

DEFAULT_SEED = 20260302
DEMO_PASSWORD = "cityloop-demo"  # every demo account; README says so
HISTORY = timedelta(days=10)
DELIVERERS = 10
CLEANERS_PER_CREW = 8
DEMO_BEACON = UUID("5c17c0de-0000-4000-8000-00000000ba5e")   # iBeacon uuid of the demo's static legacy badges
Progress = Callable[[str], None]


class AlreadySeeded(Exception):
    """The database already holds a district; seeding twice would mix two."""


def is_seeded(engine) -> bool:
    with engine.transaction() as s:
        return s.exec(select(Unit.code).limit(1)).first() is not None


def seed_database(url: str | None = None, *, households: int = 300, seed: int = DEFAULT_SEED,
                  now: datetime | None = None, progress: Progress = print) -> dict:
    """Seed the demo into `url` (or DATABASE_URL / embedded SQLite). Returns counts."""
    from engine.system import build, bundled_files
    now = now or utcnow()
    clock = ManualClock(now - HISTORY - timedelta(hours=1))
    engine = build(url, clock=clock, deploy_bundled=False)
    try:
        if is_seeded(engine):   # refuse before deploying anything
            raise AlreadySeeded("this database already holds a district (units exist); nothing was changed")
        engine.deploy(bundled_files(), Actor("demo"))
        return seed_engine(engine, clock, households=households, seed=seed, now=now, progress=progress)
    finally:
        engine.db.dispose()


def seed_engine(engine, clock: ManualClock, *, households: int = 300, seed: int = DEFAULT_SEED,
                now: datetime | None = None, progress: Progress = print) -> dict:
    """Seed through `engine`, whose clock must be `clock`; the replay ends at `now`."""
    if households < 1 or households > 100_000:
        raise ValueError("households must be between 1 and 100000")
    if is_seeded(engine):
        raise AlreadySeeded("this database already holds a district (units exist); nothing was changed")
    now = now or utcnow()
    rng = random.Random(seed)
    district = _District(rng, now, progress)
    district.write_reference_data(engine, households)
    events = district.order_events() + district.gas_events() + district.shift_events()
    _replay(engine, clock, sorted(events, key=lambda e: (e.at, e.seq)), now, progress)
    return district.summary(engine)


@dataclass
class _Event:
    at: datetime
    seq: int
    kind: str
    run: Callable[[object], None]


@dataclass
class _Order:
    scenario: str
    area: str
    category: str
    source: str
    address: AddressCode
    reported_at: datetime
    steps: list = field(default_factory=list)    # (hours after report, action, extra)
    number: str | None = None


def _replay(engine, clock: ManualClock, events: list[_Event], now: datetime, progress: Progress) -> None:
    progress(f"replaying {len(events)} events of the last {HISTORY.days} days through the engine ...")
    for i, ev in enumerate(events, 1):
        clock.set(max(ev.at, clock()))
        engine.fire_due_timers()
        ev.run(engine)
        if i % 50 == 0 or i == len(events):
            progress(f"  {i}/{len(events)} events ({ev.kind})")
    clock.set(max(now, clock()))
    fired = 0
    for _ in range(20):       # SLA and grace-period timers that ran out by now
        n = engine.fire_due_timers()
        fired += n
        if n == 0:
            break
    progress(f"fired {fired} due timer(s) at the end of the replay")


def _photo(rng: random.Random) -> str:
    return rng.randbytes(32).hex()


def _open_task(engine, business_key: str) -> dict:
    tasks = engine.tasks.for_actor(None, business_key=business_key)
    if len(tasks) != 1:
        raise RuntimeError(f"{business_key}: expected one open task, found {[t['name'] for t in tasks]}")
    return tasks[0]


class _District:
    def __init__(self, rng: random.Random, now: datetime, progress: Progress):
        self.rng, self.now, self.progress = rng, now, progress
        self.seq = 0
        self.buildings: dict[str, list[AddressCode]] = {a: [] for a in AREAS}
        self.households: list[Household] = []
        self.crews: list[Crew] = []
        self.workers: dict[str, list[str]] = {}

    # ---- reference data ---------------------------------------------------------------
    def name(self) -> str:
        return self.rng.choice(SURNAMES) + self.rng.choice(GIVEN)

    def phone(self) -> str:
        return "1" + self.rng.choice("3589") + "".join(self.rng.choice("0123456789") for _ in range(9))

    def write_reference_data(self, engine, households: int) -> None:
        rng = self.rng
        with engine.transaction() as s:
            for code, (name, name_zh, kind, _) in UNITS.items():
                s.add(Unit(code=code, name=name, name_zh=name_zh, kind=kind))
            s.flush()
            staff = [("admin", "admin", None), ("designer", "designer", None)]
            staff += [(f"dispatcher{i}", "dispatcher", None) for i in (1, 2, 3)]
            staff += [(f"reviewer{i}", "reviewer", None) for i in (1, 2)]
            for code, (_, _, _, n) in UNITS.items():
                self.workers[code] = [f"worker.{code}.{i}" for i in range(1, n + 1)]
                staff += [(w, "unit_worker", code) for w in self.workers[code]]
                staff.append((f"leader.{code}", "unit_leader", code))
            staff += [(f"deliverer{i}", "deliverer", None) for i in range(1, DELIVERERS + 1)]
            crews = [(crew, contract) for contract, (_, _, cs) in CONTRACTS.items() for crew, _, _ in cs]
            staff += [(f"supervisor.{crew}", "supervisor", None) for crew, _ in crews]
            for sid, role, unit in staff:
                s.add(Staff(id=sid, name=self.name(), role=role, unit_code=unit, phone=self.phone()))
            s.flush()
            shared = hash_password(DEMO_PASSWORD)  # one Argon2 hash for every demo account
            for sid, _, _ in staff:
                s.add(Account(staff_id=sid, password_hash=shared, changed_at=to_db(self.now)))
            for code in UNITS:
                s.get(Unit, code).leader_id = f"leader.{code}"
            self.progress(f"units and staff: {len(UNITS)} units, {len(staff)} staff")

            flats = self._addresses(s, households)
            self.progress(f"streets and address codes: {len(STREETS)} streets, "
                          f"{sum(map(len, self.buildings.values()))} buildings, {len(flats)} flats")
            for i, flat in enumerate(sorted(rng.sample(flats, households), key=lambda f: f.code)):
                street_no = list(STREETS).index(flat.street_code)
                hh = Household(address_code=flat.code, holder=self.name(), phone=self.phone(),
                               deliverer_id=f"deliverer{street_no % DELIVERERS + 1}")
                if i % 30 != 7:                # one in 30 was never inspected
                    last = self.now - timedelta(days=rng.uniform(1, 183), hours=rng.uniform(0, 10))
                    hh.last_inspected_at = to_db(last)
                    hh.next_due_at = to_db(add_months(last, gas.INSPECTION_MONTHS))
                s.add(hh)
                self.households.append(hh)
            s.flush()
            due = sum(1 for h in self.households if h.next_due_at is None or h.next_due_at <= to_db(self.now))
            self.progress(f"gas households: {households} ({due} due for inspection)")

            badge_no = 0
            for contract, (contractor, unit, crew_rows) in CONTRACTS.items():
                s.add(Contract(code=contract, contractor=contractor, unit_code=unit))
                s.flush()
                for crew_code, muster, start in crew_rows:
                    (lat, lon), (glat, glon) = DEPOTS[crew_code]
                    crew = Crew(code=crew_code, contract_code=contract, supervisor_id=f"supervisor.{crew_code}",
                                muster_point=muster, shift_start=start, lat=lat, lon=lon)
                    s.add(crew)
                    self.crews.append(crew)
                    s.flush()
                    # The depot's fixed badge gateway (not paired: the demo's check-ins are replayed).
                    s.add(Device(id=f"gateway.{crew_code}", name=f"Badge gateway / 工牌基站 {muster}"[:120],
                                 kind="gateway", created_at=to_db(self.now), created_by="demo", lat=glat, lon=glon,
                                 crew_code=crew_code))
                    for i in range(1, CLEANERS_PER_CREW + 1):
                        badge_no += 1
                        legacy = badge_no == CLEANERS_PER_CREW   # one old static iBeacon badge
                        badge_id = f"BDG{badge_no:05d}"
                        badge = Badge(id=badge_id, kind="legacy" if legacy else "rotating",   # sealed master key:
                                      secret=None if legacy else badges.seal(s, badge_id, rng.randbytes(32)),
                                      beacon=legacy_id(DEMO_BEACON, 1, badge_no) if legacy else None)
                        s.add(badge)
                        s.flush()
                        s.add(Cleaner(id=f"cleaner.{crew_code}.{i:02d}", name=self.name(), crew_code=crew_code,
                                      badge_id=badge.id))
            self.progress(f"cleaning: {len(CONTRACTS)} contracts, {len(self.crews)} crews, {badge_no} cleaners "
                          f"with badges")

    def _addresses(self, s, households: int) -> list[AddressCode]:
        rng, flats = self.rng, []
        per_street = [0] * len(STREETS)
        streets = list(STREETS.items())
        for code, (name, name_zh, area, _) in streets:
            s.add(Street(code=code, name=name, name_zh=name_zh, area=area))
        s.flush()
        i = 0
        while len(flats) < math.ceil(households * 1.3) or min(per_street) < 2:
            code, (name, name_zh, area, (lat, lon)) = streets[i % len(streets)]
            no = per_street[i % len(streets)] = per_street[i % len(streets)] + 1
            house = 2 * no + (i // len(streets)) % 2 - 1
            bcode = f"{AREA_PREFIX[area]}{i % len(streets) + 1:02d}-{house:03d}"
            blat, blon = lat + rng.uniform(-0.0004, 0.0004), lon + no * 0.0011 + rng.uniform(0, 0.0003)
            building = AddressCode(code=bcode, street_code=code, lat=round(blat, 6), lon=round(blon, 6),
                                   label=f"{name_zh}{house}号 / No. {house} {name}")
            s.add(building)
            s.flush()
            self.buildings[area].append(building)
            for floor in range(1, rng.randint(5, 7) + 1):
                for room in range(1, rng.randint(2, 3) + 1):
                    flat = AddressCode(code=f"{bcode}-{floor:02d}{room:02d}", parent=bcode, street_code=code,
                                       lat=building.lat, lon=building.lon,
                                       label=f"{name_zh}{house}号{floor}{room:02d}室 / No. {house} {name}, "
                                             f"{floor}F-{room:02d}")
                    s.add(flat)
                    flats.append(flat)
            i += 1
        s.flush()
        return flats

    # ---- work orders --------------------------------------------------------------------
    def _event(self, at: datetime, kind: str, run) -> _Event:
        self.seq += 1
        return _Event(min(at, self.now), self.seq, kind, run)

    def _plan_orders(self) -> list[_Order]:
        rng, orders = self.rng, []
        all_cats = [c for c in SLA_HOURS if c != "gas_hazard"]

        def order(scenario, cats, age_hours, steps=(), area=None):
            area = area or rng.choice(list(AREAS))
            category = rng.choice(cats)
            reported = self.now - timedelta(hours=age_hours)
            orders.append(_Order(scenario, area, category, rng.choice(["citizen", "citizen", "camera", "patrol"]),
                                 rng.choice(self.buildings[area]), reported, list(steps)))
            return orders[-1]

        for _ in range(6):     # just reported: waiting at the unit
            order("new", all_cats, rng.uniform(0.1, 0.9))
        for _ in range(5):     # at the unit for a while, within the SLA
            order("at_unit", LONG_SLA, rng.uniform(2, 12))
        for _ in range(6):     # fixed, waiting for review
            age = rng.uniform(3, 16)
            order("in_review", LONG_SLA, age, [(rng.uniform(1, age - 0.5), "fixed", None)])
        for _ in range(3):     # rejected once, back at the unit
            order("rejected", LONG_SLA, rng.uniform(8, 18),
                  [(2, "fixed", None), (4, "reject", rng.choice(REJECT_REASONS))])
        order("rerouting", ["exposed_garbage"], 3, [(1.5, "not_ours", NOT_OURS_REASONS[0])], area="huaqiao")
        order("rerouted", ["exposed_garbage"], 20, [(2, "not_ours", NOT_OURS_REASONS[1]), (3, "reroute", "xinhe")],
              area="xinhe")
        for i in range(12):    # closed: some after a rejection, one late
            category = rng.choice(all_cats)
            sla = SLA_HOURS[category]
            fixed = sla + 6 if i == 0 else rng.uniform(0.3, 0.8) * sla
            steps = [(fixed, "fixed", None)]
            if i in (1, 2, 3):
                steps += [(fixed + 2, "reject", rng.choice(REJECT_REASONS)), (fixed + 5, "fixed", None)]
            steps.append((steps[-1][0] + rng.uniform(1, 6), "approve", None))
            order("closed", [category], steps[-1][0] + rng.uniform(2, 120), steps)
        for _ in range(2):     # overdue: the SLA ran out while at the unit
            order("overdue", ["exposed_garbage", "street_vending"], rng.uniform(28, 60))
        order("overdue", ["road_damage"], 7)
        return orders

    def order_events(self) -> list[_Event]:
        events = []
        for o in self._plan_orders():
            events.append(self._event(o.reported_at, "report", lambda e, o=o: self._report(e, o)))
            for hours, action, extra in o.steps:
                events.append(self._event(o.reported_at + timedelta(hours=hours), action,
                                          lambda e, o=o, a=action, x=extra: self._act(e, o, a, x)))
        return events

    def _report(self, engine, o: _Order) -> None:
        en, zh = self.rng.choice(DESCRIPTIONS[o.category])
        order = workorders.report(engine, Actor(f"{o.source}-intake"), source=o.source, category=o.category,
                                  area=o.area, description=f"{zh} / {en}", address_code=o.address.code,
                                  lat=o.address.lat, lon=o.address.lon,
                                  reporter=f"citizen {self.phone()[:3]}****" if o.source == "citizen" else None)
        o.number = order.number

    def _act(self, engine, o: _Order, action: str, extra) -> None:
        task = _open_task(engine, o.number)
        if action in ("fixed", "not_ours"):
            unit = next(g.split(":", 1)[1] for g in task["groups"] if g.startswith("unit:"))
            actor = Actor(self.rng.choice(self.workers[unit]), {f"unit:{unit}"})
            data = ({"action": "fixed", "after_photos": [_photo(self.rng)], "note": "已处理 / done"}
                    if action == "fixed" else {"action": "not_ours", "reason": extra})
        elif action in ("approve", "reject"):
            actor = Actor(f"reviewer{self.rng.randint(1, 2)}", {"reviewer"})
            data = {"decision": "approve"} if action == "approve" else {"decision": "reject", "reason": extra}
        else:
            actor = Actor(f"dispatcher{self.rng.randint(1, 3)}", {"dispatcher"})
            data = {"unit": extra, "reason": "Street office handles estate roads / 由街道协调物业处理"}
        engine.complete(task["id"], actor, data)

    # ---- gas inspections ----------------------------------------------------------------
    def gas_events(self) -> list[_Event]:
        rng, events = self.rng, []
        due = [h for h in self.households if h.next_due_at is None or h.next_due_at <= to_db(self.now)]
        picked = rng.sample(due, min(len(due), 8))
        outcomes = ["pass", "minor", "severe", None, None, None, None, None]
        for hh, outcome in zip(picked, outcomes):
            started = self.now - (timedelta(hours=rng.uniform(6, 18)) if outcome else
                                  timedelta(hours=rng.uniform(0.5, 6)))
            events.append(self._event(started, "inspection", lambda e, hh=hh: gas.start_inspection(
                e, hh.id, hh.deliverer_id, "delivery", Actor(hh.deliverer_id))))
            if outcome:
                events.append(self._event(started + timedelta(minutes=rng.uniform(10, 40)), "inspected",
                                          lambda e, hh=hh, o=outcome: self._inspect(e, hh, o)))
        return events

    def _inspect(self, engine, hh: Household, outcome: str) -> None:
        task = _open_task(engine, f"household:{hh.id}")
        data = {"hose_ok": "ok", "valve_leak_test": "pass", "ventilation": "adequate", "co_alarm": "working",
                "stove_flameout_protection": "present", "photos": [_photo(self.rng)],
                "cylinder_inspection_date": (self.now + timedelta(days=self.rng.randint(60, 900))).date().isoformat()}
        if outcome == "minor":
            data.update(hose_ok="aged", remarks="软管老化，已告知用户更换 / hose aged, told the household")
        elif outcome == "severe":
            data.update(valve_leak_test="leak", remarks="阀门漏气，已关阀停供 / valve leaking, supply stopped")
        engine.complete(task["id"], Actor(hh.deliverer_id), data)

    # ---- crew shifts ----------------------------------------------------------------------
    def shift_events(self) -> list[_Event]:
        rng = self.rng
        today = self.now.astimezone(attendance.DISTRICT_TZ).date()
        midnight = datetime.combine(today, time(0, 5), attendance.DISTRICT_TZ)
        events = [self._event(midnight, "plan shifts", lambda e: attendance.plan_day(e, today))]
        for crew in self.crews:
            hh, mm = (int(x) for x in crew.shift_start.split(":"))
            start = datetime.combine(today, time(hh, mm), attendance.DISTRICT_TZ)
            for i in range(1, CLEANERS_PER_CREW + 1):
                roll = rng.random()
                if roll < 0.1:
                    continue                                  # absent
                minutes = rng.uniform(-25, -1) if roll < 0.85 else rng.uniform(1, crew.grace_minutes - 1)
                seen = start + timedelta(minutes=minutes)
                if seen > self.now or seen <= midnight:
                    continue
                events.append(self._event(seen + timedelta(seconds=5), "check-in",
                                          lambda e, c=crew.code, n=i, seen=seen: self._check_in(e, c, n, seen)))
        return events

    def _check_in(self, engine, crew_code: str, n: int, seen: datetime) -> None:
        with engine.transaction() as s:
            cleaner = s.get(Cleaner, f"cleaner.{crew_code}.{n:02d}")
            badge = s.get(Badge, cleaner.badge_id)
            shift = s.exec(select(Shift).where(Shift.crew_code == crew_code).order_by(Shift.id.desc())).first()
        attendance.check_in(engine, shift.id, badge.id, seen, verified=badge.kind == "rotating",
                            source="gateway", actor=Actor(f"gateway.{crew_code}"))

    # ---- summary ----------------------------------------------------------------------------
    def summary(self, engine) -> dict:
        from engine.domain.models import WorkOrder
        with engine.transaction() as s:
            orders = list(s.exec(select(WorkOrder)).all())
            states: dict[str, int] = {}
            for o in orders:
                states[o.state] = states.get(o.state, 0) + 1
            result = {"units": len(s.exec(select(Unit.code)).all()), "staff": len(s.exec(select(Staff.id)).all()),
                      "households": len(self.households), "cleaners": len(s.exec(select(Cleaner.id)).all()),
                      "work_orders": len(orders), "work_order_states": dict(sorted(states.items())),
                      "overdue_open": sum(1 for o in orders if o.overdue and o.state != "closed"),
                      "shifts": len(s.exec(select(Shift.id)).all())}
        self.progress("seeded: " + ", ".join(f"{k} {v}" for k, v in result.items()))
        return result
