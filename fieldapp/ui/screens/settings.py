"""Settings: language, where the data is, the server and device this tablet uses."""
from __future__ import annotations

from fieldapp import i18n
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
})

load_kv(__file__)


class SettingsScreen(FieldScreen):
    def show(self, **params) -> None:
        session = self.app.store.get("session") or {}
        self.ids.data_dir.text = str(self.app.field_config.data_dir)
        self.ids.server.text = session.get("server") or i18n.t("settings.none")
        self.ids.font.text = self.app.font_path or "-"

    def language_changed(self) -> None:
        self.show()
