"""The district's records: units and staff, addresses, work orders, gas households and
inspections, cleaning contracts, crews, badges, shifts and attendance, notifications."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

__all__ = ["AddressCode", "Attendance", "Badge", "BadgeSighting", "Cleaner", "Contract", "Crew", "Household",
           "Inspection", "Notification", "Shift", "Staff", "Street", "Unit", "WorkOrder"]


class Unit(SQLModel, table=True):
    """A responsible unit: cleaning contractor, street office, gas office, roads, ..."""
    code: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=120)
    name_zh: str = Field(max_length=120)
    kind: str = Field(max_length=24)
    leader_id: Optional[str] = Field(default=None, max_length=64)


class Staff(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=64)          # login name
    name: str = Field(max_length=120)
    role: str = Field(max_length=24, index=True)   # admin|designer|dispatcher|reviewer|unit_worker|unit_leader|
                                                   # deliverer|supervisor
    unit_code: Optional[str] = Field(default=None, foreign_key="unit.code", max_length=40)
    phone: Optional[str] = Field(default=None, max_length=32)
    active: bool = True


class Street(SQLModel, table=True):
    code: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=120)
    name_zh: str = Field(max_length=120)
    area: str = Field(max_length=40, index=True)    # street-office code (huaqiao, xinhe, dongcheng)


class AddressCode(SQLModel, table=True):
    """One code per building and a child code per flat ("one code scans the city")."""
    code: str = Field(primary_key=True, max_length=40)
    parent: Optional[str] = Field(default=None, foreign_key="addresscode.code", max_length=40)
    street_code: str = Field(foreign_key="street.code", max_length=40)
    label: str = Field(max_length=160)
    lat: float
    lon: float


class WorkOrder(SQLModel, table=True):
    __table_args__ = (Index("ix_workorder_unit_state", "unit_code", "state"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    number: str = Field(max_length=32, unique=True)          # the process business key
    source: str = Field(max_length=16)                        # citizen|camera|patrol|inspection
    category: str = Field(max_length=40, index=True)
    area: str = Field(max_length=40)
    address_code: Optional[str] = Field(default=None, max_length=40)
    lat: Optional[float] = None
    lon: Optional[float] = None
    description: str = Field(default="", sa_column=Column(Text, nullable=False))
    reporter: Optional[str] = Field(default=None, max_length=120)
    state: str = Field(default="reported", max_length=16, index=True)  # reported|at_unit|rerouting|in_review|closed
    unit_code: Optional[str] = Field(default=None, max_length=40)
    priority: Optional[str] = Field(default=None, max_length=16)
    sla_due: Optional[datetime] = None
    overdue: bool = False
    reject_count: int = 0
    reroute_count: int = 0
    reported_at: datetime
    dispatched_at: Optional[datetime] = None
    closed_at: Optional[datetime] = None
    instance_id: Optional[int] = None
    origin: Optional[str] = Field(default=None, max_length=64)   # e.g. "inspection:17"


class Household(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    address_code: str = Field(foreign_key="addresscode.code", max_length=40, unique=True)
    holder: str = Field(max_length=120)
    phone: Optional[str] = Field(default=None, max_length=32)
    deliverer_id: Optional[str] = Field(default=None, foreign_key="staff.id", max_length=64, index=True)
    last_inspected_at: Optional[datetime] = None
    next_due_at: Optional[datetime] = Field(default=None, index=True)
    supply_suspended: bool = False


class Inspection(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    household_id: int = Field(foreign_key="household.id", index=True)
    instance_id: int = Field(index=True)
    task_id: str = Field(max_length=36, unique=True)       # one record per inspection task, never twice
    deliverer_id: str = Field(max_length=64)
    at: datetime
    checklist: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    hazard_level: str = Field(max_length=8)             # none|minor|severe
    hazard_reason: Optional[str] = Field(default=None, max_length=255)
    work_order_number: Optional[str] = Field(default=None, max_length=32)


class Contract(SQLModel, table=True):
    code: str = Field(primary_key=True, max_length=40)
    contractor: str = Field(max_length=160)
    unit_code: str = Field(foreign_key="unit.code", max_length=40)


class Crew(SQLModel, table=True):
    code: str = Field(primary_key=True, max_length=40)
    contract_code: str = Field(foreign_key="contract.code", max_length=40, index=True)
    supervisor_id: Optional[str] = Field(default=None, foreign_key="staff.id", max_length=64)
    muster_point: str = Field(max_length=160)
    shift_start: str = Field(max_length=5)     # local "HH:MM"
    shift_minutes: int = 480
    grace_minutes: int = 15
    lat: Optional[float] = None                # the muster point (depot) on the map
    lon: Optional[float] = None


class Cleaner(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=120)
    crew_code: str = Field(foreign_key="crew.code", max_length=40, index=True)
    badge_id: Optional[str] = Field(default=None, max_length=32, unique=True)


class Badge(SQLModel, table=True):
    __table_args__ = (Index("ix_badge_beacon", "beacon", unique=True),)
    id: str = Field(primary_key=True, max_length=32)
    kind: str = Field(default="rotating", max_length=16)    # rotating | legacy (static iBeacon)
    secret: Optional[str] = Field(default=None, max_length=128)   # provisioned key (hex); none for legacy
    active: bool = True
    beacon: Optional[str] = Field(default=None, max_length=64)  # unique; legacy: devices.token.legacy_id(...)
    last_counter: Optional[int] = None        # highest token counter accepted (never goes back)
    last_seen_at: Optional[datetime] = None   # when that token was seen


class BadgeSighting(SQLModel, table=True):
    """A received badge advertisement kept as evidence (engine.domain.badges): every flagged
    one (clone, replay, forged) with its raw frame, and the verified ones, for the
    two-places check and to withdraw a check-in made with a token that turns out cloned."""
    __table_args__ = (Index("ix_badgesighting_badge_seen", "badge_id", "seen_at"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    badge_id: Optional[str] = Field(default=None, max_length=32)
    shift_id: Optional[int] = Field(default=None, foreign_key="shift.id", index=True)
    company_id: int
    data: str = Field(max_length=64)                   # the raw manufacturer data, hex
    counter: Optional[int] = None
    source: str = Field(max_length=64)                 # gateway / tablet id as sent
    sent_by: str = Field(max_length=64)                # the authenticated principal
    lat: Optional[float] = None
    lon: Optional[float] = None
    rssi: Optional[int] = None
    seen_at: datetime
    received_at: datetime
    verdict: str = Field(max_length=12)                # applied | ignored | flagged
    reason: Optional[str] = Field(default=None, max_length=16)   # clone | replay | forged
    detail: Optional[str] = Field(default=None, max_length=255)
    related_id: Optional[int] = None                   # the other sighting of a clone pair


class Shift(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("crew_code", "starts_at", name="uq_shift_crew_start"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    crew_code: str = Field(foreign_key="crew.code", max_length=40, index=True)
    starts_at: datetime
    grace_ends_at: datetime
    instance_id: Optional[int] = None
    closed: bool = False


class Attendance(SQLModel, table=True):
    shift_id: int = Field(foreign_key="shift.id", primary_key=True)
    cleaner_id: str = Field(foreign_key="cleaner.id", primary_key=True, max_length=64)
    status: str = Field(default="expected", max_length=12)   # expected|present|late|absent|unverified
    checked_in_at: Optional[datetime] = None
    badge_id: Optional[str] = Field(default=None, max_length=32)
    source: Optional[str] = Field(default=None, max_length=32)


class Notification(SQLModel, table=True):
    """Outbox of messages to people; `key` makes each one happen once."""
    id: Optional[int] = Field(default=None, primary_key=True)
    key: str = Field(max_length=200, unique=True)
    recipient: str = Field(max_length=120, index=True)    # staff id, group, contractor or household
    subject: str = Field(max_length=200)
    body: str = Field(default="", sa_column=Column(Text, nullable=False))
    created_at: datetime
    sent_at: Optional[datetime] = None
