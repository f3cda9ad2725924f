"""Meters a ``meter.created`` webhook named and the Meters API confirmed, in the connections table
(``REFMETER#<ref_id>`` / ``<meter_id>``), behind ``leap_tracker.meters.ports.RememberedMeters``.

The processor writes them (BatchWriteItem: a Reference ID's few meters in one call); the meter watch
function reads them back with one consistent Query of the Reference ID's partition when a completion
opens its watch. Each item expires (TTL) with the processor's retention.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Unpack

from leap_tracker import table
from leap_tracker.adapters.dynamo import BatchTiming, TableBatches, deserialize, optional_instant, serialize
from leap_tracker.meters.model import MeterSummary
from leap_tracker.timeutil import format_instant


class DynamoRememberedMeters:
    """Implements :class:`leap_tracker.meters.ports.RememberedMeters` with a low-level client."""

    def __init__(self, client: Any, table_name: str, **timing: Unpack[BatchTiming]) -> None:
        self._client = client
        self._table = table_name
        self._batches = TableBatches(client, table_name, **timing)

    def remember(
        self, ref_id: str, meters: Sequence[MeterSummary], now: datetime, expires_at: datetime
    ) -> None:
        unique = {meter.meter_id: meter for meter in meters}  # BatchWriteItem refuses a repeated key
        self._batches.put([serialize(remembered_item(ref_id, m, now, expires_at)) for m in unique.values()])

    def recall(self, ref_id: str) -> list[MeterSummary]:
        pages = self._client.get_paginator("query").paginate(
            TableName=self._table,
            KeyConditionExpression="#pk = :pk",
            ExpressionAttributeNames={"#pk": table.PK},
            ExpressionAttributeValues=serialize({":pk": table.remembered_meters_pk(ref_id)}),
            ConsistentRead=True,
        )
        return [summary_from_item(deserialize(item)) for page in pages for item in page.get("Items", [])]


def remembered_item(ref_id: str, meter: MeterSummary, now: datetime, expires_at: datetime) -> dict[str, Any]:
    """The table item of one remembered meter (plain Python values; optional ones only when set)."""
    item: dict[str, Any] = {
        **table.remembered_meter_key(ref_id, meter.meter_id),
        table.ITEM_TYPE: table.REMEMBERED_METER_ITEM_TYPE,
        table.REMEMBERED_METER_ID: meter.meter_id,
        table.REMEMBERED_AT: format_instant(now),
        table.TTL_ATTRIBUTE: int(expires_at.timestamp()),
    }
    if meter.utility_name is not None:
        item[table.REMEMBERED_UTILITY_NAME] = meter.utility_name
    if meter.created_at is not None:
        item[table.REMEMBERED_CREATED_AT] = format_instant(meter.created_at)
    return item


def summary_from_item(item: dict[str, Any]) -> MeterSummary:
    """A remembered meter from its (deserialized) table item."""
    return MeterSummary(
        meter_id=item[table.REMEMBERED_METER_ID],
        utility_name=item.get(table.REMEMBERED_UTILITY_NAME),
        created_at=optional_instant(item.get(table.REMEMBERED_CREATED_AT)),
    )
