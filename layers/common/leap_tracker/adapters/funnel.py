"""The funnel: how many stored connections are in each ``connection_status``, counted on funnel-index.

Every snapshot carries ``funnel_key`` = ``<status or OTHER>#<shard>`` (``table.funnel_key``), the
partition key of the KEYS_ONLY GSI ``funnel-index``. A count is one Query with ``Select=COUNT`` per
(known status + OTHER) x shard, paginated (a Query reads at most 1 MB of index a page). The index is
eventually consistent (a GSI cannot be read otherwise): a count taken right after a write may miss
it for a moment, and is exact once the index has caught up (docs/operations.md#funnel).
"""

from __future__ import annotations

from typing import Any

from leap_tracker import table
from leap_tracker.leap import wire


def funnel_statuses(known_statuses: frozenset[str] = wire.KNOWN_CONNECTION_STATUSES) -> list[str]:
    """The statuses a count reports, in a stable order: the known ones, then OTHER."""
    return [*sorted(known_statuses), table.FUNNEL_OTHER_STATUS]


def count_funnel(
    client: Any, table_name: str, known_statuses: frozenset[str] = wire.KNOWN_CONNECTION_STATUSES
) -> dict[str, int]:
    """Stored connections per status (every status of :func:`funnel_statuses`, zeros included).
    Raises on any refused Query: a partial count is never returned as the funnel."""
    return {
        status: sum(
            _count_partition(client, table_name, table.funnel_partition(status, shard))
            for shard in range(table.FUNNEL_SHARDS)
        )
        for status in funnel_statuses(known_statuses)
    }


def _count_partition(client: Any, table_name: str, partition: str) -> int:
    request: dict[str, Any] = {
        "TableName": table_name,
        "IndexName": table.FUNNEL_INDEX,
        "KeyConditionExpression": "#key = :key",
        "ExpressionAttributeNames": {"#key": table.CONN_FUNNEL_KEY},
        "ExpressionAttributeValues": {":key": {"S": partition}},
        "Select": "COUNT",
        "ConsistentRead": False,  # the only read a GSI offers (half the read units of a strong one)
    }
    total = 0
    while True:
        answer = client.query(**request)
        total += answer["Count"]
        last = answer.get("LastEvaluatedKey")
        if not last:
            return total
        request["ExclusiveStartKey"] = last
