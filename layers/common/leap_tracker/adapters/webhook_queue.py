"""SQS SendMessage for the webhook receiver: accepted deliveries to WebhookQueue, authenticated bodies
refused as malformed to WebhookRejectedQueue (docs/webhooks.md#receiver).

A failed call raises (botocore has retried throttling and 5xx first): the receiver must not answer
2xx for a delivery that is not durably in the queue, so Leap sends it again.
"""

from __future__ import annotations

from typing import Any

from leap_tracker.webhooks.intake import QueueMessage


class WebhookQueue:
    def __init__(self, client: Any, queue_url: str, rejected_queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url
        self._rejected_queue_url = rejected_queue_url

    def send(self, message: QueueMessage) -> str:
        """Enqueue an accepted delivery; returns SQS's message id."""
        return self._send(self._queue_url, message)

    def send_rejected(self, message: QueueMessage) -> str:
        """Keep a refused body for an operator to inspect; returns SQS's message id."""
        return self._send(self._rejected_queue_url, message)

    def _send(self, queue_url: str, message: QueueMessage) -> str:
        response = self._client.send_message(
            QueueUrl=queue_url,
            MessageBody=message.body,
            MessageAttributes={
                name: {"DataType": "String", "StringValue": value}
                for name, value in message.attributes.items()
            },
        )
        return str(response["MessageId"])
