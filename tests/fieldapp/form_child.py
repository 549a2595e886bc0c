"""Seed data for the form and task-list tests, and the child app of the kill test.

Run as a script it starts the real app in this (child) process, in a real offscreen window:

    python -m tests.fieldapp.form_child fill <data_dir> <photo>    # types into a form, then SIGKILLs itself
    python -m tests.fieldapp.form_child resume <data_dir> <photo>  # is offered the draft, continues, submits

and prints one JSON line "RESULT {...}" with what it saw."""
from __future__ import annotations

import json
import struct
import sys
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

__all__ = ["FORMS", "form", "png", "seed", "task"]

FORMS = Path(__file__).resolve().parents[2] / "workflows" / "forms"
# (process, task name, title): the title is the BPMN task's name, as the server sends it
_KIND = {"gas_inspection": ("gas_inspection", "Task_inspect", "Inspect household"),
         "wo_rectify": ("work_order", "Task_rectify", "Rectify"),
         "wo_review": ("work_order", "Task_review", "Review"),
         "wo_reroute": ("work_order", "Task_reroute", "Re-route")}


def form(name: str) -> dict:
    return json.loads((FORMS / f"{name}.form").read_text())


def task(n: int, form_name: str = "gas_inspection", due_hours: float | None = 24.0, version: int = 1,
         now: datetime | None = None, title: str | None = None, business_key: str | None = None) -> dict:
    """A task as the server's pull sends it (sync/server/pull.py _task_out)."""
    now = now or datetime.now(timezone.utc)
    process, name, what = _KIND[form_name]
    return {"id": f"t-{n:05d}", "instance_id": 1000 + n, "version": version, "process_key": process,
            "business_key": business_key or f"GAS-{n:05d}" if process == "gas_inspection" else business_key
            or f"WO-{n:05d}", "name": name, "title": title or what,
            "form_ref": form_name, "assignee": "deliverer1", "claimed_by": None, "groups": [],
            "due_at": (now + timedelta(hours=due_hours)).isoformat() if due_hours is not None else None,
            "created_at": now.isoformat(), "form": form(form_name)}


def seed(outbox, tasks: list[dict], cursor: str = "c1", **extra) -> None:
    outbox.apply_pull({"tasks": tasks, "removed": [], "crews": None, "reference": None, "cursor": cursor, **extra})


def png(path: Path, width: int = 64, height: int = 48, rgb: tuple[int, int, int] = (40, 120, 200)) -> Path:
    """A real PNG image (the outbox checks the magic number; Kivy shows it)."""
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _child(mode: str, data_dir: str, photo: str) -> None:
    import os
    import signal

    from fieldapp.ui.boot import headless
    headless((1280, 800))
    from fieldapp.ui.app import FieldApp
    from tests.fieldapp.driver import Driver, make_config

    d = Driver(FieldApp(make_config(data_dir))).start()
    app = d.app
    if mode == "fill":
        seed(app.outbox, [task(1, due_hours=2), task(2, "wo_review", due_hours=5)])
    tasks_screen = app.go("tasks")
    d.until(lambda: tasks_screen.loads and len(tasks_screen.ids.rv.data) >= 2, what="the task list")
    row = d.until(lambda: next((w for w in d.walk() if type(w).__name__ == "TaskRow" and w.title.endswith("-00001")
                                and w.row == "task"), None), what="the row of task 1")
    d.tap(row)
    form_screen = d.until(lambda: app.sm.current == "form" and d.screen, what="the form")
    d.pump(3)
    out: dict = {}
    if mode == "fill":
        views = form_screen.views
        d.tap(views["hose_ok"].choices["aged"])
        d.tap(views["valve_leak_test"].choices["pass"])
        d.scroll_to(views["remarks"])
        d.type_into(views["remarks"].input, "软管老化，已告知住户")
        d.scroll_to(views["cylinder_inspection_date"])
        d.type_into(views["cylinder_inspection_date"].input, "2027-05-01")
        out = {"draft": app.store.draft("task:t-00001").data, "focus": form_screen.focus_key}
        print("RESULT " + json.dumps(out, ensure_ascii=False), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)       # mid-form: no stop, no flush, no goodbye
    popup = d.until(lambda: form_screen.popup, what="the recover-draft question")
    asked = popup.text
    d.tap(popup.buttons["continue"])
    d.until(lambda: form_screen.editable and form_screen.popup is None, what="the draft restored")
    views = form_screen.views
    date_input = views["cylinder_inspection_date"].input
    d.until(lambda: date_input.focus, what="the focus back on the date")
    out["asked"] = asked
    out["focused"] = form_screen.focus_key
    out["visible"] = date_input.get_root_window() is not None and form_screen.ids.scroll.collide_point(
        *form_screen.ids.scroll.to_widget(*date_input.to_window(*date_input.center)))
    out["restored"] = {"remarks": views["remarks"].input.text, "date": date_input.text,
                       "hose_aged": views["hose_ok"].choices["aged"].selected}
    for key, value in (("ventilation", "adequate"), ("co_alarm", "working"), ("stove_flameout_protection", "present")):
        d.scroll_to(views[key])
        d.tap(views[key].choices[value])
    form_screen.add_photo("photos", photo)
    d.tap(form_screen.ids.submit)
    d.until(lambda: app.sm.current == "tasks", what="back on the list after submitting")
    d.until(lambda: app.waiting == 1, what="the top bar counting the op")
    ops = app.outbox.unsettled()
    out["ops"] = ops
    out["draft_left"] = app.store.draft("task:t-00001") is not None
    print("RESULT " + json.dumps(out, ensure_ascii=False), flush=True)
    d.stop()


if __name__ == "__main__":
    _child(*sys.argv[1:4])
