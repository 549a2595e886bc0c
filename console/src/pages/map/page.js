// 一张图 / the one-map view (#/map): the district with its open work orders, gas households,
// depots and badge gateways as clustered layers on one canvas (clustering in a Web Worker),
// a layer panel with each layer's count, popups with a link to the order.
//
// Hook for benchmarks and tests: window.cityloopMap = {map (the Leaflet map), counts
// ({layer: points}), ready (true once every layer is loaded and drawn), drawn() (what is drawn
// now: [{layer, count, id, overdue, lat, lon, x, y, r}] in container pixels)}; the map element
// #map-view carries data-ready, data-zoom (the map's), data-drawn (items drawn), data-drawn-zoom
// (the zoom they were clustered at) and data-draws (draws so far) as well.
import 'leaflet/dist/leaflet.css';
import './page.css';
import './strings.js';
import { map as createMap, popup, rectangle, tileLayer, tooltip, latLngBounds, canvas as canvasRenderer } from 'leaflet';
import { api } from '../../api.js';
import { h, fill } from '../../dom.js';
import { fmtNumber, pick, t } from '../../i18n.js';
import { CanvasLayer } from './canvas-layer.js';
import { createClusterer } from './clusterer.js';
import { LAYERS, OVERDUE, STATE_COLORS, drawCluster } from './layers.js';

const MAX_ZOOM = 19;
const HOME = [31.212, 121.41];       // the demo district, until the areas say where it is
const POPUP_LIST = 5;                // points listed in one popup where several lie on one spot

class MapView {
  constructor(el, ctx) {
    this.ctx = ctx;
    this.el = el;
    this.layers = LAYERS.filter((l) => l.wanted(ctx.me));
    this.data = {};                  // layer id -> the API's columnar layer
    this.shown = Object.fromEntries(this.layers.map((l) => [l.id, true]));
    this.loaded = new Set();
    this.failed = {};
    this.areas = [];
    this.mapEl = h('div.map-view', { id: 'map-view', dataset: { ready: '0', zoom: '', drawn: '0' } });
    this.panel = h('aside.map-panel', { 'aria-label': 'layers' });
    this.status = h('div.map-status', { role: 'status' });
    this.attrib = h('div.map-attrib');
    el.append(h('div.map-page', this.mapEl, this.panel, this.status, this.attrib));

    const tiles = (ctx.config && ctx.config.map && ctx.config.map.tiles) || '';
    this.map = createMap(this.mapEl, { attributionControl: false, maxZoom: MAX_ZOOM, minZoom: 9,
      zoomSnap: 0.5, zoomDelta: 1, wheelPxPerZoomLevel: 120, fadeAnimation: false }).setView(HOME, 14);
    // area outlines under the points (the points' canvas is in the overlay pane, z-index 400)
    this.map.createPane('map-areas').style.zIndex = '250';
    if (tiles) {
      tileLayer(tiles, { maxZoom: MAX_ZOOM, crossOrigin: false }).addTo(this.map);
    } else {
      this.mapEl.classList.add('map-plain');
    }
    this.tiles = tiles;
    this.outlines = canvasRenderer({ padding: 0.5, pane: 'map-areas' });
    this.canvas = new CanvasLayer((g, item, x, y) => this.drawItem(g, item, x, y)).addTo(this.map);
    this.clusterer = createClusterer();
    this.map.on('moveend resize', () => this.refresh());
    this.map.on('zoomend', () => { this.mapEl.dataset.zoom = String(this.map.getZoom()); });
    this.mapEl.dataset.zoom = String(this.map.getZoom());
    this.map.on('click', (e) => this.click(e));
    this.map.on('mousemove', (e) => {
      this.mapEl.style.cursor = this.canvas.hits(e.containerPoint).length ? 'pointer' : '';
    });
    window.cityloopMap = { map: this.map, counts: {}, ready: false, drawn: () => this.canvas.drawnItems() };
    this.relabel();
    this.load();
  }

  // ---- data ---------------------------------------------------------------------------------
  async load() {
    const areas = api.get('/api/v1/map/areas').then((a) => this.showAreas(a)).catch(() => this.showAreas([]));
    await Promise.all([areas, ...this.layers.map((l) => this.loadLayer(l))]);
    this.refresh();
  }

  async loadLayer(layer) {
    let data;
    try {
      data = await api.get(layer.path);
    } catch (err) {
      if (this.gone) return;
      this.failed[layer.id] = err.message || String(err);
      this.renderStatus();
      return;
    }
    if (this.gone) return;
    this.data[layer.id] = data;
    window.cityloopMap.counts[layer.id] = data.count;
    const c = data.columns;
    await this.clusterer.load(layer.id, Float64Array.from(c.lat), Float64Array.from(c.lon),
      c.overdue ? Uint8Array.from(c.overdue) : null);
    if (this.gone) return;
    this.loaded.add(layer.id);
    this.renderPanel();
    this.renderStatus();
    this.refresh();
  }

  showAreas(areas) {
    if (this.gone) return;
    this.areas = areas;
    this.areaTips = [];
    if (!this.tiles) {
      for (const a of areas) {
        rectangle(a.bounds, { renderer: this.outlines, pane: 'map-areas', color: '#7b8fa6', weight: 1.5,
          dashArray: '6 4', fillColor: '#ffffff', fillOpacity: 0.55, interactive: false }).addTo(this.map);
        // the area's name just above its box, where the points do not cover it
        const [[, west], [north, east]] = a.bounds;
        const tip = tooltip({ permanent: true, direction: 'top', className: 'map-area-label', interactive: false,
          offset: [0, -2] }).setLatLng([north, (west + east) / 2]).setContent(h('span', pick(a.name_zh, a.name)));
        tip.addTo(this.map);
        this.areaTips.push([tip, a]);
      }
    }
    if (areas.length) {
      const box = latLngBounds(areas.map((a) => a.bounds[0]).concat(areas.map((a) => a.bounds[1])));
      this.map.fitBounds(box, { padding: [20, 20], animate: false });
    }
  }

  // ---- drawing ------------------------------------------------------------------------------
  refresh() {
    if (this.gone || this.pending) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = 0;
      this.query();
    });
  }

  async query() {
    const box = this.canvas.paddedBounds();
    const b = box.bounds;
    const zoom = Math.round(this.map.getZoom());
    const ids = this.layers.filter((l) => this.loaded.has(l.id) && this.shown[l.id]).map((l) => l.id);
    const found = await this.clusterer.query([b.getWest(), b.getSouth(), b.getEast(), b.getNorth()], zoom, ids);
    if (!found || this.gone) return;          // a newer query overtook this one
    const items = [];
    for (const layer of this.layers) {
      const packed = found[layer.id];
      if (!packed || !this.shown[layer.id]) continue;
      for (let k = 0; k < packed.length; k += 5) {
        items.push({ layer: layer.id, lon: packed[k], lat: packed[k + 1], count: packed[k + 2], id: packed[k + 3],
          overdue: packed[k + 4] });
      }
    }
    this.canvas.draw(items, box);
    this.draws = (this.draws || 0) + 1;
    Object.assign(this.mapEl.dataset, { drawn: String(items.length), drawnZoom: String(zoom), draws: String(this.draws) });
    const ready = this.layers.every((l) => this.loaded.has(l.id) || this.failed[l.id]);
    if (ready && !window.cityloopMap.ready) {
      window.cityloopMap.ready = true;
      this.mapEl.dataset.ready = '1';
    }
  }

  drawItem(g, item, x, y) {
    const layer = this.layers.find((l) => l.id === item.layer);
    if (item.count > 1) return drawCluster(g, item, x, y, layer.color);
    return layer.point(g, this.data[item.layer], item.id, x, y);
  }

  // ---- clicks -------------------------------------------------------------------------------
  async click(e) {
    const hits = this.canvas.hits(e.containerPoint);
    if (!hits.length) return;
    const cluster = hits.find((x) => x.count > 1);
    if (cluster && cluster === hits[0]) {
      const zoom = await this.clusterer.expansionZoom(cluster.layer, cluster.id);
      if (this.gone) return;
      this.map.setView([cluster.lat, cluster.lon], Math.min(Math.max(zoom, this.map.getZoom() + 1), MAX_ZOOM));
      return;
    }
    const points = hits.filter((x) => x.count === 1);
    const nodes = points.slice(0, POPUP_LIST).map((p) => {
      const layer = this.layers.find((l) => l.id === p.layer);
      return layer.popup(this.data[p.layer], p.id, this.ctx);
    });
    const content = points.length === 1 ? nodes[0] : h('div.map-popup-list',
      h('div.map-popup-head', t('map.popup.here', { n: points.length })), nodes,
      points.length > POPUP_LIST ? h('div.map-popup-more', t('map.popup.more', { n: points.length - POPUP_LIST })) : null);
    this.popup = popup({ maxWidth: 300, maxHeight: 320, autoPanPadding: [20, 20] })
      .setLatLng([points[0].lat, points[0].lon]).setContent(content).openOn(this.map);
  }

  // ---- panel --------------------------------------------------------------------------------
  renderPanel() {
    const rows = this.layers.map((layer) => {
      const data = this.data[layer.id];
      const count = data ? data.count : null;
      const overdue = data && data.columns.overdue ? data.columns.overdue.reduce((a, b) => a + b, 0) : 0;
      const box = h('input', { type: 'checkbox', id: `map-toggle-${layer.id}`, checked: this.shown[layer.id],
        disabled: !data,
        onchange: (e) => { this.shown[layer.id] = e.target.checked; this.refresh(); } });
      return h('div.map-layer', { id: `map-layer-${layer.id}`, dataset: { count: count === null ? '' : String(count) } },
        h('label', { for: `map-toggle-${layer.id}` }, box,
          h('span.map-swatch', { style: { background: layer.color } }),
          h('span.map-layer-name', t(`map.layer.${layer.id}`)),
          h('span.map-layer-count', count === null ? (this.failed[layer.id] ? '!' : '…') : fmtNumber(count))),
        overdue ? h('div.map-layer-sub', t('map.layer.overdue', { n: fmtNumber(overdue) })) : null);
    });
    const legend = [];
    if (this.layers.some((l) => l.id === 'orders')) {
      for (const [state, color] of Object.entries(STATE_COLORS)) {
        legend.push(h('div.map-legend-item', h('span.map-dot', { style: { background: color } }), t(`map.state.${state}`)));
      }
    }
    legend.push(h('div.map-legend-item', h('span.map-dot.map-dot-ring', { style: { borderColor: OVERDUE } }),
      t('map.legend.overdue')));
    legend.push(h('div.map-legend-item', h('span.map-dot.map-dot-cluster'), t('map.legend.cluster')));
    fill(this.panel, h('h3', t('map.layers')), rows, h('div.map-legend', legend));
  }

  renderStatus() {
    const loading = this.layers.some((l) => !this.loaded.has(l.id) && !this.failed[l.id]);
    const errors = Object.entries(this.failed).map(([id, message]) =>
      h('div.map-status-error', t('map.failed', { layer: t(`map.layer.${id}`), message })));
    const total = Object.values(this.data).reduce((n, d) => n + d.count, 0);
    fill(this.status, loading ? t('map.loading') : t('map.loaded', { n: fmtNumber(total) }), errors);
    this.status.classList.toggle('map-status-busy', loading);
  }

  relabel() {
    this.renderPanel();
    this.renderStatus();
    fill(this.attrib, this.tiles ? (this.ctx.config.map.attribution || '') : t('map.notiles'),
      this.tiles ? ' · Leaflet' : '');
    for (const [tip, a] of this.areaTips || []) tip.setContent(h('span', pick(a.name_zh, a.name)));
    if (this.popup) this.map.closePopup(this.popup);
  }

  destroy() {
    this.gone = true;
    if (this.pending) cancelAnimationFrame(this.pending);
    this.clusterer.terminate();
    this.map.remove();
    if (window.cityloopMap && window.cityloopMap.map === this.map) delete window.cityloopMap;
  }
}

export default {
  mount(el, ctx) {
    const view = new MapView(el, ctx);
    return { unmount: () => view.destroy(), relabel: () => view.relabel() };
  },
};
