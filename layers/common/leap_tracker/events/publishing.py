"""Events on the wire: one SNS message per event, and publishing a stream batch's messages in order.

Pure except for the :class:`MessagePublisher` it is given (``adapters.sns_publisher`` in Lambda, fakes
in tests). The planner packs the messages of consecutive stream records into as few calls as the
publisher allows (10 messages, 256 KiB for SNS), never puts two records of the same entry in one call
(a call's messages can fail one by one, and a later change must not get through while an earlier one
failed), and stops at the first call with a failure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
    published_messages: int = 0
    calls: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # event id -> reason, from the failed call


def plan_calls(
    records: Sequence[Sequence[OutgoingMessage]], max_messages: int, max_bytes: int
) -> list[list[tuple[int, OutgoingMessage]]]:
    """Group (record index, message) pairs into calls, in order (see the module doc for the rules)."""
    calls: list[list[tuple[int, OutgoingMessage]]] = []
    current: list[tuple[int, OutgoingMessage]] = []
    size = 0
    entries: set[str] = set()
    for index, messages in enumerate(records):
        if messages and messages[0].entry_id in entries:
            calls.append(current)
            current, size, entries = [], 0, set()
        for message in messages:
            if current and (len(current) == max_messages or size + message.size > max_bytes):
                calls.append(current)
                current, size, entries = [], 0, set()
            current.append((index, message))
            size += message.size
            entries.add(message.entry_id)
    if current:
        calls.append(current)
    return calls


def publish_in_order(
    records: Sequence[Sequence[OutgoingMessage]], publisher: MessagePublisher
) -> PublishOutcome:
    """Publish every record's messages in order; stop at the first call with a failed message."""
    calls = plan_calls(records, publisher.max_batch_messages, publisher.max_batch_bytes)
    outcome = PublishOutcome(published_records=len(records))
    for position, call in enumerate(calls):
        failures = publisher.publish_batch([message for _, message in call])
        outcome.calls += 1
        outcome.published_messages += len(call) - len(failures)
        if failures:
            unsent = [index for later in calls[position + 1 :] for index, _ in later]
            # A failure the publisher cannot pin on a message (the whole call failed) fails the call.
            failed = [index for index, message in call if message.event_id in failures] or [call[0][0]]
            outcome.published_records = min(failed + unsent)
            outcome.failures = failures
            break
    return outcome
