"""The one-map view's data: one request per layer, each a compact columnar layer
(engine.domain.mappoints: arrays, not objects; repeated words coded), gzipped when the client
accepts it. What each caller gets is the services' object rules (engine.services.mappoints):
the page shows only what it is given.

- work orders (open ones; a unit's people only their unit's): workorders.read
- gas households (a deliverer only their own; other units none: 403): gas.read
- depots (crews' muster points) and badge gateways: attendance.read
- the areas' extents, for a plain background where there are no map tiles: me
- placing a depot (attendance.manage) or a fixed badge gateway (devices.manage) on the map"""
from __future__ import annotations

import gzip
import json

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, Field

from engine.api.deps import allow, engine_of
from engine.auth.service import Principal
from engine.services import mappoints

__all__ = ["AreaOut", "DepotPlace", "GatewayPlace", "MapLayer", "Place",
           "router"]  # (the routes themselves are reached through the router)

router = APIRouter(prefix="/api/v1/map", tags=["console"])
GZIP_FROM = 2048           # bytes: below this gzip saves less than its header costs


class MapLayer(BaseModel):
    """A layer in columns: `columns[f][i]` is field f of point i; a field named in `codes`
    holds indexes into `codes[f]`; flags are 0/1; lat/lon are WGS84 degrees. The work orders'
    layer names its areas and units in `names`."""
    count: int = Field(description="points in the layer (the length of every column)")
    fields: list[str]
    columns: dict[str, list]
    codes: dict[str, list]
    names: dict[str, dict[str, list[str]]] = Field(default_factory=dict, description=(
        "display names of coded words where they have some: names[f][word] = [English, Chinese]"))


class AreaOut(BaseModel):
    code: str
    name: str
    name_zh: str
    bounds: list[list[float]] = Field(description="[[south, west], [north, east]] around its address codes")
    addresses: int


class Place(BaseModel):
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False, description="WGS84 latitude")
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False, description="WGS84 longitude")


class GatewayIn(Place):
    crew: str | None = Field(None, max_length=40, description="the crew whose depot it serves")


class DepotPlace(Place):
    crew: str


class GatewayPlace(Place):
    id: str
    crew: str | None


CODE = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"     # a crew code or a device id (one Path() per route: FastAPI names it)


def _json(request: Request, payload) -> Response:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {"Cache-Control": "no-store", "Vary": "Accept-Encoding"}
    if len(body) >= GZIP_FROM and "gzip" in request.headers.get("accept-encoding", "").lower():
        body = gzip.compress(body, 5)
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type="application/json", headers=headers)


@router.get("/work-orders", response_model=MapLayer,
            summary="Open work orders on the map (number, place, state, category, area, unit, overdue) / 地图工单")
def map_work_orders(request: Request, principal: Principal = allow("workorders.read")):
    engine = engine_of(request)
    return _json(request, mappoints.work_orders(engine, principal, engine.clock()))


@router.get("/households", response_model=MapLayer,
            summary="Gas households on the map (id, place, area, overdue, suspended) / 地图燃气用户")
def map_households(request: Request, principal: Principal = allow("gas.read")):
    engine = engine_of(request)
    return _json(request, mappoints.households(engine, principal, engine.clock()))


@router.get("/depots", response_model=MapLayer,
            summary="Crews' muster points (depots) on the map / 地图作业点")
def map_depots(request: Request, principal: Principal = allow("attendance.read")):
    return _json(request, mappoints.depots(engine_of(request), principal))


@router.get("/gateways", response_model=MapLayer,
            summary="Fixed badge gateways on the map / 地图工牌基站")
def map_gateways(request: Request, principal: Principal = allow("attendance.read")):
    return _json(request, mappoints.gateways(engine_of(request), principal))


@router.get("/areas", response_model=list[AreaOut],
            summary="The areas' extents, for a plain map background / 片区范围")
def map_areas(request: Request, _: Principal = allow("me")):
    return _json(request, mappoints.areas(engine_of(request)))


@router.put("/depots/{crew}/location", response_model=DepotPlace,
            summary="Place a crew's muster point (depot) on the map / 设置作业点位置")
def place_depot(body: Place, request: Request, crew: str = Path(max_length=40, pattern=CODE),
                principal: Principal = allow("attendance.manage")):
    row = mappoints.set_depot_location(engine_of(request), principal, crew, body.lat, body.lon)
    return DepotPlace(crew=row.code, lat=row.lat, lon=row.lon)


@router.put("/gateways/{device_id}/location", response_model=GatewayPlace,
            summary="Place a fixed badge gateway on the map / 设置工牌基站位置")
def place_gateway(body: GatewayIn, request: Request, device_id: str = Path(max_length=40, pattern=CODE),
                  _: Principal = allow("devices.manage")):
    row = mappoints.set_gateway_location(engine_of(request), device_id, body.lat, body.lon, body.crew)
    return GatewayPlace(id=row.id, lat=row.lat, lon=row.lon, crew=row.crew_code)
