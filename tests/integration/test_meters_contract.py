"""Meters v2 on the wire, checked against our description of Leap's contract (tests/contracts/meters_v2.py).

Both directions: the searches the client sends, and every kind of answer the simulator gives.
``make contract-check`` keeps the description in step with Leap's own OpenAPI file.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import requests

from devtools.leap_simulator import LeapSimulator, server_error
from leap_tracker.adapters.leap_http import LeapHttpClient
from leap_tracker.config import LeapApiSettings
from leap_tracker.leap import wire
from tests.contracts.meters_v2 import ContractViolation, check_search, check_search_answer

SEARCH = wire.METERS_SEARCH_PATH
JSON = "application/json"


def validate_answer(answer: requests.Response) -> None:
    check_search_answer(answer.status_code, answer.headers.get("Content-Type"), answer.json())


def search(sim: LeapSimulator, body: Any, key: str | None = None) -> requests.Response:
    headers = {wire.AUTH_HEADER: f"{wire.AUTH_SCHEME} {key or sim.api_key}"}
    return requests.post(f"{sim.base_url}{SEARCH}", json=body, headers=headers, timeout=5)


@pytest.fixture
def late_simulator(leap_simulator: LeapSimulator) -> LeapSimulator:
    leap_simulator.advance(days=40)  # every meter that will ever appear has appeared
    return leap_simulator


def test_the_clients_searches_are_valid_requests_for_the_contract():
    with LeapSimulator(seed=7, customers=300, meters_page_cap=7) as sim:
        sim.advance(days=40)
        settings = LeapApiSettings(base_url=sim.base_url, api_key=sim.api_key)
        with LeapHttpClient(settings) as client:
            for chunk in (sim.ref_ids[:100], sim.ref_ids[100:150]):
                list(client.search_by_connection_references(chunk))
                list(client.search_by_connection_references(chunk, created_after="2025-01-10T00:00:00Z"))
        sent = sim.request_log

    assert any(wire.METERS_REQ_PAGE_TOKEN in request.body for request in sent)
    assert any(wire.METERS_REQ_CREATED_AFTER in request.body for request in sent)
    for request in sent:
        check_search(request.method, request.path, request.body)


def test_every_page_of_meters_the_simulator_serves_matches_the_contract(late_simulator):
    found = 0
    for start in range(0, late_simulator.customers, wire.METERS_MAX_REFERENCE_IDS):
        body: dict[str, Any] = {
            wire.METERS_REQ_CONNECTION_REFERENCE_IDS: late_simulator.ref_ids[start : start + 100],
            wire.METERS_REQ_PAGE_SIZE: 25,
        }
        while True:
            answer = search(late_simulator, body)
            validate_answer(answer)
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
def test_error_answers_match_the_contract(late_simulator, body, key, status):
    answer = search(late_simulator, body, key)

    assert answer.status_code == status
    assert set(answer.json()) == {wire.ERROR_TITLE, wire.ERROR_STATUS, wire.ERROR_DETAILS}
    validate_answer(answer)


def test_a_500_is_the_contracts_plain_string(late_simulator):
    late_simulator.inject(server_error())

    answer = search(late_simulator, {})

    assert answer.status_code == 500
    assert isinstance(answer.json(), str)
    validate_answer(answer)


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
def test_the_contract_check_catches_a_wrong_meter(late_simulator, spoil):
    body = {wire.METERS_REQ_CONNECTION_REFERENCE_IDS: late_simulator.ref_ids[:100]}
    page = search(late_simulator, body).json()
    check_search_answer(200, JSON, page)  # sound before it is spoiled
    spoiled = copy.deepcopy(page)
    spoil(spoiled[wire.METERS_RESP_METERS][0])

    with pytest.raises(ContractViolation):
        check_search_answer(200, JSON, spoiled)


def test_the_contract_check_catches_a_wrong_search():
    ids = [f"ref-{n:06d}" for n in range(101)]
    check_search("POST", SEARCH, {wire.METERS_REQ_CONNECTION_REFERENCE_IDS: ids[:100]})  # the limit itself

    with pytest.raises(ContractViolation):
        check_search("POST", SEARCH, {wire.METERS_REQ_CONNECTION_REFERENCE_IDS: ids})
