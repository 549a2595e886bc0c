"""Administrators manage people and devices."""
from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlmodel import select

from engine.api.deps import allow, engine_of
from engine.auth.models import Device
from engine.auth.service import Principal
from engine.domain.models import Staff
from engine.services import staff

__all__ = ["router"]  # (the routes themselves are reached through the router)

router = APIRouter(prefix="/api/v1", tags=["administration"])


class StaffIn(BaseModel):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$")
    name: str = Field(min_length=1, max_length=120)
    role: str
    unit_code: str | None = Field(default=None, max_length=40)
    phone: str | None = Field(default=None, max_length=32)
    password: str = Field(min_length=8, max_length=256)


class StaffOut(BaseModel):
    id: str
    name: str
    role: str
    unit_code: str | None
    active: bool


class PasswordIn(BaseModel):
    password: str = Field(min_length=8, max_length=256)


class DeviceIn(BaseModel):
    name: str = Field(min_length=1, max_length=120)
    kind: str = Field(pattern=r"^(tablet|gateway|camera)$")
    owner_id: str | None = Field(default=None, max_length=64)


class DeviceOut(BaseModel):
    id: str
    name: str
    kind: str
    owner_id: str | None
    paired_at: datetime | None
    revoked_at: datetime | None
    last_seen_at: datetime | None


class NewDeviceOut(DeviceOut):
    pairing_code: str = Field(description="one-time code, shown once; valid 15 minutes")


def _staff_out(st: Staff) -> StaffOut:
    return StaffOut(id=st.id, name=st.name, role=st.role, unit_code=st.unit_code, active=st.active)


def _device_out(d: Device, **extra) -> dict:
    return dict(id=d.id, name=d.name, kind=d.kind, owner_id=d.owner_id, paired_at=d.paired_at,
                revoked_at=d.revoked_at, last_seen_at=d.last_seen_at, **extra)


@router.get("/staff", response_model=list[StaffOut], summary="List staff / 人员列表")
def list_staff(request: Request, role: str | None = None, _: Principal = allow("staff.manage")):
    with engine_of(request).transaction(write=False) as s:
        q = select(Staff).order_by(Staff.id)
        if role:
            q = q.where(Staff.role == role)
        return [_staff_out(st) for st in s.exec(q.limit(5000))]


@router.post("/staff", response_model=StaffOut, status_code=201, summary="Add a staff member / 新增人员")
def create_staff(body: StaffIn, request: Request, principal: Principal = allow("staff.manage")):
    return _staff_out(staff.create(engine_of(request), principal, staff_id=body.id, name=body.name, role=body.role,
                                   password=body.password, unit_code=body.unit_code, phone=body.phone))


@router.put("/staff/{staff_id}/password", status_code=204, summary="Set a password / 设置密码")
def set_password(staff_id: str, body: PasswordIn, request: Request, principal: Principal = allow("staff.manage")):
    staff.set_password(engine_of(request), principal, staff_id, body.password)


@router.post("/staff/{staff_id}/disable", response_model=StaffOut, summary="Disable an account / 停用账号")
def disable_staff(staff_id: str, request: Request, principal: Principal = allow("staff.manage")):
    return _staff_out(staff.disable(engine_of(request), principal, staff_id))


@router.get("/devices", response_model=list[DeviceOut], summary="List devices / 设备列表")
def list_devices(request: Request, _: Principal = allow("devices.manage")):
    with engine_of(request).transaction(write=False) as s:
        return [_device_out(d) for d in s.exec(select(Device).order_by(Device.created_at).limit(5000))]


@router.post("/devices", response_model=NewDeviceOut, status_code=201,
             summary="Register a device and get its one-time pairing code / 登记设备")
def create_device(body: DeviceIn, request: Request, principal: Principal = allow("devices.manage")):
    device, code = staff.create_device(engine_of(request), principal, name=body.name, kind=body.kind,
                                       owner_id=body.owner_id)
    return _device_out(device, pairing_code=code)


@router.post("/devices/{device_id}/revoke", response_model=DeviceOut, summary="Revoke a device / 吊销设备")
def revoke_device(device_id: str, request: Request, principal: Principal = allow("devices.manage")):
    return _device_out(staff.revoke_device(engine_of(request), principal, device_id))
