"""The one-map view's data (GET /api/v1/map/*): compact columnar layers, gzipped, and each
role gets only what it may read (a unit's people only their unit's orders, a deliverer only
their own households, a supervisor only their crews' depots and gateways)."""
from __future__ import annotations

from datetime import timezone

import pytest
from sqlmodel import Session, func, select

from bench.scale_data import build_district
from engine.auth.models import Device
from engine.clock import to_db
from engine.domain.mappoints import columns
from engine.domain.models import Contract, Crew, Household, Staff, WorkOrder
from tests.api.conftest import bearer, token_for

LAYERS = ("/api/v1/map/work-orders", "/api/v1/map/households", "/api/v1/map/depots", "/api/v1/map/gateways")


@pytest.fixture
def district(app, system):
    """The tiny test district plus a second deliverer, a west crew, gateways at both depots,
    and 400 households and 600 work orders from bench.scale_data."""
    with Session(system.db) as s:
        s.add(Staff(id="deliverer2", name="Deliverer Two", role="deliverer"))
        s.add(Staff(id="super2", name="Supervisor Two", role="supervisor"))
        s.add(Contract(code="C-WEST-1", contractor="West Cleaning Co.", unit_code="clean-west"))
        s.flush()
        s.add(Crew(code="crew-w1", contract_code="C-WEST-1", supervisor_id="super2", muster_point="West depot",
                   shift_start="05:30", lat=31.23, lon=121.39))
        s.get(Crew, "crew-e1").lat, s.get(Crew, "crew-e1").lon = 31.19, 121.42
        now = system.clock()
        for crew, lat, lon in (("crew-e1", 31.1901, 121.4201), ("crew-w1", 31.2301, 121.3901)):
            s.add(Device(id=f"gw-{crew}", name=f"Gateway {crew}", kind="gateway", created_at=now, created_by="t",
                         lat=lat, lon=lon, crew_code=crew))
        s.add(Device(id="tablet-1", name="A tablet", kind="tablet", created_at=now, created_by="t",
                     lat=31.2, lon=121.4))        # not a gateway: never on the map
        s.commit()
    built = build_district(system.db.url.render_as_string(hide_password=False), orders=600, points=400,
                           now=system.clock().astimezone(timezone.utc), progress=lambda _: None)
    assert built["households"] == 400 and built["orders"] == 600 and 0 < built["open_orders"] < 600
    return built


def _get(client, path, token):
    r = client.get(path, headers=bearer(token))
    assert r.status_code == 200, r.text
    return r.json()


def _decoded(layer: dict, field: str) -> list:
    col = layer["columns"][field]
    return [layer["codes"][field][v] for v in col] if field in layer["codes"] else col


def test_columns_codes_repeated_words_and_rounds_coordinates():
    out = columns([("a", 31.12345678, 121.0, "x", True), ("b", 31.0, 121.5, "x", False), ("c", 31.5, 121.25, "y", 0)],
                  ("id", "lat", "lon", "kind", "flag"), coded=("kind",), flags=("flag",))
    assert out == {"count": 3, "fields": ["id", "lat", "lon", "kind", "flag"],
                   "columns": {"id": ["a", "b", "c"], "lat": [31.123457, 31.0, 31.5], "lon": [121.0, 121.5, 121.25],
                               "kind": [0, 0, 1], "flag": [1, 0, 0]},
                   "codes": {"kind": ["x", "y"]}}


def test_layers_are_columns_of_equal_length_and_big_ones_are_gzipped(client, tokens, district, system):
    for path in LAYERS:
        r = client.get(path, headers={**bearer(tokens["admin"]), "Accept-Encoding": "gzip"})
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        layer = r.json()
        assert set(layer) == {"count", "fields", "columns", "codes"} | ({"names"} if "work-orders" in path else set())
        assert list(layer["columns"]) == layer["fields"]
        assert all(len(c) == layer["count"] for c in layer["columns"].values()), path
        assert all(-90 <= v <= 90 for v in layer["columns"]["lat"]) and layer["count"] > 0, path
    r = client.get("/api/v1/map/households", headers={**bearer(tokens["admin"]), "Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip" and int(r.headers["content-length"]) < len(r.content) / 2
    plain = client.get("/api/v1/map/households", headers={**bearer(tokens["admin"]), "Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.json() == r.json()

    orders = _get(client, "/api/v1/map/work-orders", tokens["dispatcher"])
    assert set(_decoded(orders, "state")) <= {"reported", "at_unit", "rerouting", "in_review"}
    assert orders["names"]["unit"]["clean-east"] == ["clean-east", "clean-east"]     # the tiny district's names
    assert set(orders["names"]["unit"]) <= set(orders["codes"]["unit"])
    with Session(system.db) as s:
        open_placed = s.exec(select(func.count()).select_from(WorkOrder).where(
            WorkOrder.state != "closed", WorkOrder.lat.is_not(None))).one()
    assert orders["count"] == open_placed == district["open_orders"]
    hh = _get(client, "/api/v1/map/households", tokens["dispatcher"])
    assert hh["count"] == 403                  # the tiny district's 3 and the generator's 400
    with Session(system.db) as s:
        due = {h.id for h in s.exec(select(Household)).all()
               if h.next_due_at is None or h.next_due_at <= to_db(system.clock())}
    assert {i for i, o in zip(hh["columns"]["id"], hh["columns"]["overdue"]) if o} == due
    gateways = _get(client, "/api/v1/map/gateways", tokens["dispatcher"])
    assert gateways["columns"]["id"] == ["gw-crew-e1", "gw-crew-w1"]       # the tablet is not a gateway
    assert gateways["columns"]["paired"] == [0, 0]


def test_a_unit_leader_gets_only_their_units_orders(client, tokens, district, system):
    leader = _get(client, "/api/v1/map/work-orders", tokens["unit_leader"])
    everyone = _get(client, "/api/v1/map/work-orders", tokens["dispatcher"])
    with Session(system.db) as s:
        east = set(s.exec(select(WorkOrder.number).where(WorkOrder.unit_code == "clean-east",
                                                         WorkOrder.state != "closed")).all())
    assert east and set(leader["columns"]["number"]) == east
    assert set(_decoded(leader, "unit")) == {"clean-east"}
    assert len(everyone["columns"]["number"]) > len(east)
    worker = _get(client, "/api/v1/map/work-orders", tokens["unit_worker"])
    assert set(worker["columns"]["number"]) == east
    for role in ("designer", "deliverer", "supervisor"):
        assert client.get("/api/v1/map/work-orders", headers=bearer(tokens[role])).status_code == 403, role


def test_households_follow_the_gas_read_rules(client, tokens, district, system):
    mine = _get(client, "/api/v1/map/households", tokens["deliverer"])
    with Session(system.db) as s:
        own = set(s.exec(select(Household.id).where(Household.deliverer_id == "deliverer1")).all())
    assert own and set(mine["columns"]["id"]) == own and mine["count"] < 403
    gas = token_for(system, "gasoffice1", "unit_worker", "gas-office")
    assert _get(client, "/api/v1/map/households", gas)["count"] == 403
    r = client.get("/api/v1/map/households", headers=bearer(tokens["unit_leader"]))      # clean-east: not gas
    assert r.status_code == 403 and r.json()["error"]
    for role in ("designer", "reviewer", "supervisor"):
        assert client.get("/api/v1/map/households", headers=bearer(tokens[role])).status_code == 403, role


def test_depots_and_gateways_follow_the_attendance_read_rules(client, tokens, district, system):
    def crews(token):
        return (_get(client, "/api/v1/map/depots", token)["columns"]["crew"],
                _get(client, "/api/v1/map/gateways", token)["columns"]["crew"])
    assert crews(tokens["dispatcher"]) == (["crew-e1", "crew-w1"], ["crew-e1", "crew-w1"])
    assert crews(tokens["supervisor"]) == (["crew-e1"], ["crew-e1"])          # super1's crew only
    assert crews(tokens["unit_leader"]) == (["crew-e1"], ["crew-e1"])         # clean-east's contract
    depot = _get(client, "/api/v1/map/depots", tokens["admin"])
    assert depot["columns"]["muster_point"] == ["East depot", "West depot"]
    assert depot["columns"]["unit"] == ["clean-east", "clean-west"]
    for role in ("designer", "reviewer", "deliverer", "unit_worker"):
        for path in ("/api/v1/map/depots", "/api/v1/map/gateways"):
            assert client.get(path, headers=bearer(tokens[role])).status_code == 403, (role, path)


def test_areas_give_each_areas_extent(client, tokens, district):
    areas = _get(client, "/api/v1/map/areas", tokens["deliverer"])
    assert [a["code"] for a in areas] == ["dongcheng", "huaqiao", "xinhe"]
    for a in areas:
        (south, west), (north, east) = a["bounds"]
        assert south <= north and west <= east and a["addresses"] > 0
    assert client.get("/api/v1/map/areas").status_code == 401


def test_the_generator_counts_and_overdue_orders(system, district):
    with Session(system.db) as s:
        rows = s.exec(select(WorkOrder).where(WorkOrder.origin == "scale_data")).all()
    assert len(rows) == 600
    now = to_db(system.clock())
    assert all(o.reported_at <= now for o in rows)
    assert {o.state for o in rows} >= {"closed", "at_unit"}
    assert all(o.overdue == (o.sla_due < (o.closed_at or now)) for o in rows)
    assert all((o.closed_at is None) == (o.state != "closed") for o in rows)


def test_generated_orders_lie_in_their_area(system, district):
    from bench.scale_data import AREA_BOXES
    with Session(system.db) as s:
        rows = s.exec(select(WorkOrder).where(WorkOrder.origin == "scale_data")).all()
    for o in rows:
        south, west, north, east = AREA_BOXES[o.area]
        assert south - 0.001 <= o.lat <= north + 0.001 and west <= o.lon <= east, (o.number, o.area, o.lat, o.lon)


def test_an_admin_places_a_depot_and_a_gateway(client, tokens, district):
    r = client.put("/api/v1/map/depots/crew-w1/location", json={"lat": 31.2311, "lon": 121.3911},
                   headers=bearer(tokens["admin"]))
    assert r.status_code == 200 and r.json() == {"crew": "crew-w1", "lat": 31.2311, "lon": 121.3911}
    depots = _get(client, "/api/v1/map/depots", tokens["dispatcher"])
    assert depots["columns"]["lat"][depots["columns"]["crew"].index("crew-w1")] == 31.2311
    r = client.put("/api/v1/map/gateways/gw-crew-w1/location",
                   json={"lat": 31.2312, "lon": 121.3912, "crew": "crew-e1"}, headers=bearer(tokens["admin"]))
    assert r.status_code == 200 and r.json()["crew"] == "crew-e1", r.text
    assert crew_of_gateways(client, tokens["supervisor"]) == ["crew-e1", "crew-e1"]      # both serve super1's crew now
    bad = {"/api/v1/map/depots/no-such-crew/location": ({"lat": 31, "lon": 121}, 404),
           "/api/v1/map/gateways/tablet-1/location": ({"lat": 31, "lon": 121}, 404),      # a tablet is no gateway
           "/api/v1/map/gateways/gw-crew-e1/location": ({"lat": 31, "lon": 121, "crew": "nope"}, 422)}
    for path, (body, status) in bad.items():
        r = client.put(path, json=body, headers=bearer(tokens["admin"]))
        assert r.status_code == status and r.json()["message"], (path, r.text)
    for body in ({"lat": 91, "lon": 121}, {"lat": 31, "lon": -181}, {"lat": "x", "lon": 1}, {"lat": 31}):
        r = client.put("/api/v1/map/depots/crew-w1/location", json=body, headers=bearer(tokens["admin"]))
        assert r.status_code == 422, body
    r = client.put("/api/v1/map/depots/crew-w1/location", content=b'{"lat": NaN, "lon": 121}',
                   headers={**bearer(tokens["admin"]), "Content-Type": "application/json"})
    assert r.status_code == 422
    assert client.put("/api/v1/map/depots/crew-e1/location", json={"lat": 31, "lon": 121},
                      headers=bearer(tokens["supervisor"])).status_code == 403
    assert client.put("/api/v1/map/gateways/gw-crew-e1/location", json={"lat": 31, "lon": 121},
                      headers=bearer(tokens["dispatcher"])).status_code == 403


def crew_of_gateways(client, token) -> list:
    return _get(client, "/api/v1/map/gateways", token)["columns"]["crew"]
