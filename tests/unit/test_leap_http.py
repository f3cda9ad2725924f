"""The Leap HTTP client against the simulator (a real local server) and against canned answers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, quote

import pytest
import requests

from devtools.leap_simulator import (
    LeapSimulator,
    dropped_connection,
    expired_page_token,
    http_error,
    rate_limited,
    server_error,
    slow,
    truncated_body,
)
from leap_tracker.adapters.leap_http import LeapApiRequestError, LeapHttpClient, api_key_provider
from leap_tracker.config import ConfigError, LeapApiSettings
from leap_tracker.leap import wire
from leap_tracker.leap.api import (
    ConnectQuery,
    ConnectSource,
    LeapAuthError,
    LeapInvalidResponse,
    LeapPageTokenExpired,
    LeapRequestError,
    LeapUnavailable,
    MeterSource,
)
from tests.fakes.leap import CANNED_BASE_URL, canned_session, fast_leap_settings

CONNECT_PATH = wire.DEFAULT_CONNECT_WIRE.path
EVERYONE = ConnectQuery(start_date="2000-01-01T00:00:00Z")


@pytest.fixture
def sim() -> Iterator[LeapSimulator]:
    with LeapSimulator(seed=11, customers=120) as simulator:
        simulator.advance(days=20)  # most journeys are over: every status is present
        yield simulator


@pytest.fixture
def client_for(sim: LeapSimulator) -> Iterator[Callable[..., LeapHttpClient]]:
    clients: list[LeapHttpClient] = []

    def make(**overrides: Any) -> LeapHttpClient:
        clients.append(LeapHttpClient(fast_leap_settings(sim, **{"page_size": 25, **overrides})))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def entry_ids(pages: Iterator[Any]) -> list[str]:
    return [entry[wire.ENTRY_ID] for page in pages for entry in page.entries]


# --- page tokens on the wire -------------------------------------------------------------------


def test_page_token_goes_on_the_wire_url_encoded_exactly_once(sim, client_for):
    pages = client_for().iter_pages(EVERYONE)
    first = next(pages)
    token = first.next_page_token
    assert token is not None
    assert {"+", "/", "="} <= set(token)  # the simulator's tokens need encoding, like Leap's
    next(pages)

    sent = sim.request_log[-1].raw_query
    assert f"page-token={quote(token, safe='')}" in sent
    assert "+" not in sent
    assert "%252B" not in sent  # not encoded twice
    assert parse_qs(sent)["page-token"] == [token]


def test_simulator_rejects_a_token_sent_without_url_encoding(sim):
    headers = {wire.AUTH_HEADER: f"{wire.AUTH_SCHEME} {sim.api_key}"}
    url = f"{sim.base_url}{CONNECT_PATH}?start-date=2000-01-01T00:00:00Z&page-size=10"
    token = requests.get(url, headers=headers, timeout=5).json()["nextPageToken"]

    raw = requests.get(f"{url}&page-token={token}", headers=headers, timeout=5)
    encoded = requests.get(f"{url}&page-token={quote(token, safe='')}", headers=headers, timeout=5)

    assert raw.status_code == 400
    assert raw.json()[wire.ERROR_TITLE] == "Invalid page token"
    assert encoded.status_code == 200


def test_paging_returns_every_entry_exactly_once(sim, client_for):
    ids = entry_ids(client_for(page_size=7).iter_pages(EVERYONE))

    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(entry[wire.ENTRY_ID] for entry in sim.entries_at())
    assert sim.requests[CONNECT_PATH] == -(-len(ids) // 7)  # ceil: no empty trailing page


def test_paging_resumes_from_a_given_token(sim, client_for):
    client = client_for(page_size=10)
    first = next(client.iter_pages(EVERYONE))

    rest = entry_ids(client.iter_pages(EVERYONE, page_token=first.next_page_token))

    assert len(first.entries) + len(rest) == len(sim.entries_at())
    assert not {entry[wire.ENTRY_ID] for entry in first.entries} & set(rest)


@pytest.mark.parametrize("last_page_token", ["null", "empty"])
def test_null_or_empty_next_token_ends_paging(last_page_token):
    with LeapSimulator(seed=2, customers=30, last_page_token=last_page_token) as sim:
        sim.advance(days=30)
        settings = LeapApiSettings(base_url=sim.base_url, api_key=sim.api_key, page_size=10)
        with LeapHttpClient(settings) as client:
            pages = list(client.iter_pages(EVERYONE))
    assert [page.next_page_token is None for page in pages] == [False, False, True]


def test_expired_token_raises_page_token_expired(sim, client_for):
    pages = client_for().iter_pages(EVERYONE)
    next(pages)
    sim.inject(expired_page_token())

    with pytest.raises(LeapPageTokenExpired):
        next(pages)
    assert sim.requests[CONNECT_PATH] == 2  # a 400 is not retried


def test_token_of_another_query_is_refused(sim, client_for):
    client = client_for()
    token = next(client.iter_pages(EVERYONE)).next_page_token

    with pytest.raises(LeapPageTokenExpired):
        next(client.iter_pages(ConnectQuery(last_interaction_date="2000-01-01T00:00:00Z"), page_token=token))


# --- retries -------------------------------------------------------------------------------------


def test_429_waits_for_retry_after_then_succeeds(sim, client_for):
    client = client_for()
    sim.inject(rate_limited(retry_after_seconds=1))

    started = time.monotonic()
    page = next(client.iter_pages(EVERYONE))

    assert time.monotonic() - started >= 0.95  # Retry-After honoured
    assert page.entries
    assert sim.requests[CONNECT_PATH] == 2
    assert client.stats.retries == 1


@pytest.mark.parametrize("fault", [server_error(), http_error(502), http_error(503), dropped_connection()])
def test_5xx_and_dropped_connections_are_retried_then_succeed(sim, client_for, fault):
    client = client_for()
    sim.inject(fault, times=2)

    page = next(client.iter_pages(EVERYONE))

    assert page.entries
    assert sim.requests[CONNECT_PATH] == 3
    assert client.stats.retries == 2
    assert client.stats.requests == 1


def test_a_slow_answer_times_out_and_is_retried(sim, client_for):
    client = client_for(read_timeout_seconds=0.2)
    sim.inject(slow(0.6))

    page = next(client.iter_pages(EVERYONE))

    assert page.entries
    assert client.stats.retries == 1


def test_retries_are_bounded_in_count(sim, client_for):
    client = client_for(max_retries=3)
    sim.inject(server_error(), times=None)

    with pytest.raises(LeapUnavailable, match="500"):
        next(client.iter_pages(EVERYONE))
    assert sim.requests[CONNECT_PATH] == 4
    assert client.stats.retries == 3


def test_retries_are_bounded_in_total_time(sim, client_for):
    client = client_for(max_retries=50, backoff_factor=0.02, max_retry_seconds=0.4)
    sim.inject(http_error(503), times=None)

    started = time.monotonic()
    with pytest.raises(LeapUnavailable):
        next(client.iter_pages(EVERYONE))

    assert time.monotonic() - started < 0.4 + 0.5  # the budget plus one jitter and one attempt
    assert 2 <= sim.requests[CONNECT_PATH] < 51


def test_a_retry_after_beyond_the_budget_gives_up_at_once(sim, client_for):
    client = client_for(max_retries=5, max_retry_seconds=0.5)
    sim.inject(rate_limited(retry_after_seconds=1), times=None)

    started = time.monotonic()
    with pytest.raises(LeapUnavailable, match="429"):
        next(client.iter_pages(EVERYONE))

    assert time.monotonic() - started < 0.5
    assert sim.requests[CONNECT_PATH] == 1


def test_a_cut_off_body_is_an_invalid_response_not_retried(sim, client_for):
    sim.inject(truncated_body())

    with pytest.raises(LeapInvalidResponse, match="cut off"):
        next(client_for().iter_pages(EVERYONE))
    assert sim.requests[CONNECT_PATH] == 1


# --- auth ----------------------------------------------------------------------------------------


def test_wrong_key_is_a_401_auth_error_after_one_request(sim, client_for):
    client = client_for(api_key="not-the-key")

    with pytest.raises(LeapAuthError) as raised:
        next(client.iter_pages(EVERYONE))

    message = str(raised.value)
    assert "(401)" in message
    assert sim.base_url in message
    assert "LEAP_API_KEY" in message
    assert "not-the-key" not in message
    assert sim.requests[CONNECT_PATH] == 1
    assert client.stats.auth_refusals == 1  # the handlers' LeapAuthFailures metric


def test_403_is_an_auth_error_at_once_on_meters_too(sim, client_for):
    client = client_for()
    sim.inject(http_error(403), times=None)

    with pytest.raises(LeapAuthError, match=r"\(403\)"):
        list(client.search_by_connection_references(["ref-000001"]))
    assert sim.requests[wire.METERS_SEARCH_PATH] == 1
    assert client.stats.retries == 0
    assert client.stats.auth_refusals == 1


def test_auth_error_names_the_production_environment_and_the_secret():
    settings = LeapApiSettings(api_key_secret_arn="arn:aws:secretsmanager:us-east-1:1:secret:leap")
    session, adapter = canned_session(401, {"title": "Unauthorized", "status": 401, "details": {}})
    session.mount(wire.PRODUCTION_BASE_URL, adapter)
    client = LeapHttpClient(settings, key_provider=lambda: "prod-secret-key", session=session)

    with pytest.raises(LeapAuthError) as raised:
        next(client.iter_pages(EVERYONE))

    message = str(raised.value)
    assert "production environment (https://api.leap.energy)" in message
    assert "LEAP_API_KEY_SECRET_ARN" in message
    assert "prod-secret-key" not in message
    assert "prod-secret-key" not in repr(client)
    assert adapter.calls == 1


def test_the_key_never_shows_in_repr_or_errors(sim, client_for):
    client = client_for(api_key="not-the-key")
    sim.inject(server_error(), times=None)

    with pytest.raises(LeapUnavailable) as raised:
        next(client.iter_pages(EVERYONE))

    for text in (repr(client), str(client), str(raised.value), repr(raised.value)):
        assert "not-the-key" not in text


def test_every_request_carries_bearer_key_json_accept_and_both_timeouts():
    session, adapter = canned_session(200, {"connections": []})
    settings = LeapApiSettings(
        base_url=CANNED_BASE_URL, api_key="k-123", connect_timeout_seconds=1.5, read_timeout_seconds=7.0
    )
    client = LeapHttpClient(settings, session=session)

    list(client.iter_pages(EVERYONE))

    request, options = adapter.requests[0]
    assert request.headers[wire.AUTH_HEADER] == "Bearer k-123"
    assert request.headers["Accept"] == "application/json"
    assert options["timeout"] == (1.5, 7.0)


# --- other errors and the envelope -------------------------------------------------------------


def test_other_4xx_is_a_request_error_with_leaps_problem(sim, client_for):
    client = client_for(page_size=50_000)  # above what the simulator accepts

    with pytest.raises(LeapRequestError) as raised:
        next(client.iter_pages(EVERYONE))

    error = raised.value
    assert isinstance(error, LeapApiRequestError)
    assert (error.status, error.title) == (400, "Invalid page size")
    assert error.details == {"page-size": "50000"}
    assert sim.requests[CONNECT_PATH] == 1


@pytest.mark.parametrize(
    "body",
    [
        b"<html>gateway</html>",
        b"[]",
        b'{"nextPageToken": "abc"}',
        b'{"connections": {}}',
        b'{"connections": [1, 2]}',
        b'{"connections": [], "nextPageToken": 42}',
    ],
)
def test_a_wrong_envelope_is_an_invalid_response(body):
    session, _ = canned_session(200, body)
    client = LeapHttpClient(LeapApiSettings(base_url=CANNED_BASE_URL, api_key="k"), session=session)

    with pytest.raises(LeapInvalidResponse):
        next(client.iter_pages(EVERYONE))


def test_entries_come_back_raw_even_when_malformed():
    entries = [{"id": 5}, {"anything": ["goes"]}]
    session, _ = canned_session(200, {"connections": entries, "nextPageToken": None})
    client = LeapHttpClient(LeapApiSettings(base_url=CANNED_BASE_URL, api_key="k"), session=session)

    assert [page.entries for page in client.iter_pages(EVERYONE)] == [entries]


def test_a_server_repeating_the_token_it_got_does_not_loop_forever():
    session, _ = canned_session(200, {"connections": [], "nextPageToken": "same"})
    client = LeapHttpClient(LeapApiSettings(base_url=CANNED_BASE_URL, api_key="k"), session=session)

    with pytest.raises(LeapInvalidResponse, match="paging would never end"):
        list(client.iter_pages(EVERYONE, page_token="same"))


def test_query_dates_are_sent_in_the_wire_form(sim, client_for):
    list(client_for().iter_pages(ConnectQuery(last_interaction_date="2025-01-20T10:00:00+00:00")))

    assert parse_qs(sim.request_log[-1].raw_query)["last-interaction-date"] == ["2025-01-20T10:00:00Z"]


# --- meters ----------------------------------------------------------------------------------------


def test_meters_search_follows_pages_and_sends_the_documented_body():
    with LeapSimulator(seed=11, customers=120, meters_page_cap=3) as sim:
        sim.advance(days=30)
        refs = sim.ref_ids[:40]
        settings = LeapApiSettings(base_url=sim.base_url, api_key=sim.api_key)
        with LeapHttpClient(settings) as client:
            meters = list(client.search_by_connection_references(refs, created_after="2025-01-01T00:00:00Z"))
        bodies = [request.body for request in sim.request_log]

    expected = [meter for ref in refs for meter in sim.meters_of(ref)]
    assert sorted(m[wire.METER_ID] for m in meters) == sorted(m[wire.METER_ID] for m in expected)
    assert len(bodies) == -(-len(expected) // 3) > 2
    assert bodies[0] == {
        wire.METERS_REQ_CONNECTION_REFERENCE_IDS: refs,
        wire.METERS_REQ_PAGE_SIZE: wire.METERS_MAX_PAGE_SIZE,
        wire.METERS_REQ_CREATED_AFTER: "2025-01-01T00:00:00Z",
    }
    assert all(body[wire.METERS_REQ_PAGE_TOKEN] for body in bodies[1:])
    assert client.stats.meters_requests == len(bodies)


def test_meters_search_refuses_more_than_100_reference_ids_before_any_request(sim, client_for):
    client = client_for()
    refs = [f"ref-{n}" for n in range(wire.METERS_MAX_REFERENCE_IDS + 1)]

    with pytest.raises(ValueError, match="at most 100"):
        client.search_by_connection_references(refs)
    assert sim.requests[wire.METERS_SEARCH_PATH] == 0


def test_meters_search_sends_each_reference_once_and_nothing_for_none(sim, client_for):
    client = client_for()

    assert list(client.search_by_connection_references([])) == []
    list(client.search_by_connection_references(["ref-000001", "ref-000002", "ref-000001"]))

    assert sim.request_log[-1].body[wire.METERS_REQ_CONNECTION_REFERENCE_IDS] == ["ref-000001", "ref-000002"]
    assert sim.requests[wire.METERS_SEARCH_PATH] == 1


def test_meters_search_is_retried_like_connect(sim, client_for):
    client = client_for()
    sim.inject(rate_limited(retry_after_seconds=0), path=wire.METERS_SEARCH_PATH)
    sim.inject(server_error(), path=wire.METERS_SEARCH_PATH)

    list(client.search_by_connection_references(["ref-000001"]))

    assert sim.requests[wire.METERS_SEARCH_PATH] == 3
    assert client.stats.retries == 2


def test_client_implements_the_source_protocols(client_for):
    client = client_for()
    connect: ConnectSource = client
    meters: MeterSource = client
    assert callable(connect.iter_pages)
    assert callable(meters.search_by_connection_references)


def test_stats_count_requests_and_latency(sim, client_for):
    client = client_for(page_size=50)
    list(client.iter_pages(EVERYONE))

    assert client.stats.requests == client.stats.connect_requests == sim.requests[CONNECT_PATH]
    assert client.stats.latency_seconds > 0


# --- the key provider ------------------------------------------------------------------------------


def test_key_provider_reads_the_secret_lazily_with_the_cache_age(monkeypatch):
    calls: list[tuple[str, int]] = []

    def fake_get_secret(name: str, max_age: int) -> str:
        calls.append((name, max_age))
        return "secret-key\n"

    monkeypatch.setattr("aws_lambda_powertools.utilities.parameters.get_secret", fake_get_secret)
    settings = LeapApiSettings(api_key_secret_arn="arn:secret", api_key="ignored", secret_max_age_seconds=42)

    provider = api_key_provider(settings)
    assert calls == []
    assert provider() == "secret-key"
    assert calls == [("arn:secret", 42)]


def test_key_provider_falls_back_to_the_local_key_and_refuses_nothing():
    assert api_key_provider(LeapApiSettings(api_key="local"))() == "local"
    with pytest.raises(ConfigError, match="LEAP_API_KEY_SECRET_ARN"):
        api_key_provider(LeapApiSettings())
