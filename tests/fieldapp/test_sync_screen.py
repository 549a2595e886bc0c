"""The sync screen against a real server: entries the server refused are listed with what
happened (the server's message, in the current language) and what to do, field errors
included; each can be marked as seen; 'sync now' runs off the UI thread with progress."""
from __future__ import annotations

import httpx

from fieldapp import session
from fieldapp.store import LocalStore
from tests.api.conftest import bearer, token_for
from tests.fieldapp.conftest import PASSWORD, TABLET_OWNER, register_tablet
from tests.fieldapp.driver import make_config
from tests.fieldapp.test_pairing_screens import on_screen, settle
from tests.sync.syncing import PUSH, batch, complete_op, east_order, photo, rectify_task


def signed_in_tablet(field_server, system, field_data) -> None:
    config = make_config(field_data)
    store = LocalStore(config.store_path)
    device_id, code = register_tablet(system)
    session.pair(config, store, field_server.url, device_id, code)
    session.sign_in(config, store, TABLET_OWNER, PASSWORD)
    store.close()


def cards(d) -> list:
    return list(reversed(d.app.sm.get_screen("sync").ids.conflicts.children))


def test_a_conflict_and_an_invalid_entry_are_shown_with_what_to_do_and_can_be_marked_seen(
        start_app, field_server, system, field_data):
    signed_in_tablet(field_server, system, field_data)
    number = east_order(system)
    task = rectify_task(system, number)
    d = start_app()
    d.until(lambda: d.app.syncer.rounds >= 1 and d.app.online, what="the first sync")
    # the tablet's worker completes the task offline; meanwhile a colleague completes it on the server
    mine = d.app.outbox.add("complete_task", {"action": "not_ours", "reason": "a road defect"}, task_id=task["id"],
                            based_on_version=task["version"])
    blank = d.app.outbox.add("comment", {"work_order": number, "text": "   "})
    other = bearer(token_for(system, "worker.clean-east.2", "unit_worker", "clean-east"))
    first = complete_op(system, task, {"action": "not_ours", "reason": "not ours at all"})
    r = httpx.post(f"{field_server.url}{PUSH}", json=batch(first), headers=other, timeout=30)
    assert r.json()["verdicts"][0]["verdict"] == "applied", r.text
    d.app.syncer.refresh()
    d.tap(d.app.root.ids.sync_status)
    on_screen(d, "sync")
    assert d.by_text("没有被退回的记录") and "待发 2" in d.app.sync_text
    d.tap(d.screen.ids.sync_now)
    d.until(lambda: len(cards(d)) == 2, timeout=30, what="two refused entries listed")
    d.until(lambda: "同步完成" in d.screen.ids.outcome.text, what="the outcome line")
    assert d.screen.ids.outcome.text == "同步完成：发送 2 条，被拒 2 条"
    conflict, invalid = sorted(cards(d), key=lambda c: c.op_id != mine)
    assert conflict.op_id == mine and invalid.op_id == blank
    assert "该任务已由 worker.clean-east.2 完成" in conflict.ids.happened.text
    assert conflict.ids.todo.text.startswith("怎么办：无需操作：该任务已由他人完成")
    assert "完成任务（任务 " in conflict.ids.title.text
    assert invalid.ids.todo.text.startswith("怎么办：请按下列错误修改后重新提交")
    assert "payload.text: empty" in invalid.ids.todo.text and not d.screen.ids.sync_now.disabled
    assert d.app.conflicts == 2 and d.by_text("服务器退回的记录（未查看 2 条）")
    d.screenshot("sync-zh")
    d.tap(d.app.root.ids.lang_button)
    conflict = next(c for c in cards(d) if c.op_id == mine)
    assert "already completed by worker.clean-east.2" in conflict.ids.happened.text
    assert conflict.ids.todo.text.startswith("What to do: Nothing to do: the task was already done.")
    assert d.screen.ids.outcome.text == "Synced: 2 sent, 2 refused"
    d.screenshot("sync-en")
    d.tap(conflict.ids.mark)
    conflict = next(c for c in cards(d) if c.op_id == mine)
    assert conflict.ids.mark.text == "Seen" and conflict.ids.mark.disabled and d.app.conflicts == 1
    assert mine in d.app.store.get("conflicts_seen") and d.by_text("Entries the server refused (1 not seen)")
    settle(d)


def test_sync_now_signed_out_and_offline_say_so(start_app, field_server, system, field_data):
    signed_in_tablet(field_server, system, field_data)
    d = start_app()
    d.until(lambda: d.app.syncer.rounds >= 1 and d.app.online, what="the first sync")
    field_server.stop()                                    # the network goes away
    d.app.go("sync")
    on_screen(d, "sync")
    d.tap(d.screen.ids.sync_now)
    d.until(lambda: "同步未完成" in d.screen.ids.outcome.text, timeout=30, what="the offline outcome")
    assert not d.app.online and d.by_text("离线（无法连接服务器）")
    session.sign_out(d.app.store)
    d.app.syncer.refresh()
    d.tap(d.screen.ids.sync_now)
    assert d.screen.ids.outcome.text == "未登录，无法同步"
    settle(d)


def test_a_photo_gone_from_the_tablet_holds_its_entry_back_and_the_screen_says_what_to_do(
        start_app, field_server, system, field_data, tmp_path):
    signed_in_tablet(field_server, system, field_data)
    number = east_order(system)
    task = rectify_task(system, number)
    d = start_app()
    d.until(lambda: d.app.syncer.rounds >= 1 and d.app.online, what="the first sync")
    shot = tmp_path / "after.jpg"
    shot.write_bytes(photo(1))
    op_id = d.app.outbox.add("complete_task", {"action": "fixed"}, task_id=task["id"],
                             based_on_version=task["version"], photos={"after_photos": [str(shot)]})
    shot.unlink()                                          # the file went away before it was uploaded
    d.app.go("sync")
    on_screen(d, "sync")
    d.tap(d.screen.ids.sync_now)
    d.until(lambda: "同步完成" in d.screen.ids.outcome.text, timeout=30, what="the sync to finish")
    texts = [w.text for w in d.screen.ids.photos.children]
    assert len(texts) == 1 and "完成任务：照片 after.jpg 已不在本机" in texts[0]
    assert "暂存在平板上，不会丢失" in texts[0]
    assert [o["op_id"] for o in d.app.outbox.unsettled()] == [op_id] and d.app.waiting == 1
    d.tap(d.app.root.ids.lang_button)
    assert "task completed: the photo after.jpg is no longer on this tablet" in d.screen.ids.photos.children[0].text
    settle(d)
