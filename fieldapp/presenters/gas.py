"""The gas deliverer's households and the hazard preview, as display data. Plain Python.

- `household_rows(households, tasks, now, lang)`: the pulled households (`Outbox.value("households")`)
  as rows for the list: address code, holder, address, when the next inspection is due (overdue,
  due, or its date), supply suspended, an open inspection task; overdue and due first.
- `search(rows, text)`: rows whose code, holder or address contain the text.
- `open_request(household, tasks, reference, outbox)`: what to open for a household: its open
  inspection task (`app.go("form", task=...)`), else an inspection at this delivery on the
  latest gas form (`reference["gas_form"]`) whose submit records an `inspect_household` op.
- `hazard_inputs(data, today)` and `hazard_preview(outputs, lang)`: what the gas_hazard decision
  says about the checklist so far, and what will follow once it is submitted (as the
  gas_inspection process does it: any hazard notifies the household and opens a rectification
  work order for the gas office; a severe one also suspends supply until a re-inspection passes)."""
from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any, Iterable, Mapping

from fieldapp import i18n
from sync.photos import prepare_all

__all__ = ["INSPECT_OP", "LEVELS", "OpenRequest", "draft_key", "hazard_inputs", "hazard_preview", "household_rows",
           "open_request", "search", "split_reason"]

INSPECT_OP = "inspect_household"
LEVELS = ("none", "minor", "severe")

i18n.add({
    "gas.overdue": ("已逾期 {days} 天（应于 {date} 检查）", "Overdue by {days} d (due {date})"),
    "gas.due_today": ("今天到期", "Due today"),
    "gas.due": ("到期：{date}", "Due {date}"),
    "gas.next": ("下次检查：{date}", "Next inspection {date}"),
    "gas.never": ("从未检查", "Never inspected"),
    "gas.suspended": ("已停止供气", "Supply suspended"),
    "gas.open_task": ("有待办检查", "Inspection task open"),
    "gas.last": ("上次检查：{date}", "Last inspected {date}"),
    "gas.inspect_title": ("燃气安全检查 · {code} {holder}", "Gas safety inspection · {code} {holder}"),
    "gas.no_form": ("尚未从服务器获取燃气检查表单，请联网同步一次后再试。",
                    "The gas inspection form has not been pulled from the server yet: sync once while "
                    "online, then try again."),
    "gas.level.none": ("无隐患", "No hazard"),
    "gas.level.minor": ("一般隐患", "Minor hazard"),
    "gas.level.severe": ("严重隐患", "Severe hazard"),
    "gas.level.unknown": ("尚无法判断", "Not known yet"),
    "gas.follow.none": ("未发现隐患：检查记录后，下次检查在 4 个月后。",
                        "No hazard: the inspection is recorded and the next one is due in 4 months."),
    "gas.follow.notify": ("将通知住户所发现的隐患。", "The household will be told what was found."),
    "gas.follow.order": ("将为燃气办公室开立整改工单。", "A rectification order will be opened for the gas office."),
    "gas.follow.suspend": ("将停止向该住户供气，直至复查合格。",
                           "Gas supply to this household will be suspended until a re-inspection passes."),
    "gas.follow.unknown": ("请先填写检查项目，即可预览结果。", "Fill in the checklist to see what will follow."),
    "gas.follow.no_table": ("尚未获取隐患判定表，提交后由服务器判定。",
                            "The hazard table has not been pulled yet: the server will judge after you submit."),
})


def _parse(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _day(when: datetime) -> str:
    return when.astimezone().date().isoformat()


def _open_task(household: Mapping, tasks: Iterable[Mapping]) -> Mapping | None:
    """The household's open inspection task among the pulled tasks (by its task_id)."""
    task_id = household.get("task_id")
    if not task_id:
        return None
    return next((t for t in tasks if t.get("id") == task_id), None)


def household_rows(households: Iterable[Mapping] | None, tasks: Iterable[Mapping] = (),
                   now: datetime | None = None, lang: str | None = None) -> list[dict]:
    """Display rows, overdue first (longest overdue first), then due, then by next due date."""
    now = now or datetime.now(timezone.utc)
    tasks = list(tasks)
    rows = []
    for h in households or ():
        due_at, last = _parse(h.get("next_due_at")), _parse(h.get("last_inspected_at"))
        days_late = (now.astimezone().date() - due_at.astimezone().date()).days if due_at else 0
        if due_at is not None and due_at < now and days_late > 0:
            state, due_text = "overdue", i18n.t("gas.overdue", lang, days=days_late, date=_day(due_at))
        elif due_at is not None and (due_at <= now or days_late == 0):
            state, due_text = "due", i18n.t("gas.due_today", lang)
        elif h.get("due"):
            state, due_text = "due", i18n.t("gas.due", lang, date=_day(due_at)) if due_at else i18n.t("gas.never", lang)
        elif due_at is not None:
            state, due_text = "ok", i18n.t("gas.next", lang, date=_day(due_at))
        else:
            state, due_text = "ok", i18n.t("gas.never", lang)
        task = _open_task(h, tasks)
        flags = []
        if h.get("supply_suspended"):
            flags.append(i18n.t("gas.suspended", lang))
        if h.get("task_id"):
            flags.append(i18n.t("gas.open_task", lang))
        rank = {"overdue": 0, "due": 1, "ok": 2}[state]
        rows.append({
            "id": h["id"], "address_code": str(h.get("address_code") or ""), "holder": str(h.get("holder") or ""),
            "address": str(h.get("address") or ""), "state": state, "due_text": due_text,
            "last_text": i18n.t("gas.last", lang, date=_day(last)) if last else i18n.t("gas.never", lang),
            "suspended": bool(h.get("supply_suspended")), "task_id": h.get("task_id"), "has_task": task is not None,
            "flags_text": " · ".join(flags),
            "search": " ".join(str(h.get(k) or "") for k in ("address_code", "holder", "address")).casefold(),
            "sort": (rank, due_at.timestamp() if due_at else float("-inf"), str(h.get("address_code") or "")),
        })
    rows.sort(key=lambda r: r["sort"])
    return rows


def search(rows: list[dict], text: str) -> list[dict]:
    """Rows whose address code, holder or address contain every word of `text` (any case)."""
    words = (text or "").casefold().split()
    return [r for r in rows if all(w in r["search"] for w in words)] if words else list(rows)


def draft_key(household_id: int) -> str:
    return f"household:{household_id}"


class OpenRequest(dict):
    """What `app.go("form", **request.params)` needs, or a message when nothing can be opened:
    {"kind": "task" | "inspect" | "unavailable", "params": {...}, "message": str}."""

    @property
    def params(self) -> dict:
        return self["params"]


def open_request(household: Mapping, tasks: Iterable[Mapping], reference: Mapping | None, outbox=None,
                 lang: str | None = None) -> OpenRequest:
    """The household's open inspection task if the tablet holds it, else an inspection at this
    delivery on the latest gas form. `outbox` (sync.client.Outbox) records the submission."""
    task = _open_task(household, tasks)
    if task is not None:
        return OpenRequest(kind="task", params={"task": dict(task)}, message="")
    gas_form = (reference or {}).get("gas_form") or {}
    if not gas_form.get("form"):
        return OpenRequest(kind="unavailable", params={}, message=i18n.t("gas.no_form", lang))
    hid = int(household["id"])

    def submit(data: dict, photos: Iterable | Mapping[str, Iterable] | None = None) -> str:
        """Record the inspection in the outbox (durable when it returns): the photos become
        the op's attachments and their form file fields hold their sha256s."""
        if outbox is None:
            raise RuntimeError("open_request was given no outbox to record the inspection in")
        shots, fields = prepare_all(photos, outbox.photo_dir)
        return outbox.add(INSPECT_OP, {"household_id": hid, "data": {**data, **fields}},
                          photos=[p.path for p in shots])

    def title_in(language: str | None) -> str:
        return i18n.t("gas.inspect_title", language, code=household.get("address_code", ""),
                      holder=household.get("holder", ""))

    params = {"draft_key": draft_key(hid), "title": title_in(lang), "title_in": title_in, "form": gas_form["form"],
              "form_ref": gas_form.get("form_ref") or "gas_inspection", "version": None, "submit": submit,
              "extra": {"screen": "gas", "household_id": hid, "address_code": household.get("address_code"),
                        "holder": household.get("holder")}}
    return OpenRequest(kind="inspect", params=params, message="")


# ---- hazard preview ---------------------------------------------------------------------------------
def hazard_inputs(data: Mapping, today: date | None = None) -> dict:
    """The decision's inputs from the form data, as the server derives them before the decision
    (assess_checklist): cylinder_expired from cylinder_inspection_date; left out while the date
    is not known, so a rule that reads it makes the preview "not known yet" (as any unanswered
    question does), never "no hazard"."""
    out = dict(data)
    out.pop("cylinder_expired", None)
    stamped = data.get("cylinder_inspection_date")
    if isinstance(stamped, str) and stamped:
        try:
            out["cylinder_expired"] = date.fromisoformat(stamped[:10]) < (today or datetime.now(timezone.utc).date())
        except ValueError:
            pass
    return out


def split_reason(reason: str | None, lang: str | None = None) -> str:
    """The decision's reasons read "English / 中文": the part in `lang`."""
    if not reason:
        return ""
    parts = [p.strip() for p in str(reason).split(" / ")]
    if len(parts) != 2:
        return str(reason)
    return parts[1] if (lang or i18n.language()) == "zh" else parts[0]


def hazard_preview(outputs: Mapping | None, lang: str | None = None, table_known: bool = True) -> dict:
    """{level, level_text, reason, follows: [texts]} from the gas_hazard decision's outputs
    (`engine.bpmn.decision_table.evaluate`), or an "unknown" preview when there are none."""
    level = (outputs or {}).get("hazard_level")
    if level not in LEVELS:
        follow = "gas.follow.unknown" if table_known else "gas.follow.no_table"
        return {"level": "unknown", "level_text": i18n.t("gas.level.unknown", lang), "reason": "",
                "follows": [i18n.t(follow, lang)]}
    if level == "none":
        follows = ["gas.follow.none"]
    else:
        follows = ["gas.follow.notify", "gas.follow.order"] + (["gas.follow.suspend"] if level == "severe" else [])
    return {"level": level, "level_text": i18n.t(f"gas.level.{level}", lang),
            "reason": split_reason((outputs or {}).get("hazard_reason"), lang),
            "follows": [i18n.t(k, lang) for k in follows]}

