"""Pair the tablet: servers found on the LAN appear as they answer (or type an address), then
the device id and one-time code the administrator gave. A revoked tablet lands here with a
plain message naming the unsent entries it kept."""
from __future__ import annotations

import time

from kivy.clock import Clock
from kivy.factory import Factory

from fieldapp import i18n, session
from fieldapp.ui.app import FieldScreen, load_kv

__all__ = ["PairScreen"]

i18n.add({
    "pair.title": ("配对平板", "Pair this tablet"),
    "pair.found": ("局域网中的服务器", "Servers on the local network"),
    "pair.search": ("重新查找", "Search again"),
    "pair.searching": ("正在查找服务器…", "Looking for servers…"),
    "pair.found_n": ("找到 {n} 台服务器，点一下即可选用", "Found {n} server(s): tap one to use it"),
    "pair.found_none": ("未找到服务器，请在右侧输入地址", "No server answered: type its address on the right"),
    "pair.search_failed": ("无法在局域网查找服务器：{error}", "Cannot search the local network: {error}"),
    "pair.incompatible": ("（版本不符）", " (other version)"),
    "pair.address": ("服务器地址", "Server address"),
    "pair.address_hint": ("例如 http://192.168.1.5:8000", "e.g. http://192.168.1.5:8000"),
    "pair.device": ("设备编号", "Device id"),
    "pair.device_hint": ("管理员登记平板时给出，如 d-1a2b3c", "Given by the administrator, e.g. d-1a2b3c"),
    "pair.code": ("配对码（8 位数字）", "Pairing code (8 digits)"),
    "pair.submit": ("配对", "Pair"),
    "pair.pairing": ("正在配对…", "Pairing…"),
    "pair.done": ("配对成功，请登录", "Paired: now sign in"),
    "pair.help": ("配对码只能用一次，15 分钟内有效。", "A pairing code works once, within 15 minutes."),
})

load_kv(__file__)


class PairScreen(FieldScreen):
    def on_kv_post(self, base_widget) -> None:
        self._found: list[session.FoundServer] = []
        self._search_started = 0.0
        self._searching = False
        self._notice_key: tuple[str, bool, dict] | None = None
        self._error: session.SessionError | None = None

    # ---- showing ------------------------------------------------------------------------------
    def show(self, **params) -> None:
        app = self.app
        pairing = app.store.get("pairing") or {}
        if not self.ids.address.text:
            self.ids.address.text = pairing.get("server") or app.field_config.server or ""
        self.ids.code.text = ""
        self.set_status("")
        self.show_revoked()
        if not params.get("again") and not app.store.get("revoked") and session.paired(app.field_config, app.store):
            Clock.schedule_once(lambda dt: app.go("login"), 0)     # paired already: sign in
            return
        if not self._searching:
            self.search()

    def show_revoked(self) -> None:
        app = self.app
        revoked = app.store.get("revoked") is not None
        self.ids.revoked.text = app.syncer.revoked_message(app.lang) if revoked else ""

    def language_changed(self) -> None:
        self.show_revoked()
        self._fill_found()
        if self._notice_key is not None:
            key, error, values = self._notice_key
            self.set_status(key, error, **values)
        elif self._error is not None:
            self.set_error(self._error)

    def sync_changed(self, state) -> None:
        """A revocation seen by the syncer brings the app here, saying so."""
        if self.app is None:       # the app stopped meanwhile
            return
        if state.revoked and self.app.sm.current != "pair":
            self.app.go("pair", again=True)
        elif self.app.sm.current == "pair":
            self.show_revoked()

    def set_status(self, key: str, error: bool = False, **values) -> None:
        self._notice_key, self._error = ((key, error, values) if key else None), None
        self.ids.status.text = i18n.t(key, self.app.lang, **values) if key else ""
        self.ids.status.color = (0.65, 0.1, 0.1, 1) if error else (0.1, 0.3, 0.15, 1)

    def set_error(self, exc: session.SessionError) -> None:
        self._notice_key, self._error = None, exc
        self.ids.status.text = exc.text(self.app.lang)
        self.ids.status.color = (0.65, 0.1, 0.1, 1)

    # ---- finding servers ------------------------------------------------------------------------
    def search(self) -> None:
        app = self.app
        self._found = []
        self._fill_found()
        self._searching = True
        self._search_started = time.monotonic()
        self.ids.search_state.text = i18n.t("pair.searching", app.lang)
        self.ids.search_button.disabled = True
        Clock.schedule_interval(self._tick, 0.1)

        def found(server: session.FoundServer) -> None:       # on the asyncio thread: hand to the UI thread
            app.bg.post(lambda: self._add_found(server))

        app.bg.spawn(session.find_servers(app.field_config, on_found=found), done=self._search_done,
                     failed=self._search_failed)

    def _tick(self, dt) -> bool:
        if self.app is None:          # the app stopped while searching
            return False
        timeout = max(0.1, self.app.field_config.discovery_timeout)
        self.ids.search_progress.value = min(100.0, 100.0 * (time.monotonic() - self._search_started) / timeout)
        return self._searching

    def _add_found(self, server: session.FoundServer) -> None:
        if self.app is None:       # the app stopped meanwhile
            return
        if all(s.address != server.address for s in self._found):
            self._found.append(server)
            self._fill_found()
            if len(self._found) == 1 and not self.ids.address.text and server.compatible:
                self.ids.address.text = server.address

    def _fill_found(self) -> None:
        box = self.ids.servers
        box.clear_widgets()
        for server in self._found:
            label = f"{server.name}\n{server.address}"
            if not server.compatible:
                label += i18n.t("pair.incompatible", self.app.lang)
            button = Factory.PairServerButton(text=label, state="down" if server.address == self.ids.address.text
                                              else "normal")
            button.address = server.address
            button.bind(on_release=lambda b: self.choose(b.address))
            box.add_widget(button)
        if self._searching:
            self.ids.search_state.text = i18n.t("pair.searching", self.app.lang)
        else:
            self.ids.search_state.text = i18n.t("pair.found_n", self.app.lang, n=len(self._found)) if self._found \
                else i18n.t("pair.found_none", self.app.lang)

    def choose(self, address: str) -> None:
        self.ids.address.text = address
        for button in self.ids.servers.children:
            button.state = "down" if button.address == address else "normal"

    def _search_done(self, servers) -> None:
        if self.app is None:       # the app stopped meanwhile
            return
        self._searching = False
        for server in servers:
            self._add_found(server)
        self.ids.search_progress.value = 100
        self.ids.search_button.disabled = False
        self._fill_found()

    def _search_failed(self, exc: BaseException) -> None:
        if self.app is None:       # the app stopped meanwhile
            return
        self._searching = False
        self.ids.search_button.disabled = False
        self.ids.search_state.text = i18n.t("pair.search_failed", self.app.lang, error=str(exc)[:120])

    # ---- pairing ------------------------------------------------------------------------------------
    def submit(self) -> None:
        app = self.app
        self.set_status("pair.pairing")
        self.ids.submit.disabled = True
        self.ids.pair_progress.opacity = 1
        app.bg.call(session.pair, app.field_config, app.store, self.ids.address.text, self.ids.device.text,
                    self.ids.code.text, done=self._paired, failed=self._pair_failed)

    def _paired(self, pairing: dict) -> None:
        if self.app is None:       # the app stopped meanwhile
            return
        self.ids.submit.disabled = False
        self.ids.pair_progress.opacity = 0
        self.ids.code.text = ""
        self.show_revoked()
        self.app.syncer.refresh()
        self.app.show_message(i18n.t("pair.done", self.app.lang))
        self.app.go("login")

    def _pair_failed(self, exc: BaseException) -> None:
        if self.app is None:       # the app stopped meanwhile
            return
        self.ids.submit.disabled = False
        self.ids.pair_progress.opacity = 0
        if isinstance(exc, session.SessionError):
            self.set_error(exc)
        else:                  # e.g. the token file cannot be written: shown and logged, never silent
            self.app.show_error(exc)
