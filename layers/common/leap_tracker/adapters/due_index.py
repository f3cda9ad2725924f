"""Reading the due-index: every partition of a bucket, merged into one stream in ``due_at`` order.

A bucket is ``table.DUE_SHARDS`` partitions (``<bucket>#<shard>``) plus the bare bucket that items
written before the sharding still hold (``table.due_partitions``). Each partition is one paginated
Query (``due_at <= now``, ascending), read lazily a page at a time; ``heapq.merge`` keeps the head of
each, so the stream is oldest first overall and holds at most one page per partition. A caller that
stops pulling (its time is up) stops the reads: the pages not reached are never requested.

Each item comes once: a copy met again (the index still shows an item the sweep just rewrote, or one
that moved from the bare bucket to its shard meanwhile) is skipped by its ``pk``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from leap_tracker import table
from leap_tracker.timeutil import format_instant


def due_items(
    client: Any,
    table_name: str,
    bucket: str,
    now: datetime,
    *,
    page_size: int | None = None,
    projection: Sequence[str] = (),
) -> Iterator[dict[str, Any]]:
    """The low-level items of ``bucket`` due at ``now``, earliest ``due_at`` first, each pk once.
    ``projection``: the attributes to read (``pk`` and ``due_at`` are always added); empty: all."""
    partitions = [
        _partition(client, table_name, partition, format_instant(now), page_size, projection)
        for partition in table.due_partitions(bucket)
    ]
    seen: set[str] = set()
    for item in heapq.merge(*partitions, key=_due_at):
        pk = item[table.PK]["S"]
        if pk not in seen:
            seen.add(pk)
            yield item


def _partition(
    client: Any, table_name: str, partition: str, now: str, page_size: int | None, projection: Sequence[str]
) -> Iterator[dict[str, Any]]:
    request: dict[str, Any] = {
        "TableName": table_name,
        "IndexName": table.DUE_INDEX,
        "KeyConditionExpression": "#bucket = :bucket AND #due <= :now",
        "ExpressionAttributeNames": {"#bucket": table.DUE_BUCKET_ATTRIBUTE, "#due": table.DUE_AT_ATTRIBUTE},
        "ExpressionAttributeValues": {":bucket": {"S": partition}, ":now": {"S": now}},
        "ScanIndexForward": True,
    }
    if projection:
        wanted = dict.fromkeys((table.PK, table.DUE_AT_ATTRIBUTE, *projection))
        names = {f"#p{n}": name for n, name in enumerate(wanted)}
        request["ProjectionExpression"] = ", ".join(names)
        request["ExpressionAttributeNames"] |= names
    if page_size is not None:
        request["PaginationConfig"] = {"PageSize": page_size}
    for page in client.get_paginator("query").paginate(**request):
        yield from page.get("Items", [])


def _due_at(item: dict[str, Any]) -> str:
    # RFC 3339 to the second, fixed width: text order is time order, and the index's own order.
    return str(item[table.DUE_AT_ATTRIBUTE]["S"])
