"""QR pictures for the tests: clean codes made with segno, and photo-like ones (a code small in
a large noisy picture, rotated, beside another code, saved as JPEG)."""
from __future__ import annotations

import io
from pathlib import Path

import segno
from PIL import Image, ImageDraw

__all__ = ["blank", "clean", "photo"]


def _code(text: str, scale: int) -> Image.Image:
    buf = io.BytesIO()
    segno.make_qr(text, error="m").save(buf, kind="png", scale=scale, border=4)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def clean(path: Path, text: str, scale: int = 8) -> Path:
    _code(text, scale).save(path)
    return path


def photo(path: Path, text: str, *, angle: float = 23, scale: int = 3, others: tuple[str, ...] = ()) -> Path:
    """A 3000x2000 'photo': diagonal stripes, our code rotated and small in one corner, other
    codes elsewhere, JPEG at quality 80."""
    bg = Image.new("RGB", (3000, 2000), (120, 110, 100))
    draw = ImageDraw.Draw(bg)
    for x in range(0, 3000, 60):
        draw.line((x, 0, x + 400, 2000), fill=(90, 80, 70), width=5)
    ours = _code(text, scale).rotate(angle, expand=True, fillcolor=(200, 190, 180), resample=Image.Resampling.BICUBIC)
    bg.paste(ours, (1700, 1200))
    for i, other in enumerate(others):
        bg.paste(_code(other, 5), (300 + 700 * i, 300))
    bg.save(path, quality=80)
    return path


def blank(path: Path) -> Path:
    img = Image.new("RGB", (1600, 1200), (235, 235, 230))
    ImageDraw.Draw(img).rectangle((300, 300, 900, 800), outline=(40, 40, 40), width=8)   # a door plate, no code
    img.save(path, quality=85)
    return path
