"""The poller's DynamoDB store: connection snapshots, the checkpoint, the lease and quarantined entries.

All in the one table (key design in ``leap_tracker.table``), through the low-level client: items are
built as AttributeValue dicts by hand, which is both the cheapest in CPU and explicit about sizes.
Snapshots are read with BatchGetItem (100 keys a call, strongly consistent, projected to what change
detection needs) and written with BatchWriteItem (25 a call), through ``adapters.dynamo``: unprocessed
keys and items are retried with capped exponential backoff and full jitter; writes still unprocessed
after that raise, so the caller does not checkpoint the page.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Unpack

from botocore.exceptions import ClientError

from leap_tracker import table
from leap_tracker.adapters.dynamo import (
    BatchStats,
    BatchTiming,
    TableBatches,
    is_condition_failed,
    optional_instant,
    string_key,
)
from leap_tracker.leap.api import ConnectQuery
from leap_tracker.poller.ports import (
    Checkpoint,
    LeaseHeld,
    LeaseLost,
    PassKind,
    PassState,
    QuarantineRecord,
    SnapshotWrite,
    StoredState,
)
from leap_tracker.table import encode_stored_entry
from leap_tracker.timeutil import format_instant, parse_instant

WRITE_UNIT_BYTES = 1024

CHECKPOINT_ITEM_TYPE = "poller_checkpoint"
LEASE_ITEM_TYPE = "poller_lease"
QUARANTINE_ITEM_TYPE = "quarantine"

# Checkpoint attributes
CP_WATERMARK = "watermark"
CP_LAST_FULL_STARTED_AT = "last_full_started_at"
CP_LAST_FULL_COMPLETED_AT = "last_full_completed_at"
CP_LAST_PASS_COMPLETED_AT = "last_pass_completed_at"
CP_PASS = "pass"  # map, present while a pass is unfinished
CP_UPDATED_AT = "updated_at"
CP_UPDATED_BY = "updated_by"
PASS_KIND = "kind"
PASS_QUERY = "query"  # map of the ConnectQuery field that is set
PASS_STARTED_AT = "started_at"
PASS_PAGE_TOKEN = "page_token"
PASS_PAGES_DONE = "pages_done"
PASS_MAX_LAST_INTERACTION = "max_last_interaction"
PASS_RESTARTS = "restarts"
QUERY_FIELDS = ("ref_id", "start_date", "last_interaction_date")

# Lease attributes
LEASE_OWNER = "owner"
LEASE_EXPIRES_MS = "lease_expires_ms"  # epoch milliseconds: compared in the condition expressions
LEASE_EXPIRES_AT = "lease_expires_at"  # the same instant, for people
LEASE_ACQUIRED_AT = "acquired_at"

# Quarantine attributes
Q_REASON = "reason"
Q_RAW_ENTRY = "raw_entry"
Q_RECEIVED_AT = "received_at"
Q_ENTRY_ID = "entry_id"

# What change detection reads of a stored snapshot.
SNAPSHOT_STATE_ATTRIBUTES = (
    table.PK,
    table.CONN_CONTENT_HASH,
    table.CONN_SEQUENCE,
    table.CONN_LAST_INTERACTION,
)


@dataclass(slots=True)
class StoreStats(BatchStats):
    write_units: int = 0  # estimated from item sizes (1 per started KB per item), snapshots + quarantine


class DynamoPollerStore:
    """Implements ``poller_ports.PollerStore`` on the connections table."""

    def __init__(self, client: Any, table_name: str, **timing: Unpack[BatchTiming]) -> None:
        self._client = client
        self._table = table_name
        self.stats = StoreStats()
        self._batches = TableBatches(client, table_name, stats=self.stats, **timing)

    # --- lease ----------------------------------------------------------------------------------

    def acquire_lease(self, owner: str, now: datetime, until: datetime) -> None:
        item = {
            **_poller_key(table.LEASE_SK),
            table.ITEM_TYPE: _s(LEASE_ITEM_TYPE),
            LEASE_OWNER: _s(owner),
            LEASE_EXPIRES_MS: _n(_epoch_ms(until)),
            LEASE_EXPIRES_AT: _s(format_instant(until)),
            LEASE_ACQUIRED_AT: _s(format_instant(now)),
        }
        try:
            self._client.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(#pk) OR #expires < :now",
                ExpressionAttributeNames={"#pk": table.PK, "#expires": LEASE_EXPIRES_MS},
                ExpressionAttributeValues={":now": _n(_epoch_ms(now))},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not is_condition_failed(error):
                raise
            holder, until_held = _lease_holder(error)
            raise LeaseHeld(holder, until_held) from None

    def renew_lease(self, owner: str, until: datetime) -> None:
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_poller_key(table.LEASE_SK),
                UpdateExpression="SET #expires = :until, #expires_at = :until_at",
                ConditionExpression="#owner = :me",
                ExpressionAttributeNames={
                    "#expires": LEASE_EXPIRES_MS,
                    "#expires_at": LEASE_EXPIRES_AT,
                    "#owner": LEASE_OWNER,
                },
                ExpressionAttributeValues={
                    ":until": _n(_epoch_ms(until)),
                    ":until_at": _s(format_instant(until)),
                    ":me": _s(owner),
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not is_condition_failed(error):
                raise
            holder, _ = _lease_holder(error)
            raise LeaseLost(f"run {owner} lost the poller lease; it is now held by {holder}") from None

    def release_lease(self, owner: str) -> bool:
        try:
            self._client.delete_item(
                TableName=self._table,
                Key=_poller_key(table.LEASE_SK),
                ConditionExpression="#owner = :me",
                ExpressionAttributeNames={"#owner": LEASE_OWNER},
                ExpressionAttributeValues={":me": _s(owner)},
            )
        except ClientError as error:
            if not is_condition_failed(error):
                raise
            return False
        return True

    # --- checkpoint -----------------------------------------------------------------------------

    def load_checkpoint(self) -> Checkpoint:
        answer = self._client.get_item(
            TableName=self._table, Key=_poller_key(table.CHECKPOINT_SK), ConsistentRead=True
        )
        item = answer.get("Item")
        return checkpoint_from_item(item) if item else Checkpoint()

    def save_checkpoint(self, checkpoint: Checkpoint, owner: str, now: datetime) -> None:
        # Not conditional: the lease, renewed just before this page's writes, fences every write.
        self._client.put_item(TableName=self._table, Item=checkpoint_item(checkpoint, owner, now))

    # --- snapshots and quarantine ---------------------------------------------------------------

    def read_snapshots(self, entry_ids: Sequence[str]) -> dict[str, StoredState]:
        keys = [_connection_key(entry_id) for entry_id in dict.fromkeys(entry_ids)]  # no repeated keys
        items = self._batches.get(keys, projection=SNAPSHOT_STATE_ATTRIBUTES, consistent=True)
        return {table.entry_id_from_pk(item[table.PK]["S"]): stored_state_from_item(item) for item in items}

    def write_changes(
        self, snapshots: Sequence[SnapshotWrite], quarantined: Sequence[QuarantineRecord], now: datetime
    ) -> None:
        items = [snapshot_item(write, now) for write in snapshots]
        items += [quarantine_item(record) for record in quarantined]
        self.stats.write_units += sum(write_units(item) for item in items)
        self._batches.put(items)


# --- item formats (module functions: the tests and the bench read them too) ---------------------


def snapshot_item(write: SnapshotWrite, now: datetime) -> dict[str, Any]:
    entry = write.entry
    return {
        **_connection_key(entry.entry_id),
        table.ITEM_TYPE: _s(table.CONNECTION_ITEM_TYPE),
        table.CONN_ENTRY: {"B": encode_stored_entry(entry.canonical_json)},
        table.CONN_CONTENT_HASH: _s(entry.content_hash),
        table.CONN_SEQUENCE: _n(write.sequence),
        table.CONN_LAST_INTERACTION: _s(entry.last_interaction_text),
        table.CONN_REF_ID: _s(entry.ref_id),
        table.CONN_WRITTEN_AT: _s(format_instant(now)),
    }


def stored_state_from_item(item: Mapping[str, Any]) -> StoredState:
    last = item.get(table.CONN_LAST_INTERACTION, {}).get("S")
    try:
        last_interaction = parse_instant(last) if last else None
    except ValueError:
        last_interaction = None  # unreadable: never block a newer entry on it
    return StoredState(
        content_hash=item.get(table.CONN_CONTENT_HASH, {}).get("S", ""),
        sequence=int(item.get(table.CONN_SEQUENCE, {}).get("N", "0")),
        last_interaction=last_interaction,
    )


def quarantine_item(record: QuarantineRecord) -> dict[str, Any]:
    item = {
        table.PK: _s(table.QUARANTINE_PREFIX + record.key),
        table.SK: _s(format_instant(record.received_at)),
        table.ITEM_TYPE: _s(QUARANTINE_ITEM_TYPE),
        Q_REASON: _s(record.reason),
        Q_RAW_ENTRY: _s(record.raw_json),
        Q_RECEIVED_AT: _s(format_instant(record.received_at)),
        table.TTL_ATTRIBUTE: _n(int(record.expires_at.timestamp())),
    }
    if record.entry_id:
        item[Q_ENTRY_ID] = _s(record.entry_id)
    return item


def checkpoint_item(checkpoint: Checkpoint, owner: str, now: datetime) -> dict[str, Any]:
    item: dict[str, Any] = {
        **_poller_key(table.CHECKPOINT_SK),
        table.ITEM_TYPE: _s(CHECKPOINT_ITEM_TYPE),
        CP_UPDATED_AT: _s(format_instant(now)),
        CP_UPDATED_BY: _s(owner),
    }
    for name, value in (
        (CP_WATERMARK, checkpoint.watermark),
        (CP_LAST_FULL_STARTED_AT, checkpoint.last_full_started_at),
        (CP_LAST_FULL_COMPLETED_AT, checkpoint.last_full_completed_at),
        (CP_LAST_PASS_COMPLETED_AT, checkpoint.last_pass_completed_at),
    ):
        if value is not None:
            item[name] = _s(_precise_instant(value))
    if checkpoint.pending is not None:
        item[CP_PASS] = {"M": _pass_map(checkpoint.pending)}
    return item


def checkpoint_from_item(item: Mapping[str, Any]) -> Checkpoint:
    pending = item.get(CP_PASS, {}).get("M")
    return Checkpoint(
        watermark=_optional_instant(item, CP_WATERMARK),
        last_full_started_at=_optional_instant(item, CP_LAST_FULL_STARTED_AT),
        last_full_completed_at=_optional_instant(item, CP_LAST_FULL_COMPLETED_AT),
        last_pass_completed_at=_optional_instant(item, CP_LAST_PASS_COMPLETED_AT),
        pending=_pass_from_map(pending) if pending else None,
    )


def _pass_map(state: PassState) -> dict[str, Any]:
    query = {name: _s(value) for name in QUERY_FIELDS if (value := getattr(state.query, name))}
    result: dict[str, Any] = {
        PASS_KIND: _s(state.kind.value),
        PASS_QUERY: {"M": query},
        PASS_STARTED_AT: _s(_precise_instant(state.started_at)),
        PASS_PAGES_DONE: _n(state.pages_done),
        PASS_RESTARTS: _n(state.restarts),
    }
    if state.page_token is not None:
        result[PASS_PAGE_TOKEN] = _s(state.page_token)
    if state.max_last_interaction is not None:
        result[PASS_MAX_LAST_INTERACTION] = _s(_precise_instant(state.max_last_interaction))
    return result


def _pass_from_map(values: Mapping[str, Any]) -> PassState:
    query = {name: value["S"] for name, value in values[PASS_QUERY]["M"].items()}
    return PassState(
        kind=PassKind(values[PASS_KIND]["S"]),
        query=ConnectQuery(**query),
        started_at=parse_instant(values[PASS_STARTED_AT]["S"]),
        page_token=values.get(PASS_PAGE_TOKEN, {}).get("S"),
        pages_done=int(values[PASS_PAGES_DONE]["N"]),
        max_last_interaction=_optional_instant(values, PASS_MAX_LAST_INTERACTION),
        restarts=int(values.get(PASS_RESTARTS, {}).get("N", "0")),
    )


# --- DynamoDB item sizes (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html)


def item_size_bytes(item: Mapping[str, Any]) -> int:
    """An item's size by DynamoDB's rules: attribute name bytes plus value bytes."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def write_units(item: Mapping[str, Any]) -> int:
    """Write capacity units of a standard put of this item: one per started KB."""
    return max(1, math.ceil(item_size_bytes(item) / WRITE_UNIT_BYTES))


def _value_size(value: Mapping[str, Any]) -> int:
    ((kind, content),) = value.items()
    if kind == "S":
        return len(content.encode())
    if kind == "N":
        return _number_size(content)
    if kind == "B":
        return len(content)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(name.encode()) + _value_size(inner) + 1 for name, inner in content.items())
    if kind == "L":
        return 3 + sum(_value_size(inner) + 1 for inner in content)
    if kind == "SS":
        return sum(len(text.encode()) for text in content)
    if kind == "NS":
        return sum(_number_size(text) for text in content)
    if kind == "BS":
        return sum(len(data) for data in content)
    raise ValueError(f"unknown AttributeValue type {kind!r}")


def _number_size(text: str) -> int:
    """1 byte per two significant digits, plus 1."""
    digits = format(abs(Decimal(text)).normalize(), "f").replace(".", "").strip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


# --- small helpers --------------------------------------------------------------------------------


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _connection_key(entry_id: str) -> dict[str, Any]:
    return string_key(table.connection_key(entry_id))


def _poller_key(sort_key: str) -> dict[str, Any]:
    return {table.PK: _s(table.POLLER_PK), table.SK: _s(sort_key)}


def _epoch_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _precise_instant(value: datetime) -> str:
    """RFC 3339 with microseconds when there are any: a watermark must not lose sub-second order."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _optional_instant(values: Mapping[str, Any], name: str) -> datetime | None:
    return optional_instant(values.get(name, {}).get("S"))


def _lease_holder(error: ClientError) -> tuple[str, datetime | None]:
    item = error.response.get("Item") or {}
    owner = item.get(LEASE_OWNER, {}).get("S", "an unknown run")
    expires = item.get(LEASE_EXPIRES_AT, {}).get("S")
    return owner, parse_instant(expires) if expires else None
