// The process designer (#/designer/<kind>/<key>/<version>/<view>): open a deployed BPMN, DMN or
// form; edit it in the bpmn.io editors; check it in the browser (bpmnlint) and on the server;
// deploy it as a new version; compare two versions; see where running instances wait.
// Designers deploy; dispatchers and administrators may look (the API refuses them anyway).
import './page.css';
import { h, fill, clear } from '../../dom.js';
import { t, fmtTime } from '../../i18n.js';
import './strings.js';
import { choices, known } from './state.js';

const BASE = '/api/v1/processes';
const KIND_ORDER = ['bpmn', 'dmn', 'form'];
const VIEWS = { bpmn: ['edit', 'diff', 'heat'], dmn: ['edit'], form: ['edit', 'preview'] };

// The editors are big: each loads when first needed.
const loaders = {
  bpmn: () => import('./bpmn-editor.js').then((m) => m.openBpmn),
  dmn: () => import('./dmn-editor.js').then((m) => m.openDmn),
  form: () => import('./form-editor.js').then((m) => m.openForm),
  diff: () => import('./diff.js').then((m) => m.openDiff),
  heat: () => import('./heat.js').then((m) => m.openHeat),
};

class Designer {
  constructor(el, ctx) {
    this.el = el;
    this.ctx = ctx;
    this.api = ctx.api;
    this.canDeploy = ctx.me.permissions.includes('processes.deploy');
    this.defs = [];
    this.open = null;        // {kind, key, version, filename}
    this.view = 'edit';
    this.editor = null;      // the edit view's editor
    this.aux = null;         // the diff or heat viewer
    this.auxData = null;
    this.serverProblems = [];
    this.lintIssues = {};
    this.dirty = false;
    this.ticket = 0;
    this.diffPick = { from: null, to: null };
    this.build();
  }

  // ---- layout ---------------------------------------------------------------------------
  build() {
    this.list = h('aside.dsg-list');
    this.toolbar = h('div.dsg-toolbar');
    this.body = h('div.dsg-body');
    this.side = h('div.dsg-side', { hidden: true });
    this.problems = h('div.dsg-problems');
    this.status = h('div.dsg-status');
    fill(this.el, h('div.designer', this.list,
      h('section.dsg-main', this.toolbar, h('div.dsg-work', this.body, this.side), this.status, this.problems)));
    this.renderToolbar();
    this.renderProblems();
  }

  async start() {
    try {
      const [defs, ops] = await Promise.all([this.api.get(BASE), this.api.get(`${BASE}/operations`)]);
      this.setDefinitions(defs);
      choices.operations = ops;
      known.operations = new Set(ops.map((o) => o.name));
    } catch (err) {
      fill(this.body, h('p.page-message', t('designer.load_failed', { message: err.message })));
      return;
    }
    this.route(this.ctx.route);
  }

  setDefinitions(defs) {
    this.defs = defs;
    choices.forms = [...new Set(defs.filter((d) => d.kind === 'form').map((d) => d.key))].sort();
    known.forms = new Set(choices.forms);
    choices.decisions = [...new Set(defs.filter((d) => d.kind === 'dmn').map((d) => d.key))].sort();
    known.decisions = new Set(choices.decisions);
    known.processes = new Set(defs.filter((d) => d.kind === 'bpmn').map((d) => d.key));
    this.renderList();
  }

  versions(kind, key) {
    return this.defs.filter((d) => d.kind === kind && d.key === key).sort((a, b) => a.version - b.version);
  }

  renderList() {
    const groups = KIND_ORDER.map((kind) => {
      const keys = [...new Set(this.defs.filter((d) => d.kind === kind).map((d) => d.key))].sort();
      return h('div.dsg-group', h('h3', t(`designer.kind.${kind}`)), keys.map((key) => {
        const vs = this.versions(kind, key);
        const latest = vs[vs.length - 1];
        const running = vs.reduce((n, v) => n + ((v.instances && v.instances.running) || 0), 0);
        const active = this.open && this.open.kind === kind && this.open.key === key;
        const row = h(`div.dsg-item${active ? '.active' : ''}`, { dataset: { kind, key } },
          h('button.dsg-item-open', { type: 'button', onclick: () => this.go(kind, key, latest.version, 'edit') },
            h('span.dsg-item-key', key),
            h('span.dsg-item-meta', `v${latest.version}`,
              kind === 'bpmn' ? h('span.dsg-running', t('designer.list.running', { n: running })) : null)));
        if (active) {
          row.append(h('div.dsg-versions', vs.slice().reverse().map((v) => h(
            `button.dsg-version${v.version === this.open.version ? '.current' : ''}`,
            { type: 'button', dataset: { version: v.version },
              title: `${fmtTime(v.deployed_at)} · ${v.deployed_by}`,
              onclick: () => this.go(kind, key, v.version, this.view) },
            `v${v.version}`, v.latest ? h('small', ` ${t('designer.list.latest')}`) : null,
            v.instances ? h('small.dsg-running', ` · ${v.instances.running}`) : null))));
        }
        return row;
      }));
    });
    fill(this.list, h('h2', t('designer.list.title')), this.defs.length ? groups : h('p', t('designer.list.empty')));
  }

  renderToolbar() {
    if (!this.open) {
      fill(this.toolbar, h('span.dsg-title', t('designer.pick')));
      return;
    }
    const { kind, key, version } = this.open;
    const tabs = VIEWS[kind].map((v) => h(`button.dsg-tab${v === this.view ? '.active' : ''}`,
      { type: 'button', dataset: { view: v }, onclick: () => this.go(kind, key, version, v) }, t(`designer.view.${v}`)));
    const editing = this.view === 'edit' || this.view === 'preview';
    fill(this.toolbar,
      h('span.dsg-title', h('b', key), ` v${version}`),
      h('div.dsg-tabs', tabs),
      h('span.dsg-spacer'),
      this.dirty ? h('span.dsg-dirty', t('designer.dirty')) : null,
      editing && this.canDeploy ? h('button', { id: 'dsg-validate', type: 'button', onclick: () => this.validate() },
        t('designer.btn.validate')) : null,
      editing && this.canDeploy ? h('button.primary', { id: 'dsg-deploy', type: 'button', onclick: () => this.deploy() },
        t('designer.btn.deploy')) : null,
      !this.canDeploy ? h('span.dsg-readonly-note', t('designer.readonly')) : null,
      h('a.dsg-download', { href: '#', onclick: (e) => { e.preventDefault(); this.download(); } },
        t('designer.btn.download')));
  }

  // setStatus(key, vars, kind): a message under the editor, said anew after a language switch
  setStatus(key, vars, kind = '') {
    this.statusMessage = key ? [key, vars, kind] : null;
    fill(this.status, key ? h(`span.${kind || 'info'}`, t(key, vars)) : null);
    this.status.className = `dsg-status ${kind}`;
  }

  // ---- routing --------------------------------------------------------------------------
  go(kind, key, version, view, replace = false) {
    this.ctx.navigate(`#/designer/${kind}/${encodeURIComponent(key)}/${version}/${view}`, { replace });
  }

  route(r) {
    const [kind, key, version, view] = r.rest;
    if (!kind || !VIEWS[kind] || !key) {
      // the process with the most running instances opens first
      const load = (d) => this.versions('bpmn', d.key).reduce((n, v) => n + ((v.instances && v.instances.running) || 0), 0);
      const first = this.defs.filter((d) => d.kind === 'bpmn' && d.latest).sort((a, b) => load(b) - load(a))[0];
      // (opened without rewriting the address: #/designer stays what was asked for)
      if (first) this.route({ ...r, rest: ['bpmn', first.key, String(first.version), 'edit'] });
      return;
    }
    const vs = this.versions(kind, key);
    const v = Number(version) || (vs.length ? vs[vs.length - 1].version : 1);
    const nextView = VIEWS[kind].includes(view) ? view : 'edit';
    const sameFile = this.open && this.open.kind === kind && this.open.key === key && this.open.version === v;
    this.view = nextView;
    if (!sameFile) {
      const row = vs.find((d) => d.version === v);
      this.open = { kind, key, version: v, filename: row ? row.filename : `${key}.${kind}` };
      this.dirty = false;
      this.serverProblems = [];
      this.lintIssues = {};
      this.diffPick = { from: null, to: null };
      this.closeEditor();
    }
    this.renderList();
    this.renderToolbar();
    this.show();
  }

  closeEditor() {
    this.closeAux();
    if (this.editor) this.editor.destroy();
    this.editor = null;
    this.editorPane = null;
    clear(this.body);
  }

  closeAux() {
    if (this.aux) this.aux.destroy();
    this.aux = null;
    this.auxData = null;
    if (this.auxPane) this.auxPane.remove();
    this.auxPane = null;
  }

  async fetchText(kind, key, version) {
    const res = await this.api.get(`${BASE}/${kind}/${encodeURIComponent(key)}/${version}`, null, { raw: true });
    return res.text();
  }

  async show() {
    const ticket = ++this.ticket;
    const { kind, key, version } = this.open;
    this.closeAux();
    this.side.hidden = true;
    try {
      if (this.view === 'edit' || this.view === 'preview') {
        if (!this.editor) {
          const pane = h('div.dsg-pane.dsg-edit');
          this.body.append(pane);
          this.setStatus('designer.loading');
          const [open, text] = await Promise.all([loaders[kind](), this.fetchText(kind, key, version)]);
          if (ticket !== this.ticket) return pane.remove();
          this.editorPane = pane;
          this.editor = await open(pane, text, {
            readOnly: !this.canDeploy,
            onChange: () => this.changed(),
            onLint: (issues) => {
              this.lintIssues = issues;
              this.renderProblems();
            },
          });
          this.setStatus(...(this.afterLoad || [null]));
          this.afterLoad = null;
        }
        this.editorPane.hidden = false;
        if (kind === 'form') await this.editor.preview(this.view === 'preview');
        this.renderProblems();
        return;
      }
      if (this.editorPane) this.editorPane.hidden = true;
      const pane = h('div.dsg-pane');
      this.auxPane = pane;
      this.body.append(pane);
      this.side.hidden = false;
      fill(this.side, h('p', t('designer.loading')));
      if (this.view === 'diff') await this.showDiff(pane, ticket);
      else await this.showHeat(pane, ticket);
    } catch (err) {
      if (ticket !== this.ticket) return;
      console.warn(err);
      this.setStatus('designer.load_failed', { message: err.message }, 'error');
    }
    this.renderProblems();
  }

  changed() {
    if (!this.dirty) {
      this.dirty = true;
      this.renderToolbar();
    }
  }

  // ---- compare two versions -------------------------------------------------------------
  async showDiff(pane, ticket) {
    const { key, version } = this.open;
    const vs = this.versions('bpmn', key).map((v) => v.version);
    if (vs.length < 2) {
      fill(this.side, h('p.dsg-note', t('designer.diff.one_version')));
      return;
    }
    const to = this.diffPick.to || version;
    const from = this.diffPick.from || vs.filter((v) => v < to).pop() || vs.find((v) => v !== to);
    this.diffPick = { from, to };
    const [open, oldXml, newXml] = await Promise.all([loaders.diff(), this.fetchText('bpmn', key, from),
      this.fetchText('bpmn', key, to)]);
    if (ticket !== this.ticket) return;
    this.aux = await open(pane, oldXml, newXml);
    const pick = (which) => h('select', { id: `dsg-diff-${which}`,
      onchange: (e) => {
        this.diffPick[which] = Number(e.target.value);
        this.show();
      },
    }, vs.map((v) => h('option', { value: v, selected: v === this.diffPick[which] }, `v${v}`)));
    this.auxData = { from, to };
    this.renderDiffSide(pick);
  }

  renderDiffSide(pick) {
    const changes = this.aux.changes;
    fill(this.side,
      h('div.dsg-diff-pick', h('label', t('designer.diff.from'), pick('from')), h('label', t('designer.diff.to'), pick('to'))),
      h('div.dsg-diff-legend', ['added', 'changed', 'layout', 'removed'].map((k) => h(`span.dsg-key.dsg-key-${k}`,
        t(`designer.diff.${k}`)))),
      h('p.dsg-note', changes.length ? t('designer.diff.count', { n: changes.length }) : t('designer.diff.none')),
      h('ul.dsg-changes', changes.map((c) => h(`li.dsg-change.dsg-change-${c.kind}`, {
        dataset: { element: c.id, kind: c.kind }, onclick: () => this.aux.select(c.id),
      },
      h('span.dsg-change-kind', t(`designer.diff.${c.kind}`)),
      h('span.dsg-change-name', c.name || c.id),
      h('small', ` ${c.type} · ${c.id}`),
      c.attrs.length ? h('ul.dsg-attrs', c.attrs.map((a) => h('li', `${a.name}: `,
        h('del', String(a.from ?? '–')), ' → ', h('ins', String(a.to ?? '–'))))) : null))));
  }

  // ---- heatmap -------------------------------------------------------------------------
  async showHeat(pane, ticket) {
    const { key, version } = this.open;
    const [open, xml, activity] = await Promise.all([loaders.heat(), this.fetchText('bpmn', key, version),
      this.api.get(`${BASE}/${encodeURIComponent(key)}/versions/${version}/activity`)]);
    if (ticket !== this.ticket) return;
    this.aux = await open(pane, xml);
    this.aux.show(activity);
    this.auxData = activity;
    this.renderHeatSide();
  }

  async refreshHeat() {
    const { key, version } = this.open;
    const activity = await this.api.get(`${BASE}/${encodeURIComponent(key)}/versions/${version}/activity`);
    if (!this.aux || this.view !== 'heat') return;
    this.aux.show(activity);
    this.auxData = activity;
    this.renderHeatSide();
  }

  renderHeatSide() {
    const a = this.auxData;
    const rows = Object.entries(a.elements).filter(([, c]) => c.waiting || c.incidents || c.passed)
      .sort((x, y) => y[1].waiting - x[1].waiting || y[1].passed - x[1].passed);
    fill(this.side,
      h('h3', t('designer.heat.title')),
      h('p.dsg-note', t('designer.heat.summary', { version: a.version, running: a.running, total: a.total })),
      h('div.dsg-legend', h('span.dsg-legend-bar'), h('small', t('designer.heat.legend'))),
      h('button', { id: 'dsg-heat-refresh', type: 'button', onclick: () => this.refreshHeat() }, t('designer.btn.refresh')),
      a.running ? null : h('p.dsg-note', t('designer.heat.none')),
      h('table.dsg-heat-table', h('thead', h('tr', h('th', t('designer.heat.element')), h('th', t('designer.heat.waiting')),
        h('th', t('designer.heat.passed')), h('th', t('designer.heat.incidents')))),
      h('tbody', rows.map(([id, c]) => h('tr', { dataset: { element: id }, onclick: () => this.aux.select(id) },
        h('td', this.aux.name(id)), h('td.num', c.waiting), h('td.num', c.passed), h('td.num', c.incidents))))));
  }

  // ---- checks and deploy -----------------------------------------------------------------
  async upload() {
    const content = await this.editor.getContent();
    const form = new FormData();
    const type = this.open.kind === 'form' ? 'application/json' : 'application/xml';
    form.append('files', new Blob([content], { type }), this.open.filename);
    return form;
  }

  showServerProblems(problems) {
    this.serverProblems = problems;
    if (this.editor && this.editor.marks) this.editor.marks.show(problems);
    if (this.editor && this.editor.showProblems) this.editor.showProblems(problems);
    this.renderProblems();
  }

  async validate() {
    if (!this.editor) return;
    try {
      const result = await this.api.upload(`${BASE}/validate`, await this.upload());
      this.showServerProblems(result.problems);
      if (result.valid) this.setStatus('designer.valid', null, 'ok');
      else this.setStatus('designer.invalid', { n: result.problems.length }, 'error');
    } catch (err) {
      this.failed(err);
    }
  }

  async deploy() {
    if (!this.editor) return;
    const button = this.toolbar.querySelector('#dsg-deploy');
    if (button) button.disabled = true;
    try {
      const result = await this.api.upload(BASE, await this.upload());
      this.showServerProblems([]);
      const mine = result.deployed.find((d) => d.kind === this.open.kind && d.key === this.open.key)
        || result.deployed[0];
      this.setDefinitions(await this.api.get(BASE));
      if (!mine.changed) {
        this.setStatus('designer.unchanged', null, 'info');
        this.ctx.toast(t('designer.unchanged'), 'info');
        this.dirty = false;
        this.renderToolbar();
        return;
      }
      this.ctx.toast(t('designer.deployed', { key: mine.key, version: mine.version }), 'ok');
      this.open = null;  // open the new version afresh, then say so
      this.afterLoad = ['designer.deployed', { key: mine.key, version: mine.version }, 'ok'];
      this.go(mine.kind, mine.key, mine.version, this.view);
    } catch (err) {
      this.failed(err);
    } finally {
      if (button) button.disabled = false;
    }
  }

  failed(err) {
    const problems = err.errors && Array.isArray(err.errors.problems) ? err.errors.problems : null;
    if (problems) {
      this.showServerProblems(problems);
      this.setStatus('designer.invalid', { n: problems.length }, 'error');
    } else {
      this.setStatus('designer.deploy_failed', { message: err.message }, 'error');
    }
  }

  async download() {
    const { kind, key, version } = this.open;
    const text = this.editor && (this.view === 'edit' || this.view === 'preview')
      ? await this.editor.getContent() : await this.fetchText(kind, key, version);
    const url = URL.createObjectURL(new Blob([text], { type: kind === 'form' ? 'application/json' : 'application/xml' }));
    const a = h('a', { href: url, download: this.open.filename });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  // ---- the problem list ------------------------------------------------------------------
  renderProblems() {
    const showing = this.open && (this.view === 'edit' || this.view === 'preview');
    if (!showing) {
      this.problems.hidden = true;
      return;
    }
    this.problems.hidden = false;
    const lint = [];
    let errors = 0;
    let warnings = 0;
    for (const [element, issues] of Object.entries(this.lintIssues || {})) {
      for (const issue of issues) {
        if (issue.category === 'error' || issue.category === 'rule-error') errors += 1;
        else warnings += 1;
        lint.push({ source: 'lint', element: element === 'undefined' ? null : element, message: issue.message,
          category: issue.category === 'warn' ? 'warn' : 'error', rule: issue.rule || issue.id });
      }
    }
    const server = this.serverProblems.map((p) => ({ source: 'server', category: 'error', ...p }));
    const all = [...server, ...lint];
    const item = (p) => h(`li.dsg-problem.${p.category}`, {
      dataset: { element: p.element || '', source: p.source },
      onclick: () => p.element && this.editor && this.editor.select(p.element),
    },
    h('span.dsg-problem-source', t(`designer.problems.${p.source}`)),
    p.element ? h('code', p.element) : h('code', `${t('designer.problems.file')} ${p.file || ''}`),
    h('span.dsg-problem-message', p.message));
    fill(this.problems,
      h('div.dsg-problems-head', h('b', t('designer.problems.title')),
        this.open.kind === 'bpmn' ? h('small', t('designer.problems.lint_count', { e: errors, w: warnings })) : null),
      all.length ? h('ul', all.map(item)) : h('p.dsg-note', t('designer.problems.none')));
  }

  async relabel() {
    if (this.editor && this.editor.relabel) {
      const dirty = this.dirty;   // (drawing anew is no edit)
      await this.editor.relabel();
      this.dirty = dirty;
    }
    if (this.statusMessage) this.setStatus(...this.statusMessage);
    this.renderList();
    this.renderToolbar();
    this.renderProblems();
    if (this.view === 'heat' && this.auxData) this.renderHeatSide();
    if (this.view === 'diff' && this.aux) this.show();
  }

  unmount() {
    this.ticket += 1;
    this.closeEditor();
  }
}

export default {
  mount(el, ctx) {
    const page = new Designer(el, ctx);
    page.start();
    return {
      unmount: () => page.unmount(),
      route: (r) => page.defs.length && page.route(r),
      relabel: () => page.relabel(),
    };
  },
};
