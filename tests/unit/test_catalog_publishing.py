"""Events on the wire: messages, and the ordered publishing plan (no AWS: fake publishers, any failure
pattern)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools import event_samples as samples
from leap_tracker.events.diff import change_events
from leap_tracker.events.publishing import (
    OutgoingMessage,
    message_group_id,
    plan_calls,
    publish_in_order,
    to_message,
)
from leap_tracker.privacy import Pseudonyms
from tests.fakes.log_key import PSEUDONYMS


class FakePublisher:
    """Accepts every message except those whose id is in ``refuse``; records every call."""

    max_batch_messages = 10
    max_batch_bytes = 262_144

    def __init__(self, refuse: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.refuse = refuse
        self.calls: list[list[OutgoingMessage]] = []

    def publish_batch(self, messages: Sequence[OutgoingMessage]) -> dict[str, str]:
        self.calls.append(list(messages))
        return {m.event_id: "InternalError: try again" for m in messages if m.event_id in self.refuse}


def message(event_id: str, entry: str = "g", size: int = 100) -> OutgoingMessage:
    return OutgoingMessage(event_id, entry, "{}", {}, size)


def test_to_message_carries_the_body_attributes_and_entry() -> None:
    entry = samples.commercial_history()[0]
    event = change_events(None, entry, 1)[0]

    m = to_message(event, entry["id"])

    assert json.loads(m.body) == event
    assert m.event_id == event["id"]
    assert m.entry_id == entry["id"]
    assert m.attributes["type"] == "connection.started"
    assert m.size >= len(m.body.encode())


@pytest.mark.parametrize(
    "entry_id",
    [
        "CAISO_abc_Test1012",
        "CAISO_abc_ref with spaces",  # SNS refuses a space in a group id
        "x" * 3000,  # and more than 128 characters
        "CAISO_abc_réf",  # and anything but printable ASCII
        "CAISO_abc_\ud800",  # a lone surrogate: not even UTF-8
    ],
)
def test_the_group_id_is_the_entry_pseudonym_within_sns_rules_and_never_the_id(entry_id: str) -> None:
    group = message_group_id(entry_id, PSEUDONYMS)

    assert group == PSEUDONYMS.entry(entry_id)  # the form the log lines show: one grep finds both
    assert re.fullmatch(r"entry:[0-9a-f]{16}", group)  # within SNS's 1..128 printable ASCII
    assert "abc" not in group
    assert message_group_id(entry_id, PSEUDONYMS) == group  # stable: the entry's events keep one group


def test_the_group_id_depends_on_the_stack_key() -> None:
    other = Pseudonyms.from_secret("another-stack-log-hash-key-0123456789abcdef")

    assert message_group_id("CAISO_abc_Test1012", other) != message_group_id("CAISO_abc_Test1012", PSEUDONYMS)


def test_ten_messages_per_call_across_records() -> None:
    records = [[message(f"{r}-{i}", entry=f"entry{r}") for i in range(3)] for r in range(10)]
    publisher = FakePublisher()

    outcome = publish_in_order(records, publisher)

    assert outcome.published_records == 10
    assert [len(call) for call in publisher.calls] == [10, 10, 10]
    assert outcome.calls == 3
    assert outcome.published_messages == 30


def test_two_changes_of_one_entry_never_share_a_call() -> None:
    records = [[message("a1", "A")], [message("b1", "B")], [message("a2", "A")]]

    calls = plan_calls(records, 10, 262_144)

    assert [[m.event_id for _, m in call] for call in calls] == [["a1", "b1"], ["a2"]]


def test_several_changes_per_entry_take_ceil_events_over_ten_calls() -> None:
    # bench/emitter.py's batch: 20 entries, each with the commercial sample's five changes in a row
    # (2, 2, 2, 3 and 2 events). The rule this one replaced (a new call whenever the entry already had
    # a record in the call) took 81 calls for these 220 events.
    sizes = [2, 2, 2, 3, 2]
    records = [
        [message(f"{entry}.{change}-{i}", f"entry{entry}") for i in range(size)]
        for entry in range(20)
        for change, size in enumerate(sizes)
    ]

    calls = plan_calls(records, 10, 262_144)

    assert len(calls) == 22
    for call in calls:  # still never two changes of one entry in a call
        entries = [m.entry_id for _, m in call]
        changes = {(m.entry_id, index) for index, m in call}
        assert len(changes) == len(set(entries))


def test_a_failure_pinned_on_no_message_fails_the_whole_call() -> None:
    records = [[message("0-0", "A")], [message("1-0", "B")]]
    publisher = ScriptedPublisher(refuse=set(), fail_calls=set(), unpinned={0})

    outcome = publish_in_order(records, publisher)

    assert (outcome.published_records, outcome.published_messages) == (0, 0)


def test_calls_respect_the_byte_limit() -> None:
    records = [[message(str(i), entry=str(i), size=100_000)] for i in range(5)]

    calls = plan_calls(records, 10, 262_144)

    assert [len(call) for call in calls] == [2, 2, 1]


def test_a_failed_message_stops_publishing_and_fails_its_record_and_all_after() -> None:
    records = [[message(f"{r}-{i}", entry=str(r)) for i in range(4)] for r in range(6)]
    publisher = FakePublisher(refuse={"2-3"})

    outcome = publish_in_order(records, publisher)

    assert outcome.published_records == 2
    assert outcome.failures == {"2-3": "InternalError: try again"}
    assert len(publisher.calls) == 2  # "2-3" is in the 2nd of 3 calls: the 3rd is never made


def test_a_record_split_across_calls_is_not_published_if_the_second_part_is_not_sent() -> None:
    # record 0 spans calls 1 and 2; record 1 fails in call 1: record 0's tail was never sent
    records = [[message(f"0-{i}", "A") for i in range(9)] + [message("0-9", "A"), message("0-10", "A")]]
    records.append([message("1-0", "B")])
    calls = plan_calls(records, 10, 262_144)
    assert [len(call) for call in calls] == [10, 2]

    outcome = publish_in_order(records, FakePublisher(refuse={"0-3"}))

    assert outcome.published_records == 0


def test_records_without_events_before_a_failure_count_as_published() -> None:
    records: list[list[OutgoingMessage]] = [[], [message("x", "X")], []]

    assert publish_in_order(records, FakePublisher(refuse={"x"})).published_records == 1
    assert publish_in_order(records, FakePublisher()).published_records == 3


class ScriptedPublisher:
    """Any failure pattern: refuses the messages whose id is in ``refuse`` wherever they are sent,
    fails whole the calls whose number (from 0) is in ``fail_calls``, and answers a failure it pins
    on no message for those in ``unpinned``; records what each call held and what it accepted."""

    max_batch_messages = 10
    max_batch_bytes = 262_144

    def __init__(self, refuse: set[str], fail_calls: set[int], unpinned: set[int]) -> None:
        self.refuse, self.fail_calls, self.unpinned = refuse, fail_calls, unpinned
        self.calls: list[list[OutgoingMessage]] = []
        self.accepted: list[list[OutgoingMessage]] = []

    def publish_batch(self, messages: Sequence[OutgoingMessage]) -> dict[str, str]:
        number = len(self.calls)
        self.calls.append(list(messages))
        if number in self.fail_calls:
            failures = {m.event_id: "Throttling" for m in messages}
        elif number in self.unpinned:
            failures = {"?": "the whole call failed"}
        else:
            failures = {m.event_id: "InternalError" for m in messages if m.event_id in self.refuse}
        self.accepted.append([m for m in messages if m.event_id not in failures and "?" not in failures])
        return failures


def shaped_records(shapes: list[tuple[str, int]]) -> list[list[OutgoingMessage]]:
    """One record per (entry, number of events); event ids ``<record>-<n>``."""
    return [[message(f"{r}-{i}", entry) for i in range(count)] for r, (entry, count) in enumerate(shapes)]


def record_of(m: OutgoingMessage) -> int:
    return int(m.event_id.split("-")[0])


def most_changes(records: list[list[OutgoingMessage]]) -> int:
    """The most records with events one entry has: each needs a call of its own."""
    changes: dict[str, int] = {}
    for messages in records:
        if messages:
            changes[messages[0].entry_id] = changes.get(messages[0].entry_id, 0) + 1
    return max(changes.values(), default=0)


record_shapes = st.lists(
    st.tuples(st.sampled_from("ABCDEFGHIJKL"), st.integers(min_value=0, max_value=4)), max_size=60
)
failure_patterns = st.tuples(
    st.sets(st.integers(min_value=0, max_value=240), max_size=4),  # positions of refused events
    st.sets(st.integers(min_value=0, max_value=25), max_size=2),  # calls that fail whole
    st.sets(st.integers(min_value=0, max_value=25), max_size=1),  # calls failing with no message named
)


@settings(max_examples=400, deadline=None)
@given(record_shapes)
def test_with_nothing_failing_calls_are_ceil_events_over_ten_up_to_the_changes_of_one_entry(
    shapes: list[tuple[str, int]],
) -> None:
    records = shaped_records(shapes)
    events, changes = sum(len(r) for r in records), most_changes(records)
    publisher = ScriptedPublisher(set(), set(), set())

    outcome = publish_in_order(records, publisher)

    assert outcome.published_records == len(records)
    assert outcome.published_messages == events
    calls = len(publisher.calls)
    assert calls == len(plan_calls(records, 10, 262_144))
    # ceil(events / 10) is the floor, and so is ``changes`` (two changes of an entry never share a call);
    # a call that is not full took every entry's next change, so at most ``changes`` calls are not full.
    assert max(-(-events // 10), changes) <= calls <= events // 10 + changes
    if changes <= 1:  # no entry has two changes here: full calls, in the batch's order
        assert calls == -(-events // 10)
        assert [m for call in publisher.calls for m in call] == [m for r in records for m in r]


@settings(max_examples=500, deadline=None)
@given(record_shapes, failure_patterns)
def test_any_failure_pattern_keeps_each_entry_in_order_and_reports_exactly_what_a_retry_needs(
    shapes: list[tuple[str, int]], pattern: tuple[set[int], set[int], set[int]]
) -> None:
    records = shaped_records(shapes)
    every_id = [m.event_id for messages in records for m in messages]
    refused_positions, fail_calls, unpinned = pattern
    refused = {every_id[p] for p in refused_positions if p < len(every_id)}
    publisher = ScriptedPublisher(refused, fail_calls, unpinned)

    outcome = publish_in_order(records, publisher)

    sent = [m for call in publisher.calls for m in call]
    accepted = {m.event_id for call in publisher.accepted for m in call}
    assert len({m.event_id for m in sent}) == len(sent)  # nothing sent twice
    for call in publisher.calls:
        assert len(call) <= 10
        owners: dict[str, int] = {}
        for m in call:  # one change (record) per entry in a call: a refused earlier change of the
            assert owners.setdefault(m.entry_id, record_of(m)) == record_of(m)  # entry cannot be overtaken
    failed_entries: set[str] = set()
    for call, taken in zip(publisher.calls, publisher.accepted, strict=True):
        assert not {m.entry_id for m in call} & failed_entries  # nothing of an entry after its failure
        failed_entries |= {m.entry_id for m in call if m not in taken}
    # the records reported published are exactly those, from the first, with every event accepted
    complete = [all(m.event_id in accepted for m in messages) for messages in records]
    assert outcome.published_records == [*complete, False].index(False)
    assert outcome.published_messages == len(accepted)
    # every event is published once, or its record is reported failed (the stream retries it)
    for messages in records[: outcome.published_records]:
        assert all(m.event_id in accepted for m in messages)


@settings(max_examples=300, deadline=None)
@given(record_shapes, st.lists(failure_patterns, max_size=4))
def test_the_partner_gets_every_event_and_no_change_of_an_entry_before_an_earlier_one(
    shapes: list[tuple[str, int]], rounds: list[tuple[set[int], set[int], set[int]]]
) -> None:
    """The stream's retries: each attempt starts at the first record reported failed, until one
    attempt (the last, with no failure) publishes the rest."""
    records = shaped_records(shapes)
    every_id = [m.event_id for messages in records for m in messages]
    delivered: list[OutgoingMessage] = []
    start = 0
    for refused_positions, fail_calls, unpinned in [*rounds, (set(), set(), set())]:
        refused = {every_id[p] for p in refused_positions if p < len(every_id)}
        publisher = ScriptedPublisher(refused, fail_calls, unpinned)
        start += publish_in_order(records[start:], publisher).published_records
        delivered += [m for call in publisher.accepted for m in call]
    assert start == len(records)

    assert {m.event_id for m in delivered} == set(every_id)
    first_seen: dict[str, OutgoingMessage] = {}
    for m in delivered:
        first_seen.setdefault(m.event_id, m)
    by_entry: dict[str, list[int]] = {}
    for m in first_seen.values():
        by_entry.setdefault(m.entry_id, []).append(record_of(m))
    for changes in by_entry.values():
        assert changes == sorted(changes)  # per entry, the changes in stream order


def records_around_a_refusal() -> list[list[OutgoingMessage]]:
    """A with two changes (records 0 and 1), B's ten events (record 2), C's one (record 3)."""
    return [
        [message("0-0", "A")],
        [message("1-0", "A")],
        [message(f"2-{i}", "B") for i in range(10)],
        [message("3-0", "C")],
    ]


def test_after_a_refusal_the_records_before_it_still_go_out_and_none_after_it() -> None:
    publisher = ScriptedPublisher(refuse={"2-3"}, fail_calls=set(), unpinned=set())

    outcome = publish_in_order(records_around_a_refusal(), publisher)

    # A has the most changes: its first one leads the first call; its second waits for the next call
    assert [[m.event_id for m in call] for call in publisher.calls] == [
        ["0-0", *(f"2-{i}" for i in range(9))],
        ["1-0"],  # before the refused record 2: sent; 2-9 and C's 3-0 after it: left to the retry
    ]
    assert outcome.published_records == 2
    assert outcome.failures == {"2-3": "InternalError"}
    assert outcome.published_messages == 10


def test_a_refused_first_change_of_an_entry_holds_back_its_next_one() -> None:
    publisher = ScriptedPublisher(refuse={"0-0"}, fail_calls=set(), unpinned=set())

    outcome = publish_in_order(records_around_a_refusal(), publisher)

    assert len(publisher.calls) == 1  # A's 1-0 is never sent: its earlier change will be retried
    assert outcome.published_records == 0
    assert outcome.published_messages == 9  # B's nine: published now and again on the retry (same ids)


@pytest.mark.parametrize("count", [0, 1, 10, 11, 95])
def test_calls_per_event_is_one_in_ten_for_distinct_entries(count: int) -> None:
    records = [[message(str(i), entry=str(i))] for i in range(count)]
    publisher = FakePublisher()

    publish_in_order(records, publisher)

    assert len(publisher.calls) == -(-count // 10)
