"""Events on the wire: one SNS message per event, and publishing a stream batch's messages in order.

Pure except for the :class:`MessagePublisher` it is given (``adapters.sns_publisher`` in Lambda, fakes
in tests). The order kept is per entry: a change's events never go out while an earlier change of the
same entry failed and will be retried. Across entries there is no order to keep (on a FIFO topic each
entry is its own message group), so the calls interleave entries to fill each call (10 messages, 256
KiB for SNS), under two rules:

- A call holds the events of at most ONE change (stream record) per entry, and an entry's next change
  goes only in a later call, once every event of the one before was accepted. SNS documents that a
  PublishBatch reports each message's result individually and may accept some and refuse others, and
  that on a FIFO topic the messages of one batch are published in the order they are sent
  (https://docs.aws.amazon.com/sns/latest/api/API_PublishBatch.html); it does not say that a refused
  message holds back the later ones of its message group in the same batch. So a call with two changes
  of one entry could deliver the later one while the earlier one was refused: never built. The events
  of ONE change share its ``sequence`` (docs/events.md: an equal one is not older), so they may share a
  call, or be split over calls.
- After a call with a refusal, the earliest record with a refused event is where the stream will
  retry from (``published_records``); no event of it or of a later record is sent any more, and the
  records before it still get their remaining events sent, so exactly the records a retry needs are
  reported failed.

Each call takes, of the entries with events still to send, first those with the most changes left
(then the earliest in the stream). No plan can take fewer calls than ceil(events / 10), nor than the
most changes one entry has in the batch (each needs a call of its own). When nothing fails, a call
that is not full took the next change of every entry left whole, so there are at most
floor(events / 10) + that many calls, and exactly ceil(events / 10) when no entry has two changes in
the batch; bench/emitter.py's batches of 20 entries with five changes each take ceil(events / 10) too.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from heapq import heapify, heappop, heappush
from typing import Any, Protocol

from leap_tracker.events import catalog
from leap_tracker.privacy import Pseudonyms


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One event as SNS will carry it."""

    event_id: str  # also the FIFO deduplication id
    entry_id: str  # whose event: a FIFO topic gets its pseudonym as the group (message_group_id)
    body: str  # the CloudEvents JSON
    attributes: Mapping[str, str]  # filterable, never personal data
    size: int  # bytes SNS counts against its limits (body + attributes)


def to_message(event: Mapping[str, Any], entry_id: str) -> OutgoingMessage:
    body = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    attributes = catalog.message_attributes(dict(event))
    size = len(body.encode()) + sum(
        len(name.encode()) + len("String") + len(value.encode()) for name, value in attributes.items()
    )
    return OutgoingMessage(event["id"], entry_id, body, attributes, size)


def message_group_id(entry_id: str, pseudonyms: Pseudonyms) -> str:
    """A FIFO topic's MessageGroupId for the entry: its keyed pseudonym (``entry:<16 hex>``, the form
    the log lines show). Stable per entry, so each entry's events stay in order; it never shows the
    entry id, which embeds the Reference ID, in SNS metadata (not encrypted); and always within SNS's
    rules (1 to 128 printable ASCII characters), whatever the id holds. docs/events.md says why keyed.
    """
    return pseudonyms.entry(entry_id)


class MessagePublisher(Protocol):
    max_batch_messages: int
    max_batch_bytes: int

    def publish_batch(self, messages: Sequence[OutgoingMessage]) -> dict[str, str]:
        """Publish in one call; return {event id: reason} for every message that was not accepted."""
        ...


@dataclass(slots=True)
class PublishOutcome:
    published_records: int  # records (from the first) whose messages were all accepted
    published_messages: int = 0  # messages accepted (also of later records, which are retried)
    calls: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # event id -> reason, of every call that failed


class CallPlanner:
    """The next call's messages, by the module doc's rules; ``stop_at`` after a refusal.

    ``records`` are the stream records' messages in stream order; all messages of a record are taken
    as one change of the entry of its first message."""

    def __init__(
        self, records: Sequence[Sequence[OutgoingMessage]], max_messages: int, max_bytes: int
    ) -> None:
        self._records = records
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._sent = [0] * len(records)  # per record, how many of its messages (from the first) went out
        self._limit = len(records)
        self._changes: dict[str, deque[int]] = {}  # per entry, its records with messages left, in order
        self._queue: list[tuple[int, int, str]] = []  # (-changes left, first such record, entry)
        self._index_pending()

    def stop_at(self, record: int) -> None:
        """Send nothing more of this record or of any later one."""
        if record < self._limit:
            self._limit = record
            self._index_pending()

    def next_call(self) -> list[tuple[int, OutgoingMessage]]:
        """(record index, message) pairs for one call, in stream order; empty when nothing is left."""
        taken: list[tuple[int, int, OutgoingMessage]] = []
        size = 0
        waiting: list[str] = []  # entries that had their change in this call: none of their next one
        full = False
        while self._queue and not full:
            _, index, entry = heappop(self._queue)
            messages, position = self._records[index], self._sent[index]
            while position < len(messages):
                message = messages[position]
                if len(taken) == self._max_messages or (taken and size + message.size > self._max_bytes):
                    full = True
                    break
                taken.append((index, position, message))
                size += message.size
                position += 1
            full = full or len(taken) == self._max_messages
            self._sent[index] = position
            changes = self._changes[entry]
            if position == len(messages):
                changes.popleft()
            if changes:
                waiting.append(entry)
        for entry in waiting:
            changes = self._changes[entry]
            heappush(self._queue, (-len(changes), changes[0], entry))
        taken.sort(key=lambda item: item[:2])
        return [(index, message) for index, _, message in taken]

    def _index_pending(self) -> None:
        self._changes = {}
        for index in range(self._limit):
            if self._sent[index] < len(self._records[index]):
                self._changes.setdefault(self._records[index][0].entry_id, deque()).append(index)
        self._queue = [(-len(changes), changes[0], entry) for entry, changes in self._changes.items()]
        heapify(self._queue)


def plan_calls(
    records: Sequence[Sequence[OutgoingMessage]], max_messages: int, max_bytes: int
) -> list[list[tuple[int, OutgoingMessage]]]:
    """The calls :func:`publish_in_order` makes when every message is accepted: (record index,
    message) pairs, each call in stream order (see the module doc for the rules)."""
    planner = CallPlanner(records, max_messages, max_bytes)
    calls = []
    while call := planner.next_call():
        calls.append(call)
    return calls


def publish_in_order(
    records: Sequence[Sequence[OutgoingMessage]], publisher: MessagePublisher
) -> PublishOutcome:
    """Publish the records' messages, per entry in order; ``published_records`` says how many
    records, from the first, had every message accepted (the stream retries the rest)."""
    planner = CallPlanner(records, publisher.max_batch_messages, publisher.max_batch_bytes)
    outcome = PublishOutcome(published_records=len(records))
    while call := planner.next_call():
        failures = publisher.publish_batch([message for _, message in call])
        outcome.calls += 1
        refused = [index for index, message in call if message.event_id in failures]
        # A failure the publisher cannot pin on a message (the whole call failed) fails the call.
        failed = refused or ([index for index, _ in call] if failures else [])
        outcome.published_messages += len(call) - len(failed)
        if failed:
            outcome.failures |= failures
            outcome.published_records = min(outcome.published_records, *failed)
            planner.stop_at(outcome.published_records)
    return outcome
