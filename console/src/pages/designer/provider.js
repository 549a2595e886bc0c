// A properties-panel provider of cityloop's own: a service task's operation is picked from the
// server's registry (GET /api/v1/processes/operations), a user task's form from the deployed
// forms and a business rule task's decision from the deployed decision tables, never typed.
// Camunda groups and entries the engine refuses (listeners, scripts, connectors, Java
// implementations, CMMN and tenants of a call activity, delegate variable mappings) are taken
// out of the panel so a designer is not offered them; what plan 15 accepts stays: a call
// activity's called element, binding and version, its camunda:in/out mappings and business
// key, and the input parameters a message carries.
import { SelectEntry, isSelectEntryEdited } from '@bpmn-io/properties-panel';
import { createElement } from '@bpmn-io/properties-panel/preact';
import { useService } from 'bpmn-js-properties-panel';
import { getBusinessObject, is } from 'bpmn-js/lib/util/ModelUtil';

import { formIdOfKey } from './lint.js';
import { choices, known } from './state.js';
import { t } from '../../i18n.js';


const REFUSED_GROUPS = new Set([
  'CamundaPlatform__ExecutionListener', 'CamundaPlatform__TaskListener', 'CamundaPlatform__ConnectorInput',
  'CamundaPlatform__ConnectorOutput', 'CamundaPlatform__FieldInjection', 'CamundaPlatform__Script',
  'CamundaPlatform__Errors', 'CamundaPlatform__FormData', 'CamundaPlatform__Form', 'CamundaPlatform__JobExecution',
  'CamundaPlatform__ExternalTask', 'CamundaPlatform__HistoryCleanup', 'CamundaPlatform__AsynchronousContinuations',
]);
// groups only a call activity keeps
const CALL_ONLY_GROUPS = new Set(['CamundaPlatform__InMapping', 'CamundaPlatform__InMappingPropagation',
  'CamundaPlatform__OutMapping', 'CamundaPlatform__OutMappingPropagation']);
// entries of the call activity group the engine refuses (the group's other entries stay)
const REFUSED_CALL_ENTRIES = new Set([
  'calledElementTenantId', 'calledElementVersionTag', 'calledElementDelegateVariableMappingType',
  'calledElementVariableMappingClass', 'calledElementVariableMappingDelegateExpression', 'calledElementCaseRef',
  'calledElementCaseBinding', 'calledElementCaseTenantId', 'calledElementCaseVersion',
]);

function OperationSelect(props) {
  const { element, id } = props;
  const modeling = useService('modeling');
  const bo = getBusinessObject(element);
  const current = bo.get('camunda:topic') || '';
  const op = choices.operations.find((o) => o.name === current);
  const params = op && op.parameters.length
    ? op.parameters.map((p) => `${p.name}${p.values.length ? ` = ${p.values.join(' | ')}` : ''}`).join('; ') : '';
  return createElement(SelectEntry, {
    element,
    id,
    label: t('designer.prop.operation'),
    description: op ? `${op.description}${params ? ` — ${t('designer.prop.params')}: ${params}` : ''}` : t('designer.prop.operation_pick'),
    getValue: () => current,
    setValue: (value) => modeling.updateProperties(element, {
      'camunda:type': value ? 'external' : undefined,
      'camunda:topic': value || undefined,
    }),
    getOptions: () => {
      const names = choices.operations.map((o) => ({ value: o.name, label: o.name }));
      if (current && !known.operations.has(current)) names.unshift({ value: current, label: `${current} (?)` });
      return [{ value: '', label: '—' }, ...names];
    },
  });
}

function FormSelect(props) {
  const { element, id } = props;
  const modeling = useService('modeling');
  const bo = getBusinessObject(element);
  // a camunda:formKey naming a form-js form shows as that form; picking one writes camunda:formRef
  const current = bo.get('camunda:formRef') || formIdOfKey(bo.get('camunda:formKey')) || '';
  return createElement(SelectEntry, {
    element,
    id,
    label: t('designer.prop.form'),
    description: t('designer.prop.form_help'),
    getValue: () => current,
    setValue: (value) => modeling.updateProperties(element, {
      'camunda:formRef': value || undefined,
      'camunda:formKey': undefined,
      'camunda:formRefBinding': value ? 'deployment' : undefined,
    }),
    getOptions: () => {
      const forms = choices.forms.map((f) => ({ value: f, label: f }));
      if (current && !choices.forms.includes(current)) forms.unshift({ value: current, label: `${current} (?)` });
      return [{ value: '', label: '—' }, ...forms];
    },
  });
}

function DecisionSelect(props) {
  const { element, id } = props;
  const modeling = useService('modeling');
  const current = getBusinessObject(element).get('camunda:decisionRef') || '';
  return createElement(SelectEntry, {
    element,
    id,
    label: t('designer.prop.decision'),
    description: t('designer.prop.decision_help'),
    getValue: () => current,
    setValue: (value) => modeling.updateProperties(element, {
      'camunda:decisionRef': value || undefined,
      'camunda:decisionRefBinding': undefined,
      'camunda:resultVariable': undefined,
      'camunda:mapDecisionResult': undefined,
    }),
    getOptions: () => {
      const ids = choices.decisions.map((d) => ({ value: d, label: d }));
      if (current && !choices.decisions.includes(current)) ids.unshift({ value: current, label: `${current} (?)` });
      return [{ value: '', label: '—' }, ...ids];
    },
  });
}

export default function CityloopPropertiesProvider(propertiesPanel) {
  propertiesPanel.registerProvider(400, this);
}
CityloopPropertiesProvider.$inject = ['propertiesPanel'];

CityloopPropertiesProvider.prototype.getGroups = function getGroups(element) {
  return (groups) => {
    let kept = groups.filter((g) => !REFUSED_GROUPS.has(g.id));
    if (is(element, 'bpmn:ServiceTask')) {
      kept = kept.filter((g) => g.id !== 'CamundaPlatform__Implementation');
      kept.splice(1, 0, {
        id: 'cityloop-operation',
        label: t('designer.prop.operation_group'),
        entries: [{ id: 'cityloop-operation-select', element, component: OperationSelect, isEdited: isSelectEntryEdited }],
      });
    }
    if (is(element, 'bpmn:BusinessRuleTask')) {
      kept = kept.filter((g) => g.id !== 'CamundaPlatform__Implementation');
      kept.splice(1, 0, {
        id: 'cityloop-decision',
        label: t('designer.prop.decision_group'),
        entries: [{ id: 'cityloop-decision-select', element, component: DecisionSelect, isEdited: isSelectEntryEdited }],
      });
    }
    if (is(element, 'bpmn:CallActivity')) {
      kept = kept.map((g) => (g.id === 'CamundaPlatform__CallActivity'
        ? { ...g, entries: g.entries.filter((e) => !REFUSED_CALL_ENTRIES.has(e.id)) } : g));
    } else {   // Camunda also offers in mappings on signal throws: signals are refused
      kept = kept.filter((g) => !CALL_ONLY_GROUPS.has(g.id));
    }
    if (is(element, 'bpmn:UserTask')) {
      kept.splice(1, 0, {
        id: 'cityloop-form',
        label: t('designer.prop.form_group'),
        entries: [{ id: 'cityloop-form-select', element, component: FormSelect, isEdited: isSelectEntryEdited }],
      });
    }
    return kept;
  };
};

export const CityloopPropertiesModule = {
  __init__: ['cityloopPropertiesProvider'],
  cityloopPropertiesProvider: ['type', CityloopPropertiesProvider],
};
