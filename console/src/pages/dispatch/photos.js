// Photos are behind the bearer token, so an <img src> cannot load them directly: fetch the
// bytes with the token and show them through blob: URLs (the CSP allows img-src blob:).
// One PhotoCache per page; drop() revokes every URL it made.
import './photos.css';
import { request } from '../../api.js';
import { h } from '../../dom.js';

export class PhotoCache {
  constructor() {
    this.urls = new Map(); // sha -> Promise<url>
    this.dead = false;
  }

  url(sha) {
    if (!this.urls.has(sha)) {
      const p = request('GET', `/api/v1/attachments/${encodeURIComponent(sha)}`, { raw: true })
        .then((r) => r.blob())
        .then((blob) => (this.dead ? null : URL.createObjectURL(blob)));
      p.catch(() => this.urls.delete(sha));
      this.urls.set(sha, p);
    }
    return this.urls.get(sha);
  }

  // An <img> that fills in when its bytes arrive; alt is its accessible name.
  img(sha, alt, cls = '') {
    const el = h(`img${cls ? `.${cls}` : ''}`, { alt, 'data-sha': sha, decoding: 'async' });
    this.url(sha).then((u) => { if (u) el.src = u; }, () => el.classList.add('broken'));
    return el;
  }

  drop() {
    this.dead = true;
    for (const p of this.urls.values()) p.then((u) => u && URL.revokeObjectURL(u), () => {});
    this.urls.clear();
  }
}

// A full-window view of one photo; Esc, a click or the close button closes it.
export function zoom(url, alt, closeLabel) {
  const prev = document.activeElement;
  const close = () => {
    box.remove();
    document.removeEventListener('keydown', onKey, true);
    if (prev && prev.focus) prev.focus();
  };
  const onKey = (e) => {
    if (e.key === 'Escape' || e.key === 'z' || e.key === 'Z') {
      e.preventDefault();
      e.stopPropagation();
      close();
    }
  };
  const btn = h('button.zoom-close', { type: 'button', onclick: close }, closeLabel);
  const box = h('div.photo-zoom', { role: 'dialog', 'aria-label': alt, onclick: (e) => { if (e.target === box) close(); } },
    h('img', { src: url, alt }), btn);
  document.body.append(box);
  document.addEventListener('keydown', onKey, true);
  btn.focus();
  return close;
}
