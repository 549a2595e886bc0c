"""Shared widgets for forms: one FieldView per form field (label, input, error message),
choices drawn as big tap targets, a photo picker, and two popups (a photo path chooser for
desktops, a question with buttons). Widgets know nothing of the rules: they show a
presenter's display dict (`fieldapp.presenters.form.FormPresenter.items`) and report edits.

    view = FieldView(item, edited=lambda key, kind, value: ..., focused=lambda key: ...)
    view.update(item)        # new value / error / visibility, without rebuilding the widgets"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from kivy.clock import Clock
from kivy.metrics import dp
from kivy.properties import BooleanProperty, ListProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.label import Label
from kivy.uix.popup import Popup
from kivy.uix.spinner import Spinner, SpinnerOption
from kivy.uix.stacklayout import StackLayout
from kivy.uix.textinput import TextInput

from fieldapp import i18n
from fieldapp.ui.app import load_kv
from sync.photos import sniff

__all__ = ["AskPopup", "Choice", "ChoiceFlow", "DarkLabel", "FieldError", "FieldView", "FormButton", "FormInput",
           "FormSpinner", "FormSpinnerOption", "GroupTitle", "PhotoPathPopup", "PhotoThumb", "check_photo"]

i18n.add({
    "widgets.required": ("（必填）", "(required)"),
    "widgets.add_photo": ("拍照 / 添加照片", "Take / add a photo"),
    "widgets.remove": ("移除", "Remove"),
    "widgets.choose": ("请选择…", "Choose…"),
    "widgets.photo_title": ("选择照片", "Choose a photo"),
    "widgets.photo_hint": ("此设备没有相机：请选择或输入一张照片文件（JPEG、PNG 或 WebP）。",
                           "No camera on this device: choose or type the path of a photo file (JPEG, PNG or WebP)."),
    "widgets.photo_path": ("照片文件路径", "Path of the photo file"),
    "widgets.ok": ("确定", "OK"),
    "widgets.cancel": ("取消", "Cancel"),
    "widgets.no_file": ("找不到文件：{path}", "No such file: {path}"),
    "widgets.not_image": ("不是 JPEG、PNG 或 WebP 图片：{path}", "Not a JPEG, PNG or WebP image: {path}"),
    "widgets.unreadable": ("无法读取文件：{path}", "The file cannot be read: {path}"),
    "widgets.empty_path": ("请先选择或输入一个文件", "Choose or type a file first"),
})

load_kv(__file__)


def check_photo(path: str, lang: str | None = None) -> str | None:
    """None if `path` is an image file the outbox will take, else a message saying why not."""
    if not path.strip():
        return i18n.t("widgets.empty_path", lang)
    p = Path(path).expanduser()
    if not p.is_file():
        return i18n.t("widgets.no_file", lang, path=path)
    try:
        with open(p, "rb") as f:
            head = f.read(12)
    except OSError:
        return i18n.t("widgets.unreadable", lang, path=path)
    return None if sniff(head) else i18n.t("widgets.not_image", lang, path=path)


class DarkLabel(Label):
    pass


class FieldError(DarkLabel):
    pass


class GroupTitle(DarkLabel):
    pass


class FormInput(TextInput):
    key = StringProperty("")


class FormButton(Button):
    pass


class FormSpinnerOption(SpinnerOption):
    pass


class FormSpinner(Spinner):
    key = StringProperty("")

    def __init__(self, **kwargs):
        kwargs.setdefault("option_cls", FormSpinnerOption)
        super().__init__(**kwargs)


class Choice(ButtonBehavior, BoxLayout):
    """One option: a round mark (radio) or a square one (checkbox, checklist) and its text."""
    text = StringProperty("")
    value = StringProperty("")
    selected = BooleanProperty(False)
    round = BooleanProperty(True)


class ChoiceFlow(StackLayout):
    pass


class PhotoThumb(BoxLayout):
    path = StringProperty("")
    name = StringProperty("")
    remove_text = StringProperty("")

    def __init__(self, **kwargs):
        self.register_event_type("on_remove")
        super().__init__(**kwargs)

    def on_remove(self):
        pass


class FieldView(BoxLayout):
    """A field: its label, its input and its error message. `edited(key, kind, value)` is
    called with kind "text" (value: the text), "set" (a value), "toggle" (a checklist
    option), "add_photo" (None: the screen asks for one) or "remove_photo" (a path);
    `focused(key)` when a text box takes the focus. Its buttons act on press: inside a
    ScrollView the press comes once the touch is known to be a tap, the release 0.2 s later."""
    key = StringProperty("")
    shown = BooleanProperty(True)

    def __init__(self, item: dict, edited: Callable[[str, str, object], None],
                 focused: Callable[[str], None] | None = None, lang: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.item, self.edited, self.focused, self.lang = item, edited, focused, lang
        self.key, self.type = item["key"], item["type"]
        self.input: TextInput | None = None
        self.spinner: FormSpinner | None = None
        self.choices: dict[str, Choice] = {}
        self.photos_box: StackLayout | None = None
        self._quiet = False
        self.label = DarkLabel()
        self.error_label = FieldError()
        if self.type != "checkbox":
            self.add_widget(self.label)
        self.add_widget(self._build(item))
        self.add_widget(self.error_label)
        self.bind(minimum_height=self._fit, shown=self._fit)
        self.update(item, lang)

    # ---- building -----------------------------------------------------------------------------
    def _build(self, item: dict):
        t = self.type
        if t in ("textfield", "textarea", "number", "datetime"):
            self.input = FormInput(key=self.key, multiline=t == "textarea", hint_text=item.get("hint", ""),
                                   input_filter=None)
            self.input.bind(text=self._typed, focus=self._focus)
            return self.input
        if t == "select":
            self.spinner = FormSpinner(key=self.key)
            self.spinner.bind(text=self._picked)
            return self.spinner
        if t in ("radio", "checklist", "checkbox"):
            flow = ChoiceFlow()
            if t == "checkbox":
                c = Choice(value="true", round=False)
                c.bind(on_press=lambda w: self._emit("set", not w.selected))
                self.choices["true"] = c
                flow.add_widget(c)
                return flow
            for opt in item["options"]:
                c = Choice(value=opt["value"], round=t == "radio")
                c.bind(on_press=self._chose)
                self.choices[opt["value"]] = c
                flow.add_widget(c)
            return flow
        if t == "filepicker":
            box = BoxLayout(orientation="vertical", size_hint_y=None, spacing=dp(6))
            self.photos_box = StackLayout(size_hint_y=None, spacing=dp(10))
            self.photos_box.bind(minimum_height=self.photos_box.setter("height"))
            self.add_button = FormButton()
            self.add_button.bind(on_press=lambda w: self._emit("add_photo", None))
            box.add_widget(self.photos_box)
            box.add_widget(self.add_button)
            box.bind(minimum_height=box.setter("height"))
            return box
        return DarkLabel(text=f"{t}?")     # parse_form refuses other types; never reached

    # A hidden field has no height, but its children keep their last places and, disabled,
    # would swallow touches meant for the fields now drawn there: a hidden field takes none.
    def on_touch_down(self, touch):
        return super().on_touch_down(touch) if self.shown else False

    def on_touch_move(self, touch):
        return super().on_touch_move(touch) if self.shown else False

    def on_touch_up(self, touch):
        return super().on_touch_up(touch) if self.shown else False

    def _fit(self, *_):
        self.height = self.minimum_height if self.shown else 0
        self.opacity = 1 if self.shown else 0
        self.disabled = not self.shown or bool(self.item.get("readonly"))

    # ---- events -----------------------------------------------------------------------------------
    def _emit(self, kind: str, value) -> None:
        if not self._quiet:
            self.edited(self.key, kind, value)

    def _typed(self, widget, text):
        self._emit("text", text)

    def _focus(self, widget, focus):
        if focus and self.focused is not None and not self._quiet:
            self.focused(self.key)

    def _picked(self, widget, text):
        value = next((o["value"] for o in self.item["options"] if o["label"] == text), None)
        if value is not None:
            self._emit("set", value)

    def _chose(self, choice: Choice):
        if self.type == "radio":
            self._emit("set", choice.value)
        else:
            self._emit("toggle", choice.value)

    # ---- showing -----------------------------------------------------------------------------------
    def update(self, item: dict, lang: str | None = None) -> None:
        """Show a new state of the field (value, label, error, visibility) without emitting edits."""
        self.item, self.lang = item, lang or self.lang
        self._quiet = True
        try:
            required = i18n.t("widgets.required", self.lang) if item["required"] else ""
            self.label.text = f"{item['label']} {required}".strip()
            self.error_label.text = item["error"]
            self.error_label.height = self.error_label.texture_size[1] + dp(4) if item["error"] else 0
            if self.input is not None:
                if self.input.text != item["text"] and not (self.input.focus and self._same_number(item)):
                    self.input.text = item["text"]
                self.input.hint_text = item.get("hint", "")
            elif self.spinner is not None:
                self.spinner.values = [o["label"] for o in item["options"]]
                chosen = next((o["label"] for o in item["options"] if o["selected"]), None)
                self.spinner.text = chosen or i18n.t("widgets.choose", self.lang)
            elif self.type == "checkbox":
                c = self.choices["true"]
                c.text, c.selected = self.label.text, item["value"] is True
            elif self.choices:
                for opt in item["options"]:
                    c = self.choices[opt["value"]]
                    c.text, c.selected = opt["label"], opt["selected"]
            elif self.photos_box is not None:
                self._show_photos(item.get("value") or [])
                self.add_button.text = i18n.t("widgets.add_photo", self.lang)
        finally:
            self._quiet = False
        self.shown = bool(item["visible"])
        self._fit()

    def _same_number(self, item: dict) -> bool:
        """While typing "1." in a number box the value is 1.0: keep what was typed."""
        return self.type == "number"

    def _show_photos(self, paths: list[str]) -> None:
        assert self.photos_box is not None
        have = [w.path for w in reversed(self.photos_box.children)]
        if have == list(paths):
            for w in self.photos_box.children:
                w.remove_text = i18n.t("widgets.remove", self.lang)
            return
        self.photos_box.clear_widgets()
        for path in paths:
            thumb = PhotoThumb(path=path, name=Path(path).name, remove_text=i18n.t("widgets.remove", self.lang))
            thumb.bind(on_remove=lambda w: self._emit("remove_photo", w.path))
            self.photos_box.add_widget(thumb)

    def focus_input(self) -> None:
        if self.input is not None:
            self.input.focus = True


class PhotoPathPopup(Popup):
    """Desktop: no camera, so choose a photo file (a file list, or a typed path)."""
    hint = StringProperty("")
    path_hint = StringProperty("")
    error = StringProperty("")
    ok_text = StringProperty("")
    cancel_text = StringProperty("")

    def __init__(self, on_path: Callable[[str], None], lang: str | None = None, start: str | None = None, **kw):
        super().__init__(title=i18n.t("widgets.photo_title", lang), hint=i18n.t("widgets.photo_hint", lang),
                         path_hint=i18n.t("widgets.photo_path", lang), ok_text=i18n.t("widgets.ok", lang),
                         cancel_text=i18n.t("widgets.cancel", lang), **kw)
        self.on_path, self.lang = on_path, lang
        if start and Path(start).is_dir():
            self.ids.chooser.path = start

    def chosen(self, selection) -> None:
        if selection:
            self.ids.path.text = selection[0]

    def confirm(self) -> None:
        path = self.ids.path.text.strip()
        problem = check_photo(path, self.lang)
        if problem:
            self.error = problem
            return
        self.dismiss()
        self.on_path(str(Path(path).expanduser().absolute()))


class AskPopup(Popup):
    """A question with buttons, e.g. continue a draft or start over. `answers` is read-only
    text shown under the question (a draft's saved answers)."""
    text = StringProperty("")
    answers = StringProperty("")
    choices = ListProperty()

    def __init__(self, title: str, text: str, buttons: list[tuple[str, str, Callable[[], None]]],
                 answers: str = "", **kw):
        super().__init__(title=title, text=text, answers=answers, **kw)
        self.buttons: dict[str, Button] = {}
        for name, label, action in buttons:
            b = Button(text=label, font_size="18sp")
            b.bind(on_release=lambda w, act=action: self._answer(act))
            self.buttons[name] = b
            self.ids.buttons.add_widget(b)

    def _answer(self, action: Callable[[], None]) -> None:
        self.dismiss()
        Clock.schedule_once(lambda dt: action(), 0)
