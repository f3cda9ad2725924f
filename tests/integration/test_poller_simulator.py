"""The poller end to end below the handler: the Leap simulator over HTTP, the real client, moto.

Each "Done when" line of issue 2 has a test here, checked against the simulator's ground truth.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from devtools.leap_simulator import Fault, LeapSimulator, http_error, rate_limited, server_error
from leap_tracker import table
from leap_tracker.adapters.leap_http import LeapHttpClient
from leap_tracker.adapters.poller_store import DynamoPollerStore
from leap_tracker.config import LeapApiSettings, PollerSettings
from leap_tracker.leap import wire
from leap_tracker.leap.api import ConnectPage, ConnectQuery, LeapAuthError, LeapUnavailable
from leap_tracker.leap.connect_model import canonical_json
from leap_tracker.poller.request import PollMode, PollRequest
from leap_tracker.poller.run import PollEnvironment, PollFailed, RunStatus, RunSummary, run_poll
from leap_tracker.table import decode_stored_change, decode_stored_entry
from tests.fakes.dynamodb import RequestCounter, scan_items, stored_connections
from tests.fakes.log_key import PSEUDONYMS
from tests.fakes.poller import PageBudget

SCHEDULED = PollRequest(PollMode.SCHEDULED)
SETTINGS = PollerSettings()
EVERY_PAGE = PollerSettings(checkpoint_every_pages=1)  # a checkpoint after each page, as in the tests of it
CUSTOMERS = 60  # moto costs ~2 ms per item written or read: enough for 6 pages, no more
PAGE_SIZE = 10
PAGES = CUSTOMERS // PAGE_SIZE


class World:
    """The simulator, moto's table, and a way to run the poller between them."""

    def __init__(
        self, sim: LeapSimulator, settings: Callable[..., LeapApiSettings], client: Any, table_name: str
    ):
        self.sim = sim
        self.make_settings = settings
        self.dynamodb = client
        self.table = table_name
        self.requests = RequestCounter(client)
        self.clients: list[LeapHttpClient] = []
        self.runs = 0
        self.clock_offset = timedelta(0)  # how far the poller's clock is ahead of the simulator's

    def leap(self, **overrides: Any) -> LeapHttpClient:
        client = LeapHttpClient(self.make_settings(**{"page_size": PAGE_SIZE, **overrides}))
        self.clients.append(client)
        return client

    def store(self) -> DynamoPollerStore:
        return DynamoPollerStore(self.dynamodb, self.table, sleep=lambda _: None)

    def poll(
        self,
        request: PollRequest = SCHEDULED,
        *,
        remaining: Callable[[], int] | None = None,
        source: Any = None,
        store: DynamoPollerStore | None = None,
        run_id: str | None = None,
        settings: PollerSettings = SETTINGS,
    ) -> RunSummary:
        self.runs += 1
        leap = source or self.leap()
        env = PollEnvironment(
            source=leap,
            store=store or self.store(),
            now=lambda: self.sim.now + self.clock_offset,
            remaining_ms=remaining or PageBudget(10_000),
            pseudonyms=PSEUDONYMS,
            retry_count=lambda: leap.stats.retries if hasattr(leap, "stats") else 0,
        )
        return run_poll(request, run_id or f"run-{self.runs}", env, settings)

    def truth(self) -> dict[str, str]:
        """entry id -> canonical JSON of what the API shows now."""
        return {entry[wire.ENTRY_ID]: canonical_json(entry) for entry in self.sim.iter_entries()}

    def stored(self) -> dict[str, dict[str, Any]]:
        return stored_connections(self.dynamodb, self.table)

    def stored_entries(self) -> dict[str, str]:
        return {
            entry_id: canonical_json(decode_stored_entry(item[table.CONN_ENTRY]["B"]))
            for entry_id, item in self.stored().items()
        }

    def history(self) -> dict[tuple[str, int], tuple[str | None, str]]:
        """(entry id, sequence) -> the stored change: (previous, entry) as canonical JSON."""
        changes = {}
        for item in scan_items(self.dynamodb, self.table):
            if item[table.PK]["S"].startswith(table.HISTORY_PREFIX):
                previous, entry = decode_stored_change(item[table.HISTORY_CHANGE]["B"])
                key = (
                    table.entry_id_from_history_pk(item[table.PK]["S"]),
                    int(item[table.HISTORY_SEQUENCE]["N"]),
                )
                changes[key] = (None if previous is None else canonical_json(previous), canonical_json(entry))
        return changes

    def connect_requests(self) -> int:
        return self.sim.requests[wire.DEFAULT_CONNECT_WIRE.path]


@pytest.fixture
def leap_simulator() -> Iterator[LeapSimulator]:
    """Overrides the shared fixture with a smaller population (the behaviour under test is the same)."""
    with LeapSimulator(seed=7, customers=CUSTOMERS) as sim:
        yield sim


@pytest.fixture
def world(
    leap_simulator: LeapSimulator,
    leap_settings: Callable[..., LeapApiSettings],
    dynamodb: Any,
    connections_table: str,
) -> Iterator[World]:
    leap_simulator.advance(days=20)  # every customer has clicked; journeys at every stage
    made = World(leap_simulator, leap_settings, dynamodb, connections_table)
    yield made
    for client in made.clients:
        client.close()


def test_a_first_poll_stores_every_entry(world: World) -> None:
    summary = world.poll()
    assert summary.status is RunStatus.COMPLETED
    assert summary.pass_kind == "full"
    truth = world.truth()
    assert len(truth) == world.sim.customers
    assert world.stored_entries() == truth
    assert {item[table.CONN_SEQUENCE]["N"] for item in world.stored().values()} == {"1"}
    assert all(n == 1 for n in world.requests.connection_puts().values())
    assert (summary.pages, summary.entries_seen, summary.changed) == (PAGES, len(truth), len(truth))


def test_a_second_poll_with_nothing_changed_writes_nothing(world: World) -> None:
    world.poll()
    writes_before = world.requests.calls["BatchWriteItem"]
    summary = world.poll()
    assert summary.pass_kind == "incremental"
    assert summary.changed == 0
    assert summary.unchanged == summary.entries_seen > 0
    assert world.requests.calls["BatchWriteItem"] == writes_before


def test_with_some_entries_changed_exactly_those_are_written_with_their_next_sequence(world: World) -> None:
    world.poll()
    before = world.truth()
    world.sim.advance(hours=1)
    touched = world.sim.touch(0.05)
    assert touched
    after = world.truth()
    changed = {entry_id for entry_id, text in after.items() if before.get(entry_id) != text}
    puts_before = world.requests.connection_puts()

    summary = world.poll()

    put_now = world.requests.connection_puts() - puts_before
    assert {table.entry_id_from_pk(pk) for pk in put_now} == changed
    assert all(n == 1 for n in put_now.values())
    assert summary.changed == len(changed)
    stored = world.stored()
    assert world.stored_entries() == after
    sequences = {entry_id: int(item[table.CONN_SEQUENCE]["N"]) for entry_id, item in stored.items()}
    assert sequences == {entry_id: 2 if entry_id in changed else 1 for entry_id in after}
    # One history item per stored change, each with the entry as Leap showed it before and after.
    assert world.history() == {(i, 1): (None, text) for i, text in before.items()} | {
        (i, 2): (before[i], after[i]) for i in changed
    }


def test_page_tokens_are_url_encoded(world: World) -> None:
    world.poll()
    with_token = [r for r in world.sim.request_log if wire.DEFAULT_CONNECT_WIRE.param_page_token in r.query]
    assert len(with_token) == PAGES - 1
    for request in with_token:
        assert "page-token=%2B%2F" in request.raw_query  # the token starts "+/" and must arrive intact
        assert "+" not in request.raw_query
        assert request.raw_query.endswith("%3D") or "%3D&" in request.raw_query
    assert len(world.stored()) == world.sim.customers


def test_a_run_cut_off_mid_pagination_and_resumed_loses_and_duplicates_nothing(world: World) -> None:
    first = world.poll(remaining=PageBudget(3))
    assert first.status is RunStatus.INTERRUPTED
    assert first.pages == 3
    assert len(world.stored()) == 3 * PAGE_SIZE

    second = world.poll()
    assert second.resumed
    assert second.status is RunStatus.COMPLETED
    assert (second.pages, second.pass_pages_done) == (PAGES - 3, PAGES)
    assert world.connect_requests() == PAGES  # no page read twice
    assert world.stored_entries() == world.truth()
    puts = world.requests.connection_puts()
    assert len(puts) == world.sim.customers
    assert set(puts.values()) == {1}


def test_a_crash_between_a_pages_writes_and_its_checkpoint_replays_it_without_rewriting(world: World) -> None:
    store = world.store()
    save = store.save_checkpoint
    saved: list[int] = []

    def killed_on_the_fourth_checkpoint(checkpoint: Any, owner: str, now: Any) -> None:
        if len(saved) == 3:
            raise TimeoutError("Task timed out")
        saved.append(1)
        save(checkpoint, owner, now)

    store.save_checkpoint = killed_on_the_fourth_checkpoint  # type: ignore[method-assign]
    with pytest.raises(PollFailed) as failed:
        world.poll(store=store, settings=EVERY_PAGE)
    assert isinstance(failed.value.__cause__, TimeoutError)
    replay = world.poll()
    assert replay.resumed
    assert replay.unchanged == PAGE_SIZE  # the replayed fourth page: already stored
    assert world.stored_entries() == world.truth()
    assert set(world.requests.connection_puts().values()) == {1}


def test_an_expired_page_token_restarts_the_pass_and_still_writes_each_entry_once(world: World) -> None:
    world.poll(remaining=PageBudget(2))
    world.sim.expire_page_tokens()
    summary = world.poll()
    assert summary.status is RunStatus.COMPLETED
    assert summary.token_restarts == 1
    assert world.stored_entries() == world.truth()
    assert set(world.requests.connection_puts().values()) == {1}


def test_429_and_500_are_retried(world: World) -> None:
    world.sim.inject(rate_limited(retry_after_seconds=0))
    world.sim.inject(server_error())
    summary = world.poll()
    assert summary.status is RunStatus.COMPLETED
    assert summary.retries == 2
    assert world.stored_entries() == world.truth()


def test_a_401_ends_the_run_clearly(world: World) -> None:
    with pytest.raises(PollFailed, match=r"Leap rejected the API key \(401\)") as failed:
        world.poll(source=world.leap(api_key="a-wrong-key"))
    assert isinstance(failed.value.__cause__, LeapAuthError)
    assert world.stored() == {}
    assert not [
        item for item in scan_items(world.dynamodb, world.table) if item[table.SK]["S"] == table.LEASE_SK
    ]


def test_a_malformed_entry_is_quarantined_while_the_rest_of_its_page_is_stored(world: World) -> None:
    broken = dict(world.sim.snapshot(world.sim.ref_ids[0]) or {})
    broken[wire.ENTRY_REF_ID] = "broken-ref"
    broken[wire.ENTRY_ID] = "CAISO_broken_broken-ref"
    broken[wire.ENTRY_LAST_INTERACTION] = "not a date"
    world.sim.put_entry(broken)
    summary = world.poll()
    assert summary.invalid == 1
    truth = world.truth()
    del truth[broken[wire.ENTRY_ID]]
    assert world.stored_entries() == truth
    [quarantined] = [
        i for i in scan_items(world.dynamodb, world.table) if i[table.PK]["S"].startswith("QUARANTINE#")
    ]
    assert quarantined[table.PK]["S"] == "QUARANTINE#CAISO_broken_broken-ref"
    assert quarantined["reason"]["S"].startswith(wire.ENTRY_LAST_INTERACTION)


class RunsAnotherPollFirst:
    """A source that, when its run asks for its first page, lets a second run try to poll."""

    def __init__(self, inner: LeapHttpClient, other_run: Callable[[], RunSummary]) -> None:
        self.inner, self.other_run, self.stats = inner, other_run, inner.stats
        self.other: RunSummary | None = None

    def iter_pages(self, query: ConnectQuery, page_token: str | None = None) -> Iterator[ConnectPage]:
        if self.other is None:
            self.other = self.other_run()
        yield from self.inner.iter_pages(query, page_token)


def test_two_overlapping_runs_never_both_write(world: World) -> None:
    second_store = world.store()
    racer = RunsAnotherPollFirst(world.leap(), lambda: world.poll(store=second_store, run_id="run-second"))
    first_store = world.store()
    first = world.poll(source=racer, store=first_store, run_id="run-first")

    assert racer.other is not None
    assert racer.other.status is RunStatus.SKIPPED
    assert racer.other.reason.startswith("lease held by run-first until")
    assert second_store.stats.write_requests == 0
    assert first.status is RunStatus.COMPLETED
    assert first_store.stats.items_written == 2 * world.sim.customers  # each one's history and snapshot
    assert set(world.requests.connection_puts().values()) == {1}


def test_an_expired_lease_is_taken_over(world: World) -> None:
    crashed = world.store()
    now = world.sim.now
    crashed.acquire_lease("run-crashed", now - timedelta(minutes=20), now - timedelta(minutes=4))
    assert world.poll().status is RunStatus.COMPLETED
    assert len(world.stored()) == world.sim.customers


class LeaseStolenAfterWrites(DynamoPollerStore):
    """A store whose lease another run takes over after ``writes`` pages were written, as if this
    run had outlived it (its clock jumps an hour on): its next write must find out first."""

    def __init__(self, world: World, writes: int) -> None:
        super().__init__(world.dynamodb, world.table, sleep=lambda _: None)
        self.world, self.writes = world, writes

    def write_changes(self, *args: Any, **kwargs: Any) -> None:
        super().write_changes(*args, **kwargs)
        self.writes -= 1
        if self.writes == 0:
            self.world.clock_offset = timedelta(hours=1)
            late = self.world.sim.now + self.world.clock_offset
            self.world.store().acquire_lease("run-thief", late, late + timedelta(minutes=16))


def test_a_run_that_lost_its_lease_stops_before_writing(world: World) -> None:
    store = LeaseStolenAfterWrites(world, writes=2)
    with pytest.raises(PollFailed) as failed:  # its work was not done: the platform must count it
        world.poll(store=store)
    summary = failed.value.summary
    assert summary.status is RunStatus.LEASE_LOST
    assert summary.pages == 2
    assert len(world.stored()) == 2 * PAGE_SIZE  # the third page was read but not written


# --- a run that cannot do its work raises, after checkpointing what it did ------------------------


class FaultAfterPages:
    """A source that arms a simulator fault, for every later request, once ``pages`` pages were read."""

    def __init__(self, inner: LeapHttpClient, sim: LeapSimulator, pages: int, fault: Fault) -> None:
        self.inner, self.sim, self.pages, self.fault, self.stats = inner, sim, pages, fault, inner.stats

    def iter_pages(self, query: ConnectQuery, page_token: str | None = None) -> Iterator[ConnectPage]:
        for served, page in enumerate(self.inner.iter_pages(query, page_token), start=1):
            yield page
            if served == self.pages:
                self.sim.inject(self.fault, times=None, path=wire.DEFAULT_CONNECT_WIRE.path)


def test_leap_answering_500_to_every_retry_of_page_3_fails_the_run_and_the_next_resumes_at_page_3(
    world: World,
) -> None:
    source = FaultAfterPages(world.leap(), world.sim, pages=2, fault=server_error())
    with pytest.raises(PollFailed, match="Leap still answered 500 when retries ran out") as failed:
        world.poll(source=source)
    summary = failed.value.summary
    assert isinstance(failed.value.__cause__, LeapUnavailable)
    assert (summary.status, summary.pages, summary.changed) == (RunStatus.FAILED, 2, 2 * PAGE_SIZE)
    assert summary.retries == 3  # every retry the client had was spent on page 3
    pending = world.store().load_checkpoint().pending
    assert pending is not None
    assert (pending.pages_done, pending.page_token is not None) == (2, True)
    assert len(world.stored()) == 2 * PAGE_SIZE

    world.sim.clear_faults()
    resumed = world.poll()
    assert resumed.resumed
    assert resumed.status is RunStatus.COMPLETED
    assert (resumed.pages, resumed.pass_pages_done) == (PAGES - 2, PAGES)
    assert world.stored_entries() == world.truth()
    assert set(world.requests.connection_puts().values()) == {1}  # nothing written twice


def test_a_request_leap_refuses_fails_the_run(world: World) -> None:
    world.sim.inject(http_error(404), times=None)  # e.g. a mistyped LeapApiBaseUrl path
    with pytest.raises(PollFailed, match=r"Leap refused the request \(404"):
        world.poll()
    assert world.stored() == {}
    assert world.store().load_checkpoint().pending is None


def test_an_unreachable_leap_fails_the_run(world: World) -> None:
    # What a mistyped LeapApiBaseUrl host gives: nothing listens there.
    unreachable = world.leap(base_url="http://127.0.0.1:9", max_retries=1)
    with pytest.raises(PollFailed, match="Leap unreachable") as failed:
        world.poll(source=unreachable)
    assert isinstance(failed.value.__cause__, LeapUnavailable)
    assert world.stored() == {}


# --- an entry no table key can hold -------------------------------------------------------------


class ExtraOnFirstPage:
    """A source that serves one more entry at the top of every selection's first page (Leap would list
    it wherever its dates put it; the first page is the hardest case: nothing was stored before it)."""

    def __init__(self, inner: LeapHttpClient, extra: dict[str, Any]) -> None:
        self.inner, self.extra, self.stats = inner, extra, inner.stats

    def iter_pages(self, query: ConnectQuery, page_token: str | None = None) -> Iterator[ConnectPage]:
        for position, page in enumerate(self.inner.iter_pages(query, page_token)):
            if position == 0 and page_token is None:
                page = ConnectPage([dict(self.extra), *page.entries], page.next_page_token)
            yield page


def test_an_entry_with_a_2100_byte_reference_id_is_quarantined_and_polls_go_on(world: World) -> None:
    ref_id = "参" * 700  # 700 characters, 2,100 bytes: past the partition key limit inside CONN#<id>
    base = world.sim.snapshot(world.sim.ref_ids[0])
    assert base is not None
    huge = {**base, wire.ENTRY_REF_ID: ref_id, wire.ENTRY_ID: f"CAISO_{'0' * 8}_{ref_id}"}
    source = ExtraOnFirstPage(world.leap(), huge)

    first = world.poll(source=source)
    assert first.status is RunStatus.COMPLETED
    assert (first.invalid, first.changed) == (1, world.sim.customers)
    assert world.stored_entries() == world.truth()  # every other entry, once
    assert set(world.requests.connection_puts().values()) == {1}
    [quarantined] = [
        i for i in scan_items(world.dynamodb, world.table) if i[table.PK]["S"].startswith("QUARANTINE#")
    ]
    assert quarantined[table.PK]["S"].startswith("QUARANTINE#sha256:")
    assert len(quarantined[table.PK]["S"].encode()) <= table.MAX_PARTITION_KEY_BYTES
    assert quarantined["reason"]["S"].startswith(f"{wire.ENTRY_ID} is ")
    assert ref_id in quarantined["raw_entry"]["S"].encode().decode("unicode_escape")  # kept for a person
    assert world.store().load_checkpoint().pending is None  # the pass completed and checkpointed

    world.sim.advance(hours=1)
    second = world.poll(source=ExtraOnFirstPage(world.leap(), huge))
    assert second.status is RunStatus.COMPLETED
    assert second.pass_kind == "incremental"
    assert second.invalid == 1


def test_pages_are_fetched_ahead_in_a_worker_and_decoded_in_the_runs_own_thread(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker holds page n+1's raw answer while page n is stored, never a second decoded page."""
    fetched_in: list[int] = []
    decoded_in: list[int] = []
    answered, decode = LeapHttpClient._answered, LeapHttpClient._connect_page

    def answering(self: LeapHttpClient, *args: Any, **kwargs: Any) -> Any:
        fetched_in.append(threading.get_ident())
        return answered(self, *args, **kwargs)

    def decoding(self: LeapHttpClient, body: Any) -> Any:
        decoded_in.append(threading.get_ident())
        return decode(self, body)

    monkeypatch.setattr(LeapHttpClient, "_answered", answering)
    monkeypatch.setattr(LeapHttpClient, "_connect_page", decoding)
    summary = world.poll()
    assert (summary.status, summary.pages) == (RunStatus.COMPLETED, PAGES)
    assert len(decoded_in) == len(fetched_in) == PAGES
    assert set(decoded_in) == {threading.get_ident()}
    assert threading.get_ident() not in set(fetched_in)
