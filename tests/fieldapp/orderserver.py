"""A real HTTP server (the in-process app under uvicorn, tests/devices/conftest.py LiveServer)
with a work order that has before photos (the report's evidence) and after photos (the unit's),
and a tablet paired to the reviewer: what the reviewer's tablet fetches."""
from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx
import pytest
from PIL import Image, ImageDraw

from devices.pairing import pair
from engine.auth import service
from engine.domain.models import Staff
from engine.storage import AttachmentStore
from tests.api.conftest import ACCOUNTS, app, bearer  # noqa: F401  (app: a fixture)
from tests.devices.conftest import LiveServer

__all__ = ["OrderOnServer", "order_server", "picture", "rectified"]


def picture(label: str, colour: tuple[int, int, int], size=(480, 360)) -> bytes:
    """A PNG that looks like something: a coloured scene with a label."""
    img = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(img)
    for i in range(0, size[0], 40):
        draw.rectangle((i, size[1] - 80 - (i * 7) % 90, i + 30, size[1] - 20), fill=(60, 60, 60))
    draw.text((20, 20), label, fill=(255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class OrderOnServer:
    live: LiveServer
    number: str
    device_token: str        # a tablet paired to reviewer1
    tokens: dict
    before: list[str]        # sha256s linked as evidence
    after: list[str]         # sha256s linked as after

    @property
    def url(self) -> str:
        return self.live.url


def upload(url: str, token: str, number: str, data: bytes, kind: str) -> str:
    r = httpx.post(f"{url}/api/v1/work-orders/{number}/attachments", files={"file": ("p.png", data, "image/png")},
                   data={"kind": kind}, headers=bearer(token), timeout=30)
    assert r.status_code == 201, r.text
    return r.json()["sha256"]


@pytest.fixture
def order_server(app, clock, system, tmp_path):  # noqa: F811
    clock.set(datetime.now(timezone.utc).replace(microsecond=0))
    app.state.attachments = AttachmentStore(tmp_path / "attachments")
    with system.transaction() as s:
        toks = {role: service.issue_token(s, s.get(Staff, sid), system.clock()) for role, (sid, _) in ACCOUNTS.items()}
    live = LiveServer(app).start()
    try:
        url = live.url
        report = {"category": "exposed_garbage", "area": "dongcheng", "description": "bags by the bins",
                  "address_code": "DC01-001"}
        r = httpx.post(f"{url}/api/v1/work-orders", json=report, headers=bearer(toks["dispatcher"]), timeout=30)
        assert r.status_code == 201, r.text
        number = r.json()["number"]
        before = [upload(url, toks["dispatcher"], number, picture("before 1", (150, 60, 40)), "evidence"),
                  upload(url, toks["dispatcher"], number, picture("before 2", (160, 90, 30)), "evidence")]
        after = [upload(url, toks["unit_worker"], number, picture("after 1", (40, 120, 70)), "after")]
        dev = httpx.post(f"{url}/api/v1/devices", json={"name": "review tablet", "kind": "tablet",
                                                        "owner_id": "reviewer1"},
                         headers=bearer(toks["admin"]), timeout=30)
        assert dev.status_code == 201, dev.text
        token = pair(url, dev.json()["id"], dev.json()["pairing_code"])
        yield OrderOnServer(live, number, token, toks, before, after)
    finally:
        live.stop()


def rectified(system, o: OrderOnServer) -> dict:
    """The unit reports the order fixed with its after photo: the order waits for review.
    Returns the reviewer's open review task, as the server holds it."""
    from tests.district import REVIEWER, WORKER_EAST, only_task
    rectify = only_task(system, WORKER_EAST, o.number)
    system.complete(rectify["id"], WORKER_EAST, {"action": "fixed", "after_photos": list(o.after)})
    return only_task(system, REVIEWER, o.number)
