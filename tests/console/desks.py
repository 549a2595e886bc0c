"""Orders made through the API for the dispatch and review desk tests: each test makes its
own, so the tests of a module (sharing one server) never fight over an order."""
from __future__ import annotations

import io

import httpx

from tests.console.conftest import api_token

__all__ = ["Api", "photo"]

WORKER = "worker.clean-east.1"   # exposed garbage in dongcheng goes to clean-east (dispatch_rules)


def photo(colour: tuple[int, int, int]) -> bytes:
    """A small JPEG of one colour (and a stripe, so before and after look different)."""
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (320, 240), colour)
    ImageDraw.Draw(img).rectangle((0, 100, 320, 140), fill=(255, 255, 255))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=70)
    return out.getvalue()


class Api:
    """The API as the demo accounts, for making orders and checking what the page did."""

    def __init__(self, server):
        self.server = server
        self.tokens: dict[str, str] = {}

    def call(self, user: str, method: str, path: str, **kw) -> httpx.Response:
        if user not in self.tokens:
            self.tokens[user] = api_token(self.server, user)
        r = httpx.request(method, self.server.base_url + path, headers={"Authorization": f"Bearer {self.tokens[user]}"},
                          timeout=30, **kw)
        assert r.status_code < 300, f"{method} {path} as {user}: {r.status_code} {r.text}"
        return r

    def get(self, path: str, user: str = "dispatcher1", **params):
        return self.call(user, "GET", path, params=params).json()

    def order(self, number: str) -> dict:
        return self.get(f"/api/v1/work-orders/{number}")

    def report(self, description: str, source: str = "citizen") -> str:
        """A new order at clean-east (exposed garbage in dongcheng), with a report photo."""
        body = {"category": "exposed_garbage", "area": "dongcheng", "description": description, "source": source}
        number = self.call("dispatcher1", "POST", "/api/v1/work-orders", json=body).json()["number"]
        self.upload(number, "dispatcher1", photo((120, 90, 60)), "report")
        return number

    def upload(self, number: str, user: str, data: bytes, kind: str) -> str:
        r = self.call(user, "POST", f"/api/v1/work-orders/{number}/attachments", data={"kind": kind},
                      files={"file": ("p.jpg", data, "image/jpeg")})
        return r.json()["sha256"]

    def task(self, number: str, user: str) -> dict:
        items = self.get("/api/v1/tasks", user, business_key=number)["items"]
        assert items, f"no open task of {number} for {user}"
        return items[0]

    def rectify(self, number: str, action: str) -> None:
        """The unit's worker answers Task_rectify: fixed (with an after photo) or not_ours."""
        task = self.task(number, WORKER)
        assert task["name"] == "Task_rectify", task
        if action == "fixed":
            sha = self.upload(number, WORKER, photo((40, 150, 70)), "after")
            data = {"action": "fixed", "after_photos": [sha], "note": "cleared"}
        else:
            data = {"action": "not_ours", "reason": "estate road: the property manager's job"}
        self.call(WORKER, "POST", f"/api/v1/tasks/{task['id']}/complete", json={"data": data})
