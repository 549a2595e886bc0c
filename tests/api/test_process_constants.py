"""POST /api/v1/processes refuses a constant expression that cannot succeed, naming the element."""
from __future__ import annotations

from engine.system import WORKFLOWS
from tests.api.conftest import bearer

URL = "/api/v1/processes"
WORK_ORDER = (WORKFLOWS / "bpmn" / "rectification.bpmn").read_text()   # the rectify/review loop
SLA_TIMER = '<bpmn:timeDate xsi:type="bpmn:tFormalExpression">sla_due</bpmn:timeDate>'


def test_the_reported_sla_timer_is_refused_over_http(client, tokens):
    bad = WORK_ORDER.replace(SLA_TIMER, SLA_TIMER.replace("sla_due", "9**9**9 &gt; 0"), 1)
    assert bad != WORK_ORDER
    r = client.post(URL, files=[("files", ("rectification.bpmn", bad.encode(), "application/xml"))],
                    headers=bearer(tokens["designer"]))
    assert r.status_code == 422, r.text
    problems = [p for p in r.json()["errors"]["problems"] if p["element"] == "Event_sla_due"]
    assert len(problems) == 2 and all(p["file"] == "rectification.bpmn" for p in problems), r.json()
    assert "exponent of '**' is larger than 64" in problems[0]["message"]
    assert "a timeDate timer needs an ISO 8601 date-time" in problems[1]["message"]
    listed = client.get(URL, params={"key": "work_order"}, headers=bearer(tokens["designer"])).json()
    assert [d["version"] for d in listed] == [1], "nothing stored"
