"""Sync status and conflicts: online or offline, the last sync, what waits, photo problems, a
"sync now" button with progress, and every entry the server refused (kept there for a
supervisor) with what happened and what to do; each can be marked as seen."""
from __future__ import annotations

from kivy.factory import Factory
from kivy.metrics import dp

from fieldapp import i18n
from fieldapp.presenters.syncstatus import conflict_rows, photo_rows, status_rows
from fieldapp.ui.app import FieldScreen, load_kv

__all__ = ["SyncScreen"]

i18n.add({
    "syncscreen.title": ("同步", "Sync"),
    "syncscreen.now": ("立即同步", "Sync now"),
    "syncscreen.running": ("正在同步…", "Syncing…"),
    "syncscreen.photos_sent": ("正在上传照片 {sent}/{total} KB", "Uploading photos {sent}/{total} KB"),
    "syncscreen.done": ("同步完成：发送 {sent} 条，被拒 {refused} 条", "Synced: {sent} sent, {refused} refused"),
    "syncscreen.failed": ("同步未完成：{error}", "Sync did not finish: {error}"),
    "syncscreen.signed_out": ("未登录，无法同步", "Not signed in: cannot sync"),
    "syncscreen.conflicts": ("服务器退回的记录（未查看 {n} 条）", "Entries the server refused ({n} not seen)"),
    "syncscreen.no_conflicts": ("没有被退回的记录", "No refused entries"),
    "syncscreen.photos": ("照片问题", "Photo problems"),
    "syncscreen.no_photos": ("无", "None"),
    "syncscreen.happened": ("发生了什么：{text}", "What happened: {text}"),
    "syncscreen.todo": ("怎么办：{text}", "What to do: {text}"),
    "syncscreen.seen": ("标为已查看", "Mark as seen"),
    "syncscreen.was_seen": ("已查看", "Seen"),
    "syncscreen.photo_row": ("{entry}：{problem}", "{entry}: {problem}"),
})

load_kv(__file__)


class SyncScreen(FieldScreen):
    def on_kv_post(self, base_widget) -> None:
        self._outcome: tuple[str, dict] | None = None
        self._asked = False           # a "sync now" is under way (the syncer may not have started it yet)

    def show(self, **params) -> None:
        self.fill()

    def language_changed(self) -> None:
        self.fill()

    def sync_changed(self, state) -> None:
        if self.app is None:       # the app stopped meanwhile
            return
        if self.app.sm.current == self.name:
            self.fill()

    # ---- filling ----------------------------------------------------------------------------------
    def fill(self) -> None:
        app, lang = self.app, self.app.lang
        state = app.syncer.state
        grid = self.ids.status_rows
        grid.clear_widgets()
        for label, value in status_rows(state, lang):
            grid.add_widget(Factory.SyncCell(text=label, color=(0.35, 0.35, 0.35, 1), size_hint_x=None, width=dp(130)))
            grid.add_widget(Factory.SyncCell(text=value))
        self._fill_progress(state)
        self._fill_photos()
        self._fill_conflicts()

    def _fill_progress(self, state) -> None:
        lang = self.app.lang
        running = state.running or self._asked
        self.ids.sync_now.disabled = running
        if running:
            self.ids.progress.opacity = 1
            if state.progress:
                sent, total = state.progress
                self.ids.progress.value = 100.0 * sent / max(1, total)
                self.ids.outcome.text = i18n.t("syncscreen.photos_sent", lang, sent=sent // 1024, total=total // 1024)
            else:
                self.ids.progress.value = 50
                self.ids.outcome.text = i18n.t("syncscreen.running", lang)
            return
        self.ids.progress.opacity = 0
        self.ids.outcome.text = i18n.t(self._outcome[0], lang, **self._outcome[1]) if self._outcome else ""

    def _fill_photos(self) -> None:
        box = self.ids.photos
        box.clear_widgets()
        rows = photo_rows(self.app.syncer.photo_problems(), self.app.lang)
        for row in rows:
            text = i18n.t("syncscreen.photo_row", self.app.lang, entry=row["entry"], problem=row["problem"])
            text += f"\n{row['todo']}" if row["todo"] else ""
            box.add_widget(Factory.SyncCell(text=text, color=(0.55, 0.1, 0.1, 1)))
        if not rows:
            box.add_widget(Factory.SyncCell(text=i18n.t("syncscreen.no_photos", self.app.lang)))

    def _fill_conflicts(self) -> None:
        app, lang = self.app, self.app.lang
        seen = set(app.store.get("conflicts_seen", []))
        rows = conflict_rows(app.outbox.refused(), seen=seen, lang=lang)
        unseen = sum(1 for r in rows if not r["seen"])
        self.ids.conflicts_title.text = (i18n.t("syncscreen.conflicts", lang, n=unseen) if rows
                                         else i18n.t("syncscreen.no_conflicts", lang))
        box = self.ids.conflicts
        box.clear_widgets()
        for row in rows:
            card = Factory.SyncConflictCard()
            card.op_id = row["op_id"]
            card.seen = row["seen"]
            card.ids.title.text = f"{row['title']}   {row['when']}"
            card.ids.happened.text = i18n.t("syncscreen.happened", lang, text=row["happened"])
            todo = i18n.t("syncscreen.todo", lang, text=row["todo"])
            if row["errors"]:
                todo += "\n" + "\n".join(f"  • {e}" for e in row["errors"])
            card.ids.todo.text = todo
            card.ids.mark.text = i18n.t("syncscreen.was_seen" if row["seen"] else "syncscreen.seen", lang)
            card.ids.mark.disabled = row["seen"]
            card.ids.mark.bind(on_release=lambda b, op_id=row["op_id"]: self.mark_seen(op_id))
            box.add_widget(card)

    # ---- actions ------------------------------------------------------------------------------------
    def mark_seen(self, op_id: str) -> None:
        self.app.syncer.mark_seen(op_id)
        self._fill_conflicts()

    def sync_now(self) -> None:
        app = self.app
        if not app.store.get("session"):
            self._outcome = ("syncscreen.signed_out", {})
            self.fill()
            return
        self._outcome, self._asked = None, True
        self.ids.sync_now.disabled = True
        self.ids.progress.opacity = 1
        self.ids.outcome.text = i18n.t("syncscreen.running", app.lang)
        app.bg.call(app.syncer.sync_once, done=self._synced, failed=self._sync_failed)

    def _sync_failed(self, exc: BaseException) -> None:
        if self.app is None:       # the app stopped meanwhile
            return
        self._asked = False
        self.app.show_error(exc)
        self.fill()

    def _synced(self, result: dict | None) -> None:
        if self.app is None:       # the app stopped meanwhile
            return
        self._asked = False
        state = self.app.syncer.state
        if result is None:
            self._outcome = ("syncscreen.failed", {"error": (state.error or "")[:160]}) if state.signed_in \
                else ("syncscreen.signed_out", {})
        else:
            verdicts = result.get("verdicts", [])
            refused = sum(1 for v in verdicts if v.get("verdict") in ("conflict", "invalid", "mismatch"))
            self._outcome = ("syncscreen.done", {"sent": len(verdicts), "refused": refused})
        if self.app.sm.current == self.name:
            self.fill()
