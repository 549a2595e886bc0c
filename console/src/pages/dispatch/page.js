// The dispatch desk: every incoming order (citizen, camera, patrol, inspection) with filters
// and pages of 50 on the left, the chosen order on the right (photos, timeline, comments,
// its process diagram, re-route / reassign / comment), and the "not ours" queue (orders a
// unit sent back) as a tab of its own with its count.
// Route: #/dispatch/<number>?tab=notours&state=…&page=2 (filters live in the address).
import './strings.js';
import './page.css';
import { ApiError } from '../../api.js';
import { debounce, fill, h } from '../../dom.js';
import { fmtNumber, fmtTime, pick, t } from '../../i18n.js';
import { Detail } from './detail.js';
import { CATEGORY_KEYS, SOURCE_KEYS, STATE_KEYS, categoryName, sourceName, stateName } from './labels.js';

const PAGE_SIZE = 50;
const FILTERS = ['q', 'source', 'state', 'category', 'unit', 'area', 'overdue'];

class Desk {
  constructor(el, ctx) {
    this.el = el;
    this.ctx = ctx;
    this.units = [];
    this.unitNames = new Map();
    this.seq = 0;
    this.query = {};
    this.selected = null;
    this.build();
  }

  build() {
    const { t: tr } = this.ctx;
    this.tabAll = h('button.tab', { type: 'button', role: 'tab', id: 'dispatch-tab-all', onclick: () => this.go({ tab: '' }) },
      tr('dispatch.tab.all'));
    this.notoursCount = h('span.count', { id: 'dispatch-notours-count' }, '…');
    this.tabNotOurs = h('button.tab', { type: 'button', role: 'tab', id: 'dispatch-tab-notours',
      onclick: () => this.go({ tab: 'notours' }) }, tr('dispatch.tab.notours'), ' ', this.notoursCount);
    this.inputs = {
      q: h('input', { type: 'search', id: 'dispatch-q', placeholder: tr('dispatch.filter.q'), maxlength: 60,
        'aria-label': tr('dispatch.filter.q') }),
      source: this.select('source', SOURCE_KEYS.map((k) => [k, sourceName(k)])),
      state: this.select('state', STATE_KEYS.map((k) => [k, stateName(k)])),
      category: this.select('category', CATEGORY_KEYS.map((k) => [k, categoryName(k)])),
      unit: this.select('unit', []),
      area: h('input', { type: 'text', id: 'dispatch-area', placeholder: tr('dispatch.filter.area_ph'), maxlength: 40,
        'aria-label': tr('dispatch.filter.area'), class: 'area' }),
      overdue: h('input', { type: 'checkbox', id: 'dispatch-overdue' }),
    };
    const typed = debounce(() => this.applyFilters(), 350);
    this.inputs.q.addEventListener('input', typed);
    this.inputs.area.addEventListener('input', typed);
    for (const k of ['source', 'state', 'category', 'unit', 'overdue']) {
      this.inputs[k].addEventListener('change', () => this.applyFilters());
    }
    this.filterBar = h('div.filters',
      this.inputs.q, this.inputs.source, this.inputs.state, this.inputs.category, this.inputs.unit, this.inputs.area,
      h('label.check', this.inputs.overdue, tr('dispatch.filter.overdue')),
      h('button.link', { type: 'button', id: 'dispatch-reset', onclick: () => this.go({ reset: true }) },
        tr('dispatch.filter.reset')));
    this.tbody = h('tbody');
    this.status = h('div.list-status', { role: 'status' });
    this.range = h('span', { id: 'dispatch-total' });
    this.prev = h('button', { type: 'button', id: 'dispatch-prev', onclick: () => this.go({ page: this.page - 1 }) },
      tr('dispatch.prev'));
    this.next = h('button', { type: 'button', id: 'dispatch-next', onclick: () => this.go({ page: this.page + 1 }) },
      tr('dispatch.next'));
    const list = h('section.dispatch-list',
      h('div.tabs', { role: 'tablist' }, this.tabAll, this.tabNotOurs),
      this.filterBar,
      h('div.table-wrap',
        h('table.orders', { id: 'dispatch-orders' },
          h('thead', h('tr', ['number', 'category', 'state', 'unit', 'reported'].map((c) => h('th', tr(`dispatch.col.${c}`))))),
          this.tbody),
        this.status),
      h('div.pager', this.range, h('span.spacer'), this.prev, this.next));
    this.detailEl = h('section.dispatch-detail', { id: 'dispatch-detail', 'aria-live': 'polite' });
    this.el.append(h('div.dispatch', list, this.detailEl));
    this.detail = new Detail(this.detailEl, this.ctx, {
      unitName: (code) => this.unitName(code),
      units: () => this.units,
      changed: () => { this.load(); this.count(); },
    });
  }

  select(key, options) {
    const el = h('select', { id: `dispatch-${key}`, 'aria-label': t(`dispatch.filter.${key}`) });
    this.fillSelect(el, key, options);
    return el;
  }

  fillSelect(el, key, options) {
    const keep = el.value;
    fill(el, h('option', { value: '' }, `${t(`dispatch.filter.${key}`)}: ${t('dispatch.filter.any')}`),
      options.map(([v, text]) => h('option', { value: v }, text)));
    el.value = keep;
  }

  unitName(code) {
    if (!code) return '–';
    const u = this.unitNames.get(code);
    return u ? pick(u.name_zh, u.name) : code;
  }

  async start() {
    try {
      this.units = await this.ctx.api.get('/api/v1/units');
    } catch (err) {
      this.units = [];
      if (!(err instanceof ApiError)) throw err;
    }
    this.unitNames = new Map(this.units.map((u) => [u.code, u]));
    this.fillSelect(this.inputs.unit, 'unit', this.units.map((u) => [u.code, pick(u.name_zh, u.name)]));
    this.route(this.ctx.route, true);
    this.count();
  }

  // ---- the address is the state: #/dispatch/<number>?tab=…&filters…&page=n ----------------
  route(r, first = false) {
    const query = r.query || {};
    const number = r.rest && r.rest[0] ? r.rest[0] : null;
    const same = !first && FILTERS.concat(['tab', 'page']).every((k) => (query[k] || '') === (this.query[k] || ''));
    this.query = { ...query };
    this.tab = query.tab === 'notours' ? 'notours' : 'all';
    this.page = Math.max(1, parseInt(query.page, 10) || 1);
    for (const k of FILTERS) {
      if (k === 'overdue') this.inputs.overdue.checked = query.overdue === 'true';
      else if (document.activeElement !== this.inputs[k]) this.inputs[k].value = query[k] || '';
    }
    this.inputs.state.disabled = this.tab === 'notours';
    this.inputs.unit.hidden = ['unit_worker', 'unit_leader'].includes(this.ctx.me.role); // their unit only anyway
    this.tabAll.classList.toggle('active', this.tab === 'all');
    this.tabAll.setAttribute('aria-selected', String(this.tab === 'all'));
    this.tabNotOurs.classList.toggle('active', this.tab === 'notours');
    this.tabNotOurs.setAttribute('aria-selected', String(this.tab === 'notours'));
    if (!same) this.load();
    if (number !== this.selected || first) {
      this.selected = number;
      this.markSelected();
      this.detail.show(number);
    }
  }

  hash(number, query) {
    const q = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== '' && v !== undefined && v !== null));
    const s = q.toString();
    return `#/dispatch${number ? `/${encodeURIComponent(number)}` : ''}${s ? `?${s}` : ''}`;
  }

  // Change the tab, page or filters (keeping the chosen order).
  go({ tab, page, reset, filters } = {}) {
    let q = { ...this.query };
    if (reset) q = { tab: q.tab };
    if (tab !== undefined) { q.tab = tab; q.page = ''; }
    if (filters) { Object.assign(q, filters); q.page = ''; }
    if (page !== undefined) q.page = page > 1 ? String(page) : '';
    this.ctx.navigate(this.hash(this.selected, q), { replace: true });
  }

  applyFilters() {
    const f = {};
    for (const k of FILTERS) {
      f[k] = k === 'overdue' ? (this.inputs.overdue.checked ? 'true' : '') : this.inputs[k].value.trim();
    }
    this.go({ filters: f });
  }

  params() {
    const p = { limit: PAGE_SIZE, offset: (this.page - 1) * PAGE_SIZE };
    for (const k of FILTERS) if (this.query[k]) p[k] = this.query[k];
    if (this.tab === 'notours') p.state = 'rerouting';
    return p;
  }

  async load() {
    const seq = ++this.seq;
    this.status.textContent = t('dispatch.loading');
    let page;
    try {
      page = await this.ctx.api.get('/api/v1/work-orders', this.params());
    } catch (err) {
      if (seq !== this.seq) return;
      if (!(err instanceof ApiError)) throw err;
      fill(this.tbody);
      this.status.textContent = t('dispatch.load_failed', { message: err.message });
      return;
    }
    if (seq !== this.seq || !this.el.isConnected) return;
    this.total = page.total;
    fill(this.tbody, page.items.map((o) => this.row(o)));
    this.status.textContent = page.items.length ? '' : t(this.tab === 'notours' ? 'dispatch.notours_empty' : 'dispatch.empty');
    const from = page.total ? page.offset + 1 : 0;
    const to = page.offset + page.items.length;
    this.range.textContent = page.total > PAGE_SIZE
      ? t('dispatch.range', { from: fmtNumber(from), to: fmtNumber(to), n: fmtNumber(page.total) })
      : t('dispatch.total', { n: fmtNumber(page.total) });
    this.prev.disabled = this.page <= 1;
    this.next.disabled = to >= page.total;
    this.markSelected();
  }

  row(o) {
    const open = () => this.ctx.navigate(this.hash(o.number, this.query));
    return h('tr', { tabindex: '0', dataset: { number: o.number }, onclick: open,
      onkeydown: (e) => { if (e.key === 'Enter') open(); } },
    h('td.number', o.number, o.overdue ? h('span.badge.bad', t('dispatch.overdue')) : null),
    h('td', { title: categoryName(o.category) }, h('div', categoryName(o.category)), h('div.sub', sourceName(o.source))),
    h('td', h(`span.state.s-${o.state}`, stateName(o.state))),
    h('td.unit', { title: this.unitName(o.unit_code) }, this.unitName(o.unit_code)),
    h('td.time', fmtTime(o.reported_at)));
  }

  markSelected() {
    for (const tr of this.tbody.children) tr.classList.toggle('selected', tr.dataset.number === this.selected);
  }

  async count() {
    try {
      const page = await this.ctx.api.get('/api/v1/work-orders', { state: 'rerouting', limit: 1 });
      if (this.el.isConnected) this.notoursCount.textContent = fmtNumber(page.total);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      this.notoursCount.textContent = '?';
    }
  }

  destroy() {
    this.seq++;
    this.detail.destroy();
  }
}

export default {
  mount(el, ctx) {
    const desk = new Desk(el, ctx);
    desk.start();
    return { unmount: () => desk.destroy(), route: (r) => desk.route(r) };
  },
};
