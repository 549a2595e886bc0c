"""The form screen: any form-js form rendered from its JSON, validated on the tablet with the
server's rules, saved as a draft at every change, submitted to the outbox.

    app.go("form", task=task)            # a pulled task: submit -> a complete_task op
    app.go("form", draft_key="household:7", title="...", form=form_json, form_ref="gas_inspection",
           version=None, submit=lambda data, photos: outbox.add(...), extra={...})

Custom submit: `submit(data, photos) -> op_id` runs in a background thread (it must not touch
widgets); `data` is the clean submission without photo fields, `photos` is {field: [local paths]}.
Other screens put widgets in `ids.side` (a vertical BoxLayout beside the form) and register
`add_listener(fn)`; fn(values) is called after every edit with the clean values plus photo fields
as local paths. Side widgets and listeners are cleared each time a form is opened.

Opening a form that has a draft asks (continue or start over); a draft made on another form or
task version is never applied: it is shown read-only with an offer to discard it."""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Callable

from kivy.clock import Clock
from kivy.properties import BooleanProperty, StringProperty
from kivy.uix.widget import Widget
from kivy.utils import platform as kivy_platform

from fieldapp import i18n
from fieldapp.presenters.form import FormPresenter, FormProblem
from fieldapp.presenters.tasks import present_task
from fieldapp.store import Draft, form_digest
from fieldapp.ui.app import FieldScreen, load_kv
from fieldapp.ui.widgets import AskPopup, DarkLabel, FieldView, GroupTitle, PhotoPathPopup
from sync.photos import PhotoError

__all__ = ["FormScreen", "draft_answers"]

log = logging.getLogger("cityloop.fieldapp.form")

i18n.add({
    "form.back": ("返回", "Back"),
    "form.submit": ("提交", "Submit"),
    "form.submitting": ("正在保存…", "Saving…"),
    "form.saved_draft": ("草稿已自动保存 {time}", "Draft saved {time}"),
    "form.fix": ("有 {n} 处需要修改，见红字提示", "{n} answers need fixing: see the red messages"),
    "form.saved": ("已保存「{title}」，联网后会自动发送", "Saved \"{title}\": it is sent when the tablet is online"),
    "form.photo_failed": ("照片无法添加：{error}", "The photo cannot be added: {error}"),
    "form.no_photo": ("未添加照片：{why}", "No photo added: {why}"),
    "form.draft.title": ("发现未完成的草稿", "An unfinished draft"),
    "form.draft.ask": ("「{title}」有一份 {time} 保存的草稿（已填 {n} 项）。继续填写这份草稿，还是重新开始？",
                       "\"{title}\" has a draft saved {time} ({n} answers). Continue the draft or start over?"),
    "form.draft.continue": ("继续填写草稿", "Continue the draft"),
    "form.draft.restart": ("重新开始（删除草稿）", "Start over (delete the draft)"),
    "form.draft.stale_title": ("草稿不能用于此表单", "The draft does not fit this form"),
    "form.draft.stale": ("「{title}」的草稿保存于 {time}，但表单或任务此后已更新，草稿不能套用到新表单，以免填错。"
                         "以下是草稿中的答案（只读），可照此重新填写。",
                         "The draft of \"{title}\" was saved {time}, but the form or the task has changed since, "
                         "so it cannot be applied to the new form. Its answers are below (read-only) to copy from."),
    "form.draft.discard": ("删除草稿并填写新表单", "Delete the draft and fill the new form"),
    "form.draft.keep": ("保留草稿，返回", "Keep the draft, go back"),
    "form.gone": ("此任务已不在您的列表中，无法提交", "This task is no longer in your list and cannot be submitted"),
})

load_kv(__file__)


def draft_answers(draft: Draft, lang: str | None = None) -> str:
    """A draft's saved answers as read-only text, with labels (and option labels) from the form
    it was made on, when the draft kept it."""
    labels: dict[str, str] = {}
    options: dict[str, dict[str, str]] = {}
    form = draft.extra.get("form") if isinstance(draft.extra, dict) else None
    if isinstance(form, dict):
        try:
            for item in FormPresenter(form).items(lang):
                if item["kind"] == "field":
                    labels[item["key"]] = item["label"]
                    options[item["key"]] = {o["value"]: o["label"] for o in item["options"]}
        except FormProblem:
            pass
    lines = []
    for key, value in draft.data.items():
        named = options.get(key, {})
        values = value if isinstance(value, list) else [] if value is None else [value]
        lines.append(f"{labels.get(key, key)}: " + ", ".join(named.get(str(v), str(v)) for v in values))
    return "\n".join(lines)


def _when(text: str) -> str:
    try:
        return datetime.fromisoformat(text).astimezone().strftime("%m-%d %H:%M")
    except ValueError:
        return text


class FormScreen(FieldScreen):
    title = StringProperty("")
    saved_text = StringProperty("")
    summary = StringProperty("")
    busy = BooleanProperty(False)
    editable = BooleanProperty(False)

    def __init__(self, **kw):
        super().__init__(**kw)
        self.presenter: FormPresenter | None = None
        self.views: dict[str, FieldView] = {}
        self.others: list[tuple[dict, object]] = []     # group titles and text blocks
        self.listeners: list[Callable[[dict], None]] = []
        self.task: dict | None = None
        self.title_in: Callable[[str], str] | None = None
        self.form: dict = {}
        self.draft_key = ""
        self.form_ref = ""
        self.digest = ""
        self.version: int | None = None
        self.submit_fn: Callable[[dict, dict], str] | None = None
        self.extra: dict = {}
        self.focus_key: str | None = None
        self.popup: AskPopup | PhotoPathPopup | None = None
        self.last_op_id: str | None = None
        self.saved_at = ""

    # ---- opening ---------------------------------------------------------------------------------
    def show(self, **params) -> None:
        if not params:           # back to an open form: keep it as it is
            return
        self.ids.side.clear_widgets()
        self.listeners = []
        self.busy = False
        self.summary = ""
        self.saved_text = self.saved_at = ""
        task = params.get("task")
        if task is not None:
            self.task = task
            self.title_in = None
            self.draft_key = f"task:{task['id']}"
            self.title = self._task_title(task)
            self.form = task.get("form") or {}
            self.form_ref = task.get("form_ref") or self.form.get("id", "")
            self.version = task.get("version")
            self.submit_fn = None
            self.extra = {"business_key": task.get("business_key") or ""}
        else:
            self.task = None
            self.draft_key = params["draft_key"]
            self.title = params.get("title") or ""
            self.title_in = params.get("title_in")      # callable(lang) -> title, to follow a language switch
            self.form = params["form"]
            self.form_ref = params.get("form_ref") or self.form.get("id", "")
            self.version = params.get("version")
            self.submit_fn = params["submit"]
            self.extra = dict(params.get("extra") or {})
        self.digest = form_digest(self.form)
        if not self._open(None):
            return
        draft = self.app.store.draft(self.draft_key)
        if draft is not None:
            self.editable = False
            Clock.schedule_once(lambda dt: self._ask(draft), 0)

    def _open(self, data: dict | None) -> bool:
        try:
            self.presenter = FormPresenter(self.form, data)
        except FormProblem as exc:
            self.presenter = None
            self.editable = False
            self._build()
            self.app.show_message(str(exc), 15)
            return False
        if data:
            self.presenter.touched.update(data)
        self.editable = True
        self._build()
        return True

    def _ask(self, draft: Draft) -> None:
        lang = self.app.lang
        if draft.fits(self.form_ref, self.digest, self.version):
            self.popup = AskPopup(
                i18n.t("form.draft.title", lang),
                i18n.t("form.draft.ask", lang, title=draft.title, time=_when(draft.updated_at), n=len(draft.data)),
                [("continue", i18n.t("form.draft.continue", lang), lambda: self._resume(draft)),
                 ("restart", i18n.t("form.draft.restart", lang), self._restart)])
        else:
            self.popup = AskPopup(
                i18n.t("form.draft.stale_title", lang),
                i18n.t("form.draft.stale", lang, title=draft.title, time=_when(draft.updated_at)),
                [("discard", i18n.t("form.draft.discard", lang), self._restart),
                 ("keep", i18n.t("form.draft.keep", lang), self.app.back)],
                answers=draft_answers(draft, lang))
        self.popup.open()

    def _resume(self, draft: Draft) -> None:
        self.popup = None
        if self._open(draft.data):
            self.focus_key = draft.focus
            self.saved_at = _when(draft.updated_at)
            self.saved_text = i18n.t("form.saved_draft", self.app.lang, time=self.saved_at)
            self._tell_listeners()           # side panels follow the continued answers too
            if draft.focus in self.views:
                Clock.schedule_once(lambda dt: self.focus_field(draft.focus), 0)

    def _restart(self) -> None:
        self.popup = None
        self.app.store.drop_draft(self.draft_key)
        self._open(None)

    def focus_field(self, key: str) -> None:
        """Scroll a field into view and put the cursor in it (if it has a text box)."""
        view = self.views.get(key)
        if view is None:
            return
        self.ids.scroll.scroll_to(view, padding=40, animate=False)
        view.focus_input()
        self.focus_key = key

    # ---- building -----------------------------------------------------------------------------------
    def _build(self) -> None:
        box = self.ids.fields
        box.clear_widgets()
        self.views, self.others = {}, []
        self.ids.scroll.scroll_y = 1
        if self.presenter is None:
            return
        lang = self.app.lang
        for item in self.presenter.items(lang):
            if item["kind"] == "field":
                view = FieldView(item, self._edited, self._focused, lang)
                self.views[item["key"]] = view
                box.add_widget(view)
            else:
                widget = GroupTitle() if item["kind"] == "group" else DarkLabel()
                self.others.append((item, widget))
                box.add_widget(widget)
        box.add_widget(Widget(size_hint_y=1))     # a short form stays at the top of its scroll view
        self.refresh()

    def refresh(self) -> None:
        """Show the presenter's state: values, errors, visibility."""
        if self.presenter is None:
            return
        lang = self.app.lang
        others = iter(self.others)
        for item in self.presenter.items(lang):
            if item["kind"] == "field":
                self.views[item["key"]].update(item, lang)
                continue
            _, widget = next(others)     # a hidden heading or text has no text (and so no height)
            text = item["label"] if item["kind"] == "group" else item["text"]
            widget.text = text if item["visible"] else ""
            widget.opacity = 1 if item["visible"] else 0
        if self.summary:
            n = len(self.presenter.errors(lang))
            self.summary = i18n.t("form.fix", lang, n=n) if n else ""

    def _task_title(self, task: dict) -> str:
        """As the task list names it, in the current language (the server's title is the BPMN
        task's English name)."""
        homes = {h["id"]: h for h in self.app.outbox.value("households") or () if isinstance(h, dict) and "id" in h}
        return present_task(task, lang=self.app.lang, households=homes)["title"]

    def language_changed(self) -> None:
        if self.task is not None:
            self.title = self._task_title(self.task)
        elif self.title_in is not None:
            self.title = self.title_in(self.app.lang)
        if self.saved_at:
            self.saved_text = i18n.t("form.saved_draft", self.app.lang, time=self.saved_at)
        self.refresh()

    # ---- editing ---------------------------------------------------------------------------------------
    def _focused(self, key: str) -> None:
        if self.focus_key != key:
            self.focus_key = key
            if self.app.store.draft(self.draft_key) is not None:
                self._save_draft()

    def _edited(self, key: str, kind: str, value) -> None:
        if self.presenter is None or not self.editable:
            return
        self.focus_key = key
        if kind == "add_photo":
            self.take_photo(key)
            return
        if kind == "text":
            self.presenter.set_text(key, value)
        elif kind == "set":
            self.presenter.set(key, value)
        elif kind == "toggle":
            self.presenter.toggle(key, value)
        elif kind == "remove_photo":
            self.presenter.remove_photo(key, value)
        self.changed()

    def changed(self) -> None:
        """After an edit: save the draft at once, show the new state, tell the listeners."""
        assert self.presenter is not None
        self._save_draft()
        self.refresh()
        self._tell_listeners()

    def _tell_listeners(self) -> None:
        assert self.presenter is not None
        values = {**self.presenter.data(), **self.presenter.photos()}
        for fn in list(self.listeners):
            fn(values)

    def _save_draft(self) -> None:
        assert self.presenter is not None
        extra = {**self.extra, "form": self.form}
        self.app.store.save_draft(self.draft_key, title=self.title, form_id=self.form_ref, digest=self.digest,
                                  based_on_version=self.version, data=self.presenter.raw(), focus=self.focus_key,
                                  extra=extra)
        self.saved_at = datetime.now().strftime("%H:%M:%S")
        self.saved_text = i18n.t("form.saved_draft", self.app.lang, time=self.saved_at)

    def add_listener(self, fn: Callable[[dict], None]) -> None:
        self.listeners.append(fn)

    # ---- photos ----------------------------------------------------------------------------------------
    def take_photo(self, key: str) -> None:
        if kivy_platform in ("android", "ios"):
            name = f"{self.draft_key.replace(':', '-')}-{key}-{datetime.now().strftime('%Y%m%d%H%M%S')}.jpg"
            self.app.bg.call(self.app.platform.photo, name, done=lambda photo: self._photo_taken(key, photo),
                             failed=self.app.show_error)
            return
        self.popup = PhotoPathPopup(lambda path: self.add_photo(key, path), self.app.lang,
                                    start=str(self.app.field_config.data_dir))
        self.popup.open()

    def _photo_taken(self, key: str, photo) -> None:
        if photo.path:
            self.add_photo(key, photo.path)
        else:
            self.app.show_message(i18n.t("form.no_photo", self.app.lang, why=photo.message))

    def add_photo(self, key: str, path: str) -> None:
        self.popup = None
        if self.presenter is None:
            return
        self.presenter.add_photo(key, path)
        self.focus_key = key
        self.changed()

    # ---- leaving and submitting -------------------------------------------------------------------------
    def leave(self) -> None:
        """Back: the draft is already saved."""
        self.app.back()

    def submit(self) -> None:
        if self.presenter is None or self.busy or not self.editable:
            return
        lang = self.app.lang
        if self.task is not None and not any(t["id"] == self.task["id"] for t in self.app.outbox.tasks()):
            self.app.show_message(i18n.t("form.gone", lang))
            return
        ok = self.presenter.validate()
        self.summary = "" if ok else i18n.t("form.fix", lang, n=len(self.presenter.errors(lang)))
        self.refresh()
        if not ok:
            first = next(k for k in self.views if k in self.presenter.errors(lang))
            Clock.schedule_once(lambda dt: self.ids.scroll.scroll_to(self.views[first], padding=40, animate=False), 0)
            return
        self.busy = True
        data, photos = self.presenter.data(), self.presenter.photos()
        if self.submit_fn is not None:
            self.app.bg.call(self.submit_fn, data, photos, done=self._submitted, failed=self._failed)
        else:
            self.app.bg.call(self._complete_task, dict(self.task or {}), data, photos, done=self._submitted,
                             failed=self._failed)

    def _complete_task(self, task: dict, data: dict, photos: dict) -> str:
        """In a worker thread: the GPS fix (may take seconds), then the op, on disk when this returns."""
        where = self.app.platform.location()
        gps = {"lat": where.lat, "lon": where.lon, "accuracy": where.accuracy_m} if where.known else None
        return self.app.outbox.add("complete_task", data, task_id=task["id"], based_on_version=task.get("version"),
                                   photos=photos or None, gps=gps)

    def _submitted(self, op_id: str) -> None:
        if self.app is None:            # the app stopped meanwhile; the op is on disk
            return
        self.busy = False
        self.editable = False
        self.app.store.drop_draft(self.draft_key)
        self.last_op_id = op_id
        self.app.syncer.refresh()
        self.app.request_sync()
        self.app.show_message(i18n.t("form.saved", self.app.lang, title=self.title))
        self.app.back()

    def _failed(self, exc: BaseException) -> None:
        if self.app is None:
            log.error("form submit failed after the app stopped", exc_info=exc)
            return
        self.busy = False
        if isinstance(exc, PhotoError):
            msg = exc.message_zh if self.app.lang == "zh" else str(exc)
            self.app.show_message(i18n.t("form.photo_failed", self.app.lang, error=msg), 12)
            return
        self.app.show_error(exc)
