"""The Leap simulator: deterministic journeys, filters, paging, faults, and its ground truth."""

from __future__ import annotations

import random
import re
from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.leap_simulator import (
    DEFAULT_START,
    INTERNAL_ERROR_TEXT,
    UNKNOWN_ERROR_CODE,
    LeapSimulator,
    dropped_connection,
    server_error,
    truncated_body,
)
from devtools.leap_simulator.population import Population
from leap_tracker.adapters.leap_http import LeapHttpClient
from leap_tracker.leap import wire
from leap_tracker.leap.api import ConnectQuery
from leap_tracker.timeutil import format_instant, parse_instant

CONNECT_PATH = wire.DEFAULT_CONNECT_WIRE.path
DONE_AGREEMENTS = {wire.AGREEMENT_NOT_REQUIRED, "SIGNED"}
UUID_PATTERN = "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def get_connect(sim: LeapSimulator, query: str, key: str | None = None) -> requests.Response:
    headers = {wire.AUTH_HEADER: f"{wire.AUTH_SCHEME} {key or sim.api_key}"}
    return requests.get(f"{sim.base_url}{CONNECT_PATH}?{query}", headers=headers, timeout=5)


def all_entries(client: LeapHttpClient, query: ConnectQuery) -> list[dict[str, Any]]:
    return [entry for page in client.iter_pages(query) for entry in page.entries]


def instant(entry: dict[str, Any], name: str) -> datetime:
    return parse_instant(entry[name])


# --- determinism and the clock --------------------------------------------------------------------


def test_same_seed_and_time_give_identical_answers():
    answers = []
    for seed in (5, 5, 6):
        with LeapSimulator(seed=seed, customers=150) as sim:
            sim.advance(days=9, hours=5)
            first = get_connect(sim, "start-date=2000-01-01T00:00:00Z&page-size=40")
            token = quote(first.json()["nextPageToken"], safe="")
            second = get_connect(sim, f"start-date=2000-01-01T00:00:00Z&page-size=40&page-token={token}")
            answers.append((first.content, second.content))

    assert answers[0] == answers[1]
    assert answers[0] != answers[2]


def test_the_clock_is_the_callers():
    with LeapSimulator(seed=1, customers=5) as sim:
        assert sim.now == DEFAULT_START
        assert sim.advance(days=1, hours=2, minutes=3, seconds=4) == DEFAULT_START + timedelta(
            days=1, hours=2, minutes=3, seconds=4
        )
        sim.set_time(DEFAULT_START + timedelta(days=40))
        assert sim.now == DEFAULT_START + timedelta(days=40)
        assert sim.base_url.startswith("http://127.0.0.1:")


def test_the_server_answers_at_the_simulated_time(leap_simulator, leap_client):
    for hours in (0, 30, 200, 500):
        leap_simulator.set_time(DEFAULT_START + timedelta(hours=hours))
        served = all_entries(leap_client, ConnectQuery(start_date="2000-01-01T00:00:00Z"))
        assert served == leap_simulator.entries_at()


def test_entries_exist_only_after_the_click(leap_simulator, leap_client):
    for ref_id in leap_simulator.ref_ids[:20]:
        clicked = leap_simulator.clicked_at(ref_id)
        assert leap_simulator.snapshot(ref_id, clicked - timedelta(seconds=1)) is None
        first_seen = leap_simulator.snapshot(ref_id, clicked)
        assert first_seen[wire.ENTRY_CONNECTION_STATUS] == wire.CONNECTION_NOT_STARTED

        leap_simulator.set_time(clicked - timedelta(seconds=1))
        assert all_entries(leap_client, ConnectQuery(ref_id=ref_id)) == []
        leap_simulator.set_time(clicked)
        assert all_entries(leap_client, ConnectQuery(ref_id=ref_id)) == [leap_simulator.snapshot(ref_id)]


# --- filters and paging --------------------------------------------------------------------------


def test_ref_id_filter_is_exact(leap_simulator, leap_client):
    leap_simulator.advance(days=20)
    ref_id = leap_simulator.ref_ids[42]

    assert all_entries(leap_client, ConnectQuery(ref_id=ref_id)) == [leap_simulator.snapshot(ref_id)]
    assert all_entries(leap_client, ConnectQuery(ref_id=ref_id[:-1])) == []
    assert all_entries(leap_client, ConnectQuery(ref_id="no-such-ref")) == []


def test_start_date_filter_selects_connections_started_at_or_after(leap_simulator, leap_client):
    leap_simulator.advance(days=20)
    everyone = leap_simulator.entries_at()
    threshold = sorted(instant(e, wire.ENTRY_START) for e in everyone)[len(everyone) // 2]

    served = all_entries(leap_client, ConnectQuery(start_date=format_instant(threshold)))

    expected = [e for e in everyone if instant(e, wire.ENTRY_START) >= threshold]
    assert served == expected
    assert 0 < len(served) < len(everyone)


def test_last_interaction_filter_selects_entries_touched_at_or_after(leap_simulator, leap_client):
    leap_simulator.advance(days=10)
    threshold = leap_simulator.now - timedelta(hours=12)

    served = all_entries(leap_client, ConnectQuery(last_interaction_date=format_instant(threshold)))

    everyone = leap_simulator.entries_at()
    expected = [e for e in everyone if instant(e, wire.ENTRY_LAST_INTERACTION) >= threshold]
    assert served == expected
    assert 0 < len(served) < len(everyone)


def test_page_size_is_honoured_with_a_default(leap_simulator):
    leap_simulator.advance(days=20)

    small = get_connect(leap_simulator, "start-date=2000-01-01T00:00:00Z&page-size=40").json()
    default = get_connect(leap_simulator, "start-date=2000-01-01T00:00:00Z").json()

    assert len(small["connections"]) == 40
    assert "nextPageToken" in small
    assert len(default["connections"]) == leap_simulator.customers <= leap_simulator.default_page_size
    assert "nextPageToken" not in default


@pytest.mark.parametrize(
    "mangle",
    [
        lambda token: token.replace("+", " "),  # what an unencoded '+' turns into
        lambda token: token[:-6] + "AAAA==",  # altered
        lambda token: "bm90IGEgdG9rZW4=",  # base64, but not ours
    ],
)
def test_a_token_not_issued_as_is_is_refused(leap_simulator, mangle):
    leap_simulator.advance(days=20)
    query = "start-date=2000-01-01T00:00:00Z&page-size=10"
    token = get_connect(leap_simulator, query).json()["nextPageToken"]

    answer = get_connect(leap_simulator, f"{query}&page-token={quote(mangle(token), safe='')}")

    assert answer.status_code == 400
    assert answer.json()[wire.ERROR_STATUS] == 400


def test_a_token_only_works_for_its_own_query_and_until_expired(leap_simulator):
    leap_simulator.advance(days=20)
    query = "start-date=2000-01-01T00:00:00Z&page-size=10"
    token = quote(get_connect(leap_simulator, query).json()["nextPageToken"], safe="")

    other = get_connect(leap_simulator, f"start-date=2025-01-02T00:00:00Z&page-size=10&page-token={token}")
    same = get_connect(leap_simulator, f"{query}&page-token={token}")
    leap_simulator.expire_page_tokens()
    expired = get_connect(leap_simulator, f"{query}&page-token={token}")

    assert other.status_code == 400
    assert "different query" in other.json()[wire.ERROR_DETAILS]["page-token"]
    assert same.status_code == 200
    assert expired.status_code == 400


# --- errors, faults and accounting ------------------------------------------------------------


def test_wrong_or_missing_key_is_a_401_in_leaps_shape(leap_simulator):
    wrong = get_connect(leap_simulator, "ref-id=x", key="wrong")
    missing = requests.get(f"{leap_simulator.base_url}{CONNECT_PATH}", timeout=5)

    for answer in (wrong, missing):
        assert answer.status_code == 401
        assert answer.json() == {"title": "Unauthorized", "status": 401, "details": {}}


def test_a_500_is_a_plain_json_string(leap_simulator):
    leap_simulator.inject(server_error())

    answer = get_connect(leap_simulator, "ref-id=x")

    assert answer.status_code == 500
    assert answer.json() == INTERNAL_ERROR_TEXT


def test_unknown_paths_and_bad_dates_are_leap_errors(leap_simulator):
    headers = {wire.AUTH_HEADER: f"Bearer {leap_simulator.api_key}"}
    unknown = requests.get(f"{leap_simulator.base_url}/v9/nothing", headers=headers, timeout=5)
    bad_date = get_connect(leap_simulator, "start-date=yesterday")

    assert unknown.status_code == 404
    assert bad_date.status_code == 400
    assert bad_date.json()[wire.ERROR_DETAILS] == {"start-date": "yesterday"}


def test_faults_target_a_path_and_a_count(leap_simulator):
    leap_simulator.inject(server_error(), times=2, path=wire.METERS_SEARCH_PATH)
    leap_simulator.inject(server_error(), times=None, path="/elsewhere")

    connect = get_connect(leap_simulator, "ref-id=x")
    meters = [
        requests.post(
            f"{leap_simulator.base_url}{wire.METERS_SEARCH_PATH}",
            json={},
            headers={wire.AUTH_HEADER: f"Bearer {leap_simulator.api_key}"},
            timeout=5,
        ).status_code
        for _ in range(3)
    ]

    assert connect.status_code == 200
    assert meters == [500, 500, 200]
    assert leap_simulator.faults.pending() == 1
    leap_simulator.clear_faults()
    assert leap_simulator.faults.pending() == 0
    assert leap_simulator.requests == Counter({wire.METERS_SEARCH_PATH: 3, CONNECT_PATH: 1})


def test_faults_leave_stderr_quiet(leap_simulator, capfd):
    for fault in (truncated_body(), dropped_connection()):
        leap_simulator.inject(fault)
        with pytest.raises(requests.RequestException):
            get_connect(leap_simulator, "ref-id=x")
    get_connect(leap_simulator, "ref-id=x")

    assert capfd.readouterr().err == ""


# --- mutations for tests and benchmarks --------------------------------------------------------


def test_put_entry_serves_hand_made_and_malformed_entries(leap_simulator, leap_client):
    leap_simulator.advance(days=20)
    replaced_ref = leap_simulator.ref_ids[3]
    replacement = {**leap_simulator.snapshot(replaced_ref), wire.ENTRY_CONNECTION_STATUS: "MYSTERY"}
    malformed = {wire.ENTRY_REF_ID: "broken-1", wire.ENTRY_UTILITY_CONNECTIONS: "not a list"}
    leap_simulator.put_entry(replacement)
    leap_simulator.put_entry(malformed)

    everyone = all_entries(leap_client, ConnectQuery(start_date="2000-01-01T00:00:00Z"))
    recent = all_entries(leap_client, ConnectQuery(last_interaction_date=format_instant(leap_simulator.now)))

    assert replacement in everyone
    assert everyone[-1] == malformed
    assert len(everyone) == leap_simulator.customers + 1
    assert malformed in recent  # no dates: every date filter serves it
    assert all_entries(leap_client, ConnectQuery(ref_id=replaced_ref)) == [replacement]
    assert all_entries(leap_client, ConnectQuery(ref_id="broken-1")) == [malformed]


def test_touch_bumps_the_last_interaction_of_a_fraction(leap_simulator, leap_client):
    leap_simulator.advance(days=40)  # every journey is over: nothing else changes now

    touched = leap_simulator.touch(0.1, random.Random(3))
    recent = all_entries(leap_client, ConnectQuery(last_interaction_date=format_instant(leap_simulator.now)))

    assert len(touched) == round(leap_simulator.customers * 0.1)
    assert sorted(e[wire.ENTRY_REF_ID] for e in recent) == touched
    assert all(e[wire.ENTRY_LAST_INTERACTION] == format_instant(leap_simulator.now) for e in recent)
    assert leap_simulator.change_times(touched[0])[-1] == leap_simulator.now


# --- journeys: variety, consistency, progress, ground truth --------------------------------------


def test_the_population_covers_the_journeys_the_product_must_handle():
    with LeapSimulator(seed=7, customers=600) as sim:
        sim.advance(days=30)
        entries = sim.entries_at()
        refs = sim.ref_ids
        appear = [(sim.completed_at(r), sim.meters_appear_at(r)) for r in refs if sim.completed_at(r)]
        every_step = [sim.snapshot(r, moment) for r in refs[:200] for moment in sim.change_times(r)]

    utilities = [u for e in entries for u in e[wire.ENTRY_UTILITY_CONNECTIONS]]
    codes = {u[wire.UTILITY_ERROR_CODE] for u in utilities if u[wire.UTILITY_ERROR_CODE]}
    agreement_values = {v for e in every_step for v in e[wire.ENTRY_AGREEMENTS].values()}
    delays = [(shown - done).total_seconds() / 3600 for done, shown in appear if shown]

    assert set(Counter(e[wire.ENTRY_CONNECTION_STATUS] for e in entries)) == wire.KNOWN_CONNECTION_STATUSES
    assert len({e[wire.ENTRY_TRANSMISSION_REGION] for e in entries}) >= 4
    assert UNKNOWN_ERROR_CODE in codes
    assert UNKNOWN_ERROR_CODE not in wire.KNOWN_ERROR_CODES
    assert len(codes & wire.KNOWN_ERROR_CODES) >= 3
    assert {"PENDING", "SIGNED", wire.AGREEMENT_NOT_REQUIRED} <= agreement_values
    assert any(required_count(e) >= 2 for e in entries)
    assert any(not u[wire.UTILITY_IS_REQUIRED] for u in utilities)
    assert any(other_utility_connected_instead(e) for e in entries)
    assert any(e[wire.ENTRY_CONNECTION_STATUS] == wire.CONNECTION_ERROR for e in every_step)
    assert sum(20 <= hours <= 30 for hours in delays) > len(delays) / 2
    assert any(72 <= hours <= 240 for hours in delays)
    assert any(shown is None for _, shown in appear)


def required_count(entry: dict[str, Any]) -> int:
    return sum(u[wire.UTILITY_IS_REQUIRED] for u in entry[wire.ENTRY_UTILITY_CONNECTIONS])


def other_utility_connected_instead(entry: dict[str, Any]) -> bool:
    others = [u for u in entry[wire.ENTRY_UTILITY_CONNECTIONS] if not u[wire.UTILITY_IS_REQUIRED]]
    other_connected = any(u[wire.UTILITY_STATUS] == wire.UTILITY_CONNECTED for u in others)
    return other_connected and entry[wire.ENTRY_CONNECTION_STATUS] == wire.CONNECTION_PARTIAL


def assert_consistent(entry: dict[str, Any], at: datetime) -> None:
    """Leap's rules, restated from the guide independently of the simulator's code."""
    status = entry[wire.ENTRY_CONNECTION_STATUS]
    utilities = entry[wire.ENTRY_UTILITY_CONNECTIONS]
    required = [u for u in utilities if u[wire.UTILITY_IS_REQUIRED]]
    agreements = entry[wire.ENTRY_AGREEMENTS].values()
    picked = any(v != wire.AGREEMENT_NOT_REQUIRED for v in agreements)
    start, last = instant(entry, wire.ENTRY_START), instant(entry, wire.ENTRY_LAST_INTERACTION)

    region, ref_id = entry[wire.ENTRY_TRANSMISSION_REGION], entry[wire.ENTRY_REF_ID]
    assert re.fullmatch(f"{region}_{UUID_PATTERN}_{re.escape(ref_id)}", entry[wire.ENTRY_ID])
    assert required
    assert start <= last <= at
    for utility in utilities:
        assert utility[wire.UTILITY_STATUS] in wire.KNOWN_UTILITY_STATUSES
        in_error = utility[wire.UTILITY_STATUS] == wire.UTILITY_ERROR
        assert (utility[wire.UTILITY_ERROR_CODE] is not None) == in_error
        assert instant(utility, wire.UTILITY_START) <= instant(utility, wire.UTILITY_LAST_INTERACTION) <= last
    all_connected = all(u[wire.UTILITY_STATUS] == wire.UTILITY_CONNECTED for u in required)
    all_signed = set(agreements) <= DONE_AGREEMENTS
    if any(u[wire.UTILITY_STATUS] == wire.UTILITY_ERROR for u in required):
        assert status == wire.CONNECTION_ERROR
    elif status == wire.CONNECTION_COMPLETED:
        assert all_connected
        assert all_signed
        assert picked
    elif status == wire.CONNECTION_NOT_STARTED:
        assert not picked
        assert all(u[wire.UTILITY_STATUS] == wire.UTILITY_NOT_CONNECTED for u in utilities)
        assert last == start
    else:
        assert status == wire.CONNECTION_PARTIAL
        assert picked
        assert not (all_connected and all_signed)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    hours=st.lists(st.integers(min_value=0, max_value=24 * 40), min_size=2, max_size=6),
)
def test_every_entry_is_consistent_and_only_moves_forward(seed, hours):
    start = int(DEFAULT_START.timestamp())
    population = Population(seed, customers=40, start=start, click_window=14 * 24 * 3600)
    moments = sorted(start + h * 3600 for h in hours)

    for index in range(population.size):
        seen = [population.entry_at(index, t) for t in moments]
        present = [(t, e) for t, e in zip(moments, seen, strict=True) if e is not None]
        for t, entry in present:
            assert_consistent(entry, datetime.fromtimestamp(t, DEFAULT_START.tzinfo))
        lasts = [e[wire.ENTRY_LAST_INTERACTION] for _, e in present]
        assert lasts == sorted(lasts)
        assert len({(e[wire.ENTRY_ID], e[wire.ENTRY_START]) for _, e in present}) <= 1
        statuses = [e[wire.ENTRY_CONNECTION_STATUS] for _, e in present]
        if wire.CONNECTION_COMPLETED in statuses:
            assert set(statuses[statuses.index(wire.CONNECTION_COMPLETED) :]) == {wire.CONNECTION_COMPLETED}


def test_statuses_progress_as_the_clock_advances(leap_simulator):
    completed_counts = []
    for _ in range(12):
        completed_counts.append(leap_simulator.status_counts()[wire.CONNECTION_COMPLETED])
        leap_simulator.advance(days=2)

    assert completed_counts == sorted(completed_counts)
    assert completed_counts[0] == 0 < completed_counts[-1]


def test_completed_at_is_when_the_entry_turns_completed(leap_simulator):
    completions = [(r, leap_simulator.completed_at(r)) for r in leap_simulator.ref_ids]
    completed = [(r, at) for r, at in completions if at is not None]

    assert len(completed) > leap_simulator.customers / 3
    for ref_id, at in completed:
        before = leap_simulator.snapshot(ref_id, at - timedelta(seconds=1))
        after = leap_simulator.snapshot(ref_id, at)
        assert before[wire.ENTRY_CONNECTION_STATUS] != wire.CONNECTION_COMPLETED
        assert after[wire.ENTRY_CONNECTION_STATUS] == wire.CONNECTION_COMPLETED
        assert after[wire.ENTRY_LAST_INTERACTION] == format_instant(at)


def test_meters_appear_when_the_ground_truth_says(leap_simulator, leap_client):
    completed = [r for r in leap_simulator.ref_ids if leap_simulator.completed_at(r)]
    shows = [r for r in completed if leap_simulator.meters_appear_at(r)][:10]
    never = [r for r in completed if leap_simulator.meters_appear_at(r) is None][:5]
    assert shows
    assert never

    for ref_id in shows:
        appear = leap_simulator.meters_appear_at(ref_id)
        leap_simulator.set_time(appear - timedelta(seconds=1))
        assert list(leap_client.search_by_connection_references([ref_id])) == []
        leap_simulator.set_time(appear)
        meters = list(leap_client.search_by_connection_references([ref_id]))
        assert meters == leap_simulator.meters_of(ref_id)
        assert meters
        assert all(m[wire.METER_CONNECTION_REFERENCES] == [ref_id] for m in meters)
        assert all(m[wire.METER_AUDIT][wire.METER_AUDIT_CREATED_AT] == format_instant(appear) for m in meters)

    leap_simulator.set_time(DEFAULT_START + timedelta(days=60))
    assert list(leap_client.search_by_connection_references(never)) == []


def test_meters_search_created_after_filters_by_creation(leap_simulator, leap_client):
    leap_simulator.advance(days=40)
    refs = leap_simulator.ref_ids[:100]
    appear = sorted(a for r in refs if (a := leap_simulator.meters_appear_at(r)))
    threshold = appear[len(appear) // 2]

    meters = list(leap_client.search_by_connection_references(refs, created_after=format_instant(threshold)))

    created_late = [r for r in refs if (a := leap_simulator.meters_appear_at(r)) and a >= threshold]
    expected = [meter for ref_id in created_late for meter in leap_simulator.meters_of(ref_id)]
    assert 0 < len(created_late) < len(appear)
    assert sorted(m[wire.METER_ID] for m in meters) == sorted(m[wire.METER_ID] for m in expected)


def _message_every_stalled(sim: LeapSimulator, at: datetime) -> list[tuple[str, int | None]]:
    """Tell the simulator each customer not COMPLETED at ``at`` was messaged; what it did with each."""
    sim.set_time(at)
    stalled = [
        e[wire.ENTRY_REF_ID] for e in sim.entries_at(at) if e[wire.ENTRY_CONNECTION_STATUS] != "COMPLETED"
    ]
    return [(ref, sim.message(ref, "agreement_pending", "a", at).moved_at) for ref in stalled]


def test_outreach_moves_a_seeded_share_on_later_and_never_rewrites_the_past():
    at = DEFAULT_START + timedelta(days=5)
    sims = [LeapSimulator(seed=3, customers=120) for _ in range(3)]
    before = sims[0].entries_at(at)
    told, again = _message_every_stalled(sims[0], at), _message_every_stalled(sims[1], at)

    assert told == again  # same seed, same nudges
    moved = [(ref, when) for ref, when in told if when is not None]
    assert 0 < len(moved) < len(told)
    assert sims[0].entries_at(at) == before  # what was shown stays as it was
    later = at + timedelta(days=2)
    assert sims[0].status_counts(later)["COMPLETED"] > sims[2].status_counts(later)["COMPLETED"]
    for ref, when in moved:
        moved_at = datetime.fromtimestamp(when, at.tzinfo)
        assert sims[0].change_times(ref)[-1] >= moved_at > at + timedelta(hours=1)
        assert sims[0].snapshot(ref, moved_at) != sims[0].snapshot(ref, moved_at - timedelta(seconds=1))
    assert [o.ref_id for o in sims[0].outreach] == [ref for ref, _ in told]
    assert sims[2].outreach == []
