"""A tiny district for tests: the units the dispatch table names, one street with flats,
households, a cleaning contract with a crew of cleaners and badges."""
from __future__ import annotations

from sqlmodel import Session

from engine.domain.models import AddressCode, Badge, Cleaner, Contract, Crew, Household, Staff, Street, Unit
from engine.runtime.errors import Actor

UNITS = ["clean-east", "clean-west", "market-huaqiao", "market-xinhe", "market-dongcheng", "ads-team",
         "roads", "gas-office", "green-team", "dispatch-desk"]

DISPATCHER = Actor("dispatcher1", {"dispatcher"})
REVIEWER = Actor("reviewer1", {"reviewer"})
WORKER_EAST = Actor("worker.clean-east.1", {"unit:clean-east"})
WORKER_WEST = Actor("worker.clean-west.1", {"unit:clean-west"})
ROADS = Actor("worker.roads.1", {"unit:roads"})
GAS_OFFICE = Actor("gasoffice1", {"gas_office", "unit:gas-office"})
DELIVERER = Actor("deliverer1", set())
PHOTO = "ab" * 32


def seed(engine, cleaners: int = 20) -> None:
    with Session(engine.db) as s:
        for code in UNITS:
            s.add(Unit(code=code, name=code, name_zh=code, kind="cleaning" if code.startswith("clean") else "office",
                       leader_id=f"leader.{code}"))
        s.flush()
        s.add(Staff(id="deliverer1", name="Deliverer One", role="deliverer"))
        s.add(Staff(id="super1", name="Supervisor", role="supervisor"))
        s.add(Street(code="dc-01", name="East Road", name_zh="东路", area="dongcheng"))
        s.flush()
        s.add(AddressCode(code="DC01-001", street_code="dc-01", label="1 East Road", lat=31.2, lon=121.4))
        s.flush()
        for flat in range(1, 4):
            s.add(AddressCode(code=f"DC01-001-{flat:02d}", parent="DC01-001", street_code="dc-01",
                              label=f"1 East Road, flat {flat}", lat=31.2, lon=121.4))
        s.flush()
        for flat in range(1, 4):
            s.add(Household(address_code=f"DC01-001-{flat:02d}", holder=f"Holder {flat}", deliverer_id="deliverer1"))
        s.add(Contract(code="C-EAST-1", contractor="East Cleaning Co.", unit_code="clean-east"))
        s.flush()
        s.add(Crew(code="crew-e1", contract_code="C-EAST-1", supervisor_id="super1", muster_point="East depot",
                   shift_start="06:00", grace_minutes=15))
        s.flush()
        for i in range(cleaners):
            s.add(Badge(id=f"B{i:04d}", secret="00" * 16))
            s.add(Cleaner(id=f"cl{i:03d}", name=f"Cleaner {i}", crew_code="crew-e1", badge_id=f"B{i:04d}"))
        s.commit()


def only_task(engine, actor: Actor, business_key: str | None = None, name: str | None = None) -> dict:
    tasks = [t for t in engine.tasks.for_actor(actor, business_key=business_key) if name is None or t["name"] == name]
    assert len(tasks) == 1, tasks
    return tasks[0]
