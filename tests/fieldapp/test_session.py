"""fieldapp.session against a real server over HTTP (no Kivy): pairing, signing in and out,
and every refusal a person can meet, each with its message in both languages."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from devices.pairing import load_token
from fieldapp import session
from fieldapp.store import LocalStore
from sync.discovery import Advertiser
from tests.fieldapp.conftest import PASSWORD, TABLET_OWNER, register_tablet, revoke_tablet
from tests.fieldapp.driver import make_config
from tests.sync.servers import free_port


@pytest.fixture
def tablet(tmp_path):
    config = make_config(tmp_path / "tablet")
    store = LocalStore(config.store_path)
    yield config, store
    store.close()


def test_pair_then_sign_in_as_the_owner_and_out_again(field_server, system, tablet):
    config, store = tablet
    device_id, code = register_tablet(system)
    pairing = session.pair(config, store, f"127.0.0.1:{field_server.port}/", device_id, code)
    assert pairing == {"server": field_server.url, "device_id": device_id} == store.get("pairing")
    assert load_token(config.token_path).startswith("dev_")
    assert oct(config.token_path.stat().st_mode & 0o777) == "0o600"
    got = session.sign_in(config, store, TABLET_OWNER, PASSWORD)
    assert got == store.get("session")
    assert got["server"] == field_server.url and got["device_id"] == device_id
    assert (got["user"]["id"], got["user"]["role"], got["user"]["unit_code"]) == (TABLET_OWNER, "unit_worker",
                                                                                    "clean-east")
    session.sign_out(store)
    assert store.get("session") is None and store.get("pairing") == pairing
    assert load_token(config.token_path)                   # the token stays: the owner signs in again
    assert session.sign_in(config, store, TABLET_OWNER, PASSWORD)["user"]["id"] == TABLET_OWNER


def test_a_wrong_used_or_expired_code_is_refused_plainly(field_server, system, clock, tablet):
    config, store = tablet
    device_id, code = register_tablet(system)
    wrong = f"{(int(code) + 1) % 10**8:08d}"
    with pytest.raises(session.CodeRefused) as err:
        session.pair(config, store, field_server.url, device_id, wrong)
    assert "配对码错误" in err.value.text("zh") and "wrong, already used or expired" in err.value.text("en")
    assert not config.token_path.exists() and store.get("pairing") is None
    with pytest.raises(session.MissingInput) as short:
        session.pair(config, store, field_server.url, device_id, "1234")
    assert short.value.text("en") == "The pairing code has 8 digits"
    session.pair(config, store, field_server.url, device_id, code)
    with pytest.raises(session.CodeRefused):                 # used once already
        session.pair(config, store, field_server.url, device_id, code)
    late_id, late_code = register_tablet(system, name="late")
    clock.advance(minutes=16)
    with pytest.raises(session.CodeRefused):
        session.pair(config, store, field_server.url, late_id, late_code)


def test_a_revoked_device_an_unreachable_server_and_a_bad_address(field_server, system, tablet):
    config, store = tablet
    device_id, code = register_tablet(system)
    revoke_tablet(system, device_id)
    with pytest.raises(session.Revoked) as err:
        session.pair(config, store, field_server.url, device_id, code)
    assert "吊销" in err.value.text("zh") and "revoked" in err.value.text("en")
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(session.Unreachable) as down:
        session.pair(config, store, closed, device_id, code)
    assert closed in down.value.text("en") and "无法连接服务器" in down.value.text("zh")
    with pytest.raises(session.BadAddress):
        session.pair(config, store, "ftp://server", device_id, code)


def test_sign_in_refusals_wrong_password_locked_out_not_the_owner(field_server, system, tablet):
    config, store = tablet
    with pytest.raises(session.NotPaired):
        session.sign_in(config, store, TABLET_OWNER, PASSWORD)
    device_id, code = register_tablet(system)
    session.pair(config, store, field_server.url, device_id, code)
    with pytest.raises(session.NotOwner) as other:
        session.sign_in(config, store, "deliverer1", PASSWORD)
    assert other.value.text("en").startswith(f"This tablet is registered to {TABLET_OWNER}; deliverer1 cannot")
    assert f"此平板登记给 {TABLET_OWNER} 使用" in other.value.text("zh")
    assert store.get("session") is None
    for _ in range(5):
        with pytest.raises(session.WrongPassword) as wrong:
            session.sign_in(config, store, TABLET_OWNER, "not the password")
    assert wrong.value.text("zh") == "用户名或密码错误"
    with pytest.raises(session.LockedOut) as locked:
        session.sign_in(config, store, TABLET_OWNER, PASSWORD)
    assert 0 < locked.value.retry_after <= 15 * 60
    assert "登录失败次数过多" in locked.value.text("zh") and "min" in locked.value.text("en")
    assert store.get("session") is None


def test_signing_in_on_a_revoked_tablet_forgets_its_token(field_server, system, tablet):
    config, store = tablet
    device_id, code = register_tablet(system)
    session.pair(config, store, field_server.url, device_id, code)
    revoke_tablet(system, device_id)
    with pytest.raises(session.Revoked):
        session.sign_in(config, store, TABLET_OWNER, PASSWORD)
    assert not config.token_path.exists() and session.paired(config, store) is None
    assert store.get("revoked") == {"device_id": device_id}


def test_find_servers_reports_each_server_as_it_answers(tablet):
    config, _ = tablet
    port, sid = free_port(), uuid.uuid4().hex[:12]
    ad = Advertiser(port, interfaces=["127.0.0.1"], server=sid).start()
    try:
        seen: list[session.FoundServer] = []   # 8 s: time to answer on a loaded machine
        found = asyncio.run(session.find_servers(config, on_found=seen.append, timeout=8.0))
    finally:
        ad.close()
    mine = [s for s in found if s.server_id == sid]
    assert len(mine) == 1 and mine[0].address == f"http://127.0.0.1:{port}" and mine[0].compatible
    assert [s for s in seen if s.server_id == sid] == mine     # reported through on_found as well


def test_the_syncer_reports_photo_upload_progress_and_one_round_at_a_time(field_server, system, tablet):
    from fieldapp.background import Background
    from fieldapp.syncer import Syncer
    from sync.client import Outbox, outcome
    from tests.sync.syncing import east_order, photo, rectify_task
    config, store = tablet
    device_id, code = register_tablet(system)
    session.pair(config, store, field_server.url, device_id, code)
    session.sign_in(config, store, TABLET_OWNER, PASSWORD)
    task = rectify_task(system, east_order(system))
    outbox = Outbox(str(config.outbox_path), photo_dir=str(config.data_dir / "photos"))
    bg = Background()
    states = []
    syncer = Syncer(config, store, outbox, bg, on_state=states.append)
    try:
        pic = photo(7)
        outbox.add("complete_task", {"action": "fixed"}, task_id=task["id"], based_on_version=task["version"],
                   photos={"after_photos": [pic]})
        result = syncer.sync_once()
        assert [outcome(v) for v in result["verdicts"]] == ["applied"]      # waited for its photo, then applied
        shown = [s.progress for s in states if s.progress]
        assert shown and shown[-1] == (len(pic), len(pic)) and shown == sorted(shown)
        assert syncer.state.progress is None and syncer.state.waiting == 0 and not syncer.busy
    finally:
        bg.close()
        outbox.close()
