// Names of the work-order vocabulary (categories, states, sources, photo kinds, timeline
// events), shared by the dispatch and review desks. Values come from the server; a value this
// console does not know yet is shown as it is.
import { register, t } from '../../i18n.js';

const CATEGORIES = {
  exposed_garbage: ['暴露垃圾', 'Exposed garbage'],
  street_vending: ['占道经营', 'Street vending'],
  illegal_ads: ['非法小广告', 'Illegal ads'],
  road_damage: ['道路破损', 'Road damage'],
  manhole_cover: ['井盖缺失', 'Manhole cover'],
  gas_hazard: ['燃气隐患', 'Gas hazard'],
  tree_fallen: ['树木倒伏', 'Fallen tree'],
  other: ['其他', 'Other'],
};
const STATES = {
  reported: ['已上报', 'Reported'],
  at_unit: ['处置中', 'At the unit'],
  rerouting: ['待改派', 'Re-routing'],
  in_review: ['待审核', 'In review'],
  closed: ['已结案', 'Closed'],
};
const SOURCES = {
  citizen: ['市民', 'Citizen'],
  camera: ['摄像头', 'Camera'],
  patrol: ['巡查', 'Patrol'],
  inspection: ['入户安检', 'Inspection'],
};
const KINDS = {
  report: ['上报', 'Report'],
  snapshot: ['抓拍', 'Snapshot'],
  evidence: ['现场', 'Evidence'],
  after: ['整改后', 'After'],
};
const EVENTS = {
  instance_started: ['流程启动', 'Process started'],
  instance_completed: ['流程结束', 'Process ended'],
  reported: ['上报', 'Reported'],
  dispatched: ['派发', 'Dispatched'],
  rerouted: ['改派', 'Re-routed'],
  rejected: ['审核退回', 'Rejected'],
  closed: ['结案', 'Closed'],
  escalated: ['超时升级', 'Escalated'],
  timer_fired: ['定时器触发', 'Timer fired'],
  task_completed: ['任务完成', 'Task completed'],
  task_claimed: ['认领任务', 'Task claimed'],
  task_released: ['释放任务', 'Task released'],
  task_reassigned: ['改派任务', 'Task reassigned'],
  commented: ['备注', 'Comment'],
  attachment_added: ['添加照片', 'Photo added'],
  incident: ['流程异常', 'Incident'],
  incident_retried: ['异常已重试', 'Incident retried'],
  incident_resolved: ['异常已解决', 'Incident resolved'],
  message_received: ['收到消息', 'Message received'],
  call_started: ['调用子流程', 'Called process started'],
  call_completed: ['子流程结束', 'Called process ended'],
};
const PRIORITIES = {
  urgent: ['紧急', 'Urgent'],
  normal: ['一般', 'Normal'],
  low: ['较低', 'Low'],
};
const ELEMENTS = {
  Task_rectify: ['整改', 'Rectify'],
  Task_review: ['审核', 'Review'],
  Task_reroute: ['改派', 'Re-route'],
  Task_dispatch: ['派发', 'Dispatch'],
  Task_dispatch_reroute: ['改派派发', 'Dispatch to new unit'],
  Task_dispatch_rules: ['派单规则', 'Dispatch rules'],
  Task_close_order: ['结案', 'Close order'],
  Task_reject_order: ['退回', 'Reject order'],
  Task_escalate: ['升级', 'Escalate'],
  Event_sla_due: ['处置时限', 'SLA due'],
  work_order: ['工单流程', 'Work order'],
  Call_rectification: ['整改与审核', 'Rectify and review'],
  rectification: ['整改流程', 'Rectification'],
};

const table = {};
for (const [prefix, map] of [['cat', CATEGORIES], ['state', STATES], ['source', SOURCES], ['kind', KINDS],
  ['event', EVENTS], ['el', ELEMENTS], ['prio', PRIORITIES]]) {
  for (const [k, [zh, en]] of Object.entries(map)) table[`dispatch.${prefix}.${k}`] = { zh, en };
}
register(table);

function label(prefix, map, value) {
  if (value === null || value === undefined || value === '') return '–';
  return value in map ? t(`dispatch.${prefix}.${value}`) : String(value);
}

export const categoryName = (v) => label('cat', CATEGORIES, v);
export const stateName = (v) => label('state', STATES, v);
export const sourceName = (v) => label('source', SOURCES, v);
export const kindName = (v) => label('kind', KINDS, v);
export const priorityName = (v) => label('prio', PRIORITIES, v);
export const eventName = (v) => label('event', EVENTS, v);
export const elementName = (v, fallback) => (v in ELEMENTS ? t(`dispatch.el.${v}`) : fallback || v || '');
export const CATEGORY_KEYS = Object.keys(CATEGORIES);
export const STATE_KEYS = Object.keys(STATES);
export const SOURCE_KEYS = Object.keys(SOURCES);
