"""Badge sightings over HTTP: a gateway pushes raw advertisements; the server re-verifies
each, checks good ones in through the shift's process, and flags clones, replays and
forgeries (kept per shift, never counted present). Supervisors get derived keys for their
own crews only. Bad input is a clear 4xx or a per-item "invalid", never a 500."""
from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest
from sqlmodel import Session, select

from devices import token
from engine.domain.models import Badge, BadgeSighting, Cleaner
from tests.api.conftest import bearer, token_for

A = "/api/v1/attendance"
KEY = bytes(16)                      # tests/district.py gives every badge the key 00 * 16
DEPOT = (31.2000, 121.4000)
ELSEWHERE = (31.2600, 121.4700)      # about 9 km away
BEACON = UUID("f7826da6-4fa2-4e98-8024-bc5b71e0893e")


@pytest.fixture
def shift(client, tokens, clock):
    start = clock() + timedelta(hours=1)
    r = client.post(A + "/shifts", json={"crew_code": "crew-e1", "starts_at": start.isoformat()},
                    headers=bearer(tokens["supervisor"]))
    assert r.status_code == 201, r.text
    clock.set(start - timedelta(minutes=5))
    return r.json()


@pytest.fixture
def gateway(client, system):
    admin = bearer(token_for(system, "admin1", "admin"))
    gw = client.post("/api/v1/devices", json={"name": "East depot", "kind": "gateway"}, headers=admin).json()
    r = client.post("/api/v1/auth/pair", json={"device_id": gw["id"], "code": gw["pairing_code"]})
    return bearer(r.json()["access_token"])


def frame(badge: str, at, key: bytes = KEY, place=DEPOT, **extra) -> dict:
    item = {"company_id": token.COMPANY_ID, "data": token.mint(badge, key, at).hex(), "rssi": -60,
            "seen_at": at.isoformat()}
    if place is not None:
        item["lat"], item["lon"] = place
    return {**item, **extra}


def push(client, headers, items, source="gw-depot", **batch):
    r = client.post(A + "/sightings", json={"source": source, "items": items, **batch}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_good_frames_check_in_and_clones_replays_forgeries_are_flagged_not_counted(
        client, gateway, shift, clock, system, tokens):
    now = clock()
    good = [frame(f"B{i:04d}", now) for i in range(15)]
    forged = frame("B0015", now, key=b"\x01" * 16)
    replay = frame("B0016", now - timedelta(days=1), seen_at=now.isoformat())
    copy = frame("B0017", now)                                     # a copy re-broadcast at the depot...
    genuine = frame("B0017", now, place=ELSEWHERE)                 # ...of a badge that is elsewhere
    early = frame("B0018", now)                                     # checked in first, shown cloned later
    out = push(client, gateway, good + [forged, replay, copy, early])
    v = out["results"]
    assert (out["applied"], out["flagged"], out["ignored"], out["invalid"]) == (17, 2, 0, 0), out
    assert all(x["status"] == "present" and x["shift_id"] == shift["id"] for x in v[:15])
    assert (v[15]["verdict"], v[15]["reason"], v[15]["badge_id"]) == ("flagged", "forged", "B0015")
    assert (v[16]["verdict"], v[16]["reason"]) == ("flagged", "replay") and "window" in v[16]["message"]

    # the genuine badge of B0017 and a copy of B0018's token turn up far away: both pairs are clones
    out = push(client, gateway, [genuine, frame("B0018", now, place=ELSEWHERE)], source="gw-elsewhere")
    assert [x["reason"] for x in out["results"]] == ["clone", "clone"]
    assert "m away" in out["results"][0]["message"]
    # the same badge keeps appearing at the depot: still not counted for this shift
    later = now + timedelta(seconds=30)
    out = push(client, gateway, [frame("B0017", later), frame("B0000", later)])
    assert [x["verdict"] for x in out["results"]] == ["flagged", "ignored"]
    assert out["results"][1]["reason"] == "already_checked_in" and out["results"][1]["status"] == "present"

    # the same batch again (a gateway re-sending after a restart) changes nothing
    again = push(client, gateway, good[:2] + [forged])
    assert [(x["verdict"], x["reason"]) for x in again["results"]] == [
        ("ignored", "duplicate"), ("ignored", "duplicate"), ("flagged", "forged")]

    # a counter that goes back (an older token seen later) is a replay
    assert push(client, gateway, [frame("B0001", later)])["results"][0]["reason"] == "already_checked_in"
    back = frame("B0001", now, seen_at=(later + timedelta(seconds=5)).isoformat())
    out = push(client, gateway, [back], source="gw-depot-2")["results"][0]
    assert (out["reason"], out["verdict"]) == ("replay", "flagged") and "went back" in out["message"]

    sup = bearer(token_for(system, "super1", "supervisor"))     # the fixture's token has expired by now
    flags = client.get(A + f"/shifts/{shift['id']}/flags", headers=sup).json()
    assert isinstance(flags, list), flags
    reasons = sorted((f["badge_id"], f["reason"]) for f in flags)
    assert ("B0015", "forged") in reasons and ("B0016", "replay") in reasons and ("B0001", "replay") in reasons
    assert sum(1 for r in reasons if r == ("B0017", "clone")) == 3
    assert sum(1 for r in reasons if r == ("B0018", "clone")) == 2
    f17 = [f for f in flags if f["badge_id"] == "B0017"]
    assert {f["source"] for f in f17} == {"gw-depot", "gw-elsewhere"} and f17[0]["cleaner_id"] == "cl017"
    assert all(f["data"] and f["related_id"] for f in f17[:2]) and f17[0]["lat"] is not None

    clock.set(token.time_of(token.counter_at(now)) + timedelta(minutes=21))
    assert system.fire_due_timers() == 1
    att = client.get(A + f"/shifts/{shift['id']}/attendance", headers=sup).json()
    status = {r["cleaner_id"]: r["status"] for r in att["rows"]}
    assert [c for c, s in sorted(status.items()) if s == "present"] == [f"cl{i:03d}" for i in range(15)]
    assert {c for c, s in status.items() if s == "absent"} == {"cl015", "cl016", "cl017", "cl018", "cl019"}
    with Session(system.db) as s:
        assert s.get(Badge, "B0001").last_counter == token.counter_at(later)


def test_legacy_ibeacon_badges_are_unverified_and_unknown_ones_ignored(client, gateway, shift, clock, system):
    admin = bearer(token_for(system, "admin1", "admin"))
    r = client.post(A + "/badges", json={"id": "L0001", "kind": "legacy", "beacon": f"{BEACON}:7:42"}, headers=admin)
    assert r.status_code == 201, r.text
    r = client.post(A + "/badges", json={"id": "L0002", "kind": "legacy", "beacon": f"{BEACON}:7:42"}, headers=admin)
    assert r.status_code == 422 and "already registered" in r.json()["errors"]["beacon"]
    r = client.post(A + "/badges", json={"id": "L0003", "kind": "legacy", "beacon": f"{BEACON}:7:70000"}, headers=admin)
    assert r.status_code == 422 and "65535" in r.json()["errors"]["beacon"]
    r = client.post(A + "/cleaners", json={"id": "cl-old", "name": "Old Badge", "crew_code": "crew-e1",
                                          "badge_id": "L0001"}, headers=admin)
    assert r.status_code == 201, r.text
    # the roster was fixed when the shift was planned: plan another one for the new cleaner
    start = clock() + timedelta(days=1)
    r = client.post(A + "/shifts", json={"crew_code": "crew-e1", "starts_at": start.isoformat()},
                    headers=bearer(token_for(system, "super1", "supervisor")))
    clock.set(start - timedelta(minutes=1))
    beacon = {"company_id": token.IBEACON_COMPANY_ID, "data": token.ibeacon(BEACON, 7, 42).hex(), "rssi": -70,
              "seen_at": clock().isoformat()}
    stranger = {**beacon, "data": token.ibeacon(BEACON, 7, 43).hex()}
    out = push(client, gateway, [beacon, stranger])
    assert out["results"][0] == {"index": 0, "badge_id": "L0001", "verdict": "applied", "status": "unverified",
                                 "reason": None, "message": None, "shift_id": r.json()["id"]}
    assert (out["results"][1]["verdict"], out["results"][1]["reason"]) == ("ignored", "unknown_badge")


def test_supervisors_push_and_get_keys_only_for_their_own_crews(client, gateway, shift, clock, system, tokens):
    west_admin = bearer(token_for(system, "admin1", "admin"))
    for path, body in [("/contracts", {"code": "C-W", "contractor": "West Co.", "unit_code": "clean-west"}),
                       ("/crews", {"code": "crew-w1", "contract_code": "C-W", "supervisor_id": "super2",
                                   "muster_point": "West depot", "shift_start": "06:30"})]:
        if path == "/crews":
            token_for(system, "super2", "supervisor")
        assert client.post(A + path, json=body, headers=west_admin).status_code == 201
    super2 = bearer(token_for(system, "super2", "supervisor"))
    now = clock()
    out = push(client, super2, [frame("B0001", now)], source="tablet-w")
    assert (out["results"][0]["verdict"], out["results"][0]["reason"]) == ("ignored", "not_your_crew")
    leader = bearer(token_for(system, "leader.clean-east", "unit_leader", "clean-east"))  # crew-e1 is theirs
    assert push(client, leader, [frame("B0001", now)], source="tablet-l")["results"][0]["verdict"] == "applied"

    sup = bearer(token_for(system, "super1", "supervisor"))
    keys = client.get(A + "/badge-keys", params={"crew": "crew-e1"}, headers=sup)
    assert keys.status_code == 200, keys.text
    body = keys.json()
    assert len(body["keys"]) == 40 and body["step_seconds"] == token.STEP_SECONDS
    k = {(x["badge_id"], x["epoch"]): bytes.fromhex(x["key"]) for x in body["keys"]}
    epoch = token.epoch_at(now)
    assert {e for _, e in k} == {epoch, epoch + 1}
    assert all(x["key"] != KEY.hex() for x in body["keys"])
    ok = token.verify(token.mint("B0003", KEY, now), now, epoch_keys={epoch: k[("B0003", epoch)]})
    assert ok.ok, ok
    assert token.verify(token.mint("B0003", KEY, now), now,
                        epoch_keys={epoch: k[("B0003", epoch + 1)]}).reason == "forged"
    assert client.get(A + "/badge-keys", params={"crew": "crew-e1"}, headers=super2).status_code == 404
    assert client.get(A + "/badge-keys", params={"crew": "crew-e1"}, headers=gateway).status_code == 403
    assert client.get(A + "/badge-keys", params={"crew": "crew-e1"},
                      headers=bearer(token_for(system, "dispatcher1", "dispatcher"))).status_code == 403
    assert client.get(A + "/badge-keys", params={"crew": "../x"}, headers=sup).status_code == 422
    # a tablet acts for its owner
    tablet = client.post("/api/v1/devices", json={"name": "Tab", "kind": "tablet", "owner_id": "super1"},
                         headers=west_admin).json()
    tab = client.post("/api/v1/auth/pair", json={"device_id": tablet["id"], "code": tablet["pairing_code"]}).json()
    r = client.get(A + "/badge-keys", params={"crew": "crew-e1"}, headers=bearer(tab["access_token"]))
    assert r.status_code == 200 and len(r.json()["keys"]) == 40
    assert client.get(A + f"/shifts/{shift['id']}/flags", headers=super2).status_code == 404


def test_bad_input_is_a_clear_4xx_or_a_per_item_invalid(client, gateway, shift, clock):
    now = clock()
    good = frame("B0002", now)
    bad_items = [
        {**good, "data": "zz"}, {**good, "data": "00" * 33}, {**good, "data": "abc"},
        {k: v for k, v in good.items() if k != "seen_at"}, {**good, "seen_at": "2026-03-02T00:55:00"},
        {**good, "lat": 31.2, "lon": None}, {**good, "lat": 91.0}, {**good, "company_id": 70000},
        {**good, "company_id": 0x0006}, {**good, "data": "01ff" + "00" * 20},
        {**good, "seen_at": (now + timedelta(hours=1)).isoformat()}, "not an object", None, 17,
        {**good, "data": token.ibeacon(BEACON, 1, 1).hex()},
        {**good, "company_id": token.IBEACON_COMPANY_ID},
    ]
    out = push(client, gateway, bad_items + [good])
    v = out["results"]
    assert [x["verdict"] for x in v] == ["invalid"] * len(bad_items) + ["applied"], v
    assert all(x["message"] for x in v[:-1])
    assert "future" in v[10]["message"] and "timezone" in v[4]["message"]
    for body in ({"source": "gw", "items": []}, {"source": "gw", "items": [good] * 1001}, {"items": [good]},
                 {"source": "x" * 65, "items": [good]}, {"source": "a\x00b", "items": [good]},
                 {"source": "gw", "items": [good], "lat": 1.0}, {"source": "gw", "items": "nope"}, [], "x"):
        r = client.post(A + "/sightings", json=body, headers=gateway)
        assert r.status_code == 422, (body, r.text)
    assert client.post(A + "/sightings", content=b"{not json", headers={**gateway, "content-type": "application/json"}
                       ).status_code == 422
    assert client.post(A + "/sightings", json={"source": "gw", "items": [good]}).status_code == 401
    with Session(client.app.state.engine.db) as s:
        assert len(s.exec(select(BadgeSighting)).all()) == 1, "invalid items leave nothing behind"


def test_per_shift_checkins_with_frames_are_verified_by_the_server(client, shift, clock, system):
    sup = bearer(token_for(system, "super1", "supervisor"))
    now = clock()

    def item(badge, key=KEY, verified=False, **extra):
        f = frame(badge, now, key=key)
        return {"badge_id": badge, "seen_at": f["seen_at"], "verified": verified, "source": "tablet-1",
                "company_id": f["company_id"], "data": f["data"], "lat": f["lat"], "lon": f["lon"], **extra}

    items = [item("B0001"),                                   # client says unverified, the frame proves it
             item("B0002", key=b"\x09" * 16, verified=True),  # client says verified, the frame is forged
             {**item("B0003"), "data": item("B0004")["data"]},  # B0004's frame sent as B0003
             {**item("B0005"), "data": "01"},                 # not a frame
             {"badge_id": "B0006", "seen_at": now.isoformat(), "source": "tablet-1"},   # neither frame nor word
             {"badge_id": "B0007", "seen_at": now.isoformat(), "verified": True}]       # the client's word, no frame
    r = client.post(A + f"/shifts/{shift['id']}/checkins", json={"items": items}, headers=sup)
    assert r.status_code == 200, r.text
    out = r.json()
    v = out["results"]
    assert (v[0]["verdict"], v[0]["status"]) == ("applied", "present")
    assert v[1]["verdict"] == "flagged" and v[1]["message"].startswith("forged")
    assert v[2]["verdict"] == "invalid" and "not badge 'B0003'" in v[2]["message"]
    assert v[3]["verdict"] == "invalid" and v[4]["verdict"] == "invalid" and "verified" in v[4]["message"]
    assert (v[5]["verdict"], v[5]["status"]) == ("applied", "present")
    assert (out["applied"], out["flagged"], out["invalid"]) == (2, 1, 3)
    flags = client.get(A + f"/shifts/{shift['id']}/flags", headers=sup).json()
    assert [(f["badge_id"], f["reason"], f["source"]) for f in flags] == [("B0002", "forged", "tablet-1")]
    with Session(system.db) as s:
        kept = {r.badge_id: r.verdict for r in s.exec(select(BadgeSighting))}
    assert kept == {"B0001": "applied", "B0002": "flagged"}


def test_cli_prints_a_badge_key_that_the_server_accepts(client, gateway, shift, clock, system, db_url, capsys):
    from engine.cli import main
    assert main(["--db", db_url, "badge", "register", "N0001"]) == 0
    assert main(["--db", db_url, "badge", "key", "N0001"]) == 0
    key = bytes.fromhex(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(key) == 32
    with Session(system.db) as s:
        stored = s.get(Badge, "N0001").secret
    assert stored.startswith("k1:") and key.hex() not in stored, "sealed at rest"
    assert main(["--db", db_url, "badge", "key", "N0001"]) == 0
    assert capsys.readouterr().out.strip() == key.hex(), "the same key every time"
    assert main(["--db", db_url, "badge", "register", "N-TOO-LONG-ID"]) == 1
    assert "10 characters" in capsys.readouterr().err
    assert main(["--db", db_url, "badge", "key", "NOPE"]) == 1
    with Session(system.db) as s:
        s.add(Cleaner(id="cl-new", name="New", crew_code="crew-e1", badge_id="N0001"))
        s.commit()
    out = push(client, gateway, [frame("N0001", clock(), key=key)])["results"][0]
    assert (out["verdict"], out["reason"]) == ("ignored", "not_on_roster"), \
        "the roster is fixed when a shift is planned"
    start = clock() + timedelta(days=1)
    r = client.post(A + "/shifts", json={"crew_code": "crew-e1", "starts_at": start.isoformat()},
                    headers=bearer(token_for(system, "super1", "supervisor")))
    clock.set(start - timedelta(minutes=3))
    out = push(client, gateway, [frame("N0001", clock(), key=key)])["results"][0]
    assert (out["verdict"], out["status"], out["shift_id"]) == ("applied", "present", r.json()["id"]), out
    assert push(client, gateway, [frame("N0001", clock(), key=b"\x00" * 32)])["results"][0]["reason"] == "forged"
    r = client.get(A + "/badges", headers=bearer(token_for(system, "admin1", "admin"))).json()
    assert all(set(b) == {"id", "kind", "active", "cleaner_id"} for b in r), "keys never leave the server"


def test_concurrent_pushes_from_two_places_still_catch_every_clone(app, gateway, shift, clock, system):
    """Two gateways far apart push the same badges at the same moment: whichever commits
    second sees the first's sightings (badge rows are locked per batch), so every pair is
    flagged and no badge counts present."""
    import threading

    from fastapi.testclient import TestClient
    now = clock()
    ids = [f"B{i:04d}" for i in range(10)]
    barrier, results = threading.Barrier(2), {}

    def run(name, place):
        with TestClient(app) as c:
            items = [frame(b, now, place=place) for b in ids]
            barrier.wait()
            results[name] = push(c, gateway, items, source=name)

    threads = [threading.Thread(target=run, args=("gw-a", DEPOT)),
               threading.Thread(target=run, args=("gw-b", ELSEWHERE))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert set(results) == {"gw-a", "gw-b"}
    with Session(system.db) as s:
        rows = s.exec(select(BadgeSighting).where(BadgeSighting.badge_id.in_(ids))).all()
        assert len(rows) == 20 and {(r.verdict, r.reason) for r in rows} == {("flagged", "clone")}
        from engine.domain.models import Attendance
        statuses = [a.status for a in s.exec(select(Attendance).where(Attendance.shift_id == shift["id"],
                                                                      Attendance.cleaner_id < "cl010"))]
        assert statuses == ["expected"] * 10, statuses


def test_keys_are_sealed_with_the_configured_key_encryption_key(system, setenv):
    from engine.domain import badges
    from engine.runtime.errors import Conflict
    setenv(CITYLOOP_BADGE_KEY_SECRET="first secret")
    with system.transaction() as s:
        badges.register(s, "K0001")
        key, made = badges.provision_key(s, "K0001")
        assert not made and len(key) == 32
    with system.transaction() as s:
        assert badges.master_key(s, s.get(Badge, "K0001")) == key
        moved = s.get(Badge, "K0001").secret
    with system.transaction() as s:       # a sealed key copied onto another badge does not open
        badges.register(s, "K0002")
        s.get(Badge, "K0002").secret = moved
        s.flush()
        assert badges.master_key(s, s.get(Badge, "K0002")) is None
    setenv(CITYLOOP_BADGE_KEY_SECRET="another secret")
    with system.transaction() as s:
        assert badges.master_key(s, s.get(Badge, "K0001")) is None
        with pytest.raises(Conflict, match="cannot be read"):
            badges.provision_key(s, "K0001")        # never silently replaced
    setenv(CITYLOOP_BADGE_KEY_SECRET=None)
    with system.transaction() as s:       # without the variable: a key kept in the database
        badges.register(s, "K0003")
        assert len(badges.master_key(s, s.get(Badge, "K0003"))) == 32


def test_old_good_sightings_are_pruned_and_flags_are_kept(client, gateway, shift, clock, system):
    from engine.domain import sightings
    now = clock()
    push(client, gateway, [frame("B0001", now), frame("B0002", now, key=b"\x05" * 16)])
    with system.transaction() as s:
        assert sightings.prune(s, now + timedelta(days=1)) == 0
        assert sightings.prune(s, now + timedelta(days=8)) == 1
    with Session(system.db) as s:
        assert [(r.badge_id, r.reason) for r in s.exec(select(BadgeSighting))] == [("B0002", "forged")]


def test_the_skew_window_and_clone_distance_are_configurable(app, client, gateway, shift, clock):
    from engine.domain.badges import BadgePolicy
    app.state.badge_policy = BadgePolicy(skew_steps=0, clone_distance_m=20_000)
    now = clock()
    out = push(client, gateway, [frame("B0001", now - timedelta(seconds=30), seen_at=now.isoformat()),
                                 frame("B0002", now)])
    assert [(x["verdict"], x["reason"]) for x in out["results"]] == [("flagged", "replay"), ("applied", None)]
    far = push(client, gateway, [frame("B0002", now, place=ELSEWHERE)], source="gw-far")["results"][0]
    assert (far["verdict"], far["reason"]) == ("ignored", "already_checked_in"), "9 km is under 20 km"
    app.state.badge_policy = BadgePolicy(skew_steps=2)
    assert push(client, gateway, [frame("B0001", now - timedelta(seconds=30), seen_at=now.isoformat())],
                source="gw-2")["results"][0]["verdict"] == "applied"
