"""The due-index sharded (``table.due_bucket``): both sweeps' stores on moto, with the table as
template.yaml declares it, and the in-memory fakes held to the same reading contract (each due item
once, earliest ``due_at`` first across every shard, only what is due). On moto only, what the fakes do
not model: how items spread over the shards, that a sweep's reads stay lazy, and that items written
before the sharding (the bare bucket) are still found, swept, and rewritten sharded.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leap_tracker import table
from leap_tracker.adapters.outreach_store import DynamoOutreachStore
from leap_tracker.adapters.poller_store import snapshot_item
from leap_tracker.adapters.watch_store import DUE_PAGE_SIZE, DynamoWatchStore
from leap_tracker.config import MeterWatchSettings
from leap_tracker.leap.connect_model import validate_entry
from leap_tracker.meters import schedule
from leap_tracker.meters.model import MeterWatch
from leap_tracker.outreach.decision import Action
from leap_tracker.poller.ports import SnapshotWrite
from tests.builders import ACTIONABLE, stalled_examples
from tests.fakes.dynamodb import RequestCounter
from tests.fakes.outreach import MemoryOutreachStore, RecordingChannel, RecordingSink, outreach_service
from tests.fakes.webhooks import MemoryWatches

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
RULES = MeterWatchSettings()
SHARE = 1000 / table.DUE_SHARDS


def a_watch(n: int, completed_at: datetime) -> MeterWatch:
    """Watch n, its first check due ``METER_FIRST_CHECK_HOURS`` after ``completed_at``."""
    return schedule.new_watch(
        entry_id=f"CAISO_u{n}_ref-{n:05d}",
        ref_id=f"ref-{n:05d}",
        transmission_region="CAISO",
        completed_at=completed_at,
        sequence=3,
        now=completed_at,
        settings=RULES,
    )


def scattered(n: int) -> datetime:
    """A completion time for item n, scattered over 100 hours (not in entry id or shard order)."""
    return T0 + timedelta(minutes=(n * 3_571) % 6_000)


@dataclass
class Stores:
    kind: str
    watches: Any
    outreach: Any


@pytest.fixture(params=["dynamodb", "memory"])
def stores(request: pytest.FixtureRequest) -> Stores:
    if request.param == "memory":
        return Stores("memory", MemoryWatches(), MemoryOutreachStore())
    dynamodb, name = request.getfixturevalue("dynamodb"), request.getfixturevalue("connections_table")
    return Stores("dynamodb", DynamoWatchStore(dynamodb, name), DynamoOutreachStore(dynamodb, name))


def partition_counts(client: Any, table_name: str, bucket: str) -> Counter[str]:
    """How many items each due-index partition of ``bucket`` holds (shards and the bare bucket)."""
    counts: Counter[str] = Counter()
    for partition in table.due_partitions(bucket):
        pages = client.get_paginator("query").paginate(
            TableName=table_name,
            IndexName=table.DUE_INDEX,
            KeyConditionExpression="#bucket = :bucket",
            ExpressionAttributeNames={"#bucket": table.DUE_BUCKET_ATTRIBUTE},
            ExpressionAttributeValues={":bucket": {"S": partition}},
            Select="COUNT",
        )
        counts[partition] = sum(page["Count"] for page in pages)
    return counts


def bare_bucket(client: Any, table_name: str, key: dict[str, str], bucket: str) -> None:
    """Give an item the unsharded bucket, as code before the sharding wrote it."""
    client.update_item(
        TableName=table_name,
        Key={name: {"S": value} for name, value in key.items()},
        UpdateExpression="SET #bucket = :bucket",
        ExpressionAttributeNames={"#bucket": table.DUE_BUCKET_ATTRIBUTE},
        ExpressionAttributeValues={":bucket": {"S": bucket}},
    )


def stored_bucket(client: Any, table_name: str, key: dict[str, str]) -> str | None:
    item = client.get_item(
        TableName=table_name, Key={name: {"S": value} for name, value in key.items()}, ConsistentRead=True
    )["Item"]
    return item[table.DUE_BUCKET_ATTRIBUTE]["S"] if table.DUE_BUCKET_ATTRIBUTE in item else None


# --- the contract, on both stores ------------------------------------------------------------------


def test_due_watches_come_once_each_earliest_first_across_the_shards(stores: Stores) -> None:
    watches = [a_watch(n, scattered(n)) for n in range(3 * DUE_PAGE_SIZE)]
    for watch in watches:
        assert stores.watches.create(watch)
    now = T0 + 24 * HOUR + 60 * HOUR  # about 60 % of them are due

    due = list(stores.watches.due_watches(now))

    expected = {w.entry_id for w in watches if w.due_at is not None and w.due_at <= now}
    assert 0 < len(expected) < len(watches)
    assert [w.entry_id for w in due if w.entry_id in expected] == [w.entry_id for w in due]
    assert sorted(w.entry_id for w in due) == sorted(expected)  # each once, none missing
    assert [w.due_at for w in due] == sorted(w.due_at for w in due if w.due_at is not None)


def test_due_follow_ups_come_once_each_earliest_first_across_the_shards(stores: Stores) -> None:
    due_at = {f"E{n:04d}": scattered(n) for n in range(300)}
    for entry_id, at in due_at.items():
        stores.outreach.set_follow_up(entry_id, at, create=True)
    now = T0 + 60 * HOUR

    due = list(stores.outreach.due_follow_ups(now))

    expected = {entry_id for entry_id, at in due_at.items() if at <= now}
    assert 0 < len(expected) < len(due_at)
    assert sorted(due) == sorted(expected)
    assert [due_at[e] for e in due] == sorted(due_at[e] for e in due)
    assert all(stores.outreach.load(e)[1].follow_up_at == due_at[e] for e in due)


# --- on moto: the shards themselves ----------------------------------------------------------------


def test_a_thousand_watches_and_follow_ups_spread_over_every_shard(
    dynamodb: Any, connections_table: str
) -> None:
    watches, outreach = (
        DynamoWatchStore(dynamodb, connections_table),
        DynamoOutreachStore(dynamodb, connections_table),
    )
    for n in range(1000):
        assert watches.create(a_watch(n, scattered(n)))
        outreach.set_follow_up(f"CAISO_u{n}_ref-{n:05d}", scattered(n), create=True)

    for bucket in (table.METER_WATCH_BUCKET, table.OUTREACH_FOLLOW_UP_BUCKET):
        counts = partition_counts(dynamodb, connections_table, bucket)
        assert counts[bucket] == 0  # nothing new goes to the bare bucket
        shards = [counts[f"{bucket}#{shard}"] for shard in range(table.DUE_SHARDS)]
        assert sum(shards) == 1000
        assert max(shards) <= 2 * SHARE, shards
        assert min(shards) > 0, shards


def test_the_merge_reads_one_page_per_shard_until_more_is_pulled(
    dynamodb: Any, connections_table: str
) -> None:
    store = DynamoWatchStore(dynamodb, connections_table)
    for n in range(1000):
        store.create(a_watch(n, T0))
    requests = RequestCounter(dynamodb)

    due = store.due_watches(T0 + 24 * HOUR)
    first = [next(due) for _ in range(5)]  # a sweep stopping early takes only what it pulled

    assert len(first) == 5
    assert requests.calls["Query"] == len(table.due_partitions(table.METER_WATCH_BUCKET))
    assert {params["IndexName"] for _, params in requests.params} == {table.DUE_INDEX}
    assert len(list(due)) == 995  # the rest, page by page
    assert requests.calls["Scan"] == 0


# --- on moto: items written before the sharding ------------------------------------------------------


def test_watches_written_before_the_sharding_are_swept_in_order_and_rewritten_sharded(
    dynamodb: Any, connections_table: str
) -> None:
    store = DynamoWatchStore(dynamodb, connections_table)
    watches = [a_watch(n, scattered(n)) for n in range(40)]
    old = watches[::2]
    for watch in watches:
        store.create(watch)
    for watch in old:
        bare_bucket(dynamodb, connections_table, table.watch_key(watch.entry_id), table.METER_WATCH_BUCKET)
    now = T0 + 200 * HOUR  # every one is due

    due = list(store.due_watches(now))

    assert sorted(w.entry_id for w in due) == sorted(w.entry_id for w in watches)
    assert [w.due_at for w in due] == sorted(w.due_at for w in watches)
    assert (
        partition_counts(dynamodb, connections_table, table.METER_WATCH_BUCKET)[table.METER_WATCH_BUCKET]
        == 20
    )
    rescheduled = schedule.after_check(old[0], [], now, RULES).watch  # the sweep's rewrite of a check
    assert store.replace(old[0], rescheduled)
    key = table.watch_key(old[0].entry_id)
    assert stored_bucket(dynamodb, connections_table, key) == table.due_bucket(
        table.METER_WATCH_BUCKET, old[0].entry_id
    )
    assert (
        partition_counts(dynamodb, connections_table, table.METER_WATCH_BUCKET)[table.METER_WATCH_BUCKET]
        == 19
    )


def test_a_follow_up_written_before_the_sharding_is_swept_and_rewritten_sharded(
    dynamodb: Any, connections_table: str
) -> None:
    raw = stalled_examples()["utility_not_connected"]
    now = ACTIONABLE + timedelta(minutes=1)
    dynamodb.put_item(
        TableName=connections_table, Item=snapshot_item(SnapshotWrite(validate_entry(raw), 1), now)
    )
    store = DynamoOutreachStore(dynamodb, connections_table)
    store.set_follow_up(raw["id"], now - HOUR, create=True)
    key = table.outreach_state_key(raw["id"])
    bare_bucket(dynamodb, connections_table, key, table.OUTREACH_FOLLOW_UP_BUCKET)
    assert store.load(raw["id"])[1].follow_up_at == now - HOUR  # still read as due
    assert list(store.due_follow_ups(now)) == [raw["id"]]
    channel = RecordingChannel()

    summary = outreach_service(store, [channel], RecordingSink()).run_follow_ups(
        now, now + timedelta(minutes=3), lambda: True
    )

    assert (summary.due, summary.failed) == (1, 0)
    assert [outcome.action for outcome in summary.outcomes] == [Action.SEND]
    assert len(channel.delivered) == 1
    follow_up = store.load(raw["id"])[1].follow_up_at
    assert follow_up is not None
    assert follow_up > now  # the next look, in its shard
    assert stored_bucket(dynamodb, connections_table, key) == table.due_bucket(
        table.OUTREACH_FOLLOW_UP_BUCKET, raw["id"]
    )
    assert list(store.due_follow_ups(follow_up)) == [raw["id"]]
