"""My-work rows from pulled tasks and drafts: kinds, due text, overdue, search, sort, counts.
Plain Python: no Kivy is imported."""
from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone

from fieldapp.presenters.tasks import counts, present_drafts, present_task, present_tasks, search_rows, task_kind
from fieldapp.store import LocalStore, form_digest

NOW = datetime(2026, 12, 4, 8, 0, tzinfo=timezone.utc)


def task(n, form_ref="gas_inspection", due=None, title=None, bk=None, version=1, **extra):
    process = "gas_inspection" if form_ref == "gas_inspection" else "work_order"
    return {"id": f"t{n}", "version": version, "process_key": process, "business_key": bk or f"K-{n}",
            "name": {"wo_rectify": "Task_rectify", "wo_review": "Task_review"}.get(form_ref, "Task_inspect"),
            "title": title or f"task {n}", "form_ref": form_ref, "form": {"id": form_ref, "components": []},
            "due_at": (NOW + timedelta(hours=due)).isoformat() if due is not None else None, **extra}


def test_kinds_come_from_the_form_else_the_process_and_task_name():
    assert task_kind(task(1)) == "gas_inspection"
    assert task_kind(task(2, "wo_rectify")) == "rectify"
    assert task_kind(task(3, "wo_review")) == "review"
    assert task_kind(task(4, "wo_reroute")) == "reroute"
    assert task_kind({"process_key": "work_order", "name": "Review the fix", "form_ref": None}) == "review"
    assert task_kind({"process_key": "crew_attendance", "name": "Confirm", "form_ref": "x"}) == "other"


def test_a_row_says_when_it_is_due_and_whether_it_is_overdue_in_both_languages():
    late = present_task(task(1, due=-3), NOW, "zh")
    assert late["overdue"] and late["due_text"].startswith("已逾期 3 小时")
    soon = present_task(task(2, "wo_review", due=0.5), NOW, "en")
    assert not soon["overdue"] and soon["due_text"].startswith("due in 30 min") and soon["kind_text"] == "Review"
    never = present_task(task(3), NOW, "en")
    assert never["due_text"] == "no due time" and not never["overdue"]
    assert present_task(task(4, due=-72), NOW, "en")["due_text"].startswith("overdue by 3 d")


def test_rows_are_sorted_by_due_time_with_no_due_time_last():
    rows = present_tasks([task(1), task(2, due=5), task(3, due=-2), task(4, due=1)], now=NOW, lang="en")
    assert [r["id"] for r in rows] == ["t3", "t4", "t2", "t1"]


def test_search_matches_title_business_key_and_address_with_every_word():
    tasks = [task(1, title="入户安全检查 幸福路 3 号", bk="GAS-0001"),
             task(2, "wo_rectify", title="整改 软管", bk="WO-77", address="光明街 9 号"),
             task(3, title="入户安全检查 光明街 1 号", bk="GAS-0003")]
    assert [r["id"] for r in present_tasks(tasks, "gas-0003", now=NOW)] == ["t3"]
    assert {r["id"] for r in present_tasks(tasks, "光明街", now=NOW)} == {"t2", "t3"}
    assert [r["id"] for r in present_tasks(tasks, "光明街 整改", now=NOW)] == ["t2"]
    assert present_tasks(tasks, "nothing-like-this", now=NOW) == []
    assert [r["id"] for r in present_tasks(tasks, "", now=NOW, kind="rectify")] == ["t2"]


def test_counts_all_overdue_and_by_kind():
    rows = present_tasks([task(1, due=-1), task(2, "wo_rectify", due=-5), task(3, "wo_review", due=2), task(4)],
                         now=NOW)
    c = counts(rows)
    assert c["all"] == 4 and c["overdue"] == 2
    assert (c["gas_inspection"], c["rectify"], c["review"], c["reroute"]) == (2, 1, 1, 0)


def test_drafts_say_whether_they_can_be_continued_or_their_task_is_gone(tmp_path):
    store = LocalStore(tmp_path / "store.db")
    ok, changed, gone = task(1), task(2, version=3), task(3)
    for t, version in ((ok, 1), (changed, 2), (gone, 1)):
        store.save_draft(f"task:{t['id']}", title=t["title"], form_id=t["form_ref"], digest=form_digest(t["form"]),
                         based_on_version=version, data={"remarks": "x"})
    store.save_draft("household:9", title="delivery", form_id="gas_inspection", digest="d", based_on_version=None,
                     data={}, extra={"business_key": "H-9"})
    removed = {"t3": {"task_id": "t3", "reason": "completed", "message": "completed by lee",
                      "message_zh": "已由 lee 完成"}}
    rows = {r["draft_key"]: r for r in present_drafts(store.drafts(), [ok, changed], removed, "zh")}
    assert rows["task:t1"]["state"] == "ok" and rows["task:t1"]["note"].startswith("草稿")
    assert rows["task:t2"]["state"] == "changed"
    assert rows["task:t3"]["state"] == "gone" and "已由 lee 完成" in rows["task:t3"]["note"]
    assert rows["household:9"]["state"] == "ok" and rows["household:9"]["business_key"] == "H-9"
    en = {r["draft_key"]: r for r in present_drafts(store.drafts(), [ok], {}, "en")}
    assert en["task:t3"]["note"] == "The task is no longer in your list"


def test_the_presenters_do_not_import_kivy():
    assert "fieldapp.presenters.tasks" in sys.modules
    import subprocess
    code = ("import sys, fieldapp.presenters.tasks, fieldapp.presenters.form; "
            "assert not any(m == 'kivy' or m.startswith('kivy.') for m in sys.modules), 'kivy imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_search_rows_narrows_presented_rows_and_keeps_their_order():
    rows = present_tasks([task(1, due=3, title="光明街 1"), task(2, "wo_rectify", due=1, title="光明街 2"),
                          task(3, due=2, title="幸福路 3")], now=NOW)
    assert [r["id"] for r in search_rows(rows, "光明街")] == ["t2", "t1"]
    assert [r["id"] for r in search_rows(rows, "", "gas_inspection")] == ["t3", "t1"]
    assert search_rows(rows) == rows and search_rows(rows) is not rows


def test_server_titles_are_english_task_names_so_rows_are_titled_in_the_language_with_their_subject():
    gas_task = {**task(1, title="Inspect household", bk="household:7"), "due_at": None}
    review = task(2, "wo_review", title="Review", bk="WO-2026-0042")
    designed = task(3, "noise_check", title="Measure noise", bk="N-1", process_key="noise", name="Task_measure")
    homes = [{"id": 7, "address_code": "DC01-001-07", "holder": "王芳", "address": "东路 1 号 7 室",
              "next_due_at": (NOW - timedelta(days=2)).isoformat()}]
    zh = {r["id"]: r for r in present_tasks([gas_task, review, designed], now=NOW, lang="zh", households=homes)}
    assert zh["t1"]["title"] == "燃气检查 · DC01-001-07 王芳" and zh["t1"]["address"] == "东路 1 号 7 室"
    assert zh["t1"]["overdue"] and "逾期" in zh["t1"]["due_text"]          # the household's own due date
    assert zh["t2"]["title"] == "审核 · WO-2026-0042"
    assert zh["t3"]["title"] == "Measure noise"                             # a kind the app does not know
    en = {r["id"]: r for r in present_tasks([gas_task, review], now=NOW, lang="en", households=homes)}
    assert en["t1"]["title"] == "Gas inspection · DC01-001-07 王芳" and en["t2"]["title"] == "Review · WO-2026-0042"
    assert [r["id"] for r in present_tasks([gas_task, review], "inspect", now=NOW, households=homes)] == ["t1"]
    without = present_tasks([gas_task], now=NOW, lang="zh")[0]               # households not pulled (yet)
    assert without["title"] == "燃气检查 · household:7" and without["due_text"] == "无截止时间"
