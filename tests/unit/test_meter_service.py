"""Opening watches and sweeping them, against in-memory fakes of the table, Leap and SNS."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leap_tracker.config import MeterWatchSettings
from leap_tracker.events import catalog
from leap_tracker.events.publishing import OutgoingMessage
from leap_tracker.leap import wire
from leap_tracker.leap.api import LeapAuthError, LeapRequestError, LeapUnavailable
from leap_tracker.meters import schedule
from leap_tracker.meters.model import ClosedReason, MeterWatch, WatchStatus
from leap_tracker.meters.opening import MalformedCompletion, OpenResult, open_watch, watch_from_completion
from leap_tracker.meters.sweep import MeterSweepSummary, SweepIncomplete, run_sweep
from tests.fakes.log_key import PSEUDONYMS

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
RULES = MeterWatchSettings()
HOUR = timedelta(hours=1)
PLENTY_MS = 300_000


# --- fakes -------------------------------------------------------------------------------------------


@dataclass
class FakeStore:
    """The WatchStore contract in memory. ``due_watches`` reads like a DynamoDB Query with a cursor:
    lazily, in (due_at, entry id) order, continuing after the last item it returned."""

    watches: dict[str, MeterWatch] = field(default_factory=dict)
    connections: set[str] = field(default_factory=set)
    stale_copies: list[MeterWatch] = field(default_factory=list)  # what a lagging index still shows
    writes: int = 0
    lose_races_for: set[str] = field(default_factory=set)  # entry ids another sweep changes first

    def create(self, watch: MeterWatch) -> bool:
        if watch.entry_id in self.watches:
            return False
        self.watches[watch.entry_id] = watch
        self.writes += 1
        return True

    def get(self, entry_id: str) -> MeterWatch | None:
        return self.watches.get(entry_id)

    def replace(self, before: MeterWatch, after: MeterWatch) -> bool:
        stored = self.watches.get(before.entry_id)
        if before.entry_id in self.lose_races_for or stored is None:
            return False
        if (stored.sequence, stored.checks, stored.status) != (before.sequence, before.checks, before.status):
            return False
        self.watches[after.entry_id] = after
        self.writes += 1
        return True

    def due_watches(self, now: datetime) -> Iterator[MeterWatch]:
        yield from self.stale_copies
        cursor: tuple[datetime, str] | None = None
        while True:
            due = sorted(
                (w.due_at, w.entry_id)
                for w in self.watches.values()
                if w.is_open
                and w.due_at is not None
                and w.due_at <= now
                and (cursor is None or (w.due_at, w.entry_id) > cursor)
            )
            if not due:
                return
            cursor = due[0]
            yield self.watches[cursor[1]]

    def existing_connections(self, entry_ids: Sequence[str]) -> set[str]:
        return self.connections & set(entry_ids)


@dataclass
class FakeMeters:
    """A MeterSource: meters by Reference ID, each with its creation time; counts the searches."""

    meters: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    searches: list[tuple[list[str], str | None]] = field(default_factory=list)
    fail_with: Exception | None = None
    fail_on: set[int] = field(default_factory=set)  # only these searches (0-based) fail; empty: all

    def search_by_connection_references(
        self, reference_ids: Sequence[str], created_after: str | None = None
    ) -> Iterator[dict[str, Any]]:
        assert len(reference_ids) <= wire.METERS_MAX_REFERENCE_IDS
        # Leap refuses the whole search over one Reference ID its PartnerReference schema rejects.
        if not all(wire.METERS_REFERENCE_ID_PATTERN.fullmatch(ref) for ref in reference_ids):
            raise LeapRequestError("400: connection_reference_ids")
        self.searches.append((list(reference_ids), created_after))
        if self.fail_with is not None and (not self.fail_on or len(self.searches) - 1 in self.fail_on):
            raise self.fail_with
        for ref_id in reference_ids:
            yield from self.meters.get(ref_id, [])

    def add(self, ref_id: str, meter_id: str) -> None:
        self.meters.setdefault(ref_id, []).append(
            {
                wire.METER_ID: meter_id,
                wire.METER_CONNECTION_REFERENCES: [ref_id],
                wire.METER_UTILITY: {"utility_name": "PGE"},
                "customer": {"street_1": "1 Private Road"},
            }
        )


@dataclass
class FakePublisher:
    published: list[dict[str, Any]] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)  # event types SNS does not accept

    def publish(self, messages: Sequence[OutgoingMessage]) -> dict[str, str]:
        failures = {}
        for message in messages:
            event = json.loads(message.body)
            if event["type"] in self.refuse:
                failures[message.event_id] = "InternalError"
            else:
                self.published.append(event)
        return failures

    def types(self) -> list[str]:
        return [event["type"] for event in self.published]


def a_watch(n: int, completed_at: datetime = T0, **changes: Any) -> MeterWatch:
    opened = schedule.new_watch(
        entry_id=f"CAISO_u{n}_ref-{n:04d}",
        ref_id=f"ref-{n:04d}",
        transmission_region="CAISO",
        completed_at=completed_at,
        sequence=3,
        now=completed_at,
        settings=RULES,
    )
    return replace(opened, **changes)


def seeded(count: int, completed_at: datetime = T0) -> FakeStore:
    store = FakeStore()
    for n in range(count):
        watch = a_watch(n, completed_at)
        store.watches[watch.entry_id] = watch
        store.connections.add(watch.entry_id)
    return store


def sweep(store: FakeStore, meters: FakeMeters, publisher: FakePublisher, now: datetime, remaining=None):
    return run_sweep(
        store=store,
        meters=meters,
        publisher=publisher,
        settings=RULES,
        now=now,
        remaining_ms=remaining or (lambda: PLENTY_MS),
        pseudonyms=PSEUDONYMS,
    )


def incomplete_sweep(store: FakeStore, meters: FakeMeters, publisher: FakePublisher, now: datetime):
    """A sweep that must raise SweepIncomplete: its summary and the exception."""
    with pytest.raises(SweepIncomplete) as raised:
        sweep(store, meters, publisher, now)
    return raised.value.summary, raised.value


# --- opening -----------------------------------------------------------------------------------------


def completed_event(sequence: int = 3, **connection: Any) -> dict[str, Any]:
    entry = {
        wire.ENTRY_ID: "CAISO_u1_ref-0001",
        wire.ENTRY_REF_ID: "ref-0001",
        wire.ENTRY_TRANSMISSION_REGION: "CAISO",
        wire.ENTRY_LAST_INTERACTION: "2025-03-01T09:00:00Z",
        wire.ENTRY_CONNECTION_STATUS: wire.CONNECTION_COMPLETED,
        **connection,
    }
    return catalog.build_event(
        catalog.CONNECTION_COMPLETED,
        entry_id=entry[wire.ENTRY_ID],
        subject=entry[wire.ENTRY_REF_ID],
        sequence=sequence,
        time="2025-03-01T10:00:00Z",
        data={"connection": entry, "previous": {}, "actionable_at": "2025-03-01T10:00:00Z"},
    )


def test_a_completion_opens_a_watch_due_a_day_after_its_last_interaction() -> None:
    store = FakeStore()
    assert open_watch(store, completed_event(), T0 + 2 * HOUR, RULES) is OpenResult.OPENED
    watch = store.watches["CAISO_u1_ref-0001"]
    assert (watch.ref_id, watch.transmission_region, watch.sequence) == ("ref-0001", "CAISO", 3)
    assert watch.completed_at == T0
    assert watch.due_at == T0 + 24 * HOUR
    assert watch.opened_at == T0 + 2 * HOUR


def test_a_redelivered_or_replayed_completion_opens_nothing_new() -> None:
    store = FakeStore()
    open_watch(store, completed_event(), T0, RULES)
    opened = store.watches["CAISO_u1_ref-0001"]
    assert open_watch(store, completed_event(), T0 + HOUR, RULES) is OpenResult.ALREADY_WATCHED
    assert store.watches["CAISO_u1_ref-0001"] is opened
    assert store.writes == 1


@pytest.mark.parametrize(
    ("reason", "expected"),
    [(ClosedReason.EXPIRED, OpenResult.REOPENED), (ClosedReason.APPEARED, OpenResult.ALREADY_WATCHED)],
)
def test_a_later_completion_reopens_only_a_watch_that_closed_without_meters(
    reason: ClosedReason, expected: OpenResult
) -> None:
    store = FakeStore()
    open_watch(store, completed_event(sequence=3), T0, RULES)
    closed = replace(
        store.watches["CAISO_u1_ref-0001"], status=WatchStatus.CLOSED, closed_reason=reason, due_at=None
    )
    store.watches[closed.entry_id] = closed
    later = completed_event(sequence=8, **{wire.ENTRY_LAST_INTERACTION: "2025-03-20T09:00:00Z"})

    assert open_watch(store, later, T0 + 20 * 24 * HOUR, RULES) is expected
    watch = store.watches[closed.entry_id]
    if expected is OpenResult.REOPENED:
        assert (watch.sequence, watch.checks, watch.status) == (8, 0, WatchStatus.OPEN)
        assert watch.due_at == datetime(2025, 3, 21, 9, 0, tzinfo=UTC)
    else:
        assert watch is closed


def test_other_types_are_ignored_and_malformed_completions_raise() -> None:
    assert watch_from_completion({"type": catalog.CONNECTION_PARTIAL}, T0, RULES) is None
    assert open_watch(FakeStore(), {"type": catalog.UTILITY_CONNECTED}, T0, RULES) is OpenResult.IGNORED
    broken = completed_event(**{wire.ENTRY_LAST_INTERACTION: "yesterday"})
    with pytest.raises(MalformedCompletion):
        watch_from_completion(broken, T0, RULES)
    with pytest.raises(MalformedCompletion):
        watch_from_completion({"type": catalog.CONNECTION_COMPLETED, "data": {}}, T0, RULES)


# Each field of a completion that reaches the watch item (its key among them) or an SNS attribute,
# wrong-typed or oversized: a clear failure of that one message, naming the field, never a crash, never
# a truncated key, never the value. (what to change, the field the message names)
OVERSIZED_ID = "CAISO_u1_" + "貴" * 700  # 2,109 bytes: over every key limit
BAD_COMPLETIONS: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "not-an-object": (lambda e: [e], "the message is list, not a CloudEvent object"),
    "text-body": (lambda e: "connection.completed", "the message is str"),
    "no-connection": (lambda e: {**e, "data": {"connection": ["x"]}}, "without a data.connection object"),
    "data-not-object": (lambda e: {**e, "data": "x"}, "without a data.connection object"),
    "entry-id-missing": (lambda e: _connection(e, id=None), "data.connection.id is missing"),
    "entry-id-number": (lambda e: _connection(e, id=7), "data.connection.id is int, not a non-empty"),
    "entry-id-empty": (lambda e: _connection(e, id=""), "data.connection.id is str, not a non-empty"),
    "entry-id-oversized": (lambda e: _connection(e, id=OVERSIZED_ID), "data.connection.id is 2109 bytes"),
    "entry-id-surrogate": (lambda e: _connection(e, id="CAISO_u1_\ud800"), "id is not valid Unicode"),
    "ref-id-oversized": (lambda e: _connection(e, ref_id="r" * 3000), "data.connection.ref_id is 3000 bytes"),
    "ref-id-list": (lambda e: _connection(e, ref_id=["ref"]), "data.connection.ref_id is list"),
    "region-number": (lambda e: _connection(e, transmission_region=3), "transmission_region is int"),
    "region-oversized": (lambda e: _connection(e, transmission_region="R" * 300), "is 300 bytes"),
    "region-control": (lambda e: _connection(e, transmission_region="CA\x07ISO"), "a control character"),
    "instant-unparsable": (
        lambda e: _connection(e, last_interaction_date_time_utc="yesterday"),
        "last_interaction_date_time_utc is not an ISO 8601 instant",
    ),
    "instant-number": (lambda e: _connection(e, last_interaction_date_time_utc=1), "utc is int"),
    "sequence-text": (lambda e: {**e, "sequence": "three"}, "sequence is not a whole number"),
    "sequence-too-long": (lambda e: {**e, "sequence": "1" * 13}, "sequence is not a whole number"),
    "sequence-zero": (lambda e: {**e, "sequence": "000000000000"}, "sequence is not a whole number"),
    "sequence-bool": (lambda e: {**e, "sequence": True}, "(found bool)"),
    "sequence-float": (lambda e: {**e, "sequence": 1.5}, "(found float)"),
}


def _connection(event: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """The event with its connection's fields changed (None: removed)."""
    connection = {k: v for k, v in {**event["data"]["connection"], **fields}.items() if v is not None}
    return {**event, "data": {**event["data"], "connection": connection}}


@pytest.mark.parametrize(("change", "says"), BAD_COMPLETIONS.values(), ids=BAD_COMPLETIONS.keys())
def test_a_completion_with_a_wrong_typed_or_oversized_field_is_refused_naming_it(
    change: Callable[[dict[str, Any]], Any], says: str
) -> None:
    store = FakeStore()
    with pytest.raises(MalformedCompletion) as refused:
        open_watch(store, change(completed_event()), T0, RULES)

    assert says in str(refused.value)
    assert len(str(refused.value)) < 200  # never the value, whatever its size
    assert store.watches == {}


def test_a_completion_without_a_region_opens_a_watch_without_one() -> None:
    store = FakeStore()
    event = completed_event()
    del event["data"]["connection"][wire.ENTRY_TRANSMISSION_REGION]

    assert open_watch(store, event, T0, RULES) is OpenResult.OPENED
    assert store.watches["CAISO_u1_ref-0001"].transmission_region is None


# --- sweeping ----------------------------------------------------------------------------------------


def test_250_due_watches_take_3_meters_calls_not_250() -> None:
    store, meters, publisher = seeded(250), FakeMeters(), FakePublisher()
    for n in range(0, 250, 2):
        meters.add(f"ref-{n:04d}", f"meter-{n}")

    summary = sweep(store, meters, publisher, T0 + 24 * HOUR)

    assert [len(refs) for refs, _ in meters.searches] == [100, 100, 50]
    assert all(created_after == "2025-03-01T09:00:00Z" for _, created_after in meters.searches)
    assert (summary.due, summary.checked, summary.appeared, summary.meter_searches) == (250, 250, 125, 3)
    assert publisher.types() == [catalog.METER_APPEARED] * 125
    assert sum(w.status is WatchStatus.CLOSED for w in store.watches.values()) == 125
    assert all(w.due_at == T0 + 25 * HOUR for w in store.watches.values() if w.is_open)


def test_the_search_starts_at_the_earliest_completion_of_the_batch() -> None:
    store = FakeStore()
    for n, hours in enumerate([30, 0, 12]):
        watch = a_watch(n, T0 - hours * HOUR)
        store.watches[watch.entry_id] = watch
        store.connections.add(watch.entry_id)
    meters = FakeMeters()
    sweep(store, meters, FakePublisher(), T0 + 24 * HOUR)
    assert meters.searches[0][1] == "2025-02-28T03:00:00Z"


def test_nothing_is_checked_twice_in_one_sweep_even_when_the_index_lags() -> None:
    store, meters = seeded(3), FakeMeters()
    store.stale_copies = [store.watches["CAISO_u1_ref-0001"]]  # the index shows it before its real row

    summary = sweep(store, meters, FakePublisher(), T0 + 48 * HOUR)

    checked = [ref for refs, _ in meters.searches for ref in refs]
    assert sorted(checked) == ["ref-0000", "ref-0001", "ref-0002"]
    assert summary.due == 3
    assert all(w.checks == 1 for w in store.watches.values())


def test_a_sweep_near_its_time_limit_leaves_the_rest_due_for_the_next() -> None:
    store, meters = seeded(250), FakeMeters()
    budget = iter([PLENTY_MS, PLENTY_MS, RULES.sweep_time_margin_seconds * 1000 - 1])

    first = sweep(store, meters, FakePublisher(), T0 + 24 * HOUR, remaining=lambda: next(budget))

    assert first.stopped_early
    assert (first.due, first.checked, len(meters.searches)) == (200, 200, 2)
    assert sum(w.checks == 0 for w in store.watches.values()) == 50
    second = sweep(store, meters, FakePublisher(), T0 + 24 * HOUR + timedelta(minutes=5))
    assert (second.due, second.checked) == (50, 50)
    assert all(w.checks == 1 for w in store.watches.values())


def test_a_late_connection_gets_overdue_once_then_appeared_once() -> None:
    store, meters, publisher = seeded(1), FakeMeters(), FakePublisher()
    for hour in range(0, 5 * 24 + 1):
        if hour == 100:
            meters.add("ref-0000", "meter-late")
        sweep(store, meters, publisher, T0 + hour * HOUR)

    assert publisher.types() == [catalog.METER_OVERDUE, catalog.METER_APPEARED]
    appeared = publisher.published[1]
    assert appeared["data"]["meters"] == [
        {"meter_id": "meter-late", "utility_name": "PGE", "created_at": None}
    ]
    assert "Private Road" not in json.dumps(publisher.published)


def test_a_connection_without_meters_ends_with_one_expired_event() -> None:
    store, meters, publisher = seeded(1), FakeMeters(), FakePublisher()
    for hour in range(0, 16 * 24):
        sweep(store, meters, publisher, T0 + hour * HOUR)

    assert publisher.types() == [catalog.METER_OVERDUE, catalog.METER_WATCH_EXPIRED]
    watch = store.watches["CAISO_u0_ref-0000"]
    assert (watch.status, watch.closed_reason, watch.due_at) == (
        WatchStatus.CLOSED,
        ClosedReason.EXPIRED,
        None,
    )
    assert len(meters.searches) == 19


def test_a_watch_whose_connection_went_away_closes_silently_without_a_search() -> None:
    store, meters, publisher = seeded(2), FakeMeters(), FakePublisher()
    store.connections.discard("CAISO_u0_ref-0000")
    meters.add("ref-0000", "meter-x")

    summary = sweep(store, meters, publisher, T0 + 24 * HOUR)

    assert summary.connection_gone == 1
    assert publisher.published == []
    assert meters.searches[0][0] == ["ref-0001"]
    assert store.watches["CAISO_u0_ref-0000"].closed_reason is ClosedReason.CONNECTION_GONE


def test_a_watch_whose_event_was_not_published_stays_due_and_is_republished_with_the_same_id() -> None:
    store, meters, publisher = seeded(2), FakeMeters(), FakePublisher(refuse={catalog.METER_APPEARED})
    meters.add("ref-0000", "meter-0")
    failed_id = catalog.event_id("CAISO_u0_ref-0000", 3, catalog.METER_APPEARED, "meter-watch")

    first, _ = incomplete_sweep(store, meters, publisher, T0 + 24 * HOUR)  # raised after saving the rest
    assert (first.publish_failures, first.checked, first.appeared) == (1, 1, 0)
    assert store.watches["CAISO_u0_ref-0000"].checks == 0  # unchanged: still due

    publisher.refuse.clear()
    second = sweep(store, meters, publisher, T0 + 25 * HOUR)
    assert second.appeared == 1
    assert [event["id"] for event in publisher.published] == [failed_id]


def test_a_watch_changed_by_a_concurrent_sweep_is_left_to_it() -> None:
    store, meters = seeded(2), FakeMeters()
    store.lose_races_for = {"CAISO_u1_ref-0001"}
    summary = sweep(store, meters, FakePublisher(), T0 + 24 * HOUR)
    assert (summary.checked, summary.conflicts) == (1, 1)


def test_leap_unavailable_stops_the_sweep_and_leaves_every_unchecked_watch_due() -> None:
    store, meters = seeded(150), FakeMeters(fail_with=LeapUnavailable("503 after retries"))
    summary, raised = incomplete_sweep(store, meters, FakePublisher(), T0 + 24 * HOUR)
    assert isinstance(raised.__cause__, LeapUnavailable)
    assert "1 Meters search(es) failed" in str(raised)
    assert summary.stopped_early
    assert (summary.leap_failures, summary.checked, len(meters.searches)) == (1, 0, 1)
    assert summary.leap_errors == ["LeapUnavailable: 503 after retries"]
    assert all(w.checks == 0 and w.due_at == T0 + 24 * HOUR for w in store.watches.values())


def test_a_refused_search_skips_its_batch_and_goes_on() -> None:
    store, meters = seeded(150), FakeMeters(fail_with=LeapRequestError("400"))
    summary, raised = incomplete_sweep(store, meters, FakePublisher(), T0 + 24 * HOUR)
    assert isinstance(raised.__cause__, LeapRequestError)
    assert not summary.stopped_early
    assert (summary.failed_batches, summary.leap_failures, len(meters.searches)) == (2, 2, 2)


def test_leaps_answer_quoting_a_reference_id_is_kept_with_its_pseudonym_instead() -> None:
    store = seeded(2)
    refusal = LeapRequestError("POST /v2/meters/search: Leap refused (400): 'ref-0001' is not allowed")
    summary, raised = incomplete_sweep(store, FakeMeters(fail_with=refusal), FakePublisher(), T0 + 24 * HOUR)

    assert summary.leap_errors == [
        f"LeapRequestError: POST /v2/meters/search: Leap refused (400): '{PSEUDONYMS.ref('ref-0001')}' is "
        "not allowed"
    ]
    assert "ref-0001" not in str(raised)  # the message the handler logs at ERROR


def test_a_sweep_that_could_not_check_a_batch_does_all_the_rest_then_raises() -> None:
    store = seeded(250)
    meters = FakeMeters(fail_with=LeapRequestError("400"), fail_on={1})  # the second batch of 100
    for n in range(250):
        meters.add(f"ref-{n:04d}", f"meter-{n}")
    publisher = FakePublisher()
    summary, _ = incomplete_sweep(store, meters, publisher, T0 + 24 * HOUR)
    assert (summary.due, summary.checked, summary.appeared, summary.failed_batches) == (250, 150, 150, 1)
    assert len(publisher.published) == 150
    still_due = sorted(w.entry_id for w in store.watches.values() if w.is_open)
    in_due_order = sorted(a_watch(n).entry_id for n in range(250))  # same due_at: by entry id
    assert still_due == in_due_order[100:200]  # the refused batch, exactly


def test_a_rejected_api_key_fails_the_sweep() -> None:
    store, meters = seeded(1), FakeMeters(fail_with=LeapAuthError("401"))
    summary, raised = incomplete_sweep(store, meters, FakePublisher(), T0 + 24 * HOUR)
    assert isinstance(raised.__cause__, LeapAuthError)
    assert (summary.leap_failures, summary.checked) == (1, 0)


def test_only_time_running_short_or_nothing_due_ends_a_sweep_normally() -> None:
    store, meters = seeded(150), FakeMeters()
    short = sweep(store, meters, FakePublisher(), T0 + 24 * HOUR, remaining=lambda: 0)
    assert short.stopped_early
    assert short.checked == 0
    assert not short.incomplete
    assert sweep(store, meters, FakePublisher(), T0 + 24 * HOUR) == MeterSweepSummary(
        due=150, checked=150, meter_searches=2
    )


@pytest.mark.parametrize(
    "ref_id",
    ["ab", "x" * 257, "参" * 257, "order#17", "a/b/c", "50%"],
    ids=["too-short", "too-long", "cjk-too-long", "hash", "slash", "percent"],
)
def test_a_reference_id_the_meters_search_refuses_is_never_sent_and_poisons_no_batch(ref_id: str) -> None:
    store = seeded(3)
    odd = replace(a_watch(1), ref_id=ref_id)
    store.watches[odd.entry_id] = odd
    meters = FakeMeters()
    for n in range(3):
        meters.add(f"ref-{n:04d}", f"meter-{n}")

    summary = sweep(store, meters, FakePublisher(), T0 + 24 * HOUR)  # FakeMeters would refuse it: 400

    assert [refs for refs, _ in meters.searches] == [["ref-0000", "ref-0002"]]
    assert (summary.checked, summary.appeared, summary.unsearchable) == (3, 2, 1)
    checked = store.watches[odd.entry_id]
    assert (checked.checks, checked.is_open) == (1, True)  # as a check that found nothing: still open
    assert checked.due_at is not None
    assert checked.due_at > T0 + 24 * HOUR


def test_a_watch_with_an_unsearchable_reference_id_runs_its_course_to_expiry() -> None:
    store = FakeStore()
    odd = replace(a_watch(0), ref_id="order#17")
    store.watches[odd.entry_id], store.connections = odd, {odd.entry_id}
    publisher, meters = FakePublisher(), FakeMeters()
    now = T0 + 24 * HOUR
    while store.watches[odd.entry_id].is_open:
        sweep(store, meters, publisher, now)
        now += 6 * HOUR
    assert publisher.types() == [catalog.METER_OVERDUE, catalog.METER_WATCH_EXPIRED]
    assert meters.searches == []


def test_watches_not_yet_due_are_not_checked() -> None:
    store, meters = seeded(5), FakeMeters()
    summary = sweep(store, meters, FakePublisher(), T0 + 23 * HOUR)
    assert (summary.due, meters.searches) == (0, [])


@settings(max_examples=60, deadline=None)
@given(
    due_offsets=st.lists(st.integers(-72, 24), max_size=320),  # hours from now: <= 0 is due
    gone=st.sets(st.integers(0, 319), max_size=40),
    with_meters=st.sets(st.integers(0, 319), max_size=80),
    batches_in_time=st.integers(0, 5),
)
def test_a_sweep_checks_each_due_watch_at_most_once_and_loses_none(
    due_offsets: list[int], gone: set[int], with_meters: set[int], batches_in_time: int
) -> None:
    now = T0 + 30 * 24 * HOUR
    store, meters = FakeStore(), FakeMeters()
    for n, offset in enumerate(due_offsets):
        watch = a_watch(n, now - 10 * 24 * HOUR, due_at=now + offset * HOUR)
        store.watches[watch.entry_id] = watch
        if n not in gone:
            store.connections.add(watch.entry_id)
        if n in with_meters:
            meters.add(watch.ref_id, f"meter-{n}")
    before = dict(store.watches)
    budget = iter([PLENTY_MS] * batches_in_time + [0] * 1000)

    summary = sweep(store, meters, FakePublisher(), now, remaining=lambda: next(budget))

    searched = [ref for refs, _ in meters.searches for ref in refs]
    assert len(searched) == len(set(searched))  # nobody checked twice
    assert all(len(refs) <= wire.METERS_MAX_REFERENCE_IDS for refs, _ in meters.searches)
    due = sorted(
        (w for w in before.values() if w.due_at and w.due_at <= now), key=lambda w: (w.due_at, w.entry_id)
    )
    assert summary.due == min(len(due), batches_in_time * wire.METERS_MAX_REFERENCE_IDS)
    assert summary.stopped_early == (len(due) > summary.due)
    taken = {w.entry_id for w in due[: summary.due]}  # earliest first
    for entry_id, old in before.items():
        new = store.watches[entry_id]
        if entry_id not in taken:
            assert new is old  # untouched: still due (or not yet due) for the next sweep
        elif new.is_open:
            assert new.checks == old.checks + 1
            assert new.due_at is not None
            assert new.due_at > now  # not met again by this sweep
        else:
            assert new.closed_reason in (ClosedReason.APPEARED, ClosedReason.CONNECTION_GONE)
    assert summary.checked + summary.connection_gone == summary.due
