"""A font with Chinese glyphs for every widget: Kivy's default, Roboto, has none (Chinese
text would be drawn as boxes). The first CJK font found is registered under Kivy's default
font name, so every Label, Button and TextInput uses it without naming it.

Looked for, in order: CITYLOOP_FIELD_FONT, a font shipped in fieldapp/fonts/, Debian's
fonts-wqy-microhei (installed by `make setup`), Noto CJK, and Android's system CJK font."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CANDIDATES", "find_cjk_font", "register_cjk_font"]

CANDIDATES = (
    str(Path(__file__).resolve().parents[1] / "fonts" / "wqy-microhei.ttc"),
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/system/fonts/NotoSansCJK-Regular.ttc",
    "/system/fonts/NotoSansSC-Regular.otf",
    "/system/fonts/DroidSansFallback.ttf",
)


def find_cjk_font() -> str | None:
    configured = os.environ.get("CITYLOOP_FIELD_FONT")
    for path in ([configured] if configured else []) + list(CANDIDATES):
        if path and Path(path).is_file():
            return path
    return None


def register_cjk_font() -> str | None:
    """Make the CJK font Kivy's default; returns its path, or None when there is none (the app
    then warns on screen that Chinese cannot be shown)."""
    from kivy.core.text import DEFAULT_FONT, LabelBase
    path = find_cjk_font()
    if path is not None:
        LabelBase.register(DEFAULT_FONT, path, path, path, path)
    return path
