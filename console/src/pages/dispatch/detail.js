// The chosen order: facts, actions (re-route, reassign, comment), the process diagram with
// where the order stands, photos, timeline and comments.
import { ApiError } from '../../api.js';
import { clear, fill, h, toast } from '../../dom.js';
import { fmtTime, t } from '../../i18n.js';
import { showDiagram } from './diagram.js';
import { categoryName, elementName, eventName, kindName, priorityName, sourceName, stateName } from './labels.js';
import { PhotoCache, zoom } from './photos.js';

export class Detail {
  constructor(el, ctx, desk) {
    this.el = el;
    this.ctx = ctx;
    this.desk = desk;
    this.seq = 0;
    this.photos = new PhotoCache();
    this.diagram = null;
    this.number = null;
  }

  async show(number) {
    const seq = ++this.seq;
    this.number = number;
    this.dropDiagram();
    if (!number) {
      fill(this.el, h('p.placeholder', t('dispatch.pick')));
      return;
    }
    fill(this.el, h('p.placeholder', t('dispatch.loading')));
    let order;
    try {
      order = await this.ctx.api.get(`/api/v1/work-orders/${encodeURIComponent(number)}`);
    } catch (err) {
      if (seq !== this.seq) return;
      if (!(err instanceof ApiError)) throw err;
      fill(this.el, h('p.placeholder.error', t('dispatch.load_failed', { message: err.message })));
      return;
    }
    if (seq !== this.seq || !this.el.isConnected) return;
    this.order = order;
    this.render(order, seq);
  }

  reload() {
    const n = this.number;
    this.number = null;
    return this.show(n);
  }

  render(o, seq) {
    const tasks = (o.process && o.process.open_tasks) || [];
    this.actionBox = h('div.action-form');
    const diagramBox = h('div.diagram', { id: 'dispatch-diagram' });
    const unitSaid = o.state === 'rerouting' ? lastReason(o.timeline, 'Task_rectify') : null;
    fill(this.el,
      h('header.detail-head',
        h('h2', { id: 'dispatch-detail-number' }, o.number),
        h(`span.state.s-${o.state}`, { id: 'dispatch-detail-state' }, stateName(o.state)),
        o.overdue ? h('span.badge.bad', t('dispatch.overdue')) : null,
        h('span.spacer'),
        this.actions(o, tasks)),
      unitSaid ? h('p.unit-said', t('dispatch.unit_said', { reason: unitSaid })) : null,
      this.actionBox,
      h('p.description', o.description || '–'),
      h('dl.facts',
        fact('source', sourceName(o.source)), fact('category', categoryName(o.category)),
        fact('unit', this.desk.unitName(o.unit_code)), fact('area', o.area),
        fact('address', o.address_code || '–'), fact('priority', priorityName(o.priority)),
        fact('reported', fmtTime(o.reported_at)), fact('sla', fmtTime(o.sla_due)),
        o.closed_at ? fact('closed', fmtTime(o.closed_at)) : null,
        o.reporter ? fact('reporter', o.reporter) : null,
        fact('counts', `${o.reject_count} / ${o.reroute_count}`, 'dispatch-counts'),
        fact('tasks', tasks.length ? tasks.map((tk) => taskLine(tk)).join('; ') : '–')),
      h('h3', t('dispatch.s.diagram')), diagramBox,
      h('h3', t('dispatch.s.photos')), this.photoStrip(o.attachments),
      h('h3', t('dispatch.s.timeline')), this.timeline(o.timeline),
      h('h3', t('dispatch.s.comments')), this.comments(o));
    if (!o.process) {
      diagramBox.append(h('p.muted', t('dispatch.no_process')));
      return;
    }
    showDiagram(diagramBox, o.number, o.process.position).then((d) => {
      if (seq !== this.seq) d.destroy();
      else this.diagram = d;
    }, (err) => {
      if (seq !== this.seq) return;
      diagramBox.append(h('p.muted', t('dispatch.diagram_failed', { message: err.message })));
    });
  }

  actions(o, tasks) {
    const me = this.ctx.me;
    const out = [];
    const reroute = tasks.find((tk) => tk.name === 'Task_reroute');
    if (reroute && me.groups.includes('dispatcher')) {
      out.push(h('button.primary', { type: 'button', id: 'dispatch-reroute', onclick: () => this.rerouteForm(o, reroute) },
        t('dispatch.a.reroute')));
    }
    if (tasks.length && me.permissions.includes('tasks.reassign')) {
      out.push(h('button', { type: 'button', id: 'dispatch-reassign', onclick: () => this.reassignForm(o, tasks) },
        t('dispatch.a.reassign')));
    }
    return h('div.actions', out);
  }

  // ---- re-route: complete Task_reroute with {unit, reason} (the wo_reroute form) ----------
  rerouteForm(o, task) {
    const units = this.desk.units().filter((u) => u.code !== o.unit_code);
    const unit = h('select', { id: 'reroute-unit', 'aria-label': t('dispatch.reroute.unit') },
      h('option', { value: '' }, t('dispatch.reroute.choose')),
      units.map((u) => h('option', { value: u.code }, `${this.desk.unitName(u.code)} (${u.code})`)));
    const reason = h('textarea', { id: 'reroute-reason', rows: 2, maxlength: 2000, 'aria-label': t('dispatch.reroute.reason') });
    const error = h('p.form-error', { role: 'alert' });
    const submit = h('button.primary', { type: 'submit', id: 'reroute-submit' }, t('dispatch.reroute.submit'));
    unit.addEventListener('change', () => { error.textContent = ''; });
    reason.addEventListener('input', () => { error.textContent = ''; });
    const form = h('form.panel', {
      onsubmit: async (e) => {
        e.preventDefault();
        if (!unit.value) { error.textContent = t('dispatch.reroute.need_unit'); unit.focus(); return; }
        if (!reason.value.trim()) { error.textContent = t('dispatch.reroute.need_reason'); reason.focus(); return; }
        submit.disabled = true;
        const ok = await this.completeTask(task, { unit: unit.value, reason: reason.value.trim() }, error);
        submit.disabled = false;
        if (ok) {
          toast(t('dispatch.reroute.done', { number: o.number, unit: this.desk.unitName(unit.value) }), 'ok');
          this.desk.changed();
          this.reload();
        }
      },
    },
    h('h4', t('dispatch.reroute.title')),
    h('label', t('dispatch.reroute.unit'), unit),
    h('label', t('dispatch.reroute.reason'), reason),
    error,
    h('div.buttons', submit, h('button', { type: 'button', onclick: () => clear(this.actionBox) }, t('dispatch.cancel'))));
    fill(this.actionBox, form);
    unit.focus();
  }

  // Claim (unless it is ours already), then complete. False with the message shown on failure.
  async completeTask(task, data, error) {
    const api = this.ctx.api;
    try {
      if (task.claimed_by !== this.ctx.me.id) await api.post(`/api/v1/tasks/${task.id}/claim`);
      await api.post(`/api/v1/tasks/${task.id}/complete`, { data });
      return true;
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      error.textContent = explain(err);
      if (err.status === 409 || err.status === 404) this.desk.changed();
      return false;
    }
  }

  // ---- reassign a task to a person (the unit's people when it is a unit's task) -----------
  async reassignForm(o, tasks) {
    const task = h('select', { id: 'reassign-task', 'aria-label': t('dispatch.reassign.task') },
      tasks.map((tk) => h('option', { value: tk.id }, taskLine(tk))));
    const holder = h('span.to');
    const reason = h('input', { type: 'text', id: 'reassign-reason', maxlength: 500, 'aria-label': t('dispatch.reassign.reason') });
    const error = h('p.form-error', { role: 'alert' });
    const submit = h('button.primary', { type: 'submit', id: 'reassign-submit' }, t('dispatch.reassign.submit'));
    let to;
    const people = async () => {
      const tk = tasks.find((x) => x.id === task.value);
      const unitGroup = tk.groups.find((g) => g.startsWith('unit:'));
      const code = unitGroup ? unitGroup.slice(5) : o.unit_code;
      let list = null;
      if (unitGroup || tk.name === 'Task_rectify') {
        try {
          list = await this.ctx.api.get(`/api/v1/units/${encodeURIComponent(code)}/staff`);
        } catch (err) {
          if (!(err instanceof ApiError)) throw err;
        }
      }
      to = list
        ? h('select', { id: 'reassign-to', 'aria-label': t('dispatch.reassign.to') },
          h('option', { value: '' }, t('dispatch.reassign.choose')),
          list.map((p) => h('option', { value: p.id }, `${p.name} (${p.id}, ${t(`dispatch.role.${p.role}`)})`)))
        : h('input', { type: 'text', id: 'reassign-to', maxlength: 64, placeholder: t('dispatch.reassign.to_ph'),
          'aria-label': t('dispatch.reassign.to') });
      fill(holder, to);
    };
    task.addEventListener('change', people);
    const form = h('form.panel', {
      onsubmit: async (e) => {
        e.preventDefault();
        if (!to || !to.value.trim()) { error.textContent = t('dispatch.reassign.need_to'); return; }
        submit.disabled = true;
        try {
          await this.ctx.api.post(`/api/v1/tasks/${task.value}/reassign`,
            { to: to.value.trim(), reason: reason.value.trim() || null });
          toast(t('dispatch.reassign.done', { who: to.value.trim() }), 'ok');
          this.reload();
        } catch (err) {
          if (!(err instanceof ApiError)) throw err;
          error.textContent = explain(err);
        } finally {
          submit.disabled = false;
        }
      },
    },
    h('h4', t('dispatch.reassign.title')),
    h('label', t('dispatch.reassign.task'), task),
    h('label', t('dispatch.reassign.to'), holder),
    h('label', t('dispatch.reassign.reason'), reason),
    error,
    h('div.buttons', submit, h('button', { type: 'button', onclick: () => clear(this.actionBox) }, t('dispatch.cancel'))));
    fill(this.actionBox, form);
    await people();
    task.focus();
  }

  photoStrip(attachments) {
    if (!attachments.length) return h('p.muted', t('dispatch.no_photos'));
    return h('div.photos', { id: 'dispatch-photos' }, attachments.map((a) => {
      const alt = t('dispatch.photo_alt', { kind: kindName(a.kind) });
      const img = this.photos.img(a.sha256, alt);
      return h('figure', h('button.thumb', { type: 'button', title: alt,
        onclick: async () => zoom(await this.photos.url(a.sha256), alt, t('dispatch.zoom_close')) }, img),
      h('figcaption', kindName(a.kind), ' · ', fmtTime(a.at)));
    }));
  }

  timeline(events) {
    return h('ol.timeline', { id: 'dispatch-timeline' }, events.slice().reverse().map((e) => h('li',
      h('span.time', fmtTime(e.at)),
      h('span.what', eventName(e.kind), e.element ? ` · ${elementName(e.element)}` : ''),
      h('span.who', e.actor),
      e.reason ? h('div.reason', e.reason) : null)));
  }

  comments(o) {
    const list = h('ul.comments', { id: 'dispatch-comments' },
      o.comments.length ? o.comments.map((c) => h('li', h('span.who', c.author), h('span.time', fmtTime(c.at)),
        h('div', c.text))) : h('li.muted', t('dispatch.no_comments')));
    if (!this.ctx.me.permissions.includes('workorders.comment')) return list;
    const text = h('textarea', { id: 'dispatch-comment', rows: 2, maxlength: 4000, placeholder: t('dispatch.comment_ph'),
      'aria-label': t('dispatch.comment_ph') });
    const error = h('p.form-error', { role: 'alert' });
    const send = h('button', { type: 'submit', id: 'dispatch-comment-send' }, t('dispatch.comment_send'));
    return h('div', list, h('form.comment-form', {
      onsubmit: async (e) => {
        e.preventDefault();
        if (!text.value.trim()) { error.textContent = t('dispatch.comment_empty'); return; }
        send.disabled = true;
        try {
          await this.ctx.api.post(`/api/v1/work-orders/${encodeURIComponent(o.number)}/comments`, { text: text.value });
          toast(t('dispatch.comment_added'), 'ok');
          this.reload();
        } catch (err) {
          if (!(err instanceof ApiError)) throw err;
          error.textContent = explain(err);
          send.disabled = false;
        }
      },
    }, text, error, send));
  }

  dropDiagram() {
    if (this.diagram) this.diagram.destroy();
    this.diagram = null;
  }

  destroy() {
    this.seq++;
    this.dropDiagram();
    this.photos.drop();
  }
}

function fact(key, value, id) {
  return [h('dt', t(`dispatch.f.${key}`)), h('dd', id ? { id } : null, value)];
}

function taskLine(tk) {
  const who = tk.claimed_by || tk.assignee;
  return `${elementName(tk.name, tk.title)} (${who ? t('dispatch.claimed_by', { who }) : t('dispatch.unclaimed')})`;
}

function lastReason(timeline, element) {
  for (let i = timeline.length - 1; i >= 0; i--) {
    if (timeline[i].element === element && timeline[i].reason) return timeline[i].reason;
  }
  return null;
}

// A refusal in words: a conflict says someone was first; form errors list their fields.
export function explain(err) {
  if (err.status === 409) return t('dispatch.conflict', { message: err.message });
  let msg = err.message;
  if (err.errors && typeof err.errors === 'object') {
    const parts = Object.entries(err.errors).map(([k, v]) => `${k}: ${typeof v === 'string' ? v : (v && v.message) || JSON.stringify(v)}`);
    if (parts.length) msg = parts.join('; ');
  }
  return t('dispatch.failed', { message: msg });
}
