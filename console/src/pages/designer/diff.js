// Compare two versions of a process (bpmn-js-differ): the newer one drawn with its added,
// changed and layout-changed elements marked; removed ones are listed.
import NavigatedViewer from 'bpmn-js/lib/NavigatedViewer';
import camundaModdle from 'camunda-bpmn-moddle/resources/camunda.json';
import { diff } from 'bpmn-js-differ';

import { h } from '../../dom.js';
import { fitBeside } from './fit.js';

const KINDS = [['added', '_added'], ['changed', '_changed'], ['layout', '_layoutChanged'], ['removed', '_removed']];

async function definitions(moddle, xml) {
  const { rootElement } = await moddle.fromXML(xml, 'bpmn:Definitions');
  return rootElement;
}

// -> {viewer, changes: [{kind, id, name, type, attrs}], destroy()}
export async function openDiff(container, oldXml, newXml) {
  const canvas = h('div.dsg-canvas.dsg-diff');
  container.append(canvas);
  const viewer = new NavigatedViewer({ container: canvas, moddleExtensions: { camunda: camundaModdle } });
  const moddle = viewer.get('moddle');
  const [a, b] = await Promise.all([definitions(moddle, oldXml), definitions(moddle, newXml)]);
  const result = diff(a, b);
  await viewer.importXML(newXml);
  fitBeside(viewer.get('canvas'), 20);
  const registry = viewer.get('elementRegistry');
  const changes = [];
  const seen = new Set();
  for (const [kind, key] of KINDS) {
    for (const [id, entry] of Object.entries(result[key] || {})) {
      if (kind === 'layout' && seen.has(id)) continue;  // already listed as added or changed
      seen.add(id);
      const model = entry.model || entry;
      // (the differ hands jsondiffpatch's [old, new] to changed(model, key, newValue, oldValue),
      // so its attrs carry the old value as newValue: read them the right way round)
      const attrs = entry.attrs ? Object.entries(entry.attrs).map(([name, v]) => ({
        name, from: v.newValue, to: v.oldValue,
      })) : [];
      changes.push({ kind, id, name: model.name || '', type: (model.$type || '').replace('bpmn:', ''), attrs });
      if (kind !== 'removed' && registry.get(id)) viewer.get('canvas').addMarker(id, `dsg-diff-${kind}`);
    }
  }
  return {
    viewer,
    changes,
    select(id) {
      const el = registry.get(id);
      if (!el) return false;
      viewer.get('canvas').scrollToElement(el);
      return true;
    },
    destroy() {
      viewer.destroy();
    },
  };
}
