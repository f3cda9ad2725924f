"""Events on the wire: messages, and the ordered publishing plan (no AWS: a fake publisher)."""

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


record_shapes = st.lists(
    st.tuples(st.sampled_from("ABCDE"), st.integers(min_value=0, max_value=4)), min_size=0, max_size=40
)


@settings(max_examples=200, deadline=None)
@given(record_shapes, st.sets(st.integers(min_value=0, max_value=120), max_size=3))
def test_publishing_never_lets_a_later_change_of_an_entry_overtake_a_failed_one(
    shapes: list[tuple[str, int]], refused_positions: set[int]
) -> None:
    records = [[message(f"{r}-{i}", group) for i in range(count)] for r, (group, count) in enumerate(shapes)]
    every_id = [m.event_id for messages in records for m in messages]
    refused = {every_id[p] for p in refused_positions if p < len(every_id)}
    publisher = FakePublisher(refuse=refused)

    outcome = publish_in_order(records, publisher)

    sent = {m.event_id for call in publisher.calls for m in call if m.event_id not in refused}
    # every record reported published had every message accepted
    for messages in records[: outcome.published_records]:
        assert all(m.event_id in sent for m in messages)
    # the first record not published really had a message not accepted
    if outcome.published_records < len(records):
        assert any(m.event_id not in sent for m in records[outcome.published_records])
    # no call holds two records of one entry, nor more than 10 messages
    for call in publisher.calls:
        assert len(call) <= 10
        owners = {}
        for m in call:
            record = int(m.event_id.split("-")[0])
            assert owners.setdefault(m.entry_id, record) == record
    # a call with a refusal is the last call made
    refusing = [i for i, call in enumerate(publisher.calls) if any(m.event_id in refused for m in call)]
    assert refusing in ([], [len(publisher.calls) - 1])


@pytest.mark.parametrize("count", [0, 1, 10, 11, 95])
def test_calls_per_event_is_one_in_ten_for_distinct_entries(count: int) -> None:
    records = [[message(str(i), entry=str(i))] for i in range(count)]
    publisher = FakePublisher()

    publish_in_order(records, publisher)

    assert len(publisher.calls) == -(-count // 10)
