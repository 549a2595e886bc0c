"""The app shell: it starts in a real window, switches language with a touch, and draws
Chinese with real glyphs (Kivy's own Roboto has none and draws boxes)."""
from __future__ import annotations

from kivy.core.text import Label as CoreLabel

from fieldapp import i18n
from fieldapp.ui.fonts import find_cjk_font


def glyph_pixels(text: str, font: str | None = None) -> bytes:
    label = CoreLabel(text=text, font_size=40, **({"font_name": font} if font else {}))
    label.refresh()
    return bytes(label.texture.pixels)


def test_the_cjk_font_draws_real_glyphs_not_boxes(start_app):
    d = start_app()
    assert d.app.font_path and d.app.font_path == find_cjk_font(), "no CJK font registered"
    # With the default font (now the CJK one) distinct characters give distinct pictures,
    # and none looks like a character no font has (the "tofu" box).
    tofu = glyph_pixels("\U000f0001")
    pictures = {ch: glyph_pixels(ch) for ch in "我的待办燃气检查打卡同步"}
    assert len(set(pictures.values())) == len(pictures), "some Chinese characters render identically (boxes?)"
    assert tofu not in pictures.values()
    # The check itself can fail: Roboto, Kivy's own font, draws these as identical boxes.
    from kivy.resources import resource_find
    roboto = resource_find("data/fonts/Roboto-Regular.ttf")
    assert glyph_pixels("我", roboto) == glyph_pixels("的", roboto)


def test_the_language_switches_with_a_touch_and_screens_follow(start_app):
    d = start_app()
    d.until(lambda: d.app.sm.current == "pair", what="the first screen (not paired yet)")
    d.app.go("settings")
    assert d.app.lang == "zh" and d.by_text("设置")
    d.screenshot("settings-zh")
    d.tap(d.app.root.ids.lang_button)
    assert d.app.lang == "en" and i18n.language() == "en"
    assert d.by_text("Settings") and d.by_text("Language")
    d.screenshot("settings-en")
    d.tap(d.screen.ids.zh)
    assert d.app.lang == "zh" and d.by_text("语言")


def test_the_language_chosen_is_kept_across_restarts(start_app, field_data):
    d = start_app()
    d.tap(d.app.root.ids.lang_button)
    assert d.app.lang == "en"
    d.stop()
    again = start_app()
    assert again.app.lang == "en" and again.by_text("Pair this tablet")


def test_no_two_kv_files_style_the_same_class():
    """kv rules are global by class name: two files with a <Name> rule both apply to every
    Name, the bug that made the form's photo thumbnails take the review panel's rule."""
    import re
    from collections import Counter
    from pathlib import Path

    import fieldapp
    rules: Counter = Counter()
    for kv in Path(fieldapp.__file__).parent.rglob("*.kv"):
        for names in re.findall(r"^<([^>]+)>:", kv.read_text(), flags=re.M):
            rules.update(n.split("@")[0].strip() for n in names.split(","))
    assert rules, "no kv rules found"
    assert [name for name, n in rules.items() if n > 1] == []
