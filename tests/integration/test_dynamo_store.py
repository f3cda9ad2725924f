"""The poller's DynamoDB store on moto, with the table created exactly as template.yaml declares it
(the ``dynamodb`` and ``connections_table`` fixtures of tests/integration/conftest.py).

The lease tests hold the in-memory store of the run tests (tests/fakes/poller.py) to the same contract.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devtools.template_tables import CONNECTIONS_TABLE_ID, resource_properties
from leap_tracker import table
from leap_tracker.adapters.dynamo import (
    BATCH_GET_LIMIT,
    BATCH_WRITE_LIMIT,
    BatchRetryPolicy,
    UnprocessedReads,
    UnprocessedWrites,
)
from leap_tracker.adapters.poller_store import (
    DynamoPollerStore,
    item_size_bytes,
    snapshot_item,
    write_units,
)
from leap_tracker.leap.api import ConnectQuery
from leap_tracker.leap.connect_model import validate_entry
from leap_tracker.poller.changes import QUARANTINE_RETENTION, validate_page
from leap_tracker.poller.ports import (
    Checkpoint,
    LeaseHeld,
    LeaseLost,
    PassKind,
    PassState,
    SnapshotWrite,
    StoredState,
)
from leap_tracker.table import decode_stored_entry
from tests.builders import T0, guide_entries, guide_entry
from tests.fakes.dynamodb import RequestCounter, scan_items, stored_connections
from tests.fakes.poller import MemoryStore


class RecordedSleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def poller_store(dynamodb: Any, connections_table: str) -> DynamoPollerStore:
    return DynamoPollerStore(dynamodb, connections_table, sleep=RecordedSleeps(), draw=lambda: 1.0)


# --- the table ----------------------------------------------------------------------------------


def test_the_table_is_created_as_the_template_declares(dynamodb: Any, connections_table: str) -> None:
    description = dynamodb.describe_table(TableName=connections_table)["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in description["KeySchema"]} == {
        table.PK: "HASH",
        table.SK: "RANGE",
    }
    assert description["StreamSpecification"] == {
        "StreamEnabled": True,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    assert [index["IndexName"] for index in description["GlobalSecondaryIndexes"]] == [table.DUE_INDEX]
    ttl = dynamodb.describe_time_to_live(TableName=connections_table)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == table.TTL_ATTRIBUTE
    properties = resource_properties(CONNECTIONS_TABLE_ID)
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    # Always KMS: the partner's key with KmsKeyArn, else aws/dynamodb (tests/unit/test_template_security.py).
    sse = properties["SSESpecification"]
    assert (sse["SSEEnabled"], sse["SSEType"]) == (True, "KMS")


# --- the lease (same contract for the DynamoDB and the in-memory store) -------------------------


@pytest.fixture(params=["dynamodb", "memory"])
def any_store(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        return MemoryStore()
    return request.getfixturevalue("poller_store")


def test_the_lease_is_exclusive_until_it_expires(any_store: Any) -> None:
    any_store.acquire_lease("run-a", T0, T0 + timedelta(minutes=16))
    with pytest.raises(LeaseHeld) as held:
        any_store.acquire_lease("run-b", T0 + timedelta(minutes=15), T0 + timedelta(minutes=31))
    assert held.value.owner == "run-a"
    assert held.value.until == T0 + timedelta(minutes=16)
    any_store.acquire_lease("run-b", T0 + timedelta(minutes=16, seconds=1), T0 + timedelta(minutes=32))


def test_only_the_holder_renews_and_releases(any_store: Any) -> None:
    any_store.acquire_lease("run-a", T0, T0 + timedelta(minutes=16))
    any_store.renew_lease("run-a", T0 + timedelta(minutes=20))
    with pytest.raises(LeaseHeld):  # renewed: still held after the first expiry
        any_store.acquire_lease("run-b", T0 + timedelta(minutes=17), T0 + timedelta(minutes=30))
    with pytest.raises(LeaseLost):
        any_store.renew_lease("run-b", T0 + timedelta(minutes=30))
    assert any_store.release_lease("run-b") is False
    assert any_store.release_lease("run-a") is True
    any_store.acquire_lease("run-b", T0, T0 + timedelta(minutes=16))


def test_a_lost_lease_names_the_new_holder(poller_store: DynamoPollerStore) -> None:
    poller_store.acquire_lease("run-a", T0, T0 + timedelta(minutes=16))
    poller_store.acquire_lease("run-b", T0 + timedelta(minutes=17), T0 + timedelta(minutes=33))
    with pytest.raises(LeaseLost, match="now held by run-b"):
        poller_store.renew_lease("run-a", T0 + timedelta(minutes=40))


def test_the_lease_item_format(
    dynamodb: Any, connections_table: str, poller_store: DynamoPollerStore
) -> None:
    poller_store.acquire_lease("run-a", T0, T0 + timedelta(minutes=16))
    item = dynamodb.get_item(TableName=connections_table, Key=_key(table.POLLER_PK, table.LEASE_SK))["Item"]
    assert item == {
        table.PK: {"S": table.POLLER_PK},
        table.SK: {"S": table.LEASE_SK},
        table.ITEM_TYPE: {"S": "poller_lease"},
        "owner": {"S": "run-a"},
        "lease_expires_ms": {"N": str(int((T0 + timedelta(minutes=16)).timestamp() * 1000))},
        "lease_expires_at": {"S": "2025-01-10T12:16:00Z"},
        "acquired_at": {"S": "2025-01-10T12:00:00Z"},
    }
    poller_store.release_lease("run-a")
    assert "Item" not in dynamodb.get_item(
        TableName=connections_table, Key=_key(table.POLLER_PK, table.LEASE_SK)
    )


# --- the checkpoint -------------------------------------------------------------------------------


def test_no_checkpoint_reads_as_the_empty_one(poller_store: DynamoPollerStore) -> None:
    assert poller_store.load_checkpoint() == Checkpoint()


def test_the_checkpoint_round_trips_exactly(
    dynamodb: Any, connections_table: str, poller_store: DynamoPollerStore
) -> None:
    pending = PassState(
        kind=PassKind.INCREMENTAL,
        query=ConnectQuery(last_interaction_date="2025-01-10T07:00:00Z"),
        started_at=T0,
        page_token="+/v7AQAAAAAAAAAy=",
        pages_done=4,
        max_last_interaction=datetime(2025, 1, 10, 11, 59, 59, 250000, tzinfo=UTC),
        restarts=1,
    )
    checkpoint = Checkpoint(
        watermark=T0 - timedelta(hours=1),
        last_full_started_at=T0 - timedelta(days=1),
        last_full_completed_at=T0 - timedelta(hours=23),
        last_pass_completed_at=T0 - timedelta(hours=1),
        pending=pending,
    )
    poller_store.save_checkpoint(checkpoint, "run-a", T0)
    assert poller_store.load_checkpoint() == checkpoint
    item = dynamodb.get_item(TableName=connections_table, Key=_key(table.POLLER_PK, table.CHECKPOINT_SK))[
        "Item"
    ]
    assert item["pass"]["M"]["query"] == {"M": {"last_interaction_date": {"S": "2025-01-10T07:00:00Z"}}}
    assert item["pass"]["M"]["max_last_interaction"] == {"S": "2025-01-10T11:59:59.250000Z"}
    assert item["updated_by"] == {"S": "run-a"}
    done = checkpoint.completed(pending, T0)
    poller_store.save_checkpoint(done, "run-a", T0)
    assert poller_store.load_checkpoint() == done
    assert (
        "pass"
        not in dynamodb.get_item(TableName=connections_table, Key=_key(table.POLLER_PK, table.CHECKPOINT_SK))[
            "Item"
        ]
    )


# --- snapshots and quarantine -----------------------------------------------------------------------


def test_snapshots_are_written_in_the_agreed_format_and_read_back(
    dynamodb: Any, connections_table: str, poller_store: DynamoPollerStore
) -> None:
    entries = [validate_entry(raw) for raw in guide_entries(120)]
    counter = RequestCounter(dynamodb)
    poller_store.write_changes([SnapshotWrite(entry, 3) for entry in entries], [], T0)
    assert counter.calls["BatchWriteItem"] == -(-120 // BATCH_WRITE_LIMIT)
    ids = [entry.entry_id for entry in entries]
    found = poller_store.read_snapshots([*ids, ids[0], "never-seen"])
    assert found == {e.entry_id: StoredState(e.content_hash, 3, e.last_interaction) for e in entries}
    gets = [params for name, params in counter.params if name == "BatchGetItem"]
    assert len(gets) == -(-121 // BATCH_GET_LIMIT)
    for params in gets:
        request = params["RequestItems"][connections_table]
        assert request["ConsistentRead"] is True
        assert len(request["Keys"]) <= BATCH_GET_LIMIT
        assert set(request["ExpressionAttributeNames"].values()) == {
            table.PK,
            table.CONN_CONTENT_HASH,
            table.CONN_SEQUENCE,
            table.CONN_LAST_INTERACTION,
        }
    first = entries[0]
    item = dynamodb.get_item(
        TableName=connections_table, Key=_key(*table.connection_key(first.entry_id).values())
    )["Item"]
    stored_entry = item.pop(table.CONN_ENTRY)["B"]
    assert decode_stored_entry(stored_entry) == json.loads(first.canonical_json)
    assert item == {
        table.PK: {"S": f"CONN#{first.entry_id}"},
        table.SK: {"S": "STATE"},
        table.ITEM_TYPE: {"S": "connection"},
        table.CONN_CONTENT_HASH: {"S": first.content_hash},
        table.CONN_SEQUENCE: {"N": "3"},
        table.CONN_LAST_INTERACTION: {"S": first.last_interaction_text},
        table.CONN_REF_ID: {"S": first.ref_id},
        table.CONN_WRITTEN_AT: {"S": "2025-01-10T12:00:00Z"},
    }
    assert poller_store.stats.items_written == 120


def test_a_malformed_entry_is_quarantined_with_its_reason_and_a_ttl(
    dynamodb: Any, connections_table: str, poller_store: DynamoPollerStore
) -> None:
    broken = guide_entry("broken")
    broken["utility_connections"] = "oops"
    checked = validate_page([broken, 17], T0)
    poller_store.write_changes([], checked.quarantined, T0)
    items = {item[table.PK]["S"]: item for item in scan_items(dynamodb, connections_table)}
    named = items[table.QUARANTINE_PREFIX + broken["id"]]
    assert named[table.SK] == {"S": "2025-01-10T12:00:00Z"}
    assert named["reason"] == {"S": "utility_connections is str, not a list"}
    assert json.loads(named["raw_entry"]["S"]) == broken
    assert named["entry_id"] == {"S": broken["id"]}
    assert named[table.TTL_ATTRIBUTE] == {"N": str(int((T0 + QUARANTINE_RETENTION).timestamp()))}
    [anonymous] = [pk for pk in items if pk.startswith(table.QUARANTINE_PREFIX + "sha256:")]
    assert items[anonymous]["raw_entry"] == {"S": "17"}


def test_the_entry_id_limit_is_dynamodbs_own(
    dynamodb: Any, connections_table: str, poller_store: DynamoPollerStore
) -> None:
    """An id at the limit is stored under the longest prefix; one byte more is what the table refuses."""
    at_limit = "参" * (table.MAX_ENTRY_ID_BYTES // 3) + "x" * (table.MAX_ENTRY_ID_BYTES % 3)
    raw = {**guide_entry(), "id": at_limit}
    entry = validate_entry(raw)
    [record] = validate_page([{**raw, "connection_status": None}], T0).quarantined
    assert record.key == at_limit  # usable as a key: it fits QUARANTINE#, the longest prefix
    poller_store.write_changes([SnapshotWrite(entry, 1)], [record], T0)
    stored = {item[table.PK]["S"] for item in scan_items(dynamodb, connections_table)}
    assert stored == {table.CONNECTION_PREFIX + at_limit, table.QUARANTINE_PREFIX + at_limit}

    one_byte_over = {"S": table.QUARANTINE_PREFIX + at_limit + "x"}
    with pytest.raises(dynamodb.exceptions.ClientError, match="ValidationException"):
        dynamodb.put_item(TableName=connections_table, Item={table.PK: one_byte_over, table.SK: {"S": "x"}})


class Throttled:
    """Wraps a client: the batch calls leave all but one item (or key) unprocessed ``rounds`` times."""

    def __init__(self, client: Any, table_name: str, rounds: int) -> None:
        self._client, self._table, self.rounds = client, table_name, rounds

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        requests = RequestItems[self._table]
        if self.rounds <= 0 or len(requests) < 2:
            return self._client.batch_write_item(RequestItems=RequestItems)
        self.rounds -= 1
        answer = self._client.batch_write_item(RequestItems={self._table: requests[:1]})
        return {**answer, "UnprocessedItems": {self._table: requests[1:]}}

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        request = RequestItems[self._table]
        if self.rounds <= 0 or len(request["Keys"]) < 2:
            return self._client.batch_get_item(RequestItems=RequestItems)
        self.rounds -= 1
        answer = self._client.batch_get_item(
            RequestItems={self._table: {**request, "Keys": request["Keys"][:1]}}
        )
        return {**answer, "UnprocessedKeys": {self._table: {**request, "Keys": request["Keys"][1:]}}}


def test_unprocessed_items_and_keys_are_retried_with_growing_jittered_backoff(
    dynamodb: Any, connections_table: str
) -> None:
    sleeps = RecordedSleeps()
    store = DynamoPollerStore(
        Throttled(dynamodb, connections_table, rounds=3), connections_table, sleep=sleeps, draw=lambda: 0.5
    )
    entries = [validate_entry(raw) for raw in guide_entries(20)]
    store.write_changes([SnapshotWrite(entry, 1) for entry in entries], [], T0)
    assert len(stored_connections(dynamodb, connections_table)) == 20
    policy = BatchRetryPolicy()
    assert sleeps == [0.5 * policy.base_seconds * 2**attempt for attempt in (1, 2, 3)]
    assert store.stats.unprocessed_retries == 3
    store._client.rounds = 2  # type: ignore[attr-defined]
    assert len(store.read_snapshots([entry.entry_id for entry in entries])) == 20
    assert store.stats.unprocessed_retries == 5


def test_items_still_unprocessed_after_every_retry_raise(dynamodb: Any, connections_table: str) -> None:
    policy = BatchRetryPolicy(max_attempts=3)
    store = DynamoPollerStore(
        Throttled(dynamodb, connections_table, rounds=99),
        connections_table,
        retry=policy,
        sleep=RecordedSleeps(),
    )
    entries = [validate_entry(raw) for raw in guide_entries(5)]
    with pytest.raises(UnprocessedWrites, match="after 3 BatchWriteItem attempts"):
        store.write_changes([SnapshotWrite(entry, 1) for entry in entries], [], T0)
    with pytest.raises(UnprocessedReads, match="after 3 BatchGetItem attempts"):
        store.read_snapshots([entry.entry_id for entry in entries])


# --- item sizes -------------------------------------------------------------------------------------


def test_item_sizes_follow_dynamodbs_rules() -> None:
    assert item_size_bytes({"pk": {"S": "abc"}}) == 5
    assert item_size_bytes({"n": {"N": "123"}}) == 1 + 2 + 1  # 3 significant digits -> 2 bytes, + 1
    assert item_size_bytes({"n": {"N": "1000"}}) == 1 + 1 + 1  # trailing zeros do not count
    assert item_size_bytes({"m": {"M": {"a": {"S": "xy"}}}}) == 1 + 3 + (1 + 2 + 1)
    assert item_size_bytes({"b": {"BOOL": True}, "l": {"L": [{"NULL": True}]}}) == (1 + 1) + (1 + 3 + 2)
    assert write_units({"x": {"S": "a" * 1022}}) == 1
    assert write_units({"x": {"S": "a" * 1024}}) == 2


def test_a_typical_entry_is_one_write_unit() -> None:
    """The guide's one-utility entry: the snapshot item stays under 1 KB (one WCU per change)."""
    item = snapshot_item(SnapshotWrite(validate_entry(guide_entry("Test1012")), 12), T0)
    assert item_size_bytes(item) < 1024
    assert write_units(item) == 1


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {table.PK: {"S": pk}, table.SK: {"S": sk}}
