"""The gas deliverer's households as display rows, search, what a tap opens, and the hazard
preview: plain Python, no Kivy."""
from __future__ import annotations

import base64
import hashlib
from datetime import date, datetime, timedelta, timezone

import pytest

from fieldapp.presenters import gas
from sync.client import Outbox

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=timezone.utc)
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
                       "AAAABJRU5ErkJggg==")
GAS_FORM = {"form_ref": "gas_inspection", "form": {"id": "gas_inspection", "components": [
    {"key": "valve_leak_test", "type": "radio"}, {"key": "photos", "type": "filepicker"}]}}


def hh(i, **kw):
    base = {"id": i, "address_code": f"DC01-001-{i:02d}", "holder": f"Holder {i}", "address": f"1 East Road, flat {i}",
            "lat": 31.2, "lon": 121.4, "last_inspected_at": None, "next_due_at": None, "due": False,
            "supply_suspended": False, "task_id": None}
    return {**base, **kw}


def test_rows_put_overdue_then_due_first_and_mark_suspension_and_tasks():
    households = [
        hh(1, next_due_at=(NOW + timedelta(days=40)).isoformat(),
           last_inspected_at=(NOW - timedelta(days=80)).isoformat()),
        hh(2, next_due_at=(NOW - timedelta(days=3)).isoformat(), due=True, task_id="t-2"),
        hh(3, next_due_at=(NOW - timedelta(days=10)).isoformat(), due=True, supply_suspended=True),
        hh(4, next_due_at=(NOW + timedelta(days=2)).isoformat(), due=True),
    ]
    rows = gas.household_rows(households, [{"id": "t-2"}], now=NOW, lang="en")
    assert [r["id"] for r in rows] == [3, 2, 4, 1]
    by_id = {r["id"]: r for r in rows}
    assert by_id[3]["state"] == "overdue" and by_id[3]["due_text"].startswith("Overdue by 10 d")
    assert by_id[3]["suspended"] and "Supply suspended" in by_id[3]["flags_text"]
    assert by_id[2]["has_task"] and "Inspection task open" in by_id[2]["flags_text"]
    assert by_id[4]["state"] == "due" and by_id[4]["due_text"].startswith("Due ")
    assert by_id[1]["state"] == "ok" and by_id[1]["due_text"].startswith("Next inspection")
    zh = {r["id"]: r for r in gas.household_rows(households, [], now=NOW, lang="zh")}
    assert zh[3]["due_text"].startswith("已逾期 10 天") and "已停止供气" in zh[3]["flags_text"]
    assert zh[2]["has_task"] is False          # the task is not on the tablet (yet): nothing to open


def test_search_by_code_holder_or_address_any_case():
    rows = gas.household_rows([hh(1), hh(2, holder="王芳"), hh(12, address="9 West Lane")], now=NOW)
    assert [r["id"] for r in gas.search(rows, "dc01-001-02")] == [2]
    assert [r["id"] for r in gas.search(rows, "王")] == [2]
    assert [r["id"] for r in gas.search(rows, "west 12")] == [12]
    assert len(gas.search(rows, "  ")) == 3 and gas.search(rows, "nobody") == []


def test_a_household_with_its_task_on_the_tablet_opens_the_task():
    task = {"id": "t-2", "form": {"id": "gas_inspection"}, "version": 3}
    req = gas.open_request(hh(2, task_id="t-2"), [task], {"gas_form": GAS_FORM})
    assert req["kind"] == "task" and req.params == {"task": task}


def test_without_a_task_it_opens_an_inspection_whose_submit_records_the_op(tmp_path):
    box = Outbox(str(tmp_path / "outbox.db"), photo_dir=str(tmp_path / "photos"))
    shot = tmp_path / "stove.png"
    shot.write_bytes(PNG)
    req = gas.open_request(hh(7), [], {"gas_form": GAS_FORM}, box, lang="en")
    p = req.params
    assert req["kind"] == "inspect" and p["draft_key"] == "household:7" and p["form"] == GAS_FORM["form"]
    assert p["form_ref"] == "gas_inspection" and p["version"] is None and p["extra"]["household_id"] == 7
    assert p["title"] == "Gas safety inspection · DC01-001-07 Holder 7"
    op_id = p["submit"]({"valve_leak_test": "ok"}, {"photos": [str(shot)]})
    stored = box.op(op_id)
    sha = hashlib.sha256(PNG).hexdigest()
    assert stored["op"]["kind"] == "inspect_household"
    assert stored["op"]["payload"] == {"household_id": 7, "data": {"valve_leak_test": "ok", "photos": [sha]}}
    assert stored["op"]["attachments"] == [sha] and [ph["sha256"] for ph in stored["photos"]] == [sha]
    box.close()


def test_without_the_gas_form_pulled_it_says_what_to_do():
    req = gas.open_request(hh(7), [], {}, lang="en")
    assert req["kind"] == "unavailable" and "sync once while online" in req["message"]
    assert gas.open_request(hh(7), [], None, lang="zh")["message"].startswith("尚未从服务器获取")


def test_hazard_inputs_derive_the_cylinder_date_as_the_server_does():
    today = date(2026, 12, 4)
    assert gas.hazard_inputs({"cylinder_inspection_date": "2026-12-03"}, today)["cylinder_expired"] is True
    assert gas.hazard_inputs({"cylinder_inspection_date": "2026-12-04"}, today)["cylinder_expired"] is False
    assert "cylinder_expired" not in gas.hazard_inputs({"cylinder_inspection_date": "soon"}, today)
    assert "cylinder_expired" not in gas.hazard_inputs({}, today), "not known: a rule reading it cannot judge"


@pytest.mark.parametrize("outputs, level, follows", [
    ({"hazard_level": "severe", "hazard_reason": "Hose cracked / 软管破裂"}, "severe",
     ["The household will be told what was found.", "A rectification order will be opened for the gas office.",
      "Gas supply to this household will be suspended until a re-inspection passes."]),
    ({"hazard_level": "minor", "hazard_reason": "Poor ventilation / 通风不良"}, "minor",
     ["The household will be told what was found.", "A rectification order will be opened for the gas office."]),
    ({"hazard_level": "none", "hazard_reason": "No hazard found / 未发现隐患"}, "none",
     ["No hazard: the inspection is recorded and the next one is due in 4 months."]),
    (None, "unknown", ["Fill in the checklist to see what will follow."]),
])
def test_hazard_preview_says_what_will_follow(outputs, level, follows):
    preview = gas.hazard_preview(outputs, "en")
    assert preview["level"] == level and preview["follows"] == follows
    if outputs:
        assert preview["reason"] == outputs["hazard_reason"].split(" / ")[0]
        assert gas.hazard_preview(outputs, "zh")["reason"] == outputs["hazard_reason"].split(" / ")[1]


def test_hazard_preview_without_a_table_says_the_server_judges():
    assert "server will judge" in gas.hazard_preview(None, "en", table_known=False)["follows"][0]


def test_the_outbox_keeps_pulled_households_whole_and_null_means_unchanged(tmp_path):
    box = Outbox(str(tmp_path / "outbox.db"))
    assert box.value("households") is None
    box.apply_pull({"cursor": "1", "households": [hh(1), hh(2)]})
    box.apply_pull({"cursor": "2", "households": None})
    assert [h["id"] for h in box.value("households")] == [1, 2]
    box.apply_pull({"cursor": "3", "households": [hh(2)]})
    assert [h["id"] for h in box.value("households")] == [2]
    box.close()
