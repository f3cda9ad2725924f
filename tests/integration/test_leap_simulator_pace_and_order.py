"""The Leap simulator's page latency (a far API's pace) and its start-date listing order."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
import requests

from devtools.leap_simulator import LeapSimulator
from leap_tracker.adapters.leap_http import LeapHttpClient
from leap_tracker.leap import wire
from leap_tracker.leap.api import ConnectQuery
from leap_tracker.timeutil import format_instant, parse_instant
from tests.fakes.leap import fast_leap_settings

CONNECT_PATH = wire.DEFAULT_CONNECT_WIRE.path
EVERYONE = "start-date=2000-01-01T00:00:00Z"


def get_connect(sim: LeapSimulator, query: str) -> requests.Response:
    headers = {wire.AUTH_HEADER: f"{wire.AUTH_SCHEME} {sim.api_key}"}
    return requests.get(f"{sim.base_url}{CONNECT_PATH}?{query}", headers=headers, timeout=5)


def listed(sim: LeapSimulator, query: ConnectQuery, page_size: int) -> tuple[list[dict[str, Any]], int]:
    """Every entry the client pages through, and how many pages it took."""
    with LeapHttpClient(fast_leap_settings(sim, page_size=page_size)) as client:
        pages = list(client.iter_pages(query))
    return [entry for page in pages for entry in page.entries], len(pages)


def index_of(entry: dict[str, Any]) -> int:
    return int(entry[wire.ENTRY_REF_ID].removeprefix("ref-"))


def by_start_date(entry: dict[str, Any]) -> tuple[str, int]:
    return entry[wire.ENTRY_START], index_of(entry)  # the wire instants sort as text


# --- page latency --------------------------------------------------------------------------------


def test_a_connect_answer_sleeps_what_its_building_left_of_the_latency():
    asked: list[float] = []
    with LeapSimulator(seed=3, customers=40, page_latency_ms=250, sleep=asked.append) as sim:
        sim.advance(days=20)
        answer = get_connect(sim, f"{EVERYONE}&page-size=10")
        paced = sim.paced_answers

    assert answer.status_code == 200
    assert len(answer.json()["connections"]) == 10
    assert len(paced) == 1
    assert 0 < paced[0].built < 0.25
    assert asked == [paced[0].slept]
    assert paced[0].built + paced[0].slept == pytest.approx(0.25)


def test_the_answer_takes_at_least_the_latency_on_the_simulators_clock():
    with LeapSimulator(seed=3, customers=40, page_latency_ms=30) as sim:
        sim.advance(days=20)
        entries, pages = listed(sim, ConnectQuery(start_date="2000-01-01T00:00:00Z"), page_size=15)
        paced = sim.paced_answers

    assert len(entries) == 40
    assert pages == 3
    assert len(paced) == 3
    assert all(answer.answered >= 0.030 for answer in paced)


def test_without_a_latency_nothing_sleeps_and_other_apis_are_never_paced():
    asked: list[float] = []
    with LeapSimulator(seed=3, customers=40, sleep=asked.append) as sim:
        sim.advance(days=20)
        assert get_connect(sim, EVERYONE).status_code == 200
        assert [answer.slept for answer in sim.paced_answers] == [0.0]
    with LeapSimulator(seed=3, customers=40, page_latency_ms=250, sleep=asked.append) as sim:
        headers = {wire.AUTH_HEADER: f"{wire.AUTH_SCHEME} {sim.api_key}"}
        search = requests.post(
            f"{sim.base_url}{wire.METERS_SEARCH_PATH}", json={}, headers=headers, timeout=5
        )
        assert search.status_code == 200
        assert sim.paced_answers == []

    assert asked == []


# --- listing by start date -----------------------------------------------------------------------


def test_an_unknown_listing_order_is_refused():
    with pytest.raises(ValueError, match="listing_order"):
        LeapSimulator(seed=3, customers=5, listing_order="ref_id")  # type: ignore[arg-type]


def test_start_date_order_breaks_ties_by_index_and_ref_ids_follow_it():
    with LeapSimulator(
        seed=4, customers=60, click_window=timedelta(seconds=5), listing_order="start_date"
    ) as sim:
        sim.advance(days=20)
        entries, pages = listed(sim, ConnectQuery(start_date="2000-01-01T00:00:00Z"), page_size=8)
        ref_ids = sim.ref_ids
        truth = sim.entries_at()

    assert pages == 8
    assert len({entry[wire.ENTRY_START] for entry in entries}) <= 5  # ties, plenty of them
    assert entries == sorted(truth, key=by_start_date) == truth
    assert [entry[wire.ENTRY_REF_ID] for entry in entries] == ref_ids


@pytest.mark.parametrize("selection", ["start_date", "last_interaction_date"])
def test_start_date_order_serves_each_selection_sorted_and_complete_across_pages(selection):
    with LeapSimulator(seed=5, customers=300, listing_order="start_date") as sim:
        sim.advance(days=10)  # some have not clicked yet
        everyone = LeapSimulator(seed=5, customers=300).entries_at(sim.now)  # by index
        starts = sorted(parse_instant(entry[wire.ENTRY_START]) for entry in everyone)
        name, threshold = {
            "start_date": (wire.ENTRY_START, starts[len(starts) // 3]),
            "last_interaction_date": (wire.ENTRY_LAST_INTERACTION, sim.now - timedelta(days=2)),
        }[selection]
        entries, pages = listed(sim, ConnectQuery(**{selection: format_instant(threshold)}), page_size=13)
        some = everyone[17][wire.ENTRY_REF_ID]
        by_ref_id, _ = listed(sim, ConnectQuery(ref_id=some), page_size=13)

    expected = [entry for entry in everyone if parse_instant(entry[name]) >= threshold]
    assert 26 < len(expected) < len(everyone)
    assert pages == -(-len(expected) // 13)
    assert entries == sorted(expected, key=by_start_date)
    assert [index_of(entry) for entry in entries] != sorted(index_of(entry) for entry in entries)
    assert by_ref_id == [everyone[17]]


@pytest.mark.parametrize("selection", ["start_date", "last_interaction_date"])
def test_a_start_date_order_token_resumed_later_goes_on_from_its_place(selection):
    with LeapSimulator(seed=6, customers=200, listing_order="start_date") as sim:
        sim.advance(days=15)
        value = format_instant(sim.now - timedelta(days=4))
        first = get_connect(sim, f"{selection.replace('_', '-')}={value}&page-size=10").json()
        token, issued_at = first["nextPageToken"], sim.now
        sim.advance(hours=6)
        touched = set(sim.touch(0.2))
        query = ConnectQuery(**{selection: value})
        with LeapHttpClient(fast_leap_settings(sim, page_size=10)) as client:
            rest = [entry for page in client.iter_pages(query, token) for entry in page.entries]
        position = {ref_id: n for n, ref_id in enumerate(sim.ref_ids)}
        name = wire.ENTRY_START if selection == "start_date" else wire.ENTRY_LAST_INTERACTION

        def selected(entry: dict[str, Any]) -> bool:
            return parse_instant(entry[name]) >= parse_instant(value)

        # The token holds the place of the next entry selected when it was issued: from there on,
        # what is selected now (an entry touched since, between the two, is behind the cursor).
        last_served = position[first["connections"][-1][wire.ENTRY_REF_ID]]
        cursor = min(
            position[entry[wire.ENTRY_REF_ID]]
            for entry in sim.entries_at(issued_at)
            if selected(entry) and position[entry[wire.ENTRY_REF_ID]] > last_served
        )
        expected = [
            entry
            for entry in sim.entries_at()
            if selected(entry) and position[entry[wire.ENTRY_REF_ID]] >= cursor
        ]

    assert len(first["connections"]) == 10
    assert len(rest) > 10
    assert rest == expected
    assert touched & {entry[wire.ENTRY_REF_ID] for entry in rest}  # the later answer, not the earlier one


def test_a_start_date_order_token_is_refused_for_another_query():
    with LeapSimulator(seed=6, customers=100, listing_order="start_date") as sim:
        sim.advance(days=20)
        token = quote(get_connect(sim, f"{EVERYONE}&page-size=10").json()["nextPageToken"], safe="")
        own = get_connect(sim, f"{EVERYONE}&page-size=10&page-token={token}")
        others = [
            get_connect(sim, f"start-date=2025-01-10T00:00:00Z&page-size=10&page-token={token}"),
            get_connect(sim, f"last-interaction-date=2000-01-01T00:00:00Z&page-size=10&page-token={token}"),
        ]

    assert own.status_code == 200
    assert [answer.status_code for answer in others] == [400, 400]
    assert all(answer.json()["title"] == "Invalid page token" for answer in others)
