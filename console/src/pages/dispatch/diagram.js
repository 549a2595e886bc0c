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
export async function showDiagram(el, number, position) {
  const [Viewer, xml] = await Promise.all([
    loadViewer(),
    request('GET', `/api/v1/work-orders/${encodeURIComponent(number)}/diagram`),
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
