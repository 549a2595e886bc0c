"""What must happen before Kivy opens its window: Kivy reads its environment and the
window size once, at the first import of kivy.core.window. `prepare` is called by the
launcher and by the tests before anything imports the app."""
from __future__ import annotations

import os

__all__ = ["headless", "prepare"]


def headless(size: tuple[int, int] = (1280, 800)) -> None:
    """For tests and benchmarks: an offscreen window (no screen needed), Kivy's log through
    Python's logging, and a KIVY_HOME of its own (the user's Kivy config never read or
    written). Then `prepare`. Before anything imports Kivy."""
    import tempfile
    os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")
    os.environ["KIVY_LOG_MODE"] = "PYTHON"
    os.environ["KIVY_NO_FILELOG"] = "1"
    os.environ.setdefault("KIVY_HOME", tempfile.mkdtemp(prefix="kivy-home-"))
    prepare(size)


def prepare(size: tuple[int, int] = (1280, 800)) -> None:
    os.environ.setdefault("KIVY_NO_ARGS", "1")          # our command line is ours, not Kivy's
    from kivy.config import Config
    Config.set("graphics", "width", str(size[0]))
    Config.set("graphics", "height", str(size[1]))
    Config.set("input", "mouse", "mouse,multitouch_on_demand")   # no red dots on right clicks
    Config.set("kivy", "exit_on_escape", "0")            # Esc (Android back) must not quit with a form open
