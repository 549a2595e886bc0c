"""Panels other screens put in the form screen's side panel (`FormScreen.ids.side`):

- `HazardPanel`: the hazard the checklist shows so far (none / minor / severe, coloured), its
  reason and what will follow once submitted; follows the form through a listener
  (`form.add_listener(panel.on_change)`), evaluating the pulled gas_hazard table with the
  evaluate function it is given (`engine.bpmn.decision_table.evaluate`, passed in by the app).
- `PhotoCompare`: a work order's before photos and after photos side by side; a tap on a photo
  shows it large. `load(number, task)` fetches in the background (fieldapp.orders) and shows
  the cached copies when offline.

`attach_hazard_panel(form, table, evaluate)` and `attach_photo_compare(form, number, task)` put
them at the top of a form screen's side panel (replacing an earlier one of the same kind). The
HazardPanel is as tall as its text: a side panel that ends with a stretching spacer keeps it at
the top."""
from __future__ import annotations

import logging
from datetime import date
from typing import Any, Callable, Mapping

from kivy.app import App
from kivy.properties import BooleanProperty, ListProperty, ObjectProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.modalview import ModalView
from kivy.uix.widget import Widget

from devices.pairing import PairingFailed, load_token
from engine.bpmn.decision_table import DecisionError
from fieldapp import i18n
from fieldapp.orders import OrderError, OrderPhotos
from fieldapp.presenters import gas, review
from fieldapp.ui.app import load_kv

__all__ = ["HAZARD_COLOURS", "HazardPanel", "PhotoBig", "PhotoCompare", "CompareThumb", "SideSpacer",
           "attach_hazard_panel", "attach_photo_compare"]

log = logging.getLogger("cityloop.fieldapp")

i18n.add({
    "panels.hazard_title": ("隐患预判", "Hazard preview"),
    "panels.hazard_error": ("无法预判：{error}（提交后由服务器判定）",
                            "Cannot preview: {error} (the server judges after you submit)"),
    "panels.loading": ("正在获取照片…", "Fetching the photos…"),
    "panels.close": ("关闭", "Close"),
    "panels.order_error": ("无法获取工单 {number}：{error}", "Cannot fetch work order {number}: {error}"),
    "panels.no_photo": ("无照片", "No photo"),
})

# background, text: light tints with dark text (readable on the app's light background)
HAZARD_COLOURS = {
    "none": ((0.86, 0.95, 0.87, 1), (0.08, 0.35, 0.14, 1)),
    "minor": ((1.0, 0.93, 0.78, 1), (0.50, 0.30, 0.0, 1)),
    "severe": ((0.99, 0.84, 0.83, 1), (0.62, 0.06, 0.06, 1)),
    "unknown": ((0.92, 0.92, 0.92, 1), (0.2, 0.2, 0.2, 1)),
}

Evaluate = Callable[[Any, dict], "dict | None"]

load_kv(__file__)


class HazardPanel(BoxLayout):
    level = StringProperty("unknown")
    level_text = StringProperty("")
    reason = StringProperty("")
    follows_text = StringProperty("")
    tint = ListProperty(HAZARD_COLOURS["unknown"][0])
    ink = ListProperty(HAZARD_COLOURS["unknown"][1])

    def __init__(self, table: Any = None, evaluate: Evaluate | None = None,
                 today: Callable[[], date] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.table, self.evaluate, self.today = table, evaluate, today
        self.data: dict = {}
        self.error = ""
        self._outputs: Mapping | None = None
        app = App.get_running_app()
        if app is not None:
            app.bind(lang=self._lang_changed)     # a bound method: held weakly, the panel can go
        self._show()

    def _lang_changed(self, *_) -> None:
        self._show()

    def on_change(self, data: Mapping) -> None:
        """A form listener: called with the form's data after every edit."""
        if self.parent is None:          # taken off the form (another form opened since)
            return
        self.data = dict(data)
        self.error, self._outputs = "", None
        if self.table is not None and self.evaluate is not None:
            inputs = gas.hazard_inputs(self.data, self.today() if self.today else None)
            try:
                self._outputs = self.evaluate(self.table, inputs)
            except DecisionError:           # an answer the table needs is not given yet: not known yet
                self._outputs = None
            except (ValueError, TypeError, KeyError, LookupError) as exc:   # a table or value it cannot judge
                log.warning("hazard preview failed: %r", exc)
                self.error = str(exc)[:120]
        self._show()

    def _show(self) -> None:
        lang = App.get_running_app().lang if App.get_running_app() else None
        preview = gas.hazard_preview(self._outputs, lang, table_known=self.table is not None and bool(self.evaluate))
        self.level, self.level_text, self.reason = preview["level"], preview["level_text"], preview["reason"]
        follows = preview["follows"] if not self.error else [i18n.t("panels.hazard_error", lang, error=self.error)]
        self.follows_text = "\n".join(f"•\u00a0{f}" for f in follows)    # no break: CJK wraps by character
        self.tint, self.ink = HAZARD_COLOURS.get(self.level, HAZARD_COLOURS["unknown"])


class CompareThumb(ButtonBehavior, BoxLayout):
    source = StringProperty("")
    caption = StringProperty("")
    problem = StringProperty("")
    sha256 = StringProperty("")

    def on_release(self):
        if self.source:
            PhotoBig(source=self.source, caption=self.caption).open()


class PhotoBig(ModalView):
    source = StringProperty("")
    caption = StringProperty("")


class PhotoCompare(BoxLayout):
    message = StringProperty("")
    loading = BooleanProperty(False)
    shown = ObjectProperty(None, allownone=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.number: str | None = None
        self.task: Mapping | None = None
        self.view = None
        app = App.get_running_app()
        if app is not None:
            app.bind(lang=self._lang_changed)

    def _lang_changed(self, *_) -> None:
        self._present()

    def load(self, number: str, task: Mapping | None = None) -> None:
        """Fetch the order's photos in the background (cache when offline) and show them."""
        app = App.get_running_app()
        self.number, self.task, self.loading = number, task, True
        self.message = i18n.t("panels.loading", app.lang)
        session = app.store.get("session") or {}
        try:
            token = load_token(app.field_config.token_path)
        except PairingFailed:
            token = None
        photos = OrderPhotos(session.get("server"), token, app.field_config.data_dir / "orders")
        app.bg.call(photos.fetch, number, done=self.fetched, failed=self.failed)

    def fetched(self, view) -> None:
        self.view, self.loading = view, False
        self._present()

    def failed(self, exc: BaseException) -> None:
        self.loading = False
        if not isinstance(exc, OrderError):
            App.get_running_app().show_error(exc)
        self.message = i18n.t("panels.order_error", App.get_running_app().lang, number=self.number, error=str(exc))

    def show(self, shown: dict) -> None:
        """Fill both sides from `presenters.review.compare(...)`."""
        self.shown = shown
        self.message = shown["message"]
        for side in ("before", "after"):
            grid = self.ids[f"{side}_grid"]
            grid.clear_widgets()
            for item in shown[side]:
                grid.add_widget(CompareThumb(source=item["path"] or "", caption=item["caption"],
                                           problem=item["problem"], sha256=item["sha256"]))
            count = shown[f"{side}_count"]
            self.ids[f"{side}_title"].text = f"{shown[f'{side}_title']} · {count}" if count else shown[f"{side}_title"]
            self.ids[f"{side}_hint"].text = shown[f"{side}_hint"]
            self.ids[f"{side}_empty"].text = shown[f"{side}_empty"]

    def _present(self) -> None:
        if self.view is not None:
            self.show(review.compare(self.view, self.task, App.get_running_app().lang))


class SideSpacer(Widget):
    """Ends the side panel and takes (almost) no room from stretching panels: a fixed-height
    panel stays at the top of it rather than sinking to the bottom."""


def _replace(form, widget) -> None:
    side = form.ids.side
    if not any(isinstance(w, SideSpacer) for w in side.children):
        side.add_widget(SideSpacer(size_hint_y=0.001), index=0)
    for old in [w for w in side.children if isinstance(w, type(widget))]:
        side.remove_widget(old)
    side.add_widget(widget, index=len(side.children))     # at the top of the side panel


def attach_hazard_panel(form, table: Any, evaluate: Evaluate | None, today: Callable[[], date] | None = None,
                        data: Mapping | None = None) -> HazardPanel:
    """A HazardPanel in the form screen's side panel, following the form's edits."""
    panel = HazardPanel(table=table, evaluate=evaluate, today=today)
    _replace(form, panel)
    form.add_listener(panel.on_change)
    if data:
        panel.on_change(data)
    return panel


def attach_photo_compare(form, number: str, task: Mapping | None = None) -> PhotoCompare:
    """A PhotoCompare of work order `number` in the form screen's side panel, loading."""
    panel = PhotoCompare()
    _replace(form, panel)
    panel.load(number, task)
    return panel
