"""My work: the signed-in person's tasks (searchable, sorted by due time, overdue in red, with
counts) and the drafts waiting to be finished, in one recycling list: only the rows that fit
on screen are widgets, whatever the number of tasks. A tap opens the form. The list reloads
(in the background) when the screen is shown and when a sync brings news."""
from __future__ import annotations

from kivy.properties import BooleanProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.recycleview.views import RecycleDataViewBehavior

from fieldapp import i18n
from fieldapp.presenters.tasks import KINDS, counts, present_drafts, present_tasks, search_rows
from fieldapp.ui.app import FieldScreen, load_kv
from fieldapp.ui.panels import attach_photo_compare
from fieldapp.ui.screens.form import draft_answers
from fieldapp.ui.widgets import AskPopup

__all__ = ["TaskRow", "TasksScreen"]

i18n.add({
    "tasks.title": ("我的待办", "My work"),
    "tasks.search": ("搜索：标题、编号或地址", "Search: title, number or address"),
    "tasks.settings": ("设置", "Settings"),
    "tasks.empty": ("没有待办任务", "Nothing to do"),
    "tasks.no_match": ("没有符合“{q}”的任务", "No task matches \"{q}\""),
    "tasks.loading": ("正在载入…", "Loading…"),
    "tasks.drafts": ("草稿 {n}", "Drafts {n}"),
    "tasks.draft.discard": ("删除草稿", "Delete the draft"),
    "tasks.draft.keep": ("保留", "Keep it"),
    "tasks.draft.gone_title": ("任务已不在", "The task is gone"),
    "tasks.draft.gone_text": ("「{title}」：{note}。草稿中的答案如下（只读）。",
                              "\"{title}\": {note}. The draft's answers are below (read-only)."),
    "tasks.draft.deleted": ("草稿已删除", "The draft was deleted"),
})

load_kv(__file__)

PHOTO_FORMS = ("wo_review", "wo_rectify")      # forms that judge or redo a work order: before/after photos beside


class TaskRow(RecycleDataViewBehavior, ButtonBehavior, BoxLayout):
    row = StringProperty("task")
    title = StringProperty("")
    subtitle = StringProperty("")
    kind_text = StringProperty("")
    due_text = StringProperty("")
    overdue = BooleanProperty(False)

    def refresh_view_attrs(self, rv, index, data):
        self.data = data
        return super().refresh_view_attrs(rv, index, data)

    def on_release(self):
        screen = self.parent
        while screen is not None and not isinstance(screen, TasksScreen):
            screen = screen.parent
        if screen is not None:
            screen.open_row(self.data)


class TasksScreen(FieldScreen):
    counts_text = StringProperty("")
    empty_text = StringProperty("")
    loaded = BooleanProperty(False)

    def __init__(self, **kw):
        super().__init__(**kw)
        self.tasks: dict[str, dict] = {}
        self.rows: list[dict] = []           # every task presented and sorted (in the background)
        self.draft_rows: list[dict] = []
        self.query = ""
        self.loads = 0               # finished loads (tests wait on this)
        self._seen_sync = None
        self.popup: AskPopup | None = None

    # ---- loading ---------------------------------------------------------------------------
    def show(self, **params) -> None:
        self.reload()

    def sync_changed(self, state) -> None:
        if state.last_sync is not None and state.last_sync != self._seen_sync:
            self._seen_sync = state.last_sync
            self.reload()

    def language_changed(self) -> None:
        self.reload()

    def reload(self) -> None:
        """Read tasks and drafts in a worker thread, then show them."""
        app = self.app
        if not self.tasks:
            self.empty_text = i18n.t("tasks.loading", app.lang)
        lang = app.lang

        def load():
            tasks = app.outbox.tasks()
            drafts = present_drafts(app.store.drafts(), tasks, app.outbox.removed(), lang)
            return tasks, present_tasks(tasks, lang=lang, households=app.outbox.value("households")), drafts
        app.bg.call(load, done=self._loaded)

    def _loaded(self, result) -> None:
        if self.app is None:            # the app stopped while loading
            return
        tasks, rows, drafts = result
        self.tasks = {t["id"]: t for t in tasks}
        self.rows = rows
        self.draft_rows = drafts
        self.loaded = True
        self.loads += 1
        self.search(self.query)

    def search(self, query: str) -> None:
        self.query = query
        lang = self.app.lang
        rows = search_rows(self.rows, query)
        words = query.lower().split()
        drafts = [d for d in self.draft_rows
                  if not words or all(w in f"{d['title']} {d['business_key']}".lower() for w in words)]
        data = [self._view(d, True) for d in drafts] + [self._view(r, False) for r in rows]
        self.ids.rv.data = data
        c = counts(rows)
        parts = [i18n.t("tasks.count.all", lang, n=c["all"]),
                 f"[color=cc1a1a]{i18n.t('tasks.count.overdue', lang, n=c['overdue'])}[/color]"]
        parts += [f"{i18n.t(f'tasks.kind.{k}', lang)} {c[k]}" for k in KINDS if c[k]]
        if self.draft_rows:
            parts.append(i18n.t("tasks.drafts", lang, n=len(self.draft_rows)))
        self.counts_text = "  ·  ".join(parts)
        if data:
            self.empty_text = ""
        else:
            self.empty_text = i18n.t("tasks.no_match", lang, q=query) if words else i18n.t("tasks.empty", lang)

    @staticmethod
    def _view(row: dict, draft: bool) -> dict:
        if draft:
            return {"row": "draft", "title": row["title"], "subtitle": row["business_key"] or row["draft_key"],
                    "kind_text": row["kind_text"], "due_text": row["note"], "overdue": False, "item": row}
        sub = " · ".join(x for x in (row["business_key"], row["address"]) if x)
        return {"row": "task", "title": row["title"], "subtitle": sub, "kind_text": row["kind_text"],
                "due_text": row["due_text"], "overdue": row["overdue"], "item": row}

    # ---- opening ----------------------------------------------------------------------------------
    def open_row(self, data: dict) -> None:
        item = data["item"]
        if data["row"] == "task":
            task = self.tasks.get(item["id"])
            if task is not None:
                self.open_task(task)
            return
        self.open_draft(item)

    def open_task(self, task: dict):
        """The task on the form screen; a review or rectify task gets its order's before and after
        photos in the side panel."""
        form = self.app.go("form", task=task)
        if task.get("form_ref") in PHOTO_FORMS and task.get("business_key"):
            attach_photo_compare(form, task["business_key"], task)
        return form

    def open_draft(self, item: dict) -> None:
        app = self.app
        task = self.tasks.get(item["id"]) if item["id"] else None
        if task is not None:
            self.open_task(task)       # the form asks: continue, start over, or (changed) discard
            return
        draft = app.store.draft(item["draft_key"])
        if draft is None:
            self.reload()
            return
        screen = draft.extra.get("screen") if isinstance(draft.extra, dict) else None
        if item["state"] != "gone" and screen and app.sm.has_screen(screen):
            app.go(screen, draft_key=draft.key)     # a draft another screen made (e.g. a delivery inspection)
            return
        lang = app.lang
        self.popup = AskPopup(i18n.t("tasks.draft.gone_title", lang),
                              i18n.t("tasks.draft.gone_text", lang, title=draft.title, note=item["note"]),
                              [("discard", i18n.t("tasks.draft.discard", lang), lambda: self._discard(draft.key)),
                               ("keep", i18n.t("tasks.draft.keep", lang), lambda: None)],
                              answers=draft_answers(draft, lang))
        self.popup.open()

    def _discard(self, key: str) -> None:
        self.popup = None
        self.app.store.drop_draft(key)
        self.app.show_message(i18n.t("tasks.draft.deleted", self.app.lang))
        self.reload()
