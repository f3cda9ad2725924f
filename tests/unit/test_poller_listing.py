"""The listing order a refused page token resumes from (poller/listing.py), and what the pass does
with it (PassState.after_refused_token): properties over any dates and any split into pages."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from leap_tracker.leap import wire
from leap_tracker.leap.api import ConnectQuery
from leap_tracker.poller.listing import continued_order
from leap_tracker.poller.ports import ListingOrder, PassKind, PassState
from tests.builders import T0

START = datetime(2024, 1, 1, tzinfo=UTC)
dates = st.integers(0, 10_000).map(lambda s: (START + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%SZ"))


def paged(values: list[str], cuts: list[int]) -> list[list[dict[str, str]]]:
    bounds = sorted({0, len(values), *(c % (len(values) + 1) for c in cuts)})
    return [[{wire.ENTRY_START: v} for v in values[a:b]] for a, b in itertools.pairwise(bounds)]


@given(st.lists(dates, max_size=40), st.lists(st.integers(0, 40), max_size=6))
def test_in_order_exactly_when_every_date_is_no_older_than_the_one_before(
    values: list[str], cuts: list[int]
) -> None:
    order = ListingOrder()
    for page in paged(values, cuts):
        order = continued_order(page, wire.ENTRY_START, order)
    assert order.in_order == (values == sorted(values))
    if order.in_order:
        assert order.through == (values[-1] if values else None)


@given(st.lists(dates, min_size=1, max_size=20))
def test_once_out_of_order_always_out_of_order(values: list[str]) -> None:
    broken = ListingOrder(in_order=False)
    assert (
        continued_order([{wire.ENTRY_START: v} for v in sorted(values)], wire.ENTRY_START, broken) == broken
    )


def test_a_date_in_another_form_or_missing_counts_as_out_of_order() -> None:
    for odd in ("2024-01-01T00:00:00.5Z", "2024-01-01T00:00:00+00:00", None, 17):
        page = [{wire.ENTRY_START: "2024-01-01T00:00:00Z"}, {wire.ENTRY_START: odd}]
        assert not continued_order(page, wire.ENTRY_START, ListingOrder()).in_order
    assert not continued_order([{}], wire.ENTRY_START, ListingOrder()).in_order


def test_a_refused_token_goes_on_from_the_newest_date_read_when_in_order() -> None:
    state = PassState(
        PassKind.FULL,
        ConnectQuery(start_date="2015-01-01T00:00:00Z"),
        T0,
        "tok",
        7,
        None,
        0,
        True,
        "2024-02-03T04:05:06Z",
    )
    after = state.after_refused_token()
    assert after.query == ConnectQuery(start_date="2024-02-03T04:05:06Z")
    assert (after.page_token, after.pages_done, after.restarts, after.started_at) == (None, 7, 1, T0)
    incremental = PassState(
        PassKind.INCREMENTAL,
        ConnectQuery(last_interaction_date="2024-01-01T00:00:00Z"),
        T0,
        "tok",
        2,
        listed_through="2024-01-02T00:00:00Z",
    )
    assert incremental.after_refused_token().query == ConnectQuery(
        last_interaction_date="2024-01-02T00:00:00Z"
    )


def test_a_refused_token_restarts_from_page_one_when_not_in_order() -> None:
    query = ConnectQuery(start_date="2015-01-01T00:00:00Z")
    state = PassState(PassKind.FULL, query, T0, "tok", 7, None, 0, False, None)
    after = state.after_refused_token()
    assert (after.query, after.page_token, after.restarts) == (query, None, 1)
    assert (after.in_order, after.listed_through) == (True, None)  # the new reading is checked afresh


def test_page_one_after_a_resume_is_page_one_of_the_passs_first_query() -> None:
    first = ConnectQuery(start_date="2015-01-01T00:00:00Z")
    state = PassState(PassKind.FULL, first, T0, "tok", 7, None, 0, True, "2024-02-03T04:05:06Z")
    resumed = state.after_refused_token()
    assert (resumed.query, resumed.first_query) == (ConnectQuery(start_date="2024-02-03T04:05:06Z"), first)
    # Read on, the listing turns out not to be in order, and Leap refuses the new token too.
    broken = replace(resumed, page_token="tok2", in_order=False, listed_through=None)
    again = broken.after_refused_token()
    assert (again.query, again.page_token, again.first_query, again.restarts) == (first, None, None, 2)
