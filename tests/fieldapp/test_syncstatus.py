"""The sync screen's presenter, without Kivy: what happened and what to do for every kind of
refusal the server gives, in both languages."""
from __future__ import annotations

from datetime import datetime, timezone

from fieldapp import i18n
from fieldapp.presenters.syncstatus import TODO, conflict_rows, entries_summary, photo_rows, status_rows
from fieldapp.syncer import SyncState


def refused(kind: str, outcome: str, reason: str | None = None, errors: dict | None = None, n: int = 0,
            task_id: str | None = "t-1") -> dict:
    verdict = {"verdict": outcome, "reason": reason, "errors": errors, "message": f"en {outcome} {reason}",
               "message_zh": f"中 {outcome} {reason}"}
    return {"seq": n, "outcome": outcome, "verdict": verdict,
            "op": {"op_id": f"op-{n}", "kind": kind, "task_id": task_id, "device_time": "2026-12-04T07:00:00+00:00"}}


def test_every_conflict_reason_has_its_own_what_to_do_in_both_languages():
    reasons = ("completed", "reassigned", "cancelled", "version", "shift_closed", "process_error")
    items = [refused("complete_task", "conflict", r, n=i) for i, r in enumerate(reasons)]
    for lang in ("zh", "en"):
        rows = conflict_rows(items, lang=lang)
        assert [r["reason"] for r in rows] == list(reversed(reasons))          # newest first
        todos = [r["todo"] for r in rows]
        assert len(set(todos)) == len(reasons)
        assert all(t == i18n.t(f"syncstatus.todo.{r}", lang) for t, r in zip(todos, reversed(reasons)))
        assert all(r["happened"] == (f"中 conflict {r['reason']}" if lang == "zh" else f"en conflict {r['reason']}")
                   for r in rows)
    assert set(reasons) < set(TODO)
    en = conflict_rows(items[:1], lang="en")[0]
    assert en["title"] == "task completed (task t-1)" and en["errors"] == [] and not en["seen"]
    assert conflict_rows(items[:1], lang="zh")[0]["title"] == "完成任务（任务 t-1）"


def test_invalid_lists_its_field_errors_and_mismatch_and_unknown_reasons_still_say_what_to_do():
    bad = refused("comment", "invalid", errors={"payload.text": "empty"}, n=1, task_id=None)
    twice = refused("check_in", "mismatch", n=2)
    odd = refused("attach", "conflict", "something_new", n=3)
    rows = {r["op_id"]: r for r in conflict_rows([bad, twice, odd], seen={"op-2"}, lang="en")}
    assert rows["op-1"]["errors"] == ["payload.text: empty"] and rows["op-1"]["todo"].startswith("Correct these")
    assert rows["op-1"]["title"] == "comment"
    assert rows["op-2"]["seen"] and "first one counts" in rows["op-2"]["todo"]
    assert rows["op-2"]["happened"] == "This entry differs from the one sent before"
    assert rows["op-3"]["todo"] == "Tell your supervisor; your entry is kept."
    assert [r["op_id"] for r in conflict_rows([bad, twice], seen={"op-2"}, include_seen=False)] == ["op-1"]


def test_photo_problems_status_and_entry_summaries():
    problems = [{"op_id": "op-1", "kind": "complete_task", "photos": [
        {"state": "missing", "message": "the photo a.jpg is gone", "message_zh": "照片 a.jpg 已不在本机"},
        {"state": "pending", "error": "timeout", "message": "not uploaded yet", "message_zh": "尚未上传"}]}]
    zh = photo_rows(problems, "zh")
    assert [(r["entry"], r["problem"]) for r in zh] == [("完成任务", "照片 a.jpg 已不在本机"), ("完成任务", "尚未上传")]
    assert zh[0]["todo"] and zh[1]["todo"] == ""
    state = SyncState(signed_in=True, online=False, waiting=3, error="connect refused",
                      last_sync=datetime(2026, 12, 4, 7, 0, tzinfo=timezone.utc))
    rows = dict(status_rows(state, "en"))
    assert rows["Connection"].startswith("Offline") and rows["Waiting to send"] == "3 entries"
    assert rows["Last problem"] == "connect refused"
    assert dict(status_rows(SyncState(), "zh"))["连接"].startswith("未登录")
    assert dict(status_rows(SyncState(signed_in=True, online=True), "zh"))["上次同步"] == "尚未同步"
    ops = [{"kind": "comment"}, {"kind": "check_in"}, {"kind": "comment"}]
    assert entries_summary(ops, "zh") == "备注 2 条、班组打卡 1 条"
    assert entries_summary(ops, "en") == "2 × comment, 1 × crew check-in"
    assert entries_summary([], "en") == "none"
