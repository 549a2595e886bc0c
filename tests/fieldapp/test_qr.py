"""Address codes from QR pictures: clean codes, photo-like ones (small, rotated, beside other
codes, JPEG), none at all, a picture that is no image, and a code of someone else's household."""
from __future__ import annotations

import pytest

from fieldapp.qr import address_code_of, find_household, read_codes
from tests.fieldapp import qrpics

MINE = [{"id": 1, "address_code": "DC01-001-01", "holder": "Holder 1"},
        {"id": 2, "address_code": "DC01-001-02", "holder": "Holder 2"}]


@pytest.mark.parametrize("text, code", [
    ("DC01-001-02", "DC01-001-02"), ("  dc01-001-02\n", "DC01-001-02"),
    ("cityloop:address:DC01-001-02", "DC01-001-02"), ("https://city.example/a/DC01-001-02", "DC01-001-02"),
    ("https://city.example/scan?code=DC01-001-02", "DC01-001-02"),
    ("hello world", None), ("", None), ("x" * 41, None),
])
def test_what_a_code_may_carry(text, code):
    assert address_code_of(text) == code


def test_a_clean_code_names_the_household(tmp_path):
    pic = qrpics.clean(tmp_path / "a.png", "DC01-001-02")
    result = find_household(pic, MINE)
    assert result.household == MINE[1] and result.problem is None
    assert result.message("en") == "Recognised: DC01-001-02"


@pytest.mark.parametrize("angle, scale", [(23, 3), (37, 4), (120, 6), (-8, 3)])
def test_a_photo_with_our_code_rotated_small_and_beside_another_code(tmp_path, angle, scale):
    pic = qrpics.photo(tmp_path / "door.jpg", "DC01-001-01", angle=angle, scale=scale, others=("WATER-METER-778",))
    assert set(read_codes(pic)) == {"DC01-001-01", "WATER-METER-778"}
    result = find_household(pic, MINE)
    assert result.household == MINE[0], result


def test_a_picture_without_a_code_says_so(tmp_path):
    result = find_household(qrpics.blank(tmp_path / "plate.jpg"), MINE)
    assert result.household is None and result.problem == "qr.none"
    assert "No QR code was found" in result.message("en") and "没有找到二维码" in result.message("zh")


def test_someone_elses_household_is_named_and_refused(tmp_path):
    result = find_household(qrpics.clean(tmp_path / "b.png", "DC09-404-01"), MINE)
    assert result.household is None and result.problem == "qr.not_mine" and result.code == "DC09-404-01"
    assert result.message("en").startswith("Address code DC09-404-01 is not one of your households")
    assert "DC09-404-01 不是您负责的住户" in result.message("zh")


def test_a_code_that_is_no_address_code(tmp_path):
    result = find_household(qrpics.clean(tmp_path / "c.png", "WIFI:S:cafe;T:WPA;P:secret secret;;"), MINE)
    assert result.problem == "qr.not_address" and "not an address code" in result.message("en")


def test_a_file_that_is_not_an_image(tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"not a picture at all")
    result = find_household(bad, MINE)
    assert result.problem == "qr.unreadable" and result.message("en").startswith("This picture cannot be opened")
    missing = find_household(tmp_path / "gone.png", MINE)
    assert missing.problem == "qr.unreadable"
