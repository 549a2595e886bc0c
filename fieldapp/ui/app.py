"""The Kivy application: a top bar (title, sync status, language), the screens, and a
message line. It owns the tablet's services and hands them to the screens:

- `store` (fieldapp.store.LocalStore): session, settings, drafts;
- `outbox` (sync.client.Outbox): ops waiting for the server, pulled tasks and crews;
- `bg` (fieldapp.background.Background): threads and an asyncio loop, never the UI thread;
- `platform` (devices.platform.Platform): GPS, camera, notifications, device id;
- `syncer` (fieldapp.syncer.Syncer): background sync and its state, shown in the top bar.

Screens are listed in SCREENS (name, "module:Class"); each screen class lives in
fieldapp/ui/screens/<module>.py with its layout in the .kv file beside it. kv text is
written `app.t("key", app.lang)` so it follows a language switch."""
from __future__ import annotations

import importlib
import logging
from pathlib import Path

from kivy.app import App
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.lang import Builder
from kivy.metrics import dp
from kivy.properties import BooleanProperty, ListProperty, NumericProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.screenmanager import NoTransition, Screen
from kivy.uix.widget import Widget

from devices.platform import Platform, parse_location
from fieldapp import i18n
from fieldapp.background import Background
from fieldapp.config import FieldConfig
from fieldapp.store import LocalStore
from fieldapp.syncer import Syncer, SyncState
from fieldapp.ui.fonts import register_cjk_font
from sync.client import Outbox

__all__ = ["FieldApp", "FieldScreen", "NavBar", "NavButton", "SCREENS", "load_kv"]

log = logging.getLogger("cityloop.fieldapp")

i18n.add({
    "app.title": ("城运通 · 外勤", "cityloop field"),
    "app.no_font": ("未找到中文字体，中文将无法显示", "No Chinese font found: Chinese text cannot be shown"),
    "app.error": ("出错了：{error}", "Something went wrong: {error}"),
    "app.lang_button": ("English", "中文"),
    "app.nav.tasks": ("我的待办", "My work"),
    "app.nav.gas": ("住户", "Households"),
    "app.nav.checkin": ("打卡", "Check-in"),
    "app.nav.settings": ("设置", "Settings"),
})

# (screen name, "module:Class"); the first screen shown is chosen in `first_screen`.
SCREENS: list[tuple[str, str]] = [
    ("settings", "fieldapp.ui.screens.settings:SettingsScreen"),
    ("tasks", "fieldapp.ui.screens.tasks:TasksScreen"),
    ("form", "fieldapp.ui.screens.form:FormScreen"),
    ("pair", "fieldapp.ui.screens.pair:PairScreen"),
    ("login", "fieldapp.ui.screens.login:LoginScreen"),
    ("sync", "fieldapp.ui.screens.sync:SyncScreen"),
    ("gas", "fieldapp.ui.screens.gas:GasScreen"),
    ("checkin", "fieldapp.ui.screens.checkin:CheckinScreen"),
]


def load_kv(module_file: str) -> None:
    """Load the .kv file beside a screen's module (once)."""
    path = str(Path(module_file).with_suffix(".kv"))
    if path not in Builder.files:
        Builder.load_file(path)


class FieldScreen(Screen):
    """A screen of the app. `show(**params)` is called when the app goes to it."""

    @property
    def app(self) -> "FieldApp":
        return App.get_running_app()  # type: ignore[return-value]

    def show(self, **params) -> None:
        """Fill the screen for these parameters (override)."""

    def language_changed(self) -> None:
        """Text built in Python (not in kv) is rebuilt here (override)."""


class FieldApp(App):
    lang = StringProperty("zh")
    online = BooleanProperty(False)
    sync_text = StringProperty("")
    waiting = NumericProperty(0)
    conflicts = NumericProperty(0)
    message = StringProperty("")
    signed_in = BooleanProperty(False)
    role = StringProperty("")              # the signed-in person's role: which work screens the bar offers
    font_path = StringProperty("")

    def __init__(self, config: FieldConfig, platform: Platform | None = None, **kwargs):
        super().__init__(**kwargs)
        self.field_config = config
        self.lang = config.lang
        i18n.set_language(config.lang)
        self.title = i18n.t("app.title")
        self._platform = platform
        self.history: list[str] = []
        self.stopped = False
        self._message_key: tuple[str, dict] | None = None

    # ---- text ---------------------------------------------------------------------------------
    def t(self, key: str, lang: str | None = None, **values) -> str:
        return i18n.t(key, lang or self.lang, **values)

    def set_language(self, lang: str) -> None:
        i18n.set_language(lang)
        self.lang = lang
        self.store.put("lang", lang)
        self.title = i18n.t("app.title")
        if self._message_key is not None and self.message:
            key, values = self._message_key
            self.message = i18n.t(key, **values)
        for screen in self.sm.screens:
            screen.language_changed()
        self.sync_state_changed(self.syncer.state)

    def nav_items(self, role: str, signed_in: bool) -> list[tuple[str, str]]:
        """(screen, label key) of the work screens this person has, for the top bar."""
        if not signed_in:
            return []
        wanted = ["tasks"] + (["gas"] if role == "deliverer" else []) \
            + (["checkin"] if role in ("supervisor", "unit_leader") else []) + ["settings"]
        return [(name, f"app.nav.{name}") for name in wanted if self.sm.has_screen(name)]

    def toggle_language(self) -> None:
        self.set_language("en" if self.lang == "zh" else "zh")

    # ---- building -------------------------------------------------------------------------------
    def build(self):
        cfg = self.field_config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        if tuple(Window.size) != tuple(cfg.window_size):   # normally set before the window opened (ui.boot)
            Window.size = cfg.window_size
        self.font_path = register_cjk_font() or ""
        self.store = LocalStore(cfg.store_path)
        lang = self.store.get("lang")
        if lang in i18n.LANGUAGES and lang != self.lang:
            i18n.set_language(lang)
            self.lang = lang
        self.outbox = Outbox(str(cfg.outbox_path), photo_dir=str(cfg.data_dir / "photos"))
        self.bg = Background(post=lambda fn: Clock.schedule_once(lambda dt: fn()), on_error=self.show_error)
        self.platform = self._platform or Platform(cfg.data_dir, parse_location(cfg.location))
        self.syncer = Syncer(cfg, self.store, self.outbox, self.bg, on_state=self.sync_state_changed)
        load_kv(__file__)
        root = self._root()
        self.sm = root.ids.sm
        for name, where in SCREENS:
            module, cls = where.split(":")
            screen_cls = getattr(importlib.import_module(module), cls)
            self.sm.add_widget(screen_cls(name=name))
        self.sync_state_changed(self.syncer.state)
        if not self.font_path:
            self.say("app.no_font", 0)
        Clock.schedule_once(lambda dt: self.go(self.first_screen()), 0)
        return root

    def _root(self):
        from kivy.factory import Factory
        root = Factory.FieldRoot()
        root.ids.sm.transition = NoTransition()
        return root

    def first_screen(self) -> str:
        names = [n for n, _ in SCREENS]
        for name in (("tasks",) if self.store.get("session") else ("pair",)) + ("settings",):
            if name in names:
                return name
        return names[0]

    def on_start(self):
        self._ask_android_permissions()
        self.syncer.start()

    @staticmethod
    def _ask_android_permissions() -> None:
        """Android 6+ grants dangerous permissions at run time (buildozer.spec declares them)."""
        from kivy.utils import platform
        if platform != "android":
            return
        from android.permissions import Permission, request_permissions  # type: ignore[import-not-found]
        wanted = ("BLUETOOTH_SCAN", "BLUETOOTH_CONNECT", "ACCESS_FINE_LOCATION", "CAMERA", "READ_MEDIA_IMAGES",
                  "POST_NOTIFICATIONS")
        request_permissions([getattr(Permission, name) for name in wanted if hasattr(Permission, name)])

    def on_stop(self):
        self.stopped = True
        self.syncer.stop()
        self.bg.close()

    # ---- navigation and messages -------------------------------------------------------------------
    @property
    def screen(self) -> FieldScreen:
        return self.sm.current_screen  # type: ignore[return-value]

    def go(self, name: str, **params) -> FieldScreen:
        screen = self.sm.get_screen(name)
        if self.sm.current != name:
            self.history.append(self.sm.current)
        screen.show(**params)
        self.sm.current = name
        return screen

    def back(self) -> None:
        while self.history:
            name = self.history.pop()
            if self.sm.has_screen(name) and name != self.sm.current:
                self.sm.current = name
                self.screen.show()
                return

    def say(self, key: str, seconds: float = 6.0, **values) -> None:
        """Show a message by its i18n key: it follows a language switch while shown."""
        self.show_message(i18n.t(key, **values), seconds)
        self._message_key = (key, values)

    def show_message(self, text: str, seconds: float = 6.0) -> None:
        self._message_key = None
        self.message = text
        Clock.unschedule(self._clear_message)
        if seconds:
            Clock.schedule_once(self._clear_message, seconds)

    def _clear_message(self, *_):
        if self.stopped:
            return
        self.message = ""
        self._message_key = None

    def show_error(self, exc: BaseException) -> None:
        log.error("field app error", exc_info=exc)
        if self.stopped:
            return
        self.show_message(i18n.t("app.error", error=str(exc)[:200]), 10)

    # ---- sync -----------------------------------------------------------------------------------------
    def sync_state_changed(self, state: SyncState) -> None:
        if self.stopped:
            return      # a state posted just before the app stopped
        self.signed_in = state.signed_in
        self.role = ((self.store.get("session") or {}).get("user") or {}).get("role") or "" if state.signed_in else ""
        self.online, self.waiting, self.conflicts = state.online, state.waiting, state.conflicts
        self.sync_text = state.line(self.lang)
        for screen in self.sm.screens if hasattr(self, "sm") else ():
            hook = getattr(screen, "sync_changed", None)
            if hook is not None:
                hook(state)

    def request_sync(self) -> None:
        """After a submission: sync now in the background (nothing happens offline)."""
        self.syncer.sync_soon()


class NavButton(Button):
    screen_name = StringProperty("")
    current = BooleanProperty(False)


class NavBar(BoxLayout):
    """The work screens of the signed-in person, one button each (highlighted: the current one)."""
    items = ListProperty([])
    lang = StringProperty("zh")

    def __init__(self, **kwargs):
        super().__init__(spacing=dp(6), **kwargs)
        self.bind(items=self._build, lang=self._build)
        Clock.schedule_once(lambda dt: self._follow(), 0)

    def _follow(self) -> None:
        app = App.get_running_app()
        if app is not None and hasattr(app, "sm"):
            app.sm.bind(current=lambda *_: self._mark())

    def _build(self, *_) -> None:
        self.clear_widgets()
        app = App.get_running_app()
        for name, key in self.items:
            button = NavButton(text=i18n.t(key, self.lang), screen_name=name)
            button.bind(on_release=lambda b: app.go(b.screen_name))
            self.add_widget(button)
        self.add_widget(Widget())
        self._mark()

    def _mark(self) -> None:
        app = App.get_running_app()
        current = app.sm.current if app is not None and hasattr(app, "sm") else ""
        for child in self.children:
            if isinstance(child, NavButton):
                child.current = child.screen_name == current
