// bpmnlint in the browser. bpmnlint configs are normally packed by a webpack/rollup loader;
// here the config object and its resolver are built by hand: the recommended rules that fit
// cityloop's engine (static imports) plus cityloop's own rules, which mirror the server's
// deploy checks (engine/bpmn/validate.py) so most refusals show while drawing.
import adHocSubProcess from 'bpmnlint/rules/ad-hoc-sub-process';
import conditionalFlows from 'bpmnlint/rules/conditional-flows';
import endEventRequired from 'bpmnlint/rules/end-event-required';
import eventBasedGateway from 'bpmnlint/rules/event-based-gateway';
import fakeJoin from 'bpmnlint/rules/fake-join';
import labelRequired from 'bpmnlint/rules/label-required';
import noBpmndi from 'bpmnlint/rules/no-bpmndi';
import noComplexGateway from 'bpmnlint/rules/no-complex-gateway';
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
const ALLOWED_CAMUNDA = new Set(['camunda:Properties', 'camunda:FormData', 'camunda:InputOutput']);
const FORBIDDEN_ATTRS = ['class', 'expression', 'delegateExpression', 'resultVariable'];
const UNSUPPORTED = {
  'bpmn:ScriptTask': 'script tasks are not allowed; use a service task naming a registered operation',
  'bpmn:SendTask': 'send tasks are not supported; use a service task (e.g. notify)',
  'bpmn:ComplexGateway': 'complex gateways are not supported',
  'bpmn:CallActivity': 'call activities are not supported yet; start another process from a service task',
};

const rule = (check) => () => ({ check });

const cityloopRules = {
  // script tasks, send tasks, call activities, complex gateways, cycle timers
  unsupported: rule((node, reporter) => {
    for (const [type, message] of Object.entries(UNSUPPORTED)) {
      if (is(node, type)) reporter.report(node.id, message);
    }
    if (is(node, 'bpmn:TimerEventDefinition') && node.timeCycle) {
      reporter.report(node.$parent && node.$parent.id, 'cycle timers are not supported in processes');
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
  // a user task's form is a deployed form-js form, named by camunda:formRef
  'user-task-form': rule((node, reporter) => {
    if (!is(node, 'bpmn:UserTask')) return;
    if (node.get('camunda:formKey')) reporter.report(node.id, 'use camunda:formRef (a form-js form id), not camunda:formKey');
    const ref = node.get('camunda:formRef');
    if (ref && known.forms.size && !known.forms.has(ref)) reporter.report(node.id, `unknown form '${ref}'`);
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
  // timers are expressions: a constant duration or date is quoted ("PT4H"), a variable is named
  'timer-expression': rule((node, reporter) => {
    if (!is(node, 'bpmn:TimerEventDefinition')) return;
    const owner = node.$parent && node.$parent.id;
    const body = node.timeDuration || node.timeDate;
    const text = body && body.body ? body.body.trim() : '';
    if (!text) reporter.report(owner, 'timer is empty: give a quoted duration such as "PT4H" or a date variable');
    else if (/^(P|R\d*\/|\d{4}-\d\d-\d\d)/.test(text)) {
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
  'ad-hoc-sub-process': adHocSubProcess,
  'conditional-flows': conditionalFlows,
  'end-event-required': endEventRequired,
  'event-based-gateway': eventBasedGateway,
  'fake-join': fakeJoin,
  'label-required': labelRequired,
  'no-bpmndi': noBpmndi,
  'no-complex-gateway': noComplexGateway,
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
