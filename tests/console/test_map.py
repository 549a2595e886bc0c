"""The one-map view in a real browser, on a district-sized dataset: 60,000 gas households and
20,000 work orders from bench.scale_data (bulk-inserted before the server starts, the demo
seeded on top at start), drawn as clusters on one canvas."""
from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from bench.scale_data import build_district
from tests.console.conftest import ROOT, api_token, login, shot
from tests.sync.servers import ServerProcess

pytestmark = pytest.mark.slow

POINTS = 60_000
ORDERS = 20_000
LAYERS = {"orders": "work-orders", "households": "households", "depots": "depots", "gateways": "gateways"}


@pytest.fixture(scope="module")
def map_server(module_db_url, tmp_path_factory):
    """A server (as conftest's console_server) on the demo district plus the scale data."""
    if not (ROOT / "console" / "dist" / "index.html").is_file():
        pytest.fail("console/dist is missing: build the console with `make console`")
    build_district(module_db_url, orders=ORDERS, points=POINTS, progress=lambda _: None)
    server = ServerProcess(module_db_url, tmp_path_factory.mktemp("map-server"), env={"CITYLOOP_DEMO": "1"})
    server.start(timeout=180)
    yield server
    server.stop()


def _api_counts(server, user) -> dict:
    headers = {"Authorization": f"Bearer {api_token(server, user)}"}
    out = {}
    for layer, path in LAYERS.items():
        r = httpx.get(f"{server.base_url}/api/v1/map/{path}", headers=headers, timeout=60)
        out[layer] = r.json()["count"] if r.status_code == 200 else None
    return out


def _open_map(page, server, user, lang):
    login(page, server, user, lang=lang, at="#/map")
    view = page.locator("#map-view")
    expect(view).to_have_attribute("data-ready", "1", timeout=60_000)
    return view


def test_the_map_loads_60000_points_with_the_apis_counts_and_no_tiles(page, map_server):
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    view = _open_map(page, map_server, "dispatcher1", "zh")
    api = _api_counts(map_server, "dispatcher1")
    assert api["households"] >= POINTS and api["orders"] > 1000 and api["depots"] == 6 and api["gateways"] == 6
    for layer, count in api.items():
        expect(page.locator(f"#map-layer-{layer}")).to_have_attribute("data-count", str(count))
    assert page.evaluate("() => window.cityloopMap.counts") == api
    expect(page.locator("#map-layer-households .map-layer-name")).to_have_text("燃气用户")
    # one canvas, a few hundred clusters and points on it: no DOM marker per point
    drawn = int(view.get_attribute("data-drawn"))
    assert 0 < drawn < 3000
    assert page.locator("#map-view .leaflet-marker-icon").count() == 0
    assert page.locator("#map-view *").count() < 200
    # no tile server configured: no tile images, every request went to our own server
    assert page.locator("img.leaflet-tile").count() == 0
    assert requests and all(u.startswith(map_server.base_url) for u in requests), \
        [u for u in requests if not u.startswith(map_server.base_url)]
    expect(page.locator(".map-area-label")).to_have_count(3)
    expect(page.locator(".map-area-label").first).to_have_text("东城街道办事处")
    shot(page, "map-zh")
    page.click("#lang-toggle")                      # relabelled in place, nothing fetched again
    expect(page.locator("#map-layer-households .map-layer-name")).to_have_text("Gas households")
    expect(page.locator(".map-area-label").first).to_have_text("Dongcheng Street Office")
    expect(view).to_have_attribute("data-ready", "1")


def test_a_cluster_zooms_in_and_a_point_opens_a_popup_linking_its_order(page, map_server):
    view = _open_map(page, map_server, "dispatcher1", "en")
    shot(page, "map-en")
    box = view.bounding_box()
    zoom = view.get_attribute("data-zoom")
    drawn_zoom = view.get_attribute("data-drawn-zoom")
    drawn = page.evaluate("() => window.cityloopMap.drawn()")
    clusters = [d for d in drawn if d["layer"] == "orders" and d["count"] > 1
                and 60 < d["x"] < box["width"] - 300 and 60 < d["y"] < box["height"] - 60]
    assert clusters, "the district's orders are clustered at the start"
    target = max(clusters, key=lambda d: d["count"])
    page.mouse.click(box["x"] + target["x"], box["y"] + target["y"])
    expect(view).not_to_have_attribute("data-zoom", zoom)
    expect(view).not_to_have_attribute("data-drawn-zoom", drawn_zoom)
    assert float(view.get_attribute("data-zoom")) > float(zoom)
    shot(page, "map-zoomed-cluster-en")

    # an order of the API's, seen from close by: a click on it shows its popup with a link
    headers = {"Authorization": f"Bearer {api_token(map_server, 'dispatcher1')}"}
    orders = httpx.get(f"{map_server.base_url}/api/v1/map/work-orders", headers=headers, timeout=60).json()
    i = orders["columns"]["number"].index(next(n for n in orders["columns"]["number"] if n.startswith("WO")))
    number, lat, lon = (orders["columns"][f][i] for f in ("number", "lat", "lon"))
    page.evaluate(f"() => window.cityloopMap.map.setView([{lat}, {lon}], 19, {{animate: false}})")
    expect(view).to_have_attribute("data-drawn-zoom", "19")
    drawn = page.evaluate("() => window.cityloopMap.drawn()")
    spot = next(d for d in drawn if d["layer"] == "orders" and d["id"] == i)
    assert spot["count"] == 1
    page.mouse.click(box["x"] + spot["x"], box["y"] + spot["y"])
    link = page.locator(f".leaflet-popup a[href='#/dispatch/{number}']")
    expect(link).to_be_visible()
    expect(page.locator(".leaflet-popup")).to_contain_text(f"Work order {number}")
    expect(page.locator(".leaflet-popup")).to_contain_text("Street Office")    # the area by name, not code
    shot(page, "map-zoomed-popup-en")
    link.click()
    page.wait_for_url(f"**/#/dispatch/{number}")


def test_a_unit_leader_sees_only_their_units_orders_and_no_households(page, map_server):
    _open_map(page, map_server, "leader.clean-east", "en")
    api = _api_counts(map_server, "leader.clean-east")
    assert api["households"] is None and 0 < api["orders"] < _api_counts(map_server, "dispatcher1")["orders"]
    expect(page.locator("#map-layer-orders")).to_have_attribute("data-count", str(api["orders"]))
    expect(page.locator("#map-layer-households")).to_have_count(0)
    expect(page.locator("#map-layer-depots")).to_have_attribute("data-count", str(api["depots"]))
    shot(page, "map-leader-en")


# a 1x1 light grey PNG
TILE = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                     "1f15c4890000000d49444154789c63f8fbf7ff3f0005fe02fea7d6a0a5"
                     "0000000049454e44ae426082")


def test_a_configured_tile_server_is_used_with_its_credit_line(page, map_server):
    """The server's CITYLOOP_MAP_TILES reaches the page through /api/v1/console/config; here
    the answer is rewritten to same-origin tiles (the CSP allows them) served by the test."""
    tiles: list[str] = []

    def config(route):
        body = route.fetch().json()
        body["map"] = {"tiles": "/test-tiles/{z}/{x}/{y}.png", "attribution": "© Test Tiles <b>not bold</b>"}
        route.fulfill(json=body)

    def tile(route):
        tiles.append(route.request.url)
        route.fulfill(body=TILE, content_type="image/png")

    page.route("**/api/v1/console/config", config)
    page.route("**/test-tiles/**", tile)
    view = _open_map(page, map_server, "dispatcher1", "en")
    expect(page.locator("img.leaflet-tile-loaded").first).to_be_visible()
    assert tiles and all("/test-tiles/" in u for u in tiles)
    expect(page.locator(".map-attrib")).to_have_text("© Test Tiles <b>not bold</b> · Leaflet")   # text, not HTML
    expect(page.locator(".map-area-label")).to_have_count(0)              # no outlines over real tiles
    assert "map-plain" not in (view.get_attribute("class") or "")
