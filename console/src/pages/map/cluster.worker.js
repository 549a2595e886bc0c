// Clustering off the UI thread: one supercluster index per map layer. The page sends each
// layer's coordinates once ('load'), then asks for what to draw in a box at a zoom ('query')
// and answers packed into one Float64Array per layer (transferred, not copied), 5 numbers an
// item: lon, lat, count (1: a single point), id (a point's index in its layer, or a cluster's
// id), overdue (how many of the item's points are overdue).
import Supercluster from 'supercluster';

const indexes = new Map();
const CLUSTER_MAX_ZOOM = 17;   // from zoom 18 on every point is drawn on its own (the map goes to 19)

function load({ layer, lat, lon, overdue }) {
  const features = new Array(lat.length);
  for (let i = 0; i < lat.length; i++) {
    features[i] = { type: 'Feature', geometry: { type: 'Point', coordinates: [lon[i], lat[i]] },
      properties: { i, o: overdue ? overdue[i] : 0 } };
  }
  const index = new Supercluster({
    // radius in 1/512ths of a 256-pixel tile (supercluster's extent): 60 px on screen
    radius: 120, extent: 512, maxZoom: CLUSTER_MAX_ZOOM, minPoints: 3,
    map: (p) => ({ o: p.o }),
    reduce: (acc, p) => { acc.o += p.o; },
  });
  index.load(features);
  indexes.set(layer, index);
  return { type: 'loaded', layer, count: lat.length };
}

function query({ id, bbox, zoom, layers }) {
  const out = {};
  const transfer = [];
  for (const layer of layers) {
    const index = indexes.get(layer);
    if (!index) continue;
    const found = index.getClusters(bbox, zoom);
    const packed = new Float64Array(found.length * 5);
    found.forEach((f, k) => {
      const p = f.properties;
      const [lon, lat] = f.geometry.coordinates;
      packed.set(p.cluster ? [lon, lat, p.point_count, p.cluster_id, p.o] : [lon, lat, 1, p.i, p.o], k * 5);
    });
    out[layer] = packed;
    transfer.push(packed.buffer);
  }
  return [{ type: 'clusters', id, items: out }, transfer];
}

self.onmessage = (e) => {
  const msg = e.data;
  try {
    if (msg.type === 'load') self.postMessage(load(msg));
    else if (msg.type === 'query') self.postMessage(...query(msg));
    else if (msg.type === 'expand') {
      const index = indexes.get(msg.layer);
      const zoom = index.getClusterExpansionZoom(msg.clusterId);
      self.postMessage({ type: 'expanded', id: msg.id, zoom });
    }
  } catch (err) {
    self.postMessage({ type: 'error', id: msg.id, message: String(err && err.message || err) });
  }
};
