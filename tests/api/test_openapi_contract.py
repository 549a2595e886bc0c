"""The OpenAPI document tells the whole truth (engine.api.openapi): every status a route
answers is declared, with the one error shape, and the bodies match their schemas.

The property-based run is schemathesis against the real server (uvicorn in its own process,
over real HTTP, on the suite's database): every operation of /openapi.json, valid and invalid
inputs, as an administrator and as a unit worker, a bounded number of examples each, with a
fixed seed. It fails on any 5xx, any status the document does not declare, and any body,
content type or declared header that does not match."""
from __future__ import annotations

import json
import os
from collections import Counter

import httpx
import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from engine.api.openapi import SPECIFIC, permission_of
from engine.auth.policy import PERMISSIONS, STAFF
from engine.system import build
from tests.api.conftest import ACCOUNTS, PASSWORD, add_accounts, bearer
from tests.api.test_route_matrix import api_routes
from tests.district import seed
from tests.sync.servers import ServerProcess


def _operation(doc: dict, route, method: str) -> dict:
    return doc["paths"][route.path_format][method.lower()]


def _permission(route) -> str:
    return permission_of(route.dependant)


# ---- the document ------------------------------------------------------------------------------
def test_every_error_is_declared_in_the_one_shape(app):
    doc = app.openapi()
    assert doc is app.openapi(), "built once"
    assert "HTTPValidationError" not in json.dumps(doc), "FastAPI's 422 schema is not what the app answers"
    problem = doc["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"error", "message"}
    checked = 0
    for route in api_routes(app):
        for method in route.methods:
            responses = _operation(doc, route, method)["responses"]
            assert {"401", "503"} <= set(responses), f"{method} {route.path}"
            assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True
            assert responses["503"]["headers"]["Retry-After"]["required"] is True
            if "429" in responses:
                assert responses["429"]["headers"]["Retry-After"]["required"] is True
            if STAFF - PERMISSIONS[_permission(route)]:
                assert "403" in responses, f"{method} {route.path}: some roles are refused"
            if "{" in route.path:
                assert "404" in responses, f"{method} {route.path}: the path names something"
            for status, entry in responses.items():
                if int(status) >= 400:
                    schemas = json.dumps(entry["content"]["application/json"]["schema"])
                    assert "#/components/schemas/Problem" in schemas or "ImportRejected" in schemas, \
                        f"{method} {route.path} {status}"
            checked += 1
    assert checked == sum(len(methods) for methods in doc["paths"].values()) >= 70


def test_route_specific_statuses_are_declared(app):
    doc = app.openapi()
    assert set(_operation(doc, _route(app, "/api/v1/tasks/{task_id}/complete"), "POST")["responses"]) >= {
        "200", "400", "401", "403", "404", "409", "413", "422", "503"}
    assert set(_operation(doc, _route(app, "/api/v1/auth/login"), "POST")["responses"]) >= {"401", "429"}
    assert set(_operation(doc, _route(app, "/api/v1/attendance/shifts"), "POST")["responses"]) >= {"200", "201"}
    open311 = _operation(doc, _route(app, "/open311/v2/requests.{fmt}"), "POST")["responses"]
    assert "422" not in open311 and {"201", "400", "429"} <= set(open311), "Open311 answers bad input with 400"
    assert set(open311["400"]["content"]) == {"application/json", "text/xml"}
    gas_import = _operation(doc, _route(app, "/api/v1/gas/households/import"), "POST")["responses"]["422"]
    assert {s["$ref"].rsplit("/", 1)[1] for s in gas_import["content"]["application/json"]["schema"]["anyOf"]} == {
        "ImportRejected", "Problem"}, "a file with bad rows, or a request that is not one"


def test_the_table_of_route_specific_statuses_names_real_routes(app):
    routes = {(method, r.path) for r in api_routes(app) for method in r.methods}
    assert set(SPECIFIC) - routes == set(), "a stale entry declares nothing"


def _route(app, path: str):
    return next(r for r in api_routes(app) if r.path == path)


@pytest.mark.parametrize("role", ["anonymous", "deliverer", "designer"])
def test_what_each_route_answers_a_stranger_is_declared(app, client, tokens, role):
    """Every route, called with a placeholder object and an empty body by someone who may or
    may not call it: whatever it answers is declared, in the declared shape."""
    doc = app.openapi()
    headers = bearer(tokens[role]) if role != "anonymous" else {}
    undeclared, seen = [], set()
    for route in api_routes(app):
        for method in sorted(route.methods):
            path = route.path.replace("{fmt}", "json")
            for name in route.param_convertors:
                path = path.replace("{" + name + "}", "00000000")
            r = client.request(method, path, headers=headers, json={})
            responses = _operation(doc, route, method)["responses"]
            seen.add(r.status_code)
            if str(r.status_code) not in responses:
                undeclared.append(f"{method} {route.path}: {r.status_code} {r.text[:100]}")
            elif r.status_code >= 400 and r.headers.get("content-type", "").startswith("application/json"):
                body = r.json()
                if not route.path.startswith("/open311/"):
                    assert isinstance(body, dict) and isinstance(body.get("error"), str) \
                        and isinstance(body.get("message"), str), f"{method} {route.path}: {body}"
    assert undeclared == []
    assert 401 in seen if role == "anonymous" else 403 in seen


# ---- the property-based run --------------------------------------------------------------------
# per operation and mode (valid, invalid); CITYLOOP_OPENAPI_EXAMPLES runs a deeper search by hand
MAX_EXAMPLES = int(os.environ.get("CITYLOOP_OPENAPI_EXAMPLES") or 10)
CONFIG = {
    "seed": 20260302,
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    # the coverage phase would send hundreds of boundary cases per operation: over the time bound
    "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
}
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance,
          response_headers_conformance]


@pytest.fixture(scope="module")
def live_server(tmp_path_factory, module_empty_db_url):
    """uvicorn on a fresh database with the test district, one account per role; yields
    (base URL, {role: token}) for an administrator and a unit worker."""
    tmp = tmp_path_factory.mktemp("openapi")
    db_url = module_empty_db_url
    engine = build(db_url)
    seed(engine)
    add_accounts(engine)
    engine.db.dispose()
    server = ServerProcess(db_url, tmp / "data").start()
    try:
        # logged in over HTTP: the server signs with its database's key (this process may
        # hold the key of an earlier database at the same URL, see engine.auth.service._secret)
        tokens = {}
        for role in ("admin", "unit_worker"):
            r = httpx.post(f"{server.base_url}/api/v1/auth/login", timeout=30,
                           json={"username": ACCOUNTS[role][0], "password": PASSWORD})
            assert r.status_code == 200, r.text
            tokens[role] = r.json()["access_token"]
        yield server.base_url, tokens
    finally:
        server.stop()
    log = server.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-5000:]


SETTINGS = hypothesis.settings(
    max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],   # no shrinking: the first failure is enough
    # each example is a real HTTP request: generation is not what is slow here
    suppress_health_check=[hypothesis.HealthCheck.too_slow, hypothesis.HealthCheck.filter_too_much,
                           hypothesis.HealthCheck.data_too_large])


def _check(operation, mode, base_url: str, token: str, seen: Counter) -> None:
    @SETTINGS
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        response = case.call(base_url=base_url, headers=bearer(token), timeout=30)
        seen[response.status_code] += 1
        case.validate_response(response, checks=CHECKS)

    run()


@pytest.mark.slow
@pytest.mark.parametrize("role", ["admin", "unit_worker"])
def test_the_document_tells_the_whole_truth(live_server, role):
    """Every operation, valid and invalid inputs. (Run through schemathesis' strategies rather
    than its pytest plugin, whose lazy from_fixture loader does not work with pytest 9.2.)"""
    base_url, tokens = live_server
    config = schemathesis.Config.from_dict(CONFIG)
    api = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=config, timeout=30)
    failures, ran, seen = [], 0, Counter()
    for result in api.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            try:
                _check(operation, mode, base_url, tokens[role], seen)
            except hypothesis.errors.Unsatisfiable:
                continue   # no invalid input can be made for this operation
            except (Exception, FailureGroup) as exc:  # noqa: BLE001 - all operations' failures are reported
                failures.append(f"{operation.label} ({mode}): {exc}")
            ran += 1
    print(f"{role}: {ran} runs, {sum(seen.values())} requests, statuses {sorted(seen.items())}")
    assert ran >= 70 and sum(seen.values()) >= ran
    # the run reached the routes' work, not only their doors
    assert {200, 403, 404, 422} <= set(seen), sorted(seen)
    if role == "admin":
        assert 201 in seen, sorted(seen)
    assert failures == [], "\n\n".join(failures)
