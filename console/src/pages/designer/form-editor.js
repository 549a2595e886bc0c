// The form-js editor with a preview (the form rendered by form-js's viewer, as users see it).
import '@bpmn-io/form-js/dist/assets/form-js.css';
import '@bpmn-io/form-js/dist/assets/form-js-editor.css';
import '@bpmn-io/form-js/dist/assets/flatpickr/light.css';
import '@bpmn-io/properties-panel/assets/properties-panel.css';

import { Form, FormEditor } from '@bpmn-io/form-js';

import { h } from '../../dom.js';

export async function openForm(container, text, { onChange }) {
  const schema = JSON.parse(text);
  const canvas = h('div.dsg-canvas.dsg-form');
  const preview = h('div.dsg-form-preview', { hidden: true });
  container.append(canvas, preview);
  const editor = new FormEditor({ container: canvas });
  await editor.importSchema(schema);
  editor.on('changed', () => onChange && onChange());
  let form = null;
  return {
    kind: 'form',
    editor,
    async getContent() {
      return `${JSON.stringify(editor.saveSchema(), null, 2)}\n`;
    },
    async preview(show) {
      canvas.hidden = show;
      preview.hidden = !show;
      if (form) {
        form.destroy();
        form = null;
      }
      if (show) {
        form = new Form({ container: preview });
        await form.importSchema(editor.saveSchema(), {});
      }
    },
    select() {
      return false;
    },
    destroy() {
      if (form) form.destroy();
      editor.destroy();
    },
  };
}
