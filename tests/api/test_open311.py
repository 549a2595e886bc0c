"""Open311 GeoReport v2 over HTTP: services, definitions, requests POST/GET, JSON and XML."""
from __future__ import annotations

import json
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from sqlmodel import Session

from engine.domain import workorders
from engine.domain.models import WorkOrder
from tests.api.conftest import bearer
from tests.district import PHOTO, REVIEWER, WORKER_EAST, only_task

P = "/open311/v2"
# Near 1 East Road (DC01-001, 31.2 / 121.4) in the test district: area dongcheng -> clean-east.
NEAR = {"lat": "31.2003", "long": "121.4002"}


def _xml(response):
    assert response.headers["content-type"].startswith("text/xml")
    return etree.fromstring(response.content, parser=etree.XMLParser(resolve_entities=False, no_network=True))


def _post(client, fmt="json", **fields):
    return client.post(f"{P}/requests.{fmt}", data={"service_code": "exposed_garbage", **NEAR, **fields})


def test_services_json_and_xml_list_every_category(client):
    r = client.get(f"{P}/services.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    services = {s["service_code"]: s for s in r.json()}
    assert set(services) == set(workorders.CATEGORIES)
    garbage = services["exposed_garbage"]
    assert garbage["service_name"] == "Exposed garbage" and "暴露垃圾" in garbage["description"]
    assert garbage["type"] == "realtime" and garbage["metadata"] is False
    root = _xml(client.get(f"{P}/services.xml"))
    assert root.tag == "services"
    codes = [s.findtext("service_code") for s in root.findall("service")]
    assert sorted(codes) == sorted(workorders.CATEGORIES)
    first = root.find("service")
    assert first.findtext("metadata") == "false" and first.findtext("service_name")


def test_service_definition_and_unknown_service(client):
    r = client.get(f"{P}/services/road_damage.json")
    assert r.status_code == 200 and r.json() == {"service_code": "road_damage", "attributes": []}
    root = _xml(client.get(f"{P}/services/road_damage.xml"))
    assert root.tag == "service_definition" and root.findtext("service_code") == "road_damage"
    r = client.get(f"{P}/services/no_such.json")
    assert r.status_code == 404
    assert r.json()[0]["code"] == 404 and "no_such" in r.json()[0]["description"]
    root = _xml(client.get(f"{P}/services/no_such.xml"))
    assert root.tag == "errors" and root.find("error").findtext("code") == "404"
    other = client.get(f"{P}/services.yaml")
    assert other.status_code == 404 and other.json()["error"] == "not_found"


def test_post_then_read_back_open_then_closed(client, system, clock):
    r = _post(client, description="Bags piled by the bins 垃圾堆积", email="li@example.org", first_name="Li",
              last_name="Wei", phone="13800000000", media_url="https://example.org/p.jpg")
    assert r.status_code == 201, r.text
    (created,) = r.json()
    rid = created["service_request_id"]
    assert isinstance(rid, int) and created["service_notice"]
    (req,) = client.get(f"{P}/requests/{rid}.json").json()
    assert req["status"] == "open" and req["service_code"] == "exposed_garbage"
    assert req["agency_responsible"] == "clean-east"  # routed by area dongcheng
    assert req["description"] == "Bags piled by the bins 垃圾堆积"
    assert req["requested_datetime"].endswith("+08:00")
    assert datetime.fromisoformat(req["requested_datetime"]) == clock()
    assert req["lat"] == pytest.approx(31.2003) and req["long"] == pytest.approx(121.4002)
    assert req["media_url"] == "https://example.org/p.jpg"
    assert "email" not in req and "phone" not in req  # personal data is not published

    with Session(system.db) as s:
        order_number = s.get(WorkOrder, rid).number
    assert order_number in created["service_notice"]
    clock.advance(hours=2)
    task = only_task(system, WORKER_EAST, order_number)
    system.complete(task["id"], WORKER_EAST, {"action": "fixed", "after_photos": [PHOTO]})
    review = only_task(system, REVIEWER, order_number)
    system.complete(review["id"], REVIEWER, {"decision": "approve"})

    root = _xml(client.get(f"{P}/requests/{rid}.xml"))
    assert root.tag == "service_requests"
    request = root.find("request")
    assert request.findtext("service_request_id") == str(rid)
    assert request.findtext("status") == "closed"
    assert request.findtext("agency_responsible") == "clean-east"
    updated = datetime.fromisoformat(request.findtext("updated_datetime"))
    assert updated == clock() and updated.utcoffset().total_seconds() == 8 * 3600


def test_json_body_and_address_string_location(client):
    r = client.post(f"{P}/requests.json", json={"service_code": "street_vending", "address_string": "东路 12号",
                                                 "description": "stalls on the pavement"})
    assert r.status_code == 201, r.text
    rid = r.json()[0]["service_request_id"]
    (req,) = client.get(f"{P}/requests/{rid}.json").json()
    assert req["agency_responsible"] == "market-dongcheng" and req["address"] == "东路 12号"


def test_address_id_names_an_address_code(client):
    r = _post(client, service_code="exposed_garbage", lat="", long="", address_id="DC01-001-02")
    assert r.status_code == 201, r.text
    (req,) = client.get(f"{P}/requests/{r.json()[0]['service_request_id']}.json").json()
    assert req["address_id"] == "DC01-001-02" and req["lat"] == pytest.approx(31.2)


@pytest.mark.parametrize("fields,word", [
    ({"service_code": "nope"}, "service_code"),
    ({"service_code": ""}, "service_code"),
    ({"lat": "", "long": ""}, "location"),
    ({"lat": "north", "long": "121.4"}, "lat"),
    ({"lat": "95", "long": "121.4"}, "lat"),
    ({"long": ""}, "lat"),
    ({"email": "not-an-address"}, "email"),
    ({"media_url": "javascript:alert(1)"}, "media_url"),
    ({"description": "x" * 4001}, "description"),
    ({"description": "nul \x00 byte"}, "control"),
    ({"address_id": "NO-SUCH-CODE", "lat": "", "long": ""}, "address_id"),
])
def test_bad_input_is_a_400_in_the_open311_format(client, fields, word):
    r = _post(client, **fields)
    assert r.status_code == 400, r.text
    (error,) = r.json()
    assert error["code"] == 400 and word in error["description"]
    root = _xml(_post(client, "xml", **fields))
    assert root.tag == "errors" and root.find("error").findtext("code") == "400"


def test_unreadable_bodies_are_400s(client):
    bad_json = client.post(f"{P}/requests.json", content=b"{not json", headers={"content-type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()[0]["code"] == 400
    array = client.post(f"{P}/requests.json", json=[1, 2])
    assert array.status_code == 400
    other = client.post(f"{P}/requests.json", content=b"x", headers={"content-type": "text/plain"})
    assert other.status_code == 400
    upload = client.post(f"{P}/requests.json", data={"service_code": "other", **NEAR},
                         files={"media": ("a.jpg", b"\xff\xd8", "image/jpeg")})
    assert upload.status_code == 400
    deep = client.post(f"{P}/requests.json", content=b"[" * 100_000 + b"]" * 100_000,
                       headers={"content-type": "application/json"})
    assert deep.status_code == 400
    huge = client.post(f"{P}/requests.json",
                       content=b'{"service_code": "other", "lat": 1' + b"0" * 400 + b', "long": 1}',
                       headers={"content-type": "application/json"})
    assert huge.status_code == 400 and "lat" in huge.json()[0]["description"]
    assert client.get(f"{P}/requests.json", params={"start_date": "0001-01-01T00:00:00+14:00"}).status_code == 400
    assert client.get(f"{P}/requests/abc.json").status_code == 404
    assert client.get(f"{P}/requests/99999999999999999999999.json").status_code == 404
    assert client.get(f"{P}/requests/424242.xml").status_code == 404


def test_xml_injection_comes_back_as_text(client):
    evil = '</description><status>closed</status><x a="1">&amp; <![CDATA[ ]]> \'"'
    r = _post(client, "xml", description=evil, address_string="<b>1 East Road</b>")
    assert r.status_code == 201, r.text
    created = _xml(r)
    rid = created.find("request").findtext("service_request_id")
    raw = client.get(f"{P}/requests/{rid}.xml")
    assert b"<status>closed</status><x" not in raw.content and b"&lt;/description&gt;" in raw.content
    request = _xml(raw).find("request")
    assert request.findtext("description") == evil and request.findtext("status") == "open"
    assert request.findtext("address") == "<b>1 East Road</b>"
    assert len(request.findall("status")) == 1 and request.find("x") is None


def test_find_requests_filters_newest_first(client, clock):
    ids = []
    for code in ("exposed_garbage", "illegal_ads", "exposed_garbage"):
        ids.append(_post(client, service_code=code).json()[0]["service_request_id"])
        clock.advance(hours=1)
    found = client.get(f"{P}/requests.json").json()
    assert [r["service_request_id"] for r in found] == ids[::-1]
    garbage = client.get(f"{P}/requests.json", params={"service_code": "exposed_garbage"}).json()
    assert [r["service_request_id"] for r in garbage] == [ids[2], ids[0]]
    chosen = client.get(f"{P}/requests.json", params={"service_request_id": f"{ids[0]},{ids[1]}"}).json()
    assert {r["service_request_id"] for r in chosen} == {ids[0], ids[1]}
    start = "2026-03-02T09:30:00+08:00"  # clock started 00:00 UTC = 08:00 +08:00
    later = client.get(f"{P}/requests.json", params={"start_date": start}).json()
    assert [r["service_request_id"] for r in later] == [ids[2]]
    assert client.get(f"{P}/requests.json?start_date=2026-03-02T09:30:00+08:00").json() == later  # '+' as space
    before = client.get(f"{P}/requests.json", params={"end_date": "2026-03-02T01:30:00Z"}).json()
    assert [r["service_request_id"] for r in before] == [ids[1], ids[0]]
    assert client.get(f"{P}/requests.json", params={"status": "closed"}).json() == []
    assert len(client.get(f"{P}/requests.json", params={"status": "open"}).json()) == 3
    root = _xml(client.get(f"{P}/requests.xml"))
    assert [int(e.findtext("service_request_id")) for e in root.findall("request")] == ids[::-1]
    clock.advance(days=91)
    assert client.get(f"{P}/requests.json").json() == []  # default window: the last 90 days
    for bad in ({"status": "pending"}, {"start_date": "yesterday"}, {"service_request_id": "1,x"},
                {"service_code": "nope"}, {"start_date": "2026-03-03T00:00:00Z", "end_date": "2026-03-02T00:00:00Z"}):
        r = client.get(f"{P}/requests.json", params=bad)
        assert r.status_code == 400 and r.json()[0]["code"] == 400, bad


def test_only_open311_requests_are_public(client, system):
    from tests.district import DISPATCHER
    internal = workorders.report(system, DISPATCHER, source="patrol", category="exposed_garbage", area="dongcheng")
    assert client.get(f"{P}/requests/{internal.id}.json").status_code == 404
    assert client.get(f"{P}/requests.json").json() == []


_FIELDS = st.sampled_from(["service_code", "lat", "long", "description", "address_string", "address_id", "email",
                           "media_url", "first_name", "phone", "device_id", "attribute[x]"])
_VALUES = (st.none() | st.booleans() | st.integers(min_value=-10**400, max_value=10**400) | st.floats()
           | st.text(max_size=30)
           | st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(_FIELDS, _VALUES, max_size=6), fmt=st.sampled_from(["json", "xml"]))
def test_random_json_is_created_or_a_400(client, body, fmt):
    body.setdefault("service_code", "other")
    r = client.post(f"{P}/requests.{fmt}", content=json.dumps(body).encode(),
                    headers={"content-type": "application/json"})
    assert r.status_code in (201, 400), (body, r.status_code, r.text[:300])
    if r.status_code == 201:
        rid = (r.json()[0]["service_request_id"] if fmt == "json"
               else _xml(r).find("request").findtext("service_request_id"))
        assert _xml(client.get(f"{P}/requests/{rid}.xml")).find("request") is not None


def test_anonymous_senders_are_limited_per_address_and_staff_are_not(client, clock, tokens, setenv):
    setenv(CITYLOOP_OPEN311_PER_HOUR="3")
    for _ in range(3):
        assert _post(client).status_code == 201
    refused = _post(client)
    assert refused.status_code == 429
    body = refused.json()
    assert body[0]["code"] == 429 and "at most 3 an hour" in body[0]["description"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 3600
    xml = _post(client, "xml")
    assert xml.status_code == 429 and _xml(xml).find("error/code").text == "429"
    # a dispatcher entering a phoned-in report is not a citizen's address
    staff = client.post(f"{P}/requests.json", headers=bearer(tokens["dispatcher"]),
                        data={"service_code": "exposed_garbage", **NEAR})
    assert staff.status_code == 201
    clock.advance(minutes=61)
    assert _post(client).status_code == 201
