"""engine.bpmn.decision_table evaluates a decision on the tablet exactly as the server does:
for every combination of the gas form's choices the tablet's table gives what the deployed
gas process's business rule task gives, and unary tests of every kind (ranges, lists, `?`,
operators, labels without expressions, COLLECT, dotted outputs) agree with SpiffWorkflow's
own DMNEngine run with cityloop's script engine."""
from __future__ import annotations

import itertools
import json
from datetime import date, timedelta
from types import SimpleNamespace

import pytest
from SpiffWorkflow.dmn.engine.DMNEngine import DMNEngine
from sqlmodel import Session, select

from engine.bpmn import decision_table
from engine.bpmn.decision_table import DecisionError, evaluate, table_of
from engine.bpmn.parser import CityParser
from engine.bpmn.script_engine import SafeScriptEngine
from engine.db.models import Definition
from engine.domain import gas
from engine.domain.models import Inspection
from engine.forms import parse_form
from tests.district import DELIVERER, PHOTO


def _latest(engine, kind: str, key: str) -> Definition:
    with Session(engine.db) as s:
        return s.exec(select(Definition).where(Definition.kind == kind, Definition.key == key)
                      .order_by(Definition.version.desc())).first()


def _choices(engine) -> dict[str, list[str]]:
    form = parse_form(_latest(engine, "form", "gas_inspection").content)
    return {f.key: [o.value for o in f.options] for f in form.fields if f.options}


def test_every_gas_form_combination_gives_the_servers_hazard(district, clock):
    """Each combination goes through the deployed gas process (the deliverer completes the
    inspection task; assess_checklist derives cylinder_expired; the business rule task
    classifies); the tablet evaluates the same checklist with the table of the same deployed
    decision."""
    table = table_of(_latest(district, "dmn", "gas_hazard").content.encode())
    assert json.loads(json.dumps(table)) == table, "the table is plain JSON"
    choices = _choices(district)
    assert set(choices) == {"hose_ok", "valve_leak_test", "ventilation", "co_alarm", "stove_flameout_protection"}
    today = clock().date()
    dates = {True: (today - timedelta(days=30)).isoformat(), False: (today + timedelta(days=300)).isoformat()}
    assert date.fromisoformat(dates[True]) < today < date.fromisoformat(dates[False])
    keys = sorted(choices)
    combos = list(itertools.product(*(choices[k] for k in keys), (True, False)))
    assert len(combos) == 144
    seen_levels = set()
    for values in combos:
        answers, expired = dict(zip(keys, values[:-1])), values[-1]
        iid = gas.start_inspection(district, 1, "deliverer1", "delivery", DELIVERER)
        [task] = district.tasks.for_actor(DELIVERER, instance_id=iid)
        district.complete(task["id"], DELIVERER, {**answers, "cylinder_inspection_date": dates[expired],
                                                   "photos": [PHOTO]})
        with Session(district.db) as s:
            insp = s.exec(select(Inspection).where(Inspection.instance_id == iid)).one()
        server = {"hazard_level": insp.hazard_level, "hazard_reason": insp.hazard_reason}
        tablet = evaluate(table, {**answers, "cylinder_expired": expired, "household_id": 1})
        assert tablet == server, (answers, expired)
        seen_levels.add(server["hazard_level"])
    assert seen_levels == {"none", "minor", "severe"}


# ---- unary tests of every kind, against SpiffWorkflow's DMNEngine itself ----------------------------
DMN = """<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="d" name="d" namespace="x">
  <decision id="kinds" name="Kinds">
    <decisionTable id="t" hitPolicy="{policy}">
      <input id="i_n" label="n"><inputExpression id="e_n" typeRef="integer"><text>n</text></inputExpression></input>
      <input id="i_s" label="s"><inputExpression id="e_s" typeRef="string"><text>s</text></inputExpression></input>
      <input id="i_l" label="flag"><inputExpression id="e_l" typeRef="boolean"/></input>
      <output id="o_a" label="A" name="a" typeRef="string"/>
      <output id="o_b" label="B" name="b.c" typeRef="string"/>
      <output id="o_e" label="E" name="" typeRef="string"/>
      {rules}
    </decisionTable>
  </decision>
</definitions>"""
RULES = [  # (n, s, flag) entries -> output a
    ("&lt; 3", "-", "-", '"small"'),
    ("3 &lt; ? &lt;= 6", '"x", "y"', "-", '"tuple-list"'),
    ("[4, 5]", "-", "-", '"list-literal"'),
    ("-", '!= "x"', "True", '"not-x and flag"'),
    ("&gt;= 10", '"a?b"', "-", '"quoted question mark"'),
    ("7", "", "-", "s + \"!\""),
    ("-", "-", "-", '"fallback"'),
]


def _dmn(policy: str) -> str:
    rules = "".join(
        f'<rule id="r{i}"><inputEntry id="a{i}"><text>{n}</text></inputEntry>'
        f'<inputEntry id="b{i}"><text>{s}</text></inputEntry><inputEntry id="c{i}"><text>{f}</text></inputEntry>'
        f'<outputEntry id="x{i}"><text>{out}</text></outputEntry><outputEntry id="y{i}"><text>"r{i}"</text>'
        f'</outputEntry><outputEntry id="z{i}"><text></text></outputEntry></rule>'
        for i, (n, s, f, out) in enumerate(RULES))
    return DMN.format(policy=policy, rules=rules)


def _spiff(xml: str, clock) -> tuple[DMNEngine, SafeScriptEngine]:
    parser = CityParser()                   # (the parser the server deploys with)
    parser.add_dmn_str(xml.encode())
    dmn = parser.dmn_parsers["kinds"]
    dmn.parse()
    table = dmn.decision.decisionTables[0]
    return DMNEngine(table), SafeScriptEngine(clock)


def _server(engine: DMNEngine, script: SafeScriptEngine, data: dict):
    task = SimpleNamespace(data=dict(data), workflow=SimpleNamespace(script_engine=script), task_spec=None)
    try:
        return engine.result(task) or None
    except Exception as exc:   # noqa: BLE001  (the library raises assorted errors; only "it failed" is compared)
        return ("error", type(exc).__name__)


def _tablet(table: dict, data: dict):
    try:
        return evaluate(table, data)
    except DecisionError:
        return ("error", "DecisionError")


@pytest.mark.parametrize("policy", ["UNIQUE", "FIRST", "COLLECT"])
def test_unary_tests_of_every_kind_agree_with_spiffworkflows_engine(policy, clock):
    xml = _dmn(policy)
    table = table_of(xml.encode())
    assert table["hit_policy"] == policy and table["rules"][0]["inputs"] == ["< 3", None, None]
    engine, script = _spiff(xml, clock)
    cases = [{"n": n, "s": s, "flag": flag}
             for n in (0, 3, 4, 5, 6, 7, 10, 11) for s in ("x", "y", "z", "a?b") for flag in (True, False)]
    cases += [{"n": 1, "s": "x"}, {"s": "x", "flag": True}, {"n": "text", "s": "x", "flag": False}]
    outcomes = set()
    for data in cases:
        server = _server(engine, script, data)
        if isinstance(server, dict):
            server = json.loads(json.dumps(server))
        tablet = _tablet(table, data)
        if isinstance(server, tuple):
            assert isinstance(tablet, tuple), (data, server, tablet)
        else:
            assert tablet == server, (policy, data)
        outcomes.add(json.dumps(tablet, sort_keys=True, default=str))
    assert len(outcomes) >= 6, "the cases reach many different rules"


def test_a_table_that_cannot_be_read_is_a_clear_error():
    with pytest.raises(DecisionError, match="well-formed"):
        table_of(b"<definitions")
    with pytest.raises(DecisionError, match="DOCTYPE"):
        table_of(b'<!DOCTYPE x [<!ENTITY a "b">]><definitions/>')
    with pytest.raises(DecisionError, match="exactly one decision"):
        table_of(b'<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/"/>')
    assert decision_table.__all__ == ["DecisionError", "evaluate", "table_of"]
