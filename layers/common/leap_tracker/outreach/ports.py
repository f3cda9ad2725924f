"""What outreach needs from the outside: the store, the channels and a topic (Protocols, no boto3).

The DynamoDB store is ``leap_tracker.adapters.outreach_store.OutreachDynamoStore``; the webhook channel
``leap_tracker.adapters.webhook.WebhookChannel``; topics go through ``adapters.sns_publisher``. Tests
pass fakes. All instants are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol

from leap_tracker.events.publishing import OutgoingMessage, to_message
from leap_tracker.outreach.decision import History, Snapshot
from leap_tracker.outreach.ledger import ClaimResult, Reservation, Suppression
from leap_tracker.outreach.messages import OutreachMessage


class OutreachStore(Protocol):
    def load(self, entry_id: str) -> tuple[Snapshot | None, History]:
        """The current snapshot (None when there is none) and the customer's history, strongly read."""
        ...

    def claim(
        self, reservation: Reservation, expected_attempts: int, now: datetime, lease_until: datetime
    ) -> ClaimResult:
        """Add the ledger entry (PENDING, recording the reservation's stamp at ``now`` and its channels)
        and take the customer's single in-flight slot, atomically, if the customer still has
        ``expected_attempts`` messages and has not completed. A NEW or RESUMED result carries the
        stamp and channels as recorded (a resume's are the first claim's, whatever this reservation
        says), with which the message and its audit are rebuilt identically."""
        ...

    def release(
        self, reservation: Reservation, delivered: frozenset[str], now: datetime, lease_until: datetime
    ) -> None:
        """A send failed: free the customer's slot; drop the ledger entry when no channel took the
        message, else keep it PENDING with the channels that did (a retry resumes it)."""
        ...

    def mark_sent(
        self, reservation: Reservation, now: datetime, follow_up_at: datetime | None, lease_until: datetime
    ) -> None:
        """The message went out: ledger SENT, attempts+1, last message, next follow-up, slot freed.
        ``release`` and ``mark_sent`` act only while the claim (``lease_until``) is still the caller's."""
        ...

    def set_follow_up(self, entry_id: str, at: datetime | None, create: bool = False) -> None:
        """Put the customer in the follow-up sweep at ``at``, or take them out (None). Without
        ``create`` a customer outreach has no state item for is left alone."""
        ...

    def mark_completed(self, entry_id: str, ref_id: str, now: datetime) -> None:
        """Remember the completion (nothing is sent after it) and leave the sweep."""
        ...

    def suppression(self, entry_id: str, key: str) -> Suppression | None:
        """The suppression recorded under ``key`` (strongly read); None when never decided."""
        ...

    def record_suppression(self, entry_id: str, suppression: Suppression) -> Suppression:
        """Record a suppression decision (PENDING) unless one is recorded under its key already;
        the one stored either way, so concurrent or retried deciders publish the first decision."""
        ...

    def mark_suppression_published(self, entry_id: str, key: str) -> None:
        """Its event is out: redeliveries publish nothing more."""
        ...

    def due_follow_ups(self, now: datetime) -> Iterator[str]:
        """Entry ids whose follow-up is due at ``now``, oldest first."""
        ...


class Channel(Protocol):
    name: str

    def deliver(self, message: OutreachMessage) -> None:
        """Hand the message over, or raise (the queue retries it)."""
        ...


class MessageSink(Protocol):
    """A topic publisher (``adapters.sns_publisher.SnsPublisher``)."""

    def publish(self, messages: Sequence[OutgoingMessage]) -> dict[str, str]:
        """Publish all; {event id: reason} for each one not accepted."""
        ...


class PublishFailed(RuntimeError):
    """The topic did not accept an event."""


class EventTopic:
    """Whole catalog events onto one topic, all-or-error."""

    def __init__(self, sink: MessageSink) -> None:
        self._sink = sink

    def publish(self, events: Sequence[dict[str, Any]]) -> None:
        failures = self._sink.publish([to_message(event, event["data"]["entry_id"]) for event in events])
        if failures:
            raise PublishFailed(f"topic refused {len(failures)} event(s): {sorted(set(failures.values()))}")


class TopicChannel:
    """The ``topic`` channel: ``outreach.requested`` on the outreach topic, for the partner's own systems."""

    name = "topic"

    def __init__(self, topic: EventTopic) -> None:
        self._topic = topic

    def deliver(self, message: OutreachMessage) -> None:
        self._topic.publish([message.event])
