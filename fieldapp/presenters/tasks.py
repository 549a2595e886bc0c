"""My work: pulled tasks and local drafts turned into rows for the task list. Plain Python.

    rows = present_tasks(outbox.tasks(), query="G-12", now=now, lang="zh")
    counts(rows)            # {"all": n, "overdue": n, "gas_inspection": n, ...}
    present_drafts(store.drafts(), outbox.tasks(), outbox.removed(), lang="zh")

A task's kind comes from its form (gas_inspection, wo_rectify, wo_review, wo_reroute), else
from its process key and task name. Rows are sorted by due time, tasks with no due time last."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable

from fieldapp import i18n
from fieldapp.store import Draft, form_digest

__all__ = ["KINDS", "counts", "due_text", "parse_time", "present_drafts", "present_task", "present_tasks",
           "search_rows", "task_kind"]

KINDS = ("gas_inspection", "rectify", "review", "reroute", "other")

i18n.add({
    "tasks.kind.gas_inspection": ("燃气检查", "Gas inspection"),
    "tasks.kind.rectify": ("整改", "Rectify"),
    "tasks.kind.review": ("审核", "Review"),
    "tasks.kind.reroute": ("改派", "Re-route"),
    "tasks.kind.other": ("其他", "Other"),
    "tasks.due.none": ("无截止时间", "no due time"),
    "tasks.due.overdue": ("已逾期 {span}（{time}）", "overdue by {span} ({time})"),
    "tasks.due.in": ("{span}后到期（{time}）", "due in {span} ({time})"),
    "tasks.span.min": ("{n} 分钟", "{n} min"),
    "tasks.span.hour": ("{n} 小时", "{n} h"),
    "tasks.span.day": ("{n} 天", "{n} d"),
    "tasks.count.all": ("全部 {n}", "All {n}"),
    "tasks.count.overdue": ("逾期 {n}", "Overdue {n}"),
    "tasks.draft.label": ("草稿", "Draft"),
    "tasks.draft.saved": ("草稿 · 保存于 {time}", "Draft · saved {time}"),
    "tasks.draft.gone": ("任务已不在：{why}", "Task gone: {why}"),
    "tasks.draft.gone_unknown": ("任务已不在您的列表中", "The task is no longer in your list"),
    "tasks.draft.changed": ("表单或任务已更新，草稿不能直接续填",
                            "The form or task changed: the draft cannot be continued"),
})

_BY_FORM = {"gas_inspection": "gas_inspection", "wo_rectify": "rectify", "wo_review": "review",
            "wo_reroute": "reroute"}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def parse_time(text: str | None) -> datetime | None:
    """An ISO time from the server (naive means UTC); None if absent or unreadable."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def task_kind(task: dict) -> str:
    ref = (task.get("form_ref") or "").split(":")[0]
    if ref in _BY_FORM:
        return _BY_FORM[ref]
    process, name = (task.get("process_key") or "").lower(), (task.get("name") or "").lower()
    if process == "gas_inspection":
        return "gas_inspection"
    for word in ("rectify", "review", "reroute"):
        if word in name or word.replace("re", "re-", 1) in name:
            return word
    return "other"


def _span(seconds: float, lang: str | None) -> str:
    minutes = int(abs(seconds) // 60)
    if minutes < 60:
        return i18n.t("tasks.span.min", lang, n=max(minutes, 1))
    if minutes < 48 * 60:
        return i18n.t("tasks.span.hour", lang, n=minutes // 60)
    return i18n.t("tasks.span.day", lang, n=minutes // (24 * 60))


def due_text(due: datetime | None, now: datetime, lang: str | None = None) -> str:
    if due is None:
        return i18n.t("tasks.due.none", lang)
    local = due.astimezone().strftime("%m-%d %H:%M")
    seconds = (due - now).total_seconds()
    key = "tasks.due.overdue" if seconds < 0 else "tasks.due.in"
    return i18n.t(key, lang, span=_span(seconds, lang), time=local)


def _household_of(task: dict, households: dict[int, dict] | None) -> dict | None:
    key = task.get("business_key") or ""
    if not households or not key.startswith("household:"):
        return None
    try:
        return households.get(int(key.split(":", 1)[1]))
    except ValueError:
        return None


def present_task(task: dict, now: datetime | None = None, lang: str | None = None,
                 households: dict[int, dict] | None = None) -> dict:
    """One row. The server's task title is the BPMN task's name (English, e.g. "Rectify"), so a
    known kind is titled in the current language with what it is about: the household (address
    code, holder; its next due date when the task has none) or the case's business key. A
    designer's new kind keeps the server's title."""
    now = now or _now()
    due = parse_time(task.get("due_at"))
    kind = task_kind(task)
    kind_text = i18n.t(f"tasks.kind.{kind}", lang)
    home = _household_of(task, households)
    key = task.get("business_key") or ""
    if home is not None:
        title = f"{kind_text} · {home.get('address_code', '')} {home.get('holder', '')}".strip()
        address = home.get("address") or ""
        due = due or parse_time(home.get("next_due_at"))
    elif kind != "other" and key:
        title, address = f"{kind_text} · {key}", task.get("address") or ""
    else:
        title, address = task.get("title") or task.get("name") or task["id"], task.get("address") or ""
    return {"kind": kind, "row": "task", "id": task["id"], "title": title, "server_title": task.get("title") or "",
            "kind_text": kind_text, "business_key": key, "address": address, "due_text": due_text(due, now, lang),
            "overdue": due is not None and due < now, "due_ts": due.timestamp() if due else None,
            "draft_key": f"task:{task['id']}"}


def _matches(row: dict, words: list[str]) -> bool:
    hay = " ".join((row["title"], row.get("server_title", ""), row["business_key"], row["address"])).lower()
    return all(w in hay for w in words)


def present_tasks(tasks: Iterable[dict], query: str = "", now: datetime | None = None,
                  lang: str | None = None, kind: str | None = None,
                  households: Iterable[dict] | None = None) -> list[dict]:
    """Rows for the list: searched (every word in title, business key or address), of one kind
    if asked, sorted by due time (no due time last, then by title). `households`: the pulled
    ones (a deliverer's), to name a gas task's household."""
    now = now or _now()
    homes = {h["id"]: h for h in households or () if isinstance(h, dict) and "id" in h}
    rows = [present_task(t, now, lang, homes) for t in tasks]
    rows.sort(key=lambda r: (r["due_ts"] is None, r["due_ts"] or 0.0, r["title"], r["id"]))
    return search_rows(rows, query, kind)


def search_rows(rows: list[dict], query: str = "", kind: str | None = None) -> list[dict]:
    """Rows already presented, narrowed by a search (and a kind), in their order: what the list
    does at each keystroke without presenting every task again."""
    words = query.lower().split()
    if not words and kind is None:
        return list(rows)
    return [r for r in rows if (not words or _matches(r, words)) and (kind is None or r["kind"] == kind)]


def counts(rows: Iterable[dict]) -> dict[str, int]:
    out = {"all": 0, "overdue": 0, **{k: 0 for k in KINDS}}
    for r in rows:
        out["all"] += 1
        out["overdue"] += bool(r["overdue"])
        out[r["kind"]] += 1
    return out


def present_drafts(drafts: Iterable[Draft], tasks: Iterable[dict], removed: dict[str, dict] | None = None,
                   lang: str | None = None) -> list[dict]:
    """Drafts waiting to be finished, newest first. A task draft whose task is gone says why
    (state "gone"); one whose form or task version changed says so (state "changed")."""
    by_id = {t["id"]: t for t in tasks}
    removed = removed or {}
    out = []
    for d in drafts:
        saved = (parse_time(d.updated_at) or _now()).astimezone().strftime("%m-%d %H:%M")
        state, note = "ok", i18n.t("tasks.draft.saved", lang, time=saved)
        task_id = d.key.split(":", 1)[1] if d.key.startswith("task:") else None
        if task_id is not None:
            task = by_id.get(task_id)
            if task is None:
                state = "gone"
                why = removed.get(task_id, {})
                text = why.get("message_zh" if (lang or i18n.language()) == "zh" else "message")
                note = (i18n.t("tasks.draft.gone", lang, why=text) if text
                        else i18n.t("tasks.draft.gone_unknown", lang))
            elif not d.fits(task.get("form_ref") or "", form_digest(task.get("form")), task.get("version")):
                state, note = "changed", i18n.t("tasks.draft.changed", lang)
        out.append({"row": "draft", "draft_key": d.key, "id": task_id or "", "title": d.title, "state": state,
                    "note": note, "kind": "draft", "kind_text": i18n.t("tasks.draft.label", lang),
                    "business_key": d.extra.get("business_key", "") if isinstance(d.extra, dict) else ""})
    return out
