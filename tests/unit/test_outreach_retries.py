"""A retried record republishes outreach's audit events byte for byte (docs/events.md): the service on
the in-memory store (tests/fakes/outreach.py), a write after the audit failing once, the record
retried at a later clock. The same scenarios run on the DynamoDB store in
tests/integration/test_outreach_store.py.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from leap_tracker.events import catalog
from leap_tracker.events.publishing import OutgoingMessage
from leap_tracker.leap import wire
from leap_tracker.outreach.decision import Action, Because, OutreachPolicy
from leap_tracker.outreach.ports import PublishFailed
from leap_tracker.timeutil import format_instant
from tests.builders import ACTIONABLE, entry, stalled_examples, utility
from tests.fakes.outreach import (
    CONNECT_URL_PATTERN,
    MemoryOutreachStore,
    RecordingChannel,
    RecordingSink,
    StoreUnavailable,
    outreach_service,
)

FIRST = ACTIONABLE + timedelta(minutes=1)
RETRY = timedelta(minutes=13)  # the queue's visibility timeout, about


def event_of(raw: dict[str, Any]) -> dict[str, Any]:
    """A change event about ``raw`` (outreach only reads the entry id from it)."""
    return {"type": "connection.partial", "data": {"connection": raw}}


def lease(now: Any) -> Any:
    return now + timedelta(minutes=3)


def fail_the_write_after(sink: RecordingSink, store: MemoryOutreachStore, event_type: str) -> None:
    """The store's next write after the first ``event_type`` audit is published fails, once."""
    armed: list[OutgoingMessage] = []

    def arm(message: OutgoingMessage) -> None:
        if message.attributes["type"] == event_type and not armed:
            armed.append(message)
            store.failing_writes = 1

    sink.after_publish = arm


def same_message(first: OutgoingMessage, again: OutgoingMessage) -> None:
    assert again.body == first.body
    assert again.attributes == first.attributes
    assert again.event_id == first.event_id


def stalled_again(raw: dict[str, Any]) -> dict[str, Any]:
    """The same customer, stuck at a new stage an hour after ACTIONABLE (a new state, a new reason)."""
    return entry(
        wire.CONNECTION_ERROR,
        [utility(status=wire.UTILITY_ERROR, error_code=wire.ERROR_MFA_FAILED)],
        ref_id=raw["ref_id"],
        last=ACTIONABLE + timedelta(hours=1),
    )


# --- outreach.sent ---------------------------------------------------------------------------------


def test_a_retry_after_a_failed_mark_sent_republishes_the_same_outreach_sent() -> None:
    store, sink, channel = MemoryOutreachStore(), RecordingSink(), RecordingChannel()
    raw = stalled_examples()["utility_error.USER_CANCELED"]
    store.put_snapshot(raw, 1)
    outreach = outreach_service(store, [channel], sink)
    fail_the_write_after(sink, store, catalog.OUTREACH_SENT)

    with pytest.raises(StoreUnavailable):  # delivered and audited, then the mark-sent write failed
        outreach.handle_event(event_of(raw), FIRST, lease(FIRST))
    retry = FIRST + RETRY
    result = outreach.handle_event(event_of(raw), retry, lease(retry))

    first, again = sink.of_type(catalog.OUTREACH_SENT)
    same_message(first, again)
    assert json.loads(again.body)["time"] == format_instant(FIRST)  # the claim's, not the retry's
    assert (result.action, result.attempt) == (Action.SEND, 1)
    assert len(channel.delivered) == 1  # the retry skipped the channel that had taken it
    assert store.load(raw["id"])[1].attempts == 1


def test_a_resumed_message_keeps_its_attempt_and_sequence_when_another_went_out_meanwhile() -> None:
    store, sink, channel = MemoryOutreachStore(), RecordingSink(), RecordingChannel()
    raw = stalled_examples()["not_started"]
    outreach = outreach_service(store, [channel], sink, OutreachPolicy(cooldown=timedelta(0)))
    store.put_snapshot(raw, 1)
    fail_the_write_after(sink, store, catalog.OUTREACH_SENT)
    with pytest.raises(StoreUnavailable):
        outreach.handle_event(event_of(raw), FIRST, lease(FIRST))

    later = FIRST + timedelta(hours=3)
    store.put_snapshot(stalled_again(raw), 2)  # a new state: its own first message goes out
    assert outreach.handle_event(event_of(raw), later, lease(later)).attempt == 1
    store.put_snapshot(raw, 3)  # back to the first state: same content, later sequence
    last = later + RETRY
    result = outreach.handle_event(event_of(raw), last, lease(last))  # resumes the first message

    first, between, again = sink.of_type(catalog.OUTREACH_SENT)
    same_message(first, again)
    assert json.loads(between.body)["data"]["reason"] == "utility_error.MFA_FAILED"
    assert (result.action, result.attempt) == (Action.SEND, 1)  # the message's number when claimed
    assert len(channel.delivered) == 2  # the first message was not delivered again
    assert store.load(raw["id"])[1].attempts == 2  # yet both count


@pytest.mark.parametrize(
    ("before", "after", "pattern"),
    [
        pytest.param(["webhook", "topic"], ["webhook"], None, id="a-channel-removed"),
        pytest.param(["webhook"], ["webhook", "topic"], None, id="a-channel-added"),
        pytest.param(["webhook"], ["webhook"], "https://example.test/{ref_id}", id="a-new-url-pattern"),
    ],
)
def test_a_redeploy_between_the_tries_does_not_change_the_republished_outreach_sent(
    before: list[str], after: list[str], pattern: str | None
) -> None:
    store, sink = MemoryOutreachStore(), RecordingSink()
    raw = stalled_examples()["agreement_pending"]
    store.put_snapshot(raw, 1)
    first_channels = [RecordingChannel(name) for name in before]
    fail_the_write_after(sink, store, catalog.OUTREACH_SENT)
    with pytest.raises(StoreUnavailable):
        outreach_service(store, first_channels, sink).handle_event(event_of(raw), FIRST, lease(FIRST))

    retry = FIRST + RETRY
    later_channels = [RecordingChannel(name) for name in after]
    redeployed = outreach_service(
        store, later_channels, sink, connect_url_pattern=pattern or CONNECT_URL_PATTERN
    )
    assert redeployed.handle_event(event_of(raw), retry, lease(retry)).action is Action.SEND

    first, again = sink.of_type(catalog.OUTREACH_SENT)
    same_message(first, again)
    assert json.loads(again.body)["data"]["channels"] == before
    assert all(channel.delivered == [] for channel in later_channels)  # it was complete: nothing resent


# --- outreach.suppressed ---------------------------------------------------------------------------


def cooldown_customer(store: MemoryOutreachStore, sink: RecordingSink) -> tuple[Any, dict[str, Any]]:
    """A customer messaged at FIRST, stuck at a new stage within the cooldown: suppressed ``cooldown``."""
    raw = stalled_examples()["not_started"]
    store.put_snapshot(raw, 1)
    outreach = outreach_service(store, [RecordingChannel()], sink)
    assert outreach.handle_event(event_of(raw), FIRST, lease(FIRST)).action is Action.SEND
    store.put_snapshot(stalled_again(raw), 2)
    return outreach, raw


def test_a_retry_after_a_failed_suppression_marker_republishes_the_same_outreach_suppressed() -> None:
    store, sink = MemoryOutreachStore(), RecordingSink()
    outreach, raw = cooldown_customer(store, sink)
    decided = FIRST + timedelta(hours=2)
    fail_the_write_after(sink, store, catalog.OUTREACH_SUPPRESSED)

    with pytest.raises(StoreUnavailable):  # audited, then the marker write failed
        outreach.handle_event(event_of(raw), decided, lease(decided))
    retry = decided + RETRY
    result = outreach.handle_event(event_of(raw), retry, lease(retry))

    first, again = sink.of_type(catalog.OUTREACH_SUPPRESSED)
    same_message(first, again)
    body = json.loads(again.body)
    assert body["time"] == format_instant(decided)  # the first decision's, not the retry's
    assert (body["data"]["suppressed_because"], body["data"]["attempts"]) == ("cooldown", 1)
    assert result.because is Because.COOLDOWN
    outreach.handle_event(event_of(raw), retry + RETRY, lease(retry + RETRY))  # a redelivery: published
    assert len(sink.of_type(catalog.OUTREACH_SUPPRESSED)) == 2


def test_a_republished_suppression_keeps_its_sequence_when_the_entry_changed_and_changed_back() -> None:
    store, sink = MemoryOutreachStore(), RecordingSink()
    outreach, raw = cooldown_customer(store, sink)
    decided = FIRST + timedelta(hours=2)
    fail_the_write_after(sink, store, catalog.OUTREACH_SUPPRESSED)
    with pytest.raises(StoreUnavailable):
        outreach.handle_event(event_of(raw), decided, lease(decided))

    store.put_snapshot(stalled_again(raw), 4)  # changed and changed back: same content, later sequence
    retry = decided + RETRY
    outreach.handle_event(event_of(raw), retry, lease(retry))

    first, again = sink.of_type(catalog.OUTREACH_SUPPRESSED)
    same_message(first, again)
    assert json.loads(again.body)["sequence"] == catalog.format_sequence(2)


def test_a_suppression_the_topic_refused_goes_out_on_the_retry_with_the_first_decisions_time() -> None:
    store, sink = MemoryOutreachStore(), RecordingSink()
    outreach, raw = cooldown_customer(store, sink)
    decided = FIRST + timedelta(hours=2)
    sink.refusing = 1

    with pytest.raises(PublishFailed):
        outreach.handle_event(event_of(raw), decided, lease(decided))
    retry = decided + RETRY
    outreach.handle_event(event_of(raw), retry, lease(retry))

    (suppressed,) = sink.of_type(catalog.OUTREACH_SUPPRESSED)
    assert json.loads(suppressed.body)["time"] == format_instant(decided)


def test_a_failed_decision_record_publishes_nothing_and_the_retry_decides_afresh() -> None:
    store, sink = MemoryOutreachStore(), RecordingSink()
    outreach, raw = cooldown_customer(store, sink)
    decided = FIRST + timedelta(hours=2)
    store.failing_writes = 1  # the first write of this decision: nothing is recorded, nothing published

    with pytest.raises(StoreUnavailable):
        outreach.handle_event(event_of(raw), decided, lease(decided))
    assert sink.of_type(catalog.OUTREACH_SUPPRESSED) == []
    retry = decided + RETRY
    outreach.handle_event(event_of(raw), retry, lease(retry))

    (suppressed,) = sink.of_type(catalog.OUTREACH_SUPPRESSED)
    assert json.loads(suppressed.body)["time"] == format_instant(retry)  # the only decision made
