// One canvas over the map that draws every cluster and point of every layer (a few hundred
// shapes per view, never 60,000 DOM markers). It covers the view plus half a view on each
// side, so a pan shows what is already drawn; after each move the page gives it the new items.
// During a zoom animation the canvas is scaled with the map (as Leaflet's image overlays are).
import { DomUtil, Layer, latLngBounds } from 'leaflet';

const PAD = 0.5;

export const CanvasLayer = Layer.extend({
  initialize(drawItem) {
    this._drawItem = drawItem;
    this._drawn = [];          // [{item, x, y, r}] in layer pixels, for hit tests
  },

  onAdd(map) {
    this._canvas = DomUtil.create('canvas', 'leaflet-zoom-animated map-canvas');
    map.getPane('overlayPane').appendChild(this._canvas);
    map.on('zoomanim', this._animateZoom, this);
  },

  onRemove(map) {
    map.off('zoomanim', this._animateZoom, this);
    this._canvas.remove();
  },

  // The padded box (for the worker's query) of the current view.
  paddedBounds() {
    const map = this._map;
    const size = map.getSize();
    const min = map.containerPointToLayerPoint(size.multiplyBy(-PAD)).round();
    const max = min.add(size.multiplyBy(1 + 2 * PAD)).round();
    return { min, max, bounds: latLngBounds(map.layerPointToLatLng([min.x, max.y]), map.layerPointToLatLng([max.x, min.y])) };
  },

  // items: [{lat, lon, ...}] in drawing order (later on top)
  draw(items, box) {
    const map = this._map;
    if (!map) return;
    const { min, max, bounds } = box;
    const ratio = window.devicePixelRatio || 1;
    const c = this._canvas;
    const w = max.x - min.x;
    const hgt = max.y - min.y;
    if (c.width !== Math.round(w * ratio) || c.height !== Math.round(hgt * ratio)) {
      c.width = Math.round(w * ratio);
      c.height = Math.round(hgt * ratio);
      c.style.width = `${w}px`;
      c.style.height = `${hgt}px`;
    }
    DomUtil.setPosition(c, min);
    this._bounds = bounds;
    const ctx = c.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, hgt);
    const drawn = [];
    for (const item of items) {
      const p = map.latLngToLayerPoint([item.lat, item.lon]);
      const x = p.x - min.x;
      const y = p.y - min.y;
      if (x < -40 || y < -40 || x > w + 40 || y > hgt + 40) continue;
      const r = this._drawItem(ctx, item, x, y);
      drawn.push({ item, x: p.x, y: p.y, r });
    }
    this._drawn = drawn;
  },

  // Items under a container point, the top-most first.
  hits(containerPoint, slack = 3) {
    const p = this._map.containerPointToLayerPoint(containerPoint);
    const out = [];
    for (let k = this._drawn.length - 1; k >= 0; k--) {
      const d = this._drawn[k];
      const dx = d.x - p.x;
      const dy = d.y - p.y;
      if (dx * dx + dy * dy <= (d.r + slack) * (d.r + slack)) out.push(d.item);
    }
    return out;
  },

  // What is drawn, in container pixels (the benchmark's and the tests' hook).
  drawnItems() {
    const map = this._map;
    return this._drawn.map((d) => {
      const c = map.layerPointToContainerPoint([d.x, d.y]);
      return { ...d.item, x: c.x, y: c.y, r: d.r };
    });
  },

  _animateZoom(e) {
    if (!this._bounds) return;
    const map = this._map;
    const scale = map.getZoomScale(e.zoom);
    const offset = map._latLngBoundsToNewLayerBounds(this._bounds, e.zoom, e.center).min;
    DomUtil.setTransform(this._canvas, offset, scale);
  },
});
