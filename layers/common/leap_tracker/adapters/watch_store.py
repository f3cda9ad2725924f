"""Meter watches in the connections table (``WATCH#<entry id>`` / ``METER``), behind ``WatchStore``.

An open watch carries the due-index attributes (bucket ``METER_WATCH#<shard>``, ``due_at``) so the
sweep can list the due ones in order (every shard, merged: ``adapters/due_index.py``); a closed watch
drops them and leaves the index, and stays in the table so a replayed completion cannot open it again.
See docs/meters.md for the item format.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Unpack

from botocore.exceptions import ClientError

from leap_tracker import table
from leap_tracker.adapters.due_index import due_items
from leap_tracker.adapters.dynamo import (
    BatchTiming,
    TableBatches,
    deserialize,
    is_condition_failed,
    optional_instant,
    serialize,
    string_key,
)
from leap_tracker.meters.model import ClosedReason, MeterWatch, WatchStatus
from leap_tracker.timeutil import format_instant, parse_instant

# A due-index page per partition holds a Meters search (100 Reference IDs): reads track the sweep's pace.
DUE_PAGE_SIZE = 100


class DynamoWatchStore:
    """Implements :class:`leap_tracker.meters.ports.WatchStore` with a low-level DynamoDB client."""

    def __init__(self, client: Any, table_name: str, **timing: Unpack[BatchTiming]) -> None:
        self._client = client
        self._table = table_name
        self._batches = TableBatches(client, table_name, **timing)

    def create(self, watch: MeterWatch) -> bool:
        return self._put(watch, "attribute_not_exists(#pk)", {"#pk": table.PK}, {})

    def get(self, entry_id: str) -> MeterWatch | None:
        answer = self._client.get_item(
            TableName=self._table, Key=string_key(table.watch_key(entry_id)), ConsistentRead=True
        )
        item = answer.get("Item")
        return watch_from_item(deserialize(item)) if item else None

    def replace(self, before: MeterWatch, after: MeterWatch) -> bool:
        if before.entry_id != after.entry_id:
            raise ValueError("replace() keeps the entry id")
        return self._put(
            after,
            "#seq = :seq AND #checks = :checks AND #status = :status",
            {"#seq": table.WATCH_SEQUENCE, "#checks": table.WATCH_CHECKS, "#status": table.WATCH_STATUS},
            {":seq": before.sequence, ":checks": before.checks, ":status": before.status.value},
        )

    def due_watches(self, now: datetime) -> Iterator[MeterWatch]:
        items = due_items(self._client, self._table, table.METER_WATCH_BUCKET, now, page_size=DUE_PAGE_SIZE)
        for item in items:
            yield watch_from_item(deserialize(item))

    def open_watches_of_ref(self, ref_id: str) -> list[MeterWatch]:
        """Implements :class:`leap_tracker.webhooks.ports.WatchesOfReference`: one Query of the
        KEYS_ONLY ref-index lists the Reference ID's snapshots and watches; each watch whose snapshot
        is listed too is read (consistently: the index only names it) and kept if open. A watch whose
        snapshot is gone is left to the sweep, which closes it without an event."""
        pages = self._client.get_paginator("query").paginate(
            TableName=self._table,
            IndexName=table.REF_INDEX,
            KeyConditionExpression="#ref = :ref",
            ExpressionAttributeNames={"#ref": table.CONN_REF_ID},
            ExpressionAttributeValues=serialize({":ref": ref_id}),
        )
        keys = {item[table.PK]["S"] for page in pages for item in page.get("Items", [])}
        watched = sorted(
            pk.removeprefix(table.WATCH_PREFIX) for pk in keys if pk.startswith(table.WATCH_PREFIX)
        )
        alive = [entry_id for entry_id in watched if table.CONNECTION_PREFIX + entry_id in keys]
        watches = (self.get(entry_id) for entry_id in alive)
        return [watch for watch in watches if watch is not None and watch.is_open]

    def existing_connections(self, entry_ids: Sequence[str]) -> set[str]:
        # Never guess: a key still unanswered after the retries raises, it never reads as "gone".
        keys = [string_key(table.connection_key(e)) for e in dict.fromkeys(entry_ids)]  # no repeated keys
        items = self._batches.get(keys, projection=(table.PK,))
        return {table.entry_id_from_pk(item[table.PK]["S"]) for item in items}

    def _put(self, watch: MeterWatch, condition: str, names: dict[str, str], values: dict[str, Any]) -> bool:
        request: dict[str, Any] = {
            "TableName": self._table,
            "Item": serialize(item_from_watch(watch)),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
        }
        if values:
            request["ExpressionAttributeValues"] = serialize(values)
        try:
            self._client.put_item(**request)
        except ClientError as exc:
            if is_condition_failed(exc):
                return False
            raise
        return True


def item_from_watch(watch: MeterWatch) -> dict[str, Any]:
    """The table item of a watch (plain Python values; optional attributes only when set)."""
    item: dict[str, Any] = {
        **table.watch_key(watch.entry_id),
        table.ITEM_TYPE: table.WATCH_ITEM_TYPE,
        table.WATCH_ENTRY_ID: watch.entry_id,
        table.WATCH_REF_ID: watch.ref_id,
        table.WATCH_COMPLETED_AT: format_instant(watch.completed_at),
        table.WATCH_SEQUENCE: watch.sequence,
        table.WATCH_OPENED_AT: format_instant(watch.opened_at),
        table.WATCH_CHECKS: watch.checks,
        table.WATCH_OVERDUE_PUBLISHED: watch.overdue_published,
        table.WATCH_STATUS: watch.status.value,
    }
    optional: dict[str, Any] = {
        table.WATCH_TRANSMISSION_REGION: watch.transmission_region,
        table.WATCH_CLOSED_REASON: watch.closed_reason.value if watch.closed_reason else None,
        table.WATCH_CLOSED_AT: _instant_or_none(watch.closed_at),
        table.WATCH_LAST_CHECKED_AT: _instant_or_none(watch.last_checked_at),
        table.WATCH_METER_IDS: list(watch.meter_ids) or None,
    }
    if watch.is_open and watch.due_at is not None:
        # Only open watches are in the sparse due-index.
        optional[table.DUE_BUCKET_ATTRIBUTE] = table.due_bucket(table.METER_WATCH_BUCKET, watch.entry_id)
        optional[table.DUE_AT_ATTRIBUTE] = format_instant(watch.due_at)
    item.update({name: value for name, value in optional.items() if value is not None})
    return item


def watch_from_item(item: dict[str, Any]) -> MeterWatch:
    """A watch from its (deserialized) table item."""
    reason = item.get(table.WATCH_CLOSED_REASON)
    return MeterWatch(
        entry_id=item[table.WATCH_ENTRY_ID],
        ref_id=item[table.WATCH_REF_ID],
        transmission_region=item.get(table.WATCH_TRANSMISSION_REGION),
        completed_at=parse_instant(item[table.WATCH_COMPLETED_AT]),
        sequence=int(item[table.WATCH_SEQUENCE]),
        opened_at=parse_instant(item[table.WATCH_OPENED_AT]),
        due_at=optional_instant(item.get(table.DUE_AT_ATTRIBUTE)),
        checks=int(item[table.WATCH_CHECKS]),
        overdue_published=bool(item.get(table.WATCH_OVERDUE_PUBLISHED, False)),
        status=WatchStatus(item[table.WATCH_STATUS]),
        closed_reason=ClosedReason(reason) if reason else None,
        closed_at=optional_instant(item.get(table.WATCH_CLOSED_AT)),
        last_checked_at=optional_instant(item.get(table.WATCH_LAST_CHECKED_AT)),
        meter_ids=tuple(item.get(table.WATCH_METER_IDS) or ()),
    )


def _instant_or_none(value: datetime | None) -> str | None:
    return format_instant(value) if value is not None else None
