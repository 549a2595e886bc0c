"""Attendance over HTTP: administrators set up contracts, crews, cleaners and badges; a
supervisor plans a shift for their crew and posts check-ins in a batch (one verdict each);
another supervisor cannot touch that crew; after the grace period the shift shows who was
present, late or absent and the contractor has been told."""
from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, select

from devices import token
from engine.domain.models import Notification
from tests.api.conftest import bearer, token_for

A = "/api/v1/attendance"


@pytest.fixture
def west(client, tokens, system):
    """A second contract (clean-west) with crew-w1 under supervisor super2, one cleaner with a badge."""
    admin = bearer(tokens["admin"])
    token = token_for(system, "super2", "supervisor")
    steps = [("/contracts", {"code": "C-WEST-1", "contractor": "West Cleaning Co.", "unit_code": "clean-west"}),
             ("/crews", {"code": "crew-w1", "contract_code": "C-WEST-1", "supervisor_id": "super2",
                         "muster_point": "West depot", "shift_start": "06:30"}),
             ("/badges", {"id": "W0001", "kind": "rotating", "secret": "11" * 16}),
             ("/cleaners", {"id": "clw01", "name": "West Cleaner", "crew_code": "crew-w1", "badge_id": "W0001"})]
    for path, body in steps:
        r = client.post(A + path, json=body, headers=admin)
        assert r.status_code == 201, (path, r.text)
    return token


def plan(client, token, starts_at, crew="crew-e1"):
    return client.post(A + "/shifts", json={"crew_code": crew, "starts_at": starts_at.isoformat()},
                       headers=bearer(token))


def test_admin_manages_contracts_crews_cleaners_badges_with_clear_errors(client, tokens, west):
    admin = bearer(tokens["admin"])
    crew = client.get(A + "/crews/crew-w1", headers=admin).json()
    assert crew["roster"] == [{"id": "clw01", "name": "West Cleaner", "badge_id": "W0001"}]
    assert client.post(A + "/contracts", json={"code": "C-WEST-1", "contractor": "x", "unit_code": "clean-west"},
                       headers=admin).status_code == 409
    bad = client.post(A + "/crews", json={"code": "crew-x", "contract_code": "nope", "supervisor_id": "deliverer1",
                                          "muster_point": "x", "shift_start": "06:00"}, headers=admin)
    assert bad.status_code == 422 and set(bad.json()["errors"]) == {"contract_code", "supervisor_id"}
    assert client.post(A + "/crews", json={"code": "crew-y", "contract_code": "C-WEST-1", "muster_point": "x",
                                           "shift_start": "25:00"}, headers=admin).status_code == 422
    taken = client.post(A + "/cleaners", json={"id": "clw02", "name": "Two", "crew_code": "crew-w1",
                                               "badge_id": "W0001"}, headers=admin)
    assert taken.status_code == 422 and "already issued" in taken.json()["errors"]["badge_id"]
    keyless = client.post(A + "/badges", json={"id": "W0002", "kind": "rotating"}, headers=admin)
    assert keyless.status_code == 201, "the server makes the key (printed by `cityloop badge key`)"
    too_long = client.post(A + "/badges", json={"id": "W00000000003", "kind": "rotating"}, headers=admin)
    assert too_long.status_code == 422 and "10 characters" in too_long.json()["errors"]["id"]
    assert client.post(A + "/badges", json={"id": "L0002", "kind": "legacy", "secret": "11" * 16},
                       headers=admin).status_code == 422
    odd = client.post(A + "/badges", json={"id": "W0004", "kind": "rotating", "secret": "1" * 33}, headers=admin)
    assert odd.status_code == 422 and "even number" in odd.json()["errors"]["secret"], odd.text   # (was a 500)
    assert client.post(A + "/badges", json={"id": "L0001", "kind": "legacy"}, headers=admin).status_code == 201
    badges = client.get(A + "/badges", headers=admin).json()
    assert len(badges) == 23 and all("secret" not in b for b in badges)
    assert client.post(A + "/badges/W0001/deactivate", headers=admin).json()["active"] is False
    assert client.post(A + "/contracts", json={"code": "C-2", "contractor": "x", "unit_code": "clean-west"},
                       headers=bearer(tokens["supervisor"])).status_code == 403


def test_supervisors_and_unit_leaders_see_only_their_crews(client, tokens, system, west, clock):
    own = [c["code"] for c in client.get(A + "/crews", headers=bearer(tokens["supervisor"])).json()]
    assert own == ["crew-e1"]
    assert [c["code"] for c in client.get(A + "/crews", headers=bearer(west)).json()] == ["crew-w1"]
    assert client.get(A + "/crews/crew-e1", headers=bearer(west)).status_code == 404
    assert [c["code"] for c in client.get(A + "/contracts", headers=bearer(west)).json()] == ["C-WEST-1"]
    leader = bearer(tokens["unit_leader"])  # clean-east
    assert [c["code"] for c in client.get(A + "/crews", headers=leader).json()] == ["crew-e1"]
    assert {b["id"] for b in client.get(A + "/badges", headers=bearer(west)).json()} == {"W0001"}
    assert len(client.get(A + "/crews", headers=bearer(tokens["dispatcher"])).json()) == 2
    start = clock() + timedelta(hours=1)
    shift = plan(client, tokens["supervisor"], start).json()
    for path in (f"/shifts/{shift['id']}", f"/shifts/{shift['id']}/attendance"):
        assert client.get(A + path, headers=bearer(west)).status_code == 404
        assert client.get(A + path, headers=leader).status_code == 200
    assert client.get(A + "/shifts", headers=bearer(west)).json() == []
    assert plan(client, west, start).status_code == 404, "not their crew"
    sighting = {"badge_id": "B0001", "seen_at": start.isoformat(), "verified": True, "source": "tablet"}
    r = client.post(A + f"/shifts/{shift['id']}/checkins", json={"items": [sighting]}, headers=bearer(west))
    assert r.status_code == 404
    refused = plan(client, tokens["dispatcher"], start)
    assert refused.status_code == 403 and refused.json()["error"] == "role_forbidden"
    assert plan(client, tokens["admin"], start + timedelta(days=1)).status_code == 201
    past = plan(client, tokens["supervisor"], clock() - timedelta(hours=1))
    assert past.status_code == 422 and "starts_at" in past.json()["errors"]


def test_a_batch_of_checkins_gets_a_verdict_per_item_then_the_grace_timer_closes_the_shift(
        client, tokens, system, west, clock):
    sup = bearer(tokens["supervisor"])
    start = clock() + timedelta(hours=1)
    r = plan(client, tokens["supervisor"], start)
    assert r.status_code == 201, r.text
    shift = r.json()
    assert shift["counts"]["expected"] == 20 and shift["grace_ends_at"].startswith(
        (start + timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M"))
    again = plan(client, tokens["supervisor"], start)
    assert again.status_code == 200 and again.json()["id"] == shift["id"], "planning is idempotent"
    day = start.astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
    listed = client.get(A + "/shifts", params={"crew": "crew-e1", "day": day}, headers=sup).json()
    assert [s["id"] for s in listed] == [shift["id"]]

    clock.set(start + timedelta(minutes=12))
    sup = bearer(token_for(system, "super1", "supervisor"))  # a fresh token on the moved clock

    def item(badge, minutes, verified=True, source="tablet"):
        return {"badge_id": badge, "seen_at": (start + timedelta(minutes=minutes)).isoformat(), "verified": verified,
                "source": source}

    items = [item(f"B{i:04d}", -5) for i in range(15)]                      # 0-14: present
    items += [item("B0015", 10), item("B0016", -1, verified=False)]         # 15: late, 16: unverified
    items += [item("B9999", -3),                                             # 17: unknown badge
              {**item("B0017", -2), "seen_at": "half past five"},           # 18: malformed time
              {**item("B0017", -2), "seen_at": "2026-03-02T00:58:00"},     # 19: no offset
              {"badge_id": "B0018", "seen_at": start.isoformat()},           # 20: verified missing
              "not an object",                                               # 21
              item("B0000", 1, verified=False),                              # 22: no better than present
              item("B0018", -300),                                           # 23: hours before the shift
              item("W0001", -4)]                                             # 24: another crew's badge
    assert len(items) == 25
    r = client.post(A + f"/shifts/{shift['id']}/checkins", json={"items": items}, headers=sup)
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["applied"], out["ignored"], out["invalid"], out["conflict"]) == (17, 3, 5, 0)
    v = {x["index"]: x for x in out["results"]}
    assert [v[i]["status"] for i in (0, 14, 15, 16)] == ["present", "present", "late", "unverified"]
    assert v[17]["verdict"] == "ignored" and v[17]["message"] == "unknown badge"
    assert v[24]["verdict"] == "ignored" and "roster" in v[24]["message"]
    assert v[22]["verdict"] == "ignored" and "already checked in as present" in v[22]["message"]
    for i in (18, 19, 20, 21, 23):
        assert v[i]["verdict"] == "invalid" and v[i]["code"] == 422 and v[i]["message"], v[i]
    assert "seen_at" in v[18]["message"] and "timezone" in v[19]["message"] and "verified" in v[20]["message"]
    assert "window" in v[23]["message"]
    assert v[18]["badge_id"] == "B0017" and v[21]["badge_id"] is None

    # a badge gateway may check in to any shift
    admin = bearer(token_for(system, "admin1", "admin"))
    gw = client.post("/api/v1/devices", json={"name": "East depot", "kind": "gateway"}, headers=admin).json()
    gw_token = client.post("/api/v1/auth/pair",
                           json={"device_id": gw["id"], "code": gw["pairing_code"]}).json()["access_token"]
    r = client.post(A + f"/shifts/{shift['id']}/checkins", json={"items": [item("B0017", 11, source="")]},
                    headers=bearer(gw_token))
    first = r.json()["results"][0]
    assert r.status_code == 200 and first["status"] == "unverified", "a gateway's word alone verifies nothing"
    assert "frame" in first["message"]
    seen = start + timedelta(minutes=11)
    framed = {"badge_id": "B0017", "seen_at": seen.isoformat(), "company_id": token.COMPANY_ID, "rssi": -60,
              "data": token.mint("B0017", bytes(16), seen).hex(), "lat": 31.23, "lon": 121.47}  # district key: 00 * 16
    r = client.post(A + f"/shifts/{shift['id']}/checkins", json={"items": [framed]}, headers=bearer(gw_token))
    assert r.status_code == 200 and r.json()["results"][0]["status"] == "late", r.text

    clock.set(start + timedelta(minutes=16))   # grace over, timer not yet fired: already closed to check-ins
    sup = bearer(token_for(system, "super1", "supervisor"))
    late = client.post(A + f"/shifts/{shift['id']}/checkins", json={"items": [item("B0018", 14), item("B0019", 14)]},
                       headers=sup).json()
    assert late["conflict"] == 2 and {x["code"] for x in late["results"]} == {409}
    assert "grace period" in late["results"][0]["message"]
    assert system.fire_due_timers() == 1

    att = client.get(A + f"/shifts/{shift['id']}/attendance", headers=sup).json()
    rows = {row["cleaner_id"]: row for row in att["rows"]}
    assert att["shift"]["closed"] is True and len(rows) == 20
    counts = {k: n for k, n in att["shift"]["counts"].items() if n and k != "roster"}
    assert counts == {"present": 15, "late": 2, "unverified": 1, "absent": 2}
    assert att["rate"] == 0.85
    assert rows["cl000"]["name"] == "Cleaner 0" and rows["cl000"]["source"] == "manual", "a supervisor's word"
    assert rows["cl016"]["source"] == "tablet", "unverified: nothing vouched for, the source as sent"
    assert rows["cl017"]["source"] == "gateway" and rows["cl019"]["status"] == "absent"
    with Session(system.db) as s:
        notice = s.exec(select(Notification).where(Notification.recipient == "contractor:C-EAST-1")).one()
    assert notice.body.splitlines() == ["Cleaner 18", "Cleaner 19"]
    closed = client.post(A + f"/shifts/{shift['id']}/checkins", json={"items": [item("B0019", 1)]}, headers=sup).json()
    assert closed["results"][0]["verdict"] == "conflict" and closed["results"][0]["code"] == 409


def test_batch_limits(client, tokens, clock):
    start = clock() + timedelta(hours=1)
    shift = plan(client, tokens["supervisor"], start).json()
    sup = bearer(tokens["supervisor"])
    one = {"badge_id": "B0001", "seen_at": start.isoformat(), "verified": True, "source": "tablet"}
    assert client.post(A + f"/shifts/{shift['id']}/checkins", json={"items": [one] * 1001},
                       headers=sup).status_code == 422
    assert client.post(A + f"/shifts/{shift['id']}/checkins", json={"items": []}, headers=sup).status_code == 422
    assert client.post(A + "/shifts/999/checkins", json={"items": [one]}, headers=sup).status_code == 404
    future = {**one, "seen_at": (clock() + timedelta(minutes=30)).isoformat()}
    r = client.post(A + f"/shifts/{shift['id']}/checkins", json={"items": [future]}, headers=sup).json()
    assert r["results"][0]["verdict"] == "invalid" and "future" in r["results"][0]["message"]
    ancient = {**one, "seen_at": "0001-01-01T00:00:00+08:00"}
    r = client.post(A + f"/shifts/{shift['id']}/checkins", json={"items": [ancient]}, headers=sup).json()
    assert r["results"][0]["verdict"] == "invalid" and "plausible" in r["results"][0]["message"]
