// The BPMN modeler: bpmn-js with the properties panel (BPMN + Camunda 7 moddle), cityloop's
// operation and form pickers, and bpmnlint checks drawn on the diagram.
import 'bpmn-js/dist/assets/diagram-js.css';
import 'bpmn-js/dist/assets/bpmn-js.css';
import 'bpmn-js/dist/assets/bpmn-font/css/bpmn-embedded.css';
import '@bpmn-io/properties-panel/assets/properties-panel.css';
import 'bpmn-js-bpmnlint/dist/assets/css/bpmn-js-bpmnlint.css';

import BpmnModeler from 'bpmn-js/lib/Modeler';
import {
  BpmnPropertiesPanelModule,
  BpmnPropertiesProviderModule,
  CamundaPlatformPropertiesProviderModule,
} from 'bpmn-js-properties-panel';
import lintModule from 'bpmn-js-bpmnlint';
import camundaModdle from 'camunda-bpmn-moddle/resources/camunda.json';

import { h } from '../../dom.js';
import { bpmnlint } from './lint.js';
import { CityloopPropertiesModule } from './provider.js';
import { TranslateModule } from './strings.js';
import { ProblemMarks } from './problems.js';
import { fitBeside } from './fit.js';

// open(container, xml, {onChange, onLint}) -> editor {kind, getContent(), marks, lintIssues, destroy()}
export async function openBpmn(container, xml, { onChange, onLint, readOnly }) {
  const canvas = h('div.dsg-canvas');
  const panel = h('div.dsg-props');
  container.append(canvas, panel);
  const modeler = new BpmnModeler({
    container: canvas,
    propertiesPanel: { parent: panel },
    additionalModules: [
      BpmnPropertiesPanelModule,
      BpmnPropertiesProviderModule,
      CamundaPlatformPropertiesProviderModule,
      CityloopPropertiesModule,
      lintModule,
      TranslateModule,
    ],
    moddleExtensions: { camunda: camundaModdle },
    linting: { bpmnlint, active: true },
  });
  const editor = {
    kind: 'bpmn',
    modeler,
    lintIssues: {},
    marks: new ProblemMarks(modeler),
    async getContent() {
      const { xml: out } = await modeler.saveXML({ format: true });
      return out;
    },
    select(elementId) {
      const element = modeler.get('elementRegistry').get(elementId);
      if (!element) return false;
      modeler.get('selection').select(element);
      modeler.get('canvas').scrollToElement(element);
      return true;
    },
    // after a language switch: the properties panel and the lint button say it anew
    relabel() {
      modeler.get('eventBus').fire('propertiesPanel.providersChanged');
      modeler.get('linting').update();
    },
    destroy() {
      modeler.destroy();
    },
  };
  modeler.on('linting.completed', ({ issues }) => {
    editor.lintIssues = issues;
    if (onLint) onLint(issues);
  });
  modeler.on('commandStack.changed', () => onChange && onChange());
  await modeler.importXML(xml);
  fitBeside(modeler.get('canvas'), 120);   // (clear of the two-column palette)
  if (readOnly) canvas.classList.add('dsg-readonly');
  return editor;
}
