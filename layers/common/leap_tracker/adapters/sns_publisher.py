"""SNS PublishBatch for event messages (implements events.publishing.MessagePublisher).

Standard topic: each message carries its body and filterable attributes. FIFO topic
(EVENTS_TOPIC_FIFO=true): also MessageGroupId = the entry's pseudonym (SNS keeps each entry's
messages in order; ``events.publishing.message_group_id``) and MessageDeduplicationId = the event id
(SNS drops a republished event for 5 minutes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from leap_tracker.adapters.aws import error_code
from leap_tracker.config import Settings, require
from leap_tracker.events.publishing import OutgoingMessage, message_group_id, plan_calls
from leap_tracker.privacy import Pseudonyms

MAX_BATCH_MESSAGES = 10  # SNS PublishBatch: entries per call
MAX_BATCH_BYTES = 262_144  # SNS: a message, and all messages of one call together


class SnsPublisher:
    max_batch_messages = MAX_BATCH_MESSAGES
    max_batch_bytes = MAX_BATCH_BYTES

    def __init__(self, client: Any, topic_arn: str, group_id: Callable[[str], str] | None = None) -> None:
        """``group_id`` (entry id -> MessageGroupId) makes it a FIFO topic's publisher."""
        self._client = client
        self._topic_arn = topic_arn
        self._group_id = group_id
        self.calls = 0  # PublishBatch calls made (for metrics and the bench)

    def publish_batch(self, messages: Sequence[OutgoingMessage]) -> dict[str, str]:
        """One PublishBatch call; {event id: reason} for each message SNS did not accept."""
        if not messages:
            return {}
        if len(messages) > self.max_batch_messages:
            raise ValueError(
                f"{len(messages)} messages: PublishBatch takes at most {self.max_batch_messages}"
            )
        self.calls += 1
        try:
            response = self._client.publish_batch(
                TopicArn=self._topic_arn,
                PublishBatchRequestEntries=[self._entry(str(i), m) for i, m in enumerate(messages)],
            )
        except (ClientError, BotoCoreError) as exc:  # botocore already retried throttling and 5xx
            reason = error_code(exc) or type(exc).__name__
            return {message.event_id: reason for message in messages}
        return {
            messages[
                int(failed["Id"])
            ].event_id: f"{failed.get('Code', 'Failed')}: {failed.get('Message', '')}"
            for failed in response.get("Failed", [])
        }

    def publish(self, messages: Sequence[OutgoingMessage]) -> dict[str, str]:
        """Every message, in order and in as few calls as the limits allow (the packing rule of
        ``events.publishing``, the messages taken as one record: a call may hold several messages of
        one entry), every call made; the failures of all calls."""
        failures: dict[str, str] = {}
        for call in plan_calls([messages], self.max_batch_messages, self.max_batch_bytes):
            failures |= self.publish_batch([message for _, message in call])
        return failures

    def _entry(self, entry_id: str, message: OutgoingMessage) -> dict[str, Any]:
        return batch_entry(entry_id, message, self._group_id, body_field="Message")


def batch_entry(
    entry_id: str,
    message: OutgoingMessage,
    group_id: Callable[[str], str] | None,
    body_field: str,
) -> dict[str, Any]:
    """One entry of a PublishBatch (``body_field`` "Message") or SendMessageBatch ("MessageBody")
    call: string attributes, and for a FIFO target the group id and deduplication id (the event id)."""
    entry: dict[str, Any] = {
        "Id": entry_id,
        body_field: message.body,
        "MessageAttributes": {
            name: {"DataType": "String", "StringValue": value} for name, value in message.attributes.items()
        },
    }
    if group_id is not None:
        entry["MessageGroupId"] = group_id(message.entry_id)
        entry["MessageDeduplicationId"] = message.event_id
    return entry


def events_publisher(settings: Settings, sns_client: Any, pseudonyms: Pseudonyms) -> SnsPublisher:
    """The publisher of the events topic (EVENTS_TOPIC_ARN, FIFO or not), as every stage builds it."""
    topic_arn = require(settings.events_topic_arn, "EVENTS_TOPIC_ARN")
    group_id = partial(message_group_id, pseudonyms=pseudonyms) if settings.events_topic_fifo else None
    return SnsPublisher(sns_client, topic_arn, group_id)
