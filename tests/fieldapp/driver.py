"""Drive the real Kivy app: frames, touches on widgets, typing, waiting, screenshots.

Screenshots go to test-artifacts/fieldapp/<name>.png at the top of the checkout (kept out of
git); open them to see the screens."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterator

from kivy.base import EventLoop
from kivy.core.window import Window
from kivy.tests.common import UnitTestTouch
from kivy.uix.widget import Widget

from fieldapp.config import FieldConfig

__all__ = ["ARTIFACTS", "Driver", "make_config"]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "fieldapp"


def make_config(data_dir, **overrides) -> FieldConfig:
    values = dict(data_dir=Path(data_dir), lang="zh", sync_interval=3600.0, discovery_timeout=2.0,
                  discovery_interfaces=["127.0.0.1"], window_size=(1280, 800))
    values.update(overrides)
    return FieldConfig(**values)


class Driver:
    def __init__(self, app):
        self.app = app
        self.running = False

    def start(self) -> "Driver":
        self.app._run_prepare()          # Kivy's App.run without its endless loop: the test pumps frames
        self.running = True
        self.pump(3)
        return self

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.app.stop()
            self.pump(2)

    # ---- time -------------------------------------------------------------------------------------
    def pump(self, frames: int = 1) -> None:
        for _ in range(frames):
            EventLoop.idle()

    def until(self, predicate: Callable[[], object], timeout: float = 20.0, what: str = "") -> object:
        """Run frames until predicate() is truthy (returns it); fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
            EventLoop.idle()
            time.sleep(0.005)

    # ---- finding widgets ---------------------------------------------------------------------------
    @property
    def screen(self):
        return self.app.sm.current_screen

    def walk(self, root: Widget | None = None) -> Iterator[Widget]:
        yield from (root or self.app.root).walk(restrict=True)

    def by_text(self, text: str, root: Widget | None = None, kind: type | None = None) -> Widget:
        found = [w for w in self.walk(root)
                 if getattr(w, "text", None) == text and (kind is None or isinstance(w, kind))]
        assert found, f"no widget shows {text!r} on screen {self.app.sm.current!r}"
        return found[0]

    def texts(self, root: Widget | None = None) -> list[str]:
        return [w.text for w in self.walk(root) if isinstance(getattr(w, "text", None), str) and w.text]

    # ---- input ---------------------------------------------------------------------------------------
    def tap(self, widget: Widget, frames: int = 2) -> None:
        """A real touch at the widget's centre, in window coordinates."""
        self.pump(2)                     # let the layout settle: a screen just shown still moves its widgets
        assert widget.get_root_window() is not None, f"{widget} is not on screen"
        x, y = widget.to_window(*widget.center)
        touch = UnitTestTouch(x, y)
        touch.touch_down()
        self.pump(1)
        touch.touch_up()
        self.pump(frames)

    def type_into(self, text_input: Widget, text: str, replace: bool = True) -> None:
        """Focus the field with a touch, then type as the keyboard would."""
        self.tap(text_input)
        assert text_input.focus, f"{text_input} did not take the focus"
        if replace:
            text_input.select_all()
            text_input.delete_selection()
        text_input.insert_text(text)
        self.pump(2)

    def scroll_to(self, widget: Widget) -> None:
        """Bring a widget inside a ScrollView into view."""
        parent = widget.parent
        while parent is not None and not hasattr(parent, "scroll_to"):
            parent = parent.parent
        if parent is not None:
            parent.scroll_to(widget, padding=20, animate=False)
            self.pump(2)

    # ---- pictures --------------------------------------------------------------------------------------
    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.pump(3)
        path = ARTIFACTS / f"{name}.png"
        written = Window.screenshot(name=str(ARTIFACTS / f".{name}.png"))   # Kivy adds a counter to the name
        Path(written).replace(path)
        assert path.is_file() and path.stat().st_size > 1000, f"no screenshot at {path}"
        return path
