"""Emitter failure markers in the connections table (``EMITFAIL`` / ``<stream seq, 40 digits>``),
behind ``leap_tracker.emitter.markers.FailureMarkerStore``.

All in one partition, so the emitter's role is fenced to it (``dynamodb:LeadingKeys`` ``EMITFAIL``)
and finding the markers of a batch is one Query of a sort-key range. The lookup reads consistently:
a marker written by the failed attempt a few seconds before must be seen by the retry that publishes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Unpack

from leap_tracker import table
from leap_tracker.adapters.dynamo import BatchTiming, TableBatches, serialize, string_key
from leap_tracker.emitter.markers import FailureMarker
from leap_tracker.timeutil import format_instant, parse_instant


class DynamoFailureMarkers:
    """Implements :class:`leap_tracker.emitter.markers.FailureMarkerStore` with a low-level client."""

    def __init__(self, client: Any, table_name: str, **timing: Unpack[BatchTiming]) -> None:
        self._client = client
        self._table = table_name
        self._batches = TableBatches(client, table_name, **timing)

    def find(self, low: str, high: str) -> list[str]:
        pages = self._client.get_paginator("query").paginate(
            TableName=self._table,
            KeyConditionExpression="#pk = :pk AND #sk BETWEEN :low AND :high",
            ExpressionAttributeNames={"#pk": table.PK, "#sk": table.SK},
            ExpressionAttributeValues=serialize(
                {":pk": table.EMITTER_FAILURE_PK, ":low": low, ":high": high}
            ),
            ProjectionExpression="#sk",
            ConsistentRead=True,
        )
        return [item[table.SK]["S"] for page in pages for item in page.get("Items", [])]

    def write(self, markers: Sequence[FailureMarker]) -> None:
        self._batches.put([serialize(item_from_marker(marker)) for marker in markers])

    def delete(self, sort_keys: Sequence[str]) -> None:
        # A padded sort key keys its marker as the unpadded number does (the padding is idempotent).
        self._batches.delete([string_key(table.emitter_failure_key(key)) for key in dict.fromkeys(sort_keys)])


def item_from_marker(marker: FailureMarker) -> dict[str, Any]:
    """The table item of a marker (plain Python values; what could not be read is left out)."""
    item: dict[str, Any] = {
        **table.emitter_failure_key(marker.stream_sequence),
        table.ITEM_TYPE: table.FAILURE_ITEM_TYPE,
        table.FAILURE_STREAM_SEQUENCE: marker.stream_sequence,
        table.FAILURE_REASON: marker.reason,
        table.FAILURE_FAILED_AT: format_instant(marker.failed_at),
        table.TTL_ATTRIBUTE: marker.expires_at,
    }
    if marker.entry_id is not None:
        item[table.FAILURE_ENTRY_ID] = marker.entry_id
    if marker.sequence is not None:
        item[table.FAILURE_SEQUENCE] = marker.sequence
    return item


def marker_from_item(item: Mapping[str, Any]) -> FailureMarker:
    """A marker from its (deserialized) table item."""
    sequence = item.get(table.FAILURE_SEQUENCE)
    return FailureMarker(
        stream_sequence=str(item[table.FAILURE_STREAM_SEQUENCE]),
        entry_id=item.get(table.FAILURE_ENTRY_ID),
        sequence=int(sequence) if sequence is not None else None,
        reason=str(item[table.FAILURE_REASON]),
        failed_at=parse_instant(str(item[table.FAILURE_FAILED_AT])),
        expires_at=int(item[table.TTL_ATTRIBUTE]),
    )
