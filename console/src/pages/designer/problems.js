// Server problems drawn on the diagram element they name: a marker (red outline) and an
// overlay with the message, removed when the next check runs.
import { h } from '../../dom.js';

export class ProblemMarks {
  constructor(viewer) {
    this.viewer = viewer;
    this.marked = [];
    this.overlayIds = [];
  }

  clear() {
    const canvas = this.viewer.get('canvas');
    const overlays = this.viewer.get('overlays');
    for (const id of this.marked) canvas.removeMarker(id, 'dsg-server-error');
    for (const id of this.overlayIds) overlays.remove(id);
    this.marked = [];
    this.overlayIds = [];
  }

  // problems: [{element, message}]; returns those that name no element on this diagram
  show(problems) {
    this.clear();
    const registry = this.viewer.get('elementRegistry');
    const canvas = this.viewer.get('canvas');
    const overlays = this.viewer.get('overlays');
    const byElement = new Map();
    const elsewhere = [];
    for (const p of problems) {
      if (p.element && registry.get(p.element)) {
        if (!byElement.has(p.element)) byElement.set(p.element, []);
        byElement.get(p.element).push(p.message);
      } else elsewhere.push(p);
    }
    for (const [id, messages] of byElement) {
      canvas.addMarker(id, 'dsg-server-error');
      this.marked.push(id);
      const note = h('div.dsg-server-problem', { dataset: { element: id }, title: messages.join('\n') },
        h('span.dsg-server-problem-icon', '!'), h('span.dsg-server-problem-text', messages[0]));
      this.overlayIds.push(overlays.add(id, 'dsg-server-problem', { position: { top: -28, left: 0 }, html: note }));
    }
    return elsewhere;
  }
}
