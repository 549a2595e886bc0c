// Lints BPMN files with the designer's own bpmnlint configuration (console/src/pages/designer/lint.js),
// outside the browser, for tests/console/test_designer_lint.py.
//   node --loader ./node_resolve.mjs lint_corpus.mjs FOLDER KNOWN_JSON
// prints {file: {element id: [[category, rule, message], ...]} | {"error": message}} as JSON.
import fs from 'fs';
import path from 'path';
import { BpmnModdle } from 'bpmn-moddle';
import camunda from 'camunda-bpmn-moddle/resources/camunda.json' with { type: 'json' };
import { Linter } from 'bpmnlint';
import { bpmnlint } from '../../console/src/pages/designer/lint.js';
import { known } from '../../console/src/pages/designer/state.js';

const [, , dir, knownJson] = process.argv;
for (const [key, values] of Object.entries(JSON.parse(knownJson))) known[key] = new Set(values);
const out = {};
for (const file of fs.readdirSync(dir).filter((n) => n.endsWith('.bpmn')).sort()) {
  try {
    const { rootElement } = await new BpmnModdle({ camunda }).fromXML(fs.readFileSync(path.join(dir, file), 'utf8'));
    // a new linter per file, as bpmn-js-bpmnlint makes one per run (some rules keep state)
    const results = await new Linter(bpmnlint).lint(rootElement);
    const byElement = {};
    for (const [rule, reports] of Object.entries(results)) {
      for (const r of reports) (byElement[r.id] ||= []).push([r.category, rule, r.message]);
    }
    out[file] = byElement;
  } catch (err) {
    out[file] = { error: String(err.message) };
  }
}
console.log(JSON.stringify(out));
