"""Household address codes from QR pictures: a camera photo on a tablet, an image file on a
desktop. Plain Python (zxing-cpp and Pillow, no Kivy).

A photo of a door plate is rarely a clean code: it is rotated, small in a large picture, taken
at an angle, or shows several codes (the building's and the flat's, a meter's). Every code in
the picture is read; the one that is an address code of one of this deliverer's households
wins. What a code may carry: the bare code (`DC01-001-01`), `cityloop:address:<code>`, or a
link whose last path part or `code=` parameter is the code.

    result = find_household("/sdcard/DCIM/door.jpg", outbox.value("households") or [])
    if result.household is None:
        show(result.message("zh"))"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable
from urllib.parse import parse_qs, urlsplit

import zxingcpp
from PIL import Image, ImageOps, UnidentifiedImageError

from fieldapp import i18n

__all__ = ["QrProblem", "ScanResult", "address_code_of", "find_household", "read_codes"]

i18n.add({
    "qr.unreadable": ("无法打开这张图片：{error}", "This picture cannot be opened: {error}"),
    "qr.none": ("图片中没有找到二维码。请靠近门牌，对准二维码，光线充足时再拍一次。",
                "No QR code was found in the picture. Move closer to the door plate, aim at the code "
                "and take it again in good light."),
    "qr.not_address": ("二维码内容不是地址编码：{found}", "The QR code is not an address code: {found}"),
    "qr.not_mine": ("地址编码 {codes} 不是您负责的住户。请核对门牌，或请燃气办公室分配该住户。",
                    "Address code {codes} is not one of your households. Check the door plate, or ask the "
                    "gas office to assign this household to you."),
    "qr.found": ("已识别：{code}", "Recognised: {code}"),
})

_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")   # as AddressCode.code (at most 40 characters)
_PREFIX = "cityloop:address:"
_QR_FAMILY = zxingcpp.BarcodeFormat.QRCode | zxingcpp.BarcodeFormat.MicroQRCode | zxingcpp.BarcodeFormat.RMQRCode


class QrProblem(ValueError):
    """A picture that cannot be read as an image at all."""


@dataclass(frozen=True)
class ScanResult:
    household: dict | None            # the deliverer's household the picture shows, if any
    code: str | None                  # its address code (or the first address code seen)
    texts: list[str] = field(default_factory=list)    # every code's text in the picture
    problem: str | None = None        # i18n key of what went wrong: qr.unreadable | qr.none | ...
    error: str = ""

    def message(self, lang: str | None = None) -> str:
        if self.problem is None:
            return i18n.t("qr.found", lang, code=self.code or "")
        codes = [c for c in (address_code_of(t) for t in self.texts) if c]
        return i18n.t(self.problem, lang, error=self.error, found=", ".join(t[:60] for t in self.texts),
                      codes=", ".join(codes))


def address_code_of(text: str) -> str | None:
    """The address code a QR code's text carries, or None if it carries none."""
    text = (text or "").strip()
    if text.lower().startswith(_PREFIX):
        text = text[len(_PREFIX):]
    elif "://" in text:
        parts = urlsplit(text)
        query = parse_qs(parts.query).get("code")
        text = query[0] if query else parts.path.rstrip("/").rsplit("/", 1)[-1]
    return text.upper() if _CODE.match(text) else None


def _load(source) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    try:
        with Image.open(Path(source)) as img:
            img.load()
            return ImageOps.exif_transpose(img) or img    # phone photos carry their rotation in EXIF
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise QrProblem(str(exc)) from None


def _variants(img: Image.Image) -> Iterable[Image.Image]:
    """The picture as it is, then helped: greyscale with stretched contrast, then scaled so that
    a code that fills the picture or is tiny in a huge one falls into the reader's range."""
    gray = ImageOps.autocontrast(img.convert("L"))
    yield gray
    longest = max(gray.size)
    for target in (1600, 800, 2400):
        if abs(longest - target) > target // 4:
            scale = target / longest
            yield gray.resize((max(1, int(gray.width * scale)), max(1, int(gray.height * scale))),
                              Image.Resampling.LANCZOS)
    yield ImageOps.expand(gray, border=max(8, longest // 10), fill=255)   # a code cut at the edge


def read_codes(source) -> list[str]:
    """The text of every QR code in a picture (a path, or a PIL image), without repeats: every
    variant is read, as one variant may show a code another misses. Raises QrProblem when the
    file is not a readable image."""
    img = _load(source)
    texts: list[str] = []
    for variant in _variants(img):
        found = zxingcpp.read_barcodes(variant, formats=_QR_FAMILY, try_rotate=True, try_downscale=True)
        texts.extend(b.text for b in found if b.text)
    return list(dict.fromkeys(texts))


def find_household(source, households: Iterable[dict]) -> ScanResult:
    """Which of `households` (the deliverer's, as pulled) a picture's QR code names."""
    try:
        texts = read_codes(source)
    except QrProblem as exc:
        return ScanResult(None, None, [], "qr.unreadable", str(exc)[:200])
    if not texts:
        return ScanResult(None, None, [], "qr.none")
    by_code = {str(h.get("address_code", "")).upper(): h for h in households}
    codes = [c for c in (address_code_of(t) for t in texts) if c]
    for code in codes:
        if code in by_code:
            return ScanResult(by_code[code], by_code[code]["address_code"], texts)
    if not codes:
        return ScanResult(None, None, texts, "qr.not_address")
    return ScanResult(None, codes[0], texts, "qr.not_mine")
