"""The gas deliverer's households: a recycling list (smooth with thousands), overdue and due
first, searchable by address code, holder or address; "scan code" reads the household's QR
address code (the camera where there is one, an image file chosen in the app on a desktop).
A tap or a scan opens the household's inspection on the form screen, with a hazard preview in
its side panel.

The preview evaluates the pulled gas_hazard table with `engine.bpmn.decision_table.evaluate`, the
pure twin of the server's DMN evaluation (`GasScreen.evaluate`; None makes the preview say the
server will judge)."""
from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any, Callable, ClassVar

from kivy.clock import Clock
from kivy.properties import BooleanProperty, NumericProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.modalview import ModalView
from kivy.uix.recycleview.views import RecycleDataViewBehavior
from kivy.utils import platform as kivy_platform

from engine.bpmn import decision_table
from fieldapp import i18n, qr
from fieldapp.presenters import gas
from fieldapp.ui.app import FieldScreen, load_kv
from fieldapp.ui.panels import attach_hazard_panel

__all__ = ["GasScreen", "HouseholdRow", "ScanChooser"]

log = logging.getLogger("cityloop.fieldapp")

i18n.add({
    "gasui.title": ("我的住户", "My households"),
    "gasui.count": ("共 {n} 户 · 逾期 {overdue} · 到期 {due}", "{n} households · {overdue} overdue · {due} due"),
    "gasui.shown": ("显示 {shown} / {n} 户", "showing {shown} of {n}"),
    "gasui.search": ("搜索地址编码、户主或地址", "Search address code, holder or address"),
    "gasui.scan": ("扫码", "Scan code"),
    "gasui.scanning": ("识别中…", "Reading…"),
    "gasui.empty": ("平板上还没有住户名单。请联网同步一次。",
                    "No households on this tablet yet: sync once while online."),
    "gasui.no_match": ("没有符合“{text}”的住户", "No household matches \u201c{text}\u201d"),
    "gasui.no_form_screen": ("此版本的应用无法打开表单。", "This version of the app cannot open forms."),
    "gasui.choose_title": ("选择二维码照片", "Choose a picture of the QR code"),
    "gasui.choose_open": ("识别", "Read code"),
    "gasui.choose_cancel": ("取消", "Cancel"),
    "gasui.no_photo": ("没有拍到照片：{why}", "No picture was taken: {why}"),
    "gasui.draft_gone": ("此草稿的住户已不在您的名单中。", "The household of this draft is no longer in your list."),
    "gasui.suspended_open": ("注意：该住户已停止供气，请勿送气。", "Note: gas supply to this household is suspended: "
                             "do not deliver."),
})

CAMERA_PLATFORMS = ("android", "ios")

load_kv(__file__)


class HouseholdRow(RecycleDataViewBehavior, ButtonBehavior, BoxLayout):
    """One household in the list (a recycled view: its fields come from the row's data)."""
    hid = NumericProperty(0)
    address_code = StringProperty("")
    holder = StringProperty("")
    address = StringProperty("")
    due_text = StringProperty("")
    flags_text = StringProperty("")
    row_state = StringProperty("ok")  # overdue | due | ok (not `state`: ButtonBehavior's pressed state)
    suspended = BooleanProperty(False)
    screen: Any = None

    def on_release(self):
        if self.screen is not None:
            self.screen.open_household(int(self.hid))


class ScanChooser(ModalView):
    """An in-app file chooser for a picture of the code (desktops have no camera)."""
    path = StringProperty("")

    def __init__(self, on_choose: Callable[[str], None], **kwargs):
        super().__init__(**kwargs)
        self.on_choose = on_choose

    def choose(self) -> None:
        chosen = list(self.ids.chooser.selection)
        if chosen:
            self.dismiss()
            self.on_choose(chosen[0])


class GasScreen(FieldScreen):
    # engine.bpmn.decision_table.evaluate(table, data) -> dict | None, set by the app's wiring
    evaluate: ClassVar[Callable[[Any, dict], Any] | None] = staticmethod(decision_table.evaluate)
    count_text = StringProperty("")
    empty_text = StringProperty("")
    scanning = BooleanProperty(False)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.rows: list[dict] = []
        self.households: dict[int, dict] = {}
        self._seen_sync = None          # the last finished sync the list was read after

    # ---- the list ------------------------------------------------------------------------------
    def show(self, **params) -> None:
        self.reload()
        key = params.get("draft_key") or ""
        if key.startswith("household:"):       # a delivery inspection's draft, reopened from the tasks list
            try:
                hid = int(key.split(":", 1)[1])
            except ValueError:
                log.warning("not a household draft key: %r", key)
                return
            Clock.schedule_once(lambda dt: self._reopen(hid), 0)     # once this screen is the current one

    def _reopen(self, household_id: int) -> None:
        if self.app is None:
            return
        if household_id not in self.households:
            self.app.show_message(i18n.t("gasui.draft_gone", self.app.lang), 10)
            return
        self.open_household(household_id)

    def reload(self) -> None:
        app = self.app
        households = app.outbox.value("households") or []
        self.households = {int(h["id"]): h for h in households}
        self.rows = gas.household_rows(households, app.outbox.tasks(), lang=app.lang)
        self.apply_filter()

    def apply_filter(self) -> None:
        text = self.ids.search.text
        rows = gas.search(self.rows, text)
        self.ids.rv.data = [{"hid": r["id"], "address_code": r["address_code"], "holder": r["holder"],
                             "address": r["address"], "due_text": r["due_text"], "flags_text": r["flags_text"],
                             "row_state": r["state"], "suspended": r["suspended"], "screen": self} for r in rows]
        lang = self.app.lang
        overdue = sum(r["state"] == "overdue" for r in self.rows)
        due = sum(r["state"] == "due" for r in self.rows)
        count = i18n.t("gasui.count", lang, n=len(self.rows), overdue=overdue, due=due)
        if text.strip():
            count += " · " + i18n.t("gasui.shown", lang, shown=len(rows), n=len(self.rows))
        self.count_text = count
        if not self.rows:
            self.empty_text = i18n.t("gasui.empty", lang)
        elif not rows:
            self.empty_text = i18n.t("gasui.no_match", lang, text=text.strip())
        else:
            self.empty_text = ""

    def language_changed(self) -> None:
        self.reload()

    def sync_changed(self, state) -> None:
        """Only a finished sync can have pulled households or tasks: not every state change (a
        sync reports its upload progress many times) re-reads and re-sorts the whole list."""
        if state.last_sync is None or state.last_sync == self._seen_sync:
            return
        self._seen_sync = state.last_sync
        if self.manager is not None and self.manager.current == self.name:
            self.reload()

    # ---- opening a household -----------------------------------------------------------------------
    def open_household(self, household_id: int):
        """Open the household's inspection task, or an inspection at this delivery; returns the
        form screen, or None (with a message saying why)."""
        app = self.app
        household = self.households.get(household_id)
        if household is None:
            self.reload()
            household = self.households.get(household_id)
        if household is None:
            return None
        reference = app.outbox.value("reference") or {}
        request = gas.open_request(household, app.outbox.tasks(), reference, app.outbox, app.lang)
        if request["kind"] == "unavailable":
            app.show_message(request["message"], 10)
            return None
        if not app.sm.has_screen("form"):
            app.show_message(i18n.t("gasui.no_form_screen", app.lang), 10)
            return None
        form = app.go("form", **request.params)
        if hasattr(form, "add_listener") and "side" in form.ids:
            attach_hazard_panel(form, reference.get("hazard_table"), type(self).evaluate)
        if household.get("supply_suspended"):
            app.show_message(i18n.t("gasui.suspended_open", app.lang), 10)
        return form

    # ---- scanning the address code ------------------------------------------------------------------
    def scan_dir(self) -> str:
        kept = self.app.store.get("gas.scan_dir")
        return kept if kept and Path(kept).is_dir() else str(Path.home())

    def scan(self) -> None:
        if self.scanning:
            return
        if kivy_platform in CAMERA_PLATFORMS:
            self._scan_with_camera()
        else:
            ScanChooser(on_choose=self.scan_file, path=self.scan_dir()).open()

    def _scan_with_camera(self) -> None:
        platform, households = self.app.platform, list(self.households.values())

        def take_and_read():
            photo = platform.photo(f"scan-{uuid.uuid4().hex}.jpg")
            return qr.find_household(photo.path, households) if photo.path else photo

        self.scanning = True
        self.app.bg.call(take_and_read, done=self.scanned, failed=self._scan_failed)

    def scan_file(self, path: str) -> None:
        self.app.store.put("gas.scan_dir", str(Path(path).parent))
        self.scanning = True
        self.app.bg.call(qr.find_household, path, list(self.households.values()), done=self.scanned,
                         failed=self._scan_failed)

    def _scan_failed(self, exc: BaseException) -> None:
        self.scanning = False
        self.app.show_error(exc)

    def scanned(self, result) -> None:
        self.scanning = False
        lang = self.app.lang
        if not isinstance(result, qr.ScanResult):          # the camera gave no picture
            why = gas.split_reason(getattr(result, "message", ""), lang)     # "english / 中文"
            self.app.show_message(i18n.t("gasui.no_photo", lang, why=why), 10)
            return
        if result.household is None:
            self.app.show_message(result.message(lang), 12)
            return
        self.open_household(int(result.household["id"]))
