// The console's pages. A page is shown to whoever `needs(me)` admits (from the permissions and
// groups /api/v1/auth/me reports: the API's own rules; the API checks every call anyway).
// load() returns the page module; its default export is {mount(el, ctx) -> {unmount, route?, relabel?}}:
//   route(route)  called when only the hash's rest changes (#/dispatch/WO-1 -> #/dispatch/WO-2);
//   relabel()     called after a language switch; without it the page is mounted afresh.
const has = (me, p) => me.permissions.includes(p);

export const PAGES = [
  {
    id: 'dispatch',
    label: { zh: '派单台', en: 'Dispatch' },
    needs: (me) => has(me, 'workorders.read') && !me.groups.includes('reviewer'),
    load: () => import('./pages/dispatch/page.js'),
  },
  {
    id: 'review',
    label: { zh: '审核台', en: 'Review' },
    needs: (me) => me.groups.includes('reviewer'),
    load: () => import('./pages/review/page.js'),
  },
  {
    id: 'dashboards',
    label: { zh: '指标看板', en: 'Dashboards' },
    needs: (me) => has(me, 'dashboards.read'),
    load: () => import('./pages/dashboards/page.js'),
  },
  {
    id: 'map',
    label: { zh: '一张图', en: 'Map' },
    needs: (me) => ['workorders.read', 'gas.read', 'attendance.read'].some((p) => has(me, p)),
    load: () => import('./pages/map/page.js'),
  },
  {
    id: 'designer',
    label: { zh: '流程设计', en: 'Designer' },
    needs: (me) => has(me, 'processes.read'),
    load: () => import('./pages/designer/page.js'),
  },
];
