"""My work in a real window: 2,000 tasks in a recycling list (few row widgets, scrolling,
search), overdue in red, counts, drafts listed, a tap opens the form, a sync refreshes it."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

from fieldapp.syncer import SyncState
from fieldapp.ui.screens.tasks import TaskRow
from tests.fieldapp.form_child import seed, task

KINDS = ("gas_inspection", "wo_rectify", "wo_review", "wo_reroute")


def many(n: int) -> list[dict]:
    # due times from 49 hours ago to far ahead, every 10th with none (45 overdue); a mix of kinds
    return [task(i, KINDS[i % 4], due_hours=None if i % 10 == 0 else (i - 50) * 1.0) for i in range(1, n + 1)]


def rows(d) -> list[TaskRow]:
    return [w for w in d.screen.ids.rv.walk(restrict=True) if isinstance(w, TaskRow)]


def shown(d) -> list[TaskRow]:
    """Row widgets inside the list's visible area."""
    rv = d.screen.ids.rv
    left, bottom = rv.parent.to_window(*rv.pos)
    out = []
    for w in rows(d):
        x, y = w.to_window(*w.center)
        if left <= x <= left + rv.width and bottom <= y <= bottom + rv.height and w.title:
            out.append(w)
    return sorted(out, key=lambda w: -w.to_window(*w.pos)[1])


def test_two_thousand_tasks_scroll_in_a_recycling_list_and_search_narrows_it(start_app):
    d = start_app()
    seed(d.app.outbox, many(2000))
    screen = d.app.go("tasks")
    d.until(lambda: screen.loads and len(screen.ids.rv.data) == 2000, what="2,000 rows")
    d.pump(3)
    visible_rows = len(shown(d))
    assert 6 <= visible_rows <= 12
    assert len(rows(d)) <= visible_rows + 6, "the list must recycle its row widgets"
    first = shown(d)[0]
    assert first.overdue and first.title.endswith("-00001")      # most overdue first
    assert first.children[0].color[0] > 0.7 and first.children[0].color[1] < 0.2     # the due text is red
    assert screen.counts_text.startswith("全部 2000  ·  [color=cc1a1a]逾期 45[/color]")
    d.screenshot("tasks-zh")
    d.tap(d.app.root.ids.lang_button)
    d.until(lambda: screen.counts_text.startswith("All 2000"), what="the list in English")
    d.pump(2)
    assert shown(d)[0].kind_text == "Rectify"
    d.screenshot("tasks-en")

    # fling to the end: the last rows are those without a due time, still few widgets
    rv = screen.ids.rv
    for y in (0.75, 0.5, 0.25, 0.0):
        rv.scroll_y = y
        d.pump(2)
        assert len(rows(d)) <= visible_rows + 6
    d.until(lambda: shown(d) and shown(d)[-1].due_text == "no due time", what="the end of the list")
    assert shown(d)[-1].title == rv.data[-1]["title"] and shown(d)[0].title != rv.data[0]["title"]

    d.type_into(screen.ids.search, "WO 01999")
    d.until(lambda: len(rv.data) == 1, what="the search result")
    d.type_into(screen.ids.search, "WO-0012")
    assert {r["item"]["id"] for r in rv.data} == {f"t-{n:05d}" for n in range(120, 130) if n % 4}
    assert screen.counts_text.startswith("All 7")
    d.type_into(screen.ids.search, "nothing like this")
    assert rv.data == [] and screen.empty_text == 'No task matches "nothing like this"'


def test_a_tap_opens_the_task_form(start_app):
    d = start_app()
    seed(d.app.outbox, [task(1, "wo_review", due_hours=3), task(2, due_hours=1)])
    screen = d.app.go("tasks")
    d.until(lambda: len(screen.ids.rv.data) == 2, what="the rows")
    d.pump(2)
    review = next(w for w in shown(d) if w.title.endswith("-00001"))
    d.tap(review)
    d.until(lambda: d.app.sm.current == "form", what="the form")
    assert d.screen.task["id"] == "t-00001" and "decision" in d.screen.views
    assert d.screen.title == "审核 · WO-00001"                 # the server's title is the BPMN name "Review"
    d.tap(d.app.root.ids.lang_button)
    assert d.screen.title == "Review · WO-00001"
    d.tap(d.app.root.ids.lang_button)
    d.tap(d.screen.ids.back)
    assert d.app.sm.current == "tasks"


def test_a_sync_that_brings_tasks_refreshes_the_list(start_app):
    d = start_app()
    seed(d.app.outbox, [task(1)])
    screen = d.app.go("tasks")
    d.until(lambda: len(screen.ids.rv.data) == 1, what="one row")
    seed(d.app.outbox, [task(2), task(3)], cursor="c2")          # what a pull stores
    state = replace(d.app.syncer.state, signed_in=True, online=True, last_sync=datetime.now(timezone.utc))
    d.app.sync_state_changed(state)
    d.until(lambda: len(screen.ids.rv.data) == 3, what="the new tasks listed")
    d.app.outbox.apply_pull({"tasks": [], "removed": [{"task_id": "t-00002", "reason": "completed",
                                                      "message": "completed by lee", "message_zh": "已由 lee 完成"}],
                             "cursor": "c3"})
    d.app.sync_state_changed(replace(state, last_sync=datetime.now(timezone.utc).replace(year=2030)))
    d.until(lambda: len(screen.ids.rv.data) == 2, what="the removed task gone")
    assert isinstance(d.app.syncer.state, SyncState)


def test_drafts_are_listed_first_with_what_can_be_done_with_them(start_app):
    d = start_app()
    t1, t2 = task(1), task(2)
    seed(d.app.outbox, [t1, t2])
    from fieldapp.store import form_digest
    d.app.store.save_draft("task:t-00002", title=t2["title"], form_id="gas_inspection",
                           digest=form_digest(t2["form"]), based_on_version=1, data={"remarks": "半途"})
    d.app.store.save_draft("task:t-00009", title="入户安全检查 · 幸福路 9 号", form_id="gas_inspection",
                           digest=form_digest(t2["form"]), based_on_version=1, data={"remarks": "旧的"},
                           extra={"form": t2["form"]})
    d.app.outbox.apply_pull({"tasks": [], "removed": [{"task_id": "t-00009", "reason": "completed",
                                                      "message": "completed by lee", "message_zh": "已由 lee 完成"}],
                             "cursor": "c2"})
    screen = d.app.go("tasks")
    d.until(lambda: len(screen.ids.rv.data) == 4, what="2 drafts and 2 tasks")
    d.pump(2)
    kinds = [(r["row"], r["item"].get("state")) for r in screen.ids.rv.data]
    assert kinds[:2] in ([("draft", "ok"), ("draft", "gone")], [("draft", "gone"), ("draft", "ok")])
    gone = next(w for w in shown(d) if w.row == "draft" and "已由 lee 完成" in w.due_text)
    d.tap(gone)
    popup = d.until(lambda: screen.popup, what="the gone draft's answers")
    assert "备注: 旧的" in popup.answers
    d.tap(popup.buttons["discard"])
    d.until(lambda: len(screen.ids.rv.data) == 3, what="the draft deleted")
    assert d.app.store.draft("task:t-00009") is None and d.app.store.draft("task:t-00002") is not None
