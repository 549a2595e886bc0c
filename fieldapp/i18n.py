"""UI text in Chinese (the default) and English, one registry for the whole app.

Each module adds its own strings under its own prefix at import time, so no file of
strings is shared by everyone:

    from fieldapp import i18n
    i18n.add({"tasks.title": ("我的待办", "My work"), "tasks.count": ("共 {n} 项", "{n} items")})
    i18n.t("tasks.count", n=3)          # in the current language
    i18n.t("tasks.count", "en", n=3)    # in a given one

Plain Python (no Kivy): presenters use it too. A key that is missing is shown as the key
itself (so a gap is visible on screen, never a crash); `missing()` lists those asked for."""
from __future__ import annotations

import threading
from typing import Callable

__all__ = ["LANGUAGES", "add", "both", "language", "missing", "on_change", "set_language", "t"]

LANGUAGES = ("zh", "en")
_strings: dict[str, tuple[str, str]] = {}
_missing: set[str] = set()
_listeners: list[Callable[[str], None]] = []
_state = {"lang": "zh"}
_lock = threading.Lock()


def add(strings: dict[str, tuple[str, str]]) -> None:
    """Register (zh, en) pairs. A key registered twice with other text is a programming error."""
    with _lock:
        for key, pair in strings.items():
            if len(pair) != 2 or not all(isinstance(s, str) and s for s in pair):
                raise ValueError(f"{key}: needs a (Chinese, English) pair of non-empty strings")
            old = _strings.get(key)
            if old is not None and old != pair:
                raise ValueError(f"{key}: registered twice with different text")
            _strings[key] = pair


def language() -> str:
    return _state["lang"]


def set_language(lang: str) -> None:
    if lang not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}, not {lang!r}")
    if lang != _state["lang"]:
        _state["lang"] = lang
        for listener in list(_listeners):
            listener(lang)


def on_change(listener: Callable[[str], None]) -> None:
    _listeners.append(listener)


def t(key: str, lang: str | None = None, /, **values) -> str:
    """The text for `key` in `lang` (default: the current language), formatted with values."""
    pair = _strings.get(key)
    if pair is None:
        _missing.add(key)
        return key
    text = pair[0] if (lang or _state["lang"]) == "zh" else pair[1]
    return text.format(**values) if values else text


def both(key: str, **values) -> str:
    """'English / 中文', for logs and messages that go to both kinds of reader."""
    return f"{t(key, 'en', **values)} / {t(key, 'zh', **values)}"


def missing() -> set[str]:
    return set(_missing)
