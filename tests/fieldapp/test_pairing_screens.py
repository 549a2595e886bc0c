"""Pairing and signing in by touch, against a real server: the server advertised on the LAN
(loopback here) is listed, a wrong code is said plainly, the owner signs in, another person is
refused, and a tablet revoked on the server is signed out with its unsent work kept and sent,
once, after it is paired again."""
from __future__ import annotations

import uuid

from sqlmodel import Session, select

from fieldapp import session
from fieldapp.store import LocalStore
from sync.discovery import Advertiser
from sync.server.models import SyncOp
from tests.fieldapp.conftest import PASSWORD, TABLET_OWNER, register_tablet, revoke_tablet
from tests.fieldapp.driver import make_config
from tests.sync.syncing import east_order


def on_screen(d, name: str) -> None:
    d.until(lambda: d.app.sm.current == name, what=f"the {name} screen")
    d.pump(3)                       # its layout settles (the message line may have opened above it)


def server_button(d, address: str):
    return next((b for b in d.screen.ids.servers.children if b.address == address), None)


def test_a_server_found_on_the_lan_is_tapped_paired_by_touch_and_the_owner_signs_in(start_app, field_server,
                                                                                    system):
    device_id, code = register_tablet(system)
    ad = Advertiser(field_server.port, interfaces=["127.0.0.1"], server=uuid.uuid4().hex[:12]).start()
    try:
        # The app browses for discovery_timeout seconds, once: on a loaded machine an answer can take
        # longer than the 2 s the other tests use, so this one browses as long as it waits.
        d = start_app(discovery_timeout=10.0)
        d.until(lambda: d.app.sm.current == "pair", what="the pair screen first")
        d.until(lambda: server_button(d, field_server.url), timeout=10, what="our server listed")
    finally:
        ad.close()
    d.until(lambda: not d.screen._searching, what="the search to end")
    button = server_button(d, field_server.url)
    assert d.screen.ids.search_progress.value == 100 and "找到" in d.screen.ids.search_state.text
    d.screen.ids.address.text = ""
    d.tap(button)
    assert d.screen.ids.address.text == field_server.url and button.state == "down"
    # a wrong code: said on screen, nothing kept
    d.type_into(d.screen.ids.device, device_id)
    d.type_into(d.screen.ids.code, f"{(int(code) + 1) % 10**8:08d}")
    d.tap(d.screen.ids.submit)
    d.until(lambda: "配对码错误" in d.screen.ids.status.text, what="the wrong-code message")
    assert d.app.sm.current == "pair" and not d.app.field_config.token_path.exists()
    d.screenshot("pair-zh")
    d.tap(d.app.root.ids.lang_button)
    assert "wrong, already used or expired" in d.screen.ids.status.text and d.by_text("Pair this tablet")
    d.screenshot("pair-en")
    d.tap(d.app.root.ids.lang_button)
    # the right code: on to signing in
    d.type_into(d.screen.ids.code, code)
    d.tap(d.screen.ids.submit)
    on_screen(d, "login")
    assert d.app.store.get("pairing") == {"server": field_server.url, "device_id": device_id}
    # someone else: refused, naming the owner
    d.type_into(d.screen.ids.username, "deliverer1")
    d.type_into(d.screen.ids.password, PASSWORD)
    d.tap(d.screen.ids.submit)
    d.until(lambda: f"此平板登记给 {TABLET_OWNER} 使用" in d.screen.ids.status.text, what="the not-the-owner refusal")
    assert d.app.store.get("session") is None and d.app.sm.current == "login"
    d.screenshot("login-zh")
    d.tap(d.app.root.ids.lang_button)
    assert f"This tablet is registered to {TABLET_OWNER}" in d.screen.ids.status.text
    d.screenshot("login-en")
    # the owner: signed in, on to the next screen (tasks when another helper's screen is there)
    d.type_into(d.screen.ids.username, TABLET_OWNER)
    d.type_into(d.screen.ids.password, PASSWORD)
    d.tap(d.screen.ids.submit)
    expected = "tasks" if d.app.sm.has_screen("tasks") else "settings"
    d.until(lambda: d.app.sm.current == expected, what="the screen after signing in")
    assert d.app.store.get("session")["user"]["id"] == TABLET_OWNER
    if expected == "settings":
        assert d.screen.ids.user.text == f"{TABLET_OWNER} (unit_worker)" and d.screen.ids.device.text == device_id
        d.screenshot("settings-signed-in-en")
        d.tap(d.app.root.ids.lang_button)
        assert d.by_text("退出登录")
        d.screenshot("settings-signed-in-zh")


def test_sign_out_in_settings_keeps_the_token_and_the_outbox(start_app, field_server, system, field_data):
    config = make_config(field_data)
    store = LocalStore(config.store_path)
    device_id, code = register_tablet(system)
    session.pair(config, store, field_server.url, device_id, code)
    session.sign_in(config, store, TABLET_OWNER, PASSWORD)
    store.close()
    d = start_app()
    d.until(lambda: d.app.syncer.rounds >= 1, what="the first sync")
    d.app.outbox.add("comment", {"work_order": "WO-none", "text": "kept"})
    d.app.go("settings")
    d.tap(d.screen.ids.sign_out)
    d.until(lambda: d.app.sm.current == "login", what="the login screen after signing out")
    assert d.app.store.get("session") is None and config.token_path.exists()
    assert len(d.app.outbox.unsettled()) == 1 and "1 条" in d.app.message


def test_a_paired_tablet_opens_on_login_and_signing_in_offline_says_why(start_app, field_server, system,
                                                                        field_data):
    config = make_config(field_data)
    store = LocalStore(config.store_path)
    device_id, code = register_tablet(system)
    session.pair(config, store, field_server.url, device_id, code)
    store.close()
    field_server.stop()                                    # no network now
    d = start_app()
    on_screen(d, "login")
    assert device_id in d.screen.ids.where.text
    d.type_into(d.screen.ids.username, TABLET_OWNER)
    d.type_into(d.screen.ids.password, "a password")
    d.tap(d.screen.ids.submit)
    d.until(lambda: "登录需要连接服务器" in d.screen.ids.status.text, timeout=30, what="the offline message")
    assert "无法连接服务器" in d.screen.ids.status.text and d.app.store.get("session") is None
    assert not d.screen.ids.submit.disabled and d.screen.ids.password.text == ""
    d.tap(d.app.root.ids.lang_button)
    assert d.screen.ids.status.text.startswith("Signing in needs the server. Cannot reach the server")


def sync_ops(system, op_id: str) -> list[SyncOp]:
    with Session(system.db) as s:
        return list(s.exec(select(SyncOp).where(SyncOp.op_id == op_id)))


def test_a_revoked_tablet_is_signed_out_keeps_its_work_and_sends_it_once_after_pairing_again(
        start_app, field_server, system, field_data):
    config = make_config(field_data)
    store = LocalStore(config.store_path)
    old_id, code = register_tablet(system)
    session.pair(config, store, field_server.url, old_id, code)
    session.sign_in(config, store, TABLET_OWNER, PASSWORD)
    store.close()
    number = east_order(system)
    d = start_app()
    d.until(lambda: d.app.syncer.rounds >= 1 and d.app.online, what="the first sync")
    op_id = d.app.outbox.add("comment", {"work_order": number, "text": "made before the revocation"})
    d.app.syncer.refresh()
    revoke_tablet(system, old_id)
    d.tap(d.app.root.ids.sync_status)                      # the top bar's status opens the sync screen
    assert d.app.sm.current == "sync"
    d.tap(d.screen.ids.sync_now)
    d.until(lambda: d.app.sm.current == "pair", what="the pair screen after the revocation")
    revoked = d.screen.ids.revoked.text
    assert "此平板已被管理员吊销" in revoked and "1 条记录（备注 1 条）" in revoked
    assert d.app.store.get("session") is None and not config.token_path.exists()
    assert [o["op_id"] for o in d.app.outbox.unsettled()] == [op_id] and sync_ops(system, op_id) == []
    d.screenshot("pair-revoked-zh")
    d.tap(d.app.root.ids.lang_button)
    assert "revoked by an administrator" in d.screen.ids.revoked.text and "1 × comment" in d.screen.ids.revoked.text
    d.screenshot("pair-revoked-en")
    d.tap(d.app.root.ids.lang_button)
    # a new device for the same owner: paired and signed in by touch; the kept entry goes, once
    new_id, new_code = register_tablet(system, name="tablet again")
    assert d.screen.ids.address.text == field_server.url
    d.type_into(d.screen.ids.device, new_id)
    d.type_into(d.screen.ids.code, new_code)
    d.tap(d.screen.ids.submit)
    on_screen(d, "login")
    d.type_into(d.screen.ids.username, TABLET_OWNER)
    d.type_into(d.screen.ids.password, PASSWORD)
    d.tap(d.screen.ids.submit)
    d.until(lambda: d.app.store.get("session") is not None, what="signed in again")
    assert not d.app.syncer.state.revoked
    d.until(lambda: d.app.outbox.unsettled() == [], timeout=30, what="the kept entry sent")
    rows = sync_ops(system, op_id)
    assert len(rows) == 1 and rows[0].verdict == "applied" and rows[0].actor == TABLET_OWNER
    d.app.syncer.sync_once()                               # sent again would be a duplicate, not a second comment
    assert len(sync_ops(system, op_id)) == 1 and d.app.outbox.op(op_id)["verdict"]["verdict"] == "applied"
    assert d.app.store.get("session")["device_id"] == new_id
    settle(d)


def settle(d) -> None:
    """Let the syncer finish and its posted state reach the UI before the app stops."""
    d.until(lambda: not d.app.syncer.state.running and not d.app.syncer.busy, what="the syncer idle")
    d.pump(3)
