// The review desk: the queue of review tasks (oldest first), each order's before and after
// photos side by side with its facts, approve or reject with a reason. Fully keyboard-driven
// (J/K or ↓/↑, A, R, Enter, Esc, Z, ?) for someone doing hundreds a day; after a decision the
// next order loads by itself. Route: #/review/<number> opens that order's review.
import './strings.js';
import './page.css';
import { ApiError } from '../../api.js';
import { fill, h, toast } from '../../dom.js';
import { fmtNumber, fmtTime, lang, pick, t } from '../../i18n.js';
import { categoryName, kindName, sourceName } from '../dispatch/labels.js';
import { PhotoCache, zoom } from '../dispatch/photos.js';

const BEFORE = new Set(['report', 'snapshot', 'evidence']);
const KEYS = [['J / ↓', 'next'], ['K / ↑', 'prev'], ['A', 'approve'], ['R', 'reject'], ['Enter', 'submit'],
  ['Esc', 'cancel'], ['Z', 'zoom'], ['?', 'help']];

class ReviewDesk {
  constructor(el, ctx) {
    this.el = el;
    this.ctx = ctx;
    this.queue = [];
    this.index = 0;
    this.orders = new Map(); // number -> Promise<order detail>
    this.photos = new PhotoCache();
    this.units = new Map();
    this.busy = false;
    this.seq = 0;
    this.onKey = (e) => this.key(e);
    this.build();
    document.addEventListener('keydown', this.onKey);
  }

  build() {
    this.countEl = h('span.count', { id: 'review-count' }, '…');
    this.list = h('ol.queue', { id: 'review-queue' });
    this.main = h('section.review-main', { id: 'review-main', tabindex: '-1', 'aria-live': 'polite' });
    this.reason = h('textarea', { id: 'review-reason', rows: 2, maxlength: 2000, placeholder: t('review.reason_ph'),
      'aria-label': t('review.reason') });
    this.reason.addEventListener('keydown', (e) => this.reasonKey(e));
    this.reasonError = h('p.form-error', { id: 'review-reason-error', role: 'alert' });
    this.rejectBox = h('div.reject-box', { hidden: true },
      h('label', { for: 'review-reason' }, t('review.reason')), this.reason, this.reasonError,
      h('div.buttons',
        h('button.danger', { type: 'button', id: 'review-reject-submit', onclick: () => this.decide('reject') },
          t('review.reject_submit'), h('kbd', 'Enter')),
        h('button', { type: 'button', onclick: () => this.cancelReject() }, t('review.cancel'), h('kbd', 'Esc'))));
    this.approveBtn = h('button.primary', { type: 'button', id: 'review-approve', onclick: () => this.decide('approve') },
      t('review.approve'), h('kbd', 'A'));
    this.rejectBtn = h('button.danger', { type: 'button', id: 'review-reject', onclick: () => this.openReject() },
      t('review.reject'), h('kbd', 'R'));
    this.statusEl = h('p.decision-status', { id: 'review-status', role: 'status' });
    this.bar = h('div.decision-bar',
      h('div.decide', this.approveBtn, this.rejectBtn, this.statusEl, h('span.spacer'),
        h('button.link.keys-hint', { type: 'button', id: 'review-keys-button', onclick: () => this.toggleHelp() },
          t('review.keys_hint'))),
      this.rejectBox);
    this.el.append(h('div.review',
      h('aside.review-queue',
        h('header', h('h2', t('review.queue'), ' ', this.countEl),
          h('button.link', { type: 'button', id: 'review-refresh', onclick: () => this.refresh() }, t('review.refresh'))),
        this.list),
      h('div.review-work', this.main, this.bar)));
  }

  async start() {
    try {
      const units = await this.ctx.api.get('/api/v1/units');
      this.units = new Map(units.map((u) => [u.code, u]));
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
    }
    await this.refresh(this.ctx.route.rest[0]);
  }

  unitName(code) {
    const u = this.units.get(code);
    return u ? pick(u.name_zh, u.name) : code || '–';
  }

  // ---- the queue ------------------------------------------------------------------------
  async refresh(wanted) {
    const current = wanted || (this.queue[this.index] && this.queue[this.index].business_key);
    let page;
    try {
      // (the queue needs no form schemas: the review form is this page's own)
      page = await this.ctx.api.get('/api/v1/tasks', { process: 'work_order', limit: 500, forms: false });
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      fill(this.main, h('p.placeholder.error', t('review.load_failed', { message: err.message })));
      return;
    }
    if (!this.el.isConnected) return;
    this.queue = page.items.filter((tk) => tk.name === 'Task_review' && tk.business_key);
    this.more = page.has_more;
    const at = this.queue.findIndex((tk) => tk.business_key === current);
    this.index = at >= 0 ? at : Math.min(this.index, Math.max(0, this.queue.length - 1));
    this.drawQueue();
    if (wanted && at < 0) toast(t('review.not_in_queue', { number: wanted }), 'error');
    this.showCurrent();
  }

  drawQueue() {
    this.countEl.textContent = fmtNumber(this.queue.length) + (this.more ? '+' : '');
    fill(this.list, this.queue.map((tk, i) => h('li', {
      dataset: { number: tk.business_key }, class: i === this.index ? 'current' : '',
      onclick: () => this.select(i),
    }, h('span.num', tk.business_key), h('span.age', waited(tk.created_at)),
    tk.claimed_by ? h('span.claimed', tk.claimed_by) : null)));
  }

  select(i) {
    if (!this.queue.length) return;
    this.index = Math.max(0, Math.min(this.queue.length - 1, i));
    for (const [j, li] of [...this.list.children].entries()) li.classList.toggle('current', j === this.index);
    const li = this.list.children[this.index];
    if (li) li.scrollIntoView({ block: 'nearest' });
    this.showCurrent();
  }

  order(number) {
    if (!this.orders.has(number)) {
      const p = this.ctx.api.get(`/api/v1/work-orders/${encodeURIComponent(number)}`);
      p.catch(() => this.orders.delete(number));
      this.orders.set(number, p);
    }
    return this.orders.get(number);
  }

  async showCurrent() {
    const seq = ++this.seq;
    this.cancelReject();
    this.statusEl.textContent = '';
    const task = this.queue[this.index];
    this.approveBtn.disabled = this.rejectBtn.disabled = !task;
    if (!task) {
      fill(this.main, h('p.placeholder.done', { id: 'review-empty' }, t('review.empty')));
      this.syncHash(null);
      return;
    }
    this.syncHash(task.business_key);
    fill(this.main, h('p.placeholder', t('review.loading')));
    let o;
    try {
      o = await this.order(task.business_key);
    } catch (err) {
      if (seq !== this.seq) return;
      if (!(err instanceof ApiError)) throw err;
      fill(this.main, h('p.placeholder.error', t('review.load_failed', { message: err.message })));
      return;
    }
    if (seq !== this.seq || !this.el.isConnected) return;
    this.render(o);
    const next = this.queue[this.index + 1];
    if (next) this.order(next.business_key).then((n) => n.attachments.forEach((a) => this.photos.url(a.sha256)), () => {});
  }

  syncHash(number) {
    const target = `#/review${number ? `/${encodeURIComponent(number)}` : ''}`;
    if (location.hash !== target) history.replaceState(null, '', target);
  }

  render(o) {
    const before = o.attachments.filter((a) => BEFORE.has(a.kind));
    const after = o.attachments.filter((a) => a.kind === 'after');
    const note = lastNote(o.timeline);
    this.afterShas = after.map((a) => a.sha256);
    fill(this.main,
      h('header.review-head',
        h('h2', { id: 'review-number' }, o.number),
        h('span.cat', categoryName(o.category)),
        o.overdue ? h('span.badge.bad', t('review.overdue')) : null,
        o.reject_count ? h('span.badge.warn', t('review.rejected_before', { n: o.reject_count })) : null),
      h('dl.review-facts',
        fact('unit', this.unitName(o.unit_code)), fact('area', o.area), fact('source', sourceName(o.source)),
        fact('reported', fmtTime(o.reported_at)), fact('sla', fmtTime(o.sla_due)),
        o.address_code ? fact('address', o.address_code) : null),
      h('p.description', o.description || '–'),
      note ? h('p.unit-note', t('review.note', { note })) : null,
      h('div.compare',
        this.side('before', before, 'review.no_before'),
        this.side('after', after, 'review.no_after')));
    this.main.focus({ preventScroll: true });
  }

  side(which, list, emptyKey) {
    return h(`section.side.${which}`, { id: `review-${which}` },
      h('h3', t(`review.${which}`), list.length > 1 ? ` (${list.length})` : ''),
      list.length
        ? h('div.shots', list.map((a, i) => {
          const alt = t(`review.photo_${which}`, { i: i + 1 });
          return h('figure', h('button.shot', { type: 'button', title: alt, onclick: () => this.zoomSha(a.sha256, alt) },
            this.photos.img(a.sha256, alt)), h('figcaption', kindName(a.kind), ' · ', fmtTime(a.at)));
        }))
        : h('p.muted.no-photo', t(emptyKey)));
  }

  async zoomSha(sha, alt) {
    const url = await this.photos.url(sha);
    if (url && this.el.isConnected) this.closeZoom = zoom(url, alt, t('review.close'));
  }

  // ---- deciding ---------------------------------------------------------------------------
  openReject() {
    if (!this.queue[this.index] || this.busy) return;
    this.rejectBox.hidden = false;
    this.reasonError.textContent = '';
    this.reason.focus();
  }

  cancelReject() {
    this.rejectBox.hidden = true;
    this.reason.value = '';
    this.reasonError.textContent = '';
    if (this.el.isConnected && this.el.contains(document.activeElement)) this.main.focus({ preventScroll: true });
  }

  reasonKey(e) {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      this.decide('reject');
    } else if (e.key === 'Escape') {
      e.preventDefault();
      this.cancelReject();
    }
    e.stopPropagation();
  }

  async decide(decision) {
    const task = this.queue[this.index];
    if (!task || this.busy) return;
    const reason = this.reason.value.trim();
    if (decision === 'reject' && reason.length < 2) {
      this.rejectBox.hidden = false;
      this.reasonError.textContent = t('review.need_reason');
      this.reason.focus();
      return;
    }
    const number = task.business_key;
    const data = decision === 'reject' ? { decision, reason } : { decision };
    this.busy = true;
    this.statusEl.textContent = t('review.working');
    this.approveBtn.disabled = this.rejectBtn.disabled = true;
    try {
      if (task.claimed_by !== this.ctx.me.id) await this.ctx.api.post(`/api/v1/tasks/${task.id}/claim`);
      await this.ctx.api.post(`/api/v1/tasks/${task.id}/complete`, { data });
      toast(t(decision === 'approve' ? 'review.approved' : 'review.rejected', { number }), 'ok', 2500);
      this.done(task);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      if (err.status === 409 || err.status === 404) {
        toast(t('review.taken', { number, message: err.message }), 'error');
        this.done(task);
      } else {
        this.statusEl.textContent = t('review.failed', { message: fieldMessage(err) });
        this.approveBtn.disabled = this.rejectBtn.disabled = false;
        if (decision === 'reject') this.reason.focus();
      }
    } finally {
      this.busy = false;
    }
  }

  // The task left the queue: show the one that took its place (or refill the queue).
  done(task) {
    this.orders.delete(task.business_key);
    this.queue = this.queue.filter((x) => x.id !== task.id);
    this.index = Math.min(this.index, Math.max(0, this.queue.length - 1));
    this.reason.value = '';
    if (!this.queue.length) {
      this.refresh();
      return;
    }
    this.drawQueue();
    this.showCurrent();
  }

  // ---- keys -------------------------------------------------------------------------------
  key(e) {
    if (e.ctrlKey || e.metaKey || e.altKey || !this.el.isConnected) return;
    if (document.querySelector('.photo-zoom')) return; // the zoom handles its own keys
    const tag = (e.target && e.target.tagName) || '';
    if (tag === 'TEXTAREA' || tag === 'INPUT' || tag === 'SELECT') return;
    if (this.help && e.key === 'Escape') {
      this.toggleHelp(false);
      e.preventDefault();
      return;
    }
    const k = e.key;
    const act = {
      j: () => this.select(this.index + 1), ArrowDown: () => this.select(this.index + 1),
      k: () => this.select(this.index - 1), ArrowUp: () => this.select(this.index - 1),
      a: () => this.decide('approve'), r: () => this.openReject(),
      z: () => this.afterShas && this.afterShas.length && this.zoomSha(this.afterShas[0], t('review.photo_after', { i: 1 })),
      '?': () => this.toggleHelp(),
      Escape: () => this.cancelReject(),
    }[k.length === 1 ? k.toLowerCase() : k];
    if (!act) return;
    e.preventDefault();
    act();
  }

  toggleHelp(show = !this.help) {
    if (this.help) {
      this.help.remove();
      this.help = null;
    }
    if (!show) return;
    this.help = h('div.keys-help', { id: 'review-keys', role: 'dialog', 'aria-label': t('review.keys_title') },
      h('h3', t('review.keys_title')),
      h('table', KEYS.map(([keys, what]) => h('tr', h('td', h('kbd', keys)), h('td', t(`review.key.${what}`))))),
      h('button', { type: 'button', onclick: () => this.toggleHelp(false) }, t('review.close'), h('kbd', 'Esc')));
    this.el.querySelector('.review').append(this.help);
  }

  destroy() {
    this.seq++;
    document.removeEventListener('keydown', this.onKey);
    if (this.closeZoom && document.querySelector('.photo-zoom')) this.closeZoom();
    this.photos.drop();
  }
}

function fact(key, value) {
  return [h('dt', t(`review.f.${key}`)), h('dd', value)];
}

function lastNote(timeline) {
  for (let i = timeline.length - 1; i >= 0; i--) {
    const e = timeline[i];
    if (e.element === 'Task_rectify' && e.kind === 'task_completed') return e.reason;
  }
  return null;
}

function waited(iso) {
  const min = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 60000));
  if (min < 60) return t('review.min', { n: min });
  if (min < 48 * 60) return t('review.hour', { n: Math.round(min / 60) });
  return t('review.day', { n: Math.round(min / 1440) });
}

function fieldMessage(err) {
  if (err.errors && typeof err.errors === 'object') {
    const parts = Object.values(err.errors).map((v) => (typeof v === 'string' ? v
      : (v && ((lang() === 'zh' && v.message_zh) || v.message)) || ''));
    if (parts.filter(Boolean).length) return parts.filter(Boolean).join('; ');
  }
  return err.message;
}

export default {
  mount(el, ctx) {
    const desk = new ReviewDesk(el, ctx);
    desk.start();
    return {
      unmount: () => desk.destroy(),
      route: (r) => {
        const wanted = r.rest[0];
        const current = desk.queue[desk.index];
        if (wanted && (!current || current.business_key !== wanted)) {
          const at = desk.queue.findIndex((tk) => tk.business_key === wanted);
          if (at >= 0) desk.select(at);
          else desk.refresh(wanted);
        }
      },
    };
  },
};
