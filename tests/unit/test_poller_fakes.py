"""The poller's test doubles (tests/fakes) behave like what they stand for."""

from __future__ import annotations

from datetime import timedelta

import pytest

from leap_tracker.leap import wire
from leap_tracker.leap.api import ConnectQuery
from leap_tracker.poller.ports import LeaseHeld, LeaseLost
from tests.builders import T0, guide_entry
from tests.fakes.leap import FakeSource
from tests.fakes.poller import MemoryStore


def test_fake_source_resumes_from_a_token_and_ends_with_no_token() -> None:
    source = FakeSource([[guide_entry("a")], [guide_entry("b")], [guide_entry("c")]])
    query = ConnectQuery(start_date="2015-01-01T00:00:00Z")
    first = next(source.iter_pages(query))
    assert first.next_page_token == "tok+/1="
    rest = list(source.iter_pages(query, first.next_page_token))
    assert [page.entries[0][wire.ENTRY_REF_ID] for page in rest] == ["b", "c"]
    assert rest[-1].next_page_token is None


def test_memory_store_lease_is_exclusive_until_it_expires() -> None:
    store = MemoryStore()
    store.acquire_lease("run-1", T0, T0 + timedelta(minutes=16))
    with pytest.raises(LeaseHeld, match="run-1"):
        store.acquire_lease("run-2", T0 + timedelta(minutes=5), T0 + timedelta(minutes=21))
    store.acquire_lease("run-2", T0 + timedelta(minutes=17), T0 + timedelta(minutes=33))
    with pytest.raises(LeaseLost):
        store.renew_lease("run-1", T0 + timedelta(minutes=40))
    assert store.release_lease("run-1") is False
    assert store.release_lease("run-2") is True
