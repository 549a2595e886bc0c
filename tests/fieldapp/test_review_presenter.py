"""The reviewer's before/after photos: fetched from a real server with the tablet's device
token, verified, cached for offline viewing, and presented side by side."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fieldapp.orders import OrderError, OrderPhotos
from fieldapp.presenters import review
from tests.fieldapp.orderserver import app, order_server  # noqa: F401  (fixtures)


def test_before_and_after_photos_from_the_server_side_by_side(order_server, tmp_path):  # noqa: F811
    o = order_server
    view = OrderPhotos(o.url, o.device_token, tmp_path / "cache").fetch(o.number)
    assert view.online and view.state == "ok" and view.order["number"] == o.number
    shown = review.compare(view, None, "en")
    assert sorted(p["sha256"] for p in shown["before"]) == sorted(o.before)
    assert [p["sha256"] for p in shown["after"]] == o.after
    for p in shown["before"] + shown["after"]:
        assert hashlib.sha256(Path(p["path"]).read_bytes()).hexdigest() == p["sha256"], "cached bytes verified"
    assert shown["message"] == "" and shown["before_count"] == "2 photos" and shown["after_count"] == "1 photo"
    assert shown["before"][0]["caption"] == "Evidence" and shown["after"][0]["caption"] == "After"
    zh = review.compare(view, None, "zh")
    assert (zh["before_title"], zh["before_hint"]) == ("整改前", "上报时的证据照片")
    assert zh["after_hint"] == "责任单位的整改照片" and zh["after"][0]["caption"] == "整改后"


def test_after_photos_in_the_tasks_form_data_join_the_after_side(order_server, tmp_path):  # noqa: F811
    o = order_server
    view = OrderPhotos(o.url, o.device_token, tmp_path / "cache").fetch(o.number)
    pending = "ab" * 32
    task = {"id": "t1", "data": {"after_photos": [o.after[0], pending]}}
    shown = review.compare(view, task, "en")
    assert [p["sha256"] for p in shown["after"]] == [o.after[0], pending], "no photo twice"
    assert shown["after"][1]["path"] is None and shown["after"][1]["problem"] == "Not on the server yet"


def test_offline_the_cache_is_shown_and_a_damaged_copy_is_not(order_server, tmp_path):  # noqa: F811
    o = order_server
    cache = tmp_path / "cache"
    OrderPhotos(o.url, o.device_token, cache).fetch(o.number)
    damaged = next((cache / "photos").glob(f"{o.before[1]}.*"))
    kept = next(sha for sha in o.before if sha != o.before[1])
    damaged.write_bytes(damaged.read_bytes()[:-10] + b"0123456789")
    o.live.stop()                                     # the tablet loses the server
    view = OrderPhotos(o.url, o.device_token, cache).fetch(o.number)
    assert not view.online and view.state == "cached"
    shown = review.compare(view, None, "en")
    assert shown["message"] == "Offline: showing the photos saved last time."
    before = {p["sha256"]: p for p in shown["before"]}
    assert before[kept]["path"] and shown["after"][0]["path"]
    assert before[o.before[1]]["path"] is None and before[o.before[1]]["problem"] == "Available once online"
    assert not damaged.exists(), "a copy whose bytes are not its sha256 is dropped"


def test_offline_without_a_cache_says_photos_come_once_online(order_server, tmp_path):  # noqa: F811
    o = order_server
    o.live.stop()
    view = OrderPhotos(o.url, o.device_token, tmp_path / "empty").fetch(o.number)
    assert view.state == "offline_no_cache" and view.order is None
    for lang, text in (("en", "Offline: photos available once online."), ("zh", "当前离线，联网后即可查看照片。")):
        shown = review.compare(view, None, lang)
        assert shown["message"] == text and shown["before"] == shown["after"] == []
        assert shown["before_empty"] == shown["after_empty"] == shown["before_count"] == "", "no guess of 'none'"
    not_paired = OrderPhotos(None, None, tmp_path / "empty").fetch(o.number)
    assert not_paired.state == "offline_no_cache"


def test_an_order_the_person_may_not_see_is_a_clear_error(order_server, tmp_path):  # noqa: F811
    o = order_server
    with pytest.raises(OrderError) as refused:
        OrderPhotos(o.url, o.device_token, tmp_path / "cache").fetch("WO-NOPE-1")
    assert refused.value.status == 404
    with pytest.raises(OrderError):
        OrderPhotos(o.url, o.device_token, tmp_path / "cache").fetch("../../etc/passwd")
    with pytest.raises(OrderError) as revoked:
        OrderPhotos(o.url, "dev_not-a-token", tmp_path / "cache").fetch(o.number)
    assert revoked.value.status == 401
