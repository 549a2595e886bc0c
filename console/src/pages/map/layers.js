// The map's layers: where each comes from, who may ask for it, how its points look and what a
// click on one shows. The API decides what each caller gets (engine/api/routes/mapdata.py);
// a layer the caller's permissions leave out is not asked for at all.
import { api } from '../../api.js';
import { h } from '../../dom.js';
import { fmtTime, pick, t } from '../../i18n.js';

const has = (me, p) => me.permissions.includes(p);
const UNIT_ROLES = ['unit_worker', 'unit_leader'];

export const STATE_COLORS = { reported: '#8e24aa', at_unit: '#1565c0', rerouting: '#ef6c00', in_review: '#00897b' };
export const OVERDUE = '#d32f2f';

// The column of field f at index i, decoding a coded field into its word.
export function value(data, f, i) {
  const v = data.columns[f][i];
  return data.codes[f] ? data.codes[f][v] : v;
}

function row(label, text) {
  return h('div.map-popup-row', h('span.map-popup-label', label), h('span', text));
}

function orderPopup(data, i, ctx) {
  const number = value(data, 'number', i);
  const state = value(data, 'state', i);
  const overdue = data.columns.overdue[i] === 1;
  const canOpen = has(ctx.me, 'workorders.read') && !ctx.me.groups.includes('reviewer');
  const canReview = ctx.me.groups.includes('reviewer') && state === 'in_review';
  const link = canOpen ? `#/dispatch/${encodeURIComponent(number)}` : canReview ? `#/review/${encodeURIComponent(number)}` : null;
  const unit = value(data, 'unit', i);
  const named = (f, code) => {
    const n = data.names && data.names[f] && data.names[f][code];
    return n ? pick(n[1], n[0]) : code;
  };
  return h('div.map-popup',
    h('div.map-popup-title', t('map.popup.order', { number })),
    h('div', h('span.map-chip', { style: { background: STATE_COLORS[state] || '#555' } }, t(`map.state.${state}`)),
      overdue ? h('span.map-chip', { style: { background: OVERDUE } }, t('map.popup.overdue')) : null),
    row(t('map.popup.area'), named('area', value(data, 'area', i))),
    row(t('map.popup.category'), t(`map.cat.${value(data, 'category', i)}`)),
    unit ? row(t('map.popup.unit'), named('unit', unit)) : null,
    link ? h('a.map-popup-link', { href: link, dataset: { number } }, t('map.popup.open')) : null);
}

function householdPopup(data, i, ctx) {
  const id = data.columns.id[i];
  const body = h('div.map-popup-body', t('map.popup.loading'));
  const box = h('div.map-popup',
    h('div.map-popup-title', t('map.popup.household', { id })),
    h('div',
      data.columns.overdue[i] ? h('span.map-chip', { style: { background: OVERDUE } }, t('map.popup.overdue')) : null,
      data.columns.suspended[i] ? h('span.map-chip', { style: { background: '#616161' } }, t('map.popup.suspended')) : null),
    body);
  api.get(`/api/v1/gas/households/${id}`).then((hh) => {
    body.replaceChildren(
      hh.label ? h('div', hh.label) : null,
      row(t('map.popup.holder'), hh.holder),
      row(t('map.popup.due'), hh.next_due_at ? fmtTime(hh.next_due_at, true) : t('map.popup.never')),
      hh.deliverer_id ? row(t('map.popup.deliverer'), hh.deliverer_id) : null);
  }).catch(() => body.replaceChildren(t('map.popup.gone')));
  return box;
}

function depotPopup(data, i) {
  return h('div.map-popup',
    h('div.map-popup-title', t('map.popup.depot')),
    h('div', value(data, 'muster_point', i)),
    row(t('map.popup.crew'), value(data, 'crew', i)),
    row(t('map.popup.contract'), value(data, 'contract', i)),
    row(t('map.popup.shift'), value(data, 'shift_start', i)));
}

function gatewayPopup(data, i) {
  const seen = value(data, 'last_seen_at', i);
  const status = data.columns.revoked[i] ? 'map.popup.revoked' : data.columns.paired[i] ? 'map.popup.paired' : 'map.popup.unpaired';
  return h('div.map-popup',
    h('div.map-popup-title', t('map.popup.gateway')),
    h('div', value(data, 'name', i)),
    row(t('map.popup.crew'), value(data, 'crew', i) || '—'),
    row('', t(status)),
    seen ? row(t('map.popup.lastseen'), fmtTime(seen, true)) : null);
}

// ---- drawing ------------------------------------------------------------------------------
function circle(g, x, y, r, fill, stroke = '#fff', width = 1.5) {
  g.beginPath();
  g.arc(x, y, r, 0, Math.PI * 2);
  g.fillStyle = fill;
  g.fill();
  g.lineWidth = width;
  g.strokeStyle = stroke;
  g.stroke();
}

function short(n) {
  if (n < 1000) return String(n);
  if (n < 10000) return `${(n / 1000).toFixed(1).replace(/\.0$/, '')}k`;
  return `${Math.round(n / 1000)}k`;
}

export function drawCluster(g, item, x, y, color) {
  const r = 11 + 4 * Math.log10(item.count);
  g.globalAlpha = 0.88;
  circle(g, x, y, r, color, '#fff', 2);
  g.globalAlpha = 1;
  if (item.overdue > 0) {           // the overdue share as a red arc around the cluster
    g.beginPath();
    g.arc(x, y, r + 2, -Math.PI / 2, -Math.PI / 2 + (Math.PI * 2 * item.overdue) / item.count);
    g.lineWidth = 3;
    g.strokeStyle = OVERDUE;
    g.stroke();
  }
  g.fillStyle = '#fff';
  g.font = 'bold 11px system-ui, sans-serif';
  g.textAlign = 'center';
  g.textBaseline = 'middle';
  g.fillText(short(item.count), x, y + 0.5);
  return r + 2;
}

export const LAYERS = [
  {
    id: 'households',
    path: '/api/v1/map/households',
    wanted: (me) => has(me, 'gas.read') && !(UNIT_ROLES.includes(me.role) && me.unit_code !== 'gas-office'),
    color: '#43a047',
    point(g, data, i, x, y) {
      if (data.columns.suspended[i]) { circle(g, x, y, 4.5, '#616161'); return 4.5; }
      if (data.columns.overdue[i]) { circle(g, x, y, 5, OVERDUE); return 5; }
      circle(g, x, y, 3.5, '#43a047', '#fff', 1);
      return 3.5;
    },
    popup: householdPopup,
  },
  {
    id: 'orders',
    path: '/api/v1/map/work-orders',
    wanted: (me) => has(me, 'workorders.read'),
    color: '#1565c0',
    point(g, data, i, x, y) {
      const overdue = data.columns.overdue[i] === 1;
      const state = value(data, 'state', i);
      circle(g, x, y, 6, STATE_COLORS[state] || '#555', overdue ? OVERDUE : '#fff', overdue ? 3 : 1.5);
      return 7;
    },
    popup: orderPopup,
  },
  {
    id: 'depots',
    path: '/api/v1/map/depots',
    wanted: (me) => has(me, 'attendance.read'),
    color: '#6d4c41',
    point(g, data, i, x, y) {
      g.fillStyle = '#6d4c41';
      g.strokeStyle = '#fff';
      g.lineWidth = 2;
      g.fillRect(x - 7, y - 7, 14, 14);
      g.strokeRect(x - 7, y - 7, 14, 14);
      return 8;
    },
    popup: depotPopup,
  },
  {
    id: 'gateways',
    path: '/api/v1/map/gateways',
    wanted: (me) => has(me, 'attendance.read'),
    color: '#0277bd',
    point(g, data, i, x, y) {
      g.beginPath();
      g.moveTo(x, y - 8);
      g.lineTo(x + 7, y);
      g.lineTo(x, y + 8);
      g.lineTo(x - 7, y);
      g.closePath();
      g.fillStyle = data.columns.revoked[i] ? '#9e9e9e' : '#0277bd';
      g.fill();
      g.lineWidth = 2;
      g.strokeStyle = '#fff';
      g.stroke();
      return 8;
    },
    popup: gatewayPopup,
  },
];
