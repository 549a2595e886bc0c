"""A district-sized dataset, bulk-inserted into a migrated database (for the map, list and
dashboard benchmarks and the browser tests that need a big district).

    .venv/bin/python -m bench.scale_data [--url sqlite:///x.db] [--orders 100000] [--points 60000]

    from bench.scale_data import build_district
    build_district(url, orders=100_000, points=60_000)

Writes, on top of whatever the database holds (it migrates it first; the demo may be seeded
before or after, `make run`/CITYLOOP_DEMO=1 seeds it at the first start):
- `points` gas households, each at its own flat address code (buildings of 1-12 flats on
  generated streets of the demo's three areas); about 1 in 8 overdue for inspection, 1 in 40
  never inspected, 1 in 200 with the supply suspended;
- `orders` work orders over the last year: plausible categories, areas, sources, units (as
  the dispatch table routes them), SLA times and states (most closed, the recent ones open,
  the open ones past their SLA marked overdue as the escalation would), with coordinates in
  their area. No process instances: these orders are for reading (maps, lists, dashboards),
  not for working through the engine.

Rows go in with SQLAlchemy Core executemany in batches (not the ORM, one object per row).
Street, address and order codes are prefixed (`sc-`, `SC...`, `WS...`) so they never meet the
demo's. Deterministic for a given seed and `now`."""
from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Callable

from sqlalchemy import insert, select

from engine.clock import to_db, utcnow
from engine.db.migrate import upgrade
from engine.db.session import make_engine
from engine.demo_data import DESCRIPTIONS, GIVEN, SLA_HOURS, SURNAMES
from engine.domain.models import AddressCode, Household, Staff, Street, WorkOrder

__all__ = ["AREA_BOXES", "DEFAULT_SEED", "Built", "build_district", "main"]

DEFAULT_SEED = 20261204
BATCH = 5000
# Each area's box (south, west, north, east), around the demo's streets of that area.
AREA_BOXES = {
    "huaqiao": (31.2240, 121.3850, 31.2400, 121.4050),
    "xinhe": (31.2020, 121.3970, 31.2180, 121.4180),
    "dongcheng": (31.1860, 121.4120, 31.2010, 121.4340),
}
AREA_ZH = {"huaqiao": "花桥", "xinhe": "新河", "dongcheng": "东城"}
STREET_WORDS = [("Changle", "长乐"), ("Anhe", "安和"), ("Xingfu", "幸福"), ("Jinqiao", "金桥"), ("Qingshui", "清水"),
                ("Minsheng", "民生"), ("Yongxing", "永兴"), ("Taiping", "太平"), ("Huayuan", "花园"),
                ("Wenhua", "文化"), ("Shuguang", "曙光"), ("Xiangyang", "向阳")]
STREETS_PER_AREA = 12
# (share, state) of the open orders; most orders of the past year are closed.
OPEN_SHARE = 0.2
OPEN_STATES = [(0.08, "reported"), (0.62, "at_unit"), (0.05, "rerouting"), (0.25, "in_review")]
SOURCES = ["citizen", "citizen", "citizen", "camera", "camera", "patrol", "inspection"]
Progress = Callable[[str], None]


class Built(dict):
    """Counts and timings of one build: households, addresses, orders, open_orders, seconds."""


def _unit(category: str, area: str) -> str:
    """The unit dispatch_rules.dmn would route to (near enough for reading)."""
    if category == "exposed_garbage":
        return "clean-east" if area == "dongcheng" else "clean-west"
    return {"street_vending": f"market-{area}", "illegal_ads": "ads-team", "road_damage": "roads",
            "manhole_cover": "roads", "gas_hazard": "gas-office", "tree_fallen": "green-team"}.get(category, area)


def _batches(conn, table, rows, progress: Progress, what: str, total: int) -> None:
    done, batch, t0 = 0, [], time.perf_counter()
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            conn.execute(insert(table), batch)
            done += len(batch)
            batch = []
            if done % (BATCH * 4) == 0:
                progress(f"  {what}: {done:,}/{total:,} ({done / (time.perf_counter() - t0):,.0f} rows/s)")
    if batch:
        conn.execute(insert(table), batch)


def build_district(url: str, *, orders: int = 100_000, points: int = 60_000, seed: int = DEFAULT_SEED,
                   now: datetime | None = None, progress: Progress = print) -> Built:
    """Migrate the database at `url` and add `points` gas households and `orders` work orders."""
    if orders < 0 or points < 0:
        raise ValueError("orders and points must not be negative")
    now = (now or utcnow()).astimezone(timezone.utc)
    rng = random.Random(seed)
    started = time.perf_counter()
    db = make_engine(url)
    try:
        upgrade(db)
        progress(f"scale data: schema current ({time.perf_counter() - started:.1f} s); "
                 f"adding {points:,} households and {orders:,} work orders")
        with db.begin() as conn:
            t0 = time.perf_counter()
            deliverers = list(conn.execute(select(Staff.id).where(Staff.role == "deliverer")
                                           .order_by(Staff.id)).scalars())
            streets, buildings = _streets_and_buildings(rng, points)
            conn.execute(insert(Street.__table__), [s for s, _ in streets.values()])
            flats = _flats(rng, streets, buildings, points)
            _batches(conn, AddressCode.__table__, flats, progress, "address codes", len(flats))
            t_addr = time.perf_counter() - t0
            progress(f"  {len(streets)} streets, {len(buildings):,} buildings, {len(flats):,} flats "
                     f"in {t_addr:.1f} s")
            t0 = time.perf_counter()
            _batches(conn, Household.__table__, _households(rng, flats, deliverers, now), progress,
                     "households", len(flats))
            t_hh = time.perf_counter() - t0
            progress(f"  {len(flats):,} households in {t_hh:.1f} s")
            t0 = time.perf_counter()
            open_count = [0]
            _batches(conn, WorkOrder.__table__, _orders(rng, orders, buildings, now, open_count), progress,
                     "work orders", orders)
            t_wo = time.perf_counter() - t0
            progress(f"  {orders:,} work orders ({open_count[0]:,} open) in {t_wo:.1f} s")
        if db.dialect.name == "postgresql":
            with db.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
    finally:
        db.dispose()
    total = time.perf_counter() - started
    progress(f"scale data: done in {total:.1f} s")
    return Built(households=points, addresses=len(flats), buildings=len(buildings), orders=orders,
                 open_orders=open_count[0], seconds=round(total, 2), seconds_households=round(t_hh, 2),
                 seconds_orders=round(t_wo, 2))


def _streets_and_buildings(rng: random.Random, points: int):
    """Streets run west-east across each area's box; buildings sit along them."""
    streets: dict[str, tuple[dict, tuple]] = {}
    for area, (south, west, north, east) in AREA_BOXES.items():
        for i in range(STREETS_PER_AREA):
            en, zh = STREET_WORDS[i % len(STREET_WORDS)]
            code = f"sc-{area}-{i + 1:02d}"
            lat = south + (north - south) * (i + 0.5) / STREETS_PER_AREA
            streets[code] = ({"code": code, "name": f"{en} Road ({area.title()})", "name_zh": f"{AREA_ZH[area]}{zh}路",
                              "area": area}, (lat, west, east))
    buildings = []          # (code, street code, lat, lon, house number, flats)
    codes = list(streets)
    per_street = {c: 0 for c in codes}
    placed = 0
    while placed < points:
        street = codes[len(buildings) % len(codes)]
        lat, west, east = streets[street][1]
        per_street[street] += 1
        house = per_street[street]
        flats = min(rng.choice((1, 2, 4, 6, 6, 8, 12)), points - placed)
        side = 1 if house % 2 else -1
        blat = lat + side * rng.uniform(0.0002, 0.0005)
        blon = west + (east - west) * rng.random()
        buildings.append((f"SC{codes.index(street) + 1:02d}-{house:05d}", street, blat, blon, house, flats))
        placed += flats
    return streets, buildings


def _flats(rng: random.Random, streets, buildings, points: int) -> list[dict]:
    rows = []
    for bcode, street, lat, lon, house, flats in buildings:
        s = streets[street][0]
        for n in range(flats):
            floor, room = n // 2 + 1, n % 2 + 1
            # each flat a metre or two apart, so each household is its own point on the map
            rows.append({"code": f"{bcode}-{floor:02d}{room:02d}", "parent": None, "street_code": street,
                         "label": f"{s['name_zh']}{house}号{floor}{room:02d}室 / No. {house} {s['name']}, "
                                  f"{floor}F-{room:02d}",
                         "lat": round(lat + rng.uniform(-0.00002, 0.00002), 6),
                         "lon": round(lon + rng.uniform(-0.00002, 0.00002), 6)})
    return rows[:points]


def _households(rng: random.Random, flats: list[dict], deliverers: list[str], now: datetime):
    four_months = timedelta(days=122)
    for i, flat in enumerate(flats):
        roll = rng.random()
        if roll < 0.025:
            last = None                                          # never inspected
        elif roll < 0.15:
            last = now - four_months - timedelta(days=rng.uniform(1, 90))   # overdue
        else:
            last = now - timedelta(days=rng.uniform(1, 120))
        yield {"address_code": flat["code"], "holder": rng.choice(SURNAMES) + rng.choice(GIVEN),
               "phone": "1" + rng.choice("3589") + f"{rng.randrange(10 ** 9):09d}",
               "deliverer_id": deliverers[i % len(deliverers)] if deliverers else None,
               "last_inspected_at": to_db(last) if last else None,
               "next_due_at": to_db(last + four_months) if last else None,
               "supply_suspended": rng.random() < 0.005}


def _orders(rng: random.Random, n: int, buildings: list, now: datetime, open_count: list):
    categories = list(SLA_HOURS)
    weights = [30, 14, 12, 8, 5, 2, 3, 10][:len(categories)]
    areas = list(AREA_BOXES)
    in_area: dict[str, list] = {a: [] for a in areas}
    for b in buildings:                      # street codes are sc-<area>-NN
        in_area[b[1].split("-")[1]].append(b)
    day = now.strftime("%Y%m%d")
    for i in range(n):
        category = rng.choices(categories, weights)[0]
        area = rng.choice(areas)
        south, west, north, east = AREA_BOXES[area]
        is_open = rng.random() < OPEN_SHARE
        sla = timedelta(hours=SLA_HOURS[category])
        age = sla * rng.uniform(0.05, 1.5) if is_open else timedelta(days=rng.uniform(0.5, 365))
        reported = now - age
        if is_open:
            roll, state = rng.random(), "at_unit"
            for share, name in OPEN_STATES:
                if roll < share:
                    state = name
                    break
                roll -= share
            open_count[0] += 1
            closed = None
        else:
            state = "closed"
            closed = reported + sla * rng.uniform(0.2, 1.6)
        sla_due = reported + sla
        building = rng.choice(in_area[area]) if in_area[area] and rng.random() < 0.5 else None
        lat, lon = ((building[2], building[3]) if building else
                    (rng.uniform(south, north), rng.uniform(west, east)))
        en, zh = rng.choice(DESCRIPTIONS[category])
        source = rng.choice(SOURCES)
        yield {"number": f"WS{day}-{i + 1:06d}", "source": source, "category": category, "area": area,
               "address_code": f"{building[0]}-0101" if building else None,
               "lat": round(lat, 6), "lon": round(lon, 6), "description": f"{zh} / {en}",
               "reporter": f"citizen 1{rng.randrange(30, 99)}****" if source == "citizen" else None,
               "state": state, "unit_code": None if state == "reported" else _unit(category, area),
               "priority": "high" if SLA_HOURS[category] <= 6 else "normal", "sla_due": to_db(sla_due),
               "overdue": (closed or now) > sla_due, "reject_count": int(rng.random() < 0.08),
               "reroute_count": int(rng.random() < 0.03), "reported_at": to_db(reported),
               "dispatched_at": (None if state == "reported" else
                                 to_db(reported + timedelta(minutes=rng.uniform(1, 20)))),
               "closed_at": to_db(closed) if closed else None, "instance_id": None, "origin": "scale_data"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=None, help="database URL (default: DATABASE_URL or the embedded SQLite)")
    ap.add_argument("--orders", type=int, default=100_000)
    ap.add_argument("--points", type=int, default=60_000, help="gas households (map points)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = ap.parse_args(argv)
    from engine.db.session import database_url
    build_district(args.url or database_url(), orders=args.orders, points=args.points, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
