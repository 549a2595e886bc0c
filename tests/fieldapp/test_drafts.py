"""Savepoints: a form with a draft asks before restoring it (never silently), reopens at the
field last edited, never applies a draft to another form or task version, and survives the
app being killed mid-form (SIGKILL in a child process, then a second child finishes it)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from fieldapp.store import form_digest
from tests.fieldapp.form_child import png, seed, task

ROOT = Path(__file__).resolve().parents[2]


def save(d, t, data, focus, version=None, digest=None):
    return d.app.store.save_draft(f"task:{t['id']}", title=t["title"], form_id=t["form_ref"],
                                  digest=digest or form_digest(t["form"]), based_on_version=version or t["version"],
                                  data=data, focus=focus, extra={"form": t["form"]})


def open_task(d, t):
    d.app.go("tasks")
    screen = d.app.go("form", task=t)
    d.pump(3)
    return screen


def test_a_draft_is_offered_never_restored_silently_and_reopens_at_its_field(start_app):
    d = start_app()
    t = task(1, version=3)
    seed(d.app.outbox, [t])
    save(d, t, {"hose_ok": "aged", "remarks": "阀门附近有异味", "cylinder_inspection_date": "2027-0"}, "remarks")
    screen = open_task(d, t)
    popup = d.until(lambda: screen.popup, what="the question")
    assert "有一份" in popup.text and "已填 3 项" in popup.text
    assert screen.views["remarks"].input.text == "" and not screen.editable      # nothing restored yet
    d.screenshot("draft-prompt-zh")
    d.tap(d.app.root.ids.lang_button)              # the question is modal: nothing behind it takes a touch
    assert d.app.lang == "zh"
    d.app.set_language("en")
    popup.dismiss()
    d.until(lambda: popup.parent is None, what="the popup closed")
    screen = d.app.go("form", task=t)
    popup = d.until(lambda: screen.popup and screen.popup.parent is not None and screen.popup, what="asked again")
    assert "has a draft saved" in popup.text and "(3 answers)" in popup.text
    d.screenshot("draft-prompt-en")
    d.tap(popup.buttons["continue"])
    d.until(lambda: screen.editable and screen.views["remarks"].input.focus, what="the cursor back in remarks")
    v = screen.views
    assert v["remarks"].input.text == "阀门附近有异味" and v["hose_ok"].choices["aged"].selected
    assert v["cylinder_inspection_date"].error_label.text == "Expected a date YYYY-MM-DD."   # its error shows too
    scroll, box = screen.ids.scroll, v["remarks"]
    top = box.to_window(box.x, box.top)[1]
    sx, sy = scroll.parent.to_window(*scroll.pos)
    assert sy <= top <= sy + scroll.height, "the field is scrolled into view"
    d.type_into(v["remarks"].input, "阀门附近有异味，已开窗")
    assert d.app.store.draft("task:t-00001").data["remarks"] == "阀门附近有异味，已开窗"


def test_start_over_deletes_the_draft(start_app):
    d = start_app()
    t = task(2)
    seed(d.app.outbox, [t])
    save(d, t, {"remarks": "旧的"}, "remarks")
    screen = open_task(d, t)
    popup = d.until(lambda: screen.popup, what="the question")
    d.tap(popup.buttons["restart"])
    d.until(lambda: screen.editable, what="a blank form")
    assert d.app.store.draft("task:t-00002") is None and screen.views["remarks"].input.text == ""


def test_a_draft_of_another_task_version_is_shown_read_only_and_never_applied(start_app):
    d = start_app()
    t = task(3, version=5)
    seed(d.app.outbox, [t])
    save(d, t, {"hose_ok": "cracked", "remarks": "旧版本的草稿"}, "remarks", version=4)
    screen = open_task(d, t)
    popup = d.until(lambda: screen.popup, what="the warning")
    assert "不能套用到新表单" in popup.text
    assert "软管状况: 开裂" in popup.answers and "备注: 旧版本的草稿" in popup.answers
    assert screen.views["remarks"].input.text == "" and not screen.editable
    d.screenshot("draft-stale-zh")
    d.tap(popup.buttons["keep"])                      # keep it: back, the draft is untouched
    d.until(lambda: d.app.sm.current == "tasks", what="back to the list")
    assert d.app.store.draft("task:t-00003").based_on_version == 4
    kept = popup                                      # still fading out: not the new question
    screen = d.app.go("form", task=t)
    popup = d.until(lambda: screen.popup is not kept and screen.popup and screen.popup.parent is not None
                    and screen.popup, what="warned again")
    d.tap(popup.buttons["discard"])
    d.until(lambda: screen.editable, what="the new form")
    assert d.app.store.draft("task:t-00003") is None
    assert screen.views["remarks"].input.text == "" and not screen.views["hose_ok"].choices["cracked"].selected


def test_a_draft_of_a_changed_form_is_not_applied(start_app):
    d = start_app()
    t = task(4)
    seed(d.app.outbox, [t])
    save(d, t, {"remarks": "x"}, "remarks", digest="an-older-form")
    screen = open_task(d, t)
    popup = d.until(lambda: screen.popup, what="the warning")
    assert set(popup.buttons) == {"discard", "keep"} and screen.views["remarks"].input.text == ""


def run_child(mode: str, data_dir: Path, photo: Path) -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, "-m", "tests.fieldapp.form_child", mode, str(data_dir), str(photo)],
                          cwd=ROOT, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "SDL_VIDEODRIVER": "offscreen"})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"the child said nothing (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"the child failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.returncode, json.loads(lines[-1][len("RESULT "):])


def test_killed_mid_form_the_app_offers_the_draft_and_finishes_it(tmp_path):
    data_dir, photo = tmp_path / "tablet", png(tmp_path / "cylinder.png")
    rc, filled = run_child("fill", data_dir, photo)
    assert rc == -signal.SIGKILL, "the first app must die by SIGKILL mid-form"
    assert filled["focus"] == "cylinder_inspection_date"
    assert filled["draft"] == {"hose_ok": "aged", "valve_leak_test": "pass", "remarks": "软管老化，已告知住户",
                               "cylinder_inspection_date": "2027-05-01"}
    rc, resumed = run_child("resume", data_dir, photo)
    assert rc == 0
    assert "草稿" in resumed["asked"] and "已填 4 项" in resumed["asked"]
    assert resumed["focused"] == "cylinder_inspection_date" and resumed["visible"]
    assert resumed["restored"] == {"remarks": "软管老化，已告知住户", "date": "2027-05-01", "hose_aged": True}
    [op] = resumed["ops"]
    assert op["kind"] == "complete_task" and op["task_id"] == "t-00001" and op["based_on_version"] == 1
    assert op["payload"]["hose_ok"] == "aged" and op["payload"]["cylinder_inspection_date"] == "2027-05-01"
    assert op["payload"]["remarks"] == "软管老化，已告知住户" and len(op["payload"]["photos"]) == 1
    assert not resumed["draft_left"]
