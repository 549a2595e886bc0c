"""The designer's browser checks against the BPMN corpus, without a browser: the bpmnlint
configuration of console/src/pages/designer/lint.js run by node over tests/bpmn_corpus. What
deploy accepts draws without an error; what deploy refuses is flagged while drawing, on the
same element and in the server's words, wherever the browser can know it (the expression
allow-list, the XML checks and the library's schema check run on the server only)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from engine.domain.registry import build_registry
from engine.system import WORKFLOWS
from tests.test_bpmn_corpus import CORPUS, FILES

HERE = Path(__file__).parent
SERVER_ONLY = {
    "r27_code_in_condition.bpmn": "the expression allow-list runs on the server",
    "r32_mapping_with_code.bpmn": "the expression allow-list runs on the server",
    "r30_only_non_executable.bpmn": "whether a file has an executable process is the server's check",
    "z01_dtd_entity.bpmn": "XML hardening is the server's",
    "z02_not_bpmn.bpmn": "not BPMN: the modeler cannot open it",
    "z03_malformed.bpmn": "not XML: the modeler cannot open it",
    "z04_empty.bpmn": "empty: the modeler cannot open it",
    "z05_schema_order.bpmn": "the XSD check is the library's, on the server",
    "z06_oversize.bpmn": "made by the corpus test, not a file",
}


@pytest.fixture(scope="module")
def lint():
    known = {"operations": sorted(build_registry().names()),
             "forms": ["corpus_note", "corpus_approve", *(p.stem for p in (WORKFLOWS / "forms").glob("*.form"))],
             "decisions": ["corpus_route", *(p.stem for p in (WORKFLOWS / "dmn").glob("*.dmn"))],
             "processes": ["corpus_callee_rectify", "corpus_callee_double", "corpus_callee_fails",
                           *(p.stem for p in (WORKFLOWS / "bpmn").glob("*.bpmn"))]}
    done = subprocess.run(["node", "--no-warnings", "--loader", "./node_resolve.mjs", "lint_corpus.mjs", str(CORPUS),
                           json.dumps(known)], cwd=HERE, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _errors(found: dict) -> dict:
    return {el: [(rule, msg) for category, rule, msg in issues if category == "error"]
            for el, issues in found.items() if any(c == "error" for c, _, _ in issues)}


@pytest.mark.parametrize("name", sorted(n for n, e in FILES.items() if e["expect"] == "accept"))
def test_what_deploy_accepts_draws_without_an_error(lint, name):
    assert "error" not in lint[name], lint[name]
    assert _errors(lint[name]) == {}, f"{name} ({FILES[name]['why']})"


REFUSED = sorted(n for n, e in FILES.items() if e["expect"] == "refuse" and n not in SERVER_ONLY)


@pytest.mark.parametrize("name", REFUSED)
def test_what_deploy_refuses_is_flagged_while_drawing(lint, name):
    entry = FILES[name]
    errors = _errors(lint[name])
    on = [errors.get(entry["element"], [])] if entry["element"] else list(errors.values())
    said = [msg for issues in on for _, msg in issues if entry["word"].lower() in msg.lower()]
    assert said, f"{name}: no browser error {'on ' + entry['element'] + ' ' if entry['element'] else ''}says " \
                 f"{entry['word']!r}: {errors}"
