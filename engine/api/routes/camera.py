"""AI-camera detections: repeated sightings of one problem attach to its open work order.

Below the confidence threshold a detection is only recorded. Otherwise an open order of the
same category within the radius and time window takes it as a duplicate; failing that a new
order starts (source "camera"). Thresholds: see engine.domain.camera."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime, BaseModel, Field
from sqlmodel import select

from engine.api.deps import actor_of, allow, engine_of
from engine.auth.service import Principal
from engine.clock import from_db
from engine.domain import camera
from engine.domain.models import WorkOrder
from engine.domain.records import CameraDetection
from engine.runtime.errors import NotFound, ValidationFailed

__all__ = ["router"]  # (the routes themselves are reached through the router)

router = APIRouter(prefix="/api/v1/camera", tags=["camera"])
MAX_CLOCK_AHEAD = timedelta(minutes=10)
MAX_AGE = timedelta(days=30)   # older sightings are history, not a problem to send anyone to


class DetectionIn(BaseModel):
    camera_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
    category: str = Field(min_length=1, max_length=40,
                          description="a work-order category (exposed_garbage, street_vending, illegal_ads, ...) "
                                      "or a camera alias of one (garbage, vendor, pothole, ...)")
    confidence: float = Field(ge=0, le=1)
    time: AwareDatetime = Field(description="when the camera saw it, ISO 8601 with offset")
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    snapshot_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$",
                                        description="an attachment already uploaded, by its SHA-256")


class DetectionOut(BaseModel):
    detection_id: int
    outcome: str = Field(description="created | attached | below_threshold | replayed")
    work_order_id: int | None
    work_order_number: str | None
    distance_m: float | None = Field(description="for attached: distance to the open order")
    threshold: float | None = None


class DetectionRow(BaseModel):
    id: int
    camera_id: str
    category: str
    confidence: float
    time: datetime
    lat: float
    lon: float
    snapshot_sha256: str | None
    work_order_id: int | None
    duplicate: bool
    received_at: datetime
    posted_by: str | None = Field(description="the camera system (device) or administrator that sent it")


@router.post("/detections", response_model=DetectionOut, status_code=201,
             summary="Report an AI-camera detection / 摄像头识别事件")
def detect(body: DetectionIn, request: Request, principal: Principal = allow("camera.detect")):
    engine = engine_of(request)
    now = engine.clock()
    if not 1970 <= body.time.year <= 9000:
        raise ValidationFailed({"time": "is out of range"})
    if body.time < now - MAX_AGE:
        raise ValidationFailed({"time": f"is more than {MAX_AGE.days} days ago"})
    if body.time > now + MAX_CLOCK_AHEAD:
        raise ValidationFailed({"time": "is in the future; check the camera's clock"})
    detection = camera.Detection(camera_id=body.camera_id, category=camera.camera_category(body.category),
                                 confidence=body.confidence, at=body.time, lat=body.lat, lon=body.lon,
                                 snapshot_sha256=body.snapshot_sha256)
    out = camera.record_detection(engine, actor_of(principal), detection)
    return DetectionOut(detection_id=out.detection_id, outcome=out.outcome, work_order_id=out.work_order_id,
                        work_order_number=out.work_order_number, distance_m=out.distance_m,
                        threshold=out.threshold)


@router.get("/detections", response_model=list[DetectionRow], summary="List detections / 识别记录")
def list_detections(request: Request,
                    work_order: str | None = Query(default=None, max_length=32,
                                                   description="work order id or number"),
                    camera_id: str | None = Query(default=None, max_length=64),
                    limit: int = Query(default=100, ge=1, le=1000), offset: int = Query(default=0, ge=0, le=1_000_000),
                    principal: Principal = allow("camera.detect")):
    """Administrators see every detection; a camera system only those it sent itself."""
    with engine_of(request).transaction(write=False) as s:
        q = select(CameraDetection)
        if principal.role == "camera":
            q = q.where(CameraDetection.posted_by == principal.id)
        if work_order is not None:
            if re.fullmatch(r"[0-9]{1,18}", work_order):
                order_id = int(work_order)
            else:
                order_id = s.exec(select(WorkOrder.id).where(WorkOrder.number == work_order)).first()
                if order_id is None:
                    raise NotFound(f"no work order {work_order!r}")
            q = q.where(CameraDetection.work_order_id == order_id)
        if camera_id is not None:
            q = q.where(CameraDetection.camera_id == camera_id)
        rows = s.exec(q.order_by(CameraDetection.at.desc(), CameraDetection.id.desc()).offset(offset).limit(limit))
        return [DetectionRow(id=d.id, camera_id=d.camera_id, category=d.category, confidence=d.confidence,
                             time=from_db(d.at), lat=d.lat, lon=d.lon, snapshot_sha256=d.snapshot_sha256,
                             work_order_id=d.work_order_id, duplicate=d.duplicate, received_at=from_db(d.received_at),
                             posted_by=d.posted_by)
                for d in rows]
