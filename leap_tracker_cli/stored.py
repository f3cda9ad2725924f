"""What the operator's commands read of the connections table (keys and attributes: leap_tracker.table).

- a Reference ID's entries: a Query of the KEYS_ONLY ``ref-index`` (snapshots, meter watches and
  outreach states carry ``ref_id``), never a Scan;
- an entry's items: its snapshot, outreach state (with its ledger) and meter watch;
- its history: one item per stored change (``HISTORY#<entry id>``, sort key = the sequence), each
  decoded to the (previous, new) pair that gives that change's events again;
- the changes written in a time window (a keys-only Scan filtered on the item type and ``written_at``),
  for a replay without a Reference ID;
- the emitter's failure markers (``EMITFAIL``, sort key = the stream sequence number, zero-padded).

Low-level DynamoDB client, strongly consistent reads of the table (the index is eventually consistent:
an entry written a second ago may not be listed yet).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from leap_tracker import table
from leap_tracker.config import VARIABLES, Settings
from leap_tracker.events.diff import DiffRules, change_events
from leap_tracker_cli.discovery import Resource

TABLE = Resource(
    what="the connections table",
    flag="--table",
    output="ConnectionsTableName",
    logical_id="ConnectionsTable",
    variable=VARIABLES[Settings]["connections_table"].name,  # CONNECTIONS_TABLE
)
_PREFIXES = (table.CONNECTION_PREFIX, table.WATCH_PREFIX, table.OUTREACH_PREFIX)  # items in ref-index


@dataclass(frozen=True, slots=True)
class StoredChange:
    """One history item, decoded; ``problem`` says why it cannot be read (then there is no entry)."""

    entry_id: str
    sequence: int
    written_at: str | None
    previous: dict[str, Any] | None = None
    entry: dict[str, Any] | None = None
    problem: str | None = None

    def events(self, rules: DiffRules) -> list[dict[str, Any]]:
        """The change's events, as the emitter derives them (raises KeyError/ValueError on an entry
        that cannot be diffed, as the emitter would refuse it)."""
        if self.entry is None:
            raise ValueError(self.problem or "no entry")
        return change_events(self.previous, self.entry, self.sequence, rules)


@dataclass(frozen=True, slots=True)
class Marker:
    """An emitter failure marker: the stream record the emitter failed on, and its (entry, sequence)."""

    sort_key: str  # the zero-padded stream sequence number
    entry_id: str | None
    sequence: int | None
    reason: str | None
    failed_at: str | None

    @property
    def key(self) -> dict[str, str]:
        return {table.PK: table.EMITTER_FAILURE_PK, table.SK: self.sort_key}


class StoredTable:
    def __init__(self, client: Any, name: str) -> None:
        self._client = client
        self.name = name

    # --- a Reference ID's entries and their items -------------------------------------------------

    def entry_ids_of_ref(self, ref_id: str) -> list[str]:
        """Every entry id the index lists for the Reference ID, in order, each once."""
        pages = self._client.get_paginator("query").paginate(
            TableName=self.name,
            IndexName=table.REF_INDEX,
            KeyConditionExpression="#ref = :ref",
            ExpressionAttributeNames={"#ref": table.CONN_REF_ID},
            ExpressionAttributeValues={":ref": {"S": ref_id}},
        )
        found: dict[str, None] = {}
        for page in pages:
            for item in page.get("Items", []):
                pk = item[table.PK]["S"]
                prefix = next((p for p in _PREFIXES if pk.startswith(p)), None)
                if prefix is not None:
                    found[pk[len(prefix) :]] = None
        return sorted(found)

    def get(self, key: Mapping[str, str]) -> dict[str, Any] | None:
        from leap_tracker.adapters.dynamo import deserialize, string_key  # boto3 on first use

        answer = self._client.get_item(TableName=self.name, Key=string_key(key), ConsistentRead=True)
        item = answer.get("Item")
        return deserialize(item) if item else None

    # --- history ----------------------------------------------------------------------------------

    def history(
        self,
        entry_id: str,
        *,
        newest_first: bool = False,
        after_sequence: int | None = None,
        written: tuple[str, str] | None = None,
    ) -> Iterator[StoredChange]:
        """The entry's stored changes in sequence order (``written``: [since, until) of ``written_at``)."""
        names = {"#pk": table.PK}
        values: dict[str, Any] = {":pk": {"S": table.HISTORY_PREFIX + entry_id}}
        condition = "#pk = :pk"
        if after_sequence is not None:
            names["#sk"] = table.SK
            values[":after"] = {"S": table.history_key(entry_id, after_sequence)[table.SK]}
            condition += " AND #sk > :after"
        request: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": not newest_first,
            "ConsistentRead": True,
        }
        if written is not None:
            names["#written"] = table.HISTORY_WRITTEN_AT
            values |= {":since": {"S": written[0]}, ":until": {"S": written[1]}}
            request["FilterExpression"] = "#written >= :since AND #written < :until"
        for page in self._client.get_paginator("query").paginate(**request):
            for item in page.get("Items", []):
                yield decode_change(_deserialize(item))

    def history_item(self, entry_id: str, sequence: int) -> StoredChange | None:
        item = self.get(table.history_key(entry_id, sequence))
        return decode_change(item) if item is not None else None

    def entries_changed_between(self, since: str, until: str) -> list[str]:
        """The entries with a change written in [since, until): a keys-only Scan of the history items
        (each page read in full, filtered after: a Scan reads the whole table)."""
        pages = self._client.get_paginator("scan").paginate(
            TableName=self.name,
            ProjectionExpression="#pk, #sk",
            FilterExpression="#type = :type AND #written >= :since AND #written < :until",
            ExpressionAttributeNames={
                "#pk": table.PK,
                "#sk": table.SK,
                "#type": table.ITEM_TYPE,
                "#written": table.HISTORY_WRITTEN_AT,
            },
            ExpressionAttributeValues={
                ":type": {"S": table.HISTORY_ITEM_TYPE},
                ":since": {"S": since},
                ":until": {"S": until},
            },
        )
        found: dict[str, None] = {}
        for page in pages:
            for item in page.get("Items", []):
                pk = item[table.PK]["S"]
                if pk.startswith(table.HISTORY_PREFIX):
                    found[table.entry_id_from_history_pk(pk)] = None
        return sorted(found)

    # --- emitter failure markers ------------------------------------------------------------------

    def markers_between(self, first: str, last: str) -> list[Marker]:
        """The markers of the stream records from ``first`` to ``last`` (sequence numbers, inclusive)."""
        pages = self._client.get_paginator("query").paginate(
            TableName=self.name,
            KeyConditionExpression="#pk = :pk AND #sk BETWEEN :first AND :last",
            ExpressionAttributeNames={"#pk": table.PK, "#sk": table.SK},
            ExpressionAttributeValues={
                ":pk": {"S": table.EMITTER_FAILURE_PK},
                ":first": {"S": table.stream_sequence_sort_key(first)},
                ":last": {"S": table.stream_sequence_sort_key(last)},
            },
            ConsistentRead=True,
        )
        return [_marker(_deserialize(item)) for page in pages for item in page.get("Items", [])]

    def delete(self, key: Mapping[str, str]) -> None:
        from leap_tracker.adapters.dynamo import string_key  # boto3 on first use

        self._client.delete_item(TableName=self.name, Key=string_key(key))


def decode_change(item: Mapping[str, Any]) -> StoredChange:
    """A history item (deserialised) as a :class:`StoredChange`, never raising: what cannot be read
    becomes its ``problem`` (an item this code did not write, a damaged value)."""
    entry_id = table.entry_id_from_history_pk(str(item[table.PK]))
    sequence = table.whole_number(item.get(table.HISTORY_SEQUENCE))
    if sequence is None:
        sequence = table.whole_number(item.get(table.SK)) or 0
    written_at = item.get(table.HISTORY_WRITTEN_AT)
    written = str(written_at) if written_at is not None else None
    if table.HISTORY_CHANGE not in item:
        return StoredChange(entry_id, sequence, written, problem=f"no {table.HISTORY_CHANGE!r} attribute")
    try:
        previous, entry = table.decode_stored_change(item[table.HISTORY_CHANGE])
    except table.UnreadableStoredEntry as exc:
        return StoredChange(entry_id, sequence, written, problem=str(exc))
    return StoredChange(entry_id, sequence, written, previous, entry)


def plain(value: Any) -> Any:
    """A deserialised DynamoDB value as JSON can carry it (numbers as int or float, sets as lists)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [plain(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    return value


def _marker(item: Mapping[str, Any]) -> Marker:
    entry_id = item.get(table.FAILURE_ENTRY_ID)
    reason, failed_at = item.get(table.FAILURE_REASON), item.get(table.FAILURE_FAILED_AT)
    return Marker(
        sort_key=str(item[table.SK]),
        entry_id=str(entry_id) if isinstance(entry_id, str) and entry_id else None,
        sequence=table.whole_number(item.get(table.FAILURE_SEQUENCE)),
        reason=str(reason) if reason is not None else None,
        failed_at=str(failed_at) if failed_at is not None else None,
    )


def _deserialize(item: Mapping[str, Any]) -> dict[str, Any]:
    from leap_tracker.adapters.dynamo import deserialize  # boto3 on first use

    return deserialize(item)
