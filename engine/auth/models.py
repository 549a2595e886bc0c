"""Accounts, paired devices, one-time pairing codes and login attempts."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Column, Index, Text
from sqlmodel import Field, SQLModel

__all__ = ["Account", "Device", "LoginAttempt", "PairingCode"]


class Account(SQLModel, table=True):
    """Log-in credentials of a staff member (Staff holds who they are)."""
    staff_id: str = Field(primary_key=True, foreign_key="staff.id", max_length=64)
    password_hash: str = Field(sa_column=Column(Text, nullable=False))
    changed_at: datetime


class Device(SQLModel, table=True):
    """A paired tablet, badge gateway or camera system with its own revocable token."""
    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=120)
    kind: str = Field(max_length=16)               # tablet | gateway | camera
    owner_id: Optional[str] = Field(default=None, foreign_key="staff.id", max_length=64)  # tablets act for them
    token_hash: Optional[str] = Field(default=None, max_length=64, unique=True)
    paired_at: Optional[datetime] = None
    revoked_at: Optional[datetime] = None
    last_seen_at: Optional[datetime] = None
    created_at: datetime
    created_by: str = Field(max_length=64)
    lat: Optional[float] = None                    # a fixed badge gateway's place (on the map)
    lon: Optional[float] = None
    crew_code: Optional[str] = Field(default=None, max_length=40)   # the depot (crew muster point) it serves


class PairingCode(SQLModel, table=True):
    code_hash: str = Field(primary_key=True, max_length=64)
    device_id: str = Field(foreign_key="device.id", max_length=40, index=True)
    expires_at: datetime
    used_at: Optional[datetime] = None


class LoginAttempt(SQLModel, table=True):
    """A failed log-in, for rate limiting across workers: counted per address and per
    account at an address (engine.auth.service). A successful log-in clears `username` on
    its account's rows from that address, so the address still counts them. Rows older than
    the window are deleted (service.prune_login_attempts)."""
    __table_args__ = (Index("ix_login_attempt_address_at", "address", "at"),
                      Index("ix_login_attempt_at", "at"))
    id: Optional[int] = Field(default=None, primary_key=True)
    address: str = Field(max_length=64)      # the client address (an IPv6 client's /64 network)
    username: Optional[str] = Field(default=None, max_length=64)
    at: datetime
