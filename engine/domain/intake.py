"""Intake: how citizens' Open311 service requests become work orders.

Plain domain logic (no HTTP): the service list and its mapping to work-order categories,
locating a report in a street-office area, checking what a citizen sent and reading requests
back for the public. AI-camera detections (which share the services, settings and locating)
are de-duplicated into open orders in engine.domain.camera.

Locating (the `area` the dispatch table routes on), first rule that applies:
  1. `address_id` names an address code: its street's area (and its position if none given);
  2. lat/long: the street of the nearest address code within `locate_max_m` (default 1 km);
  3. `address_string` names a street (English or Chinese name) or an address code/label;
  4. otherwise `default_area` ("unlocated"): the dispatch table's catch-all rows route it and
     a dispatcher re-routes it by hand.

Settings come from the environment, read on each use (defaults in brackets):
CITYLOOP_CAMERA_MIN_CONFIDENCE [0.6], CITYLOOP_CAMERA_RADIUS_M [50],
CITYLOOP_CAMERA_WINDOW_HOURS [24], CITYLOOP_INTAKE_MAX_DISTANCE_M [1000],
CITYLOOP_INTAKE_DEFAULT_AREA [unlocated]. A bad value is logged and the default used.
"""
from __future__ import annotations

import hashlib
import logging
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping

from sqlalchemy import func
from sqlmodel import Session, select

from engine import settings
from engine.clock import from_db, to_db
from engine.db.models import AuditEvent
from engine.domain import workorders
from engine.domain.models import AddressCode, Street, Unit, WorkOrder
from engine.domain.records import Open311Request
from engine.runtime.errors import Actor, TooManyRequests, ValidationFailed
from engine.settings import Settings

__all__ = ["CITIZEN_WINDOW", "CitizenReport", "DEFAULT_SPAN", "EARTH_RADIUS_M", "IntakeConfig", "Location",
           "MAX_RESULTS", "RequestQuery", "SERVICES", "STATUS_NOTES", "Service", "Submitted", "TEXT_LIMITS",
           "XML_UNSAFE", "bounding_box", "clean_text", "find_requests", "haversine_m", "locate",
           "parse_citizen_report", "submit_citizen_report"]

log = logging.getLogger("cityloop.intake")
EARTH_RADIUS_M = 6_371_008.8
MAX_RESULTS = 1000
DEFAULT_SPAN = timedelta(days=90)   # GeoReport v2: without dates, the last 90 days


# ---- services ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Service:
    code: str            # the work-order category
    name: str
    name_zh: str
    group: str
    keywords: tuple[str, ...]
    notice: str          # what the citizen is told on submitting

    @property
    def description(self) -> str:
        return f"{self.name} / {self.name_zh}"


SERVICES: dict[str, Service] = {s.code: s for s in (
    Service("exposed_garbage", "Exposed garbage", "暴露垃圾", "sanitation", ("garbage", "litter", "bins", "垃圾"),
            "Sent to the cleaning contractor; usually cleared within 24 hours. / 已派往环卫单位，一般24小时内处理。"),
    Service("street_vending", "Street vending", "占道经营", "city appearance", ("vendor", "stall", "摊贩"),
            "Sent to the market patrol of the street office. / 已派往街道市容巡查队。"),
    Service("illegal_ads", "Illegal advertising", "违法小广告", "city appearance",
            ("ads", "flyers", "graffiti", "广告"),
            "Sent to the advertising removal team. / 已派往违法广告清理队。"),
    Service("road_damage", "Road damage", "道路破损", "roads", ("pothole", "pavement", "路面"),
            "Urgent: sent to roads maintenance. / 紧急：已派往道路养护单位。"),
    Service("manhole_cover", "Missing or broken manhole cover", "井盖缺失或破损", "roads", ("manhole", "井盖"),
            "Urgent: sent to roads maintenance. Keep clear of the opening. / 紧急：已派往道路养护单位，请远离井口。"),
    Service("gas_hazard", "Bottled gas hazard", "瓶装燃气隐患", "safety", ("gas", "cylinder", "燃气"),
            "Sent to the gas safety office. If you smell gas, leave and call 110/119. / "
            "已派往燃气安全办公室；闻到燃气味请撤离并拨打110/119。"),
    Service("tree_fallen", "Fallen tree or branch", "树木倒伏", "landscaping", ("tree", "branch", "树"),
            "Sent to the landscaping team. / 已派往绿化养护队。"),
    Service("other", "Other city problem", "其他城市管理问题", "other", ("other", "其他"),
            "Sent to the district dispatch desk. / 已转区城运调度台。"),
)}
assert set(SERVICES) == set(workorders.CATEGORIES), "one Open311 service per work-order category"

# ---- settings ---------------------------------------------------------------------------
@dataclass(frozen=True)
class IntakeConfig:
    camera_min_confidence: float = 0.6
    camera_radius_m: float = 50.0
    camera_window: timedelta = timedelta(hours=24)
    locate_max_m: float = 1000.0
    default_area: str = "unlocated"
    citizen_per_hour: int = 20     # anonymous reports per client address per hour

    @classmethod
    def from_settings(cls, config: Settings | None = None) -> "IntakeConfig":
        config = config or settings.current()
        return cls(camera_min_confidence=config.camera_min_confidence, camera_radius_m=config.camera_radius_m,
                   camera_window=config.camera_window, locate_max_m=config.intake_max_distance_m,
                   default_area=config.intake_default_area, citizen_per_hour=config.open311_per_hour)


# ---- locating ---------------------------------------------------------------------------
def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def bounding_box(lat: float, lon: float, radius_m: float) -> tuple[float, float]:
    """Half-sizes in degrees of a box holding the circle (a cheap index-friendly prefilter)."""
    dlat = math.degrees(radius_m / EARTH_RADIUS_M)
    return dlat, dlat / max(math.cos(math.radians(lat)), 0.01)


@dataclass(frozen=True)
class Location:
    area: str
    lat: float | None
    lon: float | None
    address_code: str | None = None
    how: str = "default"        # address_id | nearest_address | address_string | default


def locate(s: Session, cfg: IntakeConfig, lat: float | None = None, lon: float | None = None,
           address_string: str | None = None, address_id: str | None = None) -> Location:
    if address_id:
        row = s.exec(select(AddressCode, Street.area).join(Street, Street.code == AddressCode.street_code)
                     .where(AddressCode.code == address_id)).first()
        if row is None:
            raise ValidationFailed({"address_id": f"unknown address code {address_id!r}"})
        code, area = row
        return Location(area, code.lat if lat is None else lat, code.lon if lon is None else lon, code.code,
                        "address_id")
    if lat is not None and lon is not None:
        dlat, dlon = bounding_box(lat, lon, cfg.locate_max_m)
        rows = s.exec(select(AddressCode.lat, AddressCode.lon, Street.area)
                      .join(Street, Street.code == AddressCode.street_code)
                      .where(AddressCode.lat.between(lat - dlat, lat + dlat),
                             AddressCode.lon.between(lon - dlon, lon + dlon)).limit(5000)).all()
        best = min(((haversine_m(lat, lon, r.lat, r.lon), r.area) for r in rows), default=None)
        if best is not None and best[0] <= cfg.locate_max_m:
            return Location(best[1], lat, lon, None, "nearest_address")
    if address_string:
        area = _area_named(s, address_string)
        if area is not None:
            return Location(area, lat, lon, None, "address_string")
    return Location(cfg.default_area, lat, lon, None, "default")


def _area_named(s: Session, text: str) -> str | None:
    wanted = text.strip().lower()
    found = s.exec(select(Street.area).join(AddressCode, AddressCode.street_code == Street.code)
                   .where((func.lower(AddressCode.code) == wanted) | (func.lower(AddressCode.label) == wanted))).first()
    if found is not None:
        return found
    streets = s.exec(select(Street.name, Street.name_zh, Street.area).limit(5000)).all()
    named = [(len(n), area) for name, name_zh, area in streets for n in (name, name_zh)
             if n and n.lower() in wanted]
    return max(named)[1] if named else None


# ---- citizen reports (Open311) -------------------------------------------------------------
XML_UNSAFE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
TEXT_LIMITS = {"service_code": 40, "description": 4000, "address_string": 255, "address_id": 40, "email": 255,
                "first_name": 64, "last_name": 64, "phone": 32, "device_id": 64, "media_url": 500}


@dataclass(frozen=True)
class CitizenReport:
    service_code: str
    lat: float | None = None
    lon: float | None = None
    description: str = ""
    address_string: str | None = None
    address_id: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    device_id: str | None = None
    media_url: str | None = None


def clean_text(name: str, value: Any, limit: int) -> str | None:
    """A text field as sent: None when empty; refused when not text, too long or not
    representable in XML 1.0 / PostgreSQL text (control characters, NUL, lone surrogates)."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValidationFailed({name: "must be text"})
    value = value.strip()
    if len(value) > limit:
        raise ValidationFailed({name: f"longer than {limit} characters"})
    if XML_UNSAFE.search(value):
        raise ValidationFailed({name: "contains control characters"})
    return value or None


def _coordinate(name: str, value: Any, bound: float) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValidationFailed({name: "must be a number"})
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ValidationFailed({name: "must be a number"}) from None
    if not math.isfinite(number) or abs(number) > bound:
        raise ValidationFailed({name: f"must be between -{bound:g} and {bound:g}"})
    return number


def parse_citizen_report(fields: Mapping[str, Any]) -> CitizenReport:
    """Check what a citizen sent (GeoReport v2 POST fields; `long` is the longitude)."""
    text = {name: clean_text(name, fields.get(name), limit) for name, limit in TEXT_LIMITS.items()}
    code = text.pop("service_code")
    if code is None:
        raise ValidationFailed({"service_code": "required"})
    if code not in SERVICES:
        raise ValidationFailed({"service_code": f"unknown service {code!r}; see services.json"})
    lat, lon = _coordinate("lat", fields.get("lat"), 90), _coordinate("long", fields.get("long"), 180)
    if (lat is None) != (lon is None):
        raise ValidationFailed({"lat" if lat is None else "long": "lat and long go together"})
    if lat is None and not text["address_string"] and not text["address_id"]:
        raise ValidationFailed({"location": "a location is required: lat and long, address_string or address_id"})
    if text["email"] and not _EMAIL.match(text["email"]):
        raise ValidationFailed({"email": "not an e-mail address"})
    if text["media_url"] and not re.match(r"^https?://[^\s]+$", text["media_url"], re.IGNORECASE):
        raise ValidationFailed({"media_url": "must be an http(s) URL"})
    return CitizenReport(service_code=code, lat=lat, lon=lon, description=text.pop("description") or "", **text)


@dataclass(frozen=True)
class Submitted:
    id: int
    number: str
    notice: str


def submit_citizen_report(engine, actor: Actor, r: CitizenReport, cfg: IntakeConfig | None = None,
                          client: str | None = None) -> Submitted:
    """Record the request, start its work order (the dispatch table routes it), one transaction.

    `client` (an anonymous sender's address) is limited to cfg.citizen_per_hour reports an
    hour; only a hash of it is kept."""
    cfg = cfg or IntakeConfig.from_settings()
    client_key = hashlib.sha256(f"open311|{client}".encode()).hexdigest()[:64] if client is not None else None
    with engine.transaction() as s:
        if client_key is not None:
            _within_limit(s, client_key, cfg.citizen_per_hour, engine.clock())
        where = locate(s, cfg, r.lat, r.lon, r.address_string, r.address_id)
        name = " ".join(n for n in (r.first_name, r.last_name) if n)
        reported = workorders.report(engine, actor, source="citizen", category=r.service_code, area=where.area,
                                     description=r.description, address_code=where.address_code, lat=where.lat,
                                     lon=where.lon, reporter=(name or "citizen (Open311)")[:120], origin="open311",
                                     session=s)
        s.add(Open311Request(work_order_id=reported.id, service_code=r.service_code, address_string=r.address_string,
                             email=r.email, phone=r.phone, first_name=r.first_name, last_name=r.last_name,
                             device_id=r.device_id, media_url=r.media_url, requested_at=to_db(engine.clock()),
                             client_key=client_key))
        s.flush()
        notice = f"{SERVICES[r.service_code].notice} Work order {reported.number}."
        return Submitted(reported.id, reported.number, notice)


def _within_limit(s: Session, client_key: str, per_hour: int, now: datetime) -> None:
    """Raise TooManyRequests if this sender already reported `per_hour` times in the last hour.
    Runs in the writing transaction, so concurrent reports from one sender count each other
    (writers are serialized on SQLite; on PostgreSQL a burst may overshoot by the workers' count)."""
    since = to_db(now - CITIZEN_WINDOW)
    recent = s.exec(select(Open311Request.requested_at).where(Open311Request.client_key == client_key,
                                                             Open311Request.requested_at >= since)
                    .order_by(Open311Request.requested_at).limit(per_hour)).all()
    if len(recent) >= per_hour:
        retry = (from_db(recent[0]) + CITIZEN_WINDOW - now).total_seconds()
        wait = max(1, math.ceil(retry))
        raise TooManyRequests(f"too many reports from this address: at most {per_hour} an hour; "
                              f"try again in {wait} s / 上报过于频繁，请 {wait} 秒后再试", wait)


CITIZEN_WINDOW = timedelta(hours=1)


@dataclass
class RequestQuery:
    ids: list[int] | None = None
    service_codes: list[str] | None = None
    start: datetime | None = None
    end: datetime | None = None
    statuses: list[str] | None = None       # open | closed
    limit: int = MAX_RESULTS


def find_requests(s: Session, q: RequestQuery, now: datetime) -> list[dict]:
    """Open311 requests newest first, as GeoReport fields (datetimes aware, UTC). Only orders
    that came in through Open311 are public; with ids, the other filters do not apply."""
    stmt = (select(WorkOrder, Open311Request, Unit.name, Unit.name_zh)
            .join(Open311Request, Open311Request.work_order_id == WorkOrder.id)
            .join(Unit, Unit.code == WorkOrder.unit_code, isouter=True))
    if q.ids is not None:
        stmt = stmt.where(WorkOrder.id.in_(q.ids))
    else:
        start = now - DEFAULT_SPAN if q.start is None and q.end is None else q.start
        if start is not None:
            stmt = stmt.where(WorkOrder.reported_at >= to_db(start))
        if q.end is not None:
            stmt = stmt.where(WorkOrder.reported_at <= to_db(q.end))
        if q.service_codes:
            stmt = stmt.where(WorkOrder.category.in_(q.service_codes))
        if q.statuses and set(q.statuses) != {"open", "closed"}:
            closed = "closed" in q.statuses
            stmt = stmt.where(WorkOrder.state == "closed" if closed else WorkOrder.state != "closed")
    stmt = stmt.order_by(WorkOrder.reported_at.desc(), WorkOrder.id.desc()).limit(min(q.limit, MAX_RESULTS))
    rows = s.exec(stmt).all()
    updated = {}
    if rows:  # the last thing that happened to each order, from its audit log
        updated = dict(s.exec(select(AuditEvent.business_key, func.max(AuditEvent.at))
                              .where(AuditEvent.business_key.in_([o.number for o, *_ in rows]))
                              .group_by(AuditEvent.business_key)).all())
    return [_georeport(order, req, unit_name, unit_name_zh, updated.get(order.number))
            for order, req, unit_name, unit_name_zh in rows]


def _georeport(order: WorkOrder, req: Open311Request, unit_name, unit_name_zh, updated) -> dict:
    service = SERVICES.get(order.category)
    agency = unit_name if not unit_name or unit_name_zh in (None, "", unit_name) else f"{unit_name} / {unit_name_zh}"
    return {"service_request_id": order.id, "status": "closed" if order.state == "closed" else "open",
            "status_notes": STATUS_NOTES.get(order.state, order.state),
            "service_name": service.name if service else order.category, "service_code": order.category,
            "description": order.description, "agency_responsible": agency,
            "service_notice": service.notice if service else None,
            "requested_datetime": from_db(order.reported_at),
            "updated_datetime": from_db(updated) or from_db(order.reported_at),
            "expected_datetime": from_db(order.sla_due), "address": req.address_string,
            "address_id": order.address_code, "zipcode": None, "lat": order.lat, "long": order.lon,
            "media_url": req.media_url}


STATUS_NOTES = {"reported": "Received / 已受理", "at_unit": "With the responsible unit / 处置中",
                "rerouting": "Being passed to the right unit / 改派中", "in_review": "Fixed; being checked / 待核查",
                "closed": "Fixed and checked / 已结案"}
