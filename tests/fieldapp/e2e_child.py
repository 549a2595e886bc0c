"""The real tablet app in a child process, for the end-to-end tests: it is driven with touches
in its own offscreen window, reports each step as one line "STEP <name> <json>" on stdout,
and waits for the parent's go-ahead (a line on stdin) where the parent changes the world
(stops or restarts the server). Being a process of its own, it can be killed with SIGKILL.

    python -m tests.fieldapp.e2e_child deliverer-offline <data_dir> <photo>
    python -m tests.fieldapp.e2e_child deliverer-resume <data_dir> <photo>
"""
from __future__ import annotations

import json
import os
import signal
import sys

__all__ = ["GAS_ANSWERS", "main"]

GAS_ANSWERS = {"hose_ok": "ok", "valve_leak_test": "pass", "ventilation": "adequate", "co_alarm": "working",
               "stove_flameout_protection": "present"}


def say(step: str, **values) -> None:
    print(f"STEP {step} " + json.dumps(values, ensure_ascii=False, default=str), flush=True)


def wait_for(word: str) -> None:
    line = sys.stdin.readline().strip()
    if line != word:
        raise SystemExit(f"expected {word!r} from the parent, got {line!r}")


def _start(data_dir: str):
    from fieldapp.ui.boot import headless
    headless((1280, 800))
    from fieldapp.ui.app import FieldApp
    from tests.fieldapp.driver import Driver, make_config
    return Driver(FieldApp(make_config(data_dir))).start()


def _nav(d, screen: str):
    button = d.until(lambda: next((w for w in d.walk(d.app.root.ids.nav) if getattr(w, "screen_name", "") == screen),
                                  None), what=f"the {screen} button in the top bar")
    d.tap(button)
    d.until(lambda: d.app.sm.current == screen, what=f"the {screen} screen")
    return d.screen


def _fill(d, form, answers: dict) -> None:
    for key, value in answers.items():
        view = form.views[key]
        d.scroll_to(view)
        d.tap(view.choices[value])


def _open_household(d, code: str):
    gas = _nav(d, "gas")
    row = d.until(lambda: next((w for w in d.walk(gas) if type(w).__name__ == "HouseholdRow"
                                and w.address_code == code), None), what=f"the row of {code}")
    d.tap(row)
    form = d.until(lambda: d.app.sm.current == "form" and d.screen, what="the inspection form")
    d.pump(3)
    return form


def _hazard(d, form) -> dict:
    panel = next((w for w in d.walk(form.ids.side) if type(w).__name__ == "HazardPanel"), None)
    return {"level": panel.level, "text": panel.level_text, "follows": panel.follows_text} if panel else {}


def deliverer_offline(data_dir: str, photo: str) -> None:
    d = _start(data_dir)
    app = d.app
    d.until(lambda: app.syncer.rounds >= 1 and app.online and app.outbox.value("households") and app.outbox.tasks(),
            timeout=60, what="the first sync (tasks and households)")
    say("pulled", tasks=len(app.outbox.tasks()), households=len(app.outbox.value("households")),
        screen=app.sm.current, online=app.online)
    wait_for("offline")
    # 1. The due inspection from My work, by touches, with a photo; saved while the server is gone.
    tasks = _nav(d, "tasks")
    row = d.until(lambda: next((w for w in d.walk(tasks) if type(w).__name__ == "TaskRow" and w.row == "task"), None),
                  what="the inspection task in my work")
    d.screenshot("e2e-deliverer-tasks-zh")
    d.tap(row)
    form = d.until(lambda: app.sm.current == "form" and d.screen, what="the form")
    d.pump(3)
    _fill(d, form, GAS_ANSWERS)
    d.scroll_to(form.views["cylinder_inspection_date"])
    d.type_into(form.views["cylinder_inspection_date"].input, "2027-05-01")
    form.add_photo("photos", photo)
    d.tap(form.ids.submit)
    d.until(lambda: app.sm.current == "tasks" and app.waiting == 1, what="the inspection saved in the outbox")
    d.until(lambda: app.syncer.rounds >= 2 and not app.online, timeout=60,
            what="the sync after submitting finding no server (offline in the top bar)")
    say("first_saved", waiting=app.waiting, online=app.online, status=app.sync_text)
    # 2. A delivery at a household without a task: half the form, then the app dies.
    form = _open_household(d, "DC01-001-02")
    _fill(d, form, {"hose_ok": "cracked", "valve_leak_test": "leak"})
    d.until(lambda: _hazard(d, form).get("level") == "severe", what="the severe hazard preview")
    hazard = _hazard(d, form)
    d.screenshot("e2e-deliverer-hazard-zh")
    draft = app.store.draft(form.draft_key)
    say("half_filled", hazard=hazard, draft_key=form.draft_key, draft=draft.data if draft else None)
    os.kill(os.getpid(), signal.SIGKILL)


def deliverer_resume(data_dir: str, photo: str) -> None:
    d = _start(data_dir)
    app = d.app
    d.until(lambda: app.syncer.rounds >= 1, timeout=60, what="the first sync attempt")
    say("restarted", waiting=app.waiting, online=app.online, drafts=[x.key for x in app.store.drafts()],
        status=app.sync_text)
    form = _open_household(d, "DC01-001-02")
    popup = d.until(lambda: form.popup, what="the question about the draft")
    asked = popup.text
    d.tap(popup.buttons["continue"])
    d.until(lambda: form.editable and form.popup is None, what="the draft restored")
    restored = {k: form.presenter.raw().get(k) for k in ("hose_ok", "valve_leak_test")}
    _fill(d, form, {k: v for k, v in GAS_ANSWERS.items() if k not in ("hose_ok", "valve_leak_test")})
    d.scroll_to(form.views["cylinder_inspection_date"])
    d.type_into(form.views["cylinder_inspection_date"].input, "2027-06-01")
    form.add_photo("photos", photo)
    d.tap(form.ids.submit)
    d.until(lambda: app.waiting == 2 and app.sm.current != "form", what="the delivery inspection saved")
    ops = app.outbox.unsettled()
    say("offline_done", asked=asked, restored=restored, ops=[{"op_id": o["op_id"], "kind": o["kind"],
                                                              "task_id": o["task_id"]} for o in ops])
    wait_for("online")
    d.tap(app.root.ids.sync_status)
    sync = d.until(lambda: app.sm.current == "sync" and d.screen, what="the sync screen")
    d.tap(sync.ids.sync_now)
    d.until(lambda: app.waiting == 0 and not app.syncer.busy, timeout=90, what="everything sent")
    d.screenshot("e2e-deliverer-synced-zh")
    verdicts = {o["op_id"]: (app.outbox.op(o["op_id"]) or {}).get("verdict") for o in ops}
    say("synced", verdicts=verdicts, status=app.sync_text, online=app.online, refused=len(app.outbox.refused()))
    d.stop()


def main(argv: list[str]) -> None:
    mode, data_dir, photo = argv
    {"deliverer-offline": deliverer_offline, "deliverer-resume": deliverer_resume}[mode](data_dir, photo)


if __name__ == "__main__":
    main(sys.argv[1:4])
