// The order's process diagram (the version its instance runs on) with where it stands
// highlighted: bpmn-js's NavigatedViewer (view, pan and zoom only), loaded on first use.
import { request } from '../../api.js';
import { h } from '../../dom.js';

let viewerModule;
function loadViewer() {
  viewerModule ||= Promise.all([
    import('bpmn-js/lib/NavigatedViewer'),
    import('bpmn-js/dist/assets/diagram-js.css'),
    import('bpmn-js/dist/assets/bpmn-js.css'),
  ]).then(([m]) => m.default);
  return viewerModule;
}

export const CURRENT = 'wo-current';

// Render into `el`; resolves to {destroy()}; `position` is the detail's process.position.
// The diagram shown is that of the innermost process the order stands in (position lists
// the innermost first): the called rectification process while the unit works on it.
export async function showDiagram(el, number, position) {
  const inner = (position || [])[0];
  const query = inner && inner.process ? `?process=${encodeURIComponent(inner.process)}` : '';
  const [Viewer, xml] = await Promise.all([
    loadViewer(),
    request('GET', `/api/v1/work-orders/${encodeURIComponent(number)}/diagram${query}`),
  ]);
  const host = h('div.diagram-canvas');
  el.append(host);
  const viewer = new Viewer({ container: host });
  await viewer.importXML(xml);
  const canvas = viewer.get('canvas');
  const registry = viewer.get('elementRegistry');
  canvas.zoom('fit-viewport');
  for (const p of position || []) {
    if (registry.get(p.element)) canvas.addMarker(p.element, CURRENT);
  }
  return { destroy: () => viewer.destroy() };
}
