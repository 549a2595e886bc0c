"""People and devices, for administrators: staff accounts (add, disable, set a password)
and devices (register one with its one-time pairing code, revoke one).

Who may is the caller's business (engine.auth.policy: staff.manage, devices.manage); the
rules of an account are here, each write in one transaction."""
from __future__ import annotations

from engine.auth import service as auth
from engine.auth.models import Device
from engine.auth.service import ROLES
from engine.domain.models import Staff, Unit
from engine.runtime.errors import Conflict, NotFound, ValidationFailed
from engine.services.access import Caller
from engine.services.rows import insert_new

__all__ = ["create", "set_password", "disable", "create_device", "revoke_device"]


def create(engine, who: Caller, *, staff_id: str, name: str, role: str, password: str,
           unit_code: str | None = None, phone: str | None = None) -> Staff:
    """A new staff member with their first password. Unit workers and leaders belong to a
    unit that exists; an id already taken is a conflict."""
    if role not in ROLES:
        raise ValidationFailed({"role": f"must be one of {', '.join(ROLES)}"})
    with engine.transaction() as s:
        if s.get(Staff, staff_id) is not None:
            raise Conflict(f"staff {staff_id!r} already exists")
        if unit_code and s.get(Unit, unit_code) is None:
            raise ValidationFailed({"unit_code": f"no unit {unit_code!r}"})
        if role in ("unit_worker", "unit_leader") and not unit_code:
            raise ValidationFailed({"unit_code": "unit workers and leaders belong to a unit"})
        staff = insert_new(s, Staff(id=staff_id, name=name, role=role, unit_code=unit_code, phone=phone),
                           f"staff {staff_id!r} already exists")
        auth.set_password(s, staff.id, password, engine.clock())
        return staff


def set_password(engine, who: Caller, staff_id: str, password: str) -> None:
    with engine.transaction() as s:
        if s.get(Staff, staff_id) is None:
            raise NotFound(f"no staff {staff_id!r}")
        auth.set_password(s, staff_id, password, engine.clock())


def disable(engine, who: Caller, staff_id: str) -> Staff:
    """The account can no longer sign in (its history stays)."""
    with engine.transaction() as s:
        staff = s.get(Staff, staff_id)
        if staff is None:
            raise NotFound(f"no staff {staff_id!r}")
        staff.active = False
        return staff


def create_device(engine, who: Caller, *, name: str, kind: str, owner_id: str | None) -> tuple[Device, str]:
    """A device to pair, registered by `who`, and its one-time pairing code (shown once)."""
    with engine.transaction() as s:
        return auth.create_device(s, name, kind, owner_id, who.id, engine.clock())


def revoke_device(engine, who: Caller, device_id: str) -> Device:
    with engine.transaction() as s:
        return auth.revoke(s, device_id, engine.clock())
