"""Crew check-in: the cleaning supervisor chooses a crew and a shift, starts a scan, and
watches the roster fill in live as badges are heard (name, signal, verified / unverified /
late / flagged); flagged badges are listed with the reason; confirm puts the check-ins,
with their badge frames, in the outbox.

The scan is devices.scanner.BadgeScanner on the app's asyncio loop thread (app.bg.spawn);
its sightings and Bluetooth states are posted to the UI thread. Frames are verified by
fieldapp.presenters.checkin with the day's keys (fieldapp.badgekeys), fetched in a worker
thread when the tablet is signed in. "Bluetooth unavailable" is a state on the screen."""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone

from kivy.clock import Clock
from kivy.properties import BooleanProperty, ListProperty, NumericProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout

from devices.pairing import PairingFailed, load_token
from devices.platform import Location
from devices.scanner import BadgeScanner, BluetoothState, Sighting
from fieldapp import i18n
from fieldapp.badgekeys import BadgeKeys, KeysUnavailable
from fieldapp.presenters.checkin import CheckinRoster, crew_choices, shift_label
from fieldapp.ui.app import FieldScreen, load_kv

__all__ = ["CheckinRow", "CheckinScreen", "FlagRow", "STATUS_COLOURS"]

log = logging.getLogger("cityloop.fieldapp.checkin")

i18n.add({
    "checkin.title": ("班组打卡", "Crew check-in"),
    "checkin.crew": ("班组", "Crew"),
    "checkin.shift_label": ("班次", "Shift"),
    "checkin.no_crews": ("没有班组：请先联网同步，下载您的班组和班次", "No crews: sync once online to get your crews "
                                                          "and shifts"),
    "checkin.no_shifts": ("此班组近期没有班次", "This crew has no shift coming up"),
    "checkin.choose": ("请选择", "Choose"),
    "checkin.start": ("开始扫描", "Start scan"),
    "checkin.stop": ("停止扫描", "Stop scan"),
    "checkin.confirm": ("确认打卡", "Confirm check-ins"),
    "checkin.back": ("返回", "Back"),
    "checkin.counts": ("已到 {here}/{roster}", "Here {here}/{roster}"),
    "checkin.counts_detail": ("准时 {present} · 迟到 {late} · 未验证 {unverified} · 可疑 {flagged} · 未到 {expected}",
                              "on time {present} · late {late} · unverified {unverified} · flagged {flagged} · "
                              "expected {expected}"),
    "checkin.col_name": ("姓名", "Name"),
    "checkin.col_badge": ("工牌", "Badge"),
    "checkin.col_signal": ("信号", "Signal"),
    "checkin.col_status": ("状态", "Status"),
    "checkin.col_seen": ("最近", "Last seen"),
    "checkin.flags_title": ("可疑工牌（不计入出勤）", "Flagged badges (not counted)"),
    "checkin.no_flags": ("暂无可疑工牌", "No flagged badges"),
    "checkin.unknown_holder": ("名单外", "not on roster"),
    "checkin.saved": ("已保存 {n} 条打卡，将在联网时发送", "{n} check-ins saved; they are sent when online"),
    "checkin.nothing_new": ("没有新的打卡需要确认", "No new check-ins to confirm"),
    "checkin.save_failed": ("打卡未能保存：{error}", "The check-ins could not be saved: {error}"),
    "checkin.bt.off": ("蓝牙：未扫描", "Bluetooth: not scanning"),
    "checkin.bt.starting": ("蓝牙：正在启动…", "Bluetooth: starting…"),
    "checkin.bt.available": ("蓝牙：正在扫描", "Bluetooth: scanning"),
    "checkin.bt.no_bus": ("蓝牙不可用：没有系统 D-Bus", "Bluetooth unavailable: no system D-Bus"),
    "checkin.bt.no_bluez": ("蓝牙不可用：蓝牙服务未运行",
                            "Bluetooth unavailable: the Bluetooth service is not running"),
    "checkin.bt.no_adapter": ("蓝牙不可用：没有蓝牙适配器", "Bluetooth unavailable: no Bluetooth adapter"),
    "checkin.bt.adapter_off": ("蓝牙已关闭，请打开蓝牙", "Bluetooth is turned off: turn it on"),
    "checkin.bt.denied": ("无权使用蓝牙：请在系统设置中允许", "Bluetooth access denied: allow it in the settings"),
    "checkin.bt.error": ("蓝牙错误：{detail}", "Bluetooth error: {detail}"),
    "checkin.bt.retrying": ("{text}（自动重试中）", "{text} (retrying)"),
})

STATUS_COLOURS = {   # text colour of the status, on the light background
    "expected": (0.4, 0.4, 0.4, 1), "present": (0.08, 0.5, 0.2, 1), "late": (0.75, 0.42, 0.0, 1),
    "unverified": (0.15, 0.35, 0.7, 1), "flagged": (0.75, 0.1, 0.1, 1),
}

KEY_RETRY_SECONDS = 120.0     # after a failed key fetch, a sync going online retries only this much later

load_kv(__file__)


class CheckinRow(BoxLayout):
    """One cleaner of the roster (a RecycleView row)."""
    cleaner = StringProperty("")
    badge = StringProperty("")
    status = StringProperty("expected")
    status_text = StringProperty("")
    rssi_text = StringProperty("")
    signal = NumericProperty(0)
    last_seen = StringProperty("")
    reason = StringProperty("")
    colour = ListProperty([0.4, 0.4, 0.4, 1])
    confirmed = BooleanProperty(False)


class FlagRow(BoxLayout):
    """One flagged badge with its reason (a RecycleView row)."""
    badge = StringProperty("")
    cleaner = StringProperty("")
    text = StringProperty("")
    rssi_text = StringProperty("")


class CheckinScreen(FieldScreen):
    scanning = BooleanProperty(False)
    bt_ok = BooleanProperty(True)
    confirming = BooleanProperty(False)
    bt_text = StringProperty("")
    keys_text = StringProperty("")
    window_text = StringProperty("")
    counts_text = StringProperty("")
    detail_text = StringProperty("")
    crew_values = ListProperty([])
    shift_values = ListProperty([])

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.roster: CheckinRoster | None = None
        self.crews: list[dict] = []
        self.crew: dict | None = None
        self.shift: dict | None = None
        self.bt_state: BluetoothState | None = None
        self.bt_detail = ""
        self.place: tuple[float, float] | None = None
        self._stop: asyncio.Event | None = None
        self._scan = None
        self._crew_keys: dict[str, dict[int, bytes]] = {}
        self._fetching, self._fetch_failed_at = False, float("-inf")
        self._redraw = Clock.create_trigger(lambda dt: self.refresh() if self.live else None)
        self.row_changed_at: dict[str, float] = {}     # badge -> monotonic time its row last changed status

    @property
    def live(self) -> bool:
        """False once the app has stopped: a sighting or state posted late is dropped."""
        app = self.app
        return app is not None and not app.bg.closed

    @property
    def keys(self) -> BadgeKeys:
        return BadgeKeys(self.app.store)

    # ---- choosing -----------------------------------------------------------------------------------
    def show(self, crew: str | None = None, shift: int | None = None, **params) -> None:
        self.crews = crew_choices(self.app.outbox.value("crews"))
        self.crew_values = [c["code"] for c in self.crews]
        code = crew or (self.crew or {}).get("code")
        chosen = next((c for c in self.crews if c["code"] == code), self.crews[0] if self.crews else None)
        self.choose_crew(chosen["code"] if chosen else None, shift)
        if self.app.platform is not None:
            self.app.bg.call(self.app.platform.location, done=self._located, failed=self._not_located)

    def _located(self, where: Location) -> None:
        if not self.live:
            return
        self.place = (where.lat, where.lon) if where.known else None
        if self.roster is not None:
            self.roster.place = self.place

    def _not_located(self, exc: BaseException) -> None:
        """No place: the far-away clone check is off; the others work without one."""
        log.warning("no location for the check-in (the far-away clone check is off): %r", exc)
        self.place = None

    def choose_crew(self, code: str | None, shift: int | None = None) -> None:
        self.crew = next((c for c in self.crews if c["code"] == code), None)
        shifts = (self.crew or {}).get("shifts") or []
        self.shift_values = [shift_label(s, self.app.lang) for s in shifts]
        chosen = next((s for s in shifts if s["id"] == shift), None) or self._current_shift(shifts)
        self.choose_shift(chosen["id"] if chosen else None)
        if self.crew is not None:
            self.fetch_keys()

    @staticmethod
    def _current_shift(shifts: list[dict]) -> dict | None:
        """The first shift whose check-in period has not ended (pulled shifts are in time order)."""
        now = datetime.now(timezone.utc)
        for s in shifts:
            if datetime.fromisoformat(s["grace_ends_at"]) >= now:
                return s
        return shifts[-1] if shifts else None

    def on_crew_text(self, text: str) -> None:
        if self.crew is None or text != self.crew["code"]:
            if any(c["code"] == text for c in self.crews):
                self.stop_scan()
                self.choose_crew(text)

    def on_shift_text(self, text: str) -> None:
        if self.shift is None or text != shift_label(self.shift, self.app.lang):
            self.choose_shift_label(text)

    def choose_shift_label(self, label: str) -> None:
        shifts = (self.crew or {}).get("shifts") or []
        found = next((s for s in shifts if shift_label(s, self.app.lang) == label), None)
        if found is not None:
            self.stop_scan()
            self.choose_shift(found["id"])

    def choose_shift(self, shift_id: int | None) -> None:
        shifts = (self.crew or {}).get("shifts") or []
        self.shift = next((s for s in shifts if s["id"] == shift_id), None)
        same = self.roster is not None and (self.roster.crew, self.roster.shift) == (self.crew, self.shift)
        if same:
            pass    # back on the screen for the same crew and shift: keep what was heard
        elif self.crew is not None and self.shift is not None:
            code = self.crew["code"]
            self._crew_keys = self.keys.crew_keys(code)     # read once, not at every sighting
            self.roster = CheckinRoster(self.crew, self.shift, lambda badge: self._crew_keys.get(badge, {}),
                                        skew_steps=self.keys.state(code).skew_steps, place=self.place,
                                        store=self.app.store)
        else:
            self.roster = None
        if not same:
            self.row_changed_at = {}
        self.refresh()

    # ---- keys ----------------------------------------------------------------------------------------
    def fetch_keys(self) -> None:
        """Renew the crew's keys in a worker thread when signed in (offline: keep what we have)."""
        session = self.app.store.get("session") or {}
        if not session.get("server") or self.crew is None or self._fetching:
            return
        code, config = self.crew["code"], self.app.field_config

        def fetch() -> int:
            return self.keys.fetch(session["server"], load_token(config.token_path), code)
        self._fetching = True
        self.app.bg.call(fetch, done=self._keys_fetched, failed=self._keys_failed)

    def _keys_fetched(self, n: int) -> None:
        self._fetching = False
        if self.crew is not None:
            self._crew_keys = self.keys.crew_keys(self.crew["code"])
        self.refresh()

    def sync_changed(self, state) -> None:
        """Back online with keys missing or out of date: fetch them again."""
        if (state.online and self.crew is not None and self.app.sm.current == self.name
                and time.monotonic() - self._fetch_failed_at > KEY_RETRY_SECONDS
                and not self.keys.state(self.crew["code"]).usable):
            self.fetch_keys()

    def _keys_failed(self, exc: BaseException) -> None:
        self._fetching, self._fetch_failed_at = False, time.monotonic()
        if not self.live:
            return
        if isinstance(exc, KeysUnavailable):
            log.info("badge keys: %s", exc)
            self.say(exc.key, **exc.values)
        elif isinstance(exc, PairingFailed):       # no device token: the message says so (both languages)
            log.info("badge keys: %s", exc)
            self.app.show_message(str(exc)[:300])
        else:
            self.app.show_error(exc)
        self.refresh()

    # ---- scanning -----------------------------------------------------------------------------------------
    def toggle_scan(self) -> None:
        if self.scanning:
            self.stop_scan()
        else:
            self.start_scan()

    def start_scan(self) -> None:
        if self.scanning:
            return
        post = self.app.bg.post
        scanner = BadgeScanner(lambda s: post(lambda: self._sighting(s)),
                               on_state=lambda state, detail: post(lambda: self._bt(state, detail)))
        self._stop = stop = asyncio.Event()
        self.scanning, self.bt_state, self.bt_detail = True, BluetoothState.STARTING, ""
        self._scan = self.app.bg.spawn(scanner.run(stop), done=lambda _: self._scan_ended(),
                                       failed=self._scan_failed)
        self.refresh()

    def stop_scan(self) -> None:
        stop, self._stop = self._stop, None
        if stop is not None:
            self.app.bg.loop.call_soon_threadsafe(stop.set)
        self.scanning = False
        self.bt_state = None
        self.refresh()

    def _scan_ended(self) -> None:
        if self._stop is None and self.live:
            self.scanning = False
            self.refresh()

    def _scan_failed(self, exc: BaseException) -> None:
        if not self.live:       # (a property change re-runs kv rules that need the running app)
            return
        self.scanning, self._stop = False, None
        self.bt_state, self.bt_detail = BluetoothState.ERROR, f"{type(exc).__name__}: {exc}"[:160]
        log.error("badge scan failed", exc_info=exc)
        self.refresh()

    def _bt(self, state: BluetoothState, detail: str) -> None:
        if self.scanning and self.live:
            self.bt_state, self.bt_detail = state, detail
            self.refresh()

    def _sighting(self, s: Sighting) -> None:
        if self.roster is None or not self.scanning or not self.live:
            return
        before = self.roster.status_of(s.badge_id)
        if self.roster.add(s) is not None:
            if self.roster.status_of(s.badge_id) != before:
                self.row_changed_at[s.badge_id] = time.monotonic()
            self._redraw()

    def on_enter(self, *args) -> None:
        Clock.schedule_interval(self._tick, 15)     # the check-in window opens and closes with time

    def _tick(self, dt) -> None:
        self.refresh()

    def on_leave(self, *args) -> None:
        Clock.unschedule(self._tick)
        self.stop_scan()

    # ---- confirming ------------------------------------------------------------------------------------------
    def confirm(self) -> None:
        if self.roster is None or self.confirming:
            return
        roster = self.roster
        items = roster.to_confirm()
        if not items:
            self.say("checkin.nothing_new")
            return
        self.confirming = True
        gps = {"lat": self.place[0], "lon": self.place[1]} if self.place else None
        self.app.bg.call(roster.confirm, self.app.outbox, gps, items, done=self._confirmed,
                         failed=self._confirm_failed)

    def _confirmed(self, ops: list[str]) -> None:
        if not self.live:
            return
        self.confirming = False
        self.app.syncer.refresh()
        self.app.request_sync()
        self.say("checkin.saved", n=len(ops))
        self.refresh()

    def _confirm_failed(self, exc: BaseException) -> None:
        if not self.live:
            log.error("check-ins not saved (the app had stopped)", exc_info=exc)
            return
        self.confirming = False
        log.error("check-ins not saved", exc_info=exc)
        self.say("checkin.save_failed", 10, error=str(exc)[:200])
        self.refresh()

    # ---- drawing -------------------------------------------------------------------------------------------------
    def say(self, key: str, seconds: float = 6.0, **values) -> None:
        """A message in the app's message line that follows a language switch while shown."""
        self._said = (key, values)
        self.app.show_message(i18n.t(key, self.app.lang, **values), seconds)

    def language_changed(self) -> None:
        said = getattr(self, "_said", None)
        if said is not None and self.app.message in (i18n.t(said[0], lang, **said[1]) for lang in i18n.LANGUAGES):
            self.app.message = i18n.t(said[0], self.app.lang, **said[1])
        shifts = (self.crew or {}).get("shifts") or []
        self.shift_values = [shift_label(s, self.app.lang) for s in shifts]
        self.refresh()

    def bt_line(self) -> str:
        lang = self.app.lang
        if self.bt_state is None:
            return i18n.t("checkin.bt.off", lang)
        text = i18n.t(f"checkin.bt.{self.bt_state.value}", lang, detail=self.bt_detail[:120])
        if self.bt_state not in (BluetoothState.AVAILABLE, BluetoothState.STARTING):
            text = i18n.t("checkin.bt.retrying", lang, text=text)
        return text

    def refresh(self) -> None:
        if not self.live:
            return
        lang = self.app.lang
        ids = self.ids
        self.bt_text = self.bt_line()
        self.bt_ok = self.bt_state in (None, BluetoothState.STARTING, BluetoothState.AVAILABLE)
        ids.crew.text = (self.crew or {}).get("code") or i18n.t("checkin.choose", lang)
        ids.shift.text = shift_label(self.shift, lang) if self.shift else i18n.t("checkin.choose", lang)
        if not self.crews:
            self.keys_text = i18n.t("checkin.no_crews", lang)
        elif self.shift is None:
            self.keys_text = i18n.t("checkin.no_shifts", lang)
        else:
            self.keys_text = self.keys.state(self.crew["code"]).text(lang)
        self.window_text = self.roster.window_text(datetime.now(timezone.utc), lang) if self.roster else ""
        if self.roster is None:
            ids.roster.data, ids.flags.data = [], []
            self.counts_text, self.detail_text = "", ""
            return
        ids.roster.data = [{**row, "colour": list(STATUS_COLOURS[row["status"]])} for row in self.roster.rows(lang)]
        flags = self.roster.flags(lang)
        ids.flags.data = [{"badge": f["badge"], "cleaner": f["cleaner"] or i18n.t("checkin.unknown_holder", lang),
                           "text": f["text"], "rssi_text": f"{f['rssi']} dBm" if f["rssi"] is not None else ""}
                          for f in flags]
        ids.no_flags.opacity = 0 if flags else 1
        counts = self.roster.counts()
        self.counts_text = i18n.t("checkin.counts", lang, **counts)
        self.detail_text = i18n.t("checkin.counts_detail", lang, **counts)
