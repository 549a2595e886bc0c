// Live instance counts on the diagram (Cockpit's heatmap idea): a badge per element with the
// instances waiting there now, coloured by load, plus incidents and how many passed.
import NavigatedViewer from 'bpmn-js/lib/NavigatedViewer';
import camundaModdle from 'camunda-bpmn-moddle/resources/camunda.json';

import { h } from '../../dom.js';
import { fitBeside } from './fit.js';
import { fmtNumber } from '../../i18n.js';

// A colour from pale yellow (few) to deep red (the most loaded element).
export function heatColour(n, max) {
  const x = max > 0 ? Math.min(1, n / max) : 0;
  const hue = 50 - 50 * x;
  const light = 62 - 20 * x;
  return `hsl(${hue.toFixed(0)}, 90%, ${light.toFixed(0)}%)`;
}

export async function openHeat(container, xml) {
  const canvas = h('div.dsg-canvas.dsg-heat');
  container.append(canvas);
  const viewer = new NavigatedViewer({ container: canvas, moddleExtensions: { camunda: camundaModdle } });
  await viewer.importXML(xml);
  fitBeside(viewer.get('canvas'), 20);
  const registry = viewer.get('elementRegistry');
  const overlays = viewer.get('overlays');
  return {
    viewer,
    // activity: the API's {elements: {id: {waiting, incidents, passed}}}
    show(activity) {
      overlays.remove({ type: 'dsg-heat' });
      const elements = activity.elements || {};
      const max = Math.max(0, ...Object.values(elements).map((e) => e.waiting));
      for (const [id, c] of Object.entries(elements)) {
        if (!registry.get(id)) continue;
        const badges = [];
        if (c.waiting) {
          badges.push(h('span.dsg-heat-waiting', {
            dataset: { element: id, count: String(c.waiting) },
            style: { background: heatColour(c.waiting, max) },
          }, fmtNumber(c.waiting)));
        }
        if (c.incidents) badges.push(h('span.dsg-heat-incidents', { dataset: { element: id } }, fmtNumber(c.incidents)));
        if (badges.length) {
          overlays.add(id, 'dsg-heat', { position: { top: -10, left: -10 }, scale: { min: 1 }, html: h('div.dsg-heat-badges', badges) });
        }
        if (c.passed) {
          overlays.add(id, 'dsg-heat', { position: { bottom: 4, right: 22 }, scale: { min: 1 },
            html: h('span.dsg-heat-passed', { dataset: { element: id } }, `✓${fmtNumber(c.passed)}`) });
        }
      }
    },
    name(id) {
      const el = registry.get(id);
      return (el && el.businessObject.name) || id;
    },
    select(id) {
      const el = registry.get(id);
      if (el) viewer.get('canvas').scrollToElement(el);
      return Boolean(el);
    },
    destroy() {
      viewer.destroy();
    },
  };
}
