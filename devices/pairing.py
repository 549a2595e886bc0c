"""Pairing a gateway or tablet: exchange the one-time code an administrator got when
registering the device for the device's own token (`dev_...`), and keep it in a file only
this user can read."""
from __future__ import annotations

import os
from pathlib import Path

import httpx

__all__ = ["PairingFailed", "load_token", "pair", "save_token"]


class PairingFailed(RuntimeError):
    pass


def pair(server: str, device_id: str, code: str, timeout: float = 30) -> str:
    try:
        r = httpx.post(f"{server.rstrip('/')}/api/v1/auth/pair", json={"device_id": device_id, "code": code},
                       timeout=timeout)
    except httpx.HTTPError as exc:
        raise PairingFailed(f"cannot reach {server}: {exc} / 无法连接服务器") from None
    if r.status_code != 200:
        try:
            message = r.json().get("message") or r.text
        except ValueError:
            message = r.text
        raise PairingFailed(f"pairing refused (HTTP {r.status_code}): {message[:300]} / 配对被拒绝")
    return r.json()["access_token"]


def save_token(path: str | Path, value: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")


def load_token(path: str | Path) -> str:
    try:
        value = Path(path).read_text().strip()
    except OSError as exc:
        raise PairingFailed(f"cannot read the token file {path}: {exc.strerror} / 无法读取令牌文件") from None
    if not value:
        raise PairingFailed(f"the token file {path} is empty / 令牌文件为空")
    return value
