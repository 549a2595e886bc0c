"""The process designer in a real browser: open, edit, check and deploy BPMN, DMN and forms;
the server's refusals on the element they name; compare versions; live instance counts."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

import httpx
import pytest
from playwright.sync_api import expect

from engine.system import WORKFLOWS
from tests.console.conftest import DEMO_USERS, api_token, login, shot

pytestmark = pytest.mark.slow

URL = "/api/v1/processes"
DESIGNER = DEMO_USERS["designer"]


def _api(server, user):
    return httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {api_token(server, user)}"},
                        timeout=30)


def _latest(client, kind, key) -> int:
    return max(d["version"] for d in client.get(URL, params={"kind": kind, "key": key}).json())


def _element(page, element_id):
    return page.locator(f".dsg-canvas .djs-element[data-element-id='{element_id}']").first


def _type_into(page, cell, text):
    cell.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(text)
    expect(cell).to_have_text(text)


def test_designer_changes_an_sla_in_the_dmn_table_and_a_new_order_takes_it(page, console_server):
    designer = _api(console_server, DESIGNER)
    version = _latest(designer, "dmn", "dispatch_rules")
    login(page, console_server, DESIGNER, lang="en", at=f"#/designer/dmn/dispatch_rules/{version}/edit")
    cell = page.locator("td[data-row-id='Rule_garbage_dongcheng'][data-col-id='Output_sla_hours'] .content-editable")
    expect(cell).to_have_text("24")
    shot(page, "designer-dmn-en")
    _type_into(page, cell, "6")
    expect(cell).to_have_text("6")
    expect(page.locator(".dsg-dirty")).to_be_visible()
    # a cell the server refuses is marked in the table, then put right
    unit = page.locator("td[data-row-id='Rule_garbage_other'][data-col-id='Output_unit']")
    _type_into(page, unit.locator(".content-editable"), 'open("x")')
    page.click("#dsg-validate")
    expect(page.locator("td.dsg-cell-error[data-element-id='LiteralExpression_garbage_other_unit']")).to_have_count(1)
    expect(page.locator(".dsg-problem[data-source='server'][data-element='LiteralExpression_garbage_other_unit']")) \
        .to_contain_text("calling 'open' is not allowed")
    shot(page, "designer-dmn-error-en")
    _type_into(page, unit.locator(".content-editable"), '"clean-west"')
    page.click("#dsg-deploy")
    expect(page.locator(".dsg-status.ok")).to_contain_text(f"dispatch_rules version {version + 1}")
    expect(page.locator(f".dsg-item[data-key='dispatch_rules'] .dsg-version.current[data-version='{version + 1}']")) \
        .to_be_visible()
    expect(cell).to_have_text("6")    # the new version, opened from the server
    shot(page, "designer-dmn-deployed-en")

    dispatcher = _api(console_server, DEMO_USERS["dispatcher"])
    r = dispatcher.post("/api/v1/work-orders", json={"category": "exposed_garbage", "area": "dongcheng"})
    assert r.status_code == 201, r.text
    order = r.json()
    reported = datetime.fromisoformat(order["reported_at"])
    # (the SLA clock starts at dispatch, a moment after the report)
    sla = datetime.fromisoformat(order["sla_due"]) - reported
    assert timedelta(hours=6) <= sla < timedelta(hours=6, minutes=1), sla
    page.click("#lang-toggle")
    expect(page.locator(".dsg-toolbar .dsg-tab.active")).to_have_text("编辑")
    expect(page.locator(".dsg-dmn")).to_contain_text("命中策略")
    expect(page.locator(".dsg-dirty")).to_have_count(0)
    expect(page.locator(".dsg-status.ok")).to_have_text(f"已部署 dispatch_rules 版本 {version + 1}")
    expect(cell).to_have_text("6")
    shot(page, "designer-dmn-zh")
    # designers may not create orders
    assert designer.post("/api/v1/work-orders", json={"category": "exposed_garbage", "area": "dongcheng"}) \
        .status_code == 403


def test_an_edit_the_server_refuses_is_shown_on_its_element(page, console_server):
    designer = _api(console_server, DESIGNER)
    login(page, console_server, DESIGNER, lang="en",
          at=f"#/designer/bpmn/work_order/{_latest(designer, 'bpmn', 'work_order')}/edit")
    # a business rule task's decision table is picked from the deployed ones
    _element(page, "Task_dispatch_rules").click()
    page.click("[data-group-id='group-cityloop-decision'] .bio-properties-panel-group-header")
    decision = page.locator("#bio-properties-panel-cityloop-decision-select")
    expect(decision).to_have_value("dispatch_rules")
    assert decision.locator("option").all_text_contents() == ["—", "dispatch_rules", "gas_hazard"]
    # (the rectify/review loop, with its escalation, is the process work_order calls)
    version = _latest(designer, "bpmn", "rectification")
    page.goto(f"{console_server.base_url}/#/designer/bpmn/rectification/{version}/edit")
    # a service task's operation is picked from the server's registry; none is a lint error
    _element(page, "Task_escalate").click()
    page.click("[data-group-id='group-cityloop-operation'] .bio-properties-panel-group-header")
    select = page.locator("#bio-properties-panel-cityloop-operation-select")
    expect(select).to_have_value("escalate")
    registry = [op["name"] for op in designer.get(f"{URL}/operations").json()]
    assert select.locator("option").all_text_contents() == ["—", *registry]
    select.select_option("")
    lint = page.locator(".dsg-problem[data-source='lint'][data-element='Task_escalate']")
    expect(lint).to_contain_text("service tasks must be")
    select.select_option("escalate")
    expect(lint).to_have_count(0)

    _element(page, "Task_review").click()
    page.click("[data-group-id='group-CamundaPlatform__UserAssignment'] .bio-properties-panel-group-header")
    groups = page.locator("#bio-properties-panel-candidateGroups")
    groups.fill('${open("x")}')
    expect(page.locator(".dsg-dirty")).to_be_visible()
    # the browser's checks let it pass; the server does not
    expect(page.locator(".dsg-problem[data-source='lint'][data-element='Task_review']")).to_have_count(0)
    page.click("#dsg-validate")
    note = page.locator(".djs-overlay .dsg-server-problem[data-element='Task_review']")
    expect(note).to_contain_text("calling 'open' is not allowed")
    expect(page.locator(".djs-element.dsg-server-error[data-element-id='Task_review']")).to_have_count(1)
    listed = page.locator(".dsg-problem[data-source='server'][data-element='Task_review']")
    expect(listed).to_have_count(1)
    page.click(".dsg-canvas", position={"x": 5, "y": 300})      # select nothing, then pick it from the list
    listed.click()
    expect(page.locator(".djs-element.selected[data-element-id='Task_review']")).to_have_count(1)
    shot(page, "designer-error-en")
    # deploying anyway: the 422 names the same element, nothing is stored
    page.click("#dsg-deploy")
    expect(page.locator(".dsg-status.error")).to_be_visible()
    expect(note).to_have_count(1)
    assert _latest(designer, "bpmn", "rectification") == version


def test_the_diff_marks_a_changed_element_and_the_heatmap_shows_the_apis_counts(page, console_server):
    designer = _api(console_server, DESIGNER)
    text = (WORKFLOWS / "bpmn" / "rectification.bpmn").read_text()
    changed = text.replace('name="Review"', 'name="Check the fix"', 1).encode()
    r = designer.post(URL, files=[("files", ("rectification.bpmn", changed, "application/xml"))])
    assert r.status_code == 201, r.text
    new = next(d["version"] for d in r.json()["deployed"] if d["key"] == "rectification")
    login(page, console_server, DESIGNER, lang="zh", at=f"#/designer/bpmn/rectification/{new}/diff")
    expect(page.locator(".djs-element.dsg-diff-changed[data-element-id='Task_review']")).to_have_count(1)
    change = page.locator("li.dsg-change[data-element='Task_review'][data-kind='changed']")
    expect(change).to_contain_text("Check the fix")
    shot(page, "designer-diff-zh")

    # the heatmap of the busiest version whose instances wait at elements of its own diagram (the
    # API counts a task of a called process under that task's id, which the caller's diagram lacks)
    found = []
    for key in ("work_order", "gas_inspection", "crew_attendance"):
        ids = set(re.findall(r' id="([^"]+)"', (WORKFLOWS / "bpmn" / f"{key}.bpmn").read_text()))
        for d in designer.get(URL, params={"kind": "bpmn", "key": key}).json():
            activity = designer.get(f"{URL}/{key}/versions/{d['version']}/activity").json()
            waiting = {el: c["waiting"] for el, c in activity["elements"].items() if c["waiting"] and el in ids}
            if waiting:
                found.append((sum(waiting.values()), key, d["version"], waiting))
    assert found, "no demo instance waits at an element of its own process's diagram"
    _, key, busiest, waiting = max(found)
    page.click(f".dsg-item[data-key='{key}'] .dsg-item-open")
    page.click(f".dsg-item[data-key='{key}'] .dsg-version[data-version='{busiest}']")
    page.click(".dsg-tab[data-view='heat']")
    for element, n in waiting.items():
        expect(page.locator(f".djs-overlay .dsg-heat-waiting[data-element='{element}']")).to_have_text(str(n))
    expect(page.locator(".dsg-heat-waiting")).to_have_count(len(waiting))
    shot(page, "designer-heatmap-zh")
    page.click("#lang-toggle")
    expect(page.locator(".dsg-side h3")).to_have_text("Instances waiting at each element now")
    shot(page, "designer-heatmap-en")


def test_forms_open_in_the_form_editor_with_a_preview(page, console_server):
    login(page, console_server, DESIGNER, lang="zh", at="#/designer/form/wo_review/1/edit")
    page.locator(".dsg-form .fjs-editor-container").wait_for()
    shot(page, "designer-form-zh")
    page.click(".dsg-tab[data-view='preview']")
    page.locator(".dsg-form-preview .fjs-form").wait_for()
    shot(page, "designer-form-preview-zh")
    page.click("#dsg-validate")
    expect(page.locator(".dsg-status.ok")).to_have_text("服务器校验通过，可以部署")


def test_a_dispatcher_looks_but_may_not_deploy(page, console_server):
    login(page, console_server, DEMO_USERS["dispatcher"], lang="en", at="#/designer")
    _element(page, "Call_rectification").wait_for()      # work_order: the most instances
    expect(page.locator(".dsg-readonly-note")).to_be_visible()
    expect(page.locator("#dsg-deploy")).to_have_count(0)
    expect(page.locator("#dsg-validate")).to_have_count(0)
    shot(page, "designer-en")
    page.click("#lang-toggle")
    expect(page.locator(".dsg-list h2")).to_have_text("已部署的定义")
    general = page.locator("[data-group-id='group-general'] .bio-properties-panel-group-header-title")
    expect(general).to_have_text("常规")
    expect(page.locator(".bjsl-button")).to_contain_text("没有问题")
    shot(page, "designer-zh")
    dispatcher = _api(console_server, DEMO_USERS["dispatcher"])
    text = (WORKFLOWS / "bpmn" / "work_order.bpmn").read_bytes()
    for path in (URL, f"{URL}/validate"):
        r = dispatcher.post(path, files=[("files", ("work_order.bpmn", text, "application/xml"))])
        assert r.status_code == 403, (path, r.text)


def test_a_call_activity_with_mappings_passes_the_browser_checks_and_a_signal_does_not(page, console_server):
    """Plan 15 in the designer: a call activity with camunda:in/out is drawn and checked like the
    server checks it (not flagged; its mappings stay in the panel); a signal event is flagged in
    the server's words, and the server refuses it with the same words."""
    corpus = WORKFLOWS.parent / "tests" / "bpmn_corpus"
    designer = _api(console_server, DESIGNER)
    names = ["corpus_note.form", "corpus_approve.form", "b01_callee_rectify.bpmn", "b04_call_with_in_out.bpmn"]
    r = designer.post(URL, files=[("files", (n, (corpus / n).read_bytes(), "application/octet-stream")) for n in names])
    assert r.status_code == 201, r.text
    version = _latest(designer, "bpmn", "corpus_b04")
    login(page, console_server, DESIGNER, lang="en", at=f"#/designer/bpmn/corpus_b04/{version}/edit")
    call = page.locator(".dsg-problem[data-source='lint'][data-element='Call_rectify']")
    _element(page, "Call_rectify").click()
    page.click("[data-group-id='group-CamundaPlatform__CallActivity'] .bio-properties-panel-group-header")
    called = page.locator("#bio-properties-panel-calledElement")
    expect(called).to_have_value("corpus_callee_rectify")
    expect(page.locator("#bio-properties-panel-calledElementTenantId")).to_have_count(0)   # refused: not offered
    expect(page.locator("[data-group-id='group-CamundaPlatform__InMapping']")).to_be_visible()
    expect(page.locator("[data-group-id='group-CamundaPlatform__OutMapping']")).to_be_visible()
    page.click("[data-group-id='group-CamundaPlatform__InMapping'] .bio-properties-panel-group-header")
    expect(page.locator("[data-group-id='group-CamundaPlatform__InMapping'] .bio-properties-panel-collapsible-entry"))\
        .to_have_count(2)    # source and sourceExpression (the business key mapping has a group of its own)
    expect(call).to_have_count(0)
    shot(page, "designer-call-activity-mappings-en")
    # the check runs on the call activity: an expression as the called element is flagged...
    called.fill("${which}")
    expect(call).to_contain_text("must be a process id")
    called.fill("corpus_callee_rectify")
    expect(call).to_have_count(0)       # ...and the call with its camunda:in/out mappings is not
    # a none end event turned into a signal end event is flagged, in the server's words
    _element(page, "EndEvent_1").click()
    page.click(".djs-context-pad .entry[data-action='replace']")
    page.click(".djs-popup .entry[data-id='replace-with-signal-end']")
    signal = page.locator(".dsg-problem[data-source='lint'][data-element='EndEvent_1']")
    expect(signal).to_contain_text("signal events are not supported; use a message event")
    expect(page.locator("[data-group-id='group-CamundaPlatform__InMapping']")).to_have_count(0)  # (a call's only)
    expect(call).to_have_count(0)
    page.click("#dsg-validate")
    server = page.locator(".dsg-problem[data-source='server']")
    expect(server).to_have_count(1)
    expect(server).to_have_attribute("data-element", "EndEvent_1")   # the event, not its event definition
    expect(server).to_contain_text("signal events are not supported; use a message event")
    expect(page.locator(".djs-element.dsg-server-error[data-element-id='EndEvent_1']")).to_have_count(1)
    expect(page.locator(".dsg-problem[data-source='server'][data-element='Call_rectify']")).to_have_count(0)
    shot(page, "designer-call-activity-signal-en")
    page.click("#lang-toggle")
    expect(page.locator(".dsg-toolbar .dsg-tab.active")).to_have_text("编辑")
    expect(signal).to_contain_text("signal events are not supported")
    shot(page, "designer-call-activity-signal-zh")
