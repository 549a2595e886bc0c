// The dashboards page (#/dashboards?from=YYYY-MM-DD&to=YYYY-MM-DD or ?days=7|30|90): KPI tiles
// and charts over GET /api/v1/dashboards, each chart with a table of the exact figures.
import './page.css';
import { category } from './i18n.js';
import { h, fill, debounce } from '../../dom.js';
import { t } from '../../i18n.js';
import { chart, bars } from './charts.js';
import { num, pct, localDate } from './format.js';

const PRESETS = [7, 30, 90];

function periodOf(route, tz) {
  const q = route.query || {};
  if (q.from || q.to) return { from: q.from || '', to: q.to || '', days: 0 };
  const days = PRESETS.includes(Number(q.days)) ? Number(q.days) : 30;
  const to = localDate(tz, 1);
  return { from: localDate(tz, 1 - days), to, days };
}

function sum(rows, key, by) {
  const out = new Map();
  for (const r of rows) {
    const k = r[by] ?? '';
    const o = out.get(k) || { key: k, open: 0, overdue: 0 };
    o.open += r.open;
    o.overdue += r.overdue;
    out.set(k, o);
  }
  return [...out.values()];
}

function table(cols, rows) {
  return h('table.dash-table', {},
    h('thead', {}, h('tr', {}, ...cols.map(([label]) => h('th', {}, t(label))))),
    h('tbody', {}, ...rows.map((r) => h('tr', {}, ...cols.map(([, cell]) => h('td', {}, cell(r)))))));
}

export default {
  mount(el, ctx) {
    const tz = (ctx.config && ctx.config.timezone) || 'Asia/Shanghai';
    let route = ctx.route;
    let data = null;
    let error = null;
    let ticket = 0;
    const charts = [];
    const openTables = new Set(); // sections showing their table: kept across a relabel
    const root = h('div.dash');
    el.append(root);

    const disposeCharts = () => { while (charts.length) charts.pop().dispose(); };

    function picker(p) {
      const sel = h('select.dash-preset', { 'aria-label': t('dashboards.period') },
        ...PRESETS.map((n) => h('option', { value: String(n) }, t('dashboards.last', { n }))),
        h('option', { value: 'custom' }, t('dashboards.custom')));
      sel.value = p.days ? String(p.days) : 'custom';
      const from = h('input.dash-from', { type: 'date', value: p.from, 'aria-label': t('dashboards.from') });
      const to = h('input.dash-to', { type: 'date', value: p.to, 'aria-label': t('dashboards.to') });
      sel.onchange = () => {
        if (sel.value !== 'custom') ctx.navigate(`#/dashboards?days=${sel.value}`);
      };
      const apply = h('button.dash-apply', { type: 'button', onclick: () => {
        ctx.navigate(`#/dashboards?from=${encodeURIComponent(from.value)}&to=${encodeURIComponent(to.value)}`);
      } }, t('dashboards.apply'));
      return h('div.dash-period', {}, h('label', {}, t('dashboards.period'), ' ', sel),
        h('label', {}, t('dashboards.from'), ' ', from), h('label', {}, t('dashboards.to'), ' ', to), apply);
    }

    function section(id, title, option, tableEl) {
      const box = h('div.dash-chart');
      const tbl = h('div.dash-table-wrap', {}, tableEl);
      const btn = h('button.dash-toggle', { type: 'button' });
      const show = (showTable) => {
        tbl.hidden = !showTable;
        box.hidden = showTable;
        btn.textContent = t(showTable ? 'dashboards.chart' : 'dashboards.table');
        btn.setAttribute('aria-pressed', String(showTable));
      };
      show(openTables.has(id));
      btn.onclick = () => {
        const showTable = tbl.hidden;
        if (showTable) openTables.add(id);
        else openTables.delete(id);
        show(showTable);
        if (!showTable) charts.forEach((c) => c.resize());
      };
      const sec = h(`section.dash-sec`, { 'data-section': id },
        h('header', {}, h('h2', {}, t(title)), btn), box, tbl);
      if (option) {
        requestAnimationFrame(() => {
          if (!box.isConnected) return;
          const c = chart(box);
          c.draw(option);
          charts.push(c);
        });
      } else {
        fill(box, h('p.dash-empty', {}, t('dashboards.empty')));
      }
      return sec;
    }

    function tile(id, label, value) {
      return h('div.dash-kpi', { 'data-kpi': id }, h('div.dash-kpi-value', {}, value), h('div.dash-kpi-label', {}, t(label)));
    }

    function render() {
      disposeCharts();
      const p = periodOf(route, tz);
      const parts = [h('h1', {}, t('dashboards.title')), picker(p)];
      if (ctx.me.role === 'unit_leader') parts.push(h('p.dash-note', {}, t('dashboards.unit_only', { unit: ctx.me.unit_code || '' })));
      if (error) {
        parts.push(h('p.dash-error', { role: 'alert' }, t('dashboards.error', { message: error })));
        fill(root, ...parts);
        return;
      }
      if (!data) {
        parts.push(h('p.dash-loading', {}, t('dashboards.loading')));
        fill(root, ...parts);
        return;
      }
      const w = data.work_orders;
      const a = data.attendance;
      const g = data.gas;
      const tiles = [
        tile('closed', 'dashboards.kpi.closed', num(w.closed)),
        tile('median_hours', 'dashboards.kpi.median', num(w.median_hours)),
        tile('p90_hours', 'dashboards.kpi.p90', num(w.p90_hours)),
        tile('on_time_rate', 'dashboards.kpi.on_time', pct(w.on_time_rate)),
        tile('backlog_total', 'dashboards.kpi.backlog', num(w.backlog_total)),
        tile('overdue_total', 'dashboards.kpi.overdue', num(w.overdue_total)),
        tile('reported_total', 'dashboards.kpi.reported', num(w.reported_total)),
        tile('attendance_rate', 'dashboards.kpi.attendance', pct(a.rate)),
      ];
      if (g) {
        tiles.push(tile('gas_coverage', 'dashboards.kpi.gas_coverage', pct(g.coverage)),
          tile('gas_overdue', 'dashboards.kpi.gas_overdue', num(g.overdue)));
      }
      parts.push(h('div.dash-kpis', {}, ...tiles));

      const days = w.by_day.map((d) => d.day);
      const trend = days.length ? {
        legend: { top: 0 },
        xAxis: { type: 'category', data: days },
        yAxis: [{ type: 'value', name: t('dashboards.axis.hours') },
          { type: 'value', name: t('dashboards.col.closed'), position: 'right' }],
        series: [
          { type: 'line', z: 3, name: t('dashboards.col.median'), data: w.by_day.map((d) => d.median_hours) },
          { type: 'line', z: 3, name: t('dashboards.col.p90'), data: w.by_day.map((d) => d.p90_hours) },
          { type: 'bar', z: 1, barMaxWidth: 40, itemStyle: { opacity: 0.35 }, name: t('dashboards.col.closed'),
            yAxisIndex: 1, data: w.by_day.map((d) => d.closed) },
        ],
      } : null;
      const onTime = w.on_time_by_unit.length ? bars(w.on_time_by_unit.map((u) => u.unit ?? t('dashboards.none')), [
        { name: t('dashboards.col.closed'), values: w.on_time_by_unit.map((u) => u.closed) },
        { name: t('dashboards.col.on_time'), values: w.on_time_by_unit.map((u) => u.on_time) },
      ]) : null;
      const byUnit = sum(w.backlog, 'unit', 'unit');
      const byCat = sum(w.backlog, 'category', 'category');
      const backlogOpt = (rows, label = (k) => k) => (rows.length ? bars(rows.map((r) => (r.key ? label(r.key) : t('dashboards.none'))), [
        { name: t('dashboards.col.open'), values: rows.map((r) => r.open) },
        { name: t('dashboards.col.overdue'), values: rows.map((r) => r.overdue) },
      ], { rotate: rows.length > 5 ? 30 : 0 }) : null);
      const contracts = [...new Set(a.by_contract_day.map((r) => r.contract))];
      const aDays = [...new Set(a.by_contract_day.map((r) => r.day))].sort();
      const attendanceOpt = contracts.length ? {
        legend: { top: 0, type: 'scroll' },
        xAxis: { type: 'category', data: aDays },
        yAxis: { type: 'value', max: 100, axisLabel: { formatter: '{value}%' } },
        series: contracts.map((c) => ({ type: 'line', name: c, data: aDays.map((d) => {
          const r = a.by_contract_day.find((x) => x.contract === c && x.day === d);
          return r && r.rate !== null ? Math.round(r.rate * 10000) / 100 : null;
        }) })),
      } : null;
      const cats = [...new Set(w.hotspots.map((r) => r.category))];
      const areas = [...new Set(w.hotspots.map((r) => r.area))];
      const hotOpt = cats.length ? bars(cats.map(category), areas.map((ar) => ({ name: ar, stack: 'area',
        values: cats.map((c) => (w.hotspots.find((r) => r.category === c && r.area === ar) || { reported: 0 }).reported) })),
      { rotate: cats.length > 5 ? 30 : 0 }) : null;

      const grid = h('div.dash-grid', {},
        section('trend', 'dashboards.sec.trend', trend, table([
          ['dashboards.col.day', (r) => r.day], ['dashboards.col.closed', (r) => num(r.closed)],
          ['dashboards.col.median', (r) => num(r.median_hours)], ['dashboards.col.p90', (r) => num(r.p90_hours)],
        ], w.by_day)),
        section('on_time', 'dashboards.sec.on_time', onTime, table([
          ['dashboards.col.unit', (r) => r.unit ?? t('dashboards.none')], ['dashboards.col.closed', (r) => num(r.closed)],
          ['dashboards.col.on_time', (r) => num(r.on_time)], ['dashboards.col.rate', (r) => pct(r.rate)],
        ], w.on_time_by_unit)),
        section('backlog', 'dashboards.sec.backlog_unit', backlogOpt(byUnit), table([
          ['dashboards.col.unit', (r) => r.unit ?? t('dashboards.none')], ['dashboards.col.category', (r) => category(r.category)],
          ['dashboards.col.open', (r) => num(r.open)], ['dashboards.col.overdue', (r) => num(r.overdue)],
        ], w.backlog)),
        section('backlog_category', 'dashboards.sec.backlog_cat', backlogOpt(byCat, category), table([
          ['dashboards.col.category', (r) => category(r.key)], ['dashboards.col.open', (r) => num(r.open)],
          ['dashboards.col.overdue', (r) => num(r.overdue)],
        ], byCat)),
        section('attendance', 'dashboards.sec.attendance', attendanceOpt, table([
          ['dashboards.col.contract', (r) => r.contract], ['dashboards.col.day', (r) => r.day],
          ['dashboards.col.expected', (r) => num(r.expected)], ['dashboards.col.present', (r) => num(r.present)],
          ['dashboards.col.late', (r) => num(r.late)], ['dashboards.col.absent', (r) => num(r.absent)],
          ['dashboards.col.rate', (r) => pct(r.rate)],
        ], a.by_contract_day)),
        section('hotspots', 'dashboards.sec.hotspots', hotOpt, table([
          ['dashboards.col.category', (r) => category(r.category)], ['dashboards.col.area', (r) => r.area],
          ['dashboards.col.reported', (r) => num(r.reported)],
        ], w.hotspots)),
      );
      if (g) {
        const dl = g.overdue_by_deliverer;
        grid.append(section('gas', 'dashboards.sec.gas', dl.length ? bars(dl.map((d) => d.deliverer_id || t('dashboards.none')),
          [{ name: t('dashboards.col.overdue'), values: dl.map((d) => d.overdue) }], { rotate: dl.length > 6 ? 30 : 0 }) : null,
        table([
          ['dashboards.col.address', (r) => r.address_code], ['dashboards.col.holder', (r) => r.holder],
          ['dashboards.col.deliverer', (r) => r.deliverer_id || t('dashboards.none')],
          ['dashboards.col.days_overdue', (r) => (r.days_overdue === null ? t('dashboards.never') : num(r.days_overdue))],
        ], g.overdue_households)));
      }
      parts.push(grid);
      fill(root, ...parts);
    }

    async function load() {
      const my = ++ticket;
      const p = periodOf(route, tz);
      data = null;
      error = null;
      render();
      try {
        const params = {};
        if (p.from) params.from = p.from;
        if (p.to) params.to = p.to;
        const result = await ctx.api.get('/api/v1/dashboards', params);
        if (my !== ticket) return;
        data = result;
      } catch (err) {
        if (my !== ticket) return;
        const details = err.errors ? Object.entries(err.errors).map(([k, v]) => `${k}: ${v}`).join('; ') : '';
        const message = err.message || '';
        error = details && !message.includes(details) ? [message, details].filter(Boolean).join(' — ') : message;
      }
      render();
    }

    const onResize = debounce(() => charts.forEach((c) => c.resize()), 150);
    window.addEventListener('resize', onResize);
    load();
    return {
      unmount() {
        ticket += 1;
        window.removeEventListener('resize', onResize);
        disposeCharts();
      },
      route(r) {
        route = r;
        load();
      },
      relabel: render,
    };
  },
};
