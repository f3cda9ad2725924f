"""The DynamoDB adapter core's requests as DynamoDB (moto) takes them, on the table as template.yaml
declares it. The loops and the retry policy: tests/unit/test_dynamo_core.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from leap_tracker import table
from leap_tracker.adapters.dynamo import (
    BatchRetryPolicy,
    TableBatches,
    UnprocessedReads,
    is_condition_failed,
    serialize,
    string_key,
)
from leap_tracker.adapters.outreach_store import DynamoOutreachStore
from leap_tracker.adapters.poller_store import DynamoPollerStore
from leap_tracker.adapters.watch_store import DynamoWatchStore


def snapshot(n: int) -> dict[str, Any]:
    return serialize({**table.connection_key(f"e{n}"), table.CONN_SEQUENCE: n, table.CONN_CONTENT_HASH: "h"})


def test_items_put_in_batches_are_read_back_projected(dynamodb: Any, connections_table: str) -> None:
    batches = TableBatches(dynamodb, connections_table)
    batches.put([snapshot(n) for n in range(30)])
    keys = [string_key(table.connection_key(f"e{n}")) for n in range(130)]  # 100 never written

    found = list(batches.get(keys, projection=(table.PK, table.CONN_SEQUENCE), consistent=True))

    assert sorted(int(item[table.CONN_SEQUENCE]["N"]) for item in found) == list(range(30))
    assert {frozenset(item) for item in found} == {frozenset({table.PK, table.CONN_SEQUENCE})}
    assert batches.stats.read_requests == 2
    assert batches.stats.write_requests == 2
    assert batches.stats.items_written == 30


def test_a_read_without_projection_returns_whole_items(dynamodb: Any, connections_table: str) -> None:
    batches = TableBatches(dynamodb, connections_table)
    batches.put([snapshot(1)])

    assert list(batches.get([string_key(table.connection_key("e1"))])) == [snapshot(1)]


def test_a_refused_condition_is_told_apart_from_other_errors(dynamodb: Any, connections_table: str) -> None:
    def put_new(item: dict[str, Any]) -> None:
        dynamodb.put_item(
            TableName=connections_table,
            Item=item,
            ConditionExpression="attribute_not_exists(#pk)",
            ExpressionAttributeNames={"#pk": table.PK},
        )

    put_new(snapshot(1))
    with pytest.raises(ClientError) as refused:
        put_new(snapshot(1))
    with pytest.raises(ClientError) as invalid:
        put_new({table.PK: {"S": "only a partition key"}})

    assert is_condition_failed(refused.value)
    assert not is_condition_failed(invalid.value)


class NeverAnswers:
    """A client whose BatchGetItem answers nothing and hands every key back as unprocessed."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.batch_gets = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.batch_gets += 1
        return {"Responses": {name: [] for name in RequestItems}, "UnprocessedKeys": RequestItems}


READS: dict[str, tuple[Any, Callable[[Any], object]]] = {  # each store's read through BatchGetItem
    "poller": (DynamoPollerStore, lambda store: store.read_snapshots(["e1"])),
    "outreach": (DynamoOutreachStore, lambda store: store.load("e1")),
    "meters": (DynamoWatchStore, lambda store: store.existing_connections(["e1"])),
}


@pytest.mark.parametrize("store", sorted(READS))
def test_every_store_retries_unread_keys_under_the_one_policy_then_raises(
    dynamodb: Any, connections_table: str, store: str
) -> None:
    """A key DynamoDB never answers is never taken as absent (no snapshot, no state, connection gone)."""
    client, sleeps = NeverAnswers(dynamodb), []
    make, read = READS[store]
    timed = make(client, connections_table, retry=BatchRetryPolicy(max_attempts=3), sleep=sleeps.append)

    with pytest.raises(UnprocessedReads, match="after 3 BatchGetItem attempts"):
        read(timed)

    assert client.batch_gets == 3
    assert len(sleeps) == 2  # between the attempts, none after the last
