// bpmnlint in the browser. bpmnlint configs are normally packed by a webpack/rollup loader;
// here the config object and its resolver are built by hand: the recommended rules that fit
// cityloop's engine (static imports) plus cityloop's own rules, which mirror the server's
// deploy checks (engine/bpmn/validate.py) so most refusals show while drawing, in the server's
// words. (bpmnlint's own ad-hoc and complex-gateway rules are left out: ours say what to draw.)
import conditionalFlows from 'bpmnlint/rules/conditional-flows';
import endEventRequired from 'bpmnlint/rules/end-event-required';
import eventBasedGateway from 'bpmnlint/rules/event-based-gateway';
import fakeJoin from 'bpmnlint/rules/fake-join';
import labelRequired from 'bpmnlint/rules/label-required';
import noBpmndi from 'bpmnlint/rules/no-bpmndi';
import noDisconnected from 'bpmnlint/rules/no-disconnected';
import noDuplicateSequenceFlows from 'bpmnlint/rules/no-duplicate-sequence-flows';
import noImplicitSplit from 'bpmnlint/rules/no-implicit-split';
import noImplicitEnd from 'bpmnlint/rules/no-implicit-end';
import noImplicitStart from 'bpmnlint/rules/no-implicit-start';
import noOverlappingElements from 'bpmnlint/rules/no-overlapping-elements';
import singleBlankStartEvent from 'bpmnlint/rules/single-blank-start-event';
import singleEventDefinition from 'bpmnlint/rules/single-event-definition';
import startEventRequired from 'bpmnlint/rules/start-event-required';
import superfluousGateway from 'bpmnlint/rules/superfluous-gateway';

import { known } from './state.js';  // what the cityloop rules check against, from the server

const is = (node, type) => typeof node.$instanceOf === 'function' && node.$instanceOf(type);
const ALLOWED_CAMUNDA = new Set(['camunda:Properties', 'camunda:FormData', 'camunda:InputOutput', 'camunda:In',
  'camunda:Out']);
const FORBIDDEN_ATTRS = ['class', 'expression', 'delegateExpression', 'resultVariable', 'variableMappingClass',
  'variableMappingDelegateExpression', 'caseRef'];
// The server's own words (engine/bpmn/validate.py), so a refusal reads the same here and there.
const UNSUPPORTED = {
  'bpmn:ScriptTask': 'script tasks are not allowed; use a service task naming a registered operation',
  'bpmn:ComplexGateway': 'complex gateways are not supported; use an inclusive gateway with conditions',
  'bpmn:Transaction': 'transactions are not supported; use an embedded sub-process with an error boundary event',
  'bpmn:AdHocSubProcess': 'ad-hoc sub-processes are not supported; use user tasks behind a parallel gateway',
  'bpmn:DataStoreReference': 'data stores are not supported; keep data in process variables',
  'bpmn:CorrelationProperty': 'correlation properties are not supported: messages between processes correlate on '
    + 'the business key',
};
// event definitions: reported on the event that holds them (the shape a designer sees)
const UNSUPPORTED_EVENTS = {
  'bpmn:CancelEventDefinition': 'cancel events are not supported (they belong to transactions); use an error end '
    + 'event and an error boundary event',
  'bpmn:CompensateEventDefinition': 'compensation is not supported; model the undo step as a task on an error or '
    + 'escalation path',
  'bpmn:SignalEventDefinition': 'signal events are not supported; use a message event (delivered to the instances '
    + 'with the same business key) instead',
  'bpmn:ConditionalEventDefinition': 'conditional events are not supported; use an exclusive gateway, or a message '
    + 'the server sends when the condition holds',
  // SpiffWorkflow 3.2 does not read link events: the throw would end its path silently
  'bpmn:LinkEventDefinition': 'link events are not supported; draw the sequence flow to where the link leads',
};
const HTML_FORM = 'HTML forms cannot be shown on tablets; draw a form-js form and reference it with '
  + 'camunda:formRef="ID" or camunda:formKey="camunda-forms:deployment:ID.form"';
const CYCLE_ON_START = 'a process started on a cycle is a calendar job, not supported here; draw the cycle on a '
  + 'non-interrupting boundary event or on the start event of an event sub-process';
const CYCLE_ON_CATCH = 'an intermediate timer cannot repeat; use timeDuration or timeDate, or a non-interrupting '
  + 'boundary event with the cycle';
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const NCNAME = /^[A-Za-z_][\w.-]{0,254}$/;

// The form-js form id a Camunda 7 camunda:formKey names, or null for an HTML form (as the
// server's engine/bpmn/parser.py form_id_of_key): camunda-forms:deployment:ID.form,
// camunda-forms:app:path/ID.form, deployment:ID.form and a plain ID all name form ID.
export function formIdOfKey(key) {
  let text = (key || '').trim();
  if (!text) return null;
  const prefix = ['camunda-forms:deployment:', 'camunda-forms:app:', 'camunda-forms:'].find((p) => text.startsWith(p));
  if (prefix) text = text.slice(prefix.length);
  else if (text.startsWith('deployment:') && text.endsWith('.form')) text = text.slice('deployment:'.length);
  else if (['embedded:', 'app:', 'deployment:'].some((p) => text.startsWith(p)) || /\.html?$/.test(text)) return null;
  let name = text.split('/').pop();
  if (name.endsWith('.form')) name = name.slice(0, -'.form'.length);
  return name || null;
}

const rule = (check) => () => ({ check });
const ownerId = (node) => {
  let n = node;
  while (n && !n.id) n = n.$parent;
  return n && n.id;
};
const eventOf = (definition) => definition.$parent;
const processIdsOf = (node) => {
  let root = node;
  while (root.$parent) root = root.$parent;
  return new Set((root.rootElements || []).filter((e) => is(e, 'bpmn:Process')).map((e) => e.id));
};
const processOf = (node) => {
  let n = node.$parent;
  while (n && !is(n, 'bpmn:Process')) n = n.$parent;
  return n;
};

// [caller, ..., caller] when calling `called` from `node` comes back to node's process
// through the processes of this file (calls through deployed processes: the server checks)
function callCycle(node, called) {
  const own = processOf(node);
  if (!own) return null;
  let root = node;
  while (root.$parent) root = root.$parent;
  const calls = {};
  for (const p of (root.rootElements || []).filter((e) => is(e, 'bpmn:Process'))) {
    const found = [];
    const walk = (el) => {
      for (const child of el.flowElements || []) {
        if (is(child, 'bpmn:CallActivity') && child.calledElement) found.push(child.calledElement);
        walk(child);
      }
    };
    walk(p);
    calls[p.id] = found;
  }
  const path = [own.id];
  const visit = (key) => {
    if (key === own.id) return [...path, key];
    if (path.includes(key) || !calls[key]) return null;
    path.push(key);
    for (const next of calls[key]) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    path.pop();
    return null;
  };
  return visit(called);
}

function checkMapping(node, mapping, reporter) {
  const what = mapping.$type === 'camunda:In' ? 'camunda:in' : 'camunda:out';
  if (!is(node, 'bpmn:CallActivity')) {
    reporter.report(node.id, `${what} belongs on a call activity (signals are not supported)`);
    return;
  }
  if (mapping.businessKey !== undefined) {
    const key = mapping.businessKey.trim();
    if (what !== 'camunda:in') {
      reporter.report(node.id, 'camunda:out businessKey is not supported; a caller keeps its business key');
    } else if (!['#{execution.processBusinessKey}', '${execution.processBusinessKey}'].includes(key)
      && !(key.startsWith('${') && key.endsWith('}'))) {
      reporter.report(node.id, `${what} businessKey '${key.slice(0, 60)}': write \${expression} (the called `
        + "process's own key) or #{execution.processBusinessKey} (its caller's)");
    }
    return;
  }
  if (mapping.variables !== undefined) {
    if (mapping.variables !== 'all') reporter.report(node.id, `${what} variables="${mapping.variables}": only "all" is supported`);
    return;
  }
  const { target, source, sourceExpression: expr } = mapping;
  if (!target || !IDENTIFIER.test(target)) {
    reporter.report(node.id, `${what} target '${target || ''}' must be a variable name (letters, digits, _)`);
  }
  if ((source === undefined) === (expr === undefined)) {
    reporter.report(node.id, `${what} needs either source (a variable name) or sourceExpression (\${...})`);
  } else if (source !== undefined && !IDENTIFIER.test(source)) {
    reporter.report(node.id, `${what} source '${source}' must be a variable name; use sourceExpression for an expression`);
  } else if (expr !== undefined && !(expr.trim().startsWith('${') && expr.trim().endsWith('}'))) {
    reporter.report(node.id, `${what} sourceExpression '${expr.slice(0, 60)}' must be a whole \${expression}`);
  }
}

const cityloopRules = {
  // script tasks, complex gateways, transactions, ad-hoc sub-processes, data stores, correlation
  // properties, multi-instance over a collection; cancel, compensation, signal, conditional and
  // link events; cycle timers where BPMN or the server does not repeat them
  unsupported: rule((node, reporter) => {
    for (const [type, message] of Object.entries(UNSUPPORTED)) {
      if (is(node, type)) reporter.report(node.id, message);
    }
    for (const [type, message] of Object.entries(UNSUPPORTED_EVENTS)) {
      if (is(node, type)) reporter.report(ownerId(eventOf(node)), message);
    }
    if (is(node, 'bpmn:MultiInstanceLoopCharacteristics')
      && (node.get('camunda:collection') !== undefined || node.get('camunda:elementVariable'))) {
      reporter.report(ownerId(node), 'multi-instance over a collection (camunda:collection) is not supported; use '
        + 'loopCardinality with a number or a variable holding one');
    }
    if (is(node, 'bpmn:TimerEventDefinition') && node.timeCycle) {
      const event = eventOf(node);
      if (is(event, 'bpmn:StartEvent') && is(event.$parent, 'bpmn:Process')) reporter.report(event.id, CYCLE_ON_START);
      else if (is(event, 'bpmn:IntermediateCatchEvent')) reporter.report(event.id, CYCLE_ON_CATCH);
      // a constant cycle: an ISO 8601 repeating interval or a Camunda (Quartz) cron of 6 or 7 fields
      const text = (node.timeCycle.body || '').trim();
      const quoted = /^(["'])(.*)\1$/.exec(text);
      if (quoted && !/^R\d*\//i.test(quoted[2].trim()) && ![6, 7].includes(quoted[2].trim().split(/\s+/).length)) {
        reporter.report(event.id, `timer timeCycle ${text}: not an ISO 8601 repeating interval ("R3/PT10M") nor a `
          + 'cron text of 6 or 7 fields ("0 0 9 * * ?")');
      }
    }
  }),
  // no listeners, scripts, connectors, Java classes or expressions as implementations
  'no-code': rule((node, reporter) => {
    if (!node.id) return;
    for (const attr of FORBIDDEN_ATTRS) {
      if (node.get && node.get(`camunda:${attr}`) && !is(node, 'bpmn:IntermediateThrowEvent')) {
        reporter.report(node.id, `camunda:${attr} is not allowed; use camunda:type="external" with a registered topic`);
      }
    }
    const values = (node.extensionElements && node.extensionElements.values) || [];
    for (const v of values) {
      if (v.$type.startsWith('camunda:') && !ALLOWED_CAMUNDA.has(v.$type)) {
        reporter.report(node.id, `${v.$type} is not allowed (no listeners, scripts or connectors)`);
      }
      if (v.$type === 'camunda:In' || v.$type === 'camunda:Out') checkMapping(node, v, reporter);
      if (v.$type === 'camunda:InputOutput') {
        for (const p of [...(v.inputParameters || []), ...(v.outputParameters || [])]) {
          if (p.definition) {
            reporter.report(node.id, `input parameter '${p.name}': write a literal or a \${expression} (lists, maps `
              + 'and scripts are not supported)');
          }
        }
      }
    }
  }),
  // what the engine runs of an event sub-process (engine/bpmn/validate.py _check_event_subprocess)
  'event-subprocess': rule((node, reporter) => {
    if (!is(node, 'bpmn:SubProcess') || !node.triggeredByEvent) return;
    for (const start of (node.flowElements || []).filter((e) => is(e, 'bpmn:StartEvent'))) {
      const defs = start.eventDefinitions || [];
      if (defs.some((d) => is(d, 'bpmn:ErrorEventDefinition'))) continue;
      if (start.isInterrupting !== false) {
        reporter.report(start.id, 'an interrupting event sub-process is not supported (the main flow would not be '
          + 'cancelled): mark its start event non-interrupting, or put the work in a sub-process with an '
          + 'interrupting boundary event');
      }
      const timer = defs.find((d) => is(d, 'bpmn:TimerEventDefinition'));
      if (timer && !timer.timeCycle) {
        reporter.report(start.id, 'an event sub-process started by a timeDate or timeDuration timer keeps its '
          + 'process from ending until it fires: use a non-interrupting boundary timer on the activity it watches, '
          + 'or a cycle');
      }
    }
  }),
  // a call activity names a process by its id, pinned at deploy (latest, or one version)
  'call-activity': rule((node, reporter) => {
    if (!is(node, 'bpmn:CallActivity')) return;
    const called = node.calledElement;
    const cycle = called && NCNAME.test(called) ? callCycle(node, called) : null;
    if (!called) {
      reporter.report(node.id, 'call activity without calledElement: name the id of the process to call');
    } else if (!NCNAME.test(called)) {
      reporter.report(node.id, `calledElement '${called.slice(0, 60)}' must be a process id (expressions are not `
        + 'supported: draw an exclusive gateway before several call activities)');
    } else if (cycle) {
      reporter.report(node.id, `recursive call: ${cycle.join(' -> ')}; a process may not call itself, `
        + 'directly or through others (draw a loop back instead)');
    } else if (known.processes.size && !known.processes.has(called) && !processIdsOf(node).has(called)) {
      reporter.report(node.id, `unknown called process '${called}': deploy it first or in the same deploy`);
    }
    const binding = node.get('camunda:calledElementBinding');
    const version = node.get('camunda:calledElementVersion');
    if (binding !== undefined && !['latest', 'deployment', 'version'].includes(binding)) {
      reporter.report(node.id, `camunda:calledElementBinding '${binding}' is not supported; use latest (pinned at `
        + 'deploy) or version with camunda:calledElementVersion');
    } else if (binding === 'version') {
      if (!/^[1-9][0-9]{0,8}$/.test(String(version || ''))) {
        reporter.report(node.id, 'camunda:calledElementVersion must be a version number (1, 2, ...) with binding version');
      }
    } else if (version !== undefined) {
      reporter.report(node.id, 'camunda:calledElementVersion needs camunda:calledElementBinding="version"');
    }
  }),
  // send and receive tasks, message events: a named message (senders and receivers share the name)
  'message-ref': rule((node, reporter) => {
    const task = is(node, 'bpmn:SendTask') || is(node, 'bpmn:ReceiveTask');
    if (!task && !is(node, 'bpmn:MessageEventDefinition')) return;
    const owner = task ? node.id : ownerId(eventOf(node));
    const ref = node.messageRef;
    if (!ref) {
      if (task) reporter.report(owner, `${is(node, 'bpmn:SendTask') ? 'sendTask' : 'receiveTask'} without a message: `
        + 'pick or create a message (messageRef)');
      else if (!(eventOf(node).name || '').trim()) {
        reporter.report(owner, 'message event without a message: pick or create a message (messageRef)');
      }
    } else if (!(ref.name || '').trim()) {
      reporter.report(owner, `message '${ref.id}' has no name: give it the name senders and receivers share`);
    }
  }),
  // a service task names a registered operation: camunda:type="external" camunda:topic=<name>
  'service-operation': rule((node, reporter) => {
    if (!is(node, 'bpmn:ServiceTask')) return;
    const topic = node.get('camunda:topic');
    if (node.get('camunda:type') !== 'external' || !topic) {
      reporter.report(node.id, 'service tasks must be camunda:type="external" with a camunda:topic (pick an operation)');
    } else if (known.operations.size && !known.operations.has(topic)) {
      reporter.report(node.id, `unknown operation '${topic}'`);
    }
  }),
  // a user task's form is a deployed form-js form: camunda:formRef, or a camunda:formKey naming one
  'user-task-form': rule((node, reporter) => {
    if (!is(node, 'bpmn:UserTask')) return;
    const key = node.get('camunda:formKey');
    let ref = node.get('camunda:formRef');
    if (ref && key) {
      reporter.report(node.id, 'give either camunda:formRef or camunda:formKey, not both');
    } else if (key) {
      ref = formIdOfKey(key);
      if (!ref) reporter.report(node.id, `camunda:formKey '${key.slice(0, 80)}': ${HTML_FORM}`);
    }
    if (ref && known.forms.size && !known.forms.has(ref)) {
      reporter.report(node.id, `unknown form '${ref}'${key && !node.get('camunda:formRef') ? ` (from camunda:formKey '${key}')` : ''}`);
    }
    for (const [attr, what] of [['assignee', 'camunda:assignee'], ['dueDate', 'camunda:dueDate'],
      ['candidateGroups', 'camunda:candidateGroups']]) {
      const text = node.get(`camunda:${attr}`);
      if (text && (text.includes('#{') || (text.includes('${') && !(text.trim().startsWith('${') && text.trim().endsWith('}')) && attr !== 'candidateGroups'))) {
        reporter.report(node.id, `${what}: write either a literal or a whole \${expression}`);
      }
    }
  }),
  'decision-ref': rule((node, reporter) => {
    if (!is(node, 'bpmn:BusinessRuleTask')) return;
    const ref = node.get('camunda:decisionRef');
    if (!ref) reporter.report(node.id, 'business rule task without camunda:decisionRef');
    else if (known.decisions.size && !known.decisions.has(ref)) reporter.report(node.id, `unknown decision '${ref}'`);
  }),
  // timers are expressions: a constant duration, date or cycle is quoted ("PT4H", "R3/PT1H",
  // "0 0 9 * * ?"), a variable is named
  'timer-expression': rule((node, reporter) => {
    if (!is(node, 'bpmn:TimerEventDefinition')) return;
    const owner = ownerId(eventOf(node));
    const body = node.timeDuration || node.timeDate || node.timeCycle;
    const text = body && body.body ? body.body.trim() : '';
    if (!text) reporter.report(owner, 'timer is empty: give a quoted duration such as "PT4H" or a date variable');
    else if (/^(P|R\d*\/|\d{4}-\d\d-\d\d)/.test(text) || /^[\d*?/,#LW-]+(\s+[\w*?/,#-]+){5,6}$/.test(text)) {
      reporter.report(owner, `timer ${text}: quote a constant, e.g. "${text}" (timers are expressions)`);
    }
  }),
  // conditions on flows are expressions, never scripts in another language
  'condition-language': rule((node, reporter) => {
    if (!is(node, 'bpmn:SequenceFlow') || !node.conditionExpression) return;
    const lang = node.conditionExpression.language;
    if (lang && !['python', 'cityloop'].includes(lang.toLowerCase())) {
      reporter.report(node.id, `condition language '${lang}' is not allowed`);
    }
    if (!(node.conditionExpression.body || '').trim()) reporter.report(node.id, 'condition expression is empty');
  }),
};

const recommended = {
  'conditional-flows': conditionalFlows,
  'end-event-required': endEventRequired,
  'event-based-gateway': eventBasedGateway,
  'fake-join': fakeJoin,
  'label-required': labelRequired,
  'no-bpmndi': noBpmndi,
  'no-disconnected': noDisconnected,
  'no-duplicate-sequence-flows': noDuplicateSequenceFlows,
  'no-implicit-split': noImplicitSplit,
  'no-implicit-end': noImplicitEnd,
  'no-implicit-start': noImplicitStart,
  'no-overlapping-elements': noOverlappingElements,
  'single-blank-start-event': singleBlankStartEvent,
  'single-event-definition': singleEventDefinition,
  'start-event-required': startEventRequired,
  'superfluous-gateway': superfluousGateway,
};

const config = {
  rules: {
    ...Object.fromEntries(Object.keys(recommended).map((name) => [name,
      ['fake-join', 'no-overlapping-elements', 'superfluous-gateway', 'label-required'].includes(name) ? 'warn' : 'error'])),
    ...Object.fromEntries(Object.keys(cityloopRules).map((name) => [`cityloop/${name}`, 'error'])),
  },
};

const resolver = {
  resolveRule(pkg, ruleName) {
    if (pkg === 'bpmnlint') return recommended[ruleName] || null;
    if (pkg === 'bpmnlint-plugin-cityloop') return cityloopRules[ruleName] || null;
    return null;
  },
  resolveConfig() {
    return null;
  },
};

export const bpmnlint = { config, resolver };
