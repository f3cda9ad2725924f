"""Processed webhook deliveries in the connections table (``WEBHOOK#<webhook_event_id>`` / ``EVENT``),
behind ``leap_tracker.webhooks.ports.ProcessedWebhooks``: the processor's duplicate check, and where
unknown types and enrollment events are kept. Each item expires (TTL) after WEBHOOK_RETENTION_DAYS.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from leap_tracker import table
from leap_tracker.adapters.dynamo import deserialize, is_condition_failed, serialize, string_key
from leap_tracker.timeutil import format_instant, parse_instant
from leap_tracker.webhooks.ports import ProcessedWebhook


class DynamoProcessedWebhooks:
    """Implements :class:`leap_tracker.webhooks.ports.ProcessedWebhooks` with a low-level client."""

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def get(self, event_id: str) -> ProcessedWebhook | None:
        answer = self._client.get_item(
            TableName=self._table, Key=string_key(table.webhook_key(event_id)), ConsistentRead=True
        )
        item = answer.get("Item")
        return processed_from_item(deserialize(item)) if item else None

    def record(self, processed: ProcessedWebhook) -> bool:
        try:
            self._client.put_item(
                TableName=self._table,
                Item=serialize(item_from_processed(processed)),
                ConditionExpression="attribute_not_exists(#pk)",
                ExpressionAttributeNames={"#pk": table.PK},
            )
        except ClientError as exc:
            if is_condition_failed(exc):
                return False
            raise
        return True


def item_from_processed(processed: ProcessedWebhook) -> dict[str, Any]:
    """The table item of a processed delivery (plain Python values; the body only when kept)."""
    item: dict[str, Any] = {
        **table.webhook_key(processed.event_id),
        table.ITEM_TYPE: table.WEBHOOK_ITEM_TYPE,
        table.WEBHOOK_EVENT_TYPE: processed.event_type,
        table.WEBHOOK_RECEIVED_AT: format_instant(processed.received_at),
        table.WEBHOOK_PROCESSED_AT: format_instant(processed.processed_at),
        table.WEBHOOK_OUTCOME: processed.outcome,
        table.TTL_ATTRIBUTE: int(processed.expires_at.timestamp()),
    }
    if processed.body is not None:
        item[table.WEBHOOK_BODY] = table.encode_stored_body(processed.body)
    return item


def processed_from_item(item: dict[str, Any]) -> ProcessedWebhook:
    """A processed delivery from its (deserialized) table item."""
    body = item.get(table.WEBHOOK_BODY)
    return ProcessedWebhook(
        event_id=item[table.PK].removeprefix(table.WEBHOOK_PREFIX),
        event_type=item[table.WEBHOOK_EVENT_TYPE],
        received_at=parse_instant(item[table.WEBHOOK_RECEIVED_AT]),
        processed_at=parse_instant(item[table.WEBHOOK_PROCESSED_AT]),
        outcome=item[table.WEBHOOK_OUTCOME],
        expires_at=datetime.fromtimestamp(int(item[table.TTL_ATTRIBUTE]), UTC),
        body=table.decode_stored_body(body) if body is not None else None,
    )
