"""The web console: the built single-page app (console/dist, made by `make console`) served
at `/`, and the little it needs to know before it talks to the API like any other client.

The console is a front end of its own (console/: package.json, sources, browser tests); this
module only hands out its files. `index.html` is never cached (it names the current build's
assets); the assets carry a content hash in their names and are cached for a year. The page
runs under a Content-Security-Policy: scripts and styles only from this server, images also
from the configured tile server."""
from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, Field
from starlette.staticfiles import StaticFiles

from engine import settings
from engine.api.deps import allow
from engine.auth.service import Principal

__all__ = ["ConsoleConfig", "DEFAULT_DIR", "install", "router"]

log = logging.getLogger("cityloop.console")
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "console" / "dist"
router = APIRouter(prefix="/api/v1/console", tags=["console"])

NOT_BUILT = """<!doctype html><html lang="zh-CN"><meta charset="utf-8"><title>cityloop</title>
<body style="font-family: sans-serif; margin: 3em; max-width: 46em">
<h1>cityloop</h1>
<p>The web console is not built on this server. Run <code>make console</code> (or <code>make run</code>,
which builds it) and reload this page. The API works without it: <a href="/docs">/docs</a>.</p>
<p>此服务器尚未构建网页控制台。请运行 <code>make console</code>（或 <code>make run</code>，它会一并构建）后刷新本页。
API 无需控制台即可使用：<a href="/docs">/docs</a>。</p></body></html>"""


class MapConfig(BaseModel):
    tiles: str = Field(description="tile URL template; empty: draw a plain background (no tile server)")
    attribution: str


class ConsoleConfig(BaseModel):
    timezone: str = Field(description="the district's time zone: the console shows times in it")
    map: MapConfig


@router.get("/config", response_model=ConsoleConfig, summary="What the web console needs to know / 控制台配置")
def config(_: Principal = allow("me")):
    s = settings.current()
    return ConsoleConfig(timezone=s.timezone, map=MapConfig(tiles=s.map_tiles, attribution=s.map_attribution))


def _csp(tiles: str) -> str:
    images = "'self' data: blob:"
    if tiles.startswith(("http://", "https://")):
        parts = urlsplit(tiles.replace("{s}", "a"))
        host = parts.netloc.replace("a.", "*.", 1) if "{s}" in tiles else parts.netloc
        images += f" {parts.scheme}://{host}"
    return ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            f"img-src {images}; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def install(app: FastAPI, directory: Path | None = None) -> None:
    """Serve the console at `/` (index) and `/assets/...` (hashed build files). Without a
    build, `/` explains how to make one instead of failing."""
    directory = Path(directory or settings.current().console_dir or DEFAULT_DIR)
    index = directory / "index.html"
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
               "Content-Security-Policy": _csp(settings.current().map_tiles)}

    def console_index(request):
        if not index.is_file():
            log.warning("the web console is not built (%s is missing): run make console", index)
            return HTMLResponse(NOT_BUILT, status_code=503, headers={"Cache-Control": "no-cache"})
        return FileResponse(index, media_type="text/html; charset=utf-8", headers=headers)

    # A plain route like the assets' mount, not an API route: the page itself is public, and
    # everything it shows comes from the API, which checks each call.
    app.add_route("/", console_index, methods=["GET", "HEAD"], include_in_schema=False)

    assets = directory / "assets"
    if assets.is_dir():
        app.mount("/assets", _ImmutableFiles(directory=assets), name="console-assets")
    else:
        log.warning("the web console is not built (%s is missing): run make console", assets)


class _ImmutableFiles(StaticFiles):
    """Build files are named by their content hash: cache them for good."""

    async def get_response(self, path, scope):
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
            response.headers["X-Content-Type-Options"] = "nosniff"
        return response
