"""Records around work orders: comments, content-addressed attachments, Open311 request
details, and AI-camera detections."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Column, Index, Text
from sqlmodel import Field, SQLModel

__all__ = ["Attachment", "CameraDetection", "Comment", "Open311Request", "WorkOrderAttachment"]


class Comment(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    work_order_id: int = Field(foreign_key="workorder.id", index=True)
    author: str = Field(max_length=64)
    at: datetime
    text: str = Field(sa_column=Column(Text, nullable=False))


class Attachment(SQLModel, table=True):
    """A stored file, named by the SHA-256 of its bytes (see engine.storage)."""
    sha256: str = Field(primary_key=True, max_length=64)
    size: int
    content_type: str = Field(max_length=64)
    created_at: datetime
    created_by: str = Field(max_length=64)


class WorkOrderAttachment(SQLModel, table=True):
    work_order_id: int = Field(foreign_key="workorder.id", primary_key=True)
    sha256: str = Field(foreign_key="attachment.sha256", primary_key=True, max_length=64)
    kind: str = Field(default="evidence", max_length=16)   # report | evidence | after | snapshot
    added_by: str = Field(max_length=64)
    at: datetime


class Open311Request(SQLModel, table=True):
    """What a citizen sent through GeoReport v2, beside the work order it became."""
    __table_args__ = (Index("ix_open311request_client_at", "client_key", "requested_at"),)
    work_order_id: int = Field(foreign_key="workorder.id", primary_key=True)
    service_code: str = Field(max_length=40)
    address_string: Optional[str] = Field(default=None, max_length=255)
    email: Optional[str] = Field(default=None, max_length=255)
    phone: Optional[str] = Field(default=None, max_length=32)
    first_name: Optional[str] = Field(default=None, max_length=64)
    last_name: Optional[str] = Field(default=None, max_length=64)
    device_id: Optional[str] = Field(default=None, max_length=64)
    media_url: Optional[str] = Field(default=None, max_length=500)
    requested_at: datetime
    # Who sent it, for the anonymous rate limit: a hash of the client address (not the address).
    client_key: Optional[str] = Field(default=None, max_length=64)


class CameraDetection(SQLModel, table=True):
    __table_args__ = (Index("ix_camera_detection_category_at", "category", "at"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    camera_id: str = Field(max_length=64, index=True)
    category: str = Field(max_length=40)
    confidence: float
    at: datetime
    lat: float
    lon: float
    snapshot_sha256: Optional[str] = Field(default=None, max_length=64)
    work_order_id: Optional[int] = Field(default=None, foreign_key="workorder.id", index=True)
    duplicate: bool = False            # attached to an order that was already open
    received_at: datetime
    posted_by: Optional[str] = Field(default=None, max_length=64, index=True)   # the device (or admin) that sent it
