"""Gas households over HTTP: CSV import with a per-row report (all-or-nothing and not),
the deliverer's object rule, the due list, inspection history and starting an inspection."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import Session, func, select

from engine.domain.models import AddressCode, Household
from engine.runtime.errors import Actor
from tests.api.conftest import bearer, token_for

HEADER = "address_code,holder,phone,deliverer_id,last_inspected_at\n"
GOOD = {"hose_ok": "ok", "valve_leak_test": "pass", "ventilation": "adequate", "co_alarm": "working",
        "cylinder_inspection_date": "2027-05-01", "stove_flameout_protection": "present", "photos": ["ab" * 32]}


@pytest.fixture
def flats(app, system):
    """Five more flats in the address register (DC01-002-01 .. 05), no households yet."""
    with Session(system.db) as s:
        s.add(AddressCode(code="DC01-002", street_code="dc-01", label="2 East Road", lat=31.2, lon=121.4))
        s.flush()
        for i in range(1, 6):
            s.add(AddressCode(code=f"DC01-002-{i:02d}", parent="DC01-002", street_code="dc-01",
                              label=f"2 East Road, flat {i}", lat=31.2, lon=121.4))
        s.commit()


def households(system) -> dict[str, Household]:
    with Session(system.db) as s:
        return {h.address_code: h for h in s.exec(select(Household))}


def upload(client, token, text: str | bytes, **params):
    body = text.encode("utf-8") if isinstance(text, str) else text
    return client.post("/api/v1/gas/households/import", params=params, content=body,
                       headers={**bearer(token), "content-type": "text/csv"})


MIXED = ("\ufeff" + HEADER +
         "DC01-002-01,Li Lei,138 0000 0001,deliverer1,2026-01-10\n"        # row 2: new
         "DC01-001-01,Holder One Renamed,,deliverer1,\n"                  # row 3: update
         "DC01-002-02,Han Meimei,13800000002,nobody,\n"                   # row 4: unknown deliverer
         "DC01-002-01,Li Lei again,13800000003,deliverer1,\n"             # row 5: duplicate of row 2
         "DC01-002-03,Wang Wu,13800000004,deliverer1,2026-13-45\n"        # row 6: bad date
         "XX-404,Nobody Home,,deliverer1,\n"                             # row 7: not in the register
         "DC01-002-04,,13800000005,deliverer1,\n")                        # row 8: no holder
EXPECTED_ERRORS = [(4, "deliverer_id"), (5, "address_code"), (6, "last_inspected_at"), (7, "address_code"),
                   (8, "holder")]


def test_import_all_or_nothing_reports_every_bad_row_and_writes_nothing(client, tokens, system, flats):
    r = upload(client, tokens["admin"], MIXED)
    assert r.status_code == 422, r.text
    body = r.json()
    assert (body["created"], body["updated"], body["written"], body["rows"]) == (0, 0, False, 7)
    assert [(e["row"], e["field"]) for e in body["errors"]] == EXPECTED_ERRORS
    assert "nobody" in body["errors"][0]["message"] and "row 2" in body["errors"][1]["message"]
    assert "nothing was written" in body["message"]
    hh = households(system)
    assert len(hh) == 3 and hh["DC01-001-01"].holder == "Holder 1"


def test_import_keeps_good_rows_when_asked(client, tokens, system, flats, clock):
    r = upload(client, tokens["admin"], MIXED, all_or_nothing="false")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["created"], body["updated"], body["written"]) == (1, 1, True)
    assert [(e["row"], e["field"]) for e in body["errors"]] == EXPECTED_ERRORS
    hh = households(system)
    assert len(hh) == 4 and hh["DC01-001-01"].holder == "Holder One Renamed"
    new = hh["DC01-002-01"]
    assert (new.holder, new.phone, new.deliverer_id) == ("Li Lei", "138 0000 0001", "deliverer1")
    # a bare date is district-local midnight (Asia/Shanghai); due 4 months on
    assert new.last_inspected_at.astimezone(timezone.utc) == datetime(2026, 1, 9, 16, 0, tzinfo=timezone.utc)
    assert new.next_due_at.astimezone(timezone.utc) == datetime(2026, 5, 9, 16, 0, tzinfo=timezone.utc)
    # an import never moves an inspection date back
    again = upload(client, tokens["admin"], HEADER + "DC01-002-01,Li Lei,,deliverer1,2025-06-01\n")
    assert again.status_code == 200 and again.json()["updated"] == 1
    assert households(system)["DC01-002-01"].last_inspected_at == new.last_inspected_at


def test_import_as_multipart_and_file_level_errors(client, tokens, system, flats):
    admin = bearer(tokens["admin"])
    csv = HEADER + "DC01-002-05,Zhao Liu,,deliverer1,2026-02-01T10:00:00+08:00\n"
    r = client.post("/api/v1/gas/households/import", files={"file": ("hh.csv", csv.encode(), "text/csv")},
                    headers=admin)
    assert r.status_code == 200 and r.json()["created"] == 1, r.text
    missing = upload(client, tokens["admin"], "address_code,holder\nDC01-002-04,X\n")
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "header"
    assert "phone" in missing.json()["message"] and "deliverer_id" in missing.json()["message"]
    gbk = upload(client, tokens["admin"], (HEADER + "DC01-002-04,张三,,deliverer1,\n").encode("gbk"))
    assert gbk.status_code == 422 and "UTF-8" in gbk.json()["message"]
    assert upload(client, tokens["admin"], b"").status_code == 422
    nul = upload(client, tokens["admin"], HEADER + "DC01-002-04,A\x00B,,deliverer1,\n")
    assert nul.status_code == 422 and "NUL" in nul.json()["message"]
    assert client.get("/api/v1/gas/households", params={"deliverer": "\x00"}, headers=admin).status_code == 422
    big = upload(client, tokens["admin"], HEADER + "x" * (5 * 1024 * 1024))
    assert big.status_code == 413 and big.json()["error"] == "too_large"
    many = upload(client, tokens["admin"], HEADER + "DC01-002-04,X,,deliverer1,\n" * 50_001)
    assert many.status_code == 422 and "50,000" in many.json()["message"]
    as_json = client.post("/api/v1/gas/households/import", json={"rows": []}, headers=admin)
    assert as_json.status_code == 415
    assert upload(client, tokens["dispatcher"], csv).status_code == 403
    assert len(households(system)) == 4


def test_a_deliverer_sees_only_their_households(client, tokens, system):
    mine = client.get("/api/v1/gas/households", headers=bearer(tokens["deliverer"])).json()
    assert mine["total"] == 3 and {h["deliverer_id"] for h in mine["items"]} == {"deliverer1"}
    other = bearer(token_for(system, "deliverer2", "deliverer"))
    assert client.get("/api/v1/gas/households", headers=other).json() == {"items": [], "total": 0, "limit": 100,
                                                                          "offset": 0}
    for path in ("/api/v1/gas/households/1", "/api/v1/gas/households/1/inspections"):
        assert client.get(path, headers=other).status_code == 404
        assert client.get(path, headers=bearer(tokens["deliverer"])).status_code == 200
    assert client.post("/api/v1/gas/households/1/inspections", headers=other).status_code == 404
    assert client.get("/api/v1/gas/due", headers=other).json()["total"] == 0
    gas_office = bearer(token_for(system, "gasworker1", "unit_worker", "gas-office"))
    assert client.get("/api/v1/gas/households", headers=gas_office).json()["total"] == 3
    assert client.get("/api/v1/gas/households", headers=bearer(tokens["dispatcher"])).json()["total"] == 3
    r = client.get("/api/v1/gas/households", headers=bearer(tokens["unit_worker"]))  # clean-east
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    assert client.get("/api/v1/gas/households/1", headers=bearer(tokens["unit_leader"])).status_code == 403
    assert client.get("/api/v1/gas/households/999", headers=gas_office).status_code == 404


def test_filters_pagination_and_the_due_list(client, tokens, system, flats, clock):
    three_months_ago = (clock() - timedelta(days=90)).date().isoformat()
    r = upload(client, tokens["admin"], HEADER + f"DC01-001-01,Holder 1,,deliverer1,{three_months_ago}\n"
               "DC01-002-01,Someone Else,,,\n")
    assert r.status_code == 200, r.text
    d = bearer(tokens["deliverer"])
    due = client.get("/api/v1/gas/due", headers=d).json()
    assert [h["address_code"] for h in due["items"]] == ["DC01-001-02", "DC01-001-03"]
    assert all(h["overdue"] and h["next_due_at"] is None for h in due["items"])
    soon = client.get("/api/v1/gas/due", params={"within_days": 40}, headers=d).json()
    assert soon["total"] == 3 and soon["items"][-1]["address_code"] == "DC01-001-01"
    assert not soon["items"][-1]["overdue"]
    admin = bearer(tokens["admin"])
    assert client.get("/api/v1/gas/due", headers=admin).json()["total"] == 3, "the unassigned one too"
    listed = lambda **p: client.get("/api/v1/gas/households", params=p, headers=admin).json()  # noqa: E731
    assert listed(overdue="true")["total"] == 3 and listed(overdue="false")["total"] == 1
    assert listed(due="true", within_days=40)["total"] == 4 and listed(due="false", within_days=40)["total"] == 0
    assert listed(deliverer="deliverer1")["total"] == 3
    assert listed(street="dc-01")["total"] == 4 and listed(street="nowhere")["total"] == 0
    page = listed(limit=2, offset=2)
    assert page["total"] == 4 and [h["address_code"] for h in page["items"]] == ["DC01-001-03", "DC01-002-01"]
    assert client.get("/api/v1/gas/households", params={"limit": 0}, headers=admin).status_code == 422


def test_deliverer_starts_an_inspection_at_delivery(client, tokens, system):
    d = bearer(tokens["deliverer"])
    r = client.post("/api/v1/gas/households/2/inspections", headers=d)
    assert r.status_code == 201, r.text
    started = r.json()
    tasks = system.tasks.for_actor(Actor("deliverer1"))
    assert [(t["business_key"], t["id"]) for t in tasks] == [("household:2", started["task_id"])]
    assert started["instance_id"] == tasks[0]["instance_id"]
    again = client.post("/api/v1/gas/households/2/inspections", headers=d)
    assert again.status_code == 409 and "already open" in again.json()["message"]
    assert client.get("/api/v1/gas/households/2",
                      headers=d).json()["open_inspection_instance"] == started["instance_id"]
    refused = client.post("/api/v1/gas/households/2/inspections", headers=bearer(tokens["dispatcher"]))
    assert refused.status_code == 403 and refused.json()["error"] == "role_forbidden"
    system.complete(started["task_id"], Actor("deliverer1"), GOOD)
    history = client.get("/api/v1/gas/households/2/inspections", headers=d).json()
    assert len(history) == 1 and history[0]["hazard_level"] == "none" and history[0]["deliverer_id"] == "deliverer1"
    assert history[0]["checklist"]["valve_leak_test"] == "pass"
    detail = client.get("/api/v1/gas/households/2", headers=d).json()
    assert detail["last_inspected_at"] is not None and not detail["overdue"]
    assert detail["open_inspection_instance"] is None
    with Session(system.db) as s:
        assert s.exec(select(func.count()).select_from(Household)).one() == 3
