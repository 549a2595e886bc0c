"""A stand-in for the form screen ("form", another helper's work, not in this branch) with the
agreed surface: `show(**params)` as `app.go("form", ...)` calls it, a side panel `ids.side`, and
`add_listener(fn)` listeners called with the form's data after every edit (`edit(data)` here).
It records how it was opened, so tests see what the gas screen asked for."""
from __future__ import annotations

from kivy.lang import Builder

from fieldapp.ui.app import FieldScreen

__all__ = ["SCREEN", "StandInForm"]

SCREEN = ("form", "tests.fieldapp.standin:StandInForm")

Builder.load_string("""
<StandInForm>:
    BoxLayout:
        padding: dp(16)
        spacing: dp(16)
        Label:
            id: title
            color: 0.1, 0.1, 0.1, 1
            font_size: sp(22)
            text_size: self.size
            halign: 'left'
            valign: 'top'
        BoxLayout:
            id: side
            orientation: 'vertical'
            size_hint_x: 0.5
            spacing: dp(8)
            Widget:
                size_hint_y: 0.001      # keeps fixed-height panels at the top, gives stretching ones the room
""")


class StandInForm(FieldScreen):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.opened: list[dict] = []
        self.listeners: list = []

    def show(self, **params) -> None:
        if params:
            self.opened.append(params)
            self.listeners.clear()
            self.ids.title.text = params.get("title") or (params.get("task") or {}).get("title", "")

    def add_listener(self, fn) -> None:
        self.listeners.append(fn)

    def edit(self, data: dict) -> None:
        for fn in list(self.listeners):
            fn(data)
