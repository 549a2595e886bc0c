// The DMN decision table editor (dmn-js), opened straight on the table.
import 'dmn-js/dist/assets/diagram-js.css';
import 'dmn-js/dist/assets/dmn-js-shared.css';
import 'dmn-js/dist/assets/dmn-js-drd.css';
import 'dmn-js/dist/assets/dmn-js-decision-table.css';
import 'dmn-js/dist/assets/dmn-js-decision-table-controls.css';
import 'dmn-js/dist/assets/dmn-js-literal-expression.css';
import 'dmn-js/dist/assets/dmn-font/css/dmn-embedded.css';

import DmnModeler from 'dmn-js/lib/Modeler';

import { h } from '../../dom.js';
import { TranslateModule } from './strings.js';

export async function openDmn(container, xml, { onChange }) {
  const canvas = h('div.dsg-canvas.dsg-dmn');
  container.append(canvas);
  const modeler = new DmnModeler({
    container: canvas,
    decisionTable: { additionalModules: [TranslateModule] },
    drd: { additionalModules: [TranslateModule] },
  });
  await modeler.importXML(xml);
  const table = modeler.getViews().find((v) => v.type === 'decisionTable');
  if (table) await modeler.open(table);
  const watch = () => {
    const viewer = modeler.getActiveViewer();
    if (viewer) viewer.get('eventBus').on('elements.changed', () => onChange && onChange());
  };
  watch();
  modeler.on('views.changed', watch);
  let marked = [];
  return {
    kind: 'dmn',
    modeler,
    async getContent() {
      const { xml: out } = await modeler.saveXML({ format: true });
      return out;
    },
    // server problems: mark the table cells (rules' entries) they name
    showProblems(problems) {
      for (const el of marked) el.classList.remove('dsg-cell-error');
      marked = [];
      const rest = [];
      for (const p of problems) {
        const cell = p.element && canvas.querySelector(`[data-element-id="${CSS.escape(p.element)}"]`);
        if (cell) {
          cell.classList.add('dsg-cell-error');
          cell.title = p.message;
          marked.push(cell);
        } else rest.push(p);
      }
      return rest;
    },
    select(elementId) {
      const cell = canvas.querySelector(`[data-element-id="${CSS.escape(elementId)}"]`);
      if (cell) cell.scrollIntoView({ block: 'nearest' });
      return Boolean(cell);
    },
    // after a language switch: draw the table anew (its labels are rendered once); the edits
    // so far are kept (the undo history is not)
    async relabel() {
      const { xml: now } = await modeler.saveXML();
      await modeler.importXML(now);
      const view = modeler.getViews().find((v) => v.type === 'decisionTable');
      if (view) await modeler.open(view);
      watch();
    },
    destroy() {
      modeler.destroy();
    },
  };
}
