"""The sync screen's data: the state in words, photo problems, and each entry the server
refused, with what happened (the server's own message in the current language) and what to
do (by the conflict's reason, or the field errors of an invalid entry). Plain Python: tested
without Kivy.

    rows = conflict_rows(outbox.refused(), seen=set(store.get("conflicts_seen", [])), lang="en")
    # [{"op_id", "title", "when", "happened", "todo", "errors": [str], "reason", "seen"}]"""
from __future__ import annotations

from collections import Counter
from datetime import datetime

from fieldapp import i18n

__all__ = ["KINDS", "TODO", "conflict_rows", "entries_summary", "kind_label", "photo_rows", "status_rows"]

i18n.add({
    "syncstatus.kind.complete_task": ("完成任务", "task completed"),
    "syncstatus.kind.check_in": ("班组打卡", "crew check-in"),
    "syncstatus.kind.attach": ("添加照片", "photos added"),
    "syncstatus.kind.comment": ("备注", "comment"),
    "syncstatus.kind.inspect_household": ("入户安检", "household inspection"),
    "syncstatus.kind.other": ("记录", "entry"),
    "syncstatus.entries": ("{what} {n} 条", "{n} × {what}"),
    "syncstatus.none": ("无", "none"),
    "syncstatus.online": ("在线", "Online"),
    "syncstatus.offline": ("离线（无法连接服务器）", "Offline (the server cannot be reached)"),
    "syncstatus.signed_out": ("未登录：登录后才会同步", "Not signed in: nothing syncs until someone signs in"),
    "syncstatus.state": ("连接", "Connection"),
    "syncstatus.last": ("上次同步", "Last sync"),
    "syncstatus.never": ("尚未同步", "Never"),
    "syncstatus.waiting": ("待发送", "Waiting to send"),
    "syncstatus.waiting_n": ("{n} 条", "{n} entries"),
    "syncstatus.error": ("上次问题", "Last problem"),
    "syncstatus.photos": ("照片问题", "Photo problems"),
    "syncstatus.photo.missing": ("照片文件已不存在", "the photo file is gone"),
    "syncstatus.photo.changed": ("照片文件已被修改", "the photo file was changed"),
    "syncstatus.photo.refused": ("服务器拒收此照片", "the server refused this photo"),
    "syncstatus.photo.other": ("照片无法发送", "the photo cannot be sent"),
    "syncstatus.photo.todo": ("在此之前相关记录暂存在平板上，不会丢失，也不会发送。",
                              "Until then its entry waits on the tablet: kept, not sent."),
    "syncstatus.title": ("{what}{task}", "{what}{task}"),
    "syncstatus.task": ("（任务 {task}）", " (task {task})"),
    "syncstatus.invalid": ("服务器认为内容有误", "The server found errors in this entry"),
    "syncstatus.todo.completed": ("无需操作：该任务已由他人完成。若您的记录有对方遗漏的内容，请告知主管。",
                                  "Nothing to do: the task was already done. If your entry had something the other "
                                  "one missed, tell your supervisor."),
    "syncstatus.todo.reassigned": ("该任务已改派他人，请查看您的任务列表；您的记录由主管处理。",
                                   "The task now belongs to someone else: check your task list. Your supervisor "
                                   "decides what happens to your entry."),
    "syncstatus.todo.cancelled": ("案件已取消或关闭，无需再做。若现场仍需处理，请联系主管。",
                                  "The case was cancelled or closed: no need to do it. If the work is still needed "
                                  "on site, call your supervisor."),
    "syncstatus.todo.version": ("案件在您下载后有变化。请同步后重新打开任务，确认是否仍需提交；主管已收到您的记录。",
                                "The case changed after you downloaded it. Sync, open the task again and check "
                                "whether your entry is still needed; your supervisor has it."),
    "syncstatus.todo.shift_closed": ("该班次打卡已结束，请告知主管哪些人到岗，由主管人工确认。",
                                     "The shift's check-in is over: tell your supervisor who was present; they "
                                     "confirm it by hand."),
    "syncstatus.todo.process_error": ("服务器无法执行下一步，请告知主管或管理员；您的记录已保存在服务器上。",
                                      "The server could not take the next step: tell your supervisor or the "
                                      "administrator. Your entry is kept on the server."),
    "syncstatus.todo.invalid": ("请按下列错误修改后重新提交：", "Correct these fields and submit again:"),
    "syncstatus.todo.mismatch": ("同一记录被发送了两次且内容不同，以第一次为准。请告知管理员。",
                                 "This entry was sent twice with different content; the first one counts. Tell "
                                 "the administrator."),
    "syncstatus.todo.other": ("请告知主管；您的记录已保留。", "Tell your supervisor; your entry is kept."),
    "syncstatus.happened.mismatch": ("该记录与先前发送的内容不一致", "This entry differs from the one sent before"),
})

KINDS = ("complete_task", "check_in", "attach", "comment", "inspect_household")
TODO = ("completed", "reassigned", "cancelled", "version", "shift_closed", "process_error", "invalid", "mismatch")


def kind_label(kind: str, lang: str | None = None) -> str:
    return i18n.t(f"syncstatus.kind.{kind if kind in KINDS else 'other'}", lang)


def entries_summary(ops: list[dict], lang: str | None = None) -> str:
    """'完成任务 2 条、班组打卡 1 条' / '2 × task completed, 1 × crew check-in' (or 'none')."""
    counts = Counter(o.get("kind", "") for o in ops)
    if not counts:
        return i18n.t("syncstatus.none", lang)
    parts = [i18n.t("syncstatus.entries", lang, what=kind_label(k, lang), n=n) for k, n in counts.most_common()]
    return ("、" if (lang or i18n.language()) == "zh" else ", ").join(parts)


def _when(text: str | None) -> str:
    if not text:
        return ""
    try:
        return datetime.fromisoformat(text).astimezone().strftime("%m-%d %H:%M")
    except ValueError:
        return text[:16]


def conflict_rows(refused: list[dict], seen: set[str] | frozenset = frozenset(), lang: str | None = None,
                  include_seen: bool = True) -> list[dict]:
    """Display rows for Outbox.refused() entries, newest first."""
    zh = (lang or i18n.language()) == "zh"
    rows = []
    for item in reversed(refused):
        op, verdict = item["op"], item.get("verdict") or {}
        what = item.get("outcome") or verdict.get("verdict") or "conflict"
        reason = verdict.get("reason") if what == "conflict" else what
        happened = (verdict.get("message_zh") if zh else verdict.get("message")) or verdict.get("message") or ""
        if what == "mismatch":
            happened = i18n.t("syncstatus.happened.mismatch", lang)
        elif what == "invalid" and not happened:
            happened = i18n.t("syncstatus.invalid", lang)
        key = f"syncstatus.todo.{reason}" if reason in TODO else "syncstatus.todo.other"
        errors = [f"{field}: {message}" for field, message in (verdict.get("errors") or {}).items()]
        task = i18n.t("syncstatus.task", lang, task=op["task_id"]) if op.get("task_id") else ""
        op_id = op["op_id"]
        if op_id in seen and not include_seen:
            continue
        title = i18n.t("syncstatus.title", lang, what=kind_label(op.get("kind", ""), lang), task=task)
        rows.append({"op_id": op_id, "title": title,
                     "when": _when(op.get("device_time")), "happened": happened, "todo": i18n.t(key, lang),
                     "errors": errors if what == "invalid" else [], "reason": reason or what, "seen": op_id in seen})
    return rows


def photo_rows(problems: list[dict], lang: str | None = None) -> list[dict]:
    """Outbox.photo_problems() ([{op_id, kind, photos: [described photo]}]) as rows, one per
    photo: {"op_id", "entry", "problem", "todo"}; the problem is sync.photos' own message."""
    zh = (lang or i18n.language()) == "zh"
    rows = []
    for entry in problems:
        for p in entry.get("photos", []):
            state = p.get("state")
            known = state in ("missing", "changed", "refused")
            key = f"syncstatus.photo.{state}" if known else "syncstatus.photo.other"
            message = (p.get("message_zh") if zh else p.get("message")) or i18n.t(key, lang)
            rows.append({"op_id": entry.get("op_id", ""), "entry": kind_label(entry.get("kind", ""), lang),
                         "problem": message, "todo": i18n.t("syncstatus.photo.todo", lang) if state != "pending"
                         else ""})
    return rows


def status_rows(state, lang: str | None = None) -> list[tuple[str, str]]:
    """(label, value) pairs for a fieldapp.syncer.SyncState."""
    def t(key, **kw):
        return i18n.t(key, lang, **kw)
    if not state.signed_in:
        connection = t("syncstatus.signed_out")
    else:
        connection = t("syncstatus.online") if state.online else t("syncstatus.offline")
    last = state.last_sync.astimezone().strftime("%Y-%m-%d %H:%M") if state.last_sync else t("syncstatus.never")
    rows = [(t("syncstatus.state"), connection), (t("syncstatus.last"), last),
            (t("syncstatus.waiting"), t("syncstatus.waiting_n", n=state.waiting))]
    if state.error and not state.online:
        rows.append((t("syncstatus.error"), state.error[:160]))
    return rows
