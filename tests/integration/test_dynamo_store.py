"""The poller's DynamoDB store on moto, with the table created exactly as template.yaml declares it
(the ``dynamodb`` and ``connections_table`` fixtures of tests/integration/conftest.py): snapshots and
their history, the lease, the checkpoint, quarantine, the two KEYS_ONLY indexes and the funnel count.

The lease and history tests hold the in-memory store of the run tests (tests/fakes/poller.py) to the
same contract.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from devtools.template_tables import CONNECTIONS_TABLE_ID, resource_properties
from leap_tracker import table
from leap_tracker.adapters.dynamo import (
    BATCH_GET_LIMIT,
    BATCH_WRITE_LIMIT,
    BatchRetryPolicy,
    UnprocessedReads,
    UnprocessedWrites,
)
from leap_tracker.adapters.funnel import count_funnel, funnel_statuses
from leap_tracker.adapters.poller_store import (
    DynamoPollerStore,
    PreviousEntryUnknown,
    history_item,
    item_size_bytes,
    snapshot_item,
    write_units,
)
from leap_tracker.leap import wire
from leap_tracker.leap.api import ConnectQuery
from leap_tracker.leap.connect_model import validate_entry
from leap_tracker.leap.wire import KNOWN_CONNECTION_STATUSES
from leap_tracker.poller.changes import QUARANTINE_RETENTION, decide_page, validate_page
from leap_tracker.poller.ports import (
    Checkpoint,
    LeaseHeld,
    LeaseLost,
    LeaseUse,
    PassKind,
    PassState,
    SnapshotWrite,
    StoredState,
)
from leap_tracker.table import decode_stored_change, decode_stored_entry
from tests.builders import T0, guide_entries, guide_entry
from tests.fakes.dynamodb import RequestCounter, scan_items, stored_connections
from tests.fakes.poller import MemoryStore, StoreRefused


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
    indexes = {index["IndexName"]: index for index in description["GlobalSecondaryIndexes"]}
    assert set(indexes) == {table.DUE_INDEX, table.REF_INDEX, table.FUNNEL_INDEX}
    for name, key in ((table.REF_INDEX, table.CONN_REF_ID), (table.FUNNEL_INDEX, table.CONN_FUNNEL_KEY)):
        assert indexes[name]["KeySchema"] == [{"AttributeName": key, "KeyType": "HASH"}]
        assert indexes[name]["Projection"] == {"ProjectionType": "KEYS_ONLY"}
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


def test_a_refusal_says_what_the_holder_does(any_store: Any) -> None:
    any_store.acquire_lease("run-one-ref", T0, T0 + timedelta(minutes=16), LeaseUse.REF_ID)
    with pytest.raises(LeaseHeld) as held:
        any_store.acquire_lease("run-hourly", T0, T0 + timedelta(minutes=16))
    assert (held.value.owner, held.value.use, held.value.waiting) == ("run-one-ref", LeaseUse.REF_ID, False)
    assert any_store.release_lease("run-one-ref") is True
    any_store.acquire_lease("run-hourly", T0, T0 + timedelta(minutes=16))
    with pytest.raises(LeaseHeld) as held:
        any_store.acquire_lease("run-one-ref", T0, T0 + timedelta(minutes=16), LeaseUse.REF_ID)
    assert (held.value.owner, held.value.use) == ("run-hourly", LeaseUse.PASS)


def test_a_waiting_pass_keeps_ref_id_runs_out_until_it_withdraws_or_gives_up(any_store: Any) -> None:
    any_store.announce_waiting_pass("run-hourly", T0 + timedelta(minutes=3))
    with pytest.raises(LeaseHeld) as held:  # the lease itself is free
        any_store.acquire_lease("run-one-ref", T0, T0 + timedelta(minutes=16), LeaseUse.REF_ID)
    assert (held.value.owner, held.value.waiting) == ("run-hourly", True)
    assert held.value.until == T0 + timedelta(minutes=3)
    assert str(held.value).startswith("a pass (run-hourly) is waiting for the lease until")

    any_store.withdraw_waiting_pass("run-other")  # not its announcement: nothing changes
    with pytest.raises(LeaseHeld):
        any_store.acquire_lease("run-one-ref", T0, T0 + timedelta(minutes=16), LeaseUse.REF_ID)
    # An announcement that ran out (its pass gone) keeps nobody out.
    any_store.acquire_lease(
        "run-one-ref", T0 + timedelta(minutes=4), T0 + timedelta(minutes=20), LeaseUse.REF_ID
    )
    assert any_store.release_lease("run-one-ref") is True

    any_store.announce_waiting_pass("run-hourly", T0 + timedelta(minutes=3))
    any_store.acquire_lease("run-hourly", T0, T0 + timedelta(minutes=16))  # a pass is not kept out
    any_store.withdraw_waiting_pass("run-hourly")
    assert any_store.release_lease("run-hourly") is True
    any_store.acquire_lease("run-one-ref", T0, T0 + timedelta(minutes=16), LeaseUse.REF_ID)


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
        "used_for": {"S": "pass"},
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
        in_order=True,
        listed_through="2025-01-10T11:59:59Z",
        first_query=ConnectQuery(last_interaction_date="2025-01-10T06:00:00Z"),
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
    poller_store.write_changes([SnapshotWrite(entry, 1) for entry in entries], [], T0)
    assert counter.calls["BatchWriteItem"] == 2 * -(-120 // BATCH_WRITE_LIMIT)  # the history, then these
    assert counter.calls["BatchGetItem"] == 0  # new entries: nothing to read for their history
    ids = [entry.entry_id for entry in entries]
    found = poller_store.read_snapshots([*ids, ids[0], "never-seen"])
    assert found == {e.entry_id: StoredState(e.content_hash, 1, e.last_interaction) for e in entries}
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
            table.CONN_ENTRY,  # the next change's previous entry, for its history item
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
        table.CONN_SEQUENCE: {"N": "1"},
        table.CONN_LAST_INTERACTION: {"S": first.last_interaction_text},
        table.CONN_REF_ID: {"S": first.ref_id},
        table.CONN_WRITTEN_AT: {"S": "2025-01-10T12:00:00Z"},
        table.CONN_STATUS: {"S": "PARTIAL"},
        table.CONN_TRANSMISSION_REGION: {"S": "CAISO"},
        table.CONN_FUNNEL_KEY: {"S": table.funnel_key("PARTIAL", first.entry_id, KNOWN_CONNECTION_STATUSES)},
    }
    assert poller_store.stats.items_written == 2 * 120


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
    assert stored == {
        table.CONNECTION_PREFIX + at_limit,
        table.HISTORY_PREFIX + at_limit,
        table.QUARANTINE_PREFIX + at_limit,
    }

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
    assert stored_connections(dynamodb, connections_table) == {}  # the history put failed: no snapshot
    with pytest.raises(UnprocessedReads, match="after 3 BatchGetItem attempts"):
        store.read_snapshots([entry.entry_id for entry in entries])


# --- history: one item per stored change (same contract for the DynamoDB and the in-memory store) ---

Change = tuple[int, dict[str, Any] | None, dict[str, Any]]  # (sequence, previous entry, entry)


@dataclass
class StoreUnderTest:
    store: Any
    history: Callable[[str], list[Change]]  # an entry's stored changes, in sequence order
    refused: type[Exception]  # what the store raises for a change that does not follow the stored one


def dynamo_history(client: Any, table_name: str) -> Callable[[str], list[Change]]:
    def history(entry_id: str) -> list[Change]:
        answer = client.query(
            TableName=table_name,
            KeyConditionExpression="#pk = :pk",
            ExpressionAttributeNames={"#pk": table.PK},
            ExpressionAttributeValues={":pk": {"S": table.HISTORY_PREFIX + entry_id}},
            ConsistentRead=True,
        )
        return [
            (int(item[table.HISTORY_SEQUENCE]["N"]), *decode_stored_change(item[table.HISTORY_CHANGE]["B"]))
            for item in answer["Items"]
        ]

    return history


@pytest.fixture(params=["dynamodb", "memory"])
def historied(request: pytest.FixtureRequest) -> StoreUnderTest:
    if request.param == "memory":
        memory = MemoryStore()

        def history(entry_id: str) -> list[Change]:
            return [
                (c.sequence, json.loads(c.previous) if c.previous else None, json.loads(c.entry))
                for c in memory.history.get(entry_id, [])
            ]

        return StoreUnderTest(memory, history, StoreRefused)
    client = request.getfixturevalue("dynamodb")
    name = request.getfixturevalue("connections_table")
    return StoreUnderTest(
        request.getfixturevalue("poller_store"), dynamo_history(client, name), PreviousEntryUnknown
    )


def store_page(store: Any, raws: Sequence[Any], now: datetime) -> list[SnapshotWrite]:
    """One page as the run stores it: validate, read the stored state, decide, write; the writes."""
    checked = validate_page(raws, now)
    changes = decide_page(checked.valid, store.read_snapshots([e.entry_id for e in checked.valid]))
    if changes.writes or checked.quarantined:
        store.write_changes(changes.writes, checked.quarantined, now)
    return changes.writes


def later(raw: dict[str, Any], hours: int, **changes: Any) -> dict[str, Any]:
    """``raw`` as Leap sends it ``hours`` later (a newer last interaction), with ``changes``."""
    moved = guide_entry(raw[wire.ENTRY_REF_ID], last=T0 - timedelta(hours=2) + timedelta(hours=hours))
    return {**moved, **changes}


def test_every_stored_change_has_its_history_item_with_the_exact_previous_entry(
    historied: StoreUnderTest,
) -> None:
    first = guide_entry("ref-h")
    second = later(first, 1, connection_status=wire.CONNECTION_COMPLETED)
    third = later(first, 2, connection_status=wire.CONNECTION_ERROR, transmission_region=None)
    other = guide_entry("ref-other")
    store_page(historied.store, [first, other], T0)
    store_page(historied.store, [second, other], T0 + timedelta(hours=1))  # other: unchanged, no history
    store_page(historied.store, [second], T0 + timedelta(hours=2))  # unchanged: no history
    store_page(historied.store, [third], T0 + timedelta(hours=3))
    entry_id = first[wire.ENTRY_ID]
    assert historied.history(entry_id) == [(1, None, first), (2, first, second), (3, second, third)]
    assert historied.history(other[wire.ENTRY_ID]) == [(1, None, other)]


def test_a_change_that_does_not_follow_the_stored_sequence_is_refused_and_nothing_is_written(
    historied: StoreUnderTest,
) -> None:
    first = guide_entry("ref-h")
    store_page(historied.store, [first], T0)
    entry_id = first[wire.ENTRY_ID]
    stored = historied.store.read_snapshots([entry_id])
    skipping = SnapshotWrite(validate_entry(later(first, 1, connection_status="COMPLETED")), 3)
    new = SnapshotWrite(validate_entry(guide_entry("ref-new")), 1)
    with pytest.raises(historied.refused):
        historied.store.write_changes([new, skipping], [], T0)
    with pytest.raises(historied.refused):  # a second change of an entry never stored
        historied.store.write_changes([SnapshotWrite(validate_entry(guide_entry("ref-x")), 2)], [], T0)
    assert historied.history(entry_id) == [(1, None, first)]
    assert historied.history(new.entry.entry_id) == []
    assert historied.store.read_snapshots([entry_id, new.entry.entry_id]) == stored


def test_a_previous_entry_this_page_did_not_read_is_read_again_not_guessed(
    dynamodb: Any, connections_table: str, poller_store: DynamoPollerStore
) -> None:
    first = guide_entry("ref-h")
    second = later(first, 1, connection_status=wire.CONNECTION_COMPLETED)
    third = later(first, 2, connection_status=wire.CONNECTION_ERROR)
    store_page(poller_store, [first], T0)
    fresh = DynamoPollerStore(dynamodb, connections_table)  # another cold start: it read nothing
    counter = RequestCounter(dynamodb)
    fresh.write_changes([SnapshotWrite(validate_entry(second), 2)], [], T0)
    assert (counter.calls["BatchGetItem"], fresh.stats.previous_reads) == (1, 1)
    fresh.read_snapshots([first[wire.ENTRY_ID]])
    fresh.write_changes([SnapshotWrite(validate_entry(third), 3)], [], T0)  # the page read it: no re-read
    assert (counter.calls["BatchGetItem"], fresh.stats.previous_reads) == (2, 1)
    history = dynamo_history(dynamodb, connections_table)(first[wire.ENTRY_ID])
    assert history == [(1, None, first), (2, first, second), (3, second, third)]


def test_the_history_item_format(
    dynamodb: Any, connections_table: str, poller_store: DynamoPollerStore
) -> None:
    first = guide_entry("ref-h")
    second = later(first, 1, connection_status=wire.CONNECTION_COMPLETED)
    store_page(poller_store, [first], T0)
    store_page(poller_store, [second], T0 + timedelta(hours=1))
    entry = validate_entry(second)
    item = dynamodb.get_item(
        TableName=connections_table, Key=_key(*table.history_key(entry.entry_id, 2).values())
    )["Item"]
    change = item.pop(table.HISTORY_CHANGE)["B"]
    assert decode_stored_change(change) == (first, second)
    assert item == {
        table.PK: {"S": f"HISTORY#{entry.entry_id}"},
        table.SK: {"S": "000000000002"},
        table.ITEM_TYPE: {"S": "connection_change"},
        table.HISTORY_SEQUENCE: {"N": "2"},
        table.HISTORY_WRITTEN_AT: {"S": "2025-01-10T13:00:00Z"},
        table.HISTORY_STATUS: {"S": "COMPLETED"},
        table.TTL_ATTRIBUTE: {"N": str(int((T0 + timedelta(hours=1, days=35)).timestamp()))},
    }  # no ref_id: a change must not enter ref-index
    short = DynamoPollerStore(dynamodb, connections_table, history_retention_days=2)
    third = later(first, 2, connection_status=wire.CONNECTION_ERROR)
    store_page(short, [third], T0)
    expires = dynamodb.get_item(
        TableName=connections_table, Key=_key(*table.history_key(entry.entry_id, 3).values())
    )["Item"][table.TTL_ATTRIBUTE]
    assert expires == {"N": str(int((T0 + timedelta(days=2)).timestamp()))}


class RefusesHistory:
    """Wraps a client: BatchWriteItem calls that carry history items fail after ``allowed`` of them."""

    def __init__(self, client: Any, allowed: int = 0) -> None:
        self._client, self.allowed = client, allowed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        pks = [r["PutRequest"]["Item"][table.PK]["S"] for rs in RequestItems.values() for r in rs]
        if any(pk.startswith(table.HISTORY_PREFIX) for pk in pks):
            if self.allowed <= 0:
                error = {"Error": {"Code": "InternalServerError", "Message": "refused"}}
                raise ClientError(error, "BatchWriteItem")
            self.allowed -= 1
        return self._client.batch_write_item(RequestItems=RequestItems)


def test_a_failed_history_put_writes_no_snapshot_and_the_replay_writes_each_change_once(
    dynamodb: Any, connections_table: str
) -> None:
    raws: list[Any] = [*guide_entries(30), {**guide_entry("broken"), "utility_connections": "oops"}]
    refusing = DynamoPollerStore(RefusesHistory(dynamodb, allowed=1), connections_table)
    with pytest.raises(ClientError, match="refused"):  # the first 25 history items went in, not the rest
        store_page(refusing, raws, T0)
    items = scan_items(dynamodb, connections_table)
    assert {item[table.PK]["S"].split("#")[0] + "#" for item in items} == {table.HISTORY_PREFIX}
    assert len(items) == BATCH_WRITE_LIMIT

    replay = DynamoPollerStore(dynamodb, connections_table)
    assert len(store_page(replay, raws, T0)) == 30
    items = scan_items(dynamodb, connections_table)
    kinds = Counter(item[table.PK]["S"].split("#")[0] + "#" for item in items)
    assert kinds == {table.HISTORY_PREFIX: 30, table.CONNECTION_PREFIX: 30, table.QUARANTINE_PREFIX: 1}
    assert {item[table.SK]["S"] for item in items if item[table.PK]["S"].startswith("HISTORY#")} == {
        "000000000001"
    }


# --- readable snapshots and the two KEYS_ONLY indexes ------------------------------------------------


def test_a_snapshot_carries_its_status_region_and_funnel_key_in_plain_text() -> None:
    completed = validate_entry(guide_entry("ref-a", status=wire.CONNECTION_COMPLETED))
    item = snapshot_item(SnapshotWrite(completed, 1), T0)
    assert item[table.CONN_STATUS] == {"S": "COMPLETED"}
    assert item[table.CONN_TRANSMISSION_REGION] == {"S": "CAISO"}
    shard = item[table.CONN_FUNNEL_KEY]["S"].removeprefix("COMPLETED#")
    assert 0 <= int(shard) < table.FUNNEL_SHARDS
    unknown = validate_entry(
        {**guide_entry("ref-b"), "connection_status": "WAITLISTED", "transmission_region": None}
    )
    item = snapshot_item(SnapshotWrite(unknown, 1), T0)
    assert item[table.CONN_STATUS] == {"S": "WAITLISTED"}  # as Leap sent it
    assert item[table.CONN_FUNNEL_KEY]["S"].startswith("OTHER#")  # counted apart, never lost
    assert table.CONN_TRANSMISSION_REGION not in item  # Leap gave none
    known = snapshot_item(SnapshotWrite(unknown, 1), T0, frozenset({"WAITLISTED"}))
    assert known[table.CONN_FUNNEL_KEY]["S"].startswith("WAITLISTED#")


def test_ref_index_finds_the_snapshot_and_only_the_snapshot(
    dynamodb: Any, connections_table: str, poller_store: DynamoPollerStore
) -> None:
    first = guide_entry("ref-h")
    store_page(poller_store, [first, guide_entry("ref-other")], T0)
    store_page(poller_store, [later(first, 1, connection_status="COMPLETED")], T0 + timedelta(hours=1))
    answer = dynamodb.query(
        TableName=connections_table,
        IndexName=table.REF_INDEX,
        KeyConditionExpression="#ref = :ref",
        ExpressionAttributeNames={"#ref": table.CONN_REF_ID},
        ExpressionAttributeValues={":ref": {"S": "ref-h"}},
    )
    assert [(i[table.PK]["S"], i[table.SK]["S"]) for i in answer["Items"]] == [
        (table.CONNECTION_PREFIX + first[wire.ENTRY_ID], table.CONNECTION_SK)
    ]  # two history items exist for it: they carry no ref_id


class Paged:
    """Wraps a client: every Query reads at most ``limit`` items, so counts span pages."""

    def __init__(self, client: Any, limit: int) -> None:
        self._client, self._limit, self.pages = client, limit, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def query(self, **request: Any) -> dict[str, Any]:
        self.pages += 1
        return self._client.query(**request, Limit=self._limit)


FUNNEL_POPULATION = {
    "COMPLETED": 40,
    "PARTIAL": 30,
    "NOT_STARTED": 20,
    "ERROR": 7,
    "WAITLISTED": 2,
    "NEW_ONE": 1,
}


def test_the_funnel_count_is_exact_per_status_over_every_shard_with_unknown_statuses_as_other(
    dynamodb: Any, connections_table: str, poller_store: DynamoPollerStore
) -> None:
    assert count_funnel(dynamodb, connections_table) == dict.fromkeys(funnel_statuses(), 0)
    statuses = [status for status, n in FUNNEL_POPULATION.items() for _ in range(n)]
    raws = [guide_entry(f"ref-{n:03d}", status=status) for n, status in enumerate(statuses)]
    store_page(poller_store, raws, T0)
    expected = {"COMPLETED": 40, "ERROR": 7, "NOT_STARTED": 20, "PARTIAL": 30, "OTHER": 3}
    assert count_funnel(dynamodb, connections_table) == expected
    keys = {
        item[table.CONN_FUNNEL_KEY]["S"] for item in stored_connections(dynamodb, connections_table).values()
    }
    assert {key.rsplit("#", 1)[1] for key in keys} == {str(shard) for shard in range(table.FUNNEL_SHARDS)}

    moved = [later(raw, 1, connection_status="ERROR") for raw in raws[:10]]  # COMPLETED -> ERROR
    store_page(poller_store, moved, T0 + timedelta(hours=1))
    paged = Paged(dynamodb, limit=2)
    moved_counts = count_funnel(paged, connections_table)
    assert moved_counts == {**expected, "COMPLETED": 30, "ERROR": 17}
    queried = len(funnel_statuses()) * table.FUNNEL_SHARDS
    assert paged.pages > queried  # some partitions took several pages, and every page was counted


def test_a_refused_funnel_query_raises(dynamodb: Any, connections_table: str) -> None:
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        count_funnel(dynamodb, "no-such-table")


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


def test_a_typical_change_is_one_write_unit_of_history_too() -> None:
    """The previous and the new entry share most of their text: compressed together they stay < 1 KB."""
    previous = validate_entry(guide_entry("Test1012"))
    changed = validate_entry(later(guide_entry("Test1012"), 1, connection_status=wire.CONNECTION_COMPLETED))
    item = history_item(SnapshotWrite(changed, 13), previous.canonical_json, T0, T0 + timedelta(days=35))
    assert item_size_bytes(item) < 1024
    assert write_units(item) == 1


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {table.PK: {"S": pk}, table.SK: {"S": sk}}
