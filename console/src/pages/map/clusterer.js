// The page's side of cluster.worker.js: load layers, ask for what to draw, expand a cluster.
// Only the answer to the latest query is used (a pan overtakes the one before it).
export function createClusterer() {
  const worker = new Worker(new URL('./cluster.worker.js', import.meta.url), { type: 'module' });
  const waiting = new Map();
  let seq = 0;
  worker.onmessage = (e) => {
    const msg = e.data;
    const key = msg.type === 'loaded' ? `load:${msg.layer}` : msg.id;
    const done = waiting.get(key);
    if (!done) return;
    waiting.delete(key);
    if (msg.type === 'error') done.reject(new Error(msg.message));
    else done.resolve(msg);
  };
  const ask = (key, msg, transfer) => new Promise((resolve, reject) => {
    waiting.set(key, { resolve, reject });
    worker.postMessage(msg, transfer || []);
  });
  return {
    // lat, lon: Float64Array; overdue: Uint8Array or null (transferred to the worker)
    load(layer, lat, lon, overdue) {
      const transfer = [lat.buffer, lon.buffer, ...(overdue ? [overdue.buffer] : [])];
      return ask(`load:${layer}`, { type: 'load', layer, lat, lon, overdue }, transfer);
    },
    query(bbox, zoom, layers) {
      const id = ++seq;
      return ask(id, { type: 'query', id, bbox, zoom, layers }).then((msg) => (id === seq ? msg.items : null));
    },
    expansionZoom(layer, clusterId) {
      const id = `x${++seq}`;
      return ask(id, { type: 'expand', id, layer, clusterId }).then((msg) => msg.zoom);
    },
    terminate() {
      worker.terminate();
      waiting.clear();
    },
  };
}
