"""The poller's DynamoDB store: connection snapshots, their history, the checkpoint, the lease and
quarantined entries.

All in the one table (key design in ``leap_tracker.table``), through the low-level client: items are
built as AttributeValue dicts by hand, which is both the cheapest in CPU and explicit about sizes.
Snapshots are read with BatchGetItem (100 keys a call, eventually or strongly consistent as the run
asks: ``poller/run.py`` says which when, projected to what change detection needs and the stored entry)
and written with BatchWriteItem (25 a call), through ``adapters.dynamo``: a page's calls go out
together (``concurrency``), unprocessed keys and items are retried with capped exponential backoff and
full jitter; writes still unprocessed after that raise, so the caller does not checkpoint the page.

Every stored change also gets a history item (``table.history_key``) holding the previous and the new
entry. The previous one is the stored snapshot's entry, which ``read_snapshots`` reads anyway (a
snapshot is far below 4 KB, so projecting the entry costs no read unit more) and keeps, for the page,
inside the store: the poller's ports stay as they are. ``write_changes`` puts the page's history items
first and its snapshots only after them, so no snapshot is ever stored without its history; a failed
history put raises before any snapshot is written, and the replayed page puts the same history keys.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Unpack

from botocore.exceptions import ClientError

from leap_tracker import table
from leap_tracker.adapters.dynamo import (
    BatchStats,
    BatchTiming,
    TableBatches,
    is_condition_failed,
    item_size_bytes,
    optional_instant,
    string_key,
)
from leap_tracker.config import PollerSettings
from leap_tracker.leap import wire
from leap_tracker.leap.api import ConnectQuery
from leap_tracker.leap.connect_model import canonical_json
from leap_tracker.poller.ports import (
    Checkpoint,
    LeaseHeld,
    LeaseLost,
    LeaseUse,
    PassKind,
    PassState,
    QuarantineRecord,
    SnapshotWrite,
    StoredState,
)
from leap_tracker.table import decode_stored_entry, encode_stored_change, encode_stored_entry
from leap_tracker.timeutil import format_instant, parse_instant

WRITE_UNIT_BYTES = 1024

CHECKPOINT_ITEM_TYPE = "poller_checkpoint"
LEASE_ITEM_TYPE = "poller_lease"
PASS_WAITING_ITEM_TYPE = "poller_pass_waiting"
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
PASS_IN_ORDER = "in_order"  # a pass without it was recorded before the order was checked: not known
PASS_LISTED_THROUGH = "listed_through"
PASS_FIRST_QUERY = "first_query"  # map like PASS_QUERY, once the pass went on with another query
QUERY_FIELDS = ("ref_id", "start_date", "last_interaction_date")

# Lease attributes
LEASE_OWNER = "owner"
LEASE_EXPIRES_MS = "lease_expires_ms"  # epoch milliseconds: compared in the condition expressions
LEASE_EXPIRES_AT = "lease_expires_at"  # the same instant, for people
LEASE_ACQUIRED_AT = "acquired_at"
LEASE_USE = "used_for"  # poller.ports.LeaseUse; a lease without it is a pass's (written before it existed)
# A pass waiting for a ref_id run's lease (pk POLLER, sk PASS_WAITING): the waiting run's owner, until when
WAITING_OWNER = "owner"
WAITING_UNTIL_MS = "waiting_until_ms"
WAITING_UNTIL_AT = "waiting_until_at"

# Quarantine attributes
Q_REASON = "reason"
Q_RAW_ENTRY = "raw_entry"
Q_RECEIVED_AT = "received_at"
Q_ENTRY_ID = "entry_id"

# What change detection reads of a stored snapshot, and the stored entry (the next change's previous).
SNAPSHOT_STATE_ATTRIBUTES = (
    table.PK,
    table.CONN_CONTENT_HASH,
    table.CONN_SEQUENCE,
    table.CONN_LAST_INTERACTION,
    table.CONN_ENTRY,
)
# What a write reads again when it meets a change whose previous entry this page did not read.
PREVIOUS_ENTRY_ATTRIBUTES = (table.PK, table.CONN_SEQUENCE, table.CONN_ENTRY)
# The snapshots a store keeps of its last reads (the previous entries of the next writes): two pages.
MAX_REMEMBERED_SNAPSHOTS = 1_000


@dataclass(slots=True)
class StoreStats(BatchStats):
    # Estimated from item sizes (1 per started KB per item): snapshots + quarantine, and history apart.
    write_units: int = 0
    history_write_units: int = 0
    previous_reads: int = 0  # changes whose previous entry had to be read again (not read by the page)


class PreviousEntryUnknown(RuntimeError):
    """A change's previous entry is not the stored snapshot (its sequence is not the change's - 1):
    the history item cannot be written truthfully, so nothing of the page is (it is replayed)."""


@dataclass(frozen=True, slots=True)
class _Stored:
    """What a page's read found of one snapshot: its sequence and its stored (compressed) entry."""

    sequence: int
    entry: bytes | None


class DynamoPollerStore:
    """Implements ``poller_ports.PollerStore`` on the connections table."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        history_retention_days: int | None = None,
        known_statuses: frozenset[str] = wire.KNOWN_CONNECTION_STATUSES,
        **timing: Unpack[BatchTiming],
    ) -> None:
        self._client = client
        self._table = table_name
        days = (
            PollerSettings().history_retention_days
            if history_retention_days is None
            else history_retention_days
        )
        self._history_retention = timedelta(days=days)
        self._known_statuses = known_statuses
        self.stats = StoreStats()
        self._batches = TableBatches(client, table_name, stats=self.stats, **timing)
        self._stored: dict[str, _Stored] = {}  # the last page's read (and writes), by entry id

    # --- lease ----------------------------------------------------------------------------------

    def acquire_lease(
        self, owner: str, now: datetime, until: datetime, use: LeaseUse = LeaseUse.PASS
    ) -> None:
        if use is LeaseUse.REF_ID:
            # Read first, not in a transaction with the put: a transaction in flight would make the
            # pass's own plain writes of these items fail (TransactionConflict). A pass announcing
            # itself between the read and the put only waits one more try.
            self._refuse_if_a_pass_waits(now)
        item = {
            **_poller_key(table.LEASE_SK),
            table.ITEM_TYPE: _s(LEASE_ITEM_TYPE),
            LEASE_OWNER: _s(owner),
            LEASE_EXPIRES_MS: _n(_epoch_ms(until)),
            LEASE_EXPIRES_AT: _s(format_instant(until)),
            LEASE_ACQUIRED_AT: _s(format_instant(now)),
            LEASE_USE: _s(use.value),
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
            raise _lease_held(error.response.get("Item")) from None

    def _refuse_if_a_pass_waits(self, now: datetime) -> None:
        answer = self._client.get_item(
            TableName=self._table, Key=_poller_key(table.PASS_WAITING_SK), ConsistentRead=True
        )
        waiting = answer.get("Item")
        if waiting and int(waiting.get(WAITING_UNTIL_MS, {}).get("N", "0")) >= _epoch_ms(now):
            raise LeaseHeld(
                waiting.get(WAITING_OWNER, {}).get("S", "a pass"),
                _optional_instant(waiting, WAITING_UNTIL_AT),
                LeaseUse.PASS,
                waiting=True,
            )

    def announce_waiting_pass(self, owner: str, until: datetime) -> None:
        self._client.put_item(
            TableName=self._table,
            Item={
                **_poller_key(table.PASS_WAITING_SK),
                table.ITEM_TYPE: _s(PASS_WAITING_ITEM_TYPE),
                WAITING_OWNER: _s(owner),
                WAITING_UNTIL_MS: _n(_epoch_ms(until)),
                WAITING_UNTIL_AT: _s(format_instant(until)),
            },
        )

    def withdraw_waiting_pass(self, owner: str) -> None:
        try:
            self._client.delete_item(
                TableName=self._table,
                Key=_poller_key(table.PASS_WAITING_SK),
                ConditionExpression="#owner = :me",
                ExpressionAttributeNames={"#owner": WAITING_OWNER},
                ExpressionAttributeValues={":me": _s(owner)},
            )
        except ClientError as error:
            if not is_condition_failed(error):
                raise

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

    def read_snapshots(self, entry_ids: Sequence[str], *, consistent: bool = True) -> dict[str, StoredState]:
        requested = list(dict.fromkeys(entry_ids))  # BatchGetItem refuses a repeated key
        keys = [_connection_key(entry_id) for entry_id in requested]
        items = self._batches.get(keys, projection=SNAPSHOT_STATE_ATTRIBUTES, consistent=consistent)
        found: dict[str, StoredState] = {}
        if len(self._stored) + len(requested) > MAX_REMEMBERED_SNAPSHOTS:
            self._stored = {}  # a page or two at a time: memory stays flat however long the pass
        for entry_id in requested:  # what this read found is what the store last knew of them
            self._stored.pop(entry_id, None)
        for item in items:
            entry_id = table.entry_id_from_pk(item[table.PK]["S"])
            state = stored_state_from_item(item)
            found[entry_id] = state
            self._stored[entry_id] = _Stored(state.sequence, item.get(table.CONN_ENTRY, {}).get("B"))
        return found

    def write_changes(
        self, snapshots: Sequence[SnapshotWrite], quarantined: Sequence[QuarantineRecord], now: datetime
    ) -> None:
        previous = self._previous_entries(snapshots)
        expires_at = now + self._history_retention
        history = [history_item(w, previous[w.entry.entry_id], now, expires_at) for w in snapshots]
        items = [snapshot_item(write, now, self._known_statuses) for write in snapshots]
        items += [quarantine_item(record) for record in quarantined]
        self.stats.history_write_units += sum(write_units(item) for item in history)
        self.stats.write_units += sum(write_units(item) for item in items)
        self._batches.put(history)  # first: a snapshot is never stored without its history
        self._batches.put(items)
        for write, item in zip(snapshots, items[: len(snapshots)], strict=True):  # what the table holds now
            self._stored[write.entry.entry_id] = _Stored(write.sequence, item[table.CONN_ENTRY]["B"])

    def _previous_entries(self, writes: Sequence[SnapshotWrite]) -> dict[str, str | None]:
        """Each change's previous entry (canonical JSON; None for a first write): the snapshot this
        page read when its sequence is the change's - 1, else the one stored now, read again."""
        previous: dict[str, str | None] = {}
        unread: list[SnapshotWrite] = []
        for write in writes:
            stored = self._stored.get(write.entry.entry_id)
            if stored is None and write.sequence == 1:
                previous[write.entry.entry_id] = None
            elif stored is not None and stored.sequence == write.sequence - 1 and stored.entry is not None:
                previous[write.entry.entry_id] = _entry_text(stored.entry)
            else:
                unread.append(write)
        if unread:
            previous |= self._read_previous(unread)
        return previous

    def _read_previous(self, writes: Sequence[SnapshotWrite]) -> dict[str, str | None]:
        """The stored entries of ``writes`` read again; each must be at the change's sequence - 1 (or
        absent for a first write). Anything else raises: a history item never guesses its previous."""
        self.stats.previous_reads += len(writes)
        keys = [_connection_key(entry_id) for entry_id in dict.fromkeys(w.entry.entry_id for w in writes)]
        found = {
            table.entry_id_from_pk(item[table.PK]["S"]): item
            for item in self._batches.get(keys, projection=PREVIOUS_ENTRY_ATTRIBUTES, consistent=True)
        }
        previous: dict[str, str | None] = {}
        mismatched = 0
        for write in writes:
            item = found.get(write.entry.entry_id)
            if item is None:
                if write.sequence != 1:
                    mismatched += 1
                previous[write.entry.entry_id] = None  # not stored: a first write
                continue
            blob = item.get(table.CONN_ENTRY, {}).get("B")
            if blob is None or int(item[table.CONN_SEQUENCE]["N"]) != write.sequence - 1:
                mismatched += 1
            else:
                previous[write.entry.entry_id] = _entry_text(blob)
        if mismatched:  # no entry id in the text: it is logged
            raise PreviousEntryUnknown(
                f"{mismatched} change(s) do not follow the stored snapshot (its sequence is not the "
                "change's - 1, or it holds no entry): their history cannot be written"
            )
        return previous


# --- item formats (module functions: the tests and the bench read them too) ---------------------


def snapshot_item(
    write: SnapshotWrite, now: datetime, known_statuses: frozenset[str] = wire.KNOWN_CONNECTION_STATUSES
) -> dict[str, Any]:
    entry = write.entry
    item = {
        **_connection_key(entry.entry_id),
        table.ITEM_TYPE: _s(table.CONNECTION_ITEM_TYPE),
        table.CONN_ENTRY: {"B": encode_stored_entry(entry.canonical_json)},
        table.CONN_CONTENT_HASH: _s(entry.content_hash),
        table.CONN_SEQUENCE: _n(write.sequence),
        table.CONN_LAST_INTERACTION: _s(entry.last_interaction_text),
        table.CONN_REF_ID: _s(entry.ref_id),
        table.CONN_WRITTEN_AT: _s(format_instant(now)),
        table.CONN_STATUS: _s(entry.connection_status),
        table.CONN_FUNNEL_KEY: _s(table.funnel_key(entry.connection_status, entry.entry_id, known_statuses)),
    }
    if entry.transmission_region is not None:
        item[table.CONN_TRANSMISSION_REGION] = _s(entry.transmission_region)
    return item


def history_item(
    write: SnapshotWrite, previous_canonical: str | None, now: datetime, expires_at: datetime
) -> dict[str, Any]:
    """One stored change: the previous and the new entry, the sequence, and a TTL. No ``ref_id``
    attribute: it would put every change in ref-index, which should find the snapshot only."""
    entry = write.entry
    return {
        **string_key(table.history_key(entry.entry_id, write.sequence)),
        table.ITEM_TYPE: _s(table.HISTORY_ITEM_TYPE),
        table.HISTORY_CHANGE: {"B": encode_stored_change(previous_canonical, entry.canonical_json)},
        table.HISTORY_SEQUENCE: _n(write.sequence),
        table.HISTORY_WRITTEN_AT: _s(format_instant(now)),
        table.HISTORY_STATUS: _s(entry.connection_status),
        table.TTL_ATTRIBUTE: _n(int(expires_at.timestamp())),
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


def _query_map(query: ConnectQuery) -> dict[str, Any]:
    return {"M": {name: _s(value) for name in QUERY_FIELDS if (value := getattr(query, name))}}


def _query_from_map(values: Mapping[str, Any]) -> ConnectQuery:
    return ConnectQuery(**{name: value["S"] for name, value in values["M"].items()})


def _pass_map(state: PassState) -> dict[str, Any]:
    result: dict[str, Any] = {
        PASS_KIND: _s(state.kind.value),
        PASS_QUERY: _query_map(state.query),
        PASS_STARTED_AT: _s(_precise_instant(state.started_at)),
        PASS_PAGES_DONE: _n(state.pages_done),
        PASS_RESTARTS: _n(state.restarts),
        PASS_IN_ORDER: {"BOOL": state.in_order},
    }
    if state.listed_through is not None:
        result[PASS_LISTED_THROUGH] = _s(state.listed_through)
    if state.first_query is not None:
        result[PASS_FIRST_QUERY] = _query_map(state.first_query)
    if state.page_token is not None:
        result[PASS_PAGE_TOKEN] = _s(state.page_token)
    if state.max_last_interaction is not None:
        result[PASS_MAX_LAST_INTERACTION] = _s(_precise_instant(state.max_last_interaction))
    return result


def _pass_from_map(values: Mapping[str, Any]) -> PassState:
    first = values.get(PASS_FIRST_QUERY)
    return PassState(
        kind=PassKind(values[PASS_KIND]["S"]),
        query=_query_from_map(values[PASS_QUERY]),
        started_at=parse_instant(values[PASS_STARTED_AT]["S"]),
        page_token=values.get(PASS_PAGE_TOKEN, {}).get("S"),
        pages_done=int(values[PASS_PAGES_DONE]["N"]),
        max_last_interaction=_optional_instant(values, PASS_MAX_LAST_INTERACTION),
        restarts=int(values.get(PASS_RESTARTS, {}).get("N", "0")),
        in_order=bool(values.get(PASS_IN_ORDER, {}).get("BOOL", False)),
        listed_through=values.get(PASS_LISTED_THROUGH, {}).get("S"),
        first_query=_query_from_map(first) if first else None,
    )


def write_units(item: Mapping[str, Any]) -> int:
    """Write capacity units of a standard put of this item: one per started KB."""
    return max(1, math.ceil(item_size_bytes(item) / WRITE_UNIT_BYTES))


# --- small helpers --------------------------------------------------------------------------------


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _connection_key(entry_id: str) -> dict[str, Any]:
    return string_key(table.connection_key(entry_id))


def _entry_text(stored: bytes) -> str:
    """A stored entry back as its canonical JSON (what the history's pair holds)."""
    return canonical_json(decode_stored_entry(stored))


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


def _lease_held(item: Mapping[str, Any] | None) -> LeaseHeld:
    """The refusal of an acquire, from the lease item the condition failed on."""
    item = item or {}
    use = item.get(LEASE_USE, {}).get("S")
    return LeaseHeld(
        item.get(LEASE_OWNER, {}).get("S", "an unknown run"),
        _optional_instant(item, LEASE_EXPIRES_AT),
        LeaseUse.REF_ID if use == LeaseUse.REF_ID.value else LeaseUse.PASS,
    )
