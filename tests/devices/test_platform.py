"""Platform services on this (desktop Linux) machine: plyer is really asked first and has no
GPS, camera or notification backend here, so each service falls back and says which source
it used."""
from __future__ import annotations

import uuid

from devices.platform import Platform, parse_location


def test_location_falls_back_to_the_configured_place_and_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv("CITYLOOP_LOCATION", raising=False)
    nowhere = Platform(tmp_path, gps_timeout=0.1).location()
    assert (nowhere.source, nowhere.known) == ("none", False) and "GPS" in nowhere.message
    here = Platform(tmp_path, configured_location=(31.23, 121.47), gps_timeout=0.1).location()
    assert (here.lat, here.lon, here.source) == (31.23, 121.47, "configured") and "设置" in here.message
    monkeypatch.setenv("CITYLOOP_LOCATION", "31.5,121.9")
    assert Platform(tmp_path, gps_timeout=0.1).location().lat == 31.5
    assert parse_location("95,10") is None and parse_location("a,b") is None and parse_location("1,2,3") is None


def test_photo_falls_back_to_a_file_chooser(tmp_path, monkeypatch):
    picture = tmp_path / "after.jpg"
    picture.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    chosen = Platform(tmp_path, choose_file=lambda: str(picture)).photo("wo-1.jpg")
    assert (chosen.path, chosen.source) == (str(picture), "file_chooser") and "相机" in chosen.message
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))     # no zenity/kdialog/yad for plyer
    nothing = Platform(tmp_path).photo("wo-2.jpg")
    assert (nothing.path, nothing.source) == (None, "none")
    cancelled = Platform(tmp_path, choose_file=lambda: None).photo("wo-3.jpg")
    assert cancelled.source == "none"


def test_notification_falls_back_to_an_in_app_message(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))     # no notify-send
    platform = Platform(tmp_path)
    notice = platform.notify("Shift closed / 班次结束", "3 absent / 缺勤 3 人")
    assert notice.source == "in_app"
    assert list(platform.messages) == [notice]


def test_device_id_is_made_once_and_kept(tmp_path):
    first = Platform(tmp_path / "data").device_id()
    again = Platform(tmp_path / "data").device_id()
    assert first.source == "created" and again.source == "stored" and again.id == first.id
    assert uuid.UUID(first.id).version == 4
    (tmp_path / "data" / "device-id").write_text("garbage")
    replaced = Platform(tmp_path / "data").device_id()
    assert replaced.source == "created" and replaced.id != first.id
    assert Platform(tmp_path / "data").device_id().id == replaced.id
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["device-id"]
