"""Meters v2 on the wire, checked against Leap's own OpenAPI file (meters-v2.yml).

Both directions: the searches the client sends, and every kind of answer the simulator gives.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import requests
from openapi_core.exceptions import OpenAPIError
from openapi_core.testing import MockRequest, MockResponse

from devtools.leap_simulator import LeapSimulator, server_error
from leap_tracker import wire
from leap_tracker.adapters.leap_http import LeapHttpClient
from leap_tracker.config import LeapApiSettings
from tests.leap_reference import LEAP_SPEC_HOST, meters_openapi

SEARCH = wire.METERS_SEARCH_PATH


def spec_request(body: Any) -> MockRequest:
    """The search as Leap's spec sees it (same body, Leap's host: the spec only knows its servers)."""
    return MockRequest(
        LEAP_SPEC_HOST,
        "post",
        SEARCH,
        headers={wire.AUTH_HEADER: f"{wire.AUTH_SCHEME} spec-check"},
        data=json.dumps(body).encode(),
    )


def validate_exchange(body: Any, answer: requests.Response) -> None:
    meters_openapi().validate_response(spec_request(body), MockResponse(answer.content, answer.status_code))


def search(sim: LeapSimulator, body: Any, key: str | None = None) -> requests.Response:
    headers = {wire.AUTH_HEADER: f"{wire.AUTH_SCHEME} {key or sim.api_key}"}
    return requests.post(f"{sim.base_url}{SEARCH}", json=body, headers=headers, timeout=5)


@pytest.fixture
def late_simulator(leap_simulator: LeapSimulator) -> LeapSimulator:
    leap_simulator.advance(days=40)  # every meter that will ever appear has appeared
    return leap_simulator


def test_the_clients_searches_are_valid_requests_for_the_spec():
    with LeapSimulator(seed=7, customers=300, meters_page_cap=7) as sim:
        sim.advance(days=40)
        settings = LeapApiSettings(base_url=sim.base_url, api_key=sim.api_key)
        with LeapHttpClient(settings) as client:
            for chunk in (sim.ref_ids[:100], sim.ref_ids[100:150]):
                list(client.search_by_connection_references(chunk))
                list(client.search_by_connection_references(chunk, created_after="2025-01-10T00:00:00Z"))
        bodies = [request.body for request in sim.request_log]

    assert any(wire.METERS_REQ_PAGE_TOKEN in body for body in bodies)
    assert any(wire.METERS_REQ_CREATED_AFTER in body for body in bodies)
    for body in bodies:
        meters_openapi().validate_request(spec_request(body))


def test_every_page_of_meters_the_simulator_serves_matches_the_spec(late_simulator):
    found = 0
    for start in range(0, late_simulator.customers, wire.METERS_MAX_REFERENCE_IDS):
        body: dict[str, Any] = {
            wire.METERS_REQ_CONNECTION_REFERENCE_IDS: late_simulator.ref_ids[start : start + 100],
            wire.METERS_REQ_PAGE_SIZE: 25,
        }
        while True:
            answer = search(late_simulator, body)
            validate_exchange(body, answer)
            page = answer.json()
            found += len(page[wire.METERS_RESP_METERS])
            if not page.get(wire.METERS_RESP_NEXT_PAGE_TOKEN):
                break
            body = {**body, wire.METERS_REQ_PAGE_TOKEN: page[wire.METERS_RESP_NEXT_PAGE_TOKEN]}

    expected = sum(len(late_simulator.meters_of(ref_id)) for ref_id in late_simulator.ref_ids)
    assert found == expected > 50


@pytest.mark.parametrize(
    ("body", "key", "status"),
    [
        ({wire.METERS_REQ_PAGE_SIZE: 501}, None, 400),
        ({wire.METERS_REQ_CONNECTION_REFERENCE_IDS: [f"ref-{n:06d}" for n in range(101)]}, None, 400),
        ({wire.METERS_REQ_PAGE_TOKEN: "bm90IG91cnM="}, None, 400),
        ({wire.METERS_REQ_CREATED_AFTER: "soon"}, None, 400),
        ({}, "wrong-key", 401),
    ],
)
def test_error_answers_match_the_spec(late_simulator, body, key, status):
    answer = search(late_simulator, body, key)

    assert answer.status_code == status
    assert set(answer.json()) == {wire.ERROR_TITLE, wire.ERROR_STATUS, wire.ERROR_DETAILS}
    validate_exchange({}, answer)  # the request side is not what is under test here


def test_a_500_is_the_spec_plain_string(late_simulator):
    late_simulator.inject(server_error())

    answer = search(late_simulator, {})

    assert answer.status_code == 500
    assert isinstance(answer.json(), str)
    validate_exchange({}, answer)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda meter: meter.pop(wire.METER_AUDIT),
        lambda meter: meter.pop(wire.METER_ID),
        lambda meter: meter.update({wire.METER_ID: "not-a-uuid"}),
        lambda meter: meter[wire.METER_UTILITY].update({"utility_name": "Con Edison"}),
        lambda meter: meter["customer"].pop("postal_code"),
    ],
)
def test_the_spec_check_catches_a_wrong_meter(late_simulator, spoil):
    body = {wire.METERS_REQ_CONNECTION_REFERENCE_IDS: late_simulator.ref_ids[:100]}
    page = search(late_simulator, body).json()
    spoiled = copy.deepcopy(page)
    spoil(spoiled[wire.METERS_RESP_METERS][0])

    with pytest.raises(OpenAPIError):
        meters_openapi().validate_response(spec_request(body), MockResponse(json.dumps(spoiled).encode()))


def test_the_spec_check_catches_a_wrong_search():
    too_many = {wire.METERS_REQ_CONNECTION_REFERENCE_IDS: [f"ref-{n:06d}" for n in range(101)]}

    with pytest.raises(OpenAPIError):
        meters_openapi().validate_request(spec_request(too_many))
