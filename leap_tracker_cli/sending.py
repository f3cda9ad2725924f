"""Republishing stored changes: their events as the emitter makes them, sent in order.

:func:`prepare` turns stored changes into one list of messages per change (``events.diff`` then
``events.publishing.to_message``, exactly the emitter's path, so ids, bodies and attributes match);
a change that cannot be read or diffed is set aside with its reason, never dropped silently.
:func:`send` publishes them with ``events.publishing.publish_in_order`` (once an event is refused,
nothing of its change or of any later one is sent: what follows is reported unsent, so each entry's
events stay in order) through either

- the project's ``SnsPublisher`` to the events topic (a FIFO topic: the entry's pseudonym as group
  id, the event id as deduplication id), or
- :class:`QueuePublisher` straight into an SQS queue, each message as a raw-delivery subscription of
  the topic delivers it: the CloudEvent as the body, the SNS message attributes as SQS message
  attributes (``DataType`` String), and on a FIFO queue the same group and deduplication ids.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from leap_tracker.events import catalog
from leap_tracker.events.diff import DiffRules
from leap_tracker.events.publishing import (
    MessagePublisher,
    OutgoingMessage,
    message_group_id,
    publish_in_order,
    to_message,
)
from leap_tracker.leap.connect_model import code_problem
from leap_tracker.privacy import Pseudonyms, excerpt
from leap_tracker_cli.stored import StoredChange

# The types a stored change can give (the topic also carries meter.* and outreach.*: not from changes).
CHANGE_TYPES = tuple(
    name for name in catalog.CATALOG if name.split(".")[0] in ("connection", "utility", "agreement")
)
SQS_MAX_BATCH_MESSAGES = 10  # SendMessageBatch: entries per call
SQS_MAX_BATCH_BYTES = 262_144  # SendMessageBatch: all messages of one call together


@dataclass(frozen=True, slots=True)
class Unreadable:
    entry: str  # the entry's pseudonym
    sequence: int
    reason: str

    def document(self) -> dict[str, Any]:
        return {"entry": self.entry, "sequence": self.sequence, "reason": self.reason}


@dataclass(slots=True)
class Prepared:
    """The messages of the readable changes, one list per change, in the order to send them."""

    records: list[list[OutgoingMessage]] = field(default_factory=list)
    changes: list[StoredChange] = field(default_factory=list)  # the change of each record
    unreadable: list[Unreadable] = field(default_factory=list)
    changes_read: int = 0

    @property
    def messages(self) -> int:
        return sum(len(record) for record in self.records)

    def counts_by_type(self) -> dict[str, int]:
        counted = Counter(m.attributes[catalog.ATTR_TYPE] for record in self.records for m in record)
        return dict(sorted(counted.items()))

    @property
    def entries(self) -> int:
        return len({change.entry_id for change in self.changes})


def prepare(
    changes: Sequence[StoredChange],
    rules: DiffRules,
    pseudonyms: Pseudonyms,
    types: Collection[str] = (),
) -> Prepared:
    """Each change's messages (only of ``types`` when given), in the order given (sort it first)."""
    prepared = Prepared()
    for change in changes:
        prepared.changes_read += 1
        try:
            messages = change_messages(change, rules)
        except (KeyError, ValueError, TypeError) as exc:
            reason = (
                change.problem or f"the entry cannot be diffed: {type(exc).__name__}: {excerpt(str(exc))}"
            )
            # The reason may quote the entry (a KeyError names a field, a value may be an id): redacted.
            reason = pseudonyms.redact(reason, entry_ids=[change.entry_id])
            prepared.unreadable.append(Unreadable(pseudonyms.entry(change.entry_id), change.sequence, reason))
            continue
        messages = [m for m in messages if not types or m.attributes[catalog.ATTR_TYPE] in types]
        if messages:
            prepared.records.append(messages)
            prepared.changes.append(change)
    return prepared


def change_messages(change: StoredChange, rules: DiffRules) -> list[OutgoingMessage]:
    """The messages of one change, as ``emitter.stream.record_messages`` makes them from the stream
    images (and refused for the same reasons: an entry that cannot be diffed, an attribute SNS refuses)."""
    messages = [to_message(event, change.entry_id) for event in change.events(rules)]
    for message in messages:
        for name, value in message.attributes.items():
            problem = code_problem(value)
            if problem:
                raise ValueError(f"the event's SNS attribute {name} {problem}")
    return messages


@dataclass(frozen=True, slots=True)
class Sent:
    published: int  # messages accepted
    unsent: int  # messages not accepted, or not tried after the first failure
    records_published: int  # changes (from the first) whose messages were all accepted
    failures: dict[str, str]  # event id -> reason, of the calls that failed


def send(records: Sequence[Sequence[OutgoingMessage]], publisher: MessagePublisher) -> Sent:
    outcome = publish_in_order(records, publisher)
    total = sum(len(record) for record in records)
    return Sent(
        published=outcome.published_messages,
        unsent=total - outcome.published_messages,
        records_published=outcome.published_records,
        failures=dict(outcome.failures),
    )


def topic_publisher(sns: Any, topic_arn: str, pseudonyms: Pseudonyms) -> MessagePublisher:
    """The events topic's publisher, as the emitter builds it (a FIFO topic's ARN ends in .fifo)."""
    from leap_tracker.adapters.sns_publisher import SnsPublisher  # boto3 on first use

    group_id = partial(message_group_id, pseudonyms=pseudonyms) if topic_arn.endswith(".fifo") else None
    return SnsPublisher(sns, topic_arn, group_id)


class QueuePublisher:
    """SendMessageBatch into one queue, each message as a raw-delivery SNS subscription delivers it
    (implements ``events.publishing.MessagePublisher``)."""

    max_batch_messages = SQS_MAX_BATCH_MESSAGES
    max_batch_bytes = SQS_MAX_BATCH_BYTES

    def __init__(self, sqs: Any, queue_url: str, group_id: Callable[[str], str] | None = None) -> None:
        """``group_id`` (entry id -> MessageGroupId) for a FIFO queue."""
        self._sqs = sqs
        self._url = queue_url
        self._group_id = group_id

    def publish_batch(self, messages: Sequence[OutgoingMessage]) -> dict[str, str]:
        from botocore.exceptions import BotoCoreError, ClientError  # loaded with boto3 by then

        if not messages:
            return {}
        try:
            answer = self._sqs.send_message_batch(
                QueueUrl=self._url, Entries=[self._entry(str(i), m) for i, m in enumerate(messages)]
            )
        except (ClientError, BotoCoreError) as exc:  # botocore already retried throttling and 5xx
            code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
            return {message.event_id: code or type(exc).__name__ for message in messages}
        return {
            messages[
                int(failed["Id"])
            ].event_id: f"{failed.get('Code', 'Failed')}: {failed.get('Message', '')}"
            for failed in answer.get("Failed", [])
        }

    def _entry(self, entry_id: str, message: OutgoingMessage) -> dict[str, Any]:
        from leap_tracker.adapters.sns_publisher import batch_entry  # with boto3, on first use

        return batch_entry(entry_id, message, self._group_id, body_field="MessageBody")


def queue_publisher(sqs: Any, queue_url: str, pseudonyms: Pseudonyms) -> QueuePublisher:
    """A FIFO queue's URL ends in .fifo: it gets the group and deduplication ids SNS would give it."""
    fifo = queue_url.endswith(".fifo")
    return QueuePublisher(sqs, queue_url, partial(message_group_id, pseudonyms=pseudonyms) if fifo else None)
