"""Sign in: the person's user name and password, checked by the server; the tablet must be
registered to that person. Without a network the screen says why signing in cannot work."""
from __future__ import annotations

from fieldapp import i18n, session
from fieldapp.ui.app import FieldScreen, load_kv

__all__ = ["LoginScreen"]

i18n.add({
    "login.title": ("登录", "Sign in"),
    "login.server": ("服务器：{server}", "Server: {server}"),
    "login.device": ("设备：{device}", "Device: {device}"),
    "login.username": ("用户名", "User name"),
    "login.password": ("密码", "Password"),
    "login.submit": ("登录", "Sign in"),
    "login.signing_in": ("正在登录…", "Signing in…"),
    "login.offline": ("登录需要连接服务器。{why}已保存的工作不会丢失。",
                      "Signing in needs the server. {why}Work already saved is not lost."),
    "login.pair_again": ("重新配对", "Pair again"),
    "login.welcome": ("欢迎，{name}", "Welcome, {name}"),
})

load_kv(__file__)


class LoginScreen(FieldScreen):
    def on_kv_post(self, base_widget) -> None:
        self._error: session.SessionError | None = None
        self._busy = False

    def show(self, **params) -> None:
        app = self.app
        pairing = session.paired(app.field_config, app.store)
        if pairing is None:
            self.ids.where.text = i18n.t("session.not_paired", app.lang)
        else:
            self.ids.where.text = "   ".join((i18n.t("login.server", app.lang, server=pairing["server"]),
                                              i18n.t("login.device", app.lang, device=pairing["device_id"])))
        self.ids.password.text = ""
        self.set_error(None)

    def language_changed(self) -> None:
        error = self._error
        self.show()
        self.set_error(error)

    def set_error(self, exc: session.SessionError | None) -> None:
        self._error = exc
        if exc is None:
            self.ids.status.text = ""
        elif isinstance(exc, session.Unreachable):
            self.ids.status.text = i18n.t("login.offline", self.app.lang, why=exc.text(self.app.lang))
        else:
            self.ids.status.text = exc.text(self.app.lang)
        self.ids.status.color = (0.65, 0.1, 0.1, 1)

    def submit(self) -> None:
        if self._busy:
            return
        app = self.app
        self._busy = True
        self.set_error(None)
        self.ids.status.text = i18n.t("login.signing_in", app.lang)
        self.ids.status.color = (0.1, 0.3, 0.15, 1)
        self.ids.submit.disabled = True
        self.ids.progress.opacity = 1
        app.bg.call(session.sign_in, app.field_config, app.store, self.ids.username.text, self.ids.password.text,
                    done=self._signed_in, failed=self._failed)

    def _finish(self) -> None:
        self._busy = False
        self.ids.submit.disabled = False
        self.ids.progress.opacity = 0

    def _signed_in(self, result: dict) -> None:
        if self.app is None:       # the app stopped meanwhile
            return
        self._finish()
        app = self.app
        self.ids.password.text = ""
        self.ids.status.text = ""
        app.syncer.sync_soon()
        app.show_message(i18n.t("login.welcome", app.lang, name=result["user"].get("name") or result["user"]["id"]))
        app.go("tasks" if app.sm.has_screen("tasks") else "settings")

    def _failed(self, exc: BaseException) -> None:
        if self.app is None:       # the app stopped meanwhile
            return
        self._finish()
        self.ids.password.text = ""
        if isinstance(exc, session.SessionError):
            self.set_error(exc)
            if isinstance(exc, (session.Revoked, session.NotPaired)):
                self.app.syncer.refresh()
                self.app.go("pair", again=True)
        else:
            self.app.show_error(exc)
