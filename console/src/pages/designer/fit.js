// Zooming a bpmn-js canvas so the diagram fits beside the palette.
// Fit the diagram in view, leaving `left` pixels free for the palette and `top` for badges.
export function fitBeside(canvas, left, top = 30) {
  canvas.zoom('fit-viewport');
  const box = canvas.viewbox();
  const scale = Math.min(1, (box.outer.width - left - 10) / Math.max(1, box.inner.width),
    (box.outer.height - top - 10) / Math.max(1, box.inner.height));
  canvas.zoom(scale);
  const after = canvas.viewbox();
  canvas.scroll({ dx: left - (after.inner.x - after.x) * after.scale, dy: top - (after.inner.y - after.y) * after.scale });
}
