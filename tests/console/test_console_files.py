"""How the server hands out the console, without a browser: no build, a build, the config."""
from __future__ import annotations

from fastapi.testclient import TestClient

from engine.api.app import create_app
from tests.api.conftest import app, client, tokens  # noqa: F401  (fixtures: the seeded app, its client, a token per role)


def test_without_a_build_the_root_explains_how_to_make_one(system, setenv, tmp_path):
    setenv(CITYLOOP_CONSOLE_DIR=str(tmp_path / "nothing"))
    with TestClient(create_app(system, scheduler=False)) as c:
        r = c.get("/")
    assert r.status_code == 503
    assert "make console" in r.text and "/docs" in r.text


def test_a_build_is_served_at_the_root_with_hashed_assets(system, setenv, tmp_path):
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text('<!doctype html><script type="module" src="/assets/index-abc.js"></script>')
    (tmp_path / "assets" / "index-abc.js").write_text("console.log('hi')")
    setenv(CITYLOOP_CONSOLE_DIR=str(tmp_path), CITYLOOP_MAP_TILES="https://{s}.tiles.example.org/{z}/{x}/{y}.png")
    with TestClient(create_app(system, scheduler=False)) as c:
        index = c.get("/")
        asset = c.get("/assets/index-abc.js")
    assert index.status_code == 200 and "index-abc.js" in index.text
    assert "img-src 'self' data: blob: https://*.tiles.example.org" in index.headers["content-security-policy"]
    assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"]


def test_config_and_me_tell_the_console_what_it_needs(client, tokens, setenv):  # noqa: F811
    setenv(CITYLOOP_MAP_TILES="")
    h = {"Authorization": f"Bearer {tokens['dispatcher']}"}
    config = client.get("/api/v1/console/config", headers=h).json()
    assert config == {"timezone": "Asia/Shanghai", "map": {"tiles": "", "attribution": ""}}
    me = client.get("/api/v1/auth/me", headers=h).json()
    assert "workorders.read" in me["permissions"] and "processes.deploy" not in me["permissions"]
    assert me["groups"] == ["dispatcher"]
    assert client.get("/api/v1/console/config").status_code == 401


def test_a_tile_template_without_its_placeholders_stops_the_server(setenv):
    import pytest

    from engine import settings
    with pytest.raises(Exception, match="CITYLOOP_MAP_TILES|map_tiles"):
        setenv(CITYLOOP_MAP_TILES="https://tiles.example.org/tile.png")
        settings.current()
