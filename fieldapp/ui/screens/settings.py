"""Settings: language, the server and device this tablet uses, who is signed in (sign out
here: the outbox, drafts and photos stay), pairing again, where the data is."""
from __future__ import annotations

from fieldapp import i18n, session
from fieldapp.ui.app import FieldScreen, load_kv

__all__ = ["SettingsScreen"]

i18n.add({
    "settings.title": ("设置", "Settings"),
    "settings.language": ("语言", "Language"),
    "settings.data": ("数据目录", "Data folder"),
    "settings.server": ("服务器", "Server"),
    "settings.none": ("（未配对）", "(not paired)"),
    "settings.back": ("返回", "Back"),
    "settings.font": ("字体", "Font"),
    "settings.device": ("设备编号", "Device id"),
    "settings.user": ("当前用户", "Signed in as"),
    "settings.nobody": ("（未登录）", "(nobody)"),
    "settings.user_value": ("{id}（{role}）", "{id} ({role})"),
    "settings.sign_out": ("退出登录", "Sign out"),
    "settings.sign_in": ("登录", "Sign in"),
    "settings.signed_out": ("已退出登录。未发送的 {n} 条记录仍保留，下次登录后发送。",
                            "Signed out. The {n} unsent entries stay and are sent after the next sign-in."),
    "settings.pair_again": ("重新配对", "Pair again"),
})

load_kv(__file__)


class SettingsScreen(FieldScreen):
    def show(self, **params) -> None:
        app = self.app
        current = app.store.get("session") or {}
        pairing = app.store.get("pairing") or {}
        user = current.get("user")
        self.ids.data_dir.text = str(app.field_config.data_dir)
        self.ids.server.text = current.get("server") or pairing.get("server") or i18n.t("settings.none")
        self.ids.device.text = current.get("device_id") or pairing.get("device_id") or i18n.t("settings.none")
        self.ids.user.text = (i18n.t("settings.user_value", id=user["id"], role=user.get("role") or "-") if user
                              else i18n.t("settings.nobody"))
        self.ids.sign_out.text = i18n.t("settings.sign_out" if user else "settings.sign_in")
        self.ids.font.text = app.font_path or "-"

    def language_changed(self) -> None:
        self.show()

    def sync_changed(self, state) -> None:
        if self.app is None:       # the app stopped meanwhile
            return
        if self.app.sm.current == self.name:
            self.show()

    def sign_out(self) -> None:
        app = self.app
        if app.store.get("session"):
            session.sign_out(app.store)
            app.syncer.refresh()
            app.show_message(i18n.t("settings.signed_out", n=app.syncer.state.waiting))
        app.go("login")
