"""AI-camera detections: how they become work orders, repeated sightings of one problem
attaching to its open order.

Plain domain logic (no HTTP). The services, settings (IntakeConfig: confidence threshold,
radius and time window) and locating are shared with Open311 intake in engine.domain.intake.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from engine.clock import to_db
from engine.domain import workorders
from engine.domain.common import exclusive
from engine.domain.intake import SERVICES, IntakeConfig, bounding_box, haversine_m, locate
from engine.domain.models import WorkOrder
from engine.domain.records import Attachment, CameraDetection, WorkOrderAttachment
from engine.runtime.audit import audit
from engine.runtime.errors import Actor, ValidationFailed

__all__ = ["CAMERA_ALIASES", "Detection", "DetectionOutcome", "camera_category", "open_duplicate", "record_detection"]

# ---- categories ------------------------------------------------------------------------------
# What AI cameras may call a category, besides the work-order category names themselves.
CAMERA_ALIASES = {"garbage": "exposed_garbage", "litter": "exposed_garbage", "overflowing_bin": "exposed_garbage",
                  "vendor": "street_vending", "street_vendor": "street_vending", "stall": "street_vending",
                  "illegal_ad": "illegal_ads", "advertisement": "illegal_ads", "flyer": "illegal_ads",
                  "pothole": "road_damage", "manhole": "manhole_cover", "missing_manhole_cover": "manhole_cover",
                  "fallen_tree": "tree_fallen"}


def camera_category(raw: str) -> str:
    name = raw.strip().lower().replace("-", "_").replace(" ", "_")
    category = name if name in workorders.CATEGORIES else CAMERA_ALIASES.get(name)
    if category is None:
        raise ValidationFailed({"category": f"unknown category {raw!r}; use one of {', '.join(workorders.CATEGORIES)}"})
    return category


# ---- camera detections ---------------------------------------------------------------------
@dataclass(frozen=True)
class Detection:
    camera_id: str
    category: str           # a work-order category (see camera_category)
    confidence: float
    at: datetime            # aware
    lat: float
    lon: float
    snapshot_sha256: str | None = None


@dataclass(frozen=True)
class DetectionOutcome:
    detection_id: int
    outcome: str            # created | attached | below_threshold | replayed
    work_order_id: int | None = None
    work_order_number: str | None = None
    distance_m: float | None = None
    threshold: float | None = None


def record_detection(engine, actor: Actor, d: Detection, cfg: IntakeConfig | None = None) -> DetectionOutcome:
    """Store a detection; below the confidence threshold that is all. Otherwise attach it to an
    open order of the same category within the radius and time window, or start a new order.
    Detections of one category are taken one at a time so two cameras never both create."""
    cfg = cfg or IntakeConfig.from_settings()
    with engine.transaction() as s:
        exclusive(s, f"camera-intake:{d.category}")
        if d.snapshot_sha256 and s.get(Attachment, d.snapshot_sha256) is None:
            raise ValidationFailed({"snapshot_sha256": "no attachment with this sha256; upload the snapshot first"})
        replay = s.exec(select(CameraDetection).where(
            CameraDetection.camera_id == d.camera_id, CameraDetection.category == d.category,
            CameraDetection.at == to_db(d.at), CameraDetection.lat == d.lat, CameraDetection.lon == d.lon)).first()
        if replay is not None:
            number = s.get(WorkOrder, replay.work_order_id).number if replay.work_order_id else None
            return DetectionOutcome(replay.id, "replayed", replay.work_order_id, number)
        now = engine.clock()
        row = CameraDetection(camera_id=d.camera_id, category=d.category, confidence=d.confidence, at=to_db(d.at),
                              lat=d.lat, lon=d.lon, snapshot_sha256=d.snapshot_sha256, received_at=to_db(now),
                              posted_by=actor.id[:64])
        if d.confidence < cfg.camera_min_confidence:
            s.add(row)
            s.flush()
            return DetectionOutcome(row.id, "below_threshold", threshold=cfg.camera_min_confidence)
        found = open_duplicate(s, cfg, d.category, d.lat, d.lon, d.at)
        if found is not None:
            order, distance, outcome = found[0], round(found[1], 1), "attached"
            row.work_order_id, row.duplicate = order.id, True
        else:
            where = locate(s, cfg, d.lat, d.lon)
            service = SERVICES[d.category]
            reported = workorders.report(
                engine, actor, source="camera", category=d.category, area=where.area, lat=d.lat, lon=d.lon,
                description=f"Camera {d.camera_id}: {service.name} (confidence {d.confidence:.2f}) / "
                            f"摄像头识别：{service.name_zh}",
                reporter=f"camera:{d.camera_id}"[:120], origin=f"camera:{d.camera_id}"[:64], session=s)
            order, distance, outcome = s.get(WorkOrder, reported.id), None, "created"
            row.work_order_id = order.id
        s.add(row)
        s.flush()
        if d.snapshot_sha256 and s.get(WorkOrderAttachment, (order.id, d.snapshot_sha256)) is None:
            s.add(WorkOrderAttachment(work_order_id=order.id, sha256=d.snapshot_sha256, kind="snapshot",
                                      added_by=actor.id[:64], at=to_db(now)))
        audit(s, now, order.instance_id, order.number, actor.id, "camera_detection", None,
              {"detection_id": row.id, "camera_id": d.camera_id, "confidence": d.confidence, "at": d.at.isoformat(),
               "duplicate": row.duplicate, "distance_m": distance})
        return DetectionOutcome(row.id, outcome, order.id, order.number, distance)


def open_duplicate(s: Session, cfg: IntakeConfig, category: str, lat: float, lon: float,
                   at: datetime) -> tuple[WorkOrder, float] | None:
    """The nearest open order of `category` within the radius, reported within the window
    of `at` (either side: a camera may upload late). None if there is none."""
    dlat, dlon = bounding_box(lat, lon, cfg.camera_radius_m)
    candidates = s.exec(select(WorkOrder).where(
        WorkOrder.category == category, WorkOrder.state != "closed",
        WorkOrder.lat.between(lat - dlat, lat + dlat), WorkOrder.lon.between(lon - dlon, lon + dlon),
        WorkOrder.reported_at >= to_db(at - cfg.camera_window), WorkOrder.reported_at <= to_db(at + cfg.camera_window))
        .limit(500)).all()
    near = [(haversine_m(lat, lon, o.lat, o.lon), o.id, o) for o in candidates]
    near = [n for n in near if n[0] <= cfg.camera_radius_m]
    if not near:
        return None
    distance, _, order = min(near, key=lambda n: (n[0], n[1]))
    return order, distance
