"""The webhook processor's stores on moto, with the table as template.yaml declares it, and the
in-memory fakes of tests/fakes/webhooks.py held to the same contract (each test runs on both):
processed deliveries (the duplicate check, bodies kept compressed), remembered meters, and the open
watches of a Reference ID found through ref-index (a Query)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leap_tracker import table
from leap_tracker.adapters.dynamo import deserialize
from leap_tracker.adapters.poller_store import snapshot_item
from leap_tracker.adapters.remembered_meters import DynamoRememberedMeters
from leap_tracker.adapters.watch_store import DynamoWatchStore
from leap_tracker.adapters.webhook_ledger import DynamoProcessedWebhooks
from leap_tracker.config import MeterWatchSettings
from leap_tracker.leap import wire
from leap_tracker.leap.connect_model import validate_entry
from leap_tracker.meters import schedule
from leap_tracker.meters.model import MeterSummary, MeterWatch
from leap_tracker.poller.ports import SnapshotWrite
from leap_tracker.webhooks.ports import ProcessedWebhook
from tests.builders import guide_entry
from tests.fakes.dynamodb import RequestCounter, scan_items
from tests.fakes.webhooks import MemoryProcessedWebhooks, MemoryRememberedMeters, MemoryWatches

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
EVENT_ID = "0b6f8a52-6f7e-4a43-9d59-3d5f0c6a1e11"
BODY = (
    '{"webhook_event_id":"0b6f8a52-6f7e-4a43-9d59-3d5f0c6a1e11","payload":{"webhook_event_type":"x.y","é":1}}'
)


@dataclass
class Stores:
    """One backend's stores, and how a test puts a connection snapshot beside them."""

    kind: str
    ledger: Any
    remembered: Any
    watches: Any
    add_snapshot: Callable[[dict[str, Any]], str]  # a raw entry -> the entry id of its new snapshot


@pytest.fixture(params=["dynamodb", "memory"])
def stores(request: pytest.FixtureRequest) -> Stores:
    if request.param == "memory":
        memory = MemoryWatches()

        def add_memory_snapshot(raw: dict[str, Any]) -> str:
            entry = validate_entry(raw)
            memory.connections[entry.entry_id] = raw[wire.ENTRY_REF_ID]
            return entry.entry_id

        return Stores(
            "memory", MemoryProcessedWebhooks(), MemoryRememberedMeters(), memory, add_memory_snapshot
        )
    dynamodb = request.getfixturevalue("dynamodb")
    name = request.getfixturevalue("connections_table")

    def add_snapshot(raw: dict[str, Any]) -> str:
        entry = validate_entry(raw)
        dynamodb.put_item(TableName=name, Item=snapshot_item(SnapshotWrite(entry, 1), T0))
        return entry.entry_id

    return Stores(
        "dynamodb",
        DynamoProcessedWebhooks(dynamodb, name),
        DynamoRememberedMeters(dynamodb, name),
        DynamoWatchStore(dynamodb, name),
        add_snapshot,
    )


def processed(body: str | None = BODY, **changes: Any) -> ProcessedWebhook:
    record = ProcessedWebhook(
        event_id=EVENT_ID,
        event_type="x.y",
        received_at=T0,
        processed_at=T0 + timedelta(seconds=2),
        outcome="unknown_type",
        expires_at=T0 + timedelta(days=30),
        body=body,
    )
    return replace(record, **changes)


def a_watch(entry_id: str, ref_id: str) -> MeterWatch:
    return schedule.new_watch(
        entry_id=entry_id,
        ref_id=ref_id,
        transmission_region="CAISO",
        completed_at=T0,
        sequence=2,
        now=T0,
        settings=MeterWatchSettings(),
    )


# --- processed deliveries -------------------------------------------------------------------------


def test_a_delivery_is_recorded_once_and_read_back_whole(stores: Stores) -> None:
    assert stores.ledger.get(EVENT_ID) is None

    assert stores.ledger.record(processed()) is True
    assert stores.ledger.record(processed(outcome="kept", body=None)) is False  # the first one stays

    assert stores.ledger.get(EVENT_ID) == processed()
    assert stores.ledger.get("0b6f8a52-6f7e-4a43-9d59-3d5f0c6a1e99") is None


def test_a_record_without_a_body_keeps_none(stores: Stores) -> None:
    stores.ledger.record(processed(body=None, event_type=wire.WEBHOOK_METER_CREATED))
    assert stores.ledger.get(EVENT_ID) == processed(body=None, event_type=wire.WEBHOOK_METER_CREATED)


def test_the_record_item_keeps_the_body_compressed_with_a_ttl_and_stays_out_of_ref_index(
    dynamodb: Any, connections_table: str
) -> None:
    DynamoProcessedWebhooks(dynamodb, connections_table).record(processed())
    (item,) = [deserialize(raw) for raw in scan_items(dynamodb, connections_table)]
    assert (item[table.PK], item[table.SK]) == (table.WEBHOOK_PREFIX + EVENT_ID, table.WEBHOOK_SK)
    assert item[table.ITEM_TYPE] == table.WEBHOOK_ITEM_TYPE
    assert table.decode_stored_body(item[table.WEBHOOK_BODY]) == BODY
    assert int(item[table.TTL_ATTRIBUTE]) == int((T0 + timedelta(days=30)).timestamp())
    assert table.CONN_REF_ID not in item
    assert table.DUE_BUCKET_ATTRIBUTE not in item


# --- remembered meters ----------------------------------------------------------------------------

METERS = [
    MeterSummary("m-2", "PGE", datetime(2025, 3, 1, 11, 30, tzinfo=UTC)),
    MeterSummary("m-1", None, None),
]


def test_remembered_meters_come_back_by_reference_in_meter_id_order(stores: Stores) -> None:
    assert stores.remembered.recall("customer-0001") == []
    stores.remembered.remember("customer-0001", METERS, T0, T0 + timedelta(days=30))
    stores.remembered.remember(
        "customer-0002", [MeterSummary("m-9", "SCE", None)], T0, T0 + timedelta(days=30)
    )

    assert stores.remembered.recall("customer-0001") == [METERS[1], METERS[0]]


def test_remembering_a_meter_again_keeps_one(stores: Stores) -> None:
    for _ in range(2):
        stores.remembered.remember("customer-0001", [METERS[0], METERS[0]], T0, T0 + timedelta(days=30))
    assert stores.remembered.recall("customer-0001") == [METERS[0]]


def test_remembered_meter_items_have_a_ttl_and_stay_out_of_ref_index(
    dynamodb: Any, connections_table: str
) -> None:
    counter = RequestCounter(dynamodb)
    DynamoRememberedMeters(dynamodb, connections_table).remember(
        "customer-0001", METERS, T0, T0 + timedelta(days=3)
    )
    items = {item[table.SK]: item for item in map(deserialize, scan_items(dynamodb, connections_table))}
    assert counter.calls["BatchWriteItem"] == 1  # a Reference ID's meters in one call
    assert set(items) == {"m-1", "m-2"}
    for item in items.values():
        assert item[table.PK] == table.remembered_meters_pk("customer-0001")
        assert int(item[table.TTL_ATTRIBUTE]) == int((T0 + timedelta(days=3)).timestamp())
        assert table.CONN_REF_ID not in item
    assert table.REMEMBERED_UTILITY_NAME not in items["m-1"]
    assert table.REMEMBERED_CREATED_AT not in items["m-1"]


# --- the open watches of a Reference ID -----------------------------------------------------------


def test_the_open_watches_of_a_reference_are_those_whose_snapshot_exists(stores: Stores) -> None:
    first = stores.add_snapshot(guide_entry("customer-0001"))
    other = stores.add_snapshot(guide_entry("customer-0002"))
    closed_entry = stores.add_snapshot(guide_entry("customer-0003"))
    assert stores.watches.open_watches_of_ref("customer-0001") == []  # a snapshot, no watch yet

    for entry_id, ref_id in (
        (first, "customer-0001"),
        (other, "customer-0002"),
        (closed_entry, "customer-0003"),
    ):
        assert stores.watches.create(a_watch(entry_id, ref_id))
    orphan = a_watch("CAISO_gone_customer-0001", "customer-0001")  # its snapshot was deleted
    assert stores.watches.create(orphan)
    closed = a_watch(closed_entry, "customer-0003")
    assert stores.watches.replace(closed, schedule.close_gone(closed, T0))

    assert stores.watches.open_watches_of_ref("customer-0001") == [a_watch(first, "customer-0001")]
    assert stores.watches.open_watches_of_ref("customer-0003") == []
    assert stores.watches.open_watches_of_ref("customer-0404") == []


def test_a_reference_with_several_entries_lists_each_open_watch(stores: Stores) -> None:
    entries = []
    for region in ("CAISO", "ERCOT"):
        entry_id = stores.add_snapshot(
            {**guide_entry("customer-0001", region=region), "id": f"{region}_x_customer-0001"}
        )
        stores.watches.create(a_watch(entry_id, "customer-0001"))
        entries.append(entry_id)

    assert [w.entry_id for w in stores.watches.open_watches_of_ref("customer-0001")] == sorted(entries)


def test_the_lookup_is_a_query_of_ref_index_never_a_scan(dynamodb: Any, connections_table: str) -> None:
    store = DynamoWatchStore(dynamodb, connections_table)
    entry = validate_entry(guide_entry("customer-0001"))
    dynamodb.put_item(TableName=connections_table, Item=snapshot_item(SnapshotWrite(entry, 1), T0))
    store.create(a_watch(entry.entry_id, "customer-0001"))
    counter = RequestCounter(dynamodb)

    store.open_watches_of_ref("customer-0001")

    assert set(counter.calls) == {"Query", "GetItem"}
    ((_, query),) = [(name, params) for name, params in counter.params if name == "Query"]
    assert query["IndexName"] == table.REF_INDEX
    ((_, get),) = [(name, params) for name, params in counter.params if name == "GetItem"]
    assert get["ConsistentRead"] is True
